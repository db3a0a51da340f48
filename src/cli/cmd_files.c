/* cmd_files.c — cp, cat, write, ls-files: files in and out of a sandbox.
 *
 * Single files move through /files; directory trees through /archive as tar
 * streams, made and unpacked by the host's tar(1) run with posix_spawnp (the
 * CLI links neither libarchive nor anything else that parses archives). */
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli.h"

extern char **environ;

/* A raw (non-JSON) request; on_body NULL collects into resp. Returns 0 on a
 * 2xx answer, -1 with *err otherwise. */
static int raw_request(const struct cli_ctx *ctx, const char *method, const char *target,
                       const char *content_type, const void *body, size_t len,
                       http_body_cb on_body, void *userdata, struct cb_error **err)
{
    struct http_request req = {
        .interrupt_fd = -1,
        .method = method,
        .target = target,
        .accept = "*/*",
        .content_type = content_type,
        .body = body,
        .body_len = len,
        .on_body = on_body,
        .userdata = userdata,
    };
    struct http_response resp;
    if (cli_http_do(&ctx->ep, &req, &resp, err) < 0)
        return -1;
    int rc = 0;
    if (resp.status < 200 || resp.status >= 300)
        rc = cli_api_error_from_response(&resp, err);
    cli_http_response_clear(&resp);
    return rc;
}

static char *files_path(const char *id, const char *route, const char *path, const char *extra)
{
    _cleanup_free_ char *enc = cli_url_encode(path);
    _cleanup_free_ char *suffix = cb_xasprintf("%s?path=%s%s", route, enc, extra ? extra : "");
    return cli_sandbox_path(id, suffix);
}

static int write_fd_cb(void *userdata, const char *data, size_t n)
{
    int fd = *(int *)userdata;
    return cb_write_all(fd, data, n) < 0 ? -1 : 0;
}

/* stat inside the sandbox; NULL with *err (not_found when missing). */
static json_t *remote_stat(const struct cli_ctx *ctx, const char *id, const char *path,
                           struct cb_error **err)
{
    _cleanup_free_ char *target = files_path(id, "/files/stat", path, NULL);
    return cli_api_json(ctx, "GET", target, NULL, err);
}

static int is_dir_type(json_t *st)
{
    const char *type = json_string_value(json_object_get(st, "type"));
    return type && (!strcmp(type, "dir") || !strcmp(type, "directory"));
}

/* ---- cat / write ---------------------------------------------------------- */

int cmd_cat(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cellbox cat ID PATH\nPrints a file from the sandbox.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 3)
        return cli_usage_error("cat", "expected a sandbox id and a path");
    _cleanup_free_ char *target = files_path(argv[1], "/files", argv[2], NULL);
    _cleanup_error_ struct cb_error *err = NULL;
    int fd = STDOUT_FILENO;
    if (raw_request(ctx, "GET", target, NULL, NULL, 0, write_fd_cb, &fd, &err) < 0)
        return cli_report(err);
    return CLI_EXIT_OK;
}

static int put_file(const struct cli_ctx *ctx, const char *id, const char *path,
                    const char *data, size_t len, int mode, struct cb_error **err)
{
    _cleanup_free_ char *extra = mode >= 0 ? cb_xasprintf("&mkdirs=1&mode=%04o", mode)
                                           : cb_xstrdup("&mkdirs=1");
    _cleanup_free_ char *target = files_path(id, "/files", path, extra);
    return raw_request(ctx, "PUT", target, "application/octet-stream", data, len, NULL, NULL,
                       err);
}

int cmd_write(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"mode", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, mode = -1;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox write ID PATH [--mode OCTAL] < data\n"
                   "Writes stdin to PATH in the sandbox (parent directories created).\n");
            return CLI_EXIT_OK;
        }
        char *end;
        long m = opt == 'm' ? strtol(optarg, &end, 8) : -1;
        if (opt != 'm' || *end || m < 0 || m > 07777)
            return cli_usage_error("write", "--mode takes an octal mode like 0644");
        mode = (int)m;
    }
    if (argc - optind != 2)
        return cli_usage_error("write", "expected a sandbox id and a path");
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int rc = cli_read_fd(STDIN_FILENO, &data, &len);
    if (rc < 0) {
        fprintf(stderr, "cellbox: reading stdin: %s\n", strerror(-rc));
        return CLI_EXIT_ERROR;
    }
    _cleanup_error_ struct cb_error *err = NULL;
    if (put_file(ctx, argv[optind], argv[optind + 1], data, len, mode, &err) < 0)
        return cli_report(err);
    return CLI_EXIT_OK;
}

/* ---- ls-files ------------------------------------------------------------- */

static char *mode_text(json_t *st)
{
    json_t *m = json_object_get(st, "mode");
    if (json_is_integer(m))
        return cb_xasprintf("%04llo", (unsigned long long)json_integer_value(m) & 07777);
    return cli_json_text(st, "mode");
}

