#include <stdio.h>
#include <string.h>

#include "daemon.h"

void cb_config_defaults(struct cb_config *c)
{
    memset(c, 0, sizeof(*c));
    c->state_dir = cb_xstrdup("/var/lib/cellbox");
    c->socket_path = cb_xstrdup("/run/cellbox/cellbox.sock");
    c->uid_base = 1u << 30;
    c->max_body = 1024 * 1024;
    c->max_upload = 4ULL << 30;
    c->exec_output_cap = 16 * 1024 * 1024;
    /* A few warm sandboxes cost ~1 MiB of host memory each and make the
     * common create (default shape) a rename instead of a build. */
    c->pool_size = 4;
}

void cb_config_clear(struct cb_config *c)
{
    free(c->state_dir);
    free(c->socket_path);
    free(c->listen);
    free(c->preview_domain);
    free(c->init_path);
    memset(c, 0, sizeof(*c));
}

static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || n > max)
        return -1;
    *out = n;
    return 0;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = cb_xstrdup(v);
}

int cb_config_set(struct cb_config *c, const char *key, const char *v, struct cb_error **err)
{
    uint64_t n = 0;
    if (strcmp(key, "state-dir") == 0 || strcmp(key, "state_dir") == 0)
        set_str(&c->state_dir, v);
    else if (strcmp(key, "socket") == 0)
        set_str(&c->socket_path, v);
    else if (strcmp(key, "listen") == 0)
        set_str(&c->listen, v);
    else if (strcmp(key, "preview-domain") == 0 || strcmp(key, "preview_domain") == 0)
        set_str(&c->preview_domain, v);
    else if (strcmp(key, "init") == 0)
        set_str(&c->init_path, v);
    else if (strcmp(key, "log-format") == 0 || strcmp(key, "log_format") == 0) {
        if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "log-format must be json or text");
        c->log_json = strcmp(v, "json") == 0;
    } else if (strcmp(key, "uid-base") == 0 || strcmp(key, "uid_base") == 0) {
        if (parse_u64(v, UINT32_MAX, &n) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad uid-base");
        c->uid_base = (uint32_t)n;
    } else if (strcmp(key, "max-body") == 0 || strcmp(key, "max_body") == 0) {
        if (parse_u64(v, 1ULL << 30, &c->max_body) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad max-body");
    } else if (strcmp(key, "max-upload") == 0 || strcmp(key, "max_upload") == 0) {
        if (parse_u64(v, 1ULL << 40, &c->max_upload) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad max-upload");
    } else if (strcmp(key, "exec-output-cap") == 0 || strcmp(key, "exec_output_cap") == 0) {
        if (parse_u64(v, 1ULL << 30, &c->exec_output_cap) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad exec-output-cap");
    } else if (strcmp(key, "max-sandboxes") == 0 || strcmp(key, "max_sandboxes") == 0) {
        if (parse_u64(v, 1000000, &n) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad max-sandboxes");
        c->default_max_sandboxes = (int64_t)n;
    } else if (strcmp(key, "max-memory-mb") == 0 || strcmp(key, "max_memory_mb") == 0) {
        if (parse_u64(v, 1ULL << 40, &n) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad max-memory-mb");
        c->default_max_memory_mb = (int64_t)n;
    } else if (strcmp(key, "pool-size") == 0 || strcmp(key, "pool_size") == 0) {
        if (parse_u64(v, 1024, &n) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad pool-size (0-1024)");
        c->pool_size = (uint32_t)n;
    } else if (strcmp(key, "no-disk-quota") == 0 || strcmp(key, "no_disk_quota") == 0) {
        c->no_disk_quota = strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
    } else if (strcmp(key, "durable-disks") == 0 || strcmp(key, "durable_disks") == 0) {
        c->durable_disks = strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
    } else {
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "unknown setting '%s'", key);
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = 0;
    return s;
}

int cb_config_load_file(struct cb_config *c, const char *path, struct cb_error **err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return cb_error_set(err, errno, CB_ERR_BAD_REQUEST, "config file %s", path);
    char line[4096];
    int lineno = 0, r = 0;
    while (r == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *l = trim(line);
        if (*l == 0 || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            r = cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "%s:%d: expected key = value", path, lineno);
            break;
        }
        *eq = 0;
        r = cb_config_set(c, trim(l), trim(eq + 1), err);
        if (r < 0)
            cb_error_wrap(err, "%s:%d", path, lineno);
    }
    fclose(f);
    return r;
}
