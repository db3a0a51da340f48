/* thread.c — helper threads (thread.h). */
#include "thread.h"

#include <signal.h>

int cb_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e == 0)
        pthread_setname_np(*t, name); /* top -H, perf, /proc/<pid>/task/<tid>/comm */
    return e;
}

void cb_thread_stop(pthread_t t, pthread_mutex_t *lock, pthread_cond_t *cond, bool *closing)
{
    pthread_mutex_lock(lock);
    *closing = true;
    pthread_cond_broadcast(cond);
    pthread_mutex_unlock(lock);
    pthread_join(t, NULL);
}
