/* tier_container.c — the container tier: namespaces + cgroups + seccomp
 * around cellbox-init, on an overlay root. See tier.h for the contract.
 *
 * Directory layout per sandbox:
 *   state_dir/sandboxes/<id>/{rootfs/, init.sock, init.log, runtime.state}
 *   layers: state_dir/volume/<id>/{upper,work} when disk quotas work,
 *           else state_dir/sandboxes/<id>/{upper,work}.
 * Every mount of a sandbox lives in its own mount namespace, so none of them
 * is ever visible on the host or needs unmounting: they die with init. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "caps.h"
#include "holder.h"
#include "idmap.h"
#include "ns.h"
#include "proto.h"
#include "rawsys.h"
#include "rootfs.h"
#include "runtime.h"
#include "safepath.h"
#include "template.h"

/* How long init may take to answer HELLO: when connecting to a running
 * one (a daemon's start-up re-adopts sandboxes one after the other), and
 * at a start, where init is only just being exec'd and a loaded or
 * emulated host may take a while (a start runs off the event loop). */
#define HELLO_TIMEOUT_MS 5000
#define START_HELLO_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 5000

struct cb_sandbox {
    struct cb_runtime *rt;
    char *id, *hostname, *template_name;
    struct cb_limits limits;
    uint32_t slot, base, project;
    char *dir, *layer_dir, *upper, *work, *rootfs, *sock_path;
    struct cb_cgroup *cg;
    enum cb_sandbox_run_state state;
    pid_t pid;
    int pidfd;
    int disk_fd; /* detached mount of the disk image from create to start */
    int held_root; /* kill to destroy: holder.h handle of the dead sandbox's root (container_kill) */
    int held_disk; /* start to destroy: holder.h handle of its disk image's root, which keeps
                      the image's file system for cb_quota_image_recycle (hold_disk) */
    int conn; /* the connection start made (HELLO answered), kept for the first connect */
    int hello; /* start: a connection whose HELLO init has not answered yet, or -1 */
    int listener; /* listening socket bound at init.sock for the next start: from a spare
                     directory (sbdir.h), or taken back from init for the retire; else -1 */
    int init_listen_fd; /* the listener's fd number in the init this runtime started, or -1 */
    uint64_t start_time;
    bool is_our_child; /* reap with waitid; false after adopt */
    char *net_group; /* who may get its network namespace next (netns.h), or NULL */
    int netns; /* kill to destroy: its network namespace, for cb_netns_retire; else -1 */
    char *netns_of; /* the group an earlier sandbox of which used the network namespace its
                       last start took (cb_netns_retire), or NULL: a new one (runtime.state) */
};

/* ---- small helpers ---- */

/* Debug aid (CB_TRACE_START=1): time of each phase of create/start on
 * stderr. Per thread, since different sandboxes may be created at once. */
static __thread uint64_t trace_last;

static void trace_phase(const char *what)
{
    static int enabled = -1;
    if (enabled < 0)
        enabled = getenv("CB_TRACE_START") != NULL;
    if (!enabled)
        return;
    uint64_t now = cb_now_ns();
    if (what)
        fprintf(stderr, "  %s=%lluus", what, (unsigned long long)((now - trace_last) / 1000));
    if (what && strcmp(what, "hello") == 0)
        fputc('\n', stderr);
    trace_last = now;
}

static bool id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '_'))
            return false;
    return true;
}

/* A group name fit for runtime.state's lines. */
static bool net_group_ok(const char *group)
{
    size_t n = group ? strlen(group) : 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)group[i] <= ' ' || group[i] == 0x7f)
            return false;
    return n > 0 && n <= CB_NETNS_GROUP_MAX;
}

static uint64_t proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = CB_RETRY(read(fd, buf, sizeof buf - 1));
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* comm may contain spaces and ')': fields restart after the last ')'.
     * Field 3 (state) follows; start time is field 22. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static bool pidfd_alive(int pidfd)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    return pidfd >= 0 && poll(&pfd, 1, 0) == 0;
}

/* The init's pidfd is opened when needed rather than held: an idle sandbox
 * then costs the daemon one fd (its control connection), so RLIMIT_NOFILE
 * bounds a host at about one sandbox per fd instead of one per two. The
 * start time, read after pidfd_open pins the process, proves the pid is
 * still our init and not a reuse. Returns a new O_CLOEXEC fd or -1. */
static int open_init_pidfd(struct cb_sandbox *sb)
{
    if (sb->pid <= 0 || !sb->start_time)
        return -1;
    int fd = (int)syscall(SYS_pidfd_open, sb->pid, 0); /* close-on-exec by default */
    /* An init this process started and has not reaped (exit signal 0: only
     * wait_init_gone reaps it) keeps its pid even as a zombie, so the pidfd
     * is of our init: no /proc read (~5 us; ~5 per create+exec+delete).
     * An adopted one is another's child, and its pid can be reused. */
    if (fd >= 0 && !__atomic_load_n(&sb->is_our_child, __ATOMIC_ACQUIRE) &&
        proc_start_time(sb->pid) != sb->start_time) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* A pidfd for the moment: the one held for init_pidfd() callers if any,
 * else a fresh one that the caller closes through *tmp. */
static int borrow_pidfd(struct cb_sandbox *sb, int *tmp)
{
    *tmp = -1;
    if (sb->pidfd >= 0)
        return sb->pidfd;
    return *tmp = open_init_pidfd(sb);
}

static bool init_alive(struct cb_sandbox *sb)
{
    int tmp, fd = borrow_pidfd(sb, &tmp);
    bool alive = pidfd_alive(fd);
    if (tmp >= 0)
        close(tmp);
    return alive;
}

static void sandbox_free(struct cb_sandbox *sb)
{
    if (!sb)
        return;
    int *fds[] = {&sb->pidfd, &sb->disk_fd, &sb->conn, &sb->hello, &sb->listener, &sb->netns};
    for (size_t i = 0; i < CB_ARRAY_SIZE(fds); i++)
        cb_closep(fds[i]);
    free(sb->net_group);
    free(sb->netns_of);
    cb_holder_close(sb->held_root);
    cb_holder_close(sb->held_disk);
    cb_cgroup_free(sb->cg);
    free(sb->id);
    free(sb->hostname);
    free(sb->template_name);
    free(sb->dir);
    free(sb->layer_dir);
    free(sb->upper);
    free(sb->work);
    free(sb->rootfs);
    free(sb->sock_path);
    free(sb);
}

static struct cb_sandbox *sandbox_new(struct cb_runtime *rt, const char *id)
{
    struct cb_sandbox *sb = cb_xcalloc(1, sizeof *sb);
    sb->rt = rt;
    sb->pidfd = -1;
    sb->disk_fd = -1;
    sb->held_root = -1;
    sb->held_disk = -1;
    sb->conn = -1;
    sb->hello = -1;
    sb->listener = -1;
    sb->init_listen_fd = -1;
    sb->netns = -1;
    sb->id = cb_xstrdup(id);
    sb->dir = cb_xasprintf("%s/%s", rt->sandboxes_dir, id);
    sb->rootfs = cb_xasprintf("%s/rootfs", sb->dir);
    sb->sock_path = cb_xasprintf("%s/init.sock", sb->dir);
    return sb;
}

/* Are this sandbox's layers in its own disk image (quota.h fallback)? */
static bool has_disk_image(const struct cb_sandbox *sb)
{
    size_t n = strlen(sb->dir);
    return sb->layer_dir && strncmp(sb->layer_dir, sb->dir, n) == 0 &&
           strcmp(sb->layer_dir + n, "/" CB_QUOTA_IMAGE_DIR) == 0;
}

static void set_layer_dir(struct cb_sandbox *sb, const char *layer_dir)
{
    free(sb->layer_dir);
    free(sb->upper);
    free(sb->work);
    sb->layer_dir = cb_xstrdup(layer_dir);
    sb->upper = cb_xasprintf("%s/upper", layer_dir);
    sb->work = cb_xasprintf("%s/work", layer_dir);
}

/* ---- runtime.state (key=value, tmp + rename, no fsync) ----
 *
 * Why no fsync (it cost 0.7-1.5 ms per write on this VM disk, twice per
 * create+start): runtime.state describes a sandbox to a restarted daemon
 * (adopt). What must survive is a daemon crash, and against a process crash
 * write-to-temp + rename is already atomic: the page cache is the kernel's,
 * a reader sees the old or the new file, never a torn one. fsync would only
 * add durability across a power loss or kernel crash, and then every init
 * is dead anyway: adopt finds the pid gone and reports STOPPED, and the
 * rest of the sandbox (its upper layer) was never fsynced either, so the
 * state file could not be more durable than the data it describes. ext4
 * (data=ordered, auto_da_alloc) also flushes a renamed-over file's data at
 * the next commit, so even then a replaced file is old or new, not empty;
 * a sandbox created within the last commit interval before a power loss may
 * lose its file, and adopt then reports it not found (its directory is
 * reclaimed like any leftover). */

static int write_state_file(int dfd, const char *text)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "runtime.state.tmp.%d", (int)gettid());
    int r = cb_write_file_at(dfd, tmp, text, strlen(text), 0600, 0);
    if (r == 0 && renameat(dfd, tmp, dfd, "runtime.state") < 0)
        r = -errno;
    if (r < 0)
        unlinkat(dfd, tmp, 0);
    return r;
}

/* Rewrite an existing runtime.state in place with one pwrite, padded with
 * newlines (blank lines, which load_state skips) to at least the old size
 * so no truncate is needed. Why not tmp + rename every time: renaming over
 * an existing file makes ext4 (auto_da_alloc) start writeback of the new
 * file at once; measured 0.8-1.5 ms per save here, the largest cost of a
 * warm-pool claim and of start. One pwrite of less than a page is atomic
 * against the daemon being killed (the kernel copies a page or nothing), so
 * a restarted daemon still reads the old or the new text, never a mix.
 * Returns -ENOENT/-EFBIG when the caller must use write_state_file. */
