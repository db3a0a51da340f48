#include "clone3.h"

#include <errno.h>
#include <linux/sched.h>
#include <stdlib.h>
#include <sys/syscall.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

#if defined(__x86_64__) && defined(__NR_clone3)

#define CB_STR_(x) #x
#define CB_STR(x) CB_STR_(x)

/* long cb_clone3_entry(struct clone_args *args, size_t size,
 *                      int (*fn)(void *), void *arg)
 *
 * args and size are already where clone3 wants them (rdi, rsi). fn and arg
 * move to r8 and r9, which the syscall instruction preserves (it clobbers
 * rax, rcx and r11 only), so the child still has them on its new stack,
 * where the kernel started it with rax = 0. The parent (or a failure, rax
 * = -errno) returns to the caller as from any function. The child never
 * returns: it clears the frame pointer (the end of the call chain for
 * debuggers), calls fn(arg) with the stack as the ABI wants it (the
 * kernel starts it at stack + stack_size, 16-byte aligned; the call
 * pushes the return address) and exits with fn's value. */
long cb_clone3_entry(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
__asm__(".text\n"
        ".p2align 4\n"
        ".globl cb_clone3_entry\n"
        ".hidden cb_clone3_entry\n"
        ".type cb_clone3_entry, @function\n"
        "cb_clone3_entry:\n"
        "\t.cfi_startproc\n"
        "\tendbr64\n"
        "\tmovq %rdx, %r8\n"
        "\tmovq %rcx, %r9\n"
        "\tmovl $" CB_STR(__NR_clone3) ", %eax\n"
        "\tsyscall\n"
        "\ttestq %rax, %rax\n"
        "\tjz 1f\n"
        "\tret\n"
        "1:\n"
        "\t.cfi_undefined rip\n"
        "\txorl %ebp, %ebp\n"
        "\tmovq %r9, %rdi\n"
        "\tcallq *%r8\n"
        "\tmovl %eax, %edi\n"
        "\tmovl $" CB_STR(__NR_exit) ", %eax\n"
        "\tsyscall\n"
        "\thlt\n"
        "\t.cfi_endproc\n"
        ".size cb_clone3_entry, .-cb_clone3_entry\n");

long cb_clone3_vm(uint64_t flags, int exit_signal, int *pidfd, int cgroup_fd, void *stack,
                  size_t stack_size, int (*fn)(void *), void *arg)
{
    /* Once the kernel (or a seccomp filter around us) said ENOSYS, it will
     * again: no second try per spawn. */
    static int unavailable = -1;
    int u = __atomic_load_n(&unavailable, __ATOMIC_RELAXED);
    if (u < 0) {
        u = getenv("CB_NO_CLONE3") != NULL;
        __atomic_store_n(&unavailable, u, __ATOMIC_RELAXED);
    }
    if (u)
        return -ENOSYS;
    /* The size of the struct our headers know: a kernel that knows less
     * accepts it as long as the fields it does not know are 0 (cgroup,
     * Linux 5.7: E2BIG before, and the caller falls back). */
    struct clone_args ca = {
        .flags = flags | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0),
        .pidfd = (uint64_t)(uintptr_t)pidfd,
        .exit_signal = (uint64_t)exit_signal,
        .stack = (uint64_t)(uintptr_t)stack,
        .stack_size = stack_size,
        .cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0,
    };
    long r = cb_clone3_entry(&ca, sizeof ca, fn, arg);
    if (r == -ENOSYS)
        __atomic_store_n(&unavailable, 1, __ATOMIC_RELAXED);
    return r;
}

#else

long cb_clone3_vm(uint64_t flags, int exit_signal, int *pidfd, int cgroup_fd, void *stack,
                  size_t stack_size, int (*fn)(void *), void *arg)
{
    return -ENOSYS; /* callers use clone() */
}

#endif
