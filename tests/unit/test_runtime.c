/* A real sandbox on this host: create, start, exec, pause, stop, start,
 * adopt, run_inside, destroy — and nothing left behind. Needs root and
 * build/cellbox-init (CB_BUILD or ./build). */
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "netns.h"
#include "ns.h"
#include "proto.h"
#include "rootfs.h"
#include "runner.h"
#include "runtime.h"
#include "template.h"
#include "tier.h"

static const struct cb_tier_ops *T;

static void remove_parent_cgroups(void)
{
    const char *hier[] = {"memory", "cpu", "cpuacct", "pids", "freezer", "cpuset"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(hier); i++) {
        char *pdir = cb_xasprintf("/sys/fs/cgroup/%s/cellbox-unit", hier[i]);
        rmdir(pdir); /* the parent we created; fails harmlessly while in use */
        free(pdir);
    }
}

static struct cb_runtime *open_runtime_cfg(char *state, bool no_disk_quota, bool durable)
{
    if (geteuid() != 0)
        SKIP("needs root");
    const char *b = getenv("CB_BUILD");
    char *init = cb_xasprintf("%s/cellbox-init", b ? b : "build");
    if (access(init, X_OK) < 0)
        SKIP("no %s", init);
    char *abs = realpath(init, NULL);
    ASSERT(mkdtemp(state));
    struct cb_runtime_config cfg = {.state_dir = state, .init_path = abs,
                                    .cgroup_parent = "cellbox-unit",
                                    .no_disk_quota = no_disk_quota,
                                    .durable_disks = durable};
    struct cb_runtime *rt;
    struct cb_error *err = NULL;
    if (cb_runtime_open(&cfg, &rt, &err) < 0)
        FAIL("runtime: %s", err->message);
    if (cb_template_ensure_host(rt, &err) < 0)
        FAIL("template: %s", err->message);
    T = cb_tier_lookup("container");
    ASSERT(T != NULL);
    return rt;
}

static struct cb_runtime *open_runtime_quota(char *state, bool no_disk_quota)
{
    return open_runtime_cfg(state, no_disk_quota, false);
}

static struct cb_runtime *open_runtime(char *state)
{
    return open_runtime_quota(state, true);
}

/* Run argv as uid; return its exit code. */
static int run(struct cb_sandbox *sb, uint32_t uid, const char *cmd)
{
    int s;
    struct cb_error *err = NULL;
    if (T->connect(sb, &s, &err) < 0)
        FAIL("connect: %s", err->message);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWN, 7);
    cb_builder_str(&b, CB_F_ARGV, "/bin/sh");
    cb_builder_str(&b, CB_F_ARGV, "-c");
    cb_builder_str(&b, CB_F_ARGV, cmd);
    cb_builder_str(&b, CB_F_ENV, "PATH=/usr/bin:/bin");
    cb_builder_str(&b, CB_F_CWD, "/");
    cb_builder_u32(&b, CB_F_UID, uid);
    cb_builder_u32(&b, CB_F_GID, uid);
    cb_builder_u32(&b, CB_F_MODE, CB_SPAWN_PIPES);
    ASSERT_EQ(cb_builder_finish(&b), 0);
    ASSERT_EQ(cb_proto_send(s, &b, NULL, 0), 0);
    cb_builder_free(&b);
    uint32_t pid = 0;
    for (;;) {
        struct cb_frame_header h;
        uint8_t *p = NULL;
        int fds[3], nfds = 0;
        ASSERT_EQ(cb_proto_recv(s, &h, &p, fds, &nfds), 0);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        struct cb_field_view f;
        uint32_t got = 0;
        if (h.type == CB_MSG_ERROR) {
            char *msg = cb_proto_find(p, h.length, CB_F_MESSAGE, &f) == 1 ? cb_field_strdup(&f)
                                                                            : NULL;
            FAIL("spawn refused: %s", msg ? msg : "(no message)");
        }
        if (h.type == CB_MSG_SPAWNED && cb_proto_find(p, h.length, CB_F_PID, &f) == 1)
            cb_field_u32(&f, &pid);
        else if (h.type == CB_MSG_EXIT && cb_proto_find(p, h.length, CB_F_PID, &f) == 1 &&
                 cb_field_u32(&f, &got) == 0 && got == pid) {
            int32_t code = -1;
            if (cb_proto_find(p, h.length, CB_F_EXIT_CODE, &f) == 1)
                cb_field_i32(&f, &code);
            free(p);
            close(s);
            return code;
        }
        free(p);
    }
}

static int read_etc_hostname(void *arg)
{
    char buf[64] = {0};
    int fd = open("/etc/hostname", O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0)
        return 1;
    return strcmp(buf, "unit-box\n") == 0 && getuid() == 1000 ? 42 : 2;
}

static void full_lifecycle(void)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_error *err = NULL;
    struct cb_sandbox_spec spec = {.id = "sb_unit", .hostname = "unit-box",
                                   .template_name = "host", .limits = {.pids = 64}};
    struct cb_sandbox *sb;
    if (T->create(rt, &spec, &sb, &err) < 0)
        FAIL("create: %s", err->message);
    ASSERT_EQ(T->state(sb), CB_RUN_CREATED);
    if (T->start(sb, &err) < 0)
        FAIL("start: %s", err->message);
    ASSERT_EQ(T->state(sb), CB_RUN_RUNNING);
    ASSERT_EQ(run(sb, 0, "test \"$(hostname)\" = unit-box && python3 -c 'import sys'"), 0);
    ASSERT_EQ(run(sb, 1000, "echo hi > /home/user/f && test -O /home/user/f"), 0);
    ASSERT_NE(run(sb, 0, "touch /usr/evil 2>/dev/null"), 0); /* read-only host /usr */
    ASSERT_EQ(T->run_inside(sb, 1000, 1000, read_etc_hostname, NULL, &err), 42);
    int root;
    ASSERT_EQ(T->root_fd(sb, &root, &err), 0);
    struct stat st;
    ASSERT_EQ(fstatat(root, "home/user/f", &st, 0), 0);
    uid_t hu;
    gid_t hg;
    T->map_ids(sb, 1000, 1000, &hu, &hg);
    ASSERT_EQ(st.st_uid, hu);
    close(root);
    ASSERT_EQ(T->pause(sb, &err), 0);
    ASSERT_EQ(T->state(sb), CB_RUN_PAUSED);
    ASSERT_EQ(T->resume(sb, &err), 0);
    ASSERT_EQ(T->stop(sb, &err), 0);
    ASSERT_EQ(T->state(sb), CB_RUN_STOPPED);
    ASSERT_EQ(T->start(sb, &err), 0);
    ASSERT_EQ(run(sb, 1000, "test \"$(cat /home/user/f)\" = hi"), 0); /* kept across stop */
    T->release(sb);
    /* a new handle from disk sees the live sandbox */
    ASSERT_EQ(T->adopt(rt, "sb_unit", &sb, &err), 0);
    ASSERT_EQ(T->state(sb), CB_RUN_RUNNING);
    ASSERT_EQ(run(sb, 0, "true"), 0);
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    char *d = cb_xasprintf("%s/sandboxes/sb_unit", state);
    ASSERT(access(d, F_OK) < 0);
    ASSERT(access("/sys/fs/cgroup/pids/cellbox-unit/sb_unit", F_OK) < 0);
    char *slot = cb_xasprintf("%s/uidslots/0", state);
    ASSERT(access(slot, F_OK) < 0);
    cb_runtime_free(rt);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

TEST(runtime_full_lifecycle) { full_lifecycle(); }

/* Kernels before 5.3, seccomp profiles that refuse clone3 (container
 * runtimes answer ENOSYS) and non-x86-64 builds start sandboxes with
 * clone(), and on cgroup v2 the parent then writes the child's pid. */
TEST(runtime_full_lifecycle_without_clone3)
{
    setenv("CB_NO_CLONE3", "1", 1);
    full_lifecycle();
}

TEST(runtime_setup_failure_names_step)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_error *err = NULL;
    struct cb_sandbox_spec spec = {.id = "sb_bad", .template_name = "host"};
    struct cb_sandbox *sb;
    ASSERT_EQ(T->create(rt, &spec, &sb, &err), 0);
    /* break the overlay: remove the work dir */
    char *work = cb_xasprintf("%s/sandboxes/sb_bad/work", state);
    ASSERT_EQ(cb_rootfs_remove_tree(work), 0);
    ASSERT(T->start(sb, &err) < 0);
    ASSERT(strstr(err->message, "overlay") != NULL);
    ASSERT(strstr(err->message, state) == NULL); /* no host path leaks */
    cb_error_free(err);
    err = NULL;
    /* The failed start had already connected to the listener and sent its
     * HELLO (while the child set up): the next start's init finds that
     * connection closed in its queue, and still answers the new one. */
    uid_t ru;
    gid_t rg;
    T->map_ids(sb, 0, 0, &ru, &rg);
    ASSERT_EQ(mkdir(work, 0700), 0);
    ASSERT_EQ(chown(work, ru, rg), 0);
    if (T->start(sb, &err) < 0)
        FAIL("start after a failed start: %s", err->message);
    ASSERT_EQ(run(sb, 0, "true"), 0);
    ASSERT_EQ(T->destroy(sb, &err), 0);
    T->release(sb);
    cb_runtime_free(rt);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

static char *read_text(const char *path)
{
    char *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    close(fd);
    int dfd = open("/", O_PATH | O_CLOEXEC);
    if (cb_read_file_at(dfd, path + 1, 1 << 20, &text, NULL) < 0)
        text = NULL;
    close(dfd);
    return text;
}

