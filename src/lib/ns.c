#include "ns.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h> /* unpoison_stack */
#endif

#include "caps.h"
#include "clone3.h"
#include "idmap.h"
#include "netns.h"
#include "tier.h"

#define CHILD_STACK_SIZE (256 * 1024)

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

/* ---- fd slots: what a sandbox's first process copies of ours ----
 *
 * A clone without CLONE_FILES copies the daemon's whole fd table into the
 * child, one reference per open file (a control connection per live
 * sandbox, so thousands), which the child then closes again; and the copy
 * keeps the table's size through exec, so every init carried an fd table
 * sized by the daemon's fd count when it was spawned (FDSize 1024 with 600
 * sandboxes alive: ~64 KiB per init at 10,000). Instead the spawn
 * duplicates the few descriptors its child needs into low numbers
 * reserved when the runtime opened (a group of slots per concurrent
 * spawn), clones with CLONE_FILES, and the child's first act is
 * close_range(floor, ~0, CLOSE_RANGE_UNSHARE): a table of its own holding
 * only what lies below the slots' floor (128 entries in cellboxd, whose
 * own first fds and the slots reach past the 64 every process has
 * without an allocation). It then says so on the sync socket; the
 * parent puts its placeholder back in the sync slot at once (the EOF at
 * the child's exec needs every other copy of that end closed), in the
 * others once the child has exec'd. No
 * free group (more concurrent spawns than groups) or no slots: the
 * copying clone, as before. */
#define SLOT_GROUPS 6
#define SLOT_FDS (8 + CB_CGROUP_MAX_JOIN)

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static int slot_state;      /* 0: not reserved yet, 1: reserved, -1: none */
static int slot_null = -1;  /* the placeholder a free slot duplicates */
static int slots[SLOT_GROUPS][SLOT_FDS];
static bool slot_busy[SLOT_GROUPS];
static unsigned slot_floor; /* one above the highest slot */

/* slot_lock held */
static void reserve_slots(void)
{
    slot_state = -1;
    slot_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (slot_null < 0)
        return;
    for (int g = 0; g < SLOT_GROUPS; g++)
        for (int i = 0; i < SLOT_FDS; i++) {
            int fd = fcntl(slot_null, F_DUPFD_CLOEXEC, 3);
            if (fd < 0)
                return; /* the reserved ones stay reserved, unused */
            slots[g][i] = fd;
            if ((unsigned)fd + 1 > slot_floor)
                slot_floor = (unsigned)fd + 1;
        }
    slot_state = 1;
}

void cb_ns_reserve_fd_slots(void)
{
    pthread_mutex_lock(&slot_lock);
    if (slot_state == 0)
        reserve_slots();
    pthread_mutex_unlock(&slot_lock);
}

int cb_ns_probe_time_ns(const char *init_path)
{
    /* A forked child: only unshare, close_range, execve and _exit run in
     * it, all safe after a fork of a threaded process. */
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (unshare(CLONE_NEWTIME) < 0)
            _exit(3);
        syscall(SYS_close_range, 3U, ~0U, 0U);
        execl(init_path, "cellbox-init", "--probe-time-ns", (char *)NULL);
        _exit(4);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (!WIFEXITED(status))
        return -ECHILD;
    switch (WEXITSTATUS(status)) {
    case 0:
        return 1;
    case 1:
        return 0;
    case 3:
        return -ENOSYS;
    default:
        return -ENOEXEC; /* the probe did not run or could not read /proc */
    }
}

static int slot_acquire(void)
{
    int g = -1;
    pthread_mutex_lock(&slot_lock);
    if (slot_state == 0)
        reserve_slots();
    for (int i = 0; slot_state == 1 && i < SLOT_GROUPS && g < 0; i++)
        if (!slot_busy[i]) {
            slot_busy[i] = true;
            g = i;
        }
    pthread_mutex_unlock(&slot_lock);
    return g;
}

static void slot_release(int g)
{
    pthread_mutex_lock(&slot_lock);
    slot_busy[g] = false;
    pthread_mutex_unlock(&slot_lock);
}

struct moved_fd {
    int *field;
    int orig;
};

/* Put the placeholder back in every slot of group g the spawn used: the
 * daemon's duplicates of the child's descriptors go. */
static void slots_clear(int g, int n)
{
    for (int i = 0; i < n; i++)
        dup3(slot_null, slots[g][i], O_CLOEXEC);
}

/* Point every descriptor field of c the child uses at a duplicate in
 * group g. The number of moved fields, or -1 (nothing left moved). */
static int slots_fill(struct cb_child_config *c, int g, struct moved_fd *mv)
{
    int *fields[SLOT_FDS + 16];
    int n = 0;
    fields[n++] = &c->sync_fd;
    fields[n++] = &c->null_fd;
    fields[n++] = &c->log_fd;
    fields[n++] = &c->control_fd;
    fields[n++] = &c->init_fd;
    if (c->disk_target)
        fields[n++] = &c->disk_fd;
    if (c->lower_target)
        fields[n++] = &c->lower_fd;
    for (int i = 0; i < c->ncgroup_fds; i++)
        fields[n++] = &c->cgroup_fds[i];
    for (size_t i = 0; i < c->mounts->n && n < (int)CB_ARRAY_SIZE(fields); i++)
        if (c->mounts->steps[i].kind == CB_MNT_ATTACH)
            /* the table is the caller's plan, ours to point for the spawn */
            fields[n++] = &((struct cb_mount_step *)c->mounts->steps)[i].fd;
    if (n > SLOT_FDS)
        return -1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (*fields[i] < 0)
            continue;
        if (dup3(*fields[i], slots[g][k], O_CLOEXEC) < 0) {
            slots_clear(g, k);
            for (int j = 0; j < k; j++)
                *mv[j].field = mv[j].orig;
            return -1;
        }
        mv[k] = (struct moved_fd){fields[i], *fields[i]};
        *fields[i] = slots[g][k];
        k++;
    }
    return k;
}

