#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sandbox.h"

static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NB CB_ARRAY_SIZE(buckets)

struct histogram {
    uint64_t counts[NB + 1];
    double sum;
    uint64_t n;
};

struct route_stat {
    const char *route; /* points into the static route table */
    struct histogram h;
    struct code_count {
        int code;
        uint64_t n;
    } codes[16];
    struct route_stat *next;
};

struct cb_metrics {
    struct route_stat *routes;
    struct histogram exec, create;
};

struct cb_metrics *cb_metrics_new(void) { return cb_xcalloc(1, sizeof(struct cb_metrics)); }

void cb_metrics_free(struct cb_metrics *m)
{
    if (!m)
        return;
    for (struct route_stat *r = m->routes, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    free(m);
}

static void observe(struct histogram *h, double v)
{
    size_t i = 0;
    while (i < NB && v > buckets[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

void cb_metrics_request(struct cb_metrics *m, const char *route, int code, double seconds)
{
    struct route_stat *r = m->routes;
    while (r && strcmp(r->route, route) != 0)
        r = r->next;
    if (!r) {
        r = cb_xcalloc(1, sizeof(*r));
        r->route = route;
        r->next = m->routes;
        m->routes = r;
    }
    observe(&r->h, seconds);
    for (size_t i = 0; i < CB_ARRAY_SIZE(r->codes); i++) {
        if (r->codes[i].code == code || r->codes[i].code == 0) {
            r->codes[i].code = code;
            r->codes[i].n++;
            return;
        }
    }
}

void cb_metrics_exec(struct cb_metrics *m, double s) { observe(&m->exec, s); }
void cb_metrics_create(struct cb_metrics *m, double s) { observe(&m->create, s); }

struct out {
    char *buf;
    size_t len;
};

CB_PRINTF(2, 3) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    o->buf = cb_xrealloc(o->buf, o->len + (size_t)n + 1);
    memcpy(o->buf + o->len, s, (size_t)n + 1);
    o->len += (size_t)n;
    free(s);
}

static void put_hist(struct out *o, const char *name, const char *labels, const struct histogram *h)
{
    uint64_t cum = 0;
    const char *sep = *labels ? "," : "";
    for (size_t i = 0; i < NB; i++) {
        cum += h->counts[i];
        put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, buckets[i],
            (unsigned long long)cum);
    }
    cum += h->counts[NB];
    put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    put(o, "%s_sum{%s} %g\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
        (unsigned long long)h->n);
}

static void put_sandboxes(struct out *o, struct cb_daemon *d)
{
    static const char *const states[] = {"creating", "running", "paused", "stopped"};
    put(o, "# TYPE cellbox_sandboxes gauge\n");
    for (size_t i = 0; i < CB_ARRAY_SIZE(states); i++) {
        int n = 0;
        for (struct cb_sbx *s = d->sandboxes; s; s = s->next)
            n += !s->deleted && strcmp(s->rec.state, states[i]) == 0;
        put(o, "cellbox_sandboxes{state=\"%s\"} %d\n", states[i], n);
    }
    put(o, "# TYPE cellbox_sandbox_cpu_seconds_total counter\n"
           "# TYPE cellbox_sandbox_memory_bytes gauge\n");
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next) {
        struct cb_sandbox_stats st;
        if (s->deleted || !s->h || s->busy || strcmp(s->rec.state, "stopped") == 0 ||
            d->tier->stats(s->h, &st, NULL) < 0)
            continue;
        put(o, "cellbox_sandbox_cpu_seconds_total{sandbox=\"%s\"} %.6f\n", s->rec.id,
            (double)st.cpu_ns / 1e9);
        put(o, "cellbox_sandbox_memory_bytes{sandbox=\"%s\"} %llu\n", s->rec.id,
            (unsigned long long)st.memory_bytes);
    }
}

char *cb_metrics_render(struct cb_daemon *d)
{
    struct out o = {cb_xstrdup(""), 0};
    struct cb_metrics *m = d->metrics;
    put_sandboxes(&o, d);
    put(&o, "# TYPE cellbox_http_requests_total counter\n");
    for (struct route_stat *r = m->routes; r; r = r->next)
        for (size_t i = 0; i < CB_ARRAY_SIZE(r->codes) && r->codes[i].code; i++)
            put(&o, "cellbox_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n", r->route,
                r->codes[i].code, (unsigned long long)r->codes[i].n);
    put(&o, "# TYPE cellbox_http_request_duration_seconds histogram\n");
    for (struct route_stat *r = m->routes; r; r = r->next) {
        char labels[300];
        snprintf(labels, sizeof(labels), "route=\"%s\"", r->route);
        put_hist(&o, "cellbox_http_request_duration_seconds", labels, &r->h);
    }
    put(&o, "# TYPE cellbox_exec_duration_seconds histogram\n");
    put_hist(&o, "cellbox_exec_duration_seconds", "", &m->exec);
    put(&o, "# TYPE cellbox_sandbox_create_duration_seconds histogram\n");
    put_hist(&o, "cellbox_sandbox_create_duration_seconds", "", &m->create);
    return o.buf;
}
