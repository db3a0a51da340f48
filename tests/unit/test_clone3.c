/* clone3 with a shared address space: the child runs the function on its
 * own stack, can be born in a cgroup v2 directory, and the switch that
 * turns it off works. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/magic.h>

#include "clone3.h"
#include "runner.h"

#define STACK (64 * 1024)

struct shared {
    int ran;
    uintptr_t local_at; /* address of a local of the child's function */
    char cgroup[256];   /* its /proc/self/cgroup, unified line */
};

static int child_fn(void *arg)
{
    struct shared *s = arg;
    int local = 1;
    s->local_at = (uintptr_t)&local;
    s->ran = local;
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    char buf[4096];
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0)
        close(fd);
    if (n > 0) {
        buf[n] = '\0';
        char *line = strstr(buf, "0::");
        if (line) {
            size_t len = strcspn(line + 3, "\n");
            if (len >= sizeof s->cgroup)
                len = sizeof s->cgroup - 1;
            memcpy(s->cgroup, line + 3, len);
            s->cgroup[len] = '\0';
        }
    }
    return 42;
}

static void *new_stack(void)
{
    void *st = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                    -1, 0);
    ASSERT(st != MAP_FAILED);
    return st;
}

static int wait_code(int pidfd)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    ASSERT_EQ(waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL), 0);
    ASSERT_EQ(si.si_code, CLD_EXITED);
    return si.si_status;
}

TEST(clone3_vm_runs_function_on_its_stack)
{
    struct shared *s = calloc(1, sizeof *s);
    void *st = new_stack();
    int pidfd = -1;
    long pid = cb_clone3_vm(CLONE_VM | CLONE_PIDFD, 0, &pidfd, -1, st, STACK, child_fn, s);
    if (pid == -ENOSYS)
        SKIP("no clone3 here (kernel, seccomp or architecture)");
    ASSERT(pid > 0);
    ASSERT(pidfd >= 0);
    ASSERT_EQ(wait_code(pidfd), 42);
    ASSERT_EQ(s->ran, 1); /* written through the memory we share */
    ASSERT(s->local_at >= (uintptr_t)st && s->local_at < (uintptr_t)st + STACK);
    close(pidfd);
}

TEST(clone3_vm_switched_off_by_environment)
{
    setenv("CB_NO_CLONE3", "1", 1);
    struct shared *s = calloc(1, sizeof *s);
    void *st = new_stack();
    int pidfd = -1;
    ASSERT_EQ(cb_clone3_vm(CLONE_VM | CLONE_PIDFD, 0, &pidfd, -1, st, STACK, child_fn, s),
              -ENOSYS);
    ASSERT_EQ(s->ran, 0);
    ASSERT_EQ(pidfd, -1);
}

/* A cgroup2 mount: the host's root on v2, the empty unified one on hybrid
 * v1 hosts (no controller is needed to be born in a cgroup). */
static const char *cgroup2_root(void)
{
    static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++) {
        struct statfs sf;
        if (statfs(roots[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
            return roots[i];
    }
    return NULL;
}

TEST(clone3_vm_born_in_cgroup_v2)
{
    if (geteuid() != 0)
        SKIP("needs root");
    const char *root = cgroup2_root();
    if (!root)
        SKIP("no cgroup2 mount");
    char name[64], dir[256];
    snprintf(name, sizeof name, "cb-clone3-test-%d", (int)getpid());
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    if (mkdir(dir, 0755) < 0)
        SKIP("cannot make a cgroup under %s: %s", root, strerror(errno));
    int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT(cg >= 0);
    struct shared *s = calloc(1, sizeof *s);
    void *st = new_stack();
    int pidfd = -1;
    long pid = cb_clone3_vm(CLONE_VM | CLONE_PIDFD, 0, &pidfd, cg, st, STACK, child_fn, s);
    int code = pid > 0 ? wait_code(pidfd) : -1;
    rmdir(dir);
    if (pid == -ENOSYS)
        SKIP("no clone3 here");
    if (pid == -E2BIG || pid == -EINVAL)
        SKIP("kernel without CLONE_INTO_CGROUP (%ld)", pid);
    ASSERT(pid > 0);
    ASSERT_EQ(code, 42);
    char want[80];
    snprintf(want, sizeof want, "/%s", name);
    ASSERT_STREQ(s->cgroup, want); /* in the cgroup from its first instruction */
}
