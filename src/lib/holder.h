/* holder.h — references to files kept outside the process's fd table.
 *
 * Why: an fd in the daemon's table is copied into every child it clones
 * (a sandbox's first process, run_inside, mkfs) until the child closes it.
 * When the fd is the last reference to something whose release is costly
 * (a dead sandbox's overlay and disk image: unmounting syncs the image),
 * and the daemon closes its own copy while a child still holds one, the
 * child pays for the release in the middle of creating another sandbox
 * (measured: close_range in a new sandbox's setup at p90 17 ms under
 * create/delete churn). The holder is one thread with a private fd table
 * (unshare(CLONE_FILES)): what it opens is in no other table, and what it
 * closes is released in that thread.
 *
 * Thread-safe. Each call waits for the holder thread (a few microseconds
 * when idle). A close hands the reference back to the calling thread
 * (SCM_RIGHTS over a socket pair) and releases it there, so costly
 * releases run in parallel, one per closing thread. */
#ifndef CB_HOLDER_H
#define CB_HOLDER_H

/* Open path (O_PATH | O_DIRECTORY | O_CLOEXEC) in the holder's table.
 * Returns a handle >= 0 or -errno. */
int cb_holder_open(const char *path);
/* Close a handle cb_holder_open returned (ignored when < 0). */
void cb_holder_close(int handle);
/* Give up a handle and get its reference as an fd (O_CLOEXEC) in the
 * caller's table instead, the caller's to close; -1 if handle < 0 or the
 * holder could not send it (the reference is then released). */
int cb_holder_take(int handle);

#endif
