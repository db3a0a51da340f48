/* cgroup.h — per-sandbox resource limits, cgroup v1 and v2 behind one vtable.
 *
 * A manager is opened on a hierarchy root ("/sys/fs/cgroup" on real hosts,
 * a temporary directory in unit tests) and a parent cgroup name ("cellbox").
 * Sandbox cgroups live at <root>/<parent>/<id> (v2) or
 * <root>/<controller>/<parent>/<id> for each v1 controller we use (memory,
 * cpu, cpuacct, pids, freezer). The manager never mounts or remounts
 * anything: it only mkdirs, writes control files, rmdirs, and renames v1
 * memory cgroups to and from spares (see "Recycled memory cgroups").
 *
 * Ownership: cb_cgroup_manager_open() returns a manager freed with
 * cb_cgroup_manager_free(); a struct cb_cgroup is freed with cb_cgroup_free()
 * (memory only: the cgroup directories stay until cb_cgroup_destroy()). */
#ifndef CB_CGROUP_H
#define CB_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "tier.h"

enum cb_cgroup_version { CB_CGROUP_V1 = 1, CB_CGROUP_V2 = 2 };

#define CB_CGROUP_MAX_DIRS 5 /* v1 controllers we join */
/* What a sandbox joins at most: its own directories and, on v1, the
 * cpuset cgroup all sandboxes share (cb_cgroup_manager.cpuset). */
#define CB_CGROUP_MAX_JOIN (CB_CGROUP_MAX_DIRS + 1)
#define CB_CGROUP_DEFAULT_PIDS 512

struct cb_cgroup {
    const struct cb_cgroup_manager *mgr;
    int ndirs;
    char *dirs[CB_CGROUP_MAX_DIRS]; /* absolute paths; dirs[0] is v2's only dir */
    /* v1: index of each controller's dir in dirs[], -1 when absent */
    int memory, cpu, cpuacct, pids, freezer;
};

/* What a sandbox is shown of its own cgroup at /sys/fs/cgroup (mounts.h
 * cb_mounts_show_cgroup). v2: its directory. v1: the directories of the
 * hierarchies of memory, cpu and cpuacct, and the shared cpuset cgroup
 * (what runtimes read: the JVM wants all four), each under its
 * hierarchy's name ("memory", "cpu,cpuacct"); the others are not shown.
 * Strings borrowed from cg and its manager. */
#define CB_CGROUP_VIEW_MAX 4
struct cb_cgroup_view {
    int n;
    const char *sources[CB_CGROUP_VIEW_MAX];
    const char *names[CB_CGROUP_VIEW_MAX]; /* v1 only */
};
void cb_cgroup_view(const struct cb_cgroup *cg, struct cb_cgroup_view *v);
/* v1: make dir (root-owned, 0555) with an empty directory for each name
 * cb_cgroup_view gives, and a link for each shown controller whose name
 * differs from its hierarchy's (cpu -> cpu,cpuacct), as on the host.
 * Entries are only added: sandboxes running have it bound. 0 or -errno;
 * v2 needs none (0). */
int cb_cgroup_make_view_dir(const struct cb_cgroup_manager *m, const char *dir);

struct cb_cgroup_ops {
    const char *version; /* "v1" / "v2" */
    /* Fill cg->dirs for sandbox id (no filesystem access). */
    void (*layout)(const struct cb_cgroup_manager *m, const char *id,
                   struct cb_cgroup *cg);
    /* Make the parent cgroup(s) usable (v2: enable controllers) and note
     * in m what layout needs, so that layout touches no file system. */
    int (*prepare_parent)(struct cb_cgroup_manager *m, struct cb_error **err);
    int (*set_limits)(struct cb_cgroup *cg, const struct cb_limits *l,
                      struct cb_error **err);
    int (*freeze)(struct cb_cgroup *cg, bool frozen, struct cb_error **err);
    int (*stats)(struct cb_cgroup *cg, struct cb_sandbox_stats *out,
                 struct cb_error **err);
    /* Send SIGKILL to every process of the cgroup. */
    int (*kill_all)(struct cb_cgroup *cg, struct cb_error **err);
    /* Can the empty cgroup dir of hierarchy h go to another sandbox? Resets
     * what can be reset; false when something that cannot would show the
     * next sandbox its predecessor. NULL: no recycling (v2 cannot rename). */
    bool (*spare_clean)(const struct cb_cgroup_manager *m, int h, const char *dir);
};

struct cb_cgroup_spares;
struct cb_cgroup_maker;

