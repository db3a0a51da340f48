#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static bool log_json;
static enum cb_log_level log_min = CB_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cb_log_setup(bool json, enum cb_log_level min_level)
{
    log_json = json;
    log_min = min_level;
}

static void log_emit_json(const char *level, const char *sandbox,
                          const char *msg, double now)
{
    json_t *o = json_pack("{s:f,s:s,s:s}", "ts", now, "level", level, "msg", msg);
    if (!o)
        return;
    if (sandbox)
        json_object_set_new(o, "sandbox", json_string(sandbox));
    char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (line) {
        fprintf(stderr, "%s\n", line);
        free(line);
    }
}

void cb_log(enum cb_log_level level, const char *sandbox, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!msg)
        return;
    double now = cb_wall_time();
    const char *name = level_names[level];
    if (log_json) {
        log_emit_json(name, sandbox, msg, now);
    } else {
        time_t t = (time_t)now;
        struct tm tm;
        char ts[32];
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(stderr, "%s %-5s %s%s%s\n", ts, name, sandbox ? sandbox : "",
                sandbox ? " " : "", msg);
    }
    free(msg);
}