static int count_lines(const char *path)
{
    char *text = read_text(path);
    int n = 0;
    for (char *p = text; p && *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

/* Warm-pool claim: a started sandbox under an internal id takes a new id,
 * hostname and limits, and is then an ordinary sandbox of that id. */
static void destroy_sandbox(struct cb_sandbox *sb);
static void cleanup_state(struct cb_runtime *rt, char *state);

TEST(runtime_claim_renames_everything)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_error *err = NULL;
    struct cb_sandbox_spec spec = {.id = "pool_unit", .hostname = "sandbox",
                                   .template_name = "host", .limits = {.pids = 64}};
    struct cb_sandbox *sb;
    if (T->create(rt, &spec, &sb, &err) < 0 || T->start(sb, &err) < 0)
        FAIL("create/start: %s", err->message);
    struct cb_limits l = {.pids = 99, .memory_bytes = 200ull << 20};
    if (!cb_cgroup_can_rename(rt->cgroups)) { /* v2: refused before anything moved */
        ASSERT_EQ(cb_container_claim(sb, "sb_claimed", "claimed-box", &l, &err), -1);
        ASSERT(err && strstr(err->message, "cgroup v2 cannot rename") != NULL);
        ASSERT(strcmp(cb_container_id(sb), "pool_unit") == 0);
        char *dir = cb_xasprintf("%s/sandboxes/pool_unit/runtime.state", state);
        ASSERT(access(dir, F_OK) == 0);
        ASSERT_EQ(run(sb, 0, "test \"$(hostname)\" = sandbox"), 0);
        free(dir);
        destroy_sandbox(sb);
        cleanup_state(rt, state);
        return;
    }
    if (cb_container_claim(sb, "sb_claimed", "claimed-box", &l, &err) < 0)
        FAIL("claim: %s", err->message);
    ASSERT(strcmp(cb_container_id(sb), "sb_claimed") == 0);
    char *old_dir = cb_xasprintf("%s/sandboxes/pool_unit", state);
    char *new_dir = cb_xasprintf("%s/sandboxes/sb_claimed/runtime.state", state);
    ASSERT(access(old_dir, F_OK) < 0);
    ASSERT(access(new_dir, F_OK) == 0);
    ASSERT(access("/sys/fs/cgroup/pids/cellbox-unit/pool_unit", F_OK) < 0);
    char *pids = read_text("/sys/fs/cgroup/pids/cellbox-unit/sb_claimed/pids.max");
    ASSERT(pids && strcmp(pids, "99\n") == 0);
    char *slot = cb_xasprintf("%s/uidslots/0", state);
    char *owner = read_text(slot);
    ASSERT(owner && strcmp(owner, "sb_claimed") == 0);
    ASSERT_EQ(run(sb, 0, "test \"$(hostname)\" = claimed-box && "
                        "test \"$(cat /etc/hostname)\" = claimed-box && "
                        "grep -q claimed-box /etc/hosts && "
                        "grep -q '/cellbox-unit/sb_claimed$' /proc/1/cgroup || "
                        "grep -q 'pids:/$' /proc/1/cgroup"), 0);
    /* Our own hostname did not move: the claim returned to the host's uts. */
    char host[256];
    ASSERT_EQ(gethostname(host, sizeof host), 0);
    ASSERT(strcmp(host, "claimed-box") != 0);
    T->release(sb);
    ASSERT_EQ(T->adopt(rt, "sb_claimed", &sb, &err), 0);
    ASSERT_EQ(T->state(sb), CB_RUN_RUNNING);
    ASSERT_EQ(run(sb, 1000, "echo ok > /workspace/x"), 0);
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    ASSERT(access("/sys/fs/cgroup/pids/cellbox-unit/sb_claimed", F_OK) < 0);
    ASSERT(access(slot, F_OK) < 0);
    free(pids);
    free(owner);
    cb_runtime_free(rt);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

static bool mounted_under(const char *path)
{
    char *text = read_text("/proc/self/mountinfo");
    bool found = text && strstr(text, path) != NULL;
    free(text);
    return found;
}

/* End of a disk-image test: the runtime is freed, nothing of the state
 * dir is mounted any more, and it is removed with the test's cgroups. */
static void finish_image_runtime(struct cb_runtime *rt, char *state)
{
    cb_runtime_free(rt);
    ASSERT(!mounted_under(state));
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

/* Is path the backing file of a bound loop device? (Host-side evidence
 * that a sandbox's image is in use, wherever it is mounted.) */
static bool loop_backs(const char *path)
{
    for (int n = 0; n < 4096; n++) {
        char f[96];
        snprintf(f, sizeof f, "/sys/block/loop%d/loop/backing_file", n);
        char *text = read_text(f);
        bool hit = text && strncmp(text, path, strlen(path)) == 0;
        free(text);
        if (hit)
            return true;
    }
    return false;
}

/* The loop device is released when the sandbox's mount namespace dies,
 * which follows the kill a little later: wait for it, up to 5 s. */
static bool loop_released(const char *path)
{
    for (int i = 0; i < 500; i++) {
        if (!loop_backs(path))
            return true;
        usleep(10000);
    }
    return false;
}

static void cleanup_state(struct cb_runtime *rt, char *state)
{
    cb_runtime_free(rt);
    /* The XFS probe may have mounted nothing; unmount defensively anyway. */
    char *vol = cb_xasprintf("%s/volume", state);
    umount2(vol, MNT_DETACH);
    free(vol);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

static void destroy_sandbox(struct cb_sandbox *sb)
{
    T->destroy(sb, NULL);
    T->release(sb);
}

/* Fill the 16 MiB disk: ENOSPC, for root too; stats see what was written;
 * it survives stop + start. */
static void check_disk_limits(struct cb_sandbox *sb)
{
    struct cb_error *err = NULL;
    ASSERT_NE(run(sb, 0, "dd if=/dev/zero of=/root/big bs=1M count=32 2>/dev/null"), 0);
    struct cb_sandbox_stats st;
    ASSERT_EQ(T->stats(sb, &st, &err), 0);
    ASSERT(st.disk_bytes >= (12ull << 20)); /* the image is full */
    ASSERT_EQ(run(sb, 0, "rm /root/big && echo small > /root/s"), 0);
    ASSERT_EQ(T->stats(sb, &st, &err), 0);
    ASSERT(st.disk_bytes > 0 && st.disk_bytes < (4ull << 20));
    if (T->stop(sb, &err) < 0 || T->start(sb, &err) < 0)
        FAIL("stop/start: %s", err->message);
    ASSERT_EQ(run(sb, 0, "test \"$(cat /root/s)\" = small"), 0);
    ASSERT_NE(run(sb, 0, "dd if=/dev/zero of=/root/big bs=1M count=32 2>/dev/null"), 0);
}

/* A runtime whose disk limits are per-sandbox images (skips otherwise). */
static struct cb_runtime *open_image_runtime(char *state)
{
    struct cb_runtime *rt = open_runtime_quota(state, false);
    const char *reason = NULL;
    if (!cb_runtime_disk_quota(rt, &reason) || !cb_runtime_disk_images(rt))
        SKIP("no disk images here: %s", reason ? reason : "project quotas instead");
    return rt;
}

/* A started sandbox of the host template; disk_bytes 0 = no disk limit. */
static struct cb_sandbox *start_sandbox(struct cb_runtime *rt, const char *id, uint64_t disk_bytes)
{
    struct cb_error *err = NULL;
    struct cb_sandbox_spec spec = {.id = id, .template_name = "host",
                                   .limits = {.disk_bytes = disk_bytes}};
    struct cb_sandbox *sb;
    if (T->create(rt, &spec, &sb, &err) < 0 || T->start(sb, &err) < 0)
        FAIL("create/start %s: %s", id, err->message);
    return sb;
}

/* A started sandbox with a 16 MiB disk. */
static struct cb_sandbox *start_disk_sandbox(struct cb_runtime *rt, const char *id)
{
    return start_sandbox(rt, id, 16ull << 20);
}

/* Without project quotas the disk limit is a per-sandbox ext4 image, a
 * sparse copy of a golden image, mounted only in the sandbox's own mount
 * namespace. */
TEST(runtime_disk_image_limits_writes)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_error *err = NULL;
    struct cb_sandbox *sb = start_disk_sandbox(rt, "sb_disk");
    char *image = cb_xasprintf("%s/sandboxes/sb_disk/disk.img", state);
    char *golden = cb_xasprintf("%s/images/golden-16.img", state);
    struct stat is, gs;
    ASSERT_EQ(stat(image, &is), 0);
    ASSERT_EQ(stat(golden, &gs), 0);
    /* Full size, yet sparse: only the golden's metadata was copied. */
    ASSERT_EQ((long long)is.st_size, 16ll << 20);
    ASSERT((long long)is.st_blocks * 512 < (8ll << 20));
    /* In use by a loop device, but not mounted anywhere the host sees. */
    ASSERT(loop_backs(image));
    ASSERT(!mounted_under(state));
    check_disk_limits(sb);
    ASSERT(!mounted_under(state));
    /* The loop device it used is recorded, and removed after destroy: the
     * kernel never removes devices by itself (~220 KiB each when idle).
     * No reserve kept for re-use here (quota.c), so this one goes. */
    setenv("CB_LOOP_RESERVE", "0", 1);
    char *record = cb_xasprintf("%s/sandboxes/sb_disk/disk.loop", state);
    char *text = NULL;
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, record, 32, &text, NULL), 0);
    char *backing = cb_xasprintf("/sys/block/loop%d/loop/backing_file", atoi(text));
    char *node = cb_xasprintf("/sys/block/loop%d", atoi(text));
    ASSERT_EQ(access(backing, F_OK), 0);
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    ASSERT(access(image, F_OK) < 0);
    ASSERT(loop_released(image));
    /* gone (removed in the background once the kernel unbinds it: wait
     * up to 5 s), unless another process of this host took it meanwhile
     * or it is one of the host's boot-time devices (loop0..7), which stay */
    for (int i = 0; i < 500 && access(node, F_OK) == 0 && access(backing, F_OK) < 0; i++)
        usleep(10000);
    ASSERT(access(node, F_OK) < 0 || access(backing, F_OK) == 0 || atoi(text) < 8);
    free(record);
    free(text);
    free(backing);
    free(node);
    ASSERT(!mounted_under(state));
    free(image);
    free(golden);
    cleanup_state(rt, state);
}

/* kill (the first half of the daemon's delete): every process is dead
 * when it returns, but the disk image stays mounted (its loop device bound)
 * until destroy, which releases it: the unmount is not paid by the caller
 * of kill. Without kill's hold, the image is released when init exits. */
TEST(runtime_kill_leaves_unmount_to_destroy)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_error *err = NULL;
    ASSERT(T->kill != NULL);
    struct cb_sandbox *sb = start_disk_sandbox(rt, "sb_kill");
    ASSERT_EQ(run(sb, 0, "sleep 1000 >/dev/null 2>&1 &"), 0);
    char *image = cb_xasprintf("%s/sandboxes/sb_kill/disk.img", state);
    char *st_path = cb_xasprintf("%s/sandboxes/sb_kill/runtime.state", state);
    char *text = NULL;
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, st_path, 4096, &text, NULL), 0);
    char *p = strstr(text, "\npid=");
    ASSERT(p != NULL);
    int pid = atoi(p + 5);
    ASSERT(pid > 0);
    char *proc = cb_xasprintf("/proc/%d", pid);
    if (T->kill(sb, &err) < 0)
        FAIL("kill: %s", err->message);
    ASSERT(access(proc, F_OK) < 0); /* init reaped, its pid namespace gone */
    ASSERT_EQ(T->state(sb), CB_RUN_STOPPED);
    usleep(300 * 1000); /* long past an autoclear after init's exit */
    ASSERT(loop_backs(image));
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    ASSERT(loop_released(image));
    ASSERT(access(image, F_OK) < 0);
    free(proc);
    free(text);
    free(st_path);
    free(image);
    cleanup_state(rt, state);
}

