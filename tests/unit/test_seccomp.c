/* The seccomp policy compiles and decides as intended (evaluated offline). */
#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "runner.h"
#include "seccomp_bpf.h"
#include "seccomp_policy.h"

static struct cb_seccomp_program prog;

static unsigned decide(int nr, unsigned long long a0, unsigned long long a1)
{
    if (!prog.insns) {
        struct cb_error *err = NULL;
        if (cb_seccomp_compile(&prog, &err) < 0)
            FAIL("compile: %s", err->message);
    }
    unsigned long long args[6] = {a0, a1, 0, 0, 0, 0};
    return cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, nr, args);
}

#define EPERM_RET (SECCOMP_RET_ERRNO | EPERM)

TEST(seccomp_allows_basics)
{
    ASSERT_EQ(decide(__NR_read, 0, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_execve, 0, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_ptrace, 0, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_clone, CLONE_VM | CLONE_THREAD, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_ioctl, 1, TCGETS), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_socket, AF_INET, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_unshare, CLONE_NEWNS, 0), SECCOMP_RET_ALLOW);
}

TEST(seccomp_denies_each_listed_call)
{
    for (size_t i = 0; i < cb_seccomp_denied_count(); i++) {
        const char *name = cb_seccomp_denied_name(i);
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue;
        if (nr == __NR_clone || nr == __NR_unshare || nr == __NR_ioctl || nr == __NR_socket ||
            nr == __NR_personality)
            continue; /* argument rules, checked below */
        unsigned want = nr == __NR_clone3 ? (SECCOMP_RET_ERRNO | ENOSYS) : EPERM_RET;
        if (decide(nr, 0, 0) != want)
            FAIL("%s not denied (0x%x)", name, decide(nr, 0, 0));
    }
}

TEST(seccomp_argument_rules)
{
    ASSERT_EQ(decide(__NR_ioctl, 0, TIOCSTI), EPERM_RET);
    ASSERT_EQ(decide(__NR_ioctl, 0, TIOCLINUX), EPERM_RET);
    /* high bits set must not bypass: the kernel uses the low 32 bits */
    ASSERT_EQ(decide(__NR_ioctl, 0, 0x100000000ull | TIOCSTI), EPERM_RET);
    ASSERT_EQ(decide(__NR_socket, AF_VSOCK, 0), EPERM_RET);
    ASSERT_EQ(decide(__NR_socket, 0xffffffff00000000ull | AF_VSOCK, 0), EPERM_RET);
    ASSERT_EQ(decide(__NR_clone, CLONE_NEWUSER, 0), EPERM_RET);
    ASSERT_EQ(decide(__NR_unshare, CLONE_NEWUSER | CLONE_NEWNS, 0), EPERM_RET);
    ASSERT_EQ(decide(__NR_personality, 0x0400000, 0), EPERM_RET); /* READ_IMPLIES_EXEC */
    ASSERT_EQ(decide(__NR_personality, 0xffffffff, 0), SECCOMP_RET_ALLOW);
}

TEST(seccomp_foreign_abis_denied)
{
    if (!prog.insns)
        decide(__NR_read, 0, 0);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_I386, 3 /* i386 read */, NULL), EPERM_RET);
    unsigned x32 = cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, 0x40000000 | __NR_read, NULL);
    ASSERT(x32 == EPERM_RET || x32 == (SECCOMP_RET_ERRNO | ENOSYS));
    /* ioctl and socket are decided in front of libseccomp's program, for
     * the native ABI only: the same numbers under another arch, and x32's
     * ioctl (514) and socket (41), must not be let through there. */
    unsigned long long ok_args[6] = {AF_INET, TCGETS, 0, 0, 0, 0};
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_I386, __NR_ioctl, ok_args), EPERM_RET);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_I386, __NR_socket, ok_args), EPERM_RET);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, 0x40000000 | 514, ok_args), EPERM_RET);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, 0x40000000 | __NR_socket, ok_args),
              EPERM_RET);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, 0x40000000 | __NR_ioctl, ok_args),
              EPERM_RET);
}