static void print_files_table(json_t *items)
{
    static const char *const headers[] = {"TYPE", "MODE", "SIZE", "MTIME", "PATH"};
    struct cli_table t;
    cli_table_init(&t, CB_ARRAY_SIZE(headers), headers);
    size_t i;
    json_t *st;
    json_array_foreach(items, i, st) {
        char *row[] = {cli_json_text(st, "type"), mode_text(st), cli_json_text(st, "size"),
                       cli_json_time(st, "mtime"), cli_json_text(st, "path")};
        cli_table_add(&t, (const char *const *)row);
        for (size_t k = 0; k < CB_ARRAY_SIZE(row); k++)
            free(row[k]);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int cmd_ls_files(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"depth", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    double depth = 1;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox ls-files ID [PATH] [--depth N]\n"
                   "Lists a directory in the sandbox (default: /).\n");
            return CLI_EXIT_OK;
        }
        if (opt != 'd' || cli_parse_number(optarg, "--depth", &depth) < 0)
            return CLI_EXIT_USAGE;
    }
    int npos = argc - optind;
    if (npos < 1 || npos > 2)
        return cli_usage_error("ls-files", "expected a sandbox id and an optional path");
    _cleanup_free_ char *extra = cb_xasprintf("&depth=%d", (int)depth);
    _cleanup_free_ char *target =
        files_path(argv[optind], "/files/list", npos == 2 ? argv[optind + 1] : "/", extra);
    return cli_list(ctx, target, print_files_table);
}

/* ---- tar through posix_spawnp -------------------------------------------- */

/* Start tar with one end of a pipe as its stdin (extract) or stdout
 * (create); *fd gets our end. */
static pid_t spawn_tar(char *const argv[], int tar_reads, int *fd, struct cb_error **err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "pipe");
    int child_end = tar_reads ? p[0] : p[1];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child_end, tar_reads ? STDIN_FILENO : STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, "tar", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(child_end);
    if (rc != 0) {
        close(tar_reads ? p[1] : p[0]);
        return cb_error_set(err, rc, CB_ERR_INTERNAL, "running tar");
    }
    *fd = tar_reads ? p[1] : p[0];
    return pid;
}

static int wait_tar(pid_t pid, struct cb_error **err)
{
    int status;
    if (CB_RETRY(waitpid(pid, &status, 0)) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "waiting for tar");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cb_error_set(err, 0, CB_ERR_INTERNAL, "tar failed (status %d)", status);
    return 0;
}

/* ---- cp ------------------------------------------------------------------- */

struct remote_ref {
    char *id;         /* NULL for a host path */
    const char *path;
};

/* "ID:/path" names a sandbox path; anything with a '/' before the first ':'
 * (or no ':') is a host path, so "./a:b" stays local. */
static struct remote_ref parse_ref(const char *arg)
{
    const char *colon = strchr(arg, ':');
    const char *slash = strchr(arg, '/');
    if (colon && colon != arg && (!slash || slash > colon))
        return (struct remote_ref){cb_xstrndup(arg, (size_t)(colon - arg)), colon + 1};
    return (struct remote_ref){NULL, arg};
}

static char *join_path(const char *dir, const char *src)
{
    _cleanup_free_ char *copy = cb_xstrdup(src);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    const char *base = basename(copy);
    size_t dl = strlen(dir);
    return cb_xasprintf("%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", base);
}

static int upload_file(const struct cli_ctx *ctx, const char *local, const struct stat *st,
                       const char *id, const char *remote, struct cb_error **err)
{
    _cleanup_close_ int fd = open(local, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_BAD_REQUEST, "open %s", local);
    _cleanup_free_ char *data = NULL;
    size_t len;
    int rc = cli_read_fd(fd, &data, &len);
    if (rc < 0)
        return cb_error_set(err, -rc, CB_ERR_INTERNAL, "read %s", local);
    return put_file(ctx, id, remote, data, len, (int)(st->st_mode & 07777), err);
}

static int upload_dir(const struct cli_ctx *ctx, const char *local, const char *id,
                      const char *remote, struct cb_error **err)
{
    char *argv[] = {"tar", "-C", (char *)local, "-cf", "-", ".", NULL};
    int fd = -1;
    pid_t pid = spawn_tar(argv, 0, &fd, err);
    if (pid < 0)
        return -1;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int rc = cli_read_fd(fd, &data, &len);
    close(fd);
    if (wait_tar(pid, err) < 0)
        return -1;
    if (rc < 0)
        return cb_error_set(err, -rc, CB_ERR_INTERNAL, "reading tar output");
    json_t *mk = json_pack("{s:s, s:b}", "path", remote, "parents", 1);
    _cleanup_free_ char *mk_target = cli_sandbox_path(id, "/files/mkdir");
    struct cb_error *mk_err = NULL;
    json_t *r = cli_api_json(ctx, "POST", mk_target, mk, &mk_err);
    json_decref(mk);
    json_decref(r);
    cb_error_free(mk_err); /* an existing directory is fine; PUT reports real trouble */
    _cleanup_free_ char *target = files_path(id, "/archive", remote, NULL);
    return raw_request(ctx, "PUT", target, "application/x-tar", data, len, NULL, NULL, err);
}

