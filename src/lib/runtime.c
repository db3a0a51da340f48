/* runtime.c — host facts probed once: cgroup version and manager, the
 * compiled seccomp program, the quota volume, the state directory layout. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "caps.h"
#include "ns.h"
#include "template.h"

#define DEFAULT_UID_BASE (1u << 30)
#define DEFAULT_UID_SLOTS 16384u

/* Sandbox roots run as unprivileged host uids and must traverse the state
 * directory to reach their layers (overlay checks the mounter's access):
 * directories on the way are 0711 — searchable, not listable. */
static int make_dir(const char *path, struct cb_error **err)
{
    if (mkdir(path, 0711) < 0 && errno != EEXIST)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "mkdir %s", path);
    struct stat st;
    if (stat(path, &st) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "stat %s", path);
    if ((st.st_mode & 0011) != 0011 && chmod(path, (st.st_mode & 07777) | 0011) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "chmod %s", path);
    return 0;
}

static int open_layout(struct cb_runtime *rt, struct cb_error **err)
{
    rt->sandboxes_dir = cb_xasprintf("%s/sandboxes", rt->state_dir);
    rt->templates_dir = cb_xasprintf("%s/templates", rt->state_dir);
    rt->slots_dir = cb_xasprintf("%s/uidslots", rt->state_dir);
    if (make_dir(rt->state_dir, err) < 0 || make_dir(rt->sandboxes_dir, err) < 0 ||
        make_dir(rt->templates_dir, err) < 0)
        return -1;
    if (mkdir(rt->slots_dir, 0700) < 0 && errno != EEXIST)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "mkdir uidslots");
    rt->slots_dirfd = open(rt->slots_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rt->slots_dirfd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open uidslots");
    return 0;
}

/* Each sandbox mounts its overlay from inside its user namespace, as an
 * unprivileged host uid, so every directory on the way to the state dir must
 * be searchable by "other". A 0700 ancestor (mkdtemp, a private home) would
 * make every create fail deep in the child with EACCES; say so at start. */
static int check_state_dir_searchable(const char *state_dir, struct cb_error **err)
{
    char path[4096];
    if (strlen(state_dir) >= sizeof path)
        return cb_error_set(err, ENAMETOOLONG, CB_ERR_BAD_REQUEST, "state_dir too long");
    strcpy(path, state_dir);
    /* The state dir itself is ours: open_layout makes it 0711. */
    char *last = strrchr(path, '/');
    if (last && last != path)
        *last = 0;
    else
        return 0;
    for (;;) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH))
            return cb_error_set(err, EACCES, CB_ERR_BAD_REQUEST,
                                "%s (on the way to the state dir) is mode %04o: sandboxes "
                                "run as unprivileged uids and must traverse it; "
                                "chmod o+x it or choose another --state-dir",
                                path, st.st_mode & 07777);
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            return 0;
        *slash = 0;
    }
}

/* Whether sandboxes can have their own clocks on this kernel (ns.h): when
 * it would leave init in the host's time namespace after its exec, init
 * could not spawn anything (CLONE_VM refused), so they keep the host's.
 * A kernel without time namespaces is told by the first start (as
 * before). Said once per process. */
