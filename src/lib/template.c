#include "template.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "rootfs.h"

bool cb_template_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

static bool path_ok(const char *p)
{
    return p[0] == '/' && !strstr(p, "/../") && strcmp(p + strlen(p) - (strlen(p) >= 3 ? 3 : 0), "/..") != 0 &&
           strlen(p) < 1024 && !strchr(p, ',');
}

int cb_template_parse(const char *text, struct cb_template *t, struct cb_error **err)
{
    _cleanup_free_ char *copy = cb_xstrdup(text);
    char *save = NULL;
    int lineno = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '#' || *line == '\0')
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST,
                                "template.conf line %d: expected key=value", lineno);
        *eq = '\0';
        const char *val = eq + 1;
        if (strcmp(line, "bind") != 0)
            continue; /* other keys belong to later issues (user, env, ...) */
        if (!path_ok(val))
            return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST,
                                "template.conf line %d: bad bind path", lineno);
        if (t->nbinds >= CB_TEMPLATE_MAX_BINDS)
            return cb_error_set(err, E2BIG, CB_ERR_BAD_REQUEST, "template.conf: too many binds");
        t->binds = cb_xrealloc(t->binds, (t->nbinds + 1) * sizeof *t->binds);
        t->binds[t->nbinds].source = cb_xstrdup(val);
        t->binds[t->nbinds].target = cb_xstrdup(val);
        t->nbinds++;
    }
    return 0;
}

void cb_template_free(struct cb_template *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbinds; i++) {
        free(t->binds[i].source);
        free(t->binds[i].target);
    }
    free(t->binds);
    free(t->name);
    free(t->rootfs);
    free(t);
}

int cb_template_load(const char *templates_dir, const char *name,
                     struct cb_template **out, struct cb_error **err)
{
    if (!cb_template_name_ok(name))
        return cb_error_set(err, EINVAL, CB_ERR_BAD_REQUEST, "bad template name");
    _cleanup_free_ char *dir = cb_xasprintf("%s/%s", templates_dir, name);
    _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return cb_error_set(err, errno, errno == ENOENT ? CB_ERR_NOT_FOUND : CB_ERR_INTERNAL,
                            "template %s", name);
    _cleanup_free_ char *text = NULL;
    int r = cb_read_file_at(dfd, "template.conf", CB_TEMPLATE_CONF_MAX, &text, NULL);
    if (r < 0)
        return cb_error_set(err, -r, r == -ENOENT ? CB_ERR_NOT_FOUND : CB_ERR_INTERNAL,
                            "template %s: template.conf", name);
    struct cb_template *t = cb_xcalloc(1, sizeof *t);
    t->name = cb_xstrdup(name);
    t->rootfs = cb_xasprintf("%s/rootfs", dir);
    if (cb_template_parse(text, t, err) < 0) {
        cb_template_free(t);
        return cb_error_wrap(err, "template %s", name);
    }
    *out = t;
    return 0;
}

/* What the host template shows of the host: the programs (read-only) and
 * the few /etc files they need. Nothing else of the host is visible. */
static const char *const host_binds[] = {
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
    "/etc/ssl", "/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime",
    "/etc/ca-certificates",
};

static bool is_real_dir_or_file(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0 && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode) ||
                                  /* /etc/localtime is a symlink into /usr */
                                  (S_ISLNK(st.st_mode) && strcmp(p, "/etc/localtime") == 0 &&
                                   stat(p, &st) == 0));
}

int cb_template_make_host(const char *templates_dir, struct cb_error **err)
{
    _cleanup_free_ char *dir = cb_xasprintf("%s/host", templates_dir);
    _cleanup_free_ char *conf = cb_xasprintf("%s/template.conf", dir);
    if (access(conf, F_OK) == 0) {
        /* Made by a version whose sandboxes had a tmpfs on /dev: add the
         * /dev entries the mount table now expects (without them each
         * sandbox makes its own in its upper layer). Sandboxes running
         * with this template as their lower layer still have their tmpfs
         * over its /dev and never look below it. */
        _cleanup_free_ char *rootfs = cb_xasprintf("%s/rootfs", dir);
        int r = cb_mounts_has_dev_skeleton(rootfs) ? 0 : cb_mounts_make_dev_skeleton(rootfs);
        if (r < 0)
            return cb_error_set(err, -r, CB_ERR_INTERNAL, "host template /dev");
        /* Likewise the /etc files a version before them did not copy. */
        r = cb_rootfs_add_host_etc(rootfs);
        return r < 0 ? cb_error_set(err, -r, CB_ERR_INTERNAL, "host template /etc") : 0;
    }
    /* Build into a temporary directory and rename, so a crash never leaves
     * a half-made template that looks complete. */
    char suffix[17];
    cb_random_hex(suffix, 8);
    _cleanup_free_ char *tmp = cb_xasprintf("%s/.host.tmp.%s", templates_dir, suffix);
    if (mkdir(tmp, 0755) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "create host template");
    struct cb_template_bind binds[CB_ARRAY_SIZE(host_binds)];
    size_t n = 0;
    size_t cap = 256;
    char *text = cb_xmalloc(cap);
    size_t len = (size_t)snprintf(text, cap, "# cellbox template: host (generated)\n");
    for (size_t i = 0; i < CB_ARRAY_SIZE(host_binds); i++) {
        /* merged-/usr: /bin etc. are symlinks, mirrored in the skeleton */
        if (!is_real_dir_or_file(host_binds[i]))
            continue;
        binds[n].source = binds[n].target = (char *)host_binds[i];
        n++;
        size_t need = len + strlen(host_binds[i]) + 8;
        if (need > cap)
            text = cb_xrealloc(text, cap = need * 2);
        len += (size_t)snprintf(text + len, cap - len, "bind=%s\n", host_binds[i]);
    }
    _cleanup_free_ char *rootfs = cb_xasprintf("%s/rootfs", tmp);
    int r = cb_rootfs_make_host_skeleton(rootfs, binds, n, err);
    if (r == 0) {
        _cleanup_close_ int tfd = open(tmp, O_PATH | O_DIRECTORY | O_CLOEXEC);
        r = tfd < 0 ? -errno : cb_write_file_at(tfd, "template.conf", text, len, 0644, 1);
        if (r < 0)
            cb_error_set(err, -r, CB_ERR_INTERNAL, "write template.conf");
    }
    free(text);
    if (r == 0 && rename(tmp, dir) < 0) {
        /* Someone else made it first: theirs is as good as ours. */
        r = errno == EEXIST || errno == ENOTEMPTY ? 0 :
            cb_error_set(err, errno, CB_ERR_INTERNAL, "install host template");
    }
    if (access(tmp, F_OK) == 0)
        cb_rootfs_remove_tree(tmp);
    return r < 0 ? -1 : 0;
}
