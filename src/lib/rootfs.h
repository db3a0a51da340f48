/* rootfs.h — sandbox root file systems: the `host` template skeleton, the
 * per-sandbox upper layer, and removing trees without following symlinks. */
#ifndef CB_ROOTFS_H
#define CB_ROOTFS_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "mounts.h"

/* Generate the host template's skeleton into rootfs_dir (must not exist or
 * be empty) with a mount point for every bind. */
int cb_rootfs_make_host_skeleton(const char *rootfs_dir,
                                 const struct cb_template_bind *binds, size_t nbinds,
                                 struct cb_error **err);

/* Copy the host's /etc files every program expects (protocols, services,
 * shells, os-release, ...) into the skeleton at rootfs_dir where missing,
 * and write our own profile and bash.bashrc there (never the host's).
 * Part of make_host_skeleton; also run on an existing skeleton, so one made
 * by an older version gets them. -errno on failure. */
int cb_rootfs_add_host_etc(const char *rootfs_dir);

/* Pre-create what overlay must take from the upper layer (owner and mode of
 * home/user, workspace, tmp, root, /etc/hostname, /etc/hosts). base is the
 * host id of in-sandbox 0. Idempotent. */
int cb_rootfs_prepare_upper(const char *upper, const char *work, uint32_t base,
                            const char *hostname, struct cb_error **err);

/* The same inside the directory layer_fd (e.g. the root of a detached
 * mount of a sandbox's disk image): makes upper/ and work/ there. */
int cb_rootfs_prepare_layers_at(int layer_fd, uint32_t base, const char *hostname,
                                struct cb_error **err);

/* rm -rf that never follows a symlink and never leaves the tree: every
 * step is openat/unlinkat relative to a directory fd opened O_NOFOLLOW.
 * ENOENT for path is success. -errno on failure. */
int cb_rootfs_remove_tree(const char *path);
int cb_rootfs_remove_tree_at(int dirfd, const char *name);

/* Call fn(dfd, name, arg) for every entry of the directory open at dfd but
 * "." and "..", from its start, read with getdents64 on dfd itself (no
 * second descriptor, none of fdopendir's fstat and fcntl calls). fn may
 * remove the entry it is given. Stops at the first nonzero return of fn
 * and returns it; 0 at the end; -errno if the directory cannot be read. */
int cb_dir_each(int dfd, int (*fn)(int dfd, const char *name, void *arg), void *arg);

#endif