/* Calls newer than the policy: ENOSYS so programs fall back to the older
 * interface, except the mount API's open_tree_attr (EPERM); Docker's
 * 6.5-6.7 additions allowed; x32 numbers refused whatever their value. */
TEST(seccomp_newer_calls)
{
    ASSERT_EQ(decide(452 /* fchmodat2 */, 0, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(451 /* cachestat */, 0, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(455 /* futex_wait */, 0, 0), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(450 /* set_mempolicy_home_node */, 0, 0), EPERM_RET);
    ASSERT_EQ(decide(457 /* statmount */, 0, 0), SECCOMP_RET_ERRNO | ENOSYS);
    ASSERT_EQ(decide(462 /* mseal */, 0, 0), SECCOMP_RET_ERRNO | ENOSYS);
    ASSERT_EQ(decide(469 /* file_setattr */, 0, 0), SECCOMP_RET_ERRNO | ENOSYS);
    ASSERT_EQ(decide(CB_SECCOMP_NR_OPEN_TREE_ATTR, 0, 0), EPERM_RET);
    ASSERT_EQ(decide(600, 0, 0), SECCOMP_RET_ERRNO | ENOSYS);
    ASSERT_EQ(decide(0x3fffffff, 0, 0), SECCOMP_RET_ERRNO | ENOSYS);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, 0x40000000 | 457, NULL), EPERM_RET);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_X86_64, -1, NULL), EPERM_RET);
    ASSERT_EQ(cb_seccomp_evaluate(&prog, AUDIT_ARCH_I386, 457, NULL), EPERM_RET);
}

/* The kernel converts and JITs the whole program at every sandbox start,
 * and argument checks run on every ioctl: the low-32-bit checks must stay
 * a few instructions (seccomp.c, prologue), not the ~180-instruction trie
 * libseccomp's masked-equal rules needed for them (588 in all then), and
 * the allow-list a search over runs of numbers (406 -> ~140). */
TEST(seccomp_program_stays_compact)
{
    if (!prog.insns)
        decide(__NR_read, 0, 0);
    ASSERT(prog.len < 200); /* runs of numbers, not each number (seccomp.c) */
    /* every ioctl except the two: low bits decide, whatever the high ones */
    ASSERT_EQ(decide(__NR_ioctl, 3, 0xdead00000000ull | TCGETS), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_ioctl, 3, 0xffffffff00000000ull | TIOCLINUX), EPERM_RET);
    ASSERT_EQ(decide(__NR_ioctl, 3, TIOCSTI + 1), SECCOMP_RET_ALLOW);
    ASSERT_EQ(decide(__NR_socket, 0x100000000ull | AF_UNIX, 0), SECCOMP_RET_ALLOW);
}

/* The optimised (binary-tree) program must decide exactly as the policy
 * reads for every syscall number, not just the ones named above: an allowed
 * name is allowed, every other number without an argument rule is EPERM.
 * This keeps a change of libseccomp's code generation honest. */
/* Our fallback numbers (for libseccomp releases without these names)
 * are the ones libseccomp itself knows, where it knows them. */
TEST(seccomp_fallback_numbers_match_libseccomp)
{
    for (size_t i = 0; i < CB_ARRAY_SIZE(cb_seccomp_x86_64_numbers); i++) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64,
                                                   cb_seccomp_x86_64_numbers[i].name);
        if (nr != __NR_SCMP_ERROR && nr != cb_seccomp_x86_64_numbers[i].nr)
            FAIL("%s: ours %d, libseccomp %d", cb_seccomp_x86_64_numbers[i].name,
                 cb_seccomp_x86_64_numbers[i].nr, nr);
        ASSERT_EQ(decide(cb_seccomp_x86_64_numbers[i].nr, 0, 0), SECCOMP_RET_ALLOW);
        ASSERT(cb_seccomp_x86_64_numbers[i].nr < CB_SECCOMP_FIRST_UNREVIEWED);
    }
}

