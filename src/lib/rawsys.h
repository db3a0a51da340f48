/* rawsys.h — system calls that leave errno alone.
 *
 * A sandbox's first process is cloned with CLONE_VM and runs its setup on
 * the thread pointer of the daemon thread that cloned it, so the two share
 * glibc's errno (thread-local storage) until the child's exec. Whatever
 * that thread runs meanwhile must not write errno: not a failing libc
 * call, and not malloc or free either (glibc saves errno and writes it
 * back, which can overwrite a value the child has just been given by the
 * kernel and is about to read: a start once failed with "remove
 * .../volatile/dirty: File exists", the EEXIST of an earlier mkdir of the
 * child's). These wrappers return -errno instead. x86-64 only; elsewhere
 * CB_HAVE_RAW_SYSCALL is 0 and callers do that work after the exec. */
#ifndef CB_RAWSYS_H
#define CB_RAWSYS_H

#if defined(__x86_64__)
#define CB_HAVE_RAW_SYSCALL 1
static inline long cb_raw_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
#define CB_HAVE_RAW_SYSCALL 0
#endif

#endif
