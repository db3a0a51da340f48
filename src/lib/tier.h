/* tier.h — the one back-end interface every isolation tier implements.
 *
 * The daemon's API layer drives sandboxes only through struct cb_tier_ops, so
 * it never knows whether it talks to the container tier, gvisor or a microvm.
 * A tier's job ends at "cellbox-init is running and reachable": processes,
 * PTYs and output are then handled over the control protocol (proto.h),
 * which is the same for every tier.
 *
 * Threading: every operation is synchronous and may block for a few
 * milliseconds (create/start) or longer (destroy removes a tree). The daemon
 * calls fast ones on its loop and slow ones (destroy, snapshot) from its
 * worker pool; one sandbox is never operated on by two threads at once (the
 * daemon serialises per sandbox). Operations on different sandboxes may run
 * concurrently.
 *
 * Ownership: cb_runtime_open() returns a runtime the caller frees with
 * cb_runtime_free(). Each tier's create/adopt returns a struct cb_sandbox the
 * caller releases with ops->release() (which frees memory and fds only — it
 * never stops the sandbox). */
#ifndef CB_TIER_H
#define CB_TIER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct cb_runtime_config {
    const char *state_dir;     /* e.g. /var/lib/cellbox; sandboxes/, templates/ below */
    const char *init_path;     /* path of the cellbox-init binary (host side) */
    uint32_t uid_base;         /* first host uid/gid of sandbox ranges (default 1<<30) */
    uint32_t uid_slots;        /* number of 65536-wide ranges (default 16384) */
    const char *cgroup_parent; /* cgroup (relative to each hierarchy root) that
                                  holds sandboxes, default "cellbox" */
    uint64_t volume_bytes;     /* size of the quota volume image when one must
                                  be created (see docs/operations.md); 0 = default */
    bool no_disk_quota;        /* run without the quota volume (info says so) */
    bool durable_disks;        /* sandbox disks honour fsync at the cost of a
                                  host disk flush per teardown and per tenant
                                  fsync (operations.md); default off */
    bool allow_weaken;         /* honour cb_sandbox_spec.weaken; only the test
                                  driver (tests/tools/cbrun) sets it, cellboxd
                                  never does */
};

struct cb_limits {
    double cpu;            /* cores; 0 = unlimited */
    uint64_t memory_bytes; /* 0 = unlimited; swap is always off */
    uint64_t disk_bytes;   /* upper-layer quota; 0 = none */
    uint32_t pids;         /* max tasks; 0 = default (512) */
    uint32_t nofile;       /* RLIMIT_NOFILE for sandbox processes; 0 = 1048576 */
};

struct cb_sandbox_spec {
    const char *id;           /* "sb_<hex>", [a-z0-9_] only, <= 64 chars */
    const char *hostname;     /* uts hostname (the sandbox name, or its id) */
    const char *template_name;/* directory name under state_dir/templates */
    struct cb_limits limits;
    bool internet;            /* reserved for the network issue; container tier
                                 currently gives loopback only */
    unsigned weaken;          /* CB_WEAKEN_* bits; ignored unless the runtime
                                 config has allow_weaken */
    const char *net_group;    /* sandboxes of one group may reuse each other's
                                 network namespace once destroyed (container
                                 tier: netns.h, cb_netns_retire); NULL: fresh */
};

/* Deliberate weakenings of the hardening, for the security battery's control
 * runs only: each escape test is run once against a sandbox missing the
 * defence it relies on, to show the test really detects the escape and so
 * cannot pass vacuously. Never reachable from the API. */
enum cb_weaken {
    CB_WEAKEN_NO_SECCOMP = 1u << 0, /* no seccomp filter */
    CB_WEAKEN_ALL_CAPS = 1u << 1,   /* keep the full bounding set, no securebits lock */
    CB_WEAKEN_OPEN_PROC = 1u << 2,  /* no /proc masks or read-only paths */
};

enum cb_sandbox_run_state {
    CB_RUN_CREATED = 1, /* directories exist, no init */
    CB_RUN_RUNNING,
    CB_RUN_PAUSED,
    CB_RUN_STOPPED,     /* init gone, filesystem kept */
};

struct cb_sandbox_stats {
    uint64_t cpu_ns;           /* total CPU time used */
    uint64_t memory_bytes;     /* current */
    uint64_t memory_peak_bytes;
    uint64_t disk_bytes;       /* bytes used in the upper layer */
    uint32_t pids;             /* current tasks */
    uint64_t oom_kills;
};

struct cb_sandbox; /* opaque, per tier */
struct cb_runtime; /* opaque: config + probed host facts (cgroup version, quota volume) */

struct cb_tier_ops {
    const char *name; /* "container", "gvisor", "microvm" */

    /* Is the tier usable on this host? 0 = yes; otherwise -1 and *reason
     * (malloc'd) says why, e.g. "runsc not installed". */
    int (*probe)(struct cb_runtime *rt, char **reason);