static int rewrite_state_in_place(int dfd, const char *text)
{
    size_t len = strlen(text);
    if (len >= 4096)
        return -EFBIG;
    int fd = openat(dfd, "runtime.state", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    char buf[4096];
    int r = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size >= (off_t)sizeof buf) {
        r = -EFBIG;
    } else {
        size_t total = len > (size_t)st.st_size ? len : (size_t)st.st_size;
        memcpy(buf, text, len);
        memset(buf + len, '\n', total - len);
        ssize_t n = CB_RETRY(pwrite(fd, buf, total, 0));
        r = n == (ssize_t)total ? 0 : n < 0 ? -errno : -EIO;
    }
    close(fd);
    return r;
}

static int save_state(struct cb_sandbox *sb, struct cb_error **err)
{
    char cpu[32];
    snprintf(cpu, sizeof cpu, "%.6f", sb->limits.cpu);
    _cleanup_free_ char *cgdirs = cb_xstrdup("");
    for (int i = 0; sb->cg && i < sb->cg->ndirs; i++) {
        char *n = cb_xasprintf("%scgroup=%s\n", cgdirs, sb->cg->dirs[i]);
        free(cgdirs);
        cgdirs = n;
    }
    _cleanup_free_ char *text = cb_xasprintf(
        "id=%s\nhostname=%s\ntemplate=%s\nslot=%u\nproject=%u\nlayer_dir=%s\n"
        "state=%d\npid=%d\nstart_time=%" PRIu64 "\nmemory=%" PRIu64 "\ndisk=%" PRIu64
        "\npids=%u\nnofile=%u\ncpu=%s\nnetns_of=%s\n%s",
        sb->id, sb->hostname, sb->template_name, sb->slot, sb->project, sb->layer_dir,
        (int)sb->state, (int)sb->pid, sb->start_time, sb->limits.memory_bytes,
        sb->limits.disk_bytes, sb->limits.pids, sb->limits.nofile, cpu,
        sb->netns_of ? sb->netns_of : "", cgdirs);
    _cleanup_close_ int dfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int r = dfd < 0 ? -errno : rewrite_state_in_place(dfd, text);
    if (dfd >= 0 && (r == -ENOENT || r == -EFBIG))
        r = write_state_file(dfd, text);
    return r < 0 ? cb_error_set(err, -r, CB_ERR_INTERNAL, "save runtime.state") : 0;
}

static const char *state_value(char *text, const char *key)
{
    size_t kl = strlen(key);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, key, kl) == 0 && line[kl] == '=') {
            if (nl)
                *nl = '\0';
            return line + kl + 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static int load_state(struct cb_sandbox *sb, struct cb_error **err)
{
    _cleanup_close_ int dfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_free_ char *text = NULL;
    int r = dfd < 0 ? -errno : cb_read_file_at(dfd, "runtime.state", 65536, &text, NULL);
    if (r < 0)
        return cb_error_set(err, -r, r == -ENOENT ? CB_ERR_NOT_FOUND : CB_ERR_INTERNAL,
                            "sandbox %s: runtime.state", sb->id);
    /* state_value cuts lines, so read each key from a fresh copy */
    const char *keys[] = {"hostname", "template", "slot", "project", "layer_dir", "state",
                          "pid", "start_time", "memory", "disk", "pids", "nofile", "cpu"};
    const char *vals[CB_ARRAY_SIZE(keys)];
    char *copies[CB_ARRAY_SIZE(keys)];
    for (size_t i = 0; i < CB_ARRAY_SIZE(keys); i++) {
        copies[i] = cb_xstrdup(text);
        vals[i] = state_value(copies[i], keys[i]);
    }
    bool complete = true;
    for (size_t i = 0; i < CB_ARRAY_SIZE(keys); i++)
        complete = complete && vals[i];
    if (complete) {
        sb->hostname = cb_xstrdup(vals[0]);
        sb->template_name = cb_xstrdup(vals[1]);
        sb->slot = (uint32_t)strtoul(vals[2], NULL, 10);
        sb->project = (uint32_t)strtoul(vals[3], NULL, 10);
        set_layer_dir(sb, vals[4]);
        sb->state = (enum cb_sandbox_run_state)atoi(vals[5]);
        sb->pid = (pid_t)atoi(vals[6]);
        sb->start_time = strtoull(vals[7], NULL, 10);
        sb->limits.memory_bytes = strtoull(vals[8], NULL, 10);
        sb->limits.disk_bytes = strtoull(vals[9], NULL, 10);
        sb->limits.pids = (uint32_t)strtoul(vals[10], NULL, 10);
        sb->limits.nofile = (uint32_t)strtoul(vals[11], NULL, 10);
        sb->limits.cpu = strtod(vals[12], NULL);
    }
    for (size_t i = 0; i < CB_ARRAY_SIZE(keys); i++)
        free(copies[i]);
    /* Optional (older runtimes wrote none): whose namespace it runs in. */
    _cleanup_free_ char *of = cb_xstrdup(text);
    const char *netns_of = state_value(of, "netns_of");
    if (net_group_ok(netns_of))
        sb->netns_of = cb_xstrdup(netns_of);
    if (!complete || sb->slot >= sb->rt->cfg.uid_slots)
        return cb_error_set(err, EINVAL, CB_ERR_INTERNAL, "sandbox %s: bad runtime.state", sb->id);
    sb->base = cb_idmap_base(sb->rt->cfg.uid_base, sb->slot);
    return 0;
}

/* ---- create ---- */

/* Mount the new image (detached, or on the host in the fallback) and make
 * upper/ and work/ in it. The detached mount is kept for start, which hands
 * it to the sandbox's first process: one loop attach per create+start. */
static int prepare_image_layers(struct cb_sandbox *sb, struct cb_error **err)
{
    struct cb_quota *q = &sb->rt->quota;
    if (q->host_mounts) {
        if (sb->disk_fd >= 0) { /* made ahead, before the fallback was chosen */
            close(sb->disk_fd);
            sb->disk_fd = -1; /* cb_quota_image_mount waits for its release */
        }
        if (cb_quota_image_mount(q, sb->dir, err) < 0)
            return -1;
        chmod(sb->layer_dir, 0711); /* the sandbox's root traverses it */
        return cb_rootfs_prepare_upper(sb->upper, sb->work, sb->base, sb->hostname, err);
    }
    if (sb->disk_fd < 0 && (sb->disk_fd = cb_quota_image_open(q, sb->dir, err)) < 0)
        return -1;
    /* The mount's root as a real directory fd (the mount fd is O_PATH-like
     * and refuses fchmod). */
    _cleanup_close_ int root = openat(sb->disk_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0 || fchmod(root, 0711) < 0) /* the sandbox's root traverses it */
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "disk image root");
    return cb_rootfs_prepare_layers_at(root, sb->base, sb->hostname, err);
}

static int create_layers(struct cb_sandbox *sb, struct cb_error **err)
{
    struct cb_runtime *rt = sb->rt;
    if (rt->quota.enabled) {
        _cleanup_free_ char *ld = cb_xasprintf("%s/%s", rt->quota.volume_dir, sb->id);
        if (mkdir(ld, 0711) < 0)
            return cb_error_set(err, errno, CB_ERR_INTERNAL, "sandbox volume dir");
        set_layer_dir(sb, ld);
        /* Set before anything is created below, so all of it is counted. */
        if (cb_quota_set(&rt->quota, ld, sb->project, sb->limits.disk_bytes, err) < 0)
            return -1;
    } else if (rt->quota.images && sb->limits.disk_bytes) {
        /* Quotas unavailable: the limit is the size of the sandbox's own
         * file system, so filling it hits ENOSPC there and nowhere else. */
        _cleanup_free_ char *ld = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, sb->dir);
        set_layer_dir(sb, ld);
        /* One made ahead (quota.h), else made now. */
        int mfd = cb_quota_image_take(&rt->quota, sb->dir, sb->limits.disk_bytes);
        if (mfd >= 0)
            sb->disk_fd = mfd;
        else if (cb_quota_image_create(&rt->quota, sb->dir, sb->limits.disk_bytes, err) < 0)
            return -1;
        if (mkdir(sb->rootfs, 0755) < 0 && errno != EEXIST) /* a recycled dir has it */
            return cb_error_set(err, errno, CB_ERR_INTERNAL, "sandbox rootfs dir");
        return prepare_image_layers(sb, err);
    } else {
        set_layer_dir(sb, sb->dir);
    }
    if (mkdir(sb->rootfs, 0755) < 0 && errno != EEXIST)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "sandbox rootfs dir");
    return cb_rootfs_prepare_upper(sb->upper, sb->work, sb->base, sb->hostname, err);
}

/* ---- uid slots: a released one is taken back first (idmap.h) ----
 *
 * A slot is released only once nothing of its sandbox is left: every
 * process dead (the cgroups are gone) and every file removed or kept for
 * reuse re-owned by the next create. So handing its range out again at
 * once gives the next sandbox nothing of the last one's; it reuses the
 * slot's file instead of making a new one. */
static int take_slot(struct cb_runtime *rt, const char *owner, uint32_t *slot,
                     struct cb_error **err)
{
    for (;;) {
        pthread_mutex_lock(&rt->freed_lock);
        bool have = rt->nfreed > 0;
        uint32_t s = have ? rt->freed[--rt->nfreed] : 0;
        pthread_mutex_unlock(&rt->freed_lock);
        if (!have)
            break;
        if (s < rt->cfg.uid_slots && cb_idmap_reuse_slot(rt->slots_dirfd, s, owner) == 0) {
            *slot = s;
            return 0;
        }
    }
    uint32_t hint = __atomic_load_n(&rt->slot_hint, __ATOMIC_RELAXED);
    if (cb_idmap_alloc_slot_from(rt->slots_dirfd, rt->cfg.uid_slots, hint, owner, slot, err) < 0)
        return -1;
    __atomic_store_n(&rt->slot_hint, *slot + 1, __ATOMIC_RELAXED);
    return 0;
}

