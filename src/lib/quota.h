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
    bool host_mounts; /* images are mounted in the daemon's namespace: the
                         kernel refused moving a detached mount into a
                         sandbox's, or CB_DISK_HOST_MOUNT=1 asked for it */
    char *volume_dir; /* where sandboxes' layers live: state_dir/volume */
    char *state_dir;
    char *reason;     /* why quotas are off (when neither works) */
    bool durable;     /* images mounted with barriers (cb_runtime_config.durable_disks) */
    struct cb_image_spares *spares; /* images made ahead (cb_quota_image_take) */
};

/* ---- fallback: a per-sandbox filesystem image ----
 *
 * When project quotas are unavailable (a kernel without CONFIG_QUOTA, as on
 * these build hosts), each sandbox with a disk limit gets a sparse file
 * <dir>/disk.img of exactly disk_bytes (rounded down to whole MiB), a copy
 * of a golden ext4 image formatted once per size (state_dir/images/), with
 * its upper and work directories inside. Filling it gives ENOSPC inside that
 * sandbox only. The image is sparse: the host file system must have room
 * for what sandboxes really write (see docs/operations.md).
 *
 * The image is mounted detached (cb_quota_image_open: loop device with
 * autoclear, nosuid, nodev) and the sandbox's first process moves that
 * mount into its own mount namespace at <dir>/disk (ns.h disk_fd): the
 * host's mount namespace never holds it, so it does not grow with the
 * number of sandboxes, and the mount, then the loop device, go when the
 * sandbox's mount namespace dies. Where that is refused, the fallback is a
 * mount at <dir>/disk in the daemon's namespace (cb_quota_image_mount),
 * which outlives the daemon and is removed by cb_quota_image_remove. */
#define CB_QUOTA_IMAGE_DIR "disk"
/* Make <dir>/disk.img and the mount point <dir>/disk; mounts nothing. */
int cb_quota_image_create(struct cb_quota *q, const char *dir, uint64_t bytes,
                          struct cb_error **err);
/* Attach <dir>/disk.img to a loop device and mount it detached. Waits (up
 * to 5 s) while an earlier loop device still holds the image. Returns a
 * mount fd (O_CLOEXEC) the caller owns, or -1 with *err. */
int cb_quota_image_open(struct cb_quota *q, const char *dir, struct cb_error **err);
/* Mount <dir>/disk.img at <dir>/disk in the caller's mount namespace unless
 * something is mounted there already (the host-namespace fallback). */
int cb_quota_image_mount(struct cb_quota *q, const char *dir, struct cb_error **err);
/* Is <dir>/disk a mount point in the caller's namespace? */
bool cb_quota_image_host_mounted(const char *dir);
/* Unmount <dir>/disk (if mounted here) and delete the image. -errno. */
int cb_quota_image_remove(const char *dir);

/* Images made ahead of time. Making a sandbox's disk is ~1.4 ms of its
 * cold create here (the copy of the golden image's metadata, LOOP_CONFIGURE,
 * which fsyncs the image, and the ext4 mount); one thread per runtime
 * keeps a few ready, of the size last asked for, as detached mounts of
 * images in state_dir/images/.spare-<pid>-<n>.img (removed at exit; those
 * of a dead process at the next open). CB_IMAGE_SPARES=N (0: off).
 * spares_open: start the thread (images only, not host mounts).
 * take: the detached mount (fd, CLOEXEC) of a fresh image of bytes, whose
 * file is now dir/disk.img (dir/disk made, disk.loop written), as
 * cb_quota_image_create + cb_quota_image_open would give; -EAGAIN when
 * none is ready (the first ask of a size starts making that size). */
void cb_quota_spares_open(struct cb_quota *q);
int cb_quota_image_take(struct cb_quota *q, const char *dir, uint64_t bytes);
/* Recycle the disk image of a destroyed sandbox instead of unmounting and
 * deleting it: rootfd (any fd of its root directory) still holds its
 * superblock and so its loop device. Why: tearing an image down and making
 * the next one (the unmount's sync through the loop device, the copy,
 * LOOP_CONFIGURE's fsync, the ext4 mount, the layers' directories) were
 * most of the daemon's CPU per sandbox under create/delete churn. Only
 * when the spares want an image of its size and have room, and the tenant
 * left at most a few thousand files (emptying costs one unlink each; more
 * and removing the image is cheaper); its contents
 * are emptied to the layers' skeleton (sbdir.h cb_sbdir_clean_image:
 * nothing of the tenant is left that the file system shows; blocks it
 * freed are trimmed back to holes once they add up), it is mounted again
 * detached (a new mount of the same superblock) and becomes a spare:
 * <dir>/disk.img moves to the spares, <dir>/disk.loop is emptied. 0, or
 * -errno with nothing changed but the emptied contents: the caller then
 * closes rootfd and removes the image as before. */
int cb_quota_image_recycle(struct cb_quota *q, const char *dir, int rootfd);
/* Bytes used in the image of sandbox dir <dir> when it is mounted here,
 * else the bytes its image file occupies on the host; -1 if neither. */
int64_t cb_quota_image_used(const char *dir);
/* Bytes used on the file system of fd (for an overlay: its upper's), or -1. */
int64_t cb_quota_image_used_fd(int fd);

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
