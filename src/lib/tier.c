/* tier.c — the table of isolation tiers. */
#include <string.h>

#include "tier.h"

static const struct cb_tier_ops *const tiers[] = {&cb_tier_container};

const struct cb_tier_ops *cb_tier_lookup(const char *name)
{
    for (size_t i = 0; name && i < CB_ARRAY_SIZE(tiers); i++)
        if (strcmp(tiers[i]->name, name) == 0)
            return tiers[i];
    return NULL;
}
