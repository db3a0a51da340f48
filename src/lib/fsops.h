/* fsops.h — file operations inside a sandbox's root, for the files API.
 *
 * Every path given here is a path *inside* the sandbox ("/workspace/a.py",
 * relative paths are taken from "/"). It is resolved below `root` (an
 * O_PATH directory fd of the sandbox root, see tier.h root_fd) with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), component by component
 * where a final component must not be followed, so no symlink, `..`, or
 * mount planted by sandbox code can make the daemon (root on the host)
 * touch a file outside the sandbox. A symlink swapped in during an
 * operation changes nothing: every step works on fds, never on host paths.
 *
 * All functions are blocking (run them on a worker thread), return 0 / an
 * fd / a count on success and a negative value with *err filled on failure:
 * kind NOT_FOUND (ENOENT), BAD_REQUEST (bad path, wrong type, EEXIST when
 * not allowed, ELOOP), CONFLICT (not empty), LIMIT (EDQUOT/ENOSPC:
 * "disk quota exceeded"), TOO_LARGE, INTERNAL otherwise. Messages name the
 * sandbox path, never a host path.
 *
 * Files and directories the daemon creates are chowned to (owner_uid,
 * owner_gid): the *host* ids of the in-sandbox user (tier.h map_ids). */
#ifndef CB_FSOPS_H
#define CB_FSOPS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define CB_FS_MAX_PATH 4096
#define CB_FS_MAX_LIST 100000 /* entries one list call returns at most */

enum cb_fs_type {
    CB_FS_FILE = 1,
    CB_FS_DIR,
    CB_FS_SYMLINK,
    CB_FS_OTHER,
};

struct cb_fs_stat {
    char *path;        /* normalised sandbox path, malloc'd */
    enum cb_fs_type type;
    uint64_t size;
    uint32_t mode;     /* permission bits (07777) */
    double mtime;      /* unix seconds */
    uint32_t uid, gid; /* as seen inside the sandbox (host id minus range base) */
    char *link_target; /* symlinks only, malloc'd; NULL otherwise */
};
void cb_fs_stat_clear(struct cb_fs_stat *st);

struct cb_fs_owner {
    uid_t uid; gid_t gid;   /* host ids for new files */
    uid_t base_uid;         /* host uid of in-sandbox uid 0 (to report in-sandbox ids) */
    gid_t base_gid;
};

/* Normalise a sandbox path: must be non-empty, <= CB_FS_MAX_PATH, no NUL;
 * collapses "//" and "."; keeps ".." (resolution confines it). Returns a
 * malloc'd absolute path or NULL with *err (BAD_REQUEST). */
char *cb_fs_normalize(const char *path, struct cb_error **err);

/* Open a regular file for reading; fills *st when st != NULL. Returns fd. */
int cb_fs_open_read(int root, const char *path, const struct cb_fs_owner *own,
                    struct cb_fs_stat *st, struct cb_error **err);

/* Create (or truncate) a regular file for writing and return its fd.
 * mkdirs creates missing parents (owned by own). An existing symlink as the
 * final component is replaced, never followed. */
int cb_fs_open_write(int root, const char *path, uint32_t mode, bool mkdirs,
                     const struct cb_fs_owner *own, struct cb_error **err);

int cb_fs_stat(int root, const char *path, const struct cb_fs_owner *own,
               struct cb_fs_stat *out, struct cb_error **err);

/* List a directory down to depth (1 = its entries). *items is a malloc'd
 * array of *count stats (free each with cb_fs_stat_clear, then the array).
 * Symlinks are listed, never descended. */
int cb_fs_list(int root, const char *path, int depth,
               const struct cb_fs_owner *own, struct cb_fs_stat **items,
               size_t *count, struct cb_error **err);

int cb_fs_mkdir(int root, const char *path, bool parents, uint32_t mode,
                const struct cb_fs_owner *own, struct cb_error **err);
int cb_fs_move(int root, const char *from, const char *to,
               struct cb_error **err);
/* Remove a file, symlink or (recursive) directory tree; never follows
 * symlinks while descending. */
int cb_fs_remove(int root, const char *path, bool recursive,
                 struct cb_error **err);

/* Extract a tar stream read from in_fd into directory `dir` (created when
 * missing). Members with absolute paths or `..` stay inside `dir` or are
 * refused; symlinks are created as they are but never followed by later
 * members; hard links only to files already inside `dir`; device nodes,
 * fifos and sockets are skipped. At most max_bytes of file data and
 * max_entries entries (0 = no limit beyond the disk quota). Returns the
 * number of entries written. */
int cb_fs_archive_extract(int root, const char *dir, int in_fd,
                          const struct cb_fs_owner *own, uint64_t max_bytes,
                          uint64_t max_entries, struct cb_error **err);

/* Write a tar (ustar/pax) of `path` (file or directory tree, symlinks stored
 * as symlinks) to out_fd. Returns 0. */
int cb_fs_archive_create(int root, const char *path, int out_fd,
                         struct cb_error **err);

/* Watching: an inotify instance on a directory (and its subdirectories when
 * recursive, including ones created later). The fd becomes readable when
 * events are pending; cb_fs_watch_read decodes them. */
enum cb_fs_event_type { CB_FS_EV_CREATE = 1, CB_FS_EV_MODIFY, CB_FS_EV_DELETE, CB_FS_EV_MOVE };
struct cb_fs_event {
    enum cb_fs_event_type type;
    char *path; /* sandbox path, malloc'd */
};
struct cb_fs_watch;
int cb_fs_watch_open(int root, const char *path, bool recursive,
                     struct cb_fs_watch **out, struct cb_error **err);
int cb_fs_watch_fd(struct cb_fs_watch *w);
/* Non-blocking: decode pending events into *events (malloc'd array); returns
 * the count (0 when none are pending). */
int cb_fs_watch_read(struct cb_fs_watch *w, struct cb_fs_event **events,
                     struct cb_error **err);
void cb_fs_events_free(struct cb_fs_event *events, int count);
void cb_fs_watch_close(struct cb_fs_watch *w);

/* Added by the files library: cb_fs_archive_create with the ids stored in
 * the tar as seen inside the sandbox (host id minus own->base_uid/gid;
 * 65534 outside the range). cb_fs_archive_create has no owner and stores
 * uid/gid 0. */
int cb_fs_archive_create_as(int root, const char *path, int out_fd,
                            const struct cb_fs_owner *own, struct cb_error **err);

#endif