static int give_back_slot(struct cb_runtime *rt, uint32_t slot, struct cb_error **err)
{
    if (cb_idmap_release_slot(rt->slots_dirfd, slot, err) < 0)
        return -1;
    pthread_mutex_lock(&rt->freed_lock);
    if (rt->nfreed < (int)CB_ARRAY_SIZE(rt->freed))
        rt->freed[rt->nfreed++] = slot;
    pthread_mutex_unlock(&rt->freed_lock);
    return 0;
}

static void remove_everything(struct cb_sandbox *sb)
{
    if (sb->cg)
        cb_cgroup_destroy(sb->cg, STOP_TIMEOUT_MS, NULL);
    if (has_disk_image(sb))
        cb_quota_image_remove(sb->dir);
    else if (sb->layer_dir && strcmp(sb->layer_dir, sb->dir) != 0) {
        if (sb->rt->quota.enabled)
            cb_quota_set(&sb->rt->quota, sb->layer_dir, sb->project, 0, NULL);
        cb_rootfs_remove_tree(sb->layer_dir);
    }
    cb_rootfs_remove_tree(sb->dir);
}

static int container_create(struct cb_runtime *rt, const struct cb_sandbox_spec *spec,
                            struct cb_sandbox **out, struct cb_error **err)
{
    trace_phase(NULL);
    if (!id_ok(spec->id))
        return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST, "bad sandbox id");
    const char *tname = spec->template_name ? spec->template_name : "host";
    if (!cb_template_exists(rt, tname))
        return cb_error_set(err, ENOENT, CB_ERR_NOT_FOUND, "template %s not found", tname);
    struct cb_sandbox *sb = sandbox_new(rt, spec->id);
    int made = cb_sbdir_make(rt->dir_spares, sb->dir, &sb->listener);
    if (made < 0) {
        int e = -made;
        sandbox_free(sb);
        return cb_error_set(err, e, e == EEXIST ? CB_ERR_CONFLICT : CB_ERR_INTERNAL,
                            "create sandbox %s", spec->id);
    }
    sb->hostname = cb_xstrdup(spec->hostname && *spec->hostname ? spec->hostname : spec->id);
    if (strlen(sb->hostname) > 63)
        sb->hostname[63] = '\0';
    sb->template_name = cb_xstrdup(tname);
    sb->limits = spec->limits;
    cb_container_set_net_group(sb, spec->net_group);
    /* Test-only weakening (tier.h): kept in its own file beside
     * runtime.state for the start that follows; read back only by a runtime
     * that allows weakening, which cellboxd never is. */
    if (rt->cfg.allow_weaken && spec->weaken) {
        char w[16];
        snprintf(w, sizeof w, "%u", spec->weaken);
        _cleanup_close_ int wfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (wfd >= 0)
            cb_write_file_at(wfd, "weaken", w, strlen(w), 0600, 0);
    }
    sb->state = CB_RUN_CREATED;
    if (take_slot(rt, spec->id, &sb->slot, err) < 0) {
        cb_rootfs_remove_tree(sb->dir);
        sandbox_free(sb);
        return cb_error_wrap(err, "create %s", spec->id);
    }
    sb->base = cb_idmap_base(rt->cfg.uid_base, sb->slot);
    sb->project = sb->slot + 1;
    trace_phase("dir+slot");
    int r = create_layers(sb, err);
    trace_phase("layers");
    if (r == 0) {
        r = cb_cgroup_create(rt->cgroups, sb->id, &sb->limits, &sb->cg, err);
        trace_phase("cgroup");
    }
    if (r == 0) {
        r = save_state(sb, err);
        trace_phase("state");
    }
    if (r < 0) {
        remove_everything(sb);
        give_back_slot(rt, sb->slot, NULL);
        sandbox_free(sb);
        return cb_error_wrap(err, "create %s", spec->id);
    }
    *out = sb;
    return 0;
}

/* ---- start ---- */

/* Bind the control socket at dir/init.sock; long paths go through
 * /proc/self/fd/<dirfd>/init.sock so sun_path's 108 bytes never limit
 * where the state directory lives. */
static int sock_address(const char *dir, int *dirfd, struct sockaddr_un *addr,
                        struct cb_error **err)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    *dirfd = -1;
    if ((size_t)snprintf(addr->sun_path, sizeof addr->sun_path, "%s/init.sock", dir) <
        sizeof addr->sun_path)
        return 0;
    *dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dirfd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open sandbox dir");
    snprintf(addr->sun_path, sizeof addr->sun_path, "/proc/self/fd/%d/init.sock", *dirfd);
    return 0;
}

static int make_control_socket(struct cb_sandbox *sb, struct cb_error **err)
{
    /* The listener that came with the directory (sbdir.h): its name is
     * bound already, no inode to make. It was checked (and its queue
     * emptied) when the directory was retired, or made fresh for it; only
     * root can reach the name meanwhile. */
    if (sb->listener >= 0) {
        int l = steal_fd(sb->listener);
        struct stat st;
        if (lstat(sb->sock_path, &st) == 0 && S_ISSOCK(st.st_mode))
            return l;
        close(l);
    }
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int s = dirfd < 0 ? -errno : cb_sbdir_listen(dirfd);
    if (s < 0)
        return cb_error_set(err, -s, CB_ERR_INTERNAL, "control socket bind");
    return s;
}

/* Before init is killed for a destroy: a duplicate of its listener, so the
 * name stays bound for the directory's next sandbox (sbdir.h). Only from
 * an init this runtime started (it knows the fd number), and only a
 * listening unix stream socket (cb_sbdir_listener_reusable, at retire):
 * init is not dumpable, so nothing in the sandbox can have put anything
 * else there. Nothing taken: init.sock goes at retire, as before. */
static void take_listener(struct cb_sandbox *sb)
{
    if (sb->listener >= 0 || sb->init_listen_fd < 0 || !sb->is_our_child)
        return;
    int tmp, pidfd = borrow_pidfd(sb, &tmp);
    if (pidfd >= 0)
        sb->listener = (int)syscall(SYS_pidfd_getfd, pidfd, sb->init_listen_fd, 0);
    if (sb->listener < 0)
        sb->listener = -1;
    if (tmp >= 0)
        close(tmp);
    sb->init_listen_fd = -1;
}

/* Before init is killed for a destroy: its network namespace, which
 * destroy hands to cb_netns_retire for the next sandbox of its group once
 * every process is gone (netns.h says what is checked and kept). Opened
 * through /proc/<pid>, then checked to be our init still. */
static void take_netns(struct cb_sandbox *sb)
{
    if (sb->netns >= 0 || !sb->net_group || sb->pid <= 0 ||
        (sb->state != CB_RUN_RUNNING && sb->state != CB_RUN_PAUSED))
        return;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)sb->pid);
    sb->netns = open(path, O_RDONLY | O_CLOEXEC);
    if (sb->netns >= 0 && !init_alive(sb)) {
        close(sb->netns);
        sb->netns = -1;
    }
}

/* The HELLO frame init is greeted with (malloc'd, *len bytes), or NULL. */
static uint8_t *hello_frame(size_t *len)
{
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_HELLO, 1);
    cb_builder_u32(&b, CB_F_VERSION, CB_PROTO_VERSION);
    if (cb_builder_finish(&b) < 0) {
        cb_builder_free(&b);
        return NULL;
    }
    *len = b.len;
    return steal_ptr(b.buf);
}

/* Send and receive timeouts of timeout_ms on s (0: none). */
static void set_timeouts(int s, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Connect to the sandbox's init and send HELLO; hello_finish reads the
 * answer. The connection (with send and receive timeouts of timeout_ms
 * until hello_finish), or -1. */
static int hello_begin(struct cb_sandbox *sb, int timeout_ms, struct cb_error **err)
{
    struct sockaddr_un addr;
    _cleanup_close_ int dirfd = -1;
    if (sock_address(sb->dir, &dirfd, &addr, err) < 0)
        return -1;
    _cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "socket");
    if (CB_RETRY(connect(s, (struct sockaddr *)&addr, sizeof addr)) < 0)
        return cb_error_set(err, errno, CB_ERR_UNAVAILABLE, "connect to sandbox init");
    set_timeouts(s, timeout_ms);
    size_t len = 0;
    _cleanup_free_ uint8_t *frame = hello_frame(&len);
    ssize_t n = frame ? CB_RETRY(send(s, frame, len, MSG_NOSIGNAL)) : -1;
    if (n != (ssize_t)len)
        return cb_error_set(err, n < 0 ? errno : EIO, CB_ERR_UNAVAILABLE,
                            "sandbox init handshake");
    return steal_fd(s);
}

/* Read init's answer to hello_begin's HELLO and clear the timeouts. 0, or
 * -1 (s is the caller's to close either way). */
static int hello_finish(int s, struct cb_error **err)
{
    struct cb_frame_header hdr;
    _cleanup_free_ uint8_t *payload = NULL;
    int fds[CB_PROTO_MAX_FDS], nfds = 0;
    int r = cb_proto_recv(s, &hdr, &payload, fds, &nfds);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_UNAVAILABLE, "sandbox init handshake");
    if (hdr.type != CB_MSG_HELLO_OK)
        return cb_error_set(err, EPROTO, CB_ERR_UNAVAILABLE, "sandbox init refused HELLO");
    set_timeouts(s, 0);
    return 0;
}

