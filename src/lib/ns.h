/* ns.h — start a sandbox's first process in fresh namespaces.
 *
 * The daemon is multi-threaded, so between clone and exec the child may not
 * allocate or take locks: the parent precomputes everything into a
 * struct cb_child_config (paths, mount table, seccomp BPF, argv) and the
 * child only makes syscalls. We clone with CLONE_VM and a small separate
 * stack (cost independent of the daemon's size: no page tables copied) with
 * every signal blocked. The child reports a failed step as {errno, step} on
 * a CLOEXEC sync socket and _exits; a successful exec closes the socket,
 * which is how the parent learns the child is running cellbox-init. */
#ifndef CB_NS_H
#define CB_NS_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "cgroup.h"
#include "error.h"
#include "mounts.h"

struct cb_child_config {
    /* filled by the caller */
    const struct cb_mount_table *mounts;
    const char *rootfs;      /* merged root (target of the overlay) */
    const char *hostname;
    int init_fd;             /* O_PATH fd of the cellbox-init binary */
    int control_fd;          /* listening control socket, kept across exec */
    char *control_arg;       /* the argv element that names control_fd, a buffer of
                                control_arg_size bytes that cb_ns_spawn writes with
                                the number init gets (init_control_fd). NULL: the
                                caller's argv names control_fd itself, and the
                                child keeps that number (a copied fd table) */
    size_t control_arg_size;
    int init_control_fd;     /* out: control_fd's number in the sandbox's init */
    int log_fd;              /* init's stdout/stderr */
    char *const *argv;       /* argv of init, control fd already in it */
    char *const *envp;
    struct rlimit nofile;
    uint64_t keep_caps;
    int last_cap;
    struct sock_fprog seccomp;
    uint32_t id_base;        /* host uid/gid of in-sandbox 0 */
    struct cb_cgroup *cgroup;
    /* The sandbox's disk (quota.h): a detached mount the child moves to
     * disk_target inside its own mount namespace before the overlay is
     * mounted; disk_target NULL = none (disk_fd is then not used). The
     * caller keeps and closes disk_fd. */
    int disk_fd;
    const char *disk_target;
    int disk_errno;          /* out: errno when that move failed, else 0 */
    /* The template's root (the overlay's lower layer): a detached clone
     * (open_tree) that cb_ns_spawn, once the child's uid/gid maps are
     * written, turns into a read-only mount idmapped to the child's user
     * namespace, so the template's host-root files show as the sandbox's
     * root and overlay can copy them up. The child attaches it at
     * lower_target (the mount table's lowerdir). lower_target NULL = none.
     * The caller keeps and closes lower_fd. */
    int lower_fd;
    const char *lower_target;
    int lower_idmap_errno;   /* out: errno when the kernel refused the idmap
                                (the lower layer is then attached as it is,
                                host root showing as nobody), else 0 */
    /* A network namespace made ahead of time (netns.h), or -1: the child
     * is cloned into it instead of a new one (loopback is already up, and
     * the mount table attaches its sysfs). The caller keeps and closes it. */
    int netns_fd;
    int attach_errno;        /* out: errno when attaching a detached mount of
                                the table (the spare's sysfs) failed, else 0 */
    bool no_time_ns;         /* keep the host's clocks: this kernel leaves a
                                process in its old time namespace at exec
                                (cb_ns_probe_time_ns) */
    int time_ns_errno;       /* out: errno when the sandbox could not get its
                                own clocks (no time namespace or offsets
                                refused: it runs on the host's), else 0 */
    /* Called by the parent once the child runs its setup steps (released,
     * with a table of its own: descriptors the call opens are not the
     * child's), before it waits for the child's exec: work that needs the
     * child started but not done (cellbox: connect to init's listener and
     * send HELLO, so init finds it waiting when it starts). The child still
     * shares the calling thread's errno: raw system calls only, no libc
     * call that may write errno, malloc and free included (rawsys.h).
     * NULL: none. */
    void (*meanwhile)(void *arg);
    void *meanwhile_arg;
    unsigned weaken;         /* CB_WEAKEN_* bits (tier.h), test control runs
                                only: the caller checked allow_weaken */
    /* used internally */
    int sync_fd;
    int parent_sync_fd; /* the parent's end: the child closes its copy */
    int null_fd;
    int timens_fd;          /* the child's /proc/self/timens_offsets */
    struct timespec clock_base[2]; /* CLOCK_MONOTONIC, CLOCK_BOOTTIME just before
                                      the clone: the time namespace's zero */
    int timens_open_errno;
    int cgroup_fds[CB_CGROUP_MAX_JOIN]; /* v1 "tasks" files the child joins itself */
    int ncgroup_fds;
    int cgroup_into_fd;     /* v2: the cgroup clone3 starts the child in, or -1 */
    bool joined_at_clone;   /* it did: the parent has no pid to write */
    unsigned fd_floor;      /* CLONE_FILES spawn: the child keeps only fds below
                               this (the reserved slots), 0: a copied table */
    /* CLOCK_MONOTONIC after each child step. The child shares our memory
     * (CLONE_VM) until exec, so it records here without any syscall but the
     * vDSO clock; cb_ns_spawn prints them when CB_TRACE_START is set. */
    uint64_t clone_ns, step_ns[24];
    /* Ours while the child waits for "g": the clone returned, the id maps
     * and the lower layer's idmap are written, "g" sent (the clone's own
     * cost, the namespaces, is otherwise hidden in "wait for parent"). */
    uint64_t parent_ns[4];
    uint64_t *mount_ns; /* NULL, or one per mount step (CB_TRACE_START) */
};

/* Reserve the low fd slots spawns hand their child's descriptors in
 * (ns.c, "fd slots"); a runtime calls it when it opens, while the
 * process's lowest fds are still free. Idempotent; never fails (no slots:
 * each child copies the whole table, as it always did). */
void cb_ns_reserve_fd_slots(void);

/* Does execve move a process into the time namespace it made for its
 * children (unshare(CLONE_NEWTIME))? Sandboxes rely on it: init is exec'd
 * right after the unshare and spawns with CLONE_VM, which the kernel
 * refuses (EINVAL) to a process whose own time namespace differs from its
 * children's. Linux 6.1 (Debian 12's kernel) does not move it; later ones
 * do. Runs init_path --probe-time-ns in a forked child once: 1 yes, 0 no,
 * -errno when it could not tell (no time namespaces: CLONE_NEWTIME
 * refused, or the probe did not run). Root only. */
int cb_ns_probe_time_ns(const char *init_path);
/* Clone the child, map its ids, put it in its cgroups, let it run its setup
 * steps and wait until it exec'd init. Returns 0 with *pid_out and
 * *pidfd_out (CLOEXEC) set; on failure the child is reaped and *err names
 * the failed step. */
/* The error of a clone of a sandbox's namespaces that failed with e, said
 * so a host admin knows what to change: ENOSPC is a limit of the host's
 * (/proc/sys/user/max_*_namespaces under sysctl_dir, those at 0 named),
 * EPERM/EACCES a host that refuses namespaces to cellboxd. Both are
 * CB_ERR_UNAVAILABLE; anything else CB_ERR_INTERNAL. Returns -1. */
int cb_ns_clone_error(int e, const char *sysctl_dir, struct cb_error **err);

int cb_ns_spawn(struct cb_child_config *cfg, pid_t *pid_out, int *pidfd_out,
                struct cb_error **err);

/* Join the user, mount and network namespaces of pid (through its pidfd)
 * and chroot into its root: used by run_inside. Child side. -errno. */
int cb_ns_enter(int pidfd, pid_t pid);

#endif
