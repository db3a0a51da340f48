/* holder.c — one thread with its own fd table holds references (holder.h). */
#include "holder.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <unistd.h>

#include "util.h"

struct request {
    bool is_open;
    const char *path; /* open */
    int handle;       /* close; the open's result */
    bool done;
    struct request *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
static struct request *queue;
static int state; /* 0: not started, 1: running, <0: could not start (-errno) */

static void serve(struct request *r)
{
    if (r->is_open) {
        int fd = open(r->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        r->handle = fd < 0 ? -errno : fd;
    } else {
        close(r->handle);
    }
}

static void *holder_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!queue)
            pthread_cond_wait(&work, &lock);
        struct request *r = queue;
        queue = r->next;
        pthread_mutex_unlock(&lock);
        serve(r); /* a close may take milliseconds: not under the lock */
        pthread_mutex_lock(&lock);
        r->done = true;
        pthread_cond_broadcast(&finished);
    }
    return NULL;
}

struct start {
    pthread_mutex_t m;
    pthread_cond_t c;
    int result; /* 1 until the thread reports */
};

/* The thread's first act: a private copy of the fd table, emptied of the
 * copies of everyone else's fds (closing a copy releases nothing). */
static void *holder_boot(void *arg)
{
    struct start *s = arg;
    int r = unshare(CLONE_FILES) < 0 ? -errno : 0;
    if (r == 0)
        close_range(0, ~0U, 0);
    pthread_mutex_lock(&s->m);
    s->result = r;
    pthread_cond_signal(&s->c);
    pthread_mutex_unlock(&s->m);
    return r == 0 ? holder_main(NULL) : NULL;
}

/* lock held */
static int ensure_started(void)
{
    if (state != 0)
        return state;
    struct start s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1};
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&t, &attr, holder_boot, &s);
    pthread_attr_destroy(&attr);
    if (e != 0)
        return state = -e;
    pthread_mutex_lock(&s.m);
    while (s.result == 1)
        pthread_cond_wait(&s.c, &s.m);
    pthread_mutex_unlock(&s.m);
    return state = s.result == 0 ? 1 : s.result;
}

static void submit(struct request *r)
{
    pthread_mutex_lock(&lock);
    int st = ensure_started();
    if (st < 0) {
        pthread_mutex_unlock(&lock);
        r->handle = r->is_open ? st : r->handle;
        return;
    }
    r->next = queue;
    queue = r;
    pthread_cond_signal(&work);
    while (!r->done)
        pthread_cond_wait(&finished, &lock);
    pthread_mutex_unlock(&lock);
}

int cb_holder_open(const char *path)
{
    struct request r = {.is_open = true, .path = path};
    submit(&r);
    return r.handle;
}

void cb_holder_close(int handle)
{
    if (handle < 0)
        return;
    struct request r = {.is_open = false, .handle = handle};
    submit(&r);
}
