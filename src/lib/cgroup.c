#include "cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"

static int open_at_dir(const char *dir, const char *file, int flags);

/* ---- recycled cgroups (cgroup.h: why) ---- */

struct cb_cgroup_spares {
    pthread_mutex_t lock; /* the runtime creates and destroys on worker threads */
    char *dir;            /* <hierarchy>/<parent>, resolved */
    unsigned long next;   /* suffix of the next spare we name */
    int n;
    char *names[CB_CGROUP_SPARES_MAX];
};

/* The number of spares of hierarchy h. */
static int spares_held(const struct cb_cgroup_manager *m, int h)
{
    struct cb_cgroup_spares *s = m->spares[h];
    pthread_mutex_lock(&s->lock);
    int n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int cb_cgroup_spare_count(const struct cb_cgroup_manager *m)
{
    int most = 0;
    for (int h = 0; h < CB_CGROUP_MAX_DIRS; h++) {
        int n = m->spares[h] ? spares_held(m, h) : 0;
        if (n > most)
            most = n;
    }
    return most;
}

int cb_cgroup_spare_count_min(const struct cb_cgroup_manager *m)
{
    int fewest = -1;
    for (int h = 0; h < CB_CGROUP_MAX_DIRS; h++) {
        if (!m->spares[h])
            continue;
        int n = spares_held(m, h);
        if (fewest < 0 || n < fewest)
            fewest = n;
    }
    return fewest < 0 ? 0 : fewest;
}

/* ---- spares made ahead (cgroup.h: cb_cgroup_spares_ahead) ----
 *
 * Lock order: the maker's lock, then a hierarchy's (never the other way:
 * a take signals the maker after dropping the hierarchy's lock). */
struct cb_cgroup_maker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ahead;
    bool closing;
    pthread_t thread;
};

/* Wake the maker: a create left some hierarchy with fewer spares than it
 * keeps ahead. Once per create, and only then: waking it after every take
 * of every hierarchy cost each create five wake-ups of a thread on the
 * other CPU, each of which then contended for the spare lock the create's
 * next take wanted (the cgroup step of a create 116 -> ~50 us p50 here). */
