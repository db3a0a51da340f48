/* test_router.c — route matching, parameter extraction, 404/405. */
#include "router.h"
#include "runner.h"

static void h(struct cb_http_req *req) { (void)req; }

static const struct cb_route table[] = {
    {"GET", "/v1/sandboxes", h, 0},
    {"POST", "/v1/sandboxes", h, 0},
    {"GET", "/v1/sandboxes/{id}", h, 0},
    {"DELETE", "/v1/sandboxes/{id}", h, 0},
    {"GET", "/v1/sandboxes/{id}/processes/{pid}/output", h, 0},
    {"GET", "/v1/sandboxes/{id}/ports/{port}/proxy/{path}", h, CB_ROUTE_TAIL},
};
#define N (sizeof(table) / sizeof(table[0]))

TEST(router_literal_and_params)
{
    struct cb_route_match m;
    ASSERT_EQ(cb_router_match(table, N, "POST", "/v1/sandboxes", &m), 0);
    ASSERT(m.route == &table[1]);
    cb_route_match_clear(&m);
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/sb_1/processes/42/output", &m), 0);
    ASSERT_STREQ(cb_route_param(&m, "id"), "sb_1");
    ASSERT_STREQ(cb_route_param(&m, "pid"), "42");
    ASSERT(cb_route_param(&m, "nope") == NULL);
    cb_route_match_clear(&m);
}

TEST(router_percent_decoding)
{
    struct cb_route_match m;
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/my%2Dbox", &m), 0);
    ASSERT_STREQ(cb_route_param(&m, "id"), "my-box");
    cb_route_match_clear(&m);
    /* an encoded slash or NUL never becomes part of a capture */
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/a%2Fb", &m), CB_ROUTE_NOT_FOUND);
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/a%00b", &m), CB_ROUTE_NOT_FOUND);
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/a%zz", &m), CB_ROUTE_NOT_FOUND);
}

TEST(router_404_405)
{
    struct cb_route_match m;
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/nothing", &m), CB_ROUTE_NOT_FOUND);
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/", &m), CB_ROUTE_NOT_FOUND);
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/x/extra", &m), CB_ROUTE_NOT_FOUND);
    ASSERT_EQ(cb_router_match(table, N, "GET", "", &m), CB_ROUTE_NOT_FOUND);
    ASSERT_EQ(cb_router_match(table, N, "PUT", "/v1/sandboxes", &m), CB_ROUTE_BAD_METHOD);
    ASSERT_STREQ(m.allow, "GET, POST");
    ASSERT_EQ(cb_router_match(table, N, "PATCH", "/v1/sandboxes/x", &m), CB_ROUTE_BAD_METHOD);
    ASSERT_STREQ(m.allow, "GET, DELETE");
}

TEST(router_tail)
{
    struct cb_route_match m;
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/s/ports/80/proxy/a/b/c", &m), 0);
    ASSERT_STREQ(cb_route_param(&m, "path"), "a/b/c");
    cb_route_match_clear(&m);
    ASSERT_EQ(cb_router_match(table, N, "GET", "/v1/sandboxes/s/ports/80/proxy/", &m), 0);
    ASSERT_STREQ(cb_route_param(&m, "path"), "");
    cb_route_match_clear(&m);
}

TEST(url_decode)
{
    char *s = cb_url_decode("a+b%20c", 7, 1, 100);
    ASSERT_STREQ(s, "a b c");
    free(s);
    s = cb_url_decode("a+b", 3, 0, 100);
    ASSERT_STREQ(s, "a+b");
    free(s);
    ASSERT(cb_url_decode("%4", 2, 0, 100) == NULL);
    ASSERT(cb_url_decode("abcdef", 6, 0, 3) == NULL);
}