    /* Allocate everything a sandbox needs (uid range, directories, cgroups,
     * quota) without starting it. The sandbox directory is
     * state_dir/sandboxes/<id>. */
    int (*create)(struct cb_runtime *rt, const struct cb_sandbox_spec *spec,
                  struct cb_sandbox **out, struct cb_error **err);

    /* Start cellbox-init; returns once it answered HELLO on its control
     * socket. Valid from CREATED or STOPPED. */
    int (*start)(struct cb_sandbox *sb, struct cb_error **err);

    /* A new connected control-socket fd (blocking, O_CLOEXEC) to init. */
    int (*connect)(struct cb_sandbox *sb, int *fd_out, struct cb_error **err);

    int (*pause)(struct cb_sandbox *sb, struct cb_error **err);  /* freeze all */
    int (*resume)(struct cb_sandbox *sb, struct cb_error **err); /* thaw */

    /* Kill every process (init included), wait until they are gone, keep the
     * filesystem and the uid range. */
    int (*stop)(struct cb_sandbox *sb, struct cb_error **err);

    /* Optional (NULL: use stop). Like stop, for a sandbox that destroy will
     * remove next: every process is dead when it returns, but the tier may
     * leave the rest of the teardown (unmounting its file systems) to
     * destroy, off the caller's critical path. After it, start is not
     * allowed; only destroy and release are. */
    int (*kill)(struct cb_sandbox *sb, struct cb_error **err);

    /* Stop if needed, then remove everything: mounts, cgroups, uid range,
     * directories. After it only release() is valid. stop now and destroy
     * later, from another thread, is allowed and is how the daemon deletes
     * (answer once everything is dead, tear down after): a stopped
     * sandbox's handle touches nothing shared until destroy. */
    int (*destroy)(struct cb_sandbox *sb, struct cb_error **err);

    int (*stats)(struct cb_sandbox *sb, struct cb_sandbox_stats *out,
                 struct cb_error **err);

    /* Change limits of a live (or stopped) sandbox. */
    int (*set_limits)(struct cb_sandbox *sb, const struct cb_limits *limits,
                      struct cb_error **err);

    /* After a daemon restart: rebuild the handle of sandbox <id> from what the
     * tier persisted in its directory, and find out whether init still lives
     * (pid + start time, checked with a pidfd). */
    int (*adopt)(struct cb_runtime *rt, const char *id, struct cb_sandbox **out,
                 struct cb_error **err);

    enum cb_sandbox_run_state (*state)(struct cb_sandbox *sb);

    /* A pidfd for init (owned by the sandbox handle; do not close). It becomes
     * readable when init exits; -1 when not running. */
    int (*init_pidfd)(struct cb_sandbox *sb);

    /* An O_PATH|O_DIRECTORY fd of the sandbox's root directory as its
     * processes see it (for the files API: resolve paths below it with
     * openat2(RESOLVE_IN_ROOT)). The caller closes it. Running sandboxes only. */
    int (*root_fd)(struct cb_sandbox *sb, int *fd_out, struct cb_error **err);

    /* Host uid/gid that a given in-sandbox uid/gid maps to (files the daemon
     * creates inside the sandbox are chowned to these). */
    int (*map_ids)(struct cb_sandbox *sb, uint32_t uid, uint32_t gid,
                   uid_t *host_uid, gid_t *host_gid);

    /* Run fn(arg) in a short-lived child process that has joined the
     * sandbox's namespaces (user, mount, pid-for-children, net) and dropped to
     * the given in-sandbox uid — for work that must see the sandbox exactly as
     * its processes do (tar extraction, port connects). Returns fn's result
     * (>= 0) or a negative error. The child shares the caller's fd table
     * copy-on-fork, so fds opened before the call are usable inside, and fn
     * may send fds back over a socketpair it was given in arg. */
    int (*run_inside)(struct cb_sandbox *sb, uint32_t uid, uint32_t gid,
                      int (*fn)(void *arg), void *arg, struct cb_error **err);

    void (*release)(struct cb_sandbox *sb);
};

/* ---- runtime (shared host facts) ---- */

int cb_runtime_open(const struct cb_runtime_config *cfg, struct cb_runtime **out,
                    struct cb_error **err);
void cb_runtime_free(struct cb_runtime *rt);
const struct cb_runtime_config *cb_runtime_config(struct cb_runtime *rt);

/* Host facts for /v1/info: "v1"/"v2", and whether disk quotas work (with the
 * reason when not). */
const char *cb_runtime_cgroup_version(struct cb_runtime *rt);
bool cb_runtime_disk_quota(struct cb_runtime *rt, const char **reason);

/* Tier table: cb_tier_lookup("container") etc.; NULL when unknown. */
const struct cb_tier_ops *cb_tier_lookup(const char *name);
extern const struct cb_tier_ops cb_tier_container;

/* Templates: ensure the built-in `host` template exists under
 * state_dir/templates/host (generated skeleton + host binds). */
int cb_template_ensure_host(struct cb_runtime *rt, struct cb_error **err);
/* Does template <name> exist? */
bool cb_template_exists(struct cb_runtime *rt, const char *name);

#endif
