/* template.h — templates are directories templates/<name>/ holding a
 * rootfs/ (the read-only lower layer) and a template.conf (key=value text):
 *
 *   # cellbox template
 *   bind=/usr          host path bound read-only at the same path
 *   bind=/etc/ssl
 *
 * Any directory with both is a template; images added later are just
 * templates without binds. Ownership: cb_template_free frees a loaded one. */
#ifndef CB_TEMPLATE_H
#define CB_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "mounts.h"

#define CB_TEMPLATE_MAX_BINDS 64
#define CB_TEMPLATE_CONF_MAX 65536

struct cb_template {
    char *name;
    char *rootfs; /* absolute path of the lower layer */
    struct cb_template_bind *binds;
    size_t nbinds;
};

/* Is name a valid template name ([a-z0-9_.-], 1..64, no leading dot)? */
bool cb_template_name_ok(const char *name);
int cb_template_load(const char *templates_dir, const char *name,
                     struct cb_template **out, struct cb_error **err);
void cb_template_free(struct cb_template *t);
/* Parse template.conf text (pure; for tests). */
int cb_template_parse(const char *text, struct cb_template *t, struct cb_error **err);

/* Generate templates/host if it is missing (also used by tier.h's
 * cb_template_ensure_host). */
int cb_template_make_host(const char *templates_dir, struct cb_error **err);

#endif
