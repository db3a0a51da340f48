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
    bool enabled;     /* XFS project quotas on the shared volume */
    bool images;      /* fallback: one size-limited ext4 image per sandbox */
    char *volume_dir; /* where sandboxes' layers live: state_dir/volume */
    char *state_dir;
    char *reason;     /* why quotas are off (when neither works) */
};

/* ---- fallback: a per-sandbox filesystem image ----
 *
 * When project quotas are unavailable (a kernel without CONFIG_QUOTA, as on
 * these build hosts), each sandbox with a disk limit gets a sparse file
 * <dir>/disk.img of exactly disk_bytes, formatted ext4 and mounted at
 * <dir>/disk (loop device with autoclear; nosuid, nodev); its upper and
 * work directories live inside. Filling it gives ENOSPC inside that
 * sandbox only. The image is sparse: the host file system must have room
 * for what sandboxes really write (see docs/operations.md). The mount is in
 * the daemon's mount namespace, outlives the daemon (sandboxes do) and is
 * removed by cb_quota_image_remove at destroy. */
#define CB_QUOTA_IMAGE_DIR "disk"
int cb_quota_image_create(struct cb_quota *q, const char *dir, uint64_t bytes,
                          struct cb_error **err);
/* Mount an existing <dir>/disk.img at <dir>/disk if not mounted yet (start
 * of a stopped sandbox after a host reboot). */
int cb_quota_image_mount(struct cb_quota *q, const char *dir, struct cb_error **err);
/* Unmount <dir>/disk (if mounted) and delete the image. -errno. */
int cb_quota_image_remove(const char *dir);
/* Bytes used in the image mounted at mnt, or -1. */
int64_t cb_quota_image_used(const char *mnt);

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