static bool policy_allows(const char *name)
{
    for (size_t i = 0; i < CB_ARRAY_SIZE(cb_seccomp_allowed); i++)
        if (strcmp(cb_seccomp_allowed[i], name) == 0)
            return true;
    return false;
}

static bool has_argument_rule(int nr)
{
    return nr == __NR_clone || nr == __NR_unshare || nr == __NR_ioctl ||
           nr == __NR_socket || nr == __NR_personality || nr == __NR_clone3;
}

TEST(seccomp_every_number_decided_as_policy_reads)
{
    int allowed = 0;
    for (int nr = 0; nr < 1024; nr++) {
        if (has_argument_rule(nr))
            continue;
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr);
        for (size_t i = 0; !name && i < CB_ARRAY_SIZE(cb_seccomp_x86_64_numbers); i++)
            if (cb_seccomp_x86_64_numbers[i].nr == nr) /* a libseccomp without the name */
                name = strdup(cb_seccomp_x86_64_numbers[i].name);
        unsigned want = name && policy_allows(name) ? SECCOMP_RET_ALLOW : EPERM_RET;
        if (nr >= CB_SECCOMP_FIRST_UNREVIEWED && nr != CB_SECCOMP_NR_OPEN_TREE_ATTR)
            want = SECCOMP_RET_ERRNO | ENOSYS; /* not reviewed: "no such call" */
        unsigned got = decide(nr, 0, 0);
        if (got != want)
            FAIL("syscall %d (%s): 0x%x, policy says 0x%x", nr, name ? name : "?", got, want);
        allowed += want == SECCOMP_RET_ALLOW;
        free(name);
    }
    ASSERT_GE(allowed, 200); /* the walk really covered the allow-list */
}

/* The compact program (runs of numbers) decides exactly as libseccomp's
 * own program for the same policy (CB_SECCOMP_FULL=1 selects that one):
 * every number of the native ABI, x32 and i386, with the argument values
 * the rules look at. seccomp.c checks the same before using it; this
 * checks that check. */
TEST(seccomp_compact_decides_as_libseccomp)
{
    struct cb_seccomp_program full = {0}, compact = {0};
    struct cb_error *err = NULL;
    setenv("CB_SECCOMP_FULL", "1", 1);
    ASSERT_EQ(cb_seccomp_compile(&full, &err), 0);
    unsetenv("CB_SECCOMP_FULL");
    ASSERT_EQ(cb_seccomp_compile(&compact, &err), 0);
    ASSERT(full.len > 300);
    ASSERT(compact.len < full.len / 2);
    static const unsigned long long probes[][2] = {
        {0, 0}, {CLONE_NEWUSER, 0}, {CLONE_NEWUSER | CLONE_NEWPID, 0}, {CLONE_VM, 0},
        {0x8, 0}, {0x0400000, 0}, {0xffffffff, 0}, {AF_VSOCK, TIOCSTI},
        {0x700000000ull | AF_VSOCK, 0x300000000ull | TIOCLINUX}, {AF_INET, TCGETS},
    };
    static const unsigned arches[] = {AUDIT_ARCH_X86_64, AUDIT_ARCH_I386};
    int compared = 0;
    for (size_t a = 0; a < 2; a++)
        for (unsigned nr = 0; nr < 1200; nr++)
            for (size_t p = 0; p < CB_ARRAY_SIZE(probes); p++) {
                unsigned long long args[6] = {probes[p][0], probes[p][1], 0, 0, 0, 0};
                for (unsigned x32 = 0; x32 <= 0x40000000; x32 += 0x40000000) {
                    unsigned f = cb_seccomp_evaluate(&full, arches[a], (int)(nr | x32), args);
                    unsigned c = cb_seccomp_evaluate(&compact, arches[a], (int)(nr | x32), args);
                    if (f != c)
                        FAIL("arch 0x%x nr 0x%x args 0x%llx 0x%llx: full 0x%x, compact 0x%x",
                             arches[a], nr | x32, args[0], args[1], f, c);
                    compared++;
                }
            }
    ASSERT_GE(compared, 40000);
    cb_seccomp_program_clear(&full);
    cb_seccomp_program_clear(&compact);
}
