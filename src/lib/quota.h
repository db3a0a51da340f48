/* quota.h — per-sandbox disk quota with XFS project quotas.
 *
 * If state_dir is on XFS mounted with prjquota it is used directly;
 * otherwise a sparse image state_dir/volume.img is formatted as XFS and
 * mounted (loop device, autoclear) at state_dir/volume with prjquota. The
 * volume is never unmounted by cellbox (sandboxes outlive the daemon);
 * whoever removes the state directory unmounts it (tests: umount -l). */
#ifndef CB_QUOTA_H
#define CB_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define CB_QUOTA_DEFAULT_VOLUME (64ull << 30)

struct cb_quota {
    bool enabled;
    char *volume_dir; /* where sandboxes' layers live: state_dir/volume */
    char *reason;     /* why quotas are off (when !enabled) */
};

/* Never fails: on any problem q->enabled is false and q->reason says why. */
void cb_quota_open(struct cb_quota *q, const char *state_dir, uint64_t volume_bytes,
                   bool disabled);
void cb_quota_clear(struct cb_quota *q);
/* Tag dir (and everything created below it) with project id and set its
 * limit (0 bytes = no limit). */
int cb_quota_set(struct cb_quota *q, const char *dir, uint32_t project,
                 uint64_t bytes, struct cb_error **err);
/* Bytes used by project, or -1. */
int64_t cb_quota_used(struct cb_quota *q, uint32_t project);

#endif