static int connect_control(struct cb_sandbox *sb, int timeout_ms, struct cb_error **err)
{
    int s = hello_begin(sb, timeout_ms, err);
    if (s >= 0 && hello_finish(s, err) < 0) {
        close(s);
        return -1;
    }
    return s;
}

struct start_plan {
    struct cb_template *tmpl;
    struct cb_mount_table mounts;
    struct cb_child_config child;
    char control_arg[16];
    char *argv[4];
    int init_fd, control_fd, log_fd;
    int lower_fd;    /* detached clone of the template's root, or -1 */
    int netns_fd, sysfs_fd; /* a spare network namespace and its sysfs, or -1 */
    char *lower_dir; /* the overlay's lowerdir as the child sees it */
    char *empty_dir; /* source of the masked directories */
    /* hello_meanwhile's: all made before the clone, as it may make none */
    struct sockaddr_un hello_addr;
    int hello_dirfd;     /* what a long hello_addr names through /proc, or -1 */
    uint8_t *hello_msg;  /* the HELLO frame */
    size_t hello_len;
    int hello_fd;        /* out: the connection with the HELLO sent, or -1 */
};

static void start_plan_clear(struct start_plan *p)
{
    cb_template_free(p->tmpl);
    cb_mount_table_free(&p->mounts);
    int *fds[] = {&p->init_fd, &p->control_fd, &p->log_fd, &p->lower_fd, &p->netns_fd,
                  &p->sysfs_fd, &p->hello_dirfd, &p->hello_fd};
    for (size_t i = 0; i < CB_ARRAY_SIZE(fds); i++)
        cb_closep(fds[i]);
    free(p->lower_dir);
    free(p->empty_dir);
    free(p->hello_msg);
}

/* Is the directory dfd exactly what a mask may show: root-owned, 0555,
 * without entries? (Directory link counts say nothing on every file
 * system, so the entries are read.) */
static bool is_empty_mask_dir(int dfd)
{
    struct stat st;
    if (fstat(dfd, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 ||
        (st.st_mode & 07777) != 0555)
        return false;
    DIR *d = fdopendir(dfd);
    if (!d)
        return false;
    bool empty = true;
    struct dirent *de;
    while (empty && (de = readdir(d)) != NULL)
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d); /* closes dfd */
    return empty;
}

/* state_dir/empty: the directory masked paths are bound to (mounts.h).
 * Root-owned and 0555, so the sandbox (where its owner is unmapped) can
 * never add anything to it; only host root could, and a directory that is
 * not exactly that (a symlink, another owner or mode, any entry) is
 * refused rather than shown in every sandbox. */
static char *ready_empty_dir(struct cb_runtime *rt, struct cb_error **err)
{
    _cleanup_free_ char *path = cb_xasprintf("%s/empty", rt->state_dir);
    if (mkdir(path, 0555) < 0 && errno != EEXIST) {
        cb_error_set(err, errno, CB_ERR_INTERNAL, "mask directory %s", path);
        return NULL;
    }
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || !is_empty_mask_dir(dfd)) {
        cb_error_set(err, dfd < 0 ? errno : ENOTEMPTY, CB_ERR_INTERNAL,
                     "mask directory %s is not an empty root-owned 0555 directory", path);
        return NULL;
    }
    return steal_ptr(path);
}

/* The overlay's lower layer: a detached clone of the template's root that
 * cb_ns_spawn idmaps to the sandbox's user namespace (ns.h) and the child
 * attaches at sandboxes/<id>/lower. When the kernel has no open_tree, the
 * template directory itself, as before (root-owned files then show as
 * nobody and cannot be edited by the sandbox's root). */
static void plan_lower(struct cb_sandbox *sb, struct start_plan *p)
{
    static int warned;
    int e;
    p->lower_fd = open_tree(AT_FDCWD, p->tmpl->rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (p->lower_fd < 0) {
        e = errno;
    } else {
        /* The mount point: inside the sandbox's directory (root-owned,
         * 0711), never reachable from the sandbox. */
        p->lower_dir = cb_xasprintf("%s/lower", sb->dir);
        if (mkdir(p->lower_dir, 0755) == 0 || errno == EEXIST)
            return;
        e = errno;
        close(p->lower_fd);
        p->lower_fd = -1;
        free(steal_ptr(p->lower_dir));
    }
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "cellbox: cannot clone the template root (%s): sandboxes use it "
                        "without an idmap, their root cannot edit template files\n",
                strerror(e));
    p->lower_dir = cb_xstrdup(p->tmpl->rootfs);
}

static char *const init_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root", "LANG=C.UTF-8", "container=cellbox", NULL,
};

static int plan_start(struct cb_sandbox *sb, struct start_plan *p, struct cb_error **err)
{
    struct cb_runtime *rt = sb->rt;
    if (cb_template_load(rt->templates_dir, sb->template_name, &p->tmpl, err) < 0)
        return -1;
    if (!(p->empty_dir = ready_empty_dir(rt, err)))
        return -1;
    plan_lower(sb, p);
    if (cb_mounts_build(&p->mounts, sb->rootfs, p->lower_dir, sb->upper, sb->work,
                        p->tmpl->binds, p->tmpl->nbinds, p->empty_dir, rt->cfg.durable_disks,
                        err) < 0)
        return -1;
    /* Its own cgroup at /sys/fs/cgroup (mounts.h); on v1 only with the
     * view directory the runtime could make. */
    if (sb->cg && (rt->cgroups->ops != &cb_cgroup_v1_ops || rt->cgroup_view_dir)) {
        struct cb_cgroup_view v;
        cb_cgroup_view(sb->cg, &v);
        cb_mounts_show_cgroup(&p->mounts, sb->rootfs, rt->cgroup_view_dir, v.sources, v.names,
                              v.n);
    }
    p->init_fd = open(rt->init_path, O_PATH | O_CLOEXEC);
    if (p->init_fd < 0)
        return cb_error_set(err, errno, CB_ERR_UNAVAILABLE, "cellbox-init binary");
    _cleanup_free_ char *log = cb_xasprintf("%s/init.log", sb->dir);
    p->log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (p->log_fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "init log");
    if ((p->control_fd = make_control_socket(sb, err)) < 0)
        return -1;
    p->argv[0] = "cellbox-init";
    p->argv[1] = "--control-fd";
    p->argv[2] = p->control_arg;
    p->argv[3] = NULL;
    struct cb_child_config *c = &p->child;
    c->mounts = &p->mounts;
    c->rootfs = sb->rootfs;
    c->hostname = sb->hostname;
    c->init_fd = p->init_fd;
    c->control_fd = p->control_fd;
    c->control_arg = p->control_arg; /* argv[2]: cb_ns_spawn writes the number init gets */
    c->control_arg_size = sizeof p->control_arg;
    c->log_fd = p->log_fd;
    c->argv = p->argv;
    c->envp = init_env;
    rlim_t nofile = sb->limits.nofile ? sb->limits.nofile : 1048576;
    if (nofile > rt->nofile_max)
        nofile = rt->nofile_max; /* raising the hard limit needs CAP_SYS_RESOURCE */
    c->nofile.rlim_cur = c->nofile.rlim_max = nofile;
    c->keep_caps = cb_caps_default_keep();
    c->last_cap = rt->last_cap;
    c->no_time_ns = rt->no_time_ns;
    c->seccomp.filter = rt->seccomp.insns;
    c->seccomp.len = rt->seccomp.len;
    c->id_base = sb->base;
    c->cgroup = sb->cg;
    c->disk_fd = sb->disk_fd;
    c->disk_target = sb->disk_fd >= 0 ? sb->layer_dir : NULL;
    c->lower_fd = p->lower_fd;
    c->lower_target = p->lower_fd >= 0 ? p->lower_dir : NULL;
    c->netns_fd = -1;
    int taken = __atomic_load_n(&rt->netns_refused, __ATOMIC_RELAXED)
                    ? -EAGAIN
                    : cb_netns_take(rt->netns_spares, sb->net_group, &p->netns_fd, &p->sysfs_fd);
    free(sb->netns_of);
    sb->netns_of = taken == 1 ? cb_xstrdup(sb->net_group) : NULL;
    if (taken >= 0) {
        cb_mounts_attach_sysfs(&p->mounts, p->sysfs_fd);
        c->netns_fd = p->netns_fd;
    }
    if (rt->cfg.allow_weaken) { /* security battery control runs only */
        _cleanup_close_ int wfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *w = NULL;
        if (wfd >= 0 && cb_read_file_at(wfd, "weaken", 16, &w, NULL) == 0)
            c->weaken = (unsigned)strtoul(w, NULL, 10);
    }
    return 0;
}

/* Have the sandbox's disk image ready for the spawn: a detached mount the
 * child attaches in its own namespace (sb->disk_fd; kept from create, else
 * made now), or, in the fallback and for sandboxes whose image an older
 * cellbox mounted on the host, a mount in the host's namespace. */
static int ready_disk(struct cb_sandbox *sb, struct cb_error **err)
{
    if (!has_disk_image(sb))
        return 0;
    struct cb_quota *q = &sb->rt->quota;
    if (q->host_mounts || cb_quota_image_host_mounted(sb->dir)) {
        if (sb->disk_fd >= 0) { /* made before the fallback was chosen */
            close(sb->disk_fd);
            sb->disk_fd = -1; /* cb_quota_image_open waits for its release */
        }
        return cb_quota_image_mount(q, sb->dir, err);
    }
    if (sb->disk_fd < 0 && (sb->disk_fd = cb_quota_image_open(q, sb->dir, err)) < 0)
        return -1;
    return 0;
}

/* The kernel refused to idmap the template root (ns.h): the sandbox runs
 * as before this feature, its root unable to edit template files. Said
 * once per daemon, not per sandbox. */