/* What the child sends when a step fails. */
struct child_report {
    int error;    /* errno */
    int step;     /* index in child_steps */
    int detail;   /* mount table index for the mount step, else -1 */
};

/* ---- the child's ordered setup steps ---- */

static int step_wait_parent(struct cb_child_config *c, int *detail)
{
    /* The parent writes one byte once our uid/gid maps are in place and we
     * sit in the sandbox's cgroups. EOF means the parent gave up. */
    char go;
    ssize_t n;
    /* The daemon's end of the pair is gone already (close_inherited, with
     * every other descriptor we copied), so a daemon killed before
     * releasing us ends this read with EOF instead of leaving us blocked.
     * Not closed again here: its number may name the timens file by now. */
    do
        n = read(c->sync_fd, &go, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : n == 0 ? -EPIPE : -errno;
}

static int step_join_cgroups(struct cb_child_config *c, int *detail)
{
    /* "0" = this thread moves itself (see cb_cgroup_open_join_fds): no
     * grace-period wait, unlike the parent writing our pid. Done before
     * any other step, so everything the sandbox allocates is charged and
     * limited from here on. */
    for (int i = 0; i < c->ncgroup_fds; i++)
        if (write(c->cgroup_fds[i], "0", 1) != 1)
            return -errno;
    return 0;
}

static int step_become_root(struct cb_child_config *c, int *detail)
{
    /* Raw syscalls: glibc's wrappers would broadcast the change to the
     * daemon's threads (we share their memory, not their credentials).
     * Supplementary groups go first: the daemon's (host gid 0 among them)
     * must not follow us into the sandbox. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

static int step_private_root(struct cb_child_config *c, int *detail)
{
    /* Nothing we mount may propagate back to the host's mount namespace. */
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ? -errno : 0;
}

static int step_attach_disk(struct cb_child_config *c, int *detail)
{
    /* The disk image was mounted detached by the parent (host root, so the
     * ext4 superblock belongs to the host's user namespace and the sandbox
     * cannot remount it with other options); here it joins our private
     * mount namespace only. The host's namespace never holds it, so it
     * does not grow with each sandbox, and it goes when our namespace
     * dies. Once pivot_root detaches the old root, the disk is reachable
     * only as the overlay's upper layer. */
    if (!c->disk_target)
        return 0;
    if (move_mount(c->disk_fd, "", AT_FDCWD, c->disk_target, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        c->disk_errno = errno; /* shared memory: the parent reads it */
        return -errno;
    }
    return 0;
}

static int step_attach_lower(struct cb_child_config *c, int *detail)
{
    /* The template's root, idmapped by the parent (see parent_idmap_lower).
     * Attached only in our private namespace, like the disk; pivot_root
     * later detaches it with the old root, so the sandbox reaches the
     * template only through the overlay, which never writes a lower layer. */
    if (!c->lower_target)
        return 0;
    if (move_mount(c->lower_fd, "", AT_FDCWD, c->lower_target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

static int step_mounts(struct cb_child_config *c, int *detail)
{
    size_t failed = 0;
    int r = cb_mounts_apply(c->mounts, &failed, c->mount_ns);
    if (r < 0) {
        *detail = (int)failed;
        if (c->mounts->steps[failed].kind == CB_MNT_ATTACH)
            c->attach_errno = -r; /* shared memory: the parent reads it */
    }
    return r;
}

static int step_pivot_root(struct cb_child_config *c, int *detail)
{
    /* pivot_root(".", ".") stacks the old root under the new one; detaching
     * it leaves no path to the host's file system. */
    if (chdir(c->rootfs) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return -errno;
    return 0;
}

static int step_hostname(struct cb_child_config *c, int *detail)
{
    return sethostname(c->hostname, strlen(c->hostname)) < 0 ? -errno : 0;
}

static int step_loopback(struct cb_child_config *c, int *detail)
{
    /* A spare namespace came with loopback up (and is not ours to change). */
    return c->netns_fd >= 0 ? 0 : cb_netns_loopback_up();
}

static int step_cgroup_ns(struct cb_child_config *c, int *detail)
{
    /* The parent already moved us into our cgroups: from here on they are
     * this namespace's root, and the host's cgroup paths stay hidden. */
    return unshare(CLONE_NEWCGROUP) < 0 ? -errno : 0;
}

static int step_time_ns(struct cb_child_config *c, int *detail)
{
    /* The sandbox's own clocks: CLOCK_MONOTONIC and CLOCK_BOOTTIME read
     * (about) 0 when it starts, so uptime, /proc/uptime and clock_gettime
     * give the sandbox's age, as in a freshly booted VM, and not how long
     * the host has been up (none of its business; it also dates the host's
     * kernel). CLOCK_REALTIME is not namespaced. We are not in the new
     * namespace ourselves: execve moves us (and init's children are born
     * in it); the offsets must be written before that. Costs a page per
     * sandbox. A kernel without time namespaces (CONFIG_TIME_NS, < 5.6)
     * leaves the sandbox on the host's clocks; the parent says so once. */
    if (c->no_time_ns)
        return 0; /* the runtime said why, once (cb_ns_probe_time_ns) */
    if (unshare(CLONE_NEWTIME) < 0) {
        c->time_ns_errno = errno ? errno : EINVAL;
        return 0;
    }
    /* Offsets of minus the clocks just before the clone (sec, nsec with
     * 0 <= nsec < 1e9): the clocks start at the ~1 ms until init runs. Not
     * minus "now": init was born at the clone, earlier than now, and
     * /proc/1/stat shows its start (boot clock at fork) through these
     * offsets: it was negative, and ps and psutil dated init in the year
     * 2611. The kernel refuses offsets that make a clock negative. */
    struct timespec mono = c->clock_base[0], boot = c->clock_base[1];
    char text[96];
    int n = snprintf(text, sizeof text, "%d %lld %ld\n%d %lld %ld\n", CLOCK_MONOTONIC,
                     -(long long)mono.tv_sec - (mono.tv_nsec > 0),
                     mono.tv_nsec > 0 ? 1000000000L - mono.tv_nsec : 0L, CLOCK_BOOTTIME,
                     -(long long)boot.tv_sec - (boot.tv_nsec > 0),
                     boot.tv_nsec > 0 ? 1000000000L - boot.tv_nsec : 0L);
    /* Through the file child_main opened while we still had the daemon's
     * credentials: the kernel checks CAP_SYS_TIME in the namespace's owner
     * (ours) against the opener's credentials, and opening it now, as the
     * sandbox's root, would need us dumpable, a flag of the memory we
     * share with the daemon and every other child being set up. */
    int fd = c->timens_fd;
    c->timens_fd = -1;
    if (fd < 0)
        c->time_ns_errno = c->timens_open_errno; /* offsets 0: the host's clocks */
    else if (write(fd, text, (size_t)n) != n)
        c->time_ns_errno = errno ? errno : EIO;
    if (fd >= 0)
        close(fd);
    return 0;
}

static int step_rlimits(struct cb_child_config *c, int *detail)
{
    struct rlimit core = {0, 0};
    if (setrlimit(RLIMIT_NOFILE, &c->nofile) < 0 || setrlimit(RLIMIT_CORE, &core) < 0)
        return -errno;
    return 0;
}

static int step_fds(struct cb_child_config *c, int *detail)
{
    /* stdin /dev/null, stdout/stderr the log; then close every fd but the
     * control socket, the init binary and the sync socket (the last two
     * are CLOEXEC and vanish at exec). */
    if (dup2(c->null_fd, 0) < 0 || dup2(c->log_fd, 1) < 0 || dup2(c->log_fd, 2) < 0)
        return -errno;
    int keep[3] = {c->control_fd, c->init_fd, c->sync_fd};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (keep[j] < keep[i]) {
                int t = keep[i];
                keep[i] = keep[j];
                keep[j] = t;
            }
    unsigned int from = 3;
    for (int i = 0; i < 3; i++) {
        if ((unsigned)keep[i] > from)
            syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0);
        from = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
    int flags = fcntl(c->control_fd, F_GETFD);
    if (flags < 0 || fcntl(c->control_fd, F_SETFD, flags & ~FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

static int step_capabilities(struct cb_child_config *c, int *detail)
{
    int r;
    /* Control runs of the security battery only (CB_WEAKEN_ALL_CAPS): keep
     * the whole bounding set and leave the securebits unlocked, so root in
     * the sandbox holds every capability of its user namespace. */
    if (c->weaken & CB_WEAKEN_ALL_CAPS)
        return (r = cb_caps_clear_ambient()) < 0 ? r : cb_caps_no_new_privs();
    if ((r = cb_caps_drop_bounding(c->keep_caps, c->last_cap)) < 0 ||
        (r = cb_caps_clear_ambient()) < 0 || (r = cb_caps_lock_securebits()) < 0 ||
        (r = cb_caps_no_new_privs()) < 0)
        return r;
    return 0;
}

static int step_signals(struct cb_child_config *c, int *detail)
{
    /* Handlers reset on exec, ignored signals do not: give init defaults. */
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL) < 0 ? -errno : 0;
}

static int step_seccomp(struct cb_child_config *c, int *detail)
{
    /* Last before exec: from here on only allow-listed syscalls work.
     * Skipped only for the security battery's control runs. */
    if (c->weaken & CB_WEAKEN_NO_SECCOMP)
        return 0;
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &c->seccomp) < 0 ? -errno : 0;
}

static int step_exec(struct cb_child_config *c, int *detail)
{
    syscall(SYS_execveat, c->init_fd, "", c->argv, c->envp, AT_EMPTY_PATH);
    return -errno;
}

struct child_step {
    const char *name;
    int (*run)(struct cb_child_config *c, int *detail);
};

static const struct child_step child_steps[] = {
    {"wait for parent", step_wait_parent},
    {"join cgroups", step_join_cgroups},
    {"become sandbox root", step_become_root},
    {"make / private", step_private_root},
    {"attach disk", step_attach_disk},
    {"attach lower layer", step_attach_lower},
    {"mount", step_mounts},
    {"pivot_root", step_pivot_root},
    {"sethostname", step_hostname},
    {"loopback up", step_loopback},
    {"unshare cgroup namespace", step_cgroup_ns},
    {"time namespace", step_time_ns},
    {"rlimits", step_rlimits},
    {"close fds", step_fds},
    {"capabilities", step_capabilities},
    {"signals", step_signals},
    {"seccomp", step_seccomp},
    {"exec init", step_exec},
};

/* Close every descriptor the clone copied from the daemon but those the
 * steps below use (and 0-2, which step_fds replaces). The copy holds
 * whatever any daemon thread had open at that instant, until step_fds
 * closes it ~1-2 ms later: a file the files API was writing kept open for
 * writing that long made a sandbox's exec of it fail with ETXTBSY (28 of
 * 300 write-then-exec rounds during create/delete churn), and a pipe or
 * socket end kept its peer from seeing EOF. */
static void close_inherited(const struct cb_child_config *c)
{
    int keep[16 + CB_CGROUP_MAX_JOIN];
    size_t n = 0;
    keep[n++] = c->sync_fd;
    keep[n++] = c->null_fd;
    keep[n++] = c->log_fd;
    keep[n++] = c->control_fd;
    keep[n++] = c->init_fd;
    if (c->disk_target)
        keep[n++] = c->disk_fd;
    if (c->lower_target)
        keep[n++] = c->lower_fd;
    for (int i = 0; i < c->ncgroup_fds; i++)
        keep[n++] = c->cgroup_fds[i];
    for (size_t i = 0; i < c->mounts->n && n < CB_ARRAY_SIZE(keep); i++)
        if (c->mounts->steps[i].kind == CB_MNT_ATTACH)
            keep[n++] = c->mounts->steps[i].fd;
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful */
        for (size_t j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned int from = 3;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < 0 || (unsigned)keep[i] < from)
            continue;
        if ((unsigned)keep[i] > from)
            syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0);
        from = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

static int child_main(void *arg)
{
    struct cb_child_config *c = arg;
    /* CLONE_FILES (fd slots above): a table of our own with only the
     * slots' range, at once, then tell the parent it may put its
     * placeholders back. The old kernel's way (no CLOSE_RANGE_UNSHARE,
     * before 5.9) copies the whole table; close_inherited trims it. */
    if (c->fd_floor) {
        if (syscall(SYS_close_range, c->fd_floor, ~0U, CLOSE_RANGE_UNSHARE) < 0 &&
            unshare(CLONE_FILES) < 0) {
            struct child_report rep = {errno, 0, -1};
            if (write(c->sync_fd, &rep, sizeof rep) < 0) {
                /* nothing left to tell anyone */
            }
            _exit(127);
        }
        if (write(c->sync_fd, "u", 1) != 1)
            _exit(127);
    }
    /* Our clock offsets file, opened before anything else changes (see
     * step_time_ns): its owner is the host's root whatever the dumpable
     * flag says, and that is still who we are. Only the descriptors we
     * copied go first: the sooner, the shorter they stay open. */
    close_inherited(c);
    c->timens_fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
    c->timens_open_errno = c->timens_fd < 0 ? errno : 0;
    for (size_t i = 0; i < CB_ARRAY_SIZE(child_steps); i++) {
        int detail = -1;
        int r = child_steps[i].run(c, &detail);
        if (i < CB_ARRAY_SIZE(c->step_ns))
            c->step_ns[i] = cb_now_ns();
        if (r < 0) {
            struct child_report rep = {-r, (int)i, detail};
            if (write(c->sync_fd, &rep, sizeof rep) < 0) {
                /* nothing left to tell anyone */
            }
            _exit(127);
        }
    }
    _exit(127); /* step_exec returned without error: cannot happen */
}

/* ---- parent side ---- */

static int report_to_error(struct cb_child_config *c, const struct child_report *rep,
                           struct cb_error **err)
{
    if (rep->step < 0 || rep->step >= (int)CB_ARRAY_SIZE(child_steps))
        return cb_error_set(err, EPROTO, CB_ERR_INTERNAL, "sandbox setup failed");
    const char *name = child_steps[rep->step].name;
    if (rep->detail >= 0 && (size_t)rep->detail < c->mounts->n) {
        const struct cb_mount_step *s = &c->mounts->steps[rep->detail];
        const char *t = s->target;
        /* name the in-sandbox path, never the host one */
        size_t rl = strlen(c->rootfs);
        if (strncmp(t, c->rootfs, rl) == 0)
            t += rl;
        return cb_error_set(err, rep->error, CB_ERR_INTERNAL,
                            "sandbox setup step \"%s\" (%s %s)", name,
                            cb_mount_step_name(s), *t ? t : "/");
    }
    return cb_error_set(err, rep->error, CB_ERR_INTERNAL, "sandbox setup step \"%s\"", name);
}

/* Make the detached lower layer read-only, nosuid, nodev and idmapped to
 * the child's user namespace (its maps are written: an idmapped mount
 * takes the namespace's mapping as it is when the mount is made). Files the
 * host's root owns in the template then belong to the sandbox's root, so
 * overlay copies them up when that root edits /etc/passwd or makes
 * /opt/x; without it they show as nobody and overlay refuses. The layer
 * stays read-only for everyone: overlay never writes a lower layer, and
 * the mount itself is read-only and reachable only by the child until its
 * pivot_root detaches it. We are host root: the kernel requires
 * CAP_SYS_ADMIN over the file system and over the target namespace.
 * If the kernel refuses (no idmap support on this file system or kernel),
 * the layer is attached read-only without the idmap: today's behaviour,
 * reported through lower_idmap_errno for the caller to log. */
static void parent_idmap_lower(struct cb_child_config *c, pid_t pid)
{
    if (!c->lower_target)
        return;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    _cleanup_close_ int userns = open(path, O_RDONLY | O_CLOEXEC);
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_IDMAP,
        .userns_fd = (uint64_t)userns,
    };
    if (userns >= 0 && mount_setattr(c->lower_fd, "", AT_EMPTY_PATH, &attr, sizeof attr) == 0)
        return;
    c->lower_idmap_errno = errno ? errno : EINVAL; /* of open or mount_setattr */
    attr.attr_set &= ~(uint64_t)MOUNT_ATTR_IDMAP;
    attr.userns_fd = 0;
    /* Best effort: the overlay never writes its lower layer either way. */
    if (mount_setattr(c->lower_fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        /* the clone keeps the template directory's flags */
    }
}

/* The sandbox's init is exempt from the OOM killer (oom_score_adj
 * -1000); init gives every process it starts 0 again (init/spawn.c).
 * Without it, lowering a cgroup v2 sandbox's memory.max below its use
 * killed init with the rest: the kernel's memory.max write calls the OOM
 * killer again before the first victim's memory is freed, and picked the
 * shell, then init (seen on Linux 6.1), and the whole sandbox stopped. A
 * memory limit still holds: init uses ~0.5 MiB and never grows with what
 * the sandbox does. Through the legacy oom_adj file (-17 is -1000): it
 * leaves oom_score_adj_min as it was (0), where a write to oom_score_adj
 * by a privileged process would lower the floor as well, and every
 * process init starts could then make itself exempt too, from the host's
 * OOM killer as much as its sandbox's. Done before the child is released,
 * so init reads its final value at start. Best effort: said once. */
static void parent_protect_init(pid_t pid)
{
    static bool unavailable; /* refused once (no CAP_SYS_RESOURCE): not tried again */
    if (__atomic_load_n(&unavailable, __ATOMIC_RELAXED))
        return;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/oom_adj", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : write(fd, "-17", 3);
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (n != 3 && !__atomic_exchange_n(&unavailable, true, __ATOMIC_RELAXED))
        fprintf(stderr, "cellbox: cannot exempt sandboxes' init from the OOM killer (%s: %s; "
                        "it takes CAP_SYS_RESOURCE): an OOM in a sandbox may stop it\n",
                path, strerror(e));
}

/* What the child waits for before it becomes its namespace's root: its
 * uid/gid maps, the lower layer's idmap, the cgroup join; then "g". */
static int parent_release_child(struct cb_child_config *c, pid_t pid, int sync,
                                struct cb_error **err)
{
    c->parent_ns[0] = cb_now_ns();
    if (cb_idmap_write_maps(pid, c->id_base, err) < 0)
        return cb_error_wrap(err, "uid map");
    c->parent_ns[1] = cb_now_ns();
    parent_idmap_lower(c, pid);
    c->parent_ns[2] = cb_now_ns();
    if (c->cgroup && c->ncgroup_fds == 0 && !c->joined_at_clone &&
        cb_cgroup_attach(c->cgroup, pid, err) < 0)
        return cb_error_wrap(err, "join cgroup");
    parent_protect_init(pid);
    if (CB_RETRY(write(sync, "g", 1)) != 1)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "release sandbox child");
    c->parent_ns[3] = cb_now_ns();
    return 0;
}

/* Until the child has exec'd init (the sync socket's EOF) or reported the
 * step that failed. */
static int parent_wait_exec(struct cb_child_config *c, int sync, struct cb_error **err)
{
    struct child_report rep;
    ssize_t n = CB_RETRY(read(sync, &rep, sizeof rep));
    if (n == 0)
        return 0; /* the sync socket closed at exec: init runs */
    if (n != (ssize_t)sizeof rep)
        return cb_error_set(err, n < 0 ? errno : EPROTO, CB_ERR_INTERNAL,
                            "sandbox setup report");
    return report_to_error(c, &rep, err);
}

static int spawn_child(struct cb_child_config *c, int parent_end, pid_t *pid_out,
                       int *pidfd_out, struct cb_error **err);

/* Debug aid (CB_TRACE_START=1): where the child's setup time goes. */
static void trace_steps(struct cb_child_config *c, uint64_t done_ns)
{
    if (!getenv("CB_TRACE_START"))
        return;
    char line[1024];
    size_t len = 0;
    uint64_t prev = c->clone_ns;
    for (size_t i = 0; i < CB_ARRAY_SIZE(child_steps) && i < CB_ARRAY_SIZE(c->step_ns); i++) {
        uint64_t t = c->step_ns[i] ? c->step_ns[i] : done_ns;
        len += (size_t)snprintf(line + len, sizeof line - len, " %s=%lluus", child_steps[i].name,
                                (unsigned long long)((t - prev) / 1000));
        prev = t;
        if (len >= sizeof line)
            break;
    }
    uint64_t *p = c->parent_ns;
    fprintf(stderr, "ns_spawn:%s total=%lluus (parent: clone=%lluus maps=%lluus idmap=%lluus "
            "release=%lluus)\n", line, (unsigned long long)((done_ns - c->clone_ns) / 1000),
            (unsigned long long)((p[0] - c->clone_ns) / 1000),
            (unsigned long long)((p[1] - p[0]) / 1000), (unsigned long long)((p[2] - p[1]) / 1000),
            (unsigned long long)((p[3] - p[2]) / 1000));
    if (!c->mount_ns)
        return;
    prev = c->step_ns[5]; /* after "attach lower layer": the mount step starts */
    for (size_t i = 0; i < c->mounts->n; i++) {
        const struct cb_mount_step *s = &c->mounts->steps[i];
        fprintf(stderr, "  mount %s %s %lluus\n", cb_mount_step_name(s), s->target,
                (unsigned long long)((c->mount_ns[i] - prev) / 1000));
        prev = c->mount_ns[i];
    }
    free(c->mount_ns);
    c->mount_ns = NULL;
}

/* Is step s one of the masks or read-only binds laid over the sandbox's
 * /proc (mounts.c build_proc)? */
static bool is_proc_hardening(const struct cb_child_config *c, const struct cb_mount_step *s)
{
    if (s->kind != CB_MNT_MASK_FILE && s->kind != CB_MNT_MASK_DIR &&
        s->kind != CB_MNT_READONLY)
        return false;
    size_t rl = strlen(c->rootfs);
    return strncmp(s->target, c->rootfs, rl) == 0 && strncmp(s->target + rl, "/proc/", 6) == 0;
}

/* CB_WEAKEN_OPEN_PROC (control runs only): a copy of the mount table
 * without the /proc masks. The steps still point into the original
 * table's strings, so only the step array is ours to free. */
static void open_proc_table(const struct cb_child_config *c, struct cb_mount_table *out)
{
    memset(out, 0, sizeof *out);
    out->steps = cb_xcalloc(c->mounts->n ? c->mounts->n : 1, sizeof *out->steps);
    for (size_t i = 0; i < c->mounts->n; i++)
        if (!is_proc_hardening(c, &c->mounts->steps[i]))
            out->steps[out->n++] = c->mounts->steps[i];
    out->cap = c->mounts->n;
}

static int spawn_prepared(struct cb_child_config *c, pid_t *pid_out, int *pidfd_out,
                          struct cb_error **err);

int cb_ns_clone_error(int e, const char *sysctl_dir, struct cb_error **err)
{
    if (e == EPERM || e == EACCES)
        return cb_error_set(err, e, CB_ERR_UNAVAILABLE,
                            "clone of the sandbox's namespaces refused: this host does not let "
                            "cellboxd make user namespaces (a security module or a seccomp "
                            "profile around it)");
    if (e != ENOSPC)
        return cb_error_set(err, e, CB_ERR_INTERNAL, "clone");
    static const char *const kinds[] = {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup", "time"};
    char zero[160] = "";
    size_t len = 0;
    for (size_t i = 0; i < CB_ARRAY_SIZE(kinds); i++) {
        char path[256], buf[32] = "";
        snprintf(path, sizeof path, "%s/max_%s_namespaces", sysctl_dir, kinds[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0 && strtol(buf, NULL, 10) == 0 && len < sizeof zero)
            len += (size_t)snprintf(zero + len, sizeof zero - len, "%smax_%s_namespaces=0",
                                    len ? ", " : "", kinds[i]);
    }
    return cb_error_set(err, e, CB_ERR_UNAVAILABLE,
                        "clone of the sandbox's namespaces: the host's limit on namespaces "
                        "is reached (%s in %s)", len ? zero : "see max_*_namespaces",
                        sysctl_dir);
}

int cb_ns_spawn(struct cb_child_config *c, pid_t *pid_out, int *pidfd_out,
                struct cb_error **err)
{
    if (!(c->weaken & CB_WEAKEN_OPEN_PROC))
        return spawn_prepared(c, pid_out, pidfd_out, err);
    const struct cb_mount_table *full = c->mounts;
    struct cb_mount_table open_proc;
    open_proc_table(c, &open_proc);
    c->mounts = &open_proc;
    int r = spawn_prepared(c, pid_out, pidfd_out, err);
    c->mounts = full;
    free(open_proc.steps);
    return r;
}

static int spawn_prepared(struct cb_child_config *c, pid_t *pid_out, int *pidfd_out,
                          struct cb_error **err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "socketpair");
    _cleanup_close_ int parent_end = sv[0];
    _cleanup_close_ int child_end = sv[1];
    _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open /dev/null");
    c->null_fd = null_fd;
    c->ncgroup_fds = 0;
    c->cgroup_into_fd = -1;
    if (c->cgroup) {
        int n = cb_cgroup_open_join_fds(c->cgroup, c->cgroup_fds, err);
        if (n < 0)
            return cb_error_wrap(err, "join cgroup");
        c->ncgroup_fds = n;
        /* v2: born in it (clone3.h); if that cannot be, the parent writes
         * the child's pid as before, and that write says what is wrong. */
        if (n == 0)
            c->cgroup_into_fd = cb_cgroup_open_clone_into_fd(c->cgroup);
    }
    c->sync_fd = steal_fd(child_end); /* spawn_child closes it after clone */
    c->parent_sync_fd = parent_end;
    int r = spawn_child(c, parent_end, pid_out, pidfd_out, err);
    for (int i = 0; i < c->ncgroup_fds; i++)
        close(c->cgroup_fds[i]);
    c->ncgroup_fds = 0;
    if (c->cgroup_into_fd >= 0)
        close(c->cgroup_into_fd);
    c->cgroup_into_fd = -1;
    return r;
}

#if defined(__SANITIZE_ADDRESS__)
static void unpoison_stack(void *p, size_t n) { __asan_unpoison_memory_region(p, n); }
#else
static void unpoison_stack(void *p, size_t n) { (void)p, (void)n; }
#endif

/* Child stacks, kept for the next spawn instead of unmapped: a stack is
 * ours again once its child has exec'd or died, and unmapping it cost
 * the start 31 us p50 (55 p90) here, between the child's exec and the
 * first word to its init: the pages it touched must leave every CPU's
 * TLB, an interrupt to each CPU running one of the daemon's threads; and
 * the next child faulted fresh pages in. At most one per concurrent
 * spawn (SLOT_GROUPS) is kept; ~16 KiB of each is ever touched. */
static pthread_mutex_t stack_lock = PTHREAD_MUTEX_INITIALIZER;
static void *stack_cache[SLOT_GROUPS];
static int nstack_cache;

static void *stack_get(void)
{
    pthread_mutex_lock(&stack_lock);
    void *st = nstack_cache > 0 ? stack_cache[--nstack_cache] : NULL;
    pthread_mutex_unlock(&stack_lock);
    if (st)
        return st;
    return mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
}

static void stack_put(void *st)
{
    pthread_mutex_lock(&stack_lock);
    bool kept = nstack_cache < (int)CB_ARRAY_SIZE(stack_cache);
    if (kept)
        stack_cache[nstack_cache++] = st;
    pthread_mutex_unlock(&stack_lock);
    if (!kept)
        munmap(st, CHILD_STACK_SIZE);
}

/* After a spawn with fd slots: c's fields name our descriptors again, and
 * the group is free. The child's copies are its own by now. */
static void spawn_restore(struct cb_child_config *c, int group, const struct moved_fd *mv, int n)
{
    if (group < 0)
        return;
    for (int i = 0; i < n; i++)
        *mv[i].field = mv[i].orig;
    c->fd_floor = 0;
    slot_release(group);
}

/* The clone itself: clone3 (into the v2 cgroup when there is one), else
 * glibc's clone, which is all kernels before 5.3, seccomp profiles that
 * refuse clone3, and non-x86-64 builds have. Either way the child runs
 * child_main(c) on stack; -1 with errno on failure. */
static pid_t clone_child(struct cb_child_config *c, int flags, void *stack, int *pidfd)
{
    c->joined_at_clone = false;
    long r = cb_clone3_vm((uint64_t)flags, 0, pidfd, c->cgroup_into_fd, stack,
                          CHILD_STACK_SIZE, child_main, c);
    if (r >= 0) {
        c->joined_at_clone = c->cgroup_into_fd >= 0;
        return (pid_t)r;
    }
    /* Whatever clone3 refused (missing, filtered, CLONE_INTO_CGROUP unknown
     * before 5.7, or the cgroup itself), the old way either works or fails
     * with the error to report. */
    return clone(child_main, (char *)stack + CHILD_STACK_SIZE, flags, c, pidfd);
}

static int spawn_child(struct cb_child_config *c, int parent_end, pid_t *pid_out,
                       int *pidfd_out, struct cb_error **err)
{
    int child_end = c->sync_fd;
    void *stack = stack_get();
    if (stack == MAP_FAILED) {
        int e = errno;
        close(child_end);
        return cb_error_set(err, e, CB_ERR_INTERNAL, "child stack");
    }
    /* The child never returns from child_main (it execs or _exits), so
     * AddressSanitizer's shadow of an earlier child's frames stays
     * poisoned, and mmap may hand the same addresses back: clear it, or
     * the next child's locals trip stale use-after-scope marks (sanitizer
     * builds only). */
    unpoison_stack(stack, CHILD_STACK_SIZE);
    memset(c->step_ns, 0, sizeof c->step_ns);
    memset(c->parent_ns, 0, sizeof c->parent_ns);
    c->disk_errno = 0;
    c->lower_idmap_errno = 0;
    c->time_ns_errno = 0;
    c->attach_errno = 0;
    c->mount_ns = getenv("CB_TRACE_MOUNTS") ? cb_xcalloc(c->mounts->n, sizeof *c->mount_ns) : NULL;
    c->clone_ns = cb_now_ns();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    int flags = CLONE_VM | CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID |
                CLONE_NEWIPC | CLONE_NEWUTS;
    /* The child's descriptors in a group of fd slots (above), if one is
     * free: then it shares our table only until its first syscall. */
    struct moved_fd moved[SLOT_FDS];
    int nmoved = -1;
    /* Only when init can be told the slot's number (control_arg). */
    int group = c->control_fd < 0 || c->control_arg ? slot_acquire() : -1;
    if (group >= 0 && (nmoved = slots_fill(c, group, moved)) < 0) {
        slot_release(group);
        group = -1;
    }
    c->fd_floor = group >= 0 ? slot_floor : 0;
    if (group >= 0)
        flags |= CLONE_FILES;
    if (c->control_arg)
        snprintf(c->control_arg, c->control_arg_size, "%d", c->control_fd);
    c->init_control_fd = c->control_fd;
    /* A spare network namespace: this thread enters it for the clone (the
     * child inherits the thread's namespaces) and leaves right after. */
    int host_net = c->netns_fd >= 0 ? cb_netns_host_fd() : -1;
    if (c->netns_fd < 0)
        flags |= CLONE_NEWNET;
    else if (host_net < 0 || setns(c->netns_fd, CLONE_NEWNET) < 0) {
        int e = host_net < 0 ? -host_net : errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(child_end);
        if (group >= 0)
            slots_clear(group, nmoved);
        spawn_restore(c, group, moved, nmoved);
        stack_put(stack);
        return cb_error_set(err, e, CB_ERR_INTERNAL, "enter the sandbox's network namespace");
    }
    /* exit signal 0: the daemon's SIGCHLD handling (libuv) never sees our
     * sandboxes; we reap through the pidfd with __WALL. */
    clock_gettime(CLOCK_MONOTONIC, &c->clock_base[0]);
    clock_gettime(CLOCK_BOOTTIME, &c->clock_base[1]);
    pid_t pid = clone_child(c, flags, stack, &pidfd);
    int clone_errno = errno;
    /* A worker thread of the daemon left in a sandbox's network would open
     * every later connection there: never carry on like that. */
    if (c->netns_fd >= 0 && setns(host_net, CLONE_NEWNET) < 0)
        abort();
    /* Signals stay blocked in this thread until the child has exec'd or is
     * gone: the child shares our errno (rawsys.h), and a handler run here
     * meanwhile (libuv's saves and writes back errno) could overwrite the
     * value the child is about to read. Process signals go to the daemon's
     * other threads; one for this thread waits ~1 ms. */
    /* Only our copy: the child uses its own (a copy of the table, or the
     * slot it unshares), and c is shared memory the child still reads, so
     * c->sync_fd stays. */
    close(child_end);
    /* Release it at once: the maps and the rest do not depend on its fd
     * table, so they are written while it unshares (below), and its "g"
     * is waiting when it looks. Two hand-offs between threads in a row
     * (its "u", then our "g") cost 0.15-0.5 ms of a start on this VM.
     * What we open meanwhile (/proc/<pid>/uid_map, ...) sits in the table
     * it still shares; its unshare keeps only what is below the slots'
     * floor and close_inherited closes all but its own. */
    int r = pid >= 0 ? parent_release_child(c, pid, parent_end, err) : 0;
    struct child_report early;
    if (r < 0 && recv(parent_end, &early, sizeof early, MSG_DONTWAIT) == (ssize_t)sizeof early) {
        /* it failed first (its fd table): that is the error to tell */
        cb_error_free(err ? *err : NULL);
        if (err)
            *err = NULL;
        r = report_to_error(c, &early, err);
    }
    if (pid >= 0 && r == 0 && group >= 0) {
        /* Wait until the child has a table of its own before the slots
         * get their placeholders back (its sync end among them: the EOF
         * at its exec needs ours gone). */
        struct child_report rep;
        ssize_t n = CB_RETRY(read(parent_end, &rep, sizeof rep));
        if (n != 1 || *(char *)&rep != 'u')
            r = n == (ssize_t)sizeof rep ? report_to_error(c, &rep, err)
                                         : cb_error_set(err, n < 0 ? errno : EPROTO,
                                                        CB_ERR_INTERNAL, "sandbox fd table");
    }
    /* The slot holding our duplicate of the child's sync end goes now (the
     * EOF at its exec needs every copy but the child's closed); the others
     * stay until the child has exec'd: below, we still use c's fields too
     * (the lower layer's idmap), and they name the slots. */
    for (int i = 0; group >= 0 && i < nmoved; i++)
        if (moved[i].field == &c->sync_fd)
            dup3(slot_null, slots[group][i], O_CLOEXEC);
    if (pid < 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (group >= 0)
            slots_clear(group, nmoved);
        spawn_restore(c, group, moved, nmoved);
        stack_put(stack);
        return cb_ns_clone_error(clone_errno, "/proc/sys/user", err);
    }
    if (r == 0 && c->meanwhile)
        c->meanwhile(c->meanwhile_arg);
    if (r == 0)
        r = parent_wait_exec(c, parent_end, err);
    if (r < 0) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        CB_RETRY(waitid(P_PIDFD, pidfd, &si, WEXITED | __WALL));
        close(pidfd);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* The child exec'd or is dead: c is ours again, the slots free. */
    if (group >= 0)
        slots_clear(group, nmoved);
    spawn_restore(c, group, moved, nmoved);
    /* The child exec'd (a new address space) or is gone: its stack is free. */
    stack_put(stack);
    if (r < 0)
        return -1;
    trace_steps(c, cb_now_ns());
    *pid_out = pid;
    *pidfd_out = pidfd;
    return 0;
}

int cb_ns_enter(int pidfd, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
    int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    if (setns(pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) < 0) {
        int e = errno;
        close(root);
        return -e;
    }
    int r = fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0 ? -errno : 0;
    close(root);
    return r;
}
