/* idmap.h — per-sandbox host uid/gid ranges.
 *
 * Every sandbox gets its own range of 65536 host ids: in-sandbox id N is host
 * id base + slot*65536 + N. Ranges never overlap, so a process escaping one
 * sandbox's user namespace owns nothing of another sandbox (or of the host).
 * A slot is taken by creating state_dir/uidslots/<slot> with O_EXCL (atomic
 * across threads and processes) or by renaming a released one's file back
 * (RENAME_NOREPLACE, as atomic), and released by renaming its file to
 * .free-<slot>: the file, an inode on the state file system, is kept for
 * the slot's next use instead of made again (each new inode costs 0.1-0.3
 * ms on ext4 without a journal after churn). Either way a slot is taken
 * exactly while <slot> exists. */
#ifndef CB_IDMAP_H
#define CB_IDMAP_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define CB_IDMAP_RANGE 65536u

/* Take the lowest free slot; writes the owner id into the slot file. */
int cb_idmap_alloc_slot(int slots_dirfd, uint32_t nslots, const char *owner,
                        uint32_t *slot_out, struct cb_error **err);
/* Same, trying slots from start on (wrapping): with start just past the
 * last slot handed out, a create does not probe every slot in use (one
 * failed O_EXCL open each) before finding a free one. The O_EXCL create
 * stays the only arbiter, so a stale or racing start is harmless. */
int cb_idmap_alloc_slot_from(int slots_dirfd, uint32_t nslots, uint32_t start,
                             const char *owner, uint32_t *slot_out, struct cb_error **err);
/* Release a slot (ENOENT is not an error: release is idempotent). */
int cb_idmap_release_slot(int slots_dirfd, uint32_t slot, struct cb_error **err);
/* Take slot again if it is released (its .free-<slot> file renamed back):
 * 0 and the owner written, -errno when it is not (-ENOENT: no released
 * file, -EEXIST: taken meanwhile). */
int cb_idmap_reuse_slot(int slots_dirfd, uint32_t slot, const char *owner);
/* Rewrite the owner recorded in a taken slot (a warm-pool sandbox claimed
 * under its real id). Informational only: the file's existence is the
 * reservation. Returns -errno. */
int cb_idmap_set_owner(int slots_dirfd, uint32_t slot, const char *owner);
/* Host id of in-sandbox id 0 for a slot. */
uint32_t cb_idmap_base(uint32_t uid_base, uint32_t slot);
/* Write uid_map and gid_map ("0 <base> 65536") of a child. The parent is
 * privileged, so setgroups stays "allow": the child clears its supplementary
 * groups itself (setgroups "deny" would instead freeze the daemon's groups,
 * host gid 0 included, into every sandbox process). */
int cb_idmap_write_maps(pid_t pid, uint32_t base, struct cb_error **err);

#endif
