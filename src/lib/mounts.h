/* mounts.h — the mount table of a sandbox, built in the parent as data and
 * executed in the clone child without allocation.
 *
 * The parent (cb_mounts_build) turns the template's binds and the sandbox's
 * paths into an ordered array of steps with every path and option string
 * precomputed; the child (cb_mounts_apply) walks it. Ownership: a
 * struct cb_mount_table owns all its strings; free with cb_mount_table_free. */
#ifndef CB_MOUNTS_H
#define CB_MOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum cb_mount_kind {
    CB_MNT_MOUNT = 1,  /* mount(source, target, fstype, flags, data) */
    CB_MNT_BIND_RO,    /* bind, then remount read-only + nosuid + nodev,
                          keeping the source's locked flags (remount_flags) */
    CB_MNT_MASK_FILE,  /* bind /dev/null over target (if it exists) */
    CB_MNT_MASK_DIR,   /* read-only bind of the runtime's empty directory
                          (source) over target (if it exists) */
    CB_MNT_READONLY,   /* bind target onto itself read-only (if it exists) */
    CB_MNT_MKDIR,      /* a real directory at target: kept if there, else
                          made (symlink or file replaced), chmod to mode */
    CB_MNT_MKFILE,     /* a file at target (a bind mount point): kept if
                          there, else made (symlink or directory replaced) */
    CB_MNT_SYMLINK,    /* symlink(source, target) */
    CB_MNT_ATTACH,     /* move the detached mount fd to target */
    CB_MNT_REMOVE,     /* remove target, a directory or a file (if it exists) */
};

struct cb_mount_step {
    enum cb_mount_kind kind;
    const char *source, *target, *fstype, *data;
    unsigned long flags;         /* mount flags (CB_MNT_MOUNT) */
    unsigned long remount_flags; /* CB_MNT_BIND_RO, CB_MNT_MASK_DIR: locked
                                    flags of the source to keep */
    unsigned mode;               /* CB_MNT_MKDIR */
    int fd;                      /* CB_MNT_ATTACH (the table does not own it) */
    bool optional;               /* skip when source/target is missing */
};

struct cb_mount_table {
    struct cb_mount_step *steps;
    size_t n, cap;
    const char *root; /* the sandbox's rootfs: once it is mounted, apply
                       * walks the steps below it from there (cwd) */
    char **strings; /* every string the steps point to */
    size_t nstrings, capstrings;
};

struct cb_template_bind {
    char *source; /* host path */
    char *target; /* path inside the sandbox */
};

/* Build the table for a sandbox whose merged root will be at rootfs.
 * empty_dir is a host directory the runtime keeps empty, root-owned and
 * 0555 outside every sandbox root: masked directories (/proc/acpi,
 * /sys/firmware, ...) become read-only binds of it, which cost a mount but
 * no superblock (each superblock costs memory in every memory cgroup of
 * the host, see docs/security.md). durable: the overlay syncs its upper
 * (no "volatile"; cb_runtime_config.durable_disks). */
int cb_mounts_build(struct cb_mount_table *t, const char *rootfs,
                    const char *lower, const char *upper, const char *work,
                    const struct cb_template_bind *binds, size_t nbinds,
                    const char *empty_dir, bool durable, struct cb_error **err);
void cb_mount_table_free(struct cb_mount_table *t);
/* Make in a template's root directory the entries the table needs under
 * /dev (mount points, pts, shm, links), so sandboxes of that template
 * create none in their upper layer. Idempotent. 0 or -errno. */
int cb_mounts_make_dev_skeleton(const char *rootfs);
/* Whether rootfs has all of them (an older skeleton has none). */
bool cb_mounts_has_dev_skeleton(const char *rootfs);
/* Show the sandbox its own cgroup at /sys/fs/cgroup, read-only, as Docker
 * does: runtimes size themselves by it (the JVM's heap and CPU count,
 * Node's heap through libuv's constrained memory, Go's GOMAXPROCS), and
 * without it they took the host's memory for theirs and were OOM-killed at
 * the sandbox's limit instead of collecting garbage. Binds of the host's
 * cgroup directories: no superblock (a cgroup mount would make one per
 * namespace). view_dir NULL (v2): sources[0] is bound on /sys/fs/cgroup.
 * Else (v1) view_dir, a root-owned read-only directory with an empty
 * directory for each names[i] (cb_cgroup_make_view_dir), is bound there
 * first and each sources[i] on its names[i]. */
void cb_mounts_show_cgroup(struct cb_mount_table *t, const char *rootfs, const char *view_dir,
                           const char *const *sources, const char *const *names, int n);
/* Attach the detached sysfs mount fd (netns.h) at /sys instead of mounting
 * one there. The caller keeps fd open until the child ran the table. */
void cb_mounts_attach_sysfs(struct cb_mount_table *t, int fd);

/* Child side: run every step; on failure return -errno and set *failed to
 * the index of the step. times (NULL, or t->n entries) receives the
 * CLOCK_MONOTONIC time after each step (profiling). */
int cb_mounts_apply(const struct cb_mount_table *t, size_t *failed, uint64_t *times);
/* Human-readable description of a step for error messages (parent side). */
const char *cb_mount_step_name(const struct cb_mount_step *s);

#endif