static void maker_wake(const struct cb_cgroup_manager *m)
{
    struct cb_cgroup_maker *k = m->maker;
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

/* Spares the maker keeps ahead per hierarchy (0: no maker). Set before
 * the maker starts and never changed. */
static int maker_ahead(const struct cb_cgroup_manager *m)
{
    return m->maker ? m->maker->ahead : 0;
}

/* The hierarchy with the fewest spares if that is under ahead, else -1:
 * sets are completed one at a time, as creates take them. */
static int hierarchy_short(const struct cb_cgroup_manager *m, int ahead)
{
    int best = -1, fewest = ahead;
    for (int h = 0; h < CB_CGROUP_MAX_DIRS; h++) {
        if (!m->spares[h])
            continue;
        int n = spares_held(m, h);
        if (n < fewest) {
            fewest = n;
            best = h;
        }
    }
    return best;
}

/* mkdir one new spare in hierarchy h. 0, or -errno. */
static int spare_make(const struct cb_cgroup_manager *m, int h)
{
    struct cb_cgroup_spares *s = m->spares[h];
    char name[64];
    pthread_mutex_lock(&s->lock);
    snprintf(name, sizeof name, CB_CGROUP_SPARE_PREFIX "%d-%lu", (int)getpid(), s->next++);
    pthread_mutex_unlock(&s->lock);
    _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->dir, name);
    if (mkdir(path, 0755) < 0)
        return -errno;
    bool kept = false;
    pthread_mutex_lock(&s->lock);
    if (s->n < CB_CGROUP_SPARES_MAX) {
        s->names[s->n++] = cb_xstrdup(name);
        kept = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (!kept) /* destroys filled it meanwhile */
        rmdir(path);
    return 0;
}

static void *maker_main(void *arg)
{
    struct cb_cgroup_manager *m = arg;
    struct cb_cgroup_maker *k = m->maker;
    pthread_mutex_lock(&k->lock);
    while (!k->closing) {
        int h = hierarchy_short(m, k->ahead);
        if (h < 0) {
            pthread_cond_wait(&k->cond, &k->lock);
            continue;
        }
        pthread_mutex_unlock(&k->lock);
        int r = spare_make(m, h);
        pthread_mutex_lock(&k->lock);
        if (r < 0) {
            /* Creates make their own as before; not retried in a loop. */
            fprintf(stderr, "cellbox: cannot make cgroups ahead (%s): %s\n",
                    m->spares[h]->dir, strerror(-r));
            break;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

void cb_cgroup_spares_ahead(struct cb_cgroup_manager *m, int n)
{
    const char *env = getenv("CB_CGROUP_AHEAD");
    if (env)
        n = atoi(env);
    if (n > CB_CGROUP_SPARES_MAX)
        n = CB_CGROUP_SPARES_MAX;
    if (n <= 0 || m->maker || !m->spares[0])
        return;
    struct cb_cgroup_maker *k = cb_xcalloc(1, sizeof *k);
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    k->ahead = n;
    m->maker = k;
    if (cb_thread_start(&k->thread, "cb-cgroups", maker_main, m) != 0) {
        m->maker = NULL;
        pthread_cond_destroy(&k->cond);
        pthread_mutex_destroy(&k->lock);
        free(k);
    }
}

static void maker_stop(struct cb_cgroup_manager *m)
{
    struct cb_cgroup_maker *k = m->maker;
    if (!k)
        return;
    cb_thread_stop(k->thread, &k->lock, &k->cond, &k->closing);
    m->maker = NULL;
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* Spares an earlier process left (a daemon restart, a crash): adopt the
 * clean ones up to the cap, remove the rest. */
static void spares_adopt(const struct cb_cgroup_manager *m, int h, struct cb_cgroup_spares *s)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, CB_CGROUP_SPARE_PREFIX, strlen(CB_CGROUP_SPARE_PREFIX)) != 0 ||
            e->d_type != DT_DIR)
            continue;
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->dir, e->d_name);
        if (s->n < CB_CGROUP_SPARES_MAX && m->ops->spare_clean(m, h, path))
            s->names[s->n++] = cb_xstrdup(e->d_name);
        else
            rmdir(path);
    }
    closedir(d);
}

/* v1 only (ops->spare_clean): v2 cannot rename cgroups. */
static void spares_open(struct cb_cgroup_manager *m)
{
    /* CB_CGROUP_SPARES=0: every destroy removes its cgroups (the behaviour
     * before recycling; for comparisons and as an escape hatch). */
    const char *env = getenv("CB_CGROUP_SPARES");
    if (!m->ops->spare_clean || (env && strcmp(env, "0") == 0))
        return;
    for (int h = 0; h < m->nhier; h++) {
        struct cb_cgroup_spares *s = cb_xcalloc(1, sizeof *s);
        pthread_mutex_init(&s->lock, NULL);
        s->dir = cb_xasprintf("%s/%s", m->hier[h], m->parent);
        spares_adopt(m, h, s);
        m->spares[h] = s;
    }
}

/* Our spares go with us (removing them is the kernel's slow path, but
 * once, at exit); a crash leaves at most the cap for the next process. */
static void spares_free(struct cb_cgroup_spares *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->dir, s->names[i]);
        rmdir(path);
        free(s->names[i]);
    }
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

/* Rename a spare of hierarchy h to target. 0 when done; -1 when there is
 * none or target exists already (a restart after stop reuses its cgroup):
 * mkdir then. A spare another process removed or took (ENOENT) is dropped.
 * *short_after: the hierarchy holds fewer spares than the maker keeps
 * ahead now (the caller wakes it). */
