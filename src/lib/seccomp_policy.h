/* seccomp_policy.h — the container tier's syscall policy, as reviewed data.
 *
 * Semantics follow Docker's default profile: an allow-list; anything not on
 * it fails with EPERM. On top of Docker we deny (EPERM) the calls listed in
 * cb_seccomp_denied with the reason each would be dangerous, and add the
 * argument rules in seccomp.c (ioctl TIOCSTI/TIOCLINUX, socket AF_VSOCK,
 * clone/unshare CLONE_NEWUSER, clone3 -> ENOSYS). Only the native x86-64 ABI
 * is allowed: i386 (int 0x80) and x32 entry points get EPERM, because their
 * syscall numbers differ and a filter written for one ABI says nothing about
 * another (the classic seccomp bypass). Included by seccomp.c only. */
#ifndef CB_SECCOMP_POLICY_H
#define CB_SECCOMP_POLICY_H

/* Docker's default allow-list (moby profiles/seccomp/default.json), minus
 * the calls we deny below. Names unknown to the installed libseccomp are
 * skipped. ptrace is allowed like Docker does on kernels >= 4.8 (where
 * ptrace can no longer be used to bypass seccomp): debuggers and strace are
 * normal sandbox tools and the pid namespace confines the tracee to the
 * sandbox. clone/unshare/ioctl/socket are allowed with argument rules. */
static const char *const cb_seccomp_allowed[] = {
    "accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk",
    "capget", "capset", "chdir", "chmod", "chown", "clock_adjtime",
    "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "eventfd", "eventfd2", "execve", "execveat", "exit",
    "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchownat",
    "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
    "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate",
    "futex", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresuid", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "io_destroy", "io_getevents", "io_pgetevents", "ioprio_get", "ioprio_set",
    "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr",
    "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "madvise", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify",
    "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall",
    "munmap", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause",
    "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "process_vm_readv", "process_vm_writev", "pselect6", "ptrace", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
    "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
    "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid",
    "setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid",
    "setresgid", "setresuid", "setreuid", "setrlimit", "set_robust_list",
    "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
    "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "socketpair", "splice", "stat",
    "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
    "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
    "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
    "sethostname", "setdomainname", "chroot",
    /* Docker's additions for Linux 6.5-6.7 (moby 25): page-cache residency
     * of one's own open files (as mincore), chmod without following
     * symlinks (glibc >= 2.39 asks for it for fchmodat(AT_SYMLINK_NOFOLLOW)
     * and falls back only on ENOSYS, so EPERM broke `chmod -h` and lchmod
     * with newer C libraries), CET shadow stacks, the futex2 calls. */
    "cachestat", "fchmodat2", "map_shadow_stack", "futex_wake", "futex_wait",
    "futex_requeue",
};

/* x86-64 numbers of allowed calls newer than some libseccomp releases
 * know by name (Debian 12's 2.5.4 knows them; older ones skip a name they
 * cannot resolve, and the call would be refused). */
struct cb_seccomp_number {
    const char *name;
    int nr;
};
static const struct cb_seccomp_number cb_seccomp_x86_64_numbers[] = {
    {"cachestat", 451}, {"fchmodat2", 452}, {"map_shadow_stack", 453},
    {"futex_wake", 454}, {"futex_wait", 455}, {"futex_requeue", 456},
};

/* From statmount (457, Linux 6.8) on, calls answer ENOSYS, as on a kernel
 * without them: programs that try a new interface fall back to the old one
 * on ENOSYS only (EPERM reads as "you may not", and many give up). Each was
 * looked at: statmount/listmount (/proc/self/mountinfo is the fallback),
 * lsm_get_self_attr/lsm_set_self_attr/lsm_list_modules (/proc/self/attr),
 * mseal (optional hardening of one's own mappings), setxattrat/getxattrat/
 * listxattrat/removexattrat (the path and fd xattr calls), file_getattr/
 * file_setattr (the FS_IOC_FSGETXATTR ioctls), and every later number the
 * policy has not seen. The one exception, denied (EPERM) below: the mount
 * API's open_tree_attr. x32 numbers (bit 30) stay refused as EPERM. Decided
 * in front of libseccomp's program (seccomp.c, prologue). */
#define CB_SECCOMP_FIRST_UNREVIEWED 457
#define CB_SECCOMP_NR_OPEN_TREE_ATTR 467

