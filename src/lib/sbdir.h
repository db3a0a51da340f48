/* sbdir.h — a sandbox's host directory (state_dir/sandboxes/<id>), made
 * new or recycled from a spare.
 *
 * Why recycle: every sandbox directory holds the same few entries (rootfs/,
 * lower/, disk/, runtime.state, init.log, disk.loop). Making and removing
 * them for each sandbox is inode churn on the state file system, and on
 * ext4 without a journal (this project's build hosts) every new inode is
 * paid for by a linear skip over the inodes freed in the last minutes of
 * its block group (ext4's recently_deleted check): measured 0.2-0.3 ms per
 * new inode after a few seconds of create/delete churn (3.5 ms of a
 * sandbox's 4 ms of layer setup without a disk image). A retired
 * directory is emptied of everything a sandbox left (files truncated, no
 * data of the old sandbox kept) and renamed to
 * sandboxes/.spare-dir-<pid>-<n>; the next create of that process renames
 * it to its id. Renames allocate no inode. When destroys leave too few, a
 * thread of the set makes new ones ahead of time (CB_SBDIR_AHEAD_DEFAULT),
 * with the entries a create would make, so a create allocates none.
 *
 * Thread-safe (one lock per spare set). */
#ifndef CB_SBDIR_H
#define CB_SBDIR_H

#include <stdbool.h>

#include "error.h"

#define CB_SBDIR_SPARES_MAX 64
/* Spares a thread of the set keeps made ahead, when destroys leave too few
 * (CB_SBDIR_AHEAD=N; 0: none made ahead). */
#define CB_SBDIR_AHEAD_DEFAULT 4
#define CB_SBDIR_SPARE_PREFIX ".spare-dir-"
/* The name the sandbox's init listens at in its directory. */
#define CB_SBDIR_SOCKET "init.sock"

struct cb_sbdir_spares;

/* Open a spare set in sandboxes_dir, removing the spares of processes
 * that have exited (spares are private to their process: sbdir.c). max 0
 * turns recycling off (CB_SBDIR_SPARES=0 in the environment does too).
 * layers: sandboxes keep their layers in their directory (no disk quota),
 * so spares made new get the upper layer's skeleton too; without, their
 * layers are in a disk image or on the quota volume, and a sandbox that
 * has none after all (no disk limit) makes the few it needs at create.
 * Never fails. */
struct cb_sbdir_spares *cb_sbdir_open(const char *sandboxes_dir, int max, bool layers);
/* Remove every spare and free the set. */
void cb_sbdir_close(struct cb_sbdir_spares *s);

/* Spares ready to be taken now (made and registered; a spare's directory
 * appears on disk while the maker is still filling it). */
int cb_sbdir_ready(struct cb_sbdir_spares *s);
/* Make the directory dir (mode 0711): a spare renamed into place, else a
 * mkdir. *listener: a listening socket bound at dir/init.sock that came
 * with the spare (the caller's to close), or -1. -errno (-EEXIST when dir
 * exists).
 *
 * Why listeners travel with spares: binding the init's control socket is
 * the one inode every start still made on the state file system (a socket
 * file), 0.1 ms there on ext4 without a journal. A destroy that could take
 * the listener back from its init (pidfd_getfd) retires it with the
 * directory, its name kept; the next sandbox's init listens on it. */
int cb_sbdir_make(struct cb_sbdir_spares *s, const char *dir, int *listener);
/* A sandbox is gone (no process, no mount left): empty dir of everything
 * it held and keep it as a spare, or remove it when the set is full or it
 * cannot be cleaned. listener (-1: none): the socket bound at
 * dir/init.sock, taken over (kept with the spare when it is a listening
 * unix stream socket, its unaccepted connections refused; else closed and
 * init.sock removed). 0 or -errno (of the removal). */
int cb_sbdir_retire(struct cb_sbdir_spares *s, const char *dir, int listener);
/* Bind and listen (backlog 64, mode 0600) at init.sock in the directory
 * dirfd, replacing a name left there. The socket or -errno. */
int cb_sbdir_listen(int dirfd);
/* Check that fd is a listening unix stream socket and refuse the
 * connections queued on it (it is left O_NONBLOCK). 0 or -errno. */
int cb_sbdir_listener_reusable(int fd);

/* Empty the root of a retired sandbox's disk image (dirfd, any kind of
 * directory fd) down to the skeleton the next sandbox's layers reuse, as
 * cb_sbdir_retire does for a sandbox directory: upper/ (its skeleton),
 * work/ and lost+found/, emptied and without extended attributes; nothing
 * of the tenant is left. 0 or -errno (the image is then not reused). */
int cb_sbdir_clean_image(int dirfd);

#endif