static void probe_time_ns(struct cb_runtime *rt)
{
    static int said;
    const char *off = getenv("CB_NO_TIME_NS"); /* operators, tests: host clocks */
    if (off && strcmp(off, "1") == 0) {
        rt->no_time_ns = true;
        return;
    }
    int r = cb_ns_probe_time_ns(rt->init_path);
    if (r == 1 || r == -ENOSYS)
        return;
    rt->no_time_ns = true;
    if (__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
        return;
    struct utsname u;
    if (r == 0)
        fprintf(stderr, "cellbox: this kernel (%s) keeps a process in its old time namespace "
                        "across exec: sandboxes keep the host's clocks (uptime, "
                        "CLOCK_MONOTONIC, CLOCK_BOOTTIME)\n",
                uname(&u) == 0 ? u.release : "?");
    else
        fprintf(stderr, "cellbox: could not run %s --probe-time-ns (%s): sandboxes keep the "
                        "host's clocks\n", rt->init_path, strerror(-r));
}

int cb_runtime_open(const struct cb_runtime_config *cfg, struct cb_runtime **out,
                    struct cb_error **err)
{
    if (!cfg->state_dir || cfg->state_dir[0] != '/')
        return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST, "state_dir must be absolute");
    if (check_state_dir_searchable(cfg->state_dir, err) < 0)
        return -1;
    /* Before this runtime opens anything: the fd slots a sandbox's first
     * process gets its descriptors in are the lowest numbers free now. */
    cb_ns_reserve_fd_slots();
    struct cb_runtime *rt = cb_xcalloc(1, sizeof *rt);
    rt->slots_dirfd = -1;
    pthread_mutex_init(&rt->freed_lock, NULL);
    rt->host_uts_fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    rt->cfg = *cfg;
    rt->state_dir = cb_xstrdup(cfg->state_dir);
    rt->init_path = cb_xstrdup(cfg->init_path ? cfg->init_path : "/usr/libexec/cellbox/cellbox-init");
    rt->cgroup_parent = cb_xstrdup(cfg->cgroup_parent ? cfg->cgroup_parent : "cellbox");
    rt->cfg.state_dir = rt->state_dir;
    rt->cfg.init_path = rt->init_path;
    rt->cfg.cgroup_parent = rt->cgroup_parent;
    if (!rt->cfg.uid_base)
        rt->cfg.uid_base = DEFAULT_UID_BASE;
    if (!rt->cfg.uid_slots)
        rt->cfg.uid_slots = DEFAULT_UID_SLOTS;
    if ((uint64_t)rt->cfg.uid_base + (uint64_t)rt->cfg.uid_slots * 65536 > UINT32_MAX) {
        cb_runtime_free(rt);
        return cb_error_set(err, ERANGE, CB_ERR_BAD_REQUEST, "uid ranges exceed 32 bits");
    }
    rt->last_cap = cb_caps_last_cap();
    probe_time_ns(rt);
    struct rlimit rl;
    rt->nofile_max = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_max : 1024;
    if (open_layout(rt, err) < 0 ||
        cb_seccomp_compile(&rt->seccomp, err) < 0 ||
        cb_cgroup_manager_open(cb_cgroup_detect("/sys/fs/cgroup"), "/sys/fs/cgroup",
                               rt->cgroup_parent, &rt->cgroups, err) < 0) {
        cb_runtime_free(rt);
        return cb_error_wrap(err, "runtime");
    }
    cb_cgroup_spares_ahead(rt->cgroups, CB_CGROUP_AHEAD_DEFAULT);
    if (rt->cgroups->ops == &cb_cgroup_v1_ops) {
        rt->cgroup_view_dir = cb_xasprintf("%s/cgroup-view", rt->state_dir);
        int r = cb_cgroup_make_view_dir(rt->cgroups, rt->cgroup_view_dir);
        if (r < 0) {
            fprintf(stderr, "cellbox: %s: %s; sandboxes do not see their cgroup at "
                            "/sys/fs/cgroup\n", rt->cgroup_view_dir, strerror(-r));
            free(rt->cgroup_view_dir);
            rt->cgroup_view_dir = NULL;
        }
    }
    cb_quota_open(&rt->quota, rt->state_dir, cfg->volume_bytes, cfg->no_disk_quota);
    rt->quota.durable = cfg->durable_disks; /* before the image maker starts */
    cb_quota_spares_open(&rt->quota);
    rt->dir_spares = cb_sbdir_open(rt->sandboxes_dir, CB_SBDIR_SPARES_MAX,
                                   !rt->quota.enabled && !rt->quota.images);
    rt->netns_spares = cb_netns_open(CB_NETNS_SPARES_DEFAULT);
    *out = rt;
    return 0;
}

void cb_runtime_free(struct cb_runtime *rt)
{
    if (!rt)
        return;
    /* The quota volume stays mounted on purpose: sandboxes outlive us. */
    cb_quota_clear(&rt->quota);
    cb_cgroup_manager_free(rt->cgroups);
    cb_sbdir_close(rt->dir_spares);
    cb_netns_close(rt->netns_spares);
    cb_seccomp_program_clear(&rt->seccomp);
    if (rt->slots_dirfd >= 0)
        close(rt->slots_dirfd);
    pthread_mutex_destroy(&rt->freed_lock);
    if (rt->host_uts_fd >= 0)
        close(rt->host_uts_fd);
    free(rt->state_dir);
    free(rt->init_path);
    free(rt->cgroup_parent);
    free(rt->sandboxes_dir);
    free(rt->templates_dir);
    free(rt->slots_dir);
    free(rt->cgroup_view_dir);
    free(rt);
}

const struct cb_runtime_config *cb_runtime_config(struct cb_runtime *rt)
{
    return &rt->cfg;
}

const char *cb_runtime_cgroup_version(struct cb_runtime *rt)
{
    return rt->cgroups->ops->version;
}

bool cb_runtime_disk_quota(struct cb_runtime *rt, const char **reason)
{
    bool on = rt->quota.enabled || rt->quota.images;
    if (reason)
        *reason = on ? NULL : rt->quota.reason;
    return on;
}

bool cb_runtime_disk_images(struct cb_runtime *rt)
{
    return !rt->quota.enabled && rt->quota.images;
}

int cb_template_ensure_host(struct cb_runtime *rt, struct cb_error **err)
{
    return cb_template_make_host(rt->templates_dir, err);
}

bool cb_template_exists(struct cb_runtime *rt, const char *name)
{
    if (!cb_template_name_ok(name))
        return false;
    _cleanup_free_ char *conf = cb_xasprintf("%s/%s/template.conf", rt->templates_dir, name);
    _cleanup_free_ char *rootfs = cb_xasprintf("%s/%s/rootfs", rt->templates_dir, name);
    struct stat st;
    return access(conf, F_OK) == 0 && stat(rootfs, &st) == 0 && S_ISDIR(st.st_mode);
}
