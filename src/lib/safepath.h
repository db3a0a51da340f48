/* safepath.h — internal helpers of the files library (fsops.c, fsarchive.c):
 * confined path resolution below a sandbox root, errno → API error mapping,
 * ownership and stat conversion. Not for use outside src/lib/fs*.c.
 *
 * Security model: the caller (root on the host) holds `root`, an O_PATH fd
 * of the sandbox root, and the sandbox's own code may rewrite anything below
 * it at any moment. So:
 *   - strings are resolved only with openat2(RESOLVE_IN_ROOT |
 *     RESOLVE_NO_MAGICLINKS): "..", absolute symlinks and /proc magic links
 *     all stay below `root`;
 *   - a final component that must not be followed is handled with *at()
 *     calls on an fd of its parent plus the bare name (AT_SYMLINK_NOFOLLOW,
 *     O_NOFOLLOW, unlinkat, renameat2 never follow a final symlink);
 *   - trees are walked with directory fds opened O_NOFOLLOW relative to their
 *     parent fd, never by re-resolving path strings. */
#ifndef CB_SAFEPATH_H
#define CB_SAFEPATH_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "error.h"
#include "fsops.h"

/* openat2(root, path, flags | O_CLOEXEC, mode, RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS). Retries EINTR and, a bounded number of times, the
 * EAGAIN the kernel returns when a concurrent rename could have let ".."
 * escape. Returns an fd or -errno. */
int cb_safepath_open(int root, const char *path, int flags, mode_t mode);

/* Split a normalised sandbox path into its parent and last component, then
 * open the parent as O_PATH|O_DIRECTORY below root. *leaf points into a
 * malloc'd copy returned in *parent_out (free it). Returns the parent fd or
 * -errno. Fails with -EINVAL for "/" and for a last component of "..", which
 * have no name in a parent directory. */
int cb_safepath_open_parent(int root, const char *norm, char **parent_out,
                            const char **leaf);

/* Create every missing directory of the normalised path `norm` (mkdir -p),
 * each created with mkdirat relative to its already-opened parent, then
 * chowned to own and chmod'ed to mode. Returns an O_PATH fd of the final
 * directory or <0 with *err. */
int cb_safepath_mkdirs(int root, const char *norm, uint32_t mode,
                       const struct cb_fs_owner *own, struct cb_error **err);

/* Give a freshly created file or directory (real fd, not O_PATH) its owner
 * and exact mode (the umask does not apply). Returns 0 or -errno. */
int cb_safepath_own(int fd, uint32_t mode, const struct cb_fs_owner *own);

/* Fill *err for a failed syscall on sandbox path `path`, choosing the API
 * kind from the errno (see fsops.h). Returns <0. */
int cb_safepath_error(struct cb_error **err, int code, const char *op,
                      const char *path);

/* Did an open during a walk fail for want of the daemon's resources
 * (EMFILE, ENFILE, ENOMEM) rather than because the tenant changed the
 * entry meanwhile? A walk must then fail, never return a silently partial
 * result (an archive or a listing missing a subtree, a delete that left
 * one). */
static inline bool cb_safepath_out_of_resources(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOMEM;
}

/* Reopen an O_PATH fd as a real fd with `flags` through /proc/self/fd: the
 * kernel hands back the very same inode, so nothing can be swapped in
 * between the type check done on the O_PATH fd and the open for I/O.
 * Returns an fd or -errno. */
int cb_safepath_reopen(int opath_fd, int flags);

/* Refuse kernel pseudo filesystems. The daemon is root in the *initial*
 * user namespace, so a procfs, sysfs or cgroupfs mounted inside the
 * sandbox is, for us, the host kernel's interface: truncating
 * /proc/sys/kernel/core_pattern would set the host's sysctl, reading
 * /proc/kcore would leak host memory, rmdir in a cgroupfs would remove
 * cgroups, writing release_agent would run a host program. A FUSE file
 * system served by sandbox code could block a worker forever. Returns 0
 * when fd lives on an ordinary file system, -EPERM otherwise. */
int cb_safepath_check_fs(int fd);

/* Host id → id seen inside the sandbox (65534 when outside the mapping). */
uint32_t cb_safepath_sandbox_uid(uid_t host, const struct cb_fs_owner *own);
uint32_t cb_safepath_sandbox_gid(gid_t host, const struct cb_fs_owner *own);

/* Fill *out from a struct stat. Takes ownership of path and link_target. */
void cb_safepath_fill_stat(struct cb_fs_stat *out, const struct stat *sb,
                           char *path, char *link_target,
                           const struct cb_fs_owner *own);

/* readlinkat(dirfd, name) into a malloc'd string (NULL on error). */
char *cb_safepath_readlink(int dirfd, const char *name);

/* Join a sandbox directory path and an entry name ("/" + "a" → "/a"). */
char *cb_safepath_join(const char *dir, const char *name);

#endif