struct cb_cgroup_manager {
    const struct cb_cgroup_ops *ops;
    char *root;   /* hierarchy root */
    char *parent; /* relative parent cgroup */
    /* v1: emptied cgroups kept for reuse, one set per hierarchy (hier[]) */
    struct cb_cgroup_spares *spares[CB_CGROUP_MAX_DIRS];
    struct cb_cgroup_maker *maker; /* cb_cgroup_spares_ahead, or NULL */
    /* v1, resolved once by prepare_parent: the real path of each distinct
     * controller hierarchy, and for each controller (memory, cpu, cpuacct,
     * pids, freezer) the index of its hierarchy in hier[] (-1: absent). */
    int nhier;
    char *hier[CB_CGROUP_MAX_DIRS];
    int hier_of[CB_CGROUP_MAX_DIRS];
    /* Set by prepare_parent when the host does not charge swap to memory
     * cgroups (v1 without memory.memsw.*, v2 without memory.swap.max: a
     * kernel without CONFIG_SWAP, or booted with swapaccount=0). A limit
     * then caps RAM only; set_limits writes what the host has instead of
     * failing every create on a missing file. */
    bool swap_uncapped;
    /* v1: <cpuset hierarchy>/<parent>, the one cpuset cgroup every sandbox
     * joins, or NULL (no cpuset hierarchy of its own, or it could not be
     * made usable). Not per sandbox: sandboxes are not confined to CPUs,
     * it only gives them a cpuset directory of their own to be shown,
     * which the JVM's v1 container support requires before it reads the
     * memory limit at all (without it the JVM sized its heap by the host:
     * 6 GiB in a 512 MiB sandbox). One shared cgroup costs no cgroup per
     * sandbox; a v1 cgroup.procs lists only the processes of the
     * reader's PID namespace, so a sandbox sees none of the others'. */
    char *cpuset;
    char *cpuset_hier; /* the real path of its hierarchy */
};

/* Recycled cgroups (v1 only).
 *
 * Removing a memory cgroup costs the kernel a walk of every list_lru in the
 * system (memcg_reparent_list_lrus, two per superblock) under the global
 * list_lrus_mutex, which every mount of a new superblock also takes. With
 * 1,500 sandboxes (each with several superblocks) that walk was ~16% of
 * both CPUs during create/destroy churn, and mounts in starting sandboxes
 * spun on the mutex behind it. So cb_cgroup_destroy() renames an empty,
 * clean memory cgroup to <parent>/.spare-<pid>-<n> (a name no sandbox id
 * can take: ids have no '.' or '-') instead of removing it, and
 * cb_cgroup_create() renames a spare to the new id instead of mkdir.
 * The other hierarchies (cpu, cpuacct, pids, freezer) are recycled the
 * same way: a mkdir there allocates the controller's state (per-CPU
 * counters, pressure tracking, its files) and the rmdir frees it in a
 * kernel worker, ~110-170 us per sandbox for four hierarchies here
 * against ~40-80 us for renames.
 * A cgroup is recycled only when nothing in it can tell one sandbox from
 * the next (the hierarchy's spare_clean): no process; memory: no OOM kill
 * recorded (that counter cannot be reset), little memory still charged,
 * peak and fail counters reset; cpuacct: usage reset to 0; pids: no fork
 * ever refused at pids.max (pids.events cannot be reset); freezer:
 * THAWED. Limits are written again by every create. At most
 * CB_CGROUP_SPARES_MAX are kept per hierarchy; the manager adopts spares
 * left by an earlier process when it opens, and removes its own when
 * freed. CB_CGROUP_SPARES=0 in the environment turns recycling off
 * (before/after comparisons; an escape hatch). */
#define CB_CGROUP_SPARES_MAX 64
#define CB_CGROUP_SPARE_PREFIX ".spare-"
/* Memory still charged to an empty cgroup (page cache of files it read)
 * above which it is removed rather than handed to another sandbox. */
#define CB_CGROUP_SPARE_MAX_CHARGE (16ull << 20)
/* Spares currently held, in the hierarchy that holds most (for tests and
 * stats: one destroyed sandbox adds one). */
int cb_cgroup_spare_count(const struct cb_cgroup_manager *m);
/* Spares currently held in the hierarchy that holds fewest. */
int cb_cgroup_spare_count_min(const struct cb_cgroup_manager *m);

/* Made ahead (v1, with recycling on): a thread of the manager keeps at
 * least n spares ready in every hierarchy, made with mkdir, so that a
 * create that finds no destroyed sandbox's cgroups (a burst of creates, a
 * fresh daemon) renames instead of making them. A memory cgroup's mkdir
 * allocates its per-CPU statistics and its shrinker maps, which are sized
 * by the most superblocks alive at once since boot: 0.4-1.2 ms on a host
 * that once ran 10,000 sandboxes, under the kernel's global cgroup mutex.
 * The cost moves to the thread; n memory cgroups are held in advance
 * (their memory counts for the daemon, see docs/operations.md).
 * CB_CGROUP_AHEAD=N in the environment overrides n (0: none). Stopped by
 * cb_cgroup_manager_free. No-op on v2 (no spares) or when recycling is
 * off (CB_CGROUP_SPARES=0). */