/* The entries of directory path, sorted, joined with ','. */
static char *dir_entries(const char *path)
{
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    ASSERT(n >= 0);
    char *out = cb_xstrdup("");
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            char *next = cb_xasprintf("%s%s%s", out, *out ? "," : "", names[i]->d_name);
            free(out);
            out = next;
        }
        free(names[i]);
    }
    free(names);
    return out;
}

/* The one spare directory of this process in state/sandboxes (NULL: none). */
static char *only_spare(const char *state)
{
    char *dir = cb_xasprintf("%s/sandboxes", state);
    char *list = dir_entries(dir);
    char *found = NULL;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
        if (strncmp(tok, CB_SBDIR_SPARE_PREFIX, strlen(CB_SBDIR_SPARE_PREFIX)) == 0) {
            ASSERT(found == NULL);
            found = cb_xasprintf("%s/%s", dir, tok);
        }
    free(list);
    free(dir);
    return found;
}

/* A destroyed sandbox's directory is emptied down to its mount points and
 * three truncated files, kept as a spare, and becomes the next sandbox's
 * directory: no inode made again, nothing of the old sandbox seen by the
 * new one. */
/* Without a disk image a sandbox's layers are in its directory, and a
 * recycled directory keeps its upper layer's skeleton (no new inodes for
 * the next create: sbdir.h) but nothing of the tenant: not its files, not
 * the overlay marks its deletions left (an opaque /home would hide the
 * template's), not its modes. Judged on the host's copy of the layer. */
TEST(runtime_directory_recycled_without_disk)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_sandbox *sb = start_sandbox(rt, "sb_tenant", 0);
    ASSERT_EQ(run(sb, 0, "echo secret > /workspace/f && echo t > /tmp/t && "
                         "rm -rf /home && mkdir /home && echo pw > /root/r && "
                         "chmod 777 / /tmp && echo tenant >> /etc/hosts"),
              0);
    char *upper_home = cb_xasprintf("%s/sandboxes/sb_tenant/upper/home", state);
    ASSERT(getxattr(upper_home, "user.overlay.opaque", NULL, 0) >= 0); /* what it left */
    destroy_sandbox(sb);
    sb = start_sandbox(rt, "sb_next", 0);
    char *home = cb_xasprintf("%s/sandboxes/sb_next/upper/home", state);
    char *upper = cb_xasprintf("%s/sandboxes/sb_next/upper", state);
    struct stat st, ust;
    ASSERT_EQ(stat(home, &st), 0);
    ASSERT_EQ(stat(upper, &ust), 0);
    ASSERT(getxattr(home, "user.overlay.opaque", NULL, 0) < 0 && errno == ENODATA);
    ASSERT_EQ(ust.st_mode & 07777, 0755);
    ASSERT_EQ(run(sb, 0, "test ! -e /workspace/f && test ! -e /tmp/t && test ! -e /root/r && "
                         "test -d /home/user && test \"$(stat -c %a /tmp)\" = 1777 && "
                         "! grep -q tenant /etc/hosts && grep -q sb_next /etc/hosts && "
                         "test \"$(hostname)\" = sb_next"),
              0);
    destroy_sandbox(sb);
    free(upper_home);
    free(home);
    free(upper);
    cleanup_state(rt, state);
}

TEST(runtime_directory_recycled)
{
    setenv("CB_SBDIR_AHEAD", "0", 1); /* the one spare is the retired directory */
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_error *err = NULL;
    struct cb_sandbox *sb = start_disk_sandbox(rt, "sb_old");
    ASSERT_EQ(run(sb, 0, "echo secret > /workspace/f"), 0);
    char *old_dir = cb_xasprintf("%s/sandboxes/sb_old", state);
    char *log = cb_xasprintf("%s/init.log", old_dir);
    int fd = open(log, O_WRONLY | O_APPEND);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "old sandbox\n", 12), 12);
    close(fd);
    struct stat before, st, sock_before;
    ASSERT_EQ(stat(old_dir, &before), 0);
    char *old_sock = cb_xasprintf("%s/init.sock", old_dir);
    ASSERT_EQ(lstat(old_sock, &sock_before), 0);
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    ASSERT(access(old_dir, F_OK) < 0);
    char *spare = only_spare(state);
    ASSERT(spare != NULL);
    /* init.sock too: the destroy took the listener back from the init it
     * started (sbdir.h), still bound there for the next sandbox */
    char *entries = dir_entries(spare);
    ASSERT_STREQ(entries, "disk,disk.loop,init.log,init.sock,lower,rootfs,runtime.state");
    char *spare_log = cb_xasprintf("%s/init.log", spare);
    char *spare_state = cb_xasprintf("%s/runtime.state", spare);
    ASSERT_EQ(stat(spare_log, &st), 0);
    ASSERT_EQ((long long)st.st_size, 0);
    ASSERT_EQ(stat(spare_state, &st), 0);
    ASSERT_EQ((long long)st.st_size, 0);
    ASSERT_EQ(stat(spare, &st), 0);
    ASSERT_EQ((long long)st.st_ino, (long long)before.st_ino);
    ASSERT_EQ(st.st_mode & 07777, 0700); /* a spare: closed to the host's users */

    sb = start_disk_sandbox(rt, "sb_new");
    char *new_dir = cb_xasprintf("%s/sandboxes/sb_new", state);
    ASSERT_EQ(stat(new_dir, &st), 0);
    ASSERT_EQ((long long)st.st_ino, (long long)before.st_ino); /* the spare, renamed */
    ASSERT(only_spare(state) == NULL);
    /* its init listens on the same socket: no inode made for it (start
     * connected through it already) */
    char *new_sock = cb_xasprintf("%s/init.sock", new_dir);
    ASSERT_EQ(lstat(new_sock, &st), 0);
    ASSERT(S_ISSOCK(st.st_mode) && st.st_ino == sock_before.st_ino);
    ASSERT_NE(run(sb, 0, "test -e /workspace/f"), 0);
    ASSERT_EQ(run(sb, 0, "test \"$(hostname)\" = sb_new"), 0);
    char *new_log = cb_xasprintf("%s/init.log", new_dir), *text = NULL;
    if (cb_read_file_at(AT_FDCWD, new_log, 4096, &text, NULL) == 0)
        ASSERT(strstr(text, "old sandbox") == NULL);
    /* adopt reads the state written in place into the recycled file */
    T->release(sb);
    ASSERT_EQ(T->adopt(rt, "sb_new", &sb, &err), 0);
    ASSERT_EQ(T->state(sb), CB_RUN_RUNNING);
    ASSERT_EQ(run(sb, 0, "true"), 0); /* connected again through the same name */
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    /* An adopted init's listener is not taken (its fd number is known only
     * to the runtime that started it): the name went with the sandbox. */
    spare = only_spare(state);
    ASSERT(spare != NULL);
    char *spare_sock = cb_xasprintf("%s/init.sock", spare);
    ASSERT(access(spare_sock, F_OK) < 0);
    free(spare_sock);
    free(new_sock);
    free(old_sock);
    free(text);
    free(new_log);
    free(new_dir);
    free(spare_log);
    free(spare_state);
    free(entries);
    free(spare);
    free(log);
    free(old_dir);
    /* the runtime removes its own spares when it goes */
    cleanup_state(rt, state);
}

/* The fallback (and the layout of older versions): the image mounted in
 * the daemon's mount namespace at sandboxes/<id>/disk. */