static void warn_lower_idmap(int e)
{
    static int warned;
    if (e && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "cellbox: the kernel refused an idmapped mount of the template root "
                        "(%s): sandbox root sees template files as nobody and cannot edit "
                        "them\n", strerror(e));
}

/* Likewise for the time namespace (ns.c step_time_ns). */
static void warn_time_ns(int e)
{
    static int warned;
    if (e && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "cellbox: no time namespace for sandboxes (%s): their uptime and "
                        "monotonic clock are the host's\n", strerror(e));
}

/* While the child sets up (cb_child_config.meanwhile): HELLO to init's
 * listener, which is bound before init runs, so the connection and its
 * HELLO wait there when init starts. Sent after the child's exec, it
 * reached an init that had finished its own setup ~50 us earlier and gone
 * to sleep: a wake-up on the other CPU more (the answer ~90 us later).
 * The child shares this thread's errno until its exec, so only raw system
 * calls here (rawsys.h); what they need was made by plan_hello. Nothing
 * is reported: without a connection, container_start connects after the
 * exec and says what is wrong. */
#if CB_HAVE_RAW_SYSCALL
static void hello_meanwhile(void *arg)
{
    struct start_plan *p = arg;
    long s = cb_raw_syscall6(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0);
    if (s < 0)
        return;
    long r = cb_raw_syscall6(SYS_connect, s, (long)&p->hello_addr, sizeof p->hello_addr, 0, 0, 0);
    if (r == 0)
        r = cb_raw_syscall6(SYS_sendto, s, (long)p->hello_msg, (long)p->hello_len,
                            MSG_NOSIGNAL, 0, 0);
    if (r != (long)p->hello_len) {
        cb_raw_syscall6(SYS_close, s, 0, 0, 0, 0, 0);
        return;
    }
    p->hello_fd = (int)s;
}
#endif

/* What hello_meanwhile needs, made now; without it, no meanwhile. */
static void plan_hello(struct cb_sandbox *sb, struct start_plan *p)
{
#if CB_HAVE_RAW_SYSCALL
    if (sock_address(sb->dir, &p->hello_dirfd, &p->hello_addr, NULL) < 0 ||
        !(p->hello_msg = hello_frame(&p->hello_len)))
        return;
    p->child.meanwhile = hello_meanwhile;
    p->child.meanwhile_arg = p;
#endif
}

static int spawn_init(struct cb_sandbox *sb, pid_t *pid, int *pidfd, int *disk_errno,
                      int *attach_errno, struct cb_error **err)
{
    struct start_plan plan = {.init_fd = -1, .control_fd = -1, .log_fd = -1, .lower_fd = -1,
                              .netns_fd = -1, .sysfs_fd = -1, .hello_dirfd = -1,
                              .hello_fd = -1};
    int r = plan_start(sb, &plan, err);
    if (r == 0)
        plan_hello(sb, &plan);
    trace_phase("plan");
    if (r == 0)
        r = cb_ns_spawn(&plan.child, pid, pidfd, err);
    /* Spawned: the HELLO is the start's to finish. Else its init never
     * ran, and start_plan_clear closes the connection. */
    cb_closep(&sb->hello);
    if (r == 0)
        sb->hello = steal_fd(plan.hello_fd);
    sb->init_listen_fd = r == 0 ? plan.child.init_control_fd : -1;
    *disk_errno = plan.child.disk_errno;
    *attach_errno = plan.child.attach_errno;
    warn_lower_idmap(plan.child.lower_idmap_errno);
    warn_time_ns(plan.child.time_ns_errno);
    start_plan_clear(&plan);
    trace_phase("spawn");
    return r;
}

/* Keep a reference to the disk image's file system that outlives the
 * sandbox's mount namespace, so that its destroy can hand the image, file
 * system and loop device as they are, to the next sandbox
 * (cb_quota_image_recycle) instead of unmounting, deleting and making one
 * again. In the holder's fd table (holder.h), not ours: every new
 * sandbox's first process copies ours. Nothing is held when the holder
 * cannot: destroy then removes the image as before. */
static void hold_disk(struct cb_sandbox *sb)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/self/task/%d/fd/%d", (int)gettid(), sb->disk_fd);
    cb_holder_close(sb->held_disk);
    int h = cb_holder_open(path);
    sb->held_disk = h >= 0 ? h : -1;
}

/* Let go of the image's file system (hold_disk): before a start mounts the
 * image again (its file system must be gone first: cb_quota_image_open
 * waits for the loop device to let go of the file), and at destroy. */
static void drop_held_disk(struct cb_sandbox *sb)
{
    cb_holder_close(sb->held_disk);
    sb->held_disk = -1;
}

/* Spawn; if the kernel refuses to move the detached disk mount into the
 * sandbox's mount namespace, switch this runtime to host-namespace image
 * mounts (quota.h) and spawn once more. */
static int spawn_with_disk(struct cb_sandbox *sb, pid_t *pid, int *pidfd, struct cb_error **err)
{
    int disk_errno = 0, attach_errno = 0;
    int r = spawn_init(sb, pid, pidfd, &disk_errno, &attach_errno, err);
    if (r < 0 && attach_errno) {
        /* The kernel would not move a spare namespace's sysfs into the
         * sandbox (netns.h): no spares from now on, each sandbox clones
         * its own namespace and mounts its own sysfs, as before them. */
        fprintf(stderr, "cellbox: attaching a prepared sysfs in a sandbox failed (%s); "
                        "sandboxes make their own network namespace from now on\n",
                strerror(attach_errno));
        __atomic_store_n(&sb->rt->netns_refused, true, __ATOMIC_RELAXED);
        if (err) {
            cb_error_free(*err);
            *err = NULL;
        }
        r = spawn_init(sb, pid, pidfd, &disk_errno, &attach_errno, err);
    }
    if (r < 0 && disk_errno && sb->disk_fd >= 0) {
        fprintf(stderr, "cellbox: moving a disk image mount into a sandbox's namespace failed "
                        "(%s); mounting disk images in the host namespace from now on\n",
                strerror(disk_errno));
        __atomic_store_n(&sb->rt->quota.host_mounts, true, __ATOMIC_RELAXED);
        if (err) {
            cb_error_free(*err);
            *err = NULL;
        }
        r = ready_disk(sb, err);
        if (r == 0)
            r = spawn_init(sb, pid, pidfd, &disk_errno, &attach_errno, err);
    }
    /* Spawned or not, the child holds the mount now or no one needs it. */
    if (r == 0 && sb->disk_fd >= 0)
        hold_disk(sb);
    if (sb->disk_fd >= 0)
        close(sb->disk_fd);
    sb->disk_fd = -1;
    return r;
}

/* Forget the connection start kept (the sandbox stops or goes). */
static void drop_conn(struct cb_sandbox *sb)
{
    if (sb->conn >= 0)
        close(sb->conn);
    sb->conn = -1;
}

/* Let go of the root container_kill kept: the last reference to the
 * sandbox's overlay goes, and with it (in this thread, as the close
 * returns) its disk image's file system and loop device. */
static void drop_held_root(struct cb_sandbox *sb)
{
    cb_holder_close(sb->held_root);
    sb->held_root = -1;
}

static int container_start(struct cb_sandbox *sb, struct cb_error **err)
{
    if (sb->state != CB_RUN_CREATED && sb->state != CB_RUN_STOPPED)
        return cb_error_set(err, EBUSY, CB_ERR_CONFLICT, "sandbox %s is running", sb->id);
    drop_held_root(sb); /* a start after kill (tier.h forbids it; be safe) */
    drop_held_disk(sb);
    trace_phase(NULL);
    if (ready_disk(sb, err) < 0)
        return cb_error_wrap(err, "start %s", sb->id);
    trace_phase("disk");
    pid_t pid = -1;
    int pidfd = -1;
    if (spawn_with_disk(sb, &pid, &pidfd, err) < 0)
        return cb_error_wrap(err, "start %s", sb->id);
    /* The HELLO sent while the child set up (hello_meanwhile), or now. */
    int fd = sb->hello;
    sb->hello = -1;
    if (fd >= 0)
        set_timeouts(fd, START_HELLO_TIMEOUT_MS);
    else
        fd = hello_begin(sb, START_HELLO_TIMEOUT_MS, err);
    sb->pid = pid;
    sb->is_our_child = true;
    sb->start_time = proc_start_time(pid); /* pinned by the spawn's pidfd */
    close(pidfd);
    sb->state = CB_RUN_RUNNING;
    /* Recorded whether or not init answers: it runs. */
    struct cb_error *serr = NULL;
    if (save_state(sb, fd < 0 ? &serr : err) < 0) {
        cb_error_free(serr);
        if (fd >= 0)
            close(fd);
        return cb_error_wrap(err, "start %s", sb->id);
    }
    trace_phase("state");
    if (fd >= 0 && hello_finish(fd, err) < 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return cb_error_wrap(err, "start %s", sb->id);
    /* Kept: whoever starts a sandbox connects to it next (the daemon, at
     * once or when a warm-pool member is claimed), and a connection costs
     * a round trip to init (~0.25 ms). */
    drop_conn(sb);
    sb->conn = fd;
    trace_phase("hello");
    return 0;
}

static int container_connect(struct cb_sandbox *sb, int *fd_out, struct cb_error **err)
{
    if (sb->state != CB_RUN_RUNNING && sb->state != CB_RUN_PAUSED)
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    if (sb->conn >= 0) { /* the one start made */
        *fd_out = steal_fd(sb->conn);
        return 0;
    }
    int fd = connect_control(sb, HELLO_TIMEOUT_MS, err);
    if (fd < 0)
        return -1;
    *fd_out = fd;
    return 0;
}

/* ---- pause / resume / stop / destroy ---- */

static int container_pause(struct cb_sandbox *sb, struct cb_error **err)
{
    if (sb->state == CB_RUN_PAUSED)
        return 0;
    if (sb->state != CB_RUN_RUNNING)
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    if (sb->rt->cgroups->ops->freeze(sb->cg, true, err) < 0)
        return cb_error_wrap(err, "pause %s", sb->id);
    sb->state = CB_RUN_PAUSED;
    return 0;
}

static int container_resume(struct cb_sandbox *sb, struct cb_error **err)
{
    if (sb->state == CB_RUN_RUNNING)
        return 0;
    if (sb->state != CB_RUN_PAUSED)
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "sandbox %s is not paused", sb->id);
    if (sb->rt->cgroups->ops->freeze(sb->cg, false, err) < 0)
        return cb_error_wrap(err, "resume %s", sb->id);
    sb->state = CB_RUN_RUNNING;
    return 0;
}