/* Host → sandbox. Like `docker cp`: into an existing directory the source
 * keeps its name; otherwise it becomes the destination. */
static int copy_in(const struct cli_ctx *ctx, const char *local, const struct remote_ref *dst,
                   struct cb_error **err)
{
    struct stat st;
    if (stat(local, &st) < 0)
        return cb_error_set(err, errno, CB_ERR_BAD_REQUEST, "%s", local);
    struct cb_error *stat_err = NULL;
    json_t *rst = remote_stat(ctx, dst->id, dst->path, &stat_err);
    _cleanup_free_ char *remote = rst && is_dir_type(rst) ? join_path(dst->path, local)
                                                          : cb_xstrdup(dst->path);
    json_decref(rst);
    int missing = !rst && stat_err && stat_err->kind == CB_ERR_NOT_FOUND;
    if (!rst && !missing) {
        *err = stat_err; /* the sandbox is missing or unreachable */
        return -1;
    }
    cb_error_free(stat_err);
    if (S_ISDIR(st.st_mode))
        return upload_dir(ctx, local, dst->id, remote, err);
    if (!S_ISREG(st.st_mode))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "%s: not a file or directory", local);
    return upload_file(ctx, local, &st, dst->id, remote, err);
}

static int download_file(const struct cli_ctx *ctx, const struct remote_ref *src, json_t *rst,
                         const char *local, struct cb_error **err)
{
    json_t *m = json_object_get(rst, "mode");
    mode_t mode = json_is_integer(m) ? (mode_t)(json_integer_value(m) & 0777) : 0644;
    _cleanup_close_ int fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_BAD_REQUEST, "open %s", local);
    _cleanup_free_ char *target = files_path(src->id, "/files", src->path, NULL);
    return raw_request(ctx, "GET", target, NULL, NULL, 0, write_fd_cb, &fd, err);
}

/* The tar comes from the sandbox, so it is untrusted. GNU tar strips leading
 * '/' and refuses members with '..', and extracts symlinks pointing outside
 * the tree as placeholders replaced only at the end, so a member cannot be
 * written through a planted link; --no-same-owner keeps a root CLI from
 * creating files owned by whoever the archive names. */
static int download_dir(const struct cli_ctx *ctx, const struct remote_ref *src,
                        const char *local, struct cb_error **err)
{
    if (mkdir(local, 0755) < 0 && errno != EEXIST)
        return cb_error_set(err, errno, CB_ERR_BAD_REQUEST, "mkdir %s", local);
    char *argv[] = {"tar", "-C", (char *)local, "--no-same-owner", "-xf", "-", NULL};
    int fd = -1;
    pid_t pid = spawn_tar(argv, 1, &fd, err);
    if (pid < 0)
        return -1;
    _cleanup_free_ char *target = files_path(src->id, "/archive", src->path, NULL);
    int rc = raw_request(ctx, "GET", target, NULL, NULL, 0, write_fd_cb, &fd, err);
    close(fd);
    struct cb_error *tar_err = NULL;
    if (wait_tar(pid, &tar_err) < 0 && rc == 0) {
        *err = tar_err;
        return -1;
    }
    cb_error_free(tar_err);
    return rc;
}

static int copy_out(const struct cli_ctx *ctx, const struct remote_ref *src, const char *local,
                    struct cb_error **err)
{
    json_t *rst = remote_stat(ctx, src->id, src->path, err);
    if (!rst)
        return -1;
    struct stat st;
    _cleanup_free_ char *dest = stat(local, &st) == 0 && S_ISDIR(st.st_mode)
                                    ? join_path(local, src->path)
                                    : cb_xstrdup(local);
    int rc = is_dir_type(rst) ? download_dir(ctx, src, dest, err)
                              : download_file(ctx, src, rst, dest, err);
    json_decref(rst);
    return rc;
}

int cmd_cp(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cellbox cp SRC DST\n"
               "Copies a file or directory between the host and a sandbox; the sandbox\n"
               "side is written ID:/path. Into an existing directory the source keeps\n"
               "its name.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 3)
        return cli_usage_error("cp", "expected SRC and DST");
    struct remote_ref src = parse_ref(argv[1]), dst = parse_ref(argv[2]);
    int rc;
    _cleanup_error_ struct cb_error *err = NULL;
    /* tar may die early; see its error from wait, not a SIGPIPE death. */
    signal(SIGPIPE, SIG_IGN);
    if (!!src.id == !!dst.id)
        rc = cli_usage_error("cp", "exactly one of SRC and DST must be ID:/path");
    else if (dst.id)
        rc = copy_in(ctx, src.path, &dst, &err) < 0 ? cli_report(err) : CLI_EXIT_OK;
    else
        rc = copy_out(ctx, &src, dst.path, &err) < 0 ? cli_report(err) : CLI_EXIT_OK;
    free(src.id);
    free(dst.id);
    return rc;
}
