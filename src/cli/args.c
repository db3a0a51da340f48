/* args.c — parsing helpers shared by the CLI's commands. */
#include <stdarg.h>
#include <string.h>

#include "cli.h"

int cli_parse_kv(json_t *obj, const char *arg, const char *what)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "cellbox: %s must be KEY=VALUE, got '%s'\n", what, arg);
        return -1;
    }
    _cleanup_free_ char *key = cb_xstrndup(arg, (size_t)(eq - arg));
    json_object_set_new(obj, key, json_string(eq + 1));
    return 0;
}

int cli_parse_number(const char *arg, const char *what, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || !end || end == arg || *end || v < 0) {
        fprintf(stderr, "cellbox: %s must be a non-negative number, got '%s'\n", what, arg);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_read_fd(int fd, char **out, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = cb_xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = cb_xrealloc(buf, cap);
        }
        ssize_t r = CB_RETRY(read(fd, buf + n, cap - n));
        if (r < 0) {
            int saved = errno;
            free(buf);
            return -saved;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cellbox %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'cellbox %s --help'.\n", cmd);
    va_end(ap);
    return CLI_EXIT_USAGE;
}