static int wait_init_gone(struct cb_sandbox *sb, int pidfd)
{
    if (pidfd < 0)
        return 0;
    /* Poll first: the pidfd may be O_NONBLOCK (an event loop watched it, as
     * the daemon's warm pool does), and then waitid fails with EAGAIN
     * instead of waiting. Once it polls readable, waitid reaps at once. */
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int r = CB_RETRY(poll(&pfd, 1, STOP_TIMEOUT_MS));
    if (r != 1)
        return -ETIMEDOUT;
    if (sb->is_our_child) {
        /* From here on its pid can be reused: open_init_pidfd checks the
         * start time again. */
        __atomic_store_n(&sb->is_our_child, false, __ATOMIC_RELEASE);
        siginfo_t si;
        return CB_RETRY(waitid(P_PIDFD, pidfd, &si, WEXITED | __WALL)) < 0 ? -errno : 0;
    }
    return 0;
}

static int container_stop(struct cb_sandbox *sb, struct cb_error **err)
{
    drop_conn(sb);
    if (sb->state == CB_RUN_CREATED || sb->state == CB_RUN_STOPPED)
        return 0;
    const struct cb_cgroup_ops *ops = sb->rt->cgroups->ops;
    /* Frozen tasks cannot die: thaw first (SIGKILL is then delivered). */
    if (sb->state == CB_RUN_PAUSED)
        ops->freeze(sb->cg, false, NULL);
    /* Killing init makes the kernel kill its whole pid namespace. */
    int tmp, pidfd = borrow_pidfd(sb, &tmp);
    if (pidfd >= 0)
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    int gone = wait_init_gone(sb, pidfd);
    if (tmp >= 0)
        close(tmp);
    if (gone < 0)
        return cb_error_set(err, ETIMEDOUT, CB_ERR_INTERNAL, "stop %s: init did not exit", sb->id);
    /* Stragglers (e.g. a process setns'ed in by run_inside) share the cgroup. */
    for (int waited = 0; cb_cgroup_count_procs(sb->cg) > 0; waited++) {
        if (waited % 100 == 0)
            ops->kill_all(sb->cg, NULL);
        if (waited > STOP_TIMEOUT_MS)
            return cb_error_set(err, EBUSY, CB_ERR_INTERNAL, "stop %s: processes remain", sb->id);
        usleep(1000);
    }
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    sb->pidfd = -1;
    sb->pid = 0;
    sb->start_time = 0;
    sb->state = CB_RUN_STOPPED;
    sb->init_listen_fd = -1;
    if (sb->listener < 0) /* else bound for the directory's next sandbox */
        unlink(sb->sock_path);
    return save_state(sb, err);
}

/* Stop for good or for a later start: the image's file system is let go
 * too (hold_disk keeps it only for a destroy to recycle), so a stopped
 * sandbox holds no loop device or mount, as before recycling. */
static int container_stop_op(struct cb_sandbox *sb, struct cb_error **err)
{
    int r = container_stop(sb, err);
    if (r == 0)
        drop_held_disk(sb);
    return r;
}

/* Stop, for a sandbox about to be destroyed, keeping its root mounted
 * until destroy. Why: when init exits, its mount namespace goes, and the
 * last reference to the overlay and to the ext4 disk image under it went
 * with it: unmounting the image (a sync of its metadata through the loop
 * device) ran inside init's exit, and the caller (the API's DELETE,
 * answered once every process is dead) waited for it: 10-12 ms of a
 * delete with disk images vs 3-4 ms without, measured here (2-3 ms with
 * this, and create+exec+delete with one client 15-40 % faster). Holding the
 * root (opened through /proc/<init>/root, checked to still be our init
 * after the open) keeps those mounts referenced, detached from any
 * namespace; destroy lets go of it from the background teardown. The
 * reference lives in the holder's own fd table (holder.h), never in one a
 * new sandbox's first process copies. Processes are as dead as after stop:
 * init has exited and its pid namespace with it. */
static int container_kill(struct cb_sandbox *sb, struct cb_error **err)
{
    if (sb->held_root < 0 && sb->state != CB_RUN_CREATED && sb->state != CB_RUN_STOPPED &&
        sb->pid > 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/root", (int)sb->pid);
        int h = cb_holder_open(path); /* not in our fd table: holder.h */
        if (h >= 0 && !init_alive(sb)) {
            cb_holder_close(h); /* not our init any more: hold nothing */
            h = -1;
        }
        sb->held_root = h;
    }
    take_listener(sb);
    take_netns(sb);
    return container_stop(sb, err);
}

static int container_destroy(struct cb_sandbox *sb, struct cb_error **err)
{
    take_listener(sb);
    take_netns(sb);
    if (container_stop(sb, err) < 0)
        return cb_error_wrap(err, "destroy");
    drop_held_root(sb);
    int r = 0;
    if (sb->cg && cb_cgroup_destroy(sb->cg, STOP_TIMEOUT_MS, err) < 0)
        return cb_error_wrap(err, "destroy %s", sb->id);
    /* No process of it is left (the cgroup is gone): its network namespace
     * can go to the next sandbox of its group. */
    cb_netns_retire(sb->rt->netns_spares, steal_fd(sb->netns), sb->net_group);
    /* Every process is gone and the overlay with them: the image's file
     * system is ours alone now, to recycle (quota.h), else to let go. */
    int disk = cb_holder_take(sb->held_disk);
    sb->held_disk = -1;
    bool recycled = disk >= 0 && has_disk_image(sb) &&
                    cb_quota_image_recycle(&sb->rt->quota, sb->dir, disk) == 0;
    if (disk >= 0)
        close(disk);
    if (recycled) {
        /* the image is a spare now: nothing of it left here */
    } else if (has_disk_image(sb)) {
        r = cb_quota_image_remove(sb->dir); /* its contents go with it */
    } else if (strcmp(sb->layer_dir, sb->dir) != 0) {
        if (sb->rt->quota.enabled)
            cb_quota_set(&sb->rt->quota, sb->layer_dir, sb->project, 0, NULL);
        r = cb_rootfs_remove_tree(sb->layer_dir);
    }
    if (r == 0)
        r = cb_sbdir_retire(sb->rt->dir_spares, sb->dir, steal_fd(sb->listener));
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "destroy %s: remove files", sb->id);
    /* The uid range goes last: only now is nothing left that it owns. */
    return give_back_slot(sb->rt, sb->slot, err);
}

/* ---- the rest of the vtable ---- */