TEST(runtime_disk_image_host_mount_fallback)
{
    setenv("CB_DISK_HOST_MOUNT", "1", 1);
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_error *err = NULL;
    struct cb_sandbox *sb = start_disk_sandbox(rt, "sb_hostdisk");
    char *mnt = cb_xasprintf("%s/sandboxes/sb_hostdisk/disk", state);
    ASSERT(mounted_under(mnt));
    check_disk_limits(sb);
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    ASSERT(!mounted_under(state));
    free(mnt);
    cleanup_state(rt, state);
}

/* A damaged golden image is made again, never copied. */
TEST(runtime_disk_golden_image_remade)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_error *err = NULL;
    char *golden = cb_xasprintf("%s/images/golden-16.img", state);
    const char *ids[] = {"sb_g1", "sb_g2"};
    for (int i = 0; i < 2; i++) {
        struct cb_sandbox *sb = start_disk_sandbox(rt, ids[i]);
        ASSERT_EQ(run(sb, 0, "echo x > /root/y && test \"$(cat /root/y)\" = x"), 0);
        if (T->destroy(sb, &err) < 0)
            FAIL("destroy: %s", err->message);
        T->release(sb);
        if (i == 0) { /* damage it: zero the superblock */
            int fd = open(golden, O_WRONLY | O_CLOEXEC);
            ASSERT(fd >= 0);
            char zero[4096] = {0};
            ASSERT_EQ(pwrite(fd, zero, sizeof zero, 0), (ssize_t)sizeof zero);
            close(fd);
        }
    }
    /* Whole again: the ext4 magic is back. */
    int fd = open(golden, O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0);
    uint16_t magic = 0;
    ASSERT_EQ(pread(fd, &magic, 2, 1080), 2);
    ASSERT_EQ(magic, 0xEF53);
    close(fd);
    free(golden);
    cleanup_state(rt, state);
}

/* The template's root is idmapped to each sandbox (its root owns /etc and
 * can edit it), the host's copy never changes, and the start leaves no
 * mount behind in the host's namespace. */
TEST(runtime_root_owns_template_files)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_error *err = NULL;
    char *skel_passwd = cb_xasprintf("%s/templates/host/rootfs/etc/passwd", state);
    char *before = read_text(skel_passwd);
    ASSERT(before != NULL);
    struct cb_sandbox_spec spec = {.id = "sb_idmap", .template_name = "host"};
    struct cb_sandbox *sb;
    if (T->create(rt, &spec, &sb, &err) < 0 || T->start(sb, &err) < 0)
        FAIL("create/start: %s", err->message);
    ASSERT_EQ(run(sb, 0, "test \"$(stat -c %u:%g /etc/passwd /opt)\" = \"$(printf '0:0\\n0:0')\""), 0);
    ASSERT_EQ(run(sb, 0, "echo 'b:x:7:7::/:/bin/sh' >> /etc/passwd && mkdir /opt/x && "
                        "chown 1000:1000 /opt/x && grep -q '^b:' /etc/passwd"), 0);
    ASSERT_NE(run(sb, 1000, "echo x >> /etc/group 2>/dev/null"), 0);
    ASSERT_EQ(run(sb, 1000, "touch /opt/x/mine"), 0);
    /* masks are binds of state/empty; /dev and /dev/shm are directories of
     * the root, from the template: nothing of /dev is in the upper layer */
    ASSERT_EQ(run(sb, 0, "test -z \"$(ls -A /sys/firmware)\" && test \"$(stat -c %a /dev/shm)\" = 1777 && "
                        "! grep -q ' /dev/shm \\| /dev ' /proc/self/mountinfo && "
                        "echo x > /dev/null && test -c /dev/urandom && test -L /dev/fd"), 0);
    char *upper_dev = cb_xasprintf("%s/sandboxes/sb_idmap/upper/dev", state);
    ASSERT(access(upper_dev, F_OK) < 0 && errno == ENOENT);
    *strrchr(upper_dev, '/') = '\0';
    ASSERT_EQ(access(upper_dev, F_OK), 0); /* the upper layer is there */
    free(upper_dev);
    char *after = read_text(skel_passwd);
    ASSERT(after && strcmp(before, after) == 0);
    char *empty = cb_xasprintf("%s/empty", state);
    struct stat st;
    ASSERT_EQ(lstat(empty, &st), 0); /* the masks' source: root-owned, 0555, still empty */
    ASSERT(S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 07777) == 0555);
    ASSERT_EQ(st.st_nlink, 2);
    ASSERT(!mounted_under(state)); /* the lower layer lives in the sandbox's namespace only */
    /* a stop + start idmaps a fresh clone; the edits live in the upper layer */
    if (T->stop(sb, &err) < 0 || T->start(sb, &err) < 0)
        FAIL("stop/start: %s", err->message);
    ASSERT_EQ(run(sb, 0, "grep -q '^b:' /etc/passwd && test \"$(stat -c %u /etc/group)\" = 0"), 0);
    /* Something put in the masks' source would show in every sandbox: a
     * start refuses it. */
    ASSERT_EQ(T->stop(sb, &err), 0);
    char *planted = cb_xasprintf("%s/planted", empty);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, planted, "x", 1, 0644, 0), 0);
    ASSERT(T->start(sb, &err) < 0);
    ASSERT(strstr(err->message, "mask directory") != NULL);
    cb_error_free(err);
    err = NULL;
    ASSERT_EQ(unlink(planted), 0);
    if (T->start(sb, &err) < 0)
        FAIL("start: %s", err->message);
    free(planted);
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    free(before);
    free(after);
    free(empty);
    free(skel_passwd);
    cb_runtime_free(rt);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

/* Build the host template's skeleton on a ramfs (a file system the kernel
 * cannot idmap) and put it over the template's rootfs, in a mount
 * namespace of this test process only. */
static void template_on_ramfs(const char *state)
{
    struct cb_template *t;
    struct cb_error *err = NULL;
    char *templates = cb_xasprintf("%s/templates", state);
    if (cb_template_load(templates, "host", &t, &err) < 0)
        FAIL("template: %s", err->message);
    free(templates);
    char *ram = cb_xasprintf("%s/ram", state);
    ASSERT_EQ(mkdir(ram, 0755), 0);
    ASSERT_EQ(mount("ramfs", ram, "ramfs", 0, "mode=755"), 0);
    if (cb_rootfs_make_host_skeleton(ram, t->binds, t->nbinds, &err) < 0)
        FAIL("skeleton: %s", err->message);
    ASSERT_EQ(mount(ram, t->rootfs, NULL, MS_BIND, NULL), 0);
    cb_template_free(t);
    free(ram);
}

/* The kernel refuses the idmap: the sandbox still starts, as before the
 * idmap (template files show as nobody, root cannot edit them), and the
 * runtime says so once on stderr. */
TEST(runtime_template_idmap_refused_falls_back)
{
    if (geteuid() != 0)
        SKIP("needs root");
    /* this test process only (each test runs in its own child) */
    ASSERT_EQ(unshare(CLONE_NEWNS), 0);
    ASSERT_EQ(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    template_on_ramfs(state);
    char log[] = "/tmp/cb-runtime-log-XXXXXX";
    int logfd = mkstemp(log);
    ASSERT(logfd >= 0);
    int saved = dup(2);
    ASSERT_EQ(dup2(logfd, 2), 2);
    struct cb_error *err = NULL;
    struct cb_sandbox_spec spec = {.id = "sb_noidmap", .template_name = "host"};
    struct cb_sandbox *sb;
    int r = T->create(rt, &spec, &sb, &err);
    if (r == 0)
        r = T->start(sb, &err);
    dup2(saved, 2);
    close(saved);
    if (r < 0)
        FAIL("create/start: %s", err->message);
    char *text = read_text(log);
    ASSERT(text && strstr(text, "refused an idmapped mount of the template root") != NULL);
    ASSERT_EQ(run(sb, 0, "test \"$(stat -c %u /etc/passwd)\" = 65534"), 0);
    ASSERT_NE(run(sb, 0, "echo x >> /etc/passwd 2>/dev/null"), 0);
    ASSERT_EQ(run(sb, 1000, "echo ok > /workspace/f"), 0); /* otherwise a normal sandbox */
    if (T->destroy(sb, &err) < 0)
        FAIL("destroy: %s", err->message);
    T->release(sb);
    free(text);
    close(logfd);
    unlink(log);
    cb_runtime_free(rt);
    char *rootfs = cb_xasprintf("%s/templates/host/rootfs", state), *ram = cb_xasprintf("%s/ram", state);
    umount2(rootfs, MNT_DETACH);
    umount2(ram, MNT_DETACH);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
    free(rootfs);
    free(ram);
}

/* What a sandbox's file holds, as a number (the first field). */
static double sandbox_number(struct cb_sandbox *sb, const char *path)
{
    int root;
    struct cb_error *err = NULL;
    if (T->root_fd(sb, &root, &err) < 0)
        FAIL("root_fd: %s", err->message);
    char *text = NULL;
    if (cb_read_file_at(root, path, 4096, &text, NULL) < 0)
        FAIL("read %s in the sandbox", path);
    close(root);
    double v = strtod(text, NULL);
    free(text);
    return v;
}

/* Time namespace: a sandbox's uptime and monotonic clock count from its own
 * start, not the host's boot. Judged against the host's clock: with the
 * host's clocks, the sandbox would report the host's uptime (minutes at
 * least by the time tests run) and two sandboxes started 1.5 s apart the
 * same value. */
static void assert_host_clocks(struct cb_runtime *rt, char *state);
static pid_t init_pid(struct cb_sandbox *sb);

TEST(runtime_sandbox_has_its_own_clocks)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    if (rt->no_time_ns) { /* a kernel that keeps init in the old namespace (ns.h) */
        fprintf(stderr, "  this kernel: sandboxes on the host's clocks\n");
        assert_host_clocks(rt, state);
        return;
    }
    /* /proc/1/stat's start time (field 22, clock ticks on the sandbox's
     * boot clock): init started at the sandbox's zero, not before it. */
    const char *probe = "cut -d' ' -f1 /proc/uptime > /tmp/up && "
                        "python3 -c 'import time; print(time.monotonic())' > /tmp/mono && "
                        "cut -d' ' -f22 /proc/1/stat > /tmp/init_start";
    uint64_t t0 = cb_now_ns();
    struct cb_sandbox *a = start_sandbox(rt, "sb_clock_a", 0);
    usleep(1500 * 1000);
    struct cb_sandbox *b = start_sandbox(rt, "sb_clock_b", 0);
    ASSERT_EQ(run(a, 1000, probe), 0);
    ASSERT_EQ(run(b, 1000, probe), 0);
    double since = (double)(cb_now_ns() - t0) / 1e9;
    double a_up = sandbox_number(a, "tmp/up"), b_up = sandbox_number(b, "tmp/up");
    double a_mono = sandbox_number(a, "tmp/mono"), b_mono = sandbox_number(b, "tmp/mono");
    struct timespec host_boot;
    clock_gettime(CLOCK_BOOTTIME, &host_boot);
    fprintf(stderr, "  uptime: host %lld s, sandbox a %.2f s, b %.2f s (a started %.2f s ago); "
                    "monotonic a %.2f b %.2f\n",
            (long long)host_boot.tv_sec, a_up, b_up, since, a_mono, b_mono);
    ASSERT(a_up <= since + 1.0);   /* counts from the sandbox's start */
    ASSERT(a_mono <= since + 1.0);
    ASSERT(a_up - b_up >= 1.0);    /* each sandbox its own clock */
    ASSERT(a_mono - b_mono >= 1.0);
    ASSERT(b_up >= 0 && b_mono >= 0);
    /* ticks are 10 ms: init started within the sandbox's first second */
    double a_init = sandbox_number(a, "tmp/init_start");
    fprintf(stderr, "  init started at %.0f ticks of the sandbox's boot clock\n", a_init);
    ASSERT(a_init >= 0 && a_init < 100);
    destroy_sandbox(a);
    destroy_sandbox(b);
    cleanup_state(rt, state);
}

