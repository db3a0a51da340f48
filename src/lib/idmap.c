#include "idmap.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

uint32_t cb_idmap_base(uint32_t uid_base, uint32_t slot)
{
    return uid_base + slot * CB_IDMAP_RANGE;
}

int cb_idmap_alloc_slot(int slots_dirfd, uint32_t nslots, const char *owner,
                        uint32_t *slot_out, struct cb_error **err)
{
    return cb_idmap_alloc_slot_from(slots_dirfd, nslots, 0, owner, slot_out, err);
}

int cb_idmap_alloc_slot_from(int slots_dirfd, uint32_t nslots, uint32_t start,
                             const char *owner, uint32_t *slot_out, struct cb_error **err)
{
    char name[16];
    if (nslots == 0)
        return cb_error_set(err, 0, CB_ERR_LIMIT, "no uid ranges configured");
    for (uint32_t k = 0; k < nslots; k++) {
        uint32_t slot = (uint32_t)(((uint64_t)start + k) % nslots);
        snprintf(name, sizeof name, "%u", slot);
        int fd = CB_RETRY(openat(slots_dirfd, name,
                                 O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                                 0600));
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return cb_error_set(err, errno, CB_ERR_INTERNAL, "uid slot %u", slot);
        }
        int r = cb_write_all(fd, owner, strlen(owner));
        close(fd);
        if (r < 0) {
            unlinkat(slots_dirfd, name, 0);
            return cb_error_set(err, -r, CB_ERR_INTERNAL, "uid slot %u", slot);
        }
        *slot_out = slot;
        return 0;
    }
    return cb_error_set(err, 0, CB_ERR_LIMIT, "no free uid range (%u in use)", nslots);
}

int cb_idmap_release_slot(int slots_dirfd, uint32_t slot, struct cb_error **err)
{
    char name[16], free_name[24];
    snprintf(name, sizeof name, "%u", slot);
    snprintf(free_name, sizeof free_name, ".free-%u", slot);
    /* Kept for the slot's next use (idmap.h); replacing a stale one. */
    if (renameat(slots_dirfd, name, slots_dirfd, free_name) == 0 || errno == ENOENT)
        return 0;
    if (unlinkat(slots_dirfd, name, 0) < 0 && errno != ENOENT)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "release uid slot %u", slot);
    return 0;
}

int cb_idmap_reuse_slot(int slots_dirfd, uint32_t slot, const char *owner)
{
    char name[16], free_name[24];
    snprintf(name, sizeof name, "%u", slot);
    snprintf(free_name, sizeof free_name, ".free-%u", slot);
    if (renameat2(slots_dirfd, free_name, slots_dirfd, name, RENAME_NOREPLACE) < 0)
        return -errno;
    /* Ours now. The owner is informational (idmap.h); written over the old
     * one and cut to length, not O_TRUNC (cb_write_file_at: ext4 would
     * flush it at close). */
    size_t len = strlen(owner);
    int fd = CB_RETRY(openat(slots_dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    int r = fd < 0 ? -errno : cb_write_all(fd, owner, len);
    if (r == 0 && ftruncate(fd, (off_t)len) < 0)
        r = -errno;
    if (fd >= 0)
        close(fd);
    if (r < 0)
        cb_idmap_release_slot(slots_dirfd, slot, NULL);
    return r;
}

int cb_idmap_set_owner(int slots_dirfd, uint32_t slot, const char *owner)
{
    char name[16];
    snprintf(name, sizeof name, "%u", slot);
    /* No O_CREAT: a slot that is not taken must not be taken by this. */
    int fd = CB_RETRY(openat(slots_dirfd, name, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW));
    if (fd < 0)
        return -errno;
    int r = cb_write_all(fd, owner, strlen(owner));
    close(fd);
    return r;
}

static int write_proc_file(pid_t pid, const char *file, const char *text,
                           struct cb_error **err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = CB_RETRY(open(path, O_WRONLY | O_CLOEXEC));
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open %s", file);
    /* An id map must be written with a single write(). */
    ssize_t n = CB_RETRY(write(fd, text, strlen(text)));
    int e = errno;
    close(fd);
    if (n != (ssize_t)strlen(text))
        return cb_error_set(err, n < 0 ? e : EIO, CB_ERR_INTERNAL, "write %s", file);
    return 0;
}

int cb_idmap_write_maps(pid_t pid, uint32_t base, struct cb_error **err)
{
    char map[64];
    snprintf(map, sizeof map, "0 %u %u\n", base, CB_IDMAP_RANGE);
    if (write_proc_file(pid, "uid_map", map, err) < 0)
        return -1;
    return write_proc_file(pid, "gid_map", map, err);
}
