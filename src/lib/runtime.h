/* runtime.h — internals of struct cb_runtime shared by the container tier's
 * files (runtime.c, template.c, tier_container.c). Not for other modules:
 * they use tier.h. */
#ifndef CB_RUNTIME_H
#define CB_RUNTIME_H

#include <sys/resource.h>

#include "cgroup.h"
#include "quota.h"
#include "seccomp_bpf.h"
#include "tier.h"

struct cb_runtime {
    struct cb_runtime_config cfg; /* strings below are owned copies */
    char *state_dir, *init_path, *cgroup_parent;
    char *sandboxes_dir, *templates_dir, *slots_dir;
    int slots_dirfd;
    uint32_t slot_hint; /* next uid slot to try (atomic; only a hint) */
    struct cb_cgroup_manager *cgroups;
    struct cb_seccomp_program seccomp;
    struct cb_quota quota;
    int last_cap;
    rlim_t nofile_max; /* our hard limit: raising past it needs CAP_SYS_RESOURCE */
};

#endif