/* Sandboxes on the host's clocks (cb_runtime.no_time_ns) are sandboxes
 * like any other: init spawns (with CLONE_VM, which the kernel refuses to
 * a process left in another time namespace than its children's: every
 * spawn failed on Linux 6.1 before the probe), and uptime is the host's. */
static void assert_host_clocks(struct cb_runtime *rt, char *state)
{
    struct cb_sandbox *sb = start_sandbox(rt, "sb_hostclock", 0);
    ASSERT_EQ(run(sb, 1000, "cut -d' ' -f1 /proc/uptime > /tmp/up"), 0);
    struct timespec host_boot;
    clock_gettime(CLOCK_BOOTTIME, &host_boot);
    double up = sandbox_number(sb, "tmp/up");
    ASSERT(up <= (double)host_boot.tv_sec + 1.0 && up >= (double)host_boot.tv_sec - 30.0);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/time", (int)init_pid(sb));
    struct stat in, ours;
    ASSERT_EQ(stat(path, &in), 0);
    ASSERT_EQ(stat("/proc/self/ns/time", &ours), 0);
    ASSERT(in.st_ino == ours.st_ino);
    destroy_sandbox(sb);
    cleanup_state(rt, state);
}

/* CB_NO_TIME_NS=1 turns the sandboxes' own clocks off on any kernel. */
TEST(runtime_no_time_ns_switch)
{
    setenv("CB_NO_TIME_NS", "1", 1); /* this test's child process only */
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    ASSERT(rt->no_time_ns);
    assert_host_clocks(rt, state);
}

/* Sandboxes started at once, from several threads, each get their own
 * clocks. The child shares the daemon's memory until it execs init, and
 * with it the dumpable flag: a child that needed that flag to open its
 * clock offsets lost it whenever another child changed credentials at the
 * same moment, and its sandbox silently ran on the host's clocks (a
 * thread clearing the flag in a loop stands for those other children). Judged
 * on the host: init's /proc/<pid>/timens_offsets holds minus the host's
 * monotonic time at start, not 0. */
struct clock_job {
    struct cb_runtime *rt;
    int first, n;
    struct cb_sandbox **sbs;
};

static void *start_clock_job(void *arg)
{
    struct clock_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        char id[32];
        snprintf(id, sizeof id, "sb_clk%d", j->first + i);
        j->sbs[j->first + i] = start_sandbox(j->rt, id, 0);
    }
    return NULL;
}

/* What another child's credential change does to the memory every child
 * shares with us: clear the dumpable flag, here as often as we can. */
static volatile int clearing_dumpable;

static void *clear_dumpable(void *arg)
{
    while (clearing_dumpable)
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return NULL;
}

