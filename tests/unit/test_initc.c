/* test_initc.c — the daemon's client of one init, against a fake init on a
 * socket pair: fds it sends are kept only for a request that asked for
 * them. */
#include "initc.h"
#include "proto.h"
#include "runner.h"
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n - 1; /* the directory's own */
}

/* Frames from the fake init until the loop has read all that is queued. */
static void pump(uv_loop_t *loop, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

static int send_with_fds(int sock, uint16_t type, uint32_t id, int nfds)
{
    int fds[CB_PROTO_MAX_FDS];
    for (int i = 0; i < nfds; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct cb_builder b;
    cb_builder_init(&b, type, id);
    cb_builder_u32(&b, CB_F_PID, 7);
    int r = cb_builder_finish(&b) < 0 ? -1 : cb_proto_send(sock, &b, fds, nfds);
    cb_builder_free(&b);
    for (int i = 0; i < nfds; i++)
        close(fds[i]); /* the copies in flight are the receiver's */
    return r;
}

struct got {
    int calls, nfds;
    int fds[CB_PROTO_MAX_FDS];
};

static void on_reply(void *arg, const struct cb_frame_header *hdr, const uint8_t *payload,
                     size_t len, int *fds, int nfds)
{
    struct got *g = arg;
    g->calls++;
    g->nfds = nfds;
    for (int i = 0; i < nfds; i++)
        g->fds[i] = fds[i];
}

static void on_event(void *arg, const struct cb_frame_header *hdr, const uint8_t *payload,
                     size_t len)
{
    (*(int *)arg)++;
}

/* A client on one end of a socket pair, the fake init on the other. */
struct pair {
    int init;
    uv_loop_t loop;
    int events;
    struct cb_initc *c;
};

static void pair_open(struct pair *p)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        abort();
    p->init = sp[1];
    p->events = 0;
    uv_loop_init(&p->loop);
    p->c = cb_initc_open(&p->loop, sp[0], on_event, NULL, &p->events);
    pump(&p->loop, 2);
}

static void pair_close(struct pair *p)
{
    cb_initc_close(p->c);
    pump(&p->loop, 2);
    uv_loop_close(&p->loop);
    close(p->init);
}

TEST(initc_unasked_fds_closed_at_once)
{
    struct pair p;
    pair_open(&p);
    int before = open_fds();
    /* A hostile init: events and replies to nothing, each with fds. */
    for (int i = 0; i < 40; i++) {
        ASSERT_EQ(send_with_fds(p.init, CB_MSG_EXIT, 0, CB_PROTO_MAX_FDS), 0);
        ASSERT_EQ(send_with_fds(p.init, CB_MSG_SPAWNED, 999, CB_PROTO_MAX_FDS), 0);
        pump(&p.loop, 1);
    }
    /* one fd-carrying message per wake-up (initc.c read_some): let it drain */
    for (int i = 0; i < 500 && p.events < 40; i++)
        pump(&p.loop, 1);
    pump(&p.loop, 10);
    ASSERT_EQ(p.events, 40);
    /* Before: up to 48 of them stayed in the client's queue. */
    ASSERT_EQ(open_fds(), before);
    pair_close(&p);
}

TEST(initc_asked_fds_delivered_the_rest_closed)
{
    struct pair p;
    pair_open(&p);
    int before = open_fds();
    struct got g = {0};
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWN, cb_initc_next_id(p.c));
    ASSERT_EQ(cb_builder_finish(&b), 0);
    ASSERT_EQ(cb_initc_send(p.c, &b, false, 3, on_reply, &g), 0);
    cb_builder_free(&b);
    pump(&p.loop, 3);
    /* the fake init reads the request, answers with its three pipes */
    struct cb_frame_header h;
    uint8_t *payload = NULL;
    int nfds = 0, fds[CB_PROTO_MAX_FDS];
    ASSERT_EQ(cb_proto_recv(p.init, &h, &payload, fds, &nfds), 0);
    free(payload);
    ASSERT_EQ(h.type, CB_MSG_SPAWN);
    ASSERT_EQ(send_with_fds(p.init, CB_MSG_SPAWNED, h.request_id, 3), 0);
    /* and then more, unasked */
    ASSERT_EQ(send_with_fds(p.init, CB_MSG_EXIT, 0, 3), 0);
    pump(&p.loop, 10);
    ASSERT_EQ(g.calls, 1);
    ASSERT_EQ(g.nfds, 3);
    for (int i = 0; i < 3; i++)
        ASSERT(fcntl(g.fds[i], F_GETFD) >= 0);
    ASSERT_EQ(open_fds(), before + 3); /* the three delivered, nothing else */
    for (int i = 0; i < 3; i++)
        close(g.fds[i]);
    pair_close(&p);
}