static int container_probe(struct cb_runtime *rt, char **reason)
{
    if (access(rt->init_path, X_OK) < 0) {
        *reason = cb_xasprintf("cellbox-init not executable: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int container_root_fd(struct cb_sandbox *sb, int *fd_out, struct cb_error **err);

/* A running sandbox's image is mounted in its namespace only: statfs of
 * its root (an overlay) reports the upper layer's file system, the image. */
static int64_t image_used(struct cb_sandbox *sb)
{
    int root = -1;
    if ((sb->state == CB_RUN_RUNNING || sb->state == CB_RUN_PAUSED) &&
        !cb_quota_image_host_mounted(sb->dir) && container_root_fd(sb, &root, NULL) == 0) {
        int64_t used = cb_quota_image_used_fd(root);
        close(root);
        return used;
    }
    return cb_quota_image_used(sb->dir);
}

static int container_stats(struct cb_sandbox *sb, struct cb_sandbox_stats *out,
                           struct cb_error **err)
{
    memset(out, 0, sizeof *out);
    if (sb->rt->cgroups->ops->stats(sb->cg, out, err) < 0)
        return -1;
    int64_t used = has_disk_image(sb) ? image_used(sb)
                                      : cb_quota_used(&sb->rt->quota, sb->project);
    if (used >= 0)
        out->disk_bytes = (uint64_t)used;
    return 0;
}

static int container_set_limits(struct cb_sandbox *sb, const struct cb_limits *l,
                                struct cb_error **err)
{
    /* An image's size is fixed when it is made (ext4 cannot shrink online). */
    if (has_disk_image(sb) && l->disk_bytes != sb->limits.disk_bytes)
        return cb_error_set(err, EINVAL, CB_ERR_CONFLICT,
                            "disk_mb cannot change: this host enforces it with a fixed-size "
                            "disk image per sandbox (no quota support in the kernel)");
    if (sb->rt->cgroups->ops->set_limits(sb->cg, l, err) < 0) {
        /* Limits are written one file at a time: put back any the refused
         * one followed, so the sandbox runs under its old limits, all of
         * them, as its record says. */
        sb->rt->cgroups->ops->set_limits(sb->cg, &sb->limits, NULL);
        return cb_error_wrap(err, "limits %s", sb->id);
    }
    if (sb->rt->quota.enabled && strcmp(sb->layer_dir, sb->dir) != 0 &&
        cb_quota_set(&sb->rt->quota, sb->layer_dir, sb->project, l->disk_bytes, err) < 0)
        return cb_error_wrap(err, "limits %s", sb->id);
    sb->limits = *l;
    return save_state(sb, err);
}

static enum cb_sandbox_run_state container_state(struct cb_sandbox *sb);

/* ---- claim (warm pool) ----
 *
 * A warm-pool member is an ordinary sandbox created under an internal id
 * ("pool_<hex>") and started, so init already answers. Claiming it gives it
 * its real identity; afterwards nothing distinguishes it from a sandbox
 * created under that id: sandboxes/<id>, the cgroup <parent>/<id>, the uid
 * slot file's owner, runtime.state, the uts hostname and /etc/hostname,
 * /etc/hosts all carry the new id/name.
 *
 * Order (crash safety): the directory rename is the commit point. Before
 * it, the member is still a pool member (the pool's recovery destroys it);
 * after it, adopt(new_id) finds runtime.state in the new place and finishes
 * a cgroup rename a crash interrupted (adopt_cgroup below). */

static int rename_cgroups(struct cb_sandbox *sb, const char *new_id, struct cb_error **err)
{
    struct cb_cgroup *to = cb_cgroup_open(sb->rt->cgroups, new_id);
    int i = 0;
    for (; i < sb->cg->ndirs && i < to->ndirs; i++)
        if (rename(sb->cg->dirs[i], to->dirs[i]) < 0)
            break;
    if (i < sb->cg->ndirs) {
        int e = errno;
        while (i-- > 0)
            rename(to->dirs[i], sb->cg->dirs[i]);
        cb_cgroup_free(to);
        return cb_error_set(err, e, CB_ERR_INTERNAL, "rename cgroup to %s", new_id);
    }
    cb_cgroup_free(sb->cg);
    sb->cg = to;
    return 0;
}

/* Rewrite a file of the pristine sandbox root in place, through the
 * sandbox's own root (its upper layer may be on a disk mounted only in the
 * sandbox's namespace). The file is in the upper layer already
 * (cb_rootfs_prepare_upper), so the write lands there, same inode, no
 * copy-up. RESOLVE_IN_ROOT + O_NOFOLLOW keep it inside the sandbox even
 * though no tenant code has run in a pool member yet. */
static int rewrite_upper_file(int root, const char *path, const char *text)
{
    _cleanup_close_ int fd = cb_safepath_open(root, path, O_WRONLY | O_TRUNC | O_NOFOLLOW, 0);
    if (fd < 0)
        return fd;
    return cb_write_all(fd, text, strlen(text));
}

/* Set the hostname in the sandbox's uts namespace from this thread:
 * setns(CLONE_NEWUTS) moves only the calling thread, which then returns to
 * the daemon's own uts namespace. Returning cannot fail for root (we hold
 * CAP_SYS_ADMIN in our own user namespace); if it ever did, this worker
 * thread would only see the sandbox's hostname in uname(), nothing else.
 * Measured 0.25 ms cheaper than a short-lived thread doing the same. */
static int set_hostname_ns(struct cb_sandbox *sb, const char *hostname)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/uts", (int)sb->pid);
    _cleanup_close_ int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    /* The pidfd check after the open proves the pid was still our init. */
    if (nsfd < 0 || !init_alive(sb))
        return nsfd < 0 ? -errno : -ESRCH;
    if (sb->rt->host_uts_fd < 0)
        return -EBADF;
    if (setns(nsfd, CLONE_NEWUTS) < 0)
        return -errno;
    int r = sethostname(hostname, strlen(hostname)) < 0 ? -errno : 0;
    if (setns(sb->rt->host_uts_fd, CLONE_NEWUTS) < 0 && r == 0)
        r = -errno;
    return r;
}

static int set_hostname(struct cb_sandbox *sb, const char *hostname, struct cb_error **err)
{
    int r = set_hostname_ns(sb, hostname);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "set hostname");
    _cleanup_close_ int root = -1;
    if (container_root_fd(sb, &root, err) < 0)
        return cb_error_wrap(err, "sandbox /etc/hostname");
    _cleanup_free_ char *hn = cb_xasprintf("%s\n", hostname);
    _cleanup_free_ char *hosts = cb_xasprintf(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "127.0.1.1\t%s\n", hostname);
    if ((r = rewrite_upper_file(root, "etc/hostname", hn)) < 0 ||
        (r = rewrite_upper_file(root, "etc/hosts", hosts)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "sandbox /etc/hostname");
    return 0;
}

static void set_paths(struct cb_sandbox *sb, const char *new_id)
{
    bool layers_in_dir = sb->layer_dir && strcmp(sb->layer_dir, sb->dir) == 0;
    bool image = has_disk_image(sb);
    struct cb_sandbox *fresh = sandbox_new(sb->rt, new_id);
    free(sb->id);
    free(sb->dir);
    free(sb->rootfs);
    free(sb->sock_path);
    sb->id = steal_ptr(fresh->id);
    sb->dir = steal_ptr(fresh->dir);
    sb->rootfs = steal_ptr(fresh->rootfs);
    sb->sock_path = steal_ptr(fresh->sock_path);
    sandbox_free(fresh);
    if (layers_in_dir)
        set_layer_dir(sb, sb->dir);
    if (image) {
        _cleanup_free_ char *ld = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, sb->dir);
        set_layer_dir(sb, ld);
    }
}

int cb_container_claim(struct cb_sandbox *sb, const char *new_id, const char *hostname,
                       const struct cb_limits *limits, struct cb_error **err)
{
    if (!id_ok(new_id))
        return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST, "bad sandbox id");
    if (container_state(sb) != CB_RUN_RUNNING)
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "pool sandbox %s is not running", sb->id);
    if (has_disk_image(sb) && limits->disk_bytes != sb->limits.disk_bytes)
        return cb_error_set(err, EINVAL, CB_ERR_CONFLICT, "pool member's disk image has another size");
    /* The pool watched the init through a held pidfd (made O_NONBLOCK by its
     * event loop); the claimed sandbox holds none (open_init_pidfd). */
    if (sb->pidfd >= 0) {
        close(sb->pidfd);
        sb->pidfd = -1;
    }
    trace_phase(NULL);
    /* A member made under the id its sandbox gets (the daemon's pool) has
     * its directory, cgroups and uid-slot owner right already. */
    bool same_id = strcmp(new_id, sb->id) == 0;
    /* Before anything moves: cellboxd's pool makes members under their
     * sandboxes' ids; a member of an older daemon ("pool_<hex>") on a v2
     * host is refused, and the caller creates the sandbox cold. */
    if (!same_id && !cb_cgroup_can_rename(sb->rt->cgroups))
        return cb_error_set(err, EPERM, CB_ERR_CONFLICT,
                            "claim %s as %s: cgroup v2 cannot rename the member's cgroup "
                            "(only a member made under its sandbox's id can be claimed)",
                            sb->id, new_id);
    if (!same_id) {
        _cleanup_free_ char *new_dir = cb_xasprintf("%s/%s", sb->rt->sandboxes_dir, new_id);
        /* RENAME_NOREPLACE: an existing sandbox of that id is never overwritten. */
        if (renameat2(AT_FDCWD, sb->dir, AT_FDCWD, new_dir, RENAME_NOREPLACE) < 0)
            return cb_error_set(err, errno, errno == EEXIST ? CB_ERR_CONFLICT : CB_ERR_INTERNAL,
                                "claim %s as %s", sb->id, new_id);
        set_paths(sb, new_id);
        trace_phase("claim_rename");
        if (rename_cgroups(sb, new_id, err) < 0)
            return cb_error_wrap(err, "claim %s", new_id);
        /* Only informational (who holds the range), but kept truthful. */
        cb_idmap_set_owner(sb->rt->slots_dirfd, sb->slot, new_id);
        trace_phase("claim_cgroup");
    }
    _cleanup_free_ char *want = cb_xstrndup(hostname && *hostname ? hostname : new_id, 63);
    bool rename_host = strcmp(want, sb->hostname) != 0;
    if (rename_host) {
        free(sb->hostname);
        sb->hostname = steal_ptr(want);
        if (set_hostname(sb, sb->hostname, err) < 0)
            return cb_error_wrap(err, "claim %s", new_id);
        trace_phase("claim_hostname");
    }
    /* The common create asks for the default shape the member already has:
     * then only runtime.state (new id) needs writing, not every cgroup file. */
    bool same = sb->limits.cpu == limits->cpu && sb->limits.memory_bytes == limits->memory_bytes &&
                sb->limits.disk_bytes == limits->disk_bytes && sb->limits.pids == limits->pids &&
                sb->limits.nofile == limits->nofile;
    /* runtime.state names the id and hostname: unchanged, nothing to save. */
    if (same ? (!same_id || rename_host) && save_state(sb, err) < 0
             : container_set_limits(sb, limits, err) < 0)
        return cb_error_wrap(err, "claim %s", new_id);
    trace_phase("claim_limits");
    return 0;
}

void cb_container_set_net_group(struct cb_sandbox *sb, const char *group)
{
    free(sb->net_group);
    sb->net_group = net_group_ok(group) ? cb_xstrdup(group) : NULL;
}

const char *cb_container_netns_of(const struct cb_sandbox *sb)
{
    return sb->netns_of;
}

const char *cb_container_id(const struct cb_sandbox *sb)
{
    return sb->id;
}

/* Slots named by the runtime.state of some sandbox directory (a claim by
 * rename, interrupted between the directory and the slot's owner file,
 * leaves a live sandbox whose slot file names the old id): a bitmap of
 * rt->cfg.uid_slots bits, or NULL when the directory cannot be read. */
