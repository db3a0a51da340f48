/* runtime.h — internals of struct cb_runtime shared by the container tier's
 * files (runtime.c, template.c, tier_container.c). Not for other modules:
 * they use tier.h. */
#ifndef CB_RUNTIME_H
#define CB_RUNTIME_H

#include <pthread.h>
#include <sys/resource.h>

#include "cgroup.h"
#include "netns.h"
#include "quota.h"
#include "sbdir.h"
#include "seccomp_bpf.h"
#include "tier.h"

struct cb_runtime {
    struct cb_runtime_config cfg; /* strings below are owned copies */
    char *state_dir, *init_path, *cgroup_parent;
    char *sandboxes_dir, *templates_dir, *slots_dir;
    char *cgroup_view_dir; /* v1: bound on a sandbox's /sys/fs/cgroup (cgroup.h), else NULL */
    int slots_dirfd;
    int host_uts_fd; /* our own uts namespace, to return to after a claim's sethostname */
    uint32_t slot_hint; /* next uid slot to try (atomic; only a hint) */
    /* Slots this runtime released, newest last: a create takes one of
     * these back first (cb_idmap_reuse_slot), reusing its file. */
    pthread_mutex_t freed_lock;
    uint32_t freed[64];
    int nfreed;
    struct cb_cgroup_manager *cgroups;
    struct cb_sbdir_spares *dir_spares; /* retired sandbox directories (sbdir.h) */
    struct cb_netns_spares *netns_spares; /* network namespaces made ahead (netns.h) */
    bool netns_refused; /* the kernel refused a spare's sysfs in a sandbox: none used */
    struct cb_seccomp_program seccomp;
    struct cb_quota quota;
    int last_cap;
    bool no_time_ns; /* sandboxes keep the host's clocks (cb_ns_probe_time_ns) */
    rlim_t nofile_max; /* our hard limit: raising past it needs CAP_SYS_RESOURCE */
};

/* ---- container-tier extension used by cellboxd's warm pool ----
 *
 * Not in struct cb_tier_ops yet (tier.h is shared; see the report asking
 * for a `claim` op). Give a running sandbox created under an internal id
 * (a pool member) its real identity: rename its directory and cgroups to
 * new_id, record new_id as its uid slot's owner, set its uts hostname and
 * /etc/hostname + /etc/hosts to hostname (or new_id when NULL/empty), and
 * apply limits. On failure the sandbox may be half-renamed: the caller
 * destroys it (destroy works from any of those states). Under cgroup v2,
 * which cannot rename cgroups, only new_id == its id is accepted (EPERM,
 * nothing changed, otherwise). Worker thread. */
int cb_container_claim(struct cb_sandbox *sb, const char *new_id, const char *hostname,
                       const struct cb_limits *limits, struct cb_error **err);
/* Remove what a sandbox id left behind when its handle cannot be adopted
 * (a crash before runtime.state was written): kill and remove its cgroups,
 * remove sandboxes/<id>, release uid slots whose owner is id. -errno;
 * -EBUSY when its cgroups could not be removed (processes still exiting
 * after the wait): then nothing else is removed either, for a retry. */
int cb_container_reclaim(struct cb_runtime *rt, const char *id);
/* Release the uid slots whose owner has no sandbox directory: a process
 * killed between a destroy's last two steps (directory gone, slot not yet
 * released) leaves one. Only while no create or destroy runs on this state
 * dir (the daemon's start): a destroy in that window would otherwise lose
 * its slot to a new sandbox. Returns how many. */
int cb_container_release_orphan_slots(struct cb_runtime *rt);
/* Disk limits enforced by a fixed-size image per sandbox (quota.h): a
 * sandbox's disk_mb is then fixed at create. */
bool cb_runtime_disk_images(struct cb_runtime *rt);
/* Name the group whose later sandboxes may get this sandbox's network
 * namespace once it is destroyed (cb_netns_retire: cellboxd gives the
 * tenant); NULL or longer than CB_NETNS_GROUP_MAX: nobody's. Kept in the
 * handle only: an adopted sandbox has none until told again. The spec's
 * net_group sets it at create. */
void cb_container_set_net_group(struct cb_sandbox *sb, const char *group);
/* The group an earlier sandbox of which used the network namespace its
 * last start took (then only that group may have this sandbox: it shows
 * their counters), or NULL for a new namespace. Kept in runtime.state, so
 * an adopted handle knows it too. */
const char *cb_container_netns_of(const struct cb_sandbox *sb);
/* The id a container sandbox handle currently has (borrowed). */
const char *cb_container_id(const struct cb_sandbox *sb);

#endif