TEST(runtime_concurrent_starts_all_get_clocks)
{
    enum { THREADS = 2, EACH = 6 };
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    if (rt->no_time_ns) {
        cleanup_state(rt, state);
        SKIP("this kernel keeps init in its old time namespace: no clocks of their own");
    }
    struct cb_sandbox *sbs[THREADS * EACH] = {0};
    struct clock_job jobs[THREADS];
    pthread_t th[THREADS], clearer;
    clearing_dumpable = 1;
    ASSERT_EQ(pthread_create(&clearer, NULL, clear_dumpable, NULL), 0);
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (struct clock_job){rt, t * EACH, EACH, sbs};
        ASSERT_EQ(pthread_create(&th[t], NULL, start_clock_job, &jobs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    clearing_dumpable = 0;
    pthread_join(clearer, NULL);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int own = 0;
    for (int i = 0; i < THREADS * EACH; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/timens_offsets", (int)init_pid(sbs[i]));
        char *text = read_text(path);
        ASSERT(text != NULL);
        /* "monotonic <sec> <nsec>\nboottime <sec> <nsec>" */
        long long sec = 0;
        ASSERT_EQ(sscanf(text, "monotonic %lld", &sec), 1);
        if (sec < 0 && -sec <= (long long)now.tv_sec + 1)
            own++;
        else
            fprintf(stderr, "  %s: %s", path, text);
        free(text);
    }
    ASSERT_EQ(own, THREADS * EACH);
    for (int i = 0; i < THREADS * EACH; i++)
        destroy_sandbox(sbs[i]);
    cleanup_state(rt, state);
}

/* The sandbox's init pid, from its pidfd. */
static pid_t init_pid(struct cb_sandbox *sb)
{
    char path[64], *text = NULL;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", T->init_pidfd(sb));
    int dfd = open("/", O_PATH | O_CLOEXEC);
    ASSERT_EQ(cb_read_file_at(dfd, path + 1, 4096, &text, NULL), 0);
    close(dfd);
    const char *p = strstr(text, "\nPid:");
    ASSERT(p != NULL);
    pid_t pid = (pid_t)strtol(p + 5, NULL, 10);
    free(text);
    return pid;
}

/* Inode of the user namespace that owns the network namespace at path. */
static ino_t netns_owner(const char *path)
{
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT(ns >= 0);
    int user = ioctl(ns, NS_GET_USERNS);
    ASSERT(user >= 0);
    struct stat st;
    ASSERT_EQ(fstat(user, &st), 0);
    close(user);
    close(ns);
    return st.st_ino;
}

/* What a sandbox sees of /sys: a read-only sysfs superblock with the CPU
 * topology tools read, and no network device of the host's or of another
 * sandbox's (at most a loopback: that of the namespace the sysfs was
 * mounted from, until the kernel's asynchronous teardown of it); its own
 * loopback is in /proc/net. */
#define SYSFS_AS_SEEN_INSIDE                                                                  \
    "test -d /sys/class/net && test -z \"$(ls /sys/class/net | grep -vx lo)\" && "            \
    "grep -q '^ *lo:' /proc/net/dev && test -e /sys/devices/system/cpu/online && "            \
    "! touch /sys/x 2>/dev/null && "                                                          \
    "grep -Eq ' / /sys ro,[^ ]*( [^ ]+)* - sysfs sysfs ro(,|$)' /proc/self/mountinfo"

/* A sandbox's first process copies no more of the runtime's fd table than
 * the reserved slots (ns.c "fd slots"): started while this process holds
 * 3,000 more descriptors, its init's fd table stays small (it used to be
 * sized by ours: FDSize 4096 here), none of ours is open in it, and it
 * works. */
TEST(runtime_init_fd_table_not_sized_by_ours)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    enum { EXTRA = 3000 };
    static int extra[EXTRA];
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < EXTRA + 200) {
        rl.rlim_cur = rl.rlim_max < EXTRA + 200 ? rl.rlim_max : EXTRA + 200;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int n = 0;
    for (; n < EXTRA; n++)
        if ((extra[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
            break;
    if (n < 1000)
        SKIP("cannot open enough descriptors (%d)", n);
    struct cb_sandbox *sb = start_sandbox(rt, "sb_fdtable", 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)init_pid(sb));
    char *status = read_text(path);
    ASSERT(status != NULL);
    char *fdsize = strstr(status, "FDSize:");
    ASSERT(fdsize != NULL);
    int size = atoi(fdsize + 7);
    if (size > 256)
        FAIL("init's fd table has %d entries with %d of ours open", size, n);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)init_pid(sb));
    DIR *d = opendir(path);
    ASSERT(d != NULL);
    int open_fds = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        open_fds += de->d_name[0] != '.';
    closedir(d);
    ASSERT(open_fds < 16); /* 0-2, its control socket, its own few */
    ASSERT_EQ(run(sb, 0, "true"), 0);
    destroy_sandbox(sb);
    for (int i = 0; i < n; i++)
        close(extra[i]);
    free(status);
    cleanup_state(rt, state);
}

/* The two sysctls every spare namespace gets (low ports, ping) are written
 * through a private proc instance made again every 64 namespaces (netns.c
 * sysctl_ipv4_dir): in each of 150 namespaces in a row (three instances)
 * they hold, the host's own values never change, and no proc mount of ours
 * is left in the host's mount table. */
TEST(netns_sysctls_in_every_namespace)
{
    char *host_ports = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    char *host_ping = read_text("/proc/sys/net/ipv4/ping_group_range");
    ASSERT(host_ports && host_ping);
    int mounts_before = count_lines("/proc/self/mountinfo");
    struct cb_netns_spares *s = cb_netns_open(0); /* no maker: each take makes one here */
    for (int i = 0; i < 150; i++) {
        int netns, sysfs;
        ASSERT_EQ(cb_netns_take(s, NULL, &netns, &sysfs), 0);
        pid_t child = fork();
        if (child == 0) {
            if (setns(netns, CLONE_NEWNET) < 0)
                _exit(2);
            char *ports = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
            char *ping = read_text("/proc/sys/net/ipv4/ping_group_range");
            _exit(ports && ping && strcmp(ports, "0\n") == 0 &&
                          strncmp(ping, "0\t2147483647", 12) == 0 ? 0 : 3);
        }
        int st;
        ASSERT_EQ(waitpid(child, &st, 0), child);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            FAIL("namespace %d: sysctls not set (status %d)", i, st);
        close(netns);
        close(sysfs);
    }
    cb_netns_close(s);
    ASSERT_EQ(count_lines("/proc/self/mountinfo"), mounts_before);
    char *ports_after = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    char *ping_after = read_text("/proc/sys/net/ipv4/ping_group_range");
    ASSERT(ports_after && strcmp(ports_after, host_ports) == 0);
    ASSERT(ping_after && strcmp(ping_after, host_ping) == 0);
    free(host_ports);
    free(host_ping);
    free(ports_after);
    free(ping_after);
}

/* Network namespaces made ahead of time (netns.h): the sandbox runs in
 * one that the host's user namespace owns (its root cannot reconfigure
 * it), with loopback up, low ports and ping open to every user, and the
 * namespace's sysfs read-only down to the superblock. */
TEST(runtime_spare_network_namespace)
{
    char *host_ports = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    char *host_ping = read_text("/proc/sys/net/ipv4/ping_group_range");
    ASSERT(host_ports && host_ping);
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    usleep(200 * 1000); /* the maker thread fills its spares */
    struct cb_sandbox *sb = start_sandbox(rt, "sb_netns", 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)init_pid(sb));
    struct stat self_user;
    ASSERT_EQ(stat("/proc/self/ns/user", &self_user), 0);
    ASSERT_EQ(netns_owner(path), self_user.st_ino);
    ASSERT_EQ(run(sb, 1000, "python3 -c \"import socket\n"
                            "s = socket.socket(); s.bind(('127.0.0.1', 80)); s.listen()\n"
                            "socket.create_connection(('127.0.0.1', 80)).close()\n"
                            "socket.socket(socket.AF_INET, socket.SOCK_DGRAM, "
                            "socket.IPPROTO_ICMP).close()\""),
              0);
    ASSERT_NE(run(sb, 0, "python3 -c 'import socket; socket.socket(socket.AF_INET, "
                         "socket.SOCK_RAW, 1)' 2>/dev/null"),
              0);
    /* /sys: read-only down to the superblock, no network device of the
     * host's or of any sandbox's in it (at most the loopback of the left
     * namespace it was mounted from, until the kernel's asynchronous
     * teardown of that namespace removes it); the sandbox's own loopback
     * is where programs look for it (/proc/net, netlink). */
    ASSERT_EQ(run(sb, 0, SYSFS_AS_SEEN_INSIDE),
              0);
    /* A TCP connection table of its own (netns.c, parent_netns), not the
     * host's global one, whose whole length a namespace's teardown walked
     * (negative: shared with the host). Kernels before 6.1 have neither. */
    bool child_ehash = access("/proc/sys/net/ipv4/tcp_child_ehash_entries", F_OK) == 0;
    char *host_child_ehash = child_ehash ? read_text("/proc/sys/net/ipv4/tcp_child_ehash_entries")
                                         : NULL;
    if (child_ehash)
        ASSERT_EQ(run(sb, 0, "test \"$(cat /proc/sys/net/ipv4/tcp_ehash_entries)\" = 1024"), 0);
    /* One sysfs superblock for all sandboxes (each one per sandbox costs
     * every memory cgroup shrinker bookkeeping), not the host's. */
    usleep(100 * 1000); /* the maker made the next spares */
    struct cb_sandbox *other = start_sandbox(rt, "sb_netns2", 0);
    char sys_a[64], sys_b[64];
    snprintf(sys_a, sizeof sys_a, "/proc/%d/root/sys", (int)init_pid(sb));
    snprintf(sys_b, sizeof sys_b, "/proc/%d/root/sys", (int)init_pid(other));
    struct stat st_a, st_b, st_host;
    ASSERT_EQ(stat(sys_a, &st_a), 0);
    ASSERT_EQ(stat(sys_b, &st_b), 0);
    ASSERT_EQ(stat("/sys", &st_host), 0);
    ASSERT_EQ(st_a.st_dev, st_b.st_dev);
    ASSERT_NE(st_a.st_dev, st_host.st_dev);
    destroy_sandbox(other);
    destroy_sandbox(sb);
    cleanup_state(rt, state);
    /* The sysctls were set in the sandbox's namespace, never the host's. */
    char *ports_after = read_text("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    char *ping_after = read_text("/proc/sys/net/ipv4/ping_group_range");
    ASSERT(ports_after && strcmp(ports_after, host_ports) == 0);
    ASSERT(ping_after && strcmp(ping_after, host_ping) == 0);
    if (child_ehash) {
        char *after = read_text("/proc/sys/net/ipv4/tcp_child_ehash_entries");
        ASSERT(after && strcmp(after, host_child_ehash) == 0);
        free(after);
        free(host_child_ehash);
    }
    free(host_ports);
    free(host_ping);
    free(ports_after);
    free(ping_after);
}

/* A started sandbox of the host template whose network namespace may go
 * to (and come from) sandboxes of group. */
static struct cb_sandbox *start_group_sandbox(struct cb_runtime *rt, const char *id,
                                              const char *group)
{
    struct cb_error *err = NULL;
    struct cb_sandbox_spec spec = {.id = id, .template_name = "host", .net_group = group};
    struct cb_sandbox *sb;
    if (T->create(rt, &spec, &sb, &err) < 0 || T->start(sb, &err) < 0)
        FAIL("create/start %s: %s", id, err->message);
    return sb;
}

/* The network namespace's cookie (never reused, unlike inode numbers) of
 * the sandbox's init, read from a socket made in it by a child of ours. */
static uint64_t netns_cookie(struct cb_sandbox *sb)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)init_pid(sb));
    int ns = open(path, O_RDONLY | O_CLOEXEC), p[2];
    ASSERT(ns >= 0);
    ASSERT_EQ(pipe(p), 0);
    pid_t child = fork();
    if (child == 0) {
        uint64_t cookie = 0;
        socklen_t len = sizeof cookie;
        int s = setns(ns, CLONE_NEWNET) == 0 ? socket(AF_UNIX, SOCK_DGRAM, 0) : -1;
        if (s < 0 || getsockopt(s, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len) < 0)
            _exit(1);
        close(s);
        _exit(write(p[1], &cookie, sizeof cookie) == sizeof cookie ? 0 : 1);
    }
    close(p[1]);
    uint64_t cookie = 0;
    ASSERT_EQ(read(p[0], &cookie, sizeof cookie), (ssize_t)sizeof cookie);
    int st;
    ASSERT_EQ(waitpid(child, &st, 0), child);
    close(p[0]);
    close(ns);
    return cookie;
}

/* Until the maker has checked every retired namespace. */
static void wait_netns_checked(struct cb_runtime *rt)
{
    for (int i = 0; cb_netns_checking(rt->netns_spares) > 0; i++) {
        if (i > 500)
            FAIL("retired network namespaces not checked in 5 s");
        usleep(10 * 1000);
    }
}

/* A destroyed sandbox's network namespace goes to the next sandbox of the
 * same group (cellboxd: tenant) instead of a new one being made (netns.h,
 * cb_netns_retire), to no sandbox of another group or of none (it keeps
 * the earlier one's loopback counters), and not at all when something of
 * the earlier sandbox is left in it: here a TIME_WAIT connection, which
 * would hold its port. The reused one works like a new one, and the group
 * it came from survives in runtime.state for an adopted handle. */