#define CB_CGROUP_AHEAD_DEFAULT 4
void cb_cgroup_spares_ahead(struct cb_cgroup_manager *m, int n);

/* Which version is mounted at root: v2 only when root itself is a cgroup2
 * filesystem with controllers (a hybrid host's empty v2 at root/unified does
 * not count). */
enum cb_cgroup_version cb_cgroup_detect(const char *root);

/* Open a manager of a given version (tests pass a fake tree as root). */
int cb_cgroup_manager_open(enum cb_cgroup_version v, const char *root,
                           const char *parent, struct cb_cgroup_manager **out,
                           struct cb_error **err);
void cb_cgroup_manager_free(struct cb_cgroup_manager *m);

/* Create the sandbox's cgroup directories (EEXIST is fine: restart after
 * stop reuses them) and apply limits. */
int cb_cgroup_create(const struct cb_cgroup_manager *m, const char *id,
                     const struct cb_limits *limits, struct cb_cgroup **out,
                     struct cb_error **err);
/* Can a sandbox's cgroup directories be renamed (a claim under another
 * id)? v1: yes; v2 refuses renames (EPERM, cgroup_rename on the default
 * hierarchy). */
bool cb_cgroup_can_rename(const struct cb_cgroup_manager *m);
/* Build the handle of an existing sandbox cgroup (adopt) without touching it. */
struct cb_cgroup *cb_cgroup_open(const struct cb_cgroup_manager *m, const char *id);
/* Move a process into every directory of the cgroup. */
int cb_cgroup_attach(struct cb_cgroup *cg, pid_t pid, struct cb_error **err);
/* v1 fast path: open each hierarchy's "tasks" file for writing (O_CLOEXEC)
 * into fds[]; returns how many (0 on v2, where the caller uses
 * cb_cgroup_attach). A thread that writes "0" to such an fd moves itself,
 * and a thread moving itself skips the kernel's global threadgroup rwsem,
 * whose write side waits for an RCU grace period (1-16 ms measured here)
 * on every cgroup.procs write of another pid. The kernel checks the
 * credentials the file was opened with, so a child that already dropped
 * into its user namespace can still use fds its root parent opened. */
int cb_cgroup_open_join_fds(struct cb_cgroup *cg, int fds[CB_CGROUP_MAX_JOIN],
                            struct cb_error **err);
/* v2: the sandbox's cgroup directory opened for clone3's CLONE_INTO_CGROUP
 * (clone3.h says why), O_CLOEXEC; -EOPNOTSUPP on v1 (its sandboxes join
 * through cb_cgroup_open_join_fds), else -errno. */
int cb_cgroup_open_clone_into_fd(struct cb_cgroup *cg);
/* Number of processes in the cgroup (0 = empty), or -1 on error. */
int cb_cgroup_count_procs(struct cb_cgroup *cg);
/* Kill everything, wait (up to timeout_ms) until empty, rmdir all dirs. */
int cb_cgroup_destroy(struct cb_cgroup *cg, int timeout_ms, struct cb_error **err);
void cb_cgroup_free(struct cb_cgroup *cg);

/* Helpers shared by the v1/v2 back ends (cgroup.c). */
int cb_cgroup_write(const char *dir, const char *file, const char *value,
                    struct cb_error **err);
/* Write value unless the file already reads exactly that. Some writes cost
 * the kernel a walk of every cgroup: cpu.cfs_period_us and cpu.cfs_quota_us
 * check the bandwidth of the whole task-group tree (__cfs_schedulable), so
 * rewriting the defaults of a fresh cgroup grew with the sandbox count. */
int cb_cgroup_write_changed(const char *dir, const char *file, const char *value,
                            struct cb_error **err);
int cb_cgroup_read(const char *dir, const char *file, char *buf, size_t size);
int cb_cgroup_read_u64(const char *dir, const char *file, uint64_t *out);
/* Value of "key N" line in a flat-keyed file; 0 when found. */
int cb_cgroup_read_key(const char *dir, const char *file, const char *key,
                       uint64_t *out);
int cb_cgroup_kill_procs(const char *dir);

extern const struct cb_cgroup_ops cb_cgroup_v1_ops;
extern const struct cb_cgroup_ops cb_cgroup_v2_ops;

#endif