/* Explicitly denied (EPERM), each with what it would allow. None of these
 * may appear in the allow-list (checked when the filter is compiled). */
struct cb_seccomp_denial {
    const char *name;
    const char *why;
};
static const struct cb_seccomp_denial cb_seccomp_denied[] = {
    {"io_uring_setup", "io_uring: a second syscall interface that seccomp cannot see into; a steady source of kernel CVEs"},
    {"io_uring_enter", "io_uring: see io_uring_setup"},
    {"io_uring_register", "io_uring: see io_uring_setup"},
    {"fsopen", "new mount API: building mounts outside the mount() checks"},
    {"fsconfig", "new mount API"},
    {"fsmount", "new mount API"},
    {"fspick", "new mount API: reconfiguring existing superblocks"},
    {"open_tree", "new mount API: cloning mount trees (detached copies escape locked mounts)"},
    {"move_mount", "new mount API: attaching detached trees"},
    {"mount_setattr", "new mount API: changing mount flags, idmapping"},
    {"open_tree_attr", "new mount API: open_tree that also changes the clone's flags (467; refused in the prologue, as libseccomp may not know it)"},
    {"mount", "mounting file systems (Docker: CAP_SYS_ADMIN only)"},
    {"umount2", "unmounting the masks over /proc and /sys would reveal host data"},
    {"pivot_root", "changing the root of the mount namespace"},
    {"keyctl", "kernel keyrings are not namespaced: reading/poisoning host keys"},
    {"add_key", "kernel keyrings: see keyctl"},
    {"request_key", "kernel keyrings: see keyctl"},
    {"bpf", "eBPF programs: kernel attack surface and host-wide tracing"},
    {"perf_event_open", "performance counters: side channels, kernel attack surface"},
    {"userfaultfd", "stalling kernel page faults at will: turns races into reliable exploits"},
    {"kexec_load", "replacing the running kernel"},
    {"kexec_file_load", "replacing the running kernel"},
    {"init_module", "loading kernel code"},
    {"finit_module", "loading kernel code"},
    {"delete_module", "unloading kernel modules"},
    {"open_by_handle_at", "opening files by handle bypasses the mount root (the 'shocker' escape)"},
    {"name_to_handle_at", "discloses file handles for open_by_handle_at"},
    {"setns", "joining other namespaces (only the sandbox's own exist, but no tool needs it)"},
    {"acct", "process accounting to a host file"},
    {"swapon", "host swap configuration"},
    {"swapoff", "host swap configuration"},
    {"reboot", "rebooting (in a pid namespace it only kills it, still not needed)"},
    {"settimeofday", "the host clock is not namespaced"},
    {"clock_settime", "the host clock is not namespaced"},
    {"stime", "the host clock is not namespaced"},
    {"syslog", "reading the kernel log (kernel addresses)"},
    {"quotactl", "changing disk quotas"},
    {"quotactl_fd", "changing disk quotas"},
    {"lookup_dcookie", "kernel profiling internals"},
    {"nfsservctl", "the in-kernel NFS server"},
    {"personality", "changing the execution domain (READ_IMPLIES_EXEC etc.); allowed below for the safe values only"},
    {"vm86", "x86 virtual 8086 mode"},
    {"vm86old", "x86 virtual 8086 mode"},
    {"uselib", "legacy a.out loader"},
    {"ustat", "obsolete"},
    {"sysfs", "obsolete"},
    {"_sysctl", "obsolete sysctl interface"},
    {"iopl", "I/O port access"},
    {"ioperm", "I/O port access"},
    {"kcmp", "comparing kernel objects of other processes (Docker: CAP_SYS_PTRACE)"},
    {"fanotify_init", "global file access monitoring (CAP_SYS_ADMIN)"},
    {"move_pages", "NUMA page placement of other processes"},
    {"mbind", "NUMA policy (CAP_SYS_NICE in Docker)"},
    {"set_mempolicy", "NUMA policy"},
    {"get_mempolicy", "NUMA policy"},
    {"migrate_pages", "NUMA page placement of other processes"},
    {"unshare", "allowed below without CLONE_NEWUSER only"},
    {"clone", "allowed below without CLONE_NEWUSER only"},
    {"ioctl", "allowed below except TIOCSTI/TIOCLINUX"},
    {"socket", "allowed below except AF_VSOCK"},
    {"clone3", "answered ENOSYS below so libc falls back to clone, whose flags we can inspect"},
};

#endif