TEST(runtime_netns_reused_within_group_only)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    usleep(200 * 1000); /* the maker's shared sysfs and spares */
    struct cb_sandbox *a = start_group_sandbox(rt, "sb_nra", "tenant-a");
    uint64_t first = netns_cookie(a);
    ASSERT(cb_container_netns_of(a) == NULL); /* a new one */
    destroy_sandbox(a);
    wait_netns_checked(rt);
    ASSERT_EQ(cb_netns_reusable(rt->netns_spares, "tenant-a"), 1);
    struct cb_sandbox *b = start_group_sandbox(rt, "sb_nrb", "tenant-b");
    struct cb_sandbox *none = start_group_sandbox(rt, "sb_nrn", NULL);
    ASSERT_NE(netns_cookie(b), first);
    ASSERT_NE(netns_cookie(none), first);
    ASSERT(cb_container_netns_of(b) == NULL);
    struct cb_sandbox *again = start_group_sandbox(rt, "sb_nra2", "tenant-a");
    ASSERT_EQ(netns_cookie(again), first);
    ASSERT(cb_container_netns_of(again) && strcmp(cb_container_netns_of(again), "tenant-a") == 0);
    struct cb_sandbox *adopted = NULL;
    struct cb_error *err = NULL;
    ASSERT_EQ(T->adopt(rt, "sb_nra2", &adopted, &err), 0);
    ASSERT(cb_container_netns_of(adopted) &&
           strcmp(cb_container_netns_of(adopted), "tenant-a") == 0);
    T->release(adopted);
    /* works as a new one: low ports, loopback, ping, sysfs, and empty */
    ASSERT_EQ(run(again, 1000, "python3 -c \"import socket\n"
                               "s = socket.socket(); s.bind(('127.0.0.1', 80)); s.listen()\n"
                               "socket.create_connection(('127.0.0.1', 80)).close()\n"
                               "socket.socket(socket.AF_INET, socket.SOCK_DGRAM, "
                               "socket.IPPROTO_ICMP).close()\""),
              0);
    ASSERT_EQ(run(again, 0, SYSFS_AS_SEEN_INSIDE), 0);
    /* leave a TIME_WAIT behind (the client closes first) */
    ASSERT_EQ(run(again, 1000, "python3 -c \"import socket, time\n"
                               "s = socket.socket(); s.bind(('127.0.0.1', 8080)); s.listen()\n"
                               "c = socket.create_connection(('127.0.0.1', 8080))\n"
                               "a, _ = s.accept(); c.close(); time.sleep(0.1); a.close()\n"
                               "time.sleep(0.1)\" && grep -Eq 'tw [1-9]' /proc/net/sockstat"),
              0);
    destroy_sandbox(again);
    wait_netns_checked(rt);
    ASSERT_EQ(cb_netns_reusable(rt->netns_spares, "tenant-a"), 0);
    struct cb_sandbox *fresh = start_group_sandbox(rt, "sb_nra3", "tenant-a");
    ASSERT_NE(netns_cookie(fresh), first);
    ASSERT(cb_container_netns_of(fresh) == NULL);
    destroy_sandbox(fresh);
    destroy_sandbox(none);
    destroy_sandbox(b);
    /* kept per group: tenant-b's is not tenant-a's */
    wait_netns_checked(rt);
    ASSERT_EQ(cb_netns_reusable(rt->netns_spares, "tenant-b"), 1);
    ASSERT_EQ(cb_netns_reusable(rt->netns_spares, "tenant-a"), 1); /* fresh's */
    cleanup_state(rt, state);
}

/* Without spare network namespaces (CB_NETNS_SPARES=0, or a burst that
 * finds none ready) a start makes its namespace in its own thread and
 * cannot clone the shared sysfs: it gets a device-less one of its own,
 * the same to look at. */
TEST(runtime_sysfs_without_spares)
{
    setenv("CB_NETNS_SPARES", "0", 1);
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_sandbox *sb = start_sandbox(rt, "sb_nospare", 0);
    ASSERT_EQ(run(sb, 0, SYSFS_AS_SEEN_INSIDE), 0);
    /* made in the start's own thread, still from the parent namespace */
    if (access("/proc/sys/net/ipv4/tcp_child_ehash_entries", F_OK) == 0)
        ASSERT_EQ(run(sb, 0, "test \"$(cat /proc/sys/net/ipv4/tcp_ehash_entries)\" = 1024"), 0);
    destroy_sandbox(sb);
    cleanup_state(rt, state);
}

/* A daemon killed between a destroy's removal of the sandbox directory and
 * the release of its uid slot leaves the slot owned by a sandbox that no
 * longer exists; the next start releases it, and only such slots: not one
 * whose owner file names a directory a claim by rename had just moved
 * (the live sandbox's runtime.state still names the slot). */
TEST(runtime_orphan_uid_slots_released)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime(state);
    struct cb_sandbox *sb = start_sandbox(rt, "sb_alive", 0);
    char *orphan = cb_xasprintf("%s/uidslots/77", state);
    char *stray = cb_xasprintf("%s/uidslots/78", state);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, orphan, "sb_gone", 7, 0600, 0), 0);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, stray, "../x", 4, 0600, 0), 0); /* not an id */
    char *alive = cb_xasprintf("%s/uidslots/0", state);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, alive, "pool_moved", 10, 0600, 0), 0);
    ASSERT_EQ(cb_container_release_orphan_slots(rt), 1);
    ASSERT(access(alive, F_OK) == 0); /* sb_alive's runtime.state names slot 0 */
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, alive, "sb_alive", 8, 0600, 0), 0);
    ASSERT(access(orphan, F_OK) < 0);
    ASSERT(access(stray, F_OK) == 0);
    char *owner = read_text(alive);
    ASSERT(owner && strcmp(owner, "sb_alive") == 0);
    ASSERT_EQ(run(sb, 1000, "true"), 0);
    unlink(stray);
    destroy_sandbox(sb);
    ASSERT(access(alive, F_OK) < 0);
    free(orphan);
    free(stray);
    free(alive);
    free(owner);
    cleanup_state(rt, state);
}

/* Inodes of the spare images in state/images (up to 8); how many. */
static int spare_image_inodes(const char *state, ino_t *out)
{
    char *dir = cb_xasprintf("%s/images", state);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && n < 8 && (de = readdir(d)) != NULL)
        if (strncmp(de->d_name, ".spare-", 7) == 0)
            out[n++] = de->d_ino;
    if (d)
        closedir(d);
    free(dir);
    return n;
}

/* Disk images made ahead (quota.h): the first create of a size asks for
 * them, a later one gets one (its disk.img is a spare's file, renamed) and
 * is a normal disk-limited sandbox; the runtime's end removes the rest. */
TEST(runtime_disk_images_made_ahead)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_sandbox *first = start_disk_sandbox(rt, "sb_first");
    ino_t spares[8];
    int n = 0;
    for (int i = 0; i < 500 && (n = spare_image_inodes(state, spares)) < 2; i++)
        usleep(10000);
    ASSERT(n >= 1);
    struct cb_sandbox *sb = start_disk_sandbox(rt, "sb_ahead");
    char *image = cb_xasprintf("%s/sandboxes/sb_ahead/disk.img", state);
    struct stat st;
    ASSERT_EQ(stat(image, &st), 0);
    bool from_spare = false;
    for (int i = 0; i < n; i++)
        from_spare |= st.st_ino == spares[i];
    ASSERT(from_spare);
    ASSERT_EQ((long long)st.st_size, 16ll << 20);
    ASSERT(!mounted_under(state));
    check_disk_limits(sb);
    destroy_sandbox(sb);
    destroy_sandbox(first);
    cb_runtime_free(rt);
    ASSERT_EQ(spare_image_inodes(state, spares), 0); /* spares removed at the end */
    ASSERT(!mounted_under(state));
    free(image);
    cb_rootfs_remove_tree(state);
    remove_parent_cgroups();
}

/* A destroyed sandbox's disk image is handed, file system and loop device
 * as they are, to the next sandbox of its size (quota.h
 * cb_quota_image_recycle): the next disk.img is the same file. Nothing of
 * the tenant reaches the next one (files, the space they took, modes,
 * inode flags), the limit holds, and a stop and start of the new sandbox
 * (which mounts the image again) works. */
TEST(runtime_disk_image_recycled)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_sandbox *a = start_disk_sandbox(rt, "sb_rec_a");
    ASSERT_EQ(run(a, 0, "dd if=/dev/urandom of=/workspace/big bs=1M count=6 2>/dev/null && "
                        "echo secret > /tmp/s && mkdir -p /opt/x && chmod 777 /workspace && "
                        "chattr +S /tmp"),
              0);
    char *image_a = cb_xasprintf("%s/sandboxes/sb_rec_a/disk.img", state);
    struct stat st_a, st_b;
    ASSERT_EQ(stat(image_a, &st_a), 0);
    destroy_sandbox(a);
    usleep(20 * 1000);
    struct timespec between;
    clock_gettime(CLOCK_REALTIME, &between);
    usleep(20 * 1000);
    struct cb_sandbox *b = start_disk_sandbox(rt, "sb_rec_b");
    char *image_b = cb_xasprintf("%s/sandboxes/sb_rec_b/disk.img", state);
    ASSERT_EQ(stat(image_b, &st_b), 0);
    /* The same file, born before A went (an inode number alone could be
     * a new file's that re-used it). */
    struct statx sx;
    ASSERT_EQ(statx(AT_FDCWD, image_b, 0, STATX_BTIME, &sx), 0);
    if (!(sx.stx_mask & STATX_BTIME))
        SKIP("no birth times on this file system");
    ASSERT_EQ((long long)st_b.st_ino, (long long)st_a.st_ino);
    ASSERT((long long)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec <
           (long long)between.tv_sec * 1000000000 + between.tv_nsec);
    ASSERT_EQ(run(b, 0, "test ! -e /workspace/big && test ! -e /tmp/s && test ! -e /opt/x && "
                        "test \"$(stat -c %a:%U /workspace)\" = 755:user && "
                        "test \"$(stat -c %a /tmp)\" = 1777 && "
                        "! lsattr -d /tmp | cut -d' ' -f1 | grep -q S && "
                        "test \"$(df -k --output=used /workspace | tail -1)\" -lt 2048 && "
                        "test \"$(hostname)\" = sb_rec_b"),
              0);
    check_disk_limits(b);
    destroy_sandbox(b);
    free(image_a);
    free(image_b);
    finish_image_runtime(rt, state);
}

