/* metrics.h — Prometheus counters and histograms kept by cellboxd. */
#ifndef CB_DAEMON_METRICS_H
#define CB_DAEMON_METRICS_H

#include "daemon.h"

struct cb_metrics *cb_metrics_new(void);
void cb_metrics_free(struct cb_metrics *m);
void cb_metrics_request(struct cb_metrics *m, const char *route, int code, double seconds);
void cb_metrics_exec(struct cb_metrics *m, double seconds);
void cb_metrics_create(struct cb_metrics *m, double seconds);
/* Prometheus text exposition (malloc'd). */
char *cb_metrics_render(struct cb_daemon *d);

#endif
