/* thread.h — the runtime's helper threads (makers of spare network
 * namespaces and disk images): started with every signal blocked, stopped
 * by a flag under their lock. */
#ifndef CB_THREAD_H
#define CB_THREAD_H

#include <pthread.h>
#include <stdbool.h>

/* Start fn(arg) with every signal blocked (the daemon's handlers run on
 * its loop thread), named name (at most 15 bytes, shown by top -H and
 * perf). 0 or an errno. */
int cb_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg);
/* Set *closing under lock, wake the thread waiting on cond, join it. */
void cb_thread_stop(pthread_t t, pthread_mutex_t *lock, pthread_cond_t *cond, bool *closing);

#endif