/* The loop device backing path (a sandbox's image), or NULL: its
 * /sys/block/loopN/loop directory. */
static char *loop_sysfs_of(const char *path)
{
    DIR *d = opendir("/sys/block");
    if (!d)
        return NULL;
    struct dirent *e;
    char *found = NULL;
    while (!found && (e = readdir(d))) {
        if (strncmp(e->d_name, "loop", 4) != 0)
            continue;
        char *dir = cb_xasprintf("/sys/block/%s/loop", e->d_name);
        char *file = cb_xasprintf("%s/backing_file", dir);
        char *back = NULL;
        size_t len = 0;
        int r = cb_read_file_at(AT_FDCWD, file, 4096, &back, &len);
        free(file);
        if (r == 0) {
            while (len && back[len - 1] == '\n')
                back[--len] = 0;
            if (strcmp(back, path) == 0)
                found = dir;
        }
        free(back);
        if (!found)
            free(dir);
    }
    closedir(d);
    return found;
}

/* Pages of path in the host's page cache (mincore of a mapping that is
 * never touched). */
static long resident_pages(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return -1;
    size_t page = 4096, n = ((size_t)st.st_size + page - 1) / page;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    unsigned char *vec = cb_xmalloc(n);
    long count = -1;
    if (mincore(m, (size_t)st.st_size, vec) == 0) {
        count = 0;
        for (size_t i = 0; i < n; i++)
            count += vec[i] & 1;
    }
    free(vec);
    munmap(m, (size_t)st.st_size);
    return count;
}

/* A sandbox's disk image is read and written with direct I/O: what the
 * sandbox writes is not kept a second time in the host's page cache of
 * the image file (nor copied into it by the loop worker). */
TEST(runtime_disk_image_direct_io)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_sandbox *a = start_disk_sandbox(rt, "sb_dio");
    char *image = cb_xasprintf("%s/sandboxes/sb_dio/disk.img", state);
    char *loop = loop_sysfs_of(image);
    ASSERT(loop != NULL);
    char *dio = NULL, *dio_file = cb_xasprintf("%s/dio", loop);
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, dio_file, 16, &dio, NULL), 0);
    ASSERT_EQ(dio[0], '1');
    long before = resident_pages(image);
    ASSERT(before >= 0);
    ASSERT_EQ(run(a, 0, "dd if=/dev/zero of=/workspace/f bs=1M count=8 conv=fsync 2>/dev/null"),
              0);
    long after = resident_pages(image);
    /* 8 MiB written buffered would be 2,048 more pages */
    ASSERT(after - before < 256);
    destroy_sandbox(a);
    free(dio);
    free(dio_file);
    free(loop);
    free(image);
    finish_image_runtime(rt, state);
}

/* The mount options of sandbox id's image file system (/proc/fs/ext4). */
static char *image_ext4_options(const char *state, const char *id)
{
    char *image = cb_xasprintf("%s/sandboxes/%s/disk.img", state, id);
    char *loop = loop_sysfs_of(image); /* /sys/block/loopN/loop */
    ASSERT(loop != NULL);
    *strrchr(loop, '/') = '\0';
    char *path = cb_xasprintf("/proc/fs/ext4/%s/options", strrchr(loop, '/') + 1);
    char *opts = read_text(path);
    ASSERT(opts != NULL);
    free(path);
    free(loop);
    free(image);
    return opts;
}

/* Write, fsync, stop, start: the data is there (a start after a stop
 * removes the marker a volatile overlay left, or finds none). */
static void data_kept_across_stop_start(struct cb_sandbox *a)
{
    ASSERT_EQ(run(a, 0, "echo kept > /workspace/f && python3 -c \"import os; "
                        "fd = os.open('/workspace/f', os.O_RDWR); os.fsync(fd)\" && "
                        "test \"$(cat /workspace/f)\" = kept"),
              0);
    struct cb_error *err = NULL;
    ASSERT_EQ(T->stop(a, &err), 0);
    if (T->start(a, &err) < 0)
        FAIL("start after stop: %s", err->message);
    ASSERT_EQ(run(a, 0, "test \"$(cat /workspace/f)\" = kept"), 0);
}

/* A sandbox's image file system never asks for device cache flushes
 * (quota.c, mount_detached): each would be an fsync of the image file and
 * a flush of the host's disk, at every teardown and every tenant fsync.
 * The overlay over it never syncs either (mounts.c, volatile). */
TEST(runtime_disk_image_mounted_without_flushes)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_sandbox *a = start_disk_sandbox(rt, "sb_nobar");
    char *opts = image_ext4_options(state, "sb_nobar");
    if (!strstr(opts, "nobarrier"))
        FAIL("image mounted with flushes: %s", opts);
    ASSERT_EQ(run(a, 0, "grep -Eq ' / / .* - overlay overlay .*,(fsync=)?volatile' "
                        "/proc/self/mountinfo"),
              0);
    data_kept_across_stop_start(a);
    destroy_sandbox(a);
    free(opts);
    finish_image_runtime(rt, state);
}

/* --durable-disks: the image keeps its flushes and the overlay its syncs
 * (a tenant's fsync then reaches the host disk). */
TEST(runtime_durable_disks_keep_flushes_and_syncs)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_runtime_cfg(state, false, true);
    const char *reason = NULL;
    if (!cb_runtime_disk_quota(rt, &reason) || !cb_runtime_disk_images(rt))
        SKIP("no disk images here: %s", reason ? reason : "project quotas instead");
    struct cb_sandbox *a = start_disk_sandbox(rt, "sb_durable");
    char *opts = image_ext4_options(state, "sb_durable");
    if (strstr(opts, "nobarrier"))
        FAIL("durable image mounted without flushes: %s", opts);
    ASSERT_NE(run(a, 0, "grep -q 'volatile' /proc/self/mountinfo"), 0);
    data_kept_across_stop_start(a);
    destroy_sandbox(a);
    free(opts);
    finish_image_runtime(rt, state);
}

/* A tenant that left many files gets its image removed, not recycled:
 * emptying costs one unlink per file in the teardown, removing the image
 * does not (quota.c RECYCLE_MAX_INODES). */
TEST(runtime_disk_image_with_many_files_not_recycled)
{
    char state[] = "/tmp/cb-runtime-XXXXXX";
    struct cb_runtime *rt = open_image_runtime(state);
    struct cb_sandbox *a = start_sandbox(rt, "sb_many_a", 128ull << 20); /* 8192 inodes */
    ASSERT_EQ(run(a, 0, "mkdir /workspace/m && cd /workspace/m && seq 5000 | xargs touch"), 0);
    char *image_a = cb_xasprintf("%s/sandboxes/sb_many_a/disk.img", state);
    struct statx sa, sb_;
    ASSERT_EQ(statx(AT_FDCWD, image_a, 0, STATX_BTIME, &sa), 0);
    if (!(sa.stx_mask & STATX_BTIME))
        SKIP("no birth times on this file system");
    destroy_sandbox(a);
    struct cb_sandbox *b = start_sandbox(rt, "sb_many_b", 128ull << 20);
    char *image_b = cb_xasprintf("%s/sandboxes/sb_many_b/disk.img", state);
    ASSERT_EQ(statx(AT_FDCWD, image_b, 0, STATX_BTIME, &sb_), 0);
    /* Not A's file: a recycled image keeps both its inode number and its
     * birth time. (Spares made together share a coarse birth time but not
     * an inode; a file made after A's went may re-use its number but is
     * born later.) */
    ASSERT(sa.stx_ino != sb_.stx_ino || sa.stx_btime.tv_sec != sb_.stx_btime.tv_sec ||
           sa.stx_btime.tv_nsec != sb_.stx_btime.tv_nsec);
    ASSERT_EQ(run(b, 0, "test ! -e /workspace/m"), 0);
    destroy_sandbox(b);
    free(image_a);
    free(image_b);
    cleanup_state(rt, state);
}

/* A clone the host refuses says which host setting to look at. */
TEST(ns_clone_errors_name_the_host_limit)
{
    char dir[] = "/tmp/cb-sysctl-XXXXXX";
    ASSERT(mkdtemp(dir));
    const char *kinds[] = {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup", "time"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(kinds); i++) {
        char *p = cb_xasprintf("%s/max_%s_namespaces", dir, kinds[i]);
        const char *v = strcmp(kinds[i], "user") == 0 ? "0\n" : "96367\n";
        ASSERT_EQ(cb_write_file_at(AT_FDCWD, p, v, strlen(v), 0644, 0), 0);
        free(p);
    }
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_ns_clone_error(ENOSPC, dir, &err), -ENOSPC);
    ASSERT_EQ(err->kind, CB_ERR_UNAVAILABLE);
    ASSERT(strstr(err->message, "max_user_namespaces=0"));
    ASSERT(!strstr(err->message, "max_net_namespaces"));
    cb_error_free(err);
    err = NULL;
    ASSERT_EQ(cb_ns_clone_error(EPERM, dir, &err), -EPERM);
    ASSERT_EQ(err->kind, CB_ERR_UNAVAILABLE);
    ASSERT(strstr(err->message, "user namespaces"));
    cb_error_free(err);
    err = NULL;
    ASSERT_EQ(cb_ns_clone_error(EINVAL, dir, &err), -EINVAL);
    ASSERT_EQ(err->kind, CB_ERR_INTERNAL);
    cb_error_free(err);
    cb_rootfs_remove_tree(dir);
}