static uint8_t *slots_in_use(struct cb_runtime *rt)
{
    DIR *d = opendir(rt->sandboxes_dir);
    if (!d)
        return NULL;
    uint8_t *used = cb_xcalloc(rt->cfg.uid_slots / 8 + 1, 1);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *path = cb_xasprintf("%s/%s/runtime.state", rt->sandboxes_dir,
                                                 de->d_name);
        _cleanup_free_ char *text = NULL;
        if (cb_read_file_at(AT_FDCWD, path, 64 << 10, &text, NULL) < 0)
            continue;
        const char *v = state_value(text, "slot");
        char *end;
        unsigned long n = v ? strtoul(v, &end, 10) : ULONG_MAX;
        if (v && end != v && n < rt->cfg.uid_slots)
            used[n / 8] |= (uint8_t)(1u << (n % 8));
    }
    closedir(d);
    return used;
}

/* Release every uid slot whose recorded owner is id, or, with id NULL,
 * whose owner has no sandbox directory and whose number no sandbox's
 * runtime.state names. Returns how many. */
static int release_slots(struct cb_runtime *rt, const char *id)
{
    _cleanup_free_ uint8_t *used = NULL;
    if (!id && !(used = slots_in_use(rt)))
        return 0;
    int n = 0;
    int dup_fd = openat(rt->slots_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        _cleanup_free_ char *owner = NULL;
        if (cb_read_file_at(rt->slots_dirfd, de->d_name, 128, &owner, NULL) < 0)
            continue;
        bool release;
        if (id) {
            release = strcmp(owner, id) == 0;
        } else {
            struct stat st;
            _cleanup_free_ char *dir = cb_xasprintf("%s/%s", rt->sandboxes_dir, owner);
            unsigned long slot = strtoul(de->d_name, NULL, 10);
            release = id_ok(owner) && lstat(dir, &st) < 0 && errno == ENOENT &&
                      slot < rt->cfg.uid_slots && !(used[slot / 8] & (1u << (slot % 8)));
        }
        if (release && unlinkat(rt->slots_dirfd, de->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int cb_container_release_orphan_slots(struct cb_runtime *rt)
{
    return release_slots(rt, NULL);
}

int cb_container_reclaim(struct cb_runtime *rt, const char *id)
{
    if (!id_ok(id))
        return -EINVAL;
    struct cb_cgroup *cg = cb_cgroup_open(rt->cgroups, id);
    int r = cb_cgroup_destroy(cg, STOP_TIMEOUT_MS, NULL);
    cb_cgroup_free(cg);
    /* Processes still dying after the wait (hundreds holding thousands of
     * files each, exiting under their memory limit, can take longer), or a
     * cgroup that cannot go yet: keep the directory and the uid slot, so
     * the range is not handed out while processes of it live and a retry
     * (the daemon's teardown queue, else its next start) finds it all. */
    if (r < 0)
        return -EBUSY;
    _cleanup_free_ char *dir = cb_xasprintf("%s/%s", rt->sandboxes_dir, id);
    /* A disk image mounted on the host (fallback) would make the removal
     * fail with EBUSY; one mounted in the sandbox died with its init. */
    cb_quota_image_remove(dir);
    int rr = cb_rootfs_remove_tree(dir);
    release_slots(rt, id);
    return rr;
}

/* Adopt after a crash between a claim's directory rename and its cgroup
 * rename: runtime.state still names the pool member's cgroup dirs. Finish
 * the rename so the sandbox's cgroup carries its id like any other. */
static void adopt_cgroup(struct cb_sandbox *sb, char *state_text)
{
    struct cb_cgroup *want = sb->cg;
    for (char *line = state_text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, "cgroup=", 7) == 0) {
            const char *old = line + 7;
            const char *base = strrchr(old, '/');
            for (int i = 0; base && i < want->ndirs; i++) {
                const char *wbase = strrchr(want->dirs[i], '/');
                size_t plen = (size_t)(base - old);
                if (strcmp(base, wbase) != 0 && strncmp(old, want->dirs[i], plen) == 0 &&
                    (size_t)(wbase - want->dirs[i]) == plen && access(want->dirs[i], F_OK) < 0)
                    rename(old, want->dirs[i]);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
}

static void adopt_liveness(struct cb_sandbox *sb)
{
    if (sb->state != CB_RUN_RUNNING && sb->state != CB_RUN_PAUSED)
        return;
    int fd = sb->pid > 0 ? (int)syscall(SYS_pidfd_open, sb->pid, 0) : -1;
    /* The pid must still be the same process: compare its start time
     * (read after the pidfd pins it, so the check cannot race a reuse). */
    if (fd >= 0 && proc_start_time(sb->pid) == sb->start_time && sb->start_time) {
        close(fd); /* reopened when needed (open_init_pidfd) */
        char buf[32];
        const struct cb_cgroup *cg = sb->cg;
        bool frozen = cg->freezer >= 0 &&
                      ((cb_cgroup_read(cg->dirs[cg->freezer], "freezer.state", buf, sizeof buf) > 0 &&
                        strncmp(buf, "FROZEN", 6) == 0) ||
                       (cb_cgroup_read(cg->dirs[cg->freezer], "cgroup.freeze", buf, sizeof buf) > 0 &&
                        buf[0] == '1'));
        sb->state = frozen ? CB_RUN_PAUSED : CB_RUN_RUNNING;
        return;
    }
    if (fd >= 0)
        close(fd);
    sb->state = CB_RUN_STOPPED;
    sb->pid = 0;
}

static int container_adopt(struct cb_runtime *rt, const char *id, struct cb_sandbox **out,
                           struct cb_error **err)
{
    if (!id_ok(id))
        return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST, "bad sandbox id");
    struct cb_sandbox *sb = sandbox_new(rt, id);
    if (load_state(sb, err) < 0) {
        sandbox_free(sb);
        return cb_error_wrap(err, "adopt");
    }
    sb->cg = cb_cgroup_open(rt->cgroups, id);
    _cleanup_close_ int dfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_free_ char *text = NULL;
    if (dfd >= 0 && cb_read_file_at(dfd, "runtime.state", 65536, &text, NULL) == 0)
        adopt_cgroup(sb, text);
    adopt_liveness(sb);
    *out = sb;
    return 0;
}

static enum cb_sandbox_run_state container_state(struct cb_sandbox *sb)
{
    if ((sb->state == CB_RUN_RUNNING || sb->state == CB_RUN_PAUSED) && !init_alive(sb))
        return CB_RUN_STOPPED; /* init died on its own; stop() cleans up */
    return sb->state;
}

/* Held from the first call until stop: the caller borrows it (tier.h). */
static int container_init_pidfd(struct cb_sandbox *sb)
{
    if (sb->state != CB_RUN_RUNNING && sb->state != CB_RUN_PAUSED)
        return -1;
    if (sb->pidfd < 0)
        sb->pidfd = open_init_pidfd(sb);
    return sb->pidfd;
}

static int container_root_fd(struct cb_sandbox *sb, int *fd_out, struct cb_error **err)
{
    _cleanup_close_ int tmp = -1;
    int pidfd = borrow_pidfd(sb, &tmp);
    if (pidfd < 0)
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/root", (int)sb->pid);
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_CONFLICT, "sandbox %s root", sb->id);
    /* The pid could have been reused between our check and open: only a
     * still-live pidfd proves the root we opened is our init's. */
    if (!pidfd_alive(pidfd)) {
        close(fd);
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    }
    *fd_out = fd;
    return 0;
}

static int container_map_ids(struct cb_sandbox *sb, uint32_t uid, uint32_t gid,
                             uid_t *host_uid, gid_t *host_gid)
{
    if (uid >= CB_IDMAP_RANGE || gid >= CB_IDMAP_RANGE)
        return -ERANGE;
    *host_uid = sb->base + uid;
    *host_gid = sb->base + gid;
    return 0;
}

static int container_run_inside(struct cb_sandbox *sb, uint32_t uid, uint32_t gid,
                                int (*fn)(void *arg), void *arg, struct cb_error **err)
{
    _cleanup_close_ int tmp = -1;
    int pidfd = borrow_pidfd(sb, &tmp);
    if (!pidfd_alive(pidfd))
        return cb_error_set(err, ESRCH, CB_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    pid_t pid = fork();
    if (pid < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "fork");
    if (pid == 0) {
        int r = cb_ns_enter(pidfd, sb->pid);
        if (r == 0 && (syscall(SYS_setgroups, 0, NULL) < 0 ||
                       syscall(SYS_setresgid, gid, gid, gid) < 0 ||
                       syscall(SYS_setresuid, uid, uid, uid) < 0))
            r = -errno;
        if (r < 0)
            _exit(255);
        r = fn(arg);
        _exit(r < 0 ? 254 : r > 253 ? 253 : r);
    }
    int status;
    if (CB_RETRY(waitpid(pid, &status, 0)) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "wait run_inside");
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
        return cb_error_set(err, EIO, CB_ERR_INTERNAL, "could not enter sandbox %s", sb->id);
    if (WEXITSTATUS(status) == 254)
        return cb_error_set(err, EIO, CB_ERR_INTERNAL, "operation inside %s failed", sb->id);
    return WEXITSTATUS(status);
}

static void container_release(struct cb_sandbox *sb)
{
    sandbox_free(sb);
}

const struct cb_tier_ops cb_tier_container = {
    .name = "container",
    .probe = container_probe,
    .create = container_create,
    .start = container_start,
    .connect = container_connect,
    .pause = container_pause,
    .resume = container_resume,
    .stop = container_stop_op,
    .kill = container_kill,
    .destroy = container_destroy,
    .stats = container_stats,
    .set_limits = container_set_limits,
    .adopt = container_adopt,
    .state = container_state,
    .init_pidfd = container_init_pidfd,
    .root_fd = container_root_fd,
    .map_ids = container_map_ids,
    .run_inside = container_run_inside,
    .release = container_release,
};
