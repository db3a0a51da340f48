/* clone3.h — clone3() for a child that shares our memory and runs a
 * function on a stack of its own, as glibc's clone() does for clone().
 *
 * Why: clone3 can put the child into a cgroup v2 directory as it is born
 * (CLONE_INTO_CGROUP, Linux 5.7). The other way in, writing the child's pid
 * to cgroup.procs, takes the kernel's global threadgroup rwsem for writing,
 * and that waits for an RCU grace period whenever no other writer came
 * just before: 9.4 ms p50 (13 ms p90) per write with 50 ms between
 * writes, measured on this host's unified hierarchy, against 0.3 ms for
 * the whole clone3 into the cgroup. On a cgroup v2 host every sandbox start
 * paid that. (v1 sandboxes move themselves through their "tasks" files,
 * which skips the rwsem: cgroup.h, cb_cgroup_open_join_fds.)
 *
 * glibc 2.36 has no clone3 wrapper, and a child that shares the caller's
 * memory cannot return from the syscall into the caller's C frame (it
 * runs on another stack), so the entry is a few instructions of assembly
 * (clone3.c), x86-64 only; elsewhere cb_clone3_vm answers -ENOSYS and
 * callers use clone(). */
#ifndef CB_CLONE3_H
#define CB_CLONE3_H

#include <stddef.h>
#include <stdint.h>

/* Start fn(arg) in a child made by clone3 with `flags` (CLONE_VM among
 * them), on [stack, stack + stack_size), exit signal exit_signal.
 * CLONE_PIDFD: *pidfd gets the child's pidfd. cgroup_fd >= 0: the child
 * starts in that cgroup v2 directory (CLONE_INTO_CGROUP is added). The
 * child exits with fn's return value. Returns the child's pid, or -errno:
 * -ENOSYS where clone3 is missing, filtered (container runtimes' seccomp
 * profiles answer ENOSYS) or not built (not x86-64). CB_NO_CLONE3 in the
 * environment makes it answer -ENOSYS always (tests of the fallback). */
long cb_clone3_vm(uint64_t flags, int exit_signal, int *pidfd, int cgroup_fd, void *stack,
                  size_t stack_size, int (*fn)(void *), void *arg);

#endif