static int spare_take(const struct cb_cgroup_manager *m, int h, const char *target,
                      bool *short_after)
{
    struct cb_cgroup_spares *s = h < CB_CGROUP_MAX_DIRS ? m->spares[h] : NULL;
    if (!s)
        return -1;
    int r = -1;
    pthread_mutex_lock(&s->lock);
    while (s->n > 0) {
        char *name = s->names[s->n - 1];
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->dir, name);
        int renamed = rename(path, target);
        if (renamed < 0 && errno != ENOENT)
            break; /* target exists: keep the spare */
        s->n--;
        free(name);
        if (renamed == 0) {
            r = 0;
            break;
        }
    }
    *short_after = s->n < maker_ahead(m);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Keep the cgroup dir of hierarchy h of a destroyed sandbox as a spare
 * instead of removing it. 0 when kept; -1: the caller removes it. */
static int spare_put(const struct cb_cgroup_manager *m, int h, const char *dir)
{
    struct cb_cgroup_spares *s = h < CB_CGROUP_MAX_DIRS ? m->spares[h] : NULL;
    if (!s || !m->ops->spare_clean(m, h, dir))
        return -1;
    int r = -1;
    pthread_mutex_lock(&s->lock);
    if (s->n < CB_CGROUP_SPARES_MAX) {
        char name[64];
        snprintf(name, sizeof name, CB_CGROUP_SPARE_PREFIX "%d-%lu", (int)getpid(), s->next++);
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->dir, name);
        /* Same parent or the kernel refuses (cgroup1_rename): a sandbox
         * dir outside s->dir (another layout) is simply removed. */
        if (rename(dir, path) == 0) {
            s->names[s->n++] = cb_xstrdup(name);
            r = 0;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

enum cb_cgroup_version cb_cgroup_detect(const char *root)
{
    struct statfs sfs;
    if (statfs(root, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
        return CB_CGROUP_V1;
    char buf[256];
    if (cb_cgroup_read(root, "cgroup.controllers", buf, sizeof buf) <= 0)
        return CB_CGROUP_V1;
    return CB_CGROUP_V2;
}

int cb_cgroup_manager_open(enum cb_cgroup_version v, const char *root,
                           const char *parent, struct cb_cgroup_manager **out,
                           struct cb_error **err)
{
    if (!parent || !*parent || strstr(parent, "..") || parent[0] == '/')
        return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST, "cgroup parent \"%s\"",
                           parent ? parent : "");
    struct cb_cgroup_manager *m = cb_xcalloc(1, sizeof *m);
    m->ops = v == CB_CGROUP_V2 ? &cb_cgroup_v2_ops : &cb_cgroup_v1_ops;
    m->root = cb_xstrdup(root);
    m->parent = cb_xstrdup(parent);
    if (m->ops->prepare_parent(m, err) < 0) {
        cb_cgroup_manager_free(m);
        return cb_error_wrap(err, "cgroup parent");
    }
    spares_open(m);
    *out = m;
    return 0;
}

void cb_cgroup_manager_free(struct cb_cgroup_manager *m)
{
    if (!m)
        return;
    maker_stop(m); /* before the spares it fills go */
    for (int h = 0; h < CB_CGROUP_MAX_DIRS; h++)
        spares_free(m->spares[h]);
    for (int h = 0; h < m->nhier; h++)
        free(m->hier[h]);
    free(m->cpuset);
    free(m->cpuset_hier);
    free(m->root);
    free(m->parent);
    free(m);
}

static struct cb_cgroup *cgroup_new(const struct cb_cgroup_manager *m, const char *id)
{
    struct cb_cgroup *cg = cb_xcalloc(1, sizeof *cg);
    cg->mgr = m;
    cg->memory = cg->cpu = cg->cpuacct = cg->pids = cg->freezer = -1;
    m->ops->layout(m, id, cg);
    return cg;
}

bool cb_cgroup_can_rename(const struct cb_cgroup_manager *m)
{
    return m->ops->spare_clean != NULL; /* recycling is renaming */
}

struct cb_cgroup *cb_cgroup_open(const struct cb_cgroup_manager *m, const char *id)
{
    return cgroup_new(m, id);
}

int cb_cgroup_create(const struct cb_cgroup_manager *m, const char *id,
                     const struct cb_limits *limits, struct cb_cgroup **out,
                     struct cb_error **err)
{
    struct cb_cgroup *cg = cgroup_new(m, id);
    bool wake = false;
    for (int i = 0; i < cg->ndirs; i++) {
        bool short_after = false;
        int taken = spare_take(m, i, cg->dirs[i], &short_after);
        wake |= short_after;
        if (taken == 0)
            continue;
        if (mkdir(cg->dirs[i], 0755) < 0 && errno != EEXIST) {
            int e = errno;
            cb_cgroup_destroy(cg, 0, NULL);
            cb_cgroup_free(cg);
            return cb_error_set(err, e, CB_ERR_INTERNAL, "create cgroup %s", id);
        }
    }
    if (wake)
        maker_wake(m);
    if (m->ops->set_limits(cg, limits, err) < 0) {
        cb_cgroup_destroy(cg, 0, NULL);
        cb_cgroup_free(cg);
        return -1;
    }
    *out = cg;
    return 0;
}

/* The directories a sandbox's processes join: its own, then the shared
 * cpuset cgroup (v1, when there is one). The number filled in. */
static int join_dirs(const struct cb_cgroup *cg, const char *dirs[CB_CGROUP_MAX_JOIN])
{
    int n = 0;
    for (int i = 0; i < cg->ndirs; i++)
        dirs[n++] = cg->dirs[i];
    if (cg->mgr->cpuset)
        dirs[n++] = cg->mgr->cpuset;
    return n;
}

int cb_cgroup_attach(struct cb_cgroup *cg, pid_t pid, struct cb_error **err)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%d", (int)pid);
    const char *dirs[CB_CGROUP_MAX_JOIN];
    int n = join_dirs(cg, dirs);
    for (int i = 0; i < n; i++)
        if (cb_cgroup_write(dirs[i], "cgroup.procs", buf, err) < 0)
            return -1;
    return 0;
}

int cb_cgroup_open_join_fds(struct cb_cgroup *cg, int fds[CB_CGROUP_MAX_JOIN],
                            struct cb_error **err)
{
    if (cg->mgr->ops != &cb_cgroup_v1_ops)
        return 0;
    const char *dirs[CB_CGROUP_MAX_JOIN];
    int n = join_dirs(cg, dirs);
    for (int i = 0; i < n; i++) {
        fds[i] = open_at_dir(dirs[i], "tasks", O_WRONLY);
        if (fds[i] < 0) {
            int e = -fds[i];
            for (int j = 0; j < i; j++)
                close(fds[j]);
            return cb_error_set(err, e, CB_ERR_INTERNAL, "open cgroup tasks");
        }
    }
    return n;
}

int cb_cgroup_open_clone_into_fd(struct cb_cgroup *cg)
{
    if (cg->mgr->ops != &cb_cgroup_v2_ops || cg->ndirs != 1)
        return -EOPNOTSUPP;
    int fd = open(cg->dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cb_cgroup_count_procs(struct cb_cgroup *cg)
{
    /* Every v1 hierarchy holds the same processes; any one dir tells. */
    char buf[4096];
    int n = cb_cgroup_read(cg->dirs[0], "cgroup.procs", buf, sizeof buf);
    if (n < 0)
        return n == -ENOENT ? 0 : -1;
    int count = 0;
    for (int i = 0; i < n; i++)
        if (buf[i] == '\n')
            count++;
    return count;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int cb_cgroup_destroy(struct cb_cgroup *cg, int timeout_ms, struct cb_error **err)
{
    if (timeout_ms > 0 && cb_cgroup_count_procs(cg) > 0) {
        cg->mgr->ops->kill_all(cg, NULL);
        for (int waited = 0; cb_cgroup_count_procs(cg) > 0; waited++) {
            if (waited >= timeout_ms)
                return cb_error_set(err, EBUSY, CB_ERR_INTERNAL,
                                    "cgroup still has processes");
            sleep_ms(1);
        }
    }
    int r = 0;
    for (int i = 0; i < cg->ndirs; i++) {
        /* A frozen-but-empty v1 cgroup can be removed; EBUSY means a process
         * is still being torn down, so retry briefly. */
        if (spare_put(cg->mgr, i, cg->dirs[i]) == 0)
            continue;
        int tries = 0;
        while (rmdir(cg->dirs[i]) < 0 && errno != ENOENT) {
            if (errno != EBUSY || ++tries > 1000) {
                r = cb_error_set(err, errno, CB_ERR_INTERNAL, "remove cgroup");
                break;
            }
            sleep_ms(1);
        }
    }
    return r;
}

void cb_cgroup_free(struct cb_cgroup *cg)
{
    if (!cg)
        return;
    for (int i = 0; i < cg->ndirs; i++)
        free(cg->dirs[i]);
    free(cg);
}

/* dir/file, never following a symlink at file. One open of the joined
 * path, not the directory and then the file: a sandbox's life reads and
 * writes ~30 cgroup files, and each extra open walked the whole
 * /sys/fs/cgroup/<hierarchy>/cellbox/<id> path again. */
static int open_at_dir(const char *dir, const char *file, int flags)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return -ENAMETOOLONG;
    int fd = CB_RETRY(open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0644));
    return fd < 0 ? -errno : fd;
}

int cb_cgroup_write(const char *dir, const char *file, const char *value,
                    struct cb_error **err)
{
    /* O_CREAT only matters for the fake trees of the unit tests: on cgroupfs
     * the control files exist, and creating a missing one fails anyway. */
    int fd = open_at_dir(dir, file, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd < 0)
        return cb_error_set(err, -fd, CB_ERR_INTERNAL, "cgroup %s", file);
    ssize_t n = CB_RETRY(write(fd, value, strlen(value)));
    int e = errno;
    close(fd);
    if (n < 0)
        return cb_error_set(err, e, CB_ERR_INTERNAL, "cgroup %s=%s", file, value);
    return 0;
}

int cb_cgroup_write_changed(const char *dir, const char *file, const char *value,
                            struct cb_error **err)
{
    char cur[64];
    int n = cb_cgroup_read(dir, file, cur, sizeof cur);
    if (n > 0 && cur[n - 1] == '\n')
        cur[--n] = '\0';
    if (n > 0 && strcmp(cur, value) == 0)
        return 0;
    return cb_cgroup_write(dir, file, value, err);
}

int cb_cgroup_read(const char *dir, const char *file, char *buf, size_t size)
{
    int fd = open_at_dir(dir, file, O_RDONLY);
    if (fd < 0)
        return fd;
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = CB_RETRY(read(fd, buf + len, size - 1 - len));
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (int)len;
}

int cb_cgroup_read_u64(const char *dir, const char *file, uint64_t *out)
{
    char buf[64];
    int n = cb_cgroup_read(dir, file, buf, sizeof buf);
    if (n <= 0)
        return n < 0 ? n : -EINVAL;
    if (strncmp(buf, "max", 3) == 0) {
        *out = UINT64_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -EINVAL;
    *out = v;
    return 0;
}

int cb_cgroup_read_key(const char *dir, const char *file, const char *key,
                       uint64_t *out)
{
    char buf[8192];
    if (cb_cgroup_read(dir, file, buf, sizeof buf) < 0)
        return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            *out = strtoull(line + klen + 1, NULL, 10);
            return 0;
        }
    }
    return -1;
}

int cb_cgroup_kill_procs(const char *dir)
{
    char buf[65536];
    int n = cb_cgroup_read(dir, "cgroup.procs", buf, sizeof buf);
    if (n < 0)
        return n;
    int killed = 0;
    for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        /* Pids read from our own sandbox cgroup: the pids are in that cgroup
         * at read time; a recycled pid would have to be re-added to this
         * cgroup, which only we do. */
        if (pid > 1 && kill((pid_t)pid, SIGKILL) == 0)
            killed++;
        p = *end ? end + 1 : end;
    }
    return killed;
}
