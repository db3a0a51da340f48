/* runner.h — the unit-test runner (header only).
 *
 * Like libuv's test runner: every case runs in its own forked child with a
 * timeout, so a crash, hang or leaked state in one case cannot hide or break
 * another. Assertions print both values. The binary prints one line per case
 * and ends with "N passed, M failed, K skipped"; it exits 1 on any failure.
 *
 *   TEST(proto_roundtrip) { ASSERT_EQ(1, 1); }
 *   SKIP("needs root");   // inside a case: counts as skipped
 *
 * Usage: test_x [case-substring]  (env CB_TEST_TIMEOUT=seconds, default 60) */
#ifndef CB_TEST_RUNNER_H
#define CB_TEST_RUNNER_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct cb_test_case {
    const char *name;
    void (*fn)(void);
};

#define CB_TEST_MAX 512
static struct cb_test_case cb_tests_[CB_TEST_MAX];
static int cb_ntests_;

#define TEST(name)                                                             \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void register_##name(void)             \
    {                                                                          \
        if (cb_ntests_ < CB_TEST_MAX)                                          \
            cb_tests_[cb_ntests_++] = (struct cb_test_case){#name, test_##name}; \
    }                                                                          \
    static void test_##name(void)

#define CB_SKIP_EXIT 77
#define SKIP(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "  skip: " __VA_ARGS__);                               \
        fprintf(stderr, "\n");                                                 \
        _exit(CB_SKIP_EXIT);                                                   \
    } while (0)

#define FAIL(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                      \
        fprintf(stderr, __VA_ARGS__);                                          \
        fprintf(stderr, "\n");                                                 \
        _exit(1);                                                              \
    } while (0)

#define ASSERT(cond)                                                           \
    do {                                                                       \
        if (!(cond))                                                           \
            FAIL("assertion failed: %s", #cond);                               \
    } while (0)

#define ASSERT_EQ(a, b)                                                        \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ != b_)                                                          \
            FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);                    \
    } while (0)

#define ASSERT_NE(a, b)                                                        \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (a_ == b_)                                                          \
            FAIL("%s != %s: both %lld", #a, #b, a_);                           \
    } while (0)

#define ASSERT_GE(a, b)                                                        \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (!(a_ >= b_))                                                       \
            FAIL("%s >= %s: %lld < %lld", #a, #b, a_, b_);                     \
    } while (0)

#define ASSERT_STREQ(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
            FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",     \
                 b_ ? b_ : "(null)");                                          \
    } while (0)

static int cb_run_one_(const struct cb_test_case *t, int timeout)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        alarm((unsigned)timeout);
        t->fn();
        fflush(NULL);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        ;
    kill(-pid, SIGKILL); /* anything the case left behind */
    if (WIFEXITED(status))
        return WEXITSTATUS(status) == CB_SKIP_EXIT ? CB_SKIP_EXIT
                                                   : WEXITSTATUS(status) != 0;
    fprintf(stderr, "  killed by signal %d%s\n", WTERMSIG(status),
            WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *t_env = getenv("CB_TEST_TIMEOUT");
    int timeout = t_env ? atoi(t_env) : 60;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < cb_ntests_; i++) {
        if (filter && !strstr(cb_tests_[i].name, filter))
            continue;
        int r = cb_run_one_(&cb_tests_[i], timeout);
        const char *what = r == 0 ? "ok" : r == CB_SKIP_EXIT ? "skip" : "FAIL";
        printf("%-4s %s\n", what, cb_tests_[i].name);
        fflush(stdout);
        if (r == 0)
            passed++;
        else if (r == CB_SKIP_EXIT)
            skipped++;
        else
            failed++;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

#endif
