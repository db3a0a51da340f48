/* noop — the least a process can cost: a static program without libc,
 * whose whole life is execve and exit(0).
 *
 * bench_runtime runs it beside /bin/true, on the host and in a sandbox, so
 * that a run splits the cost of starting any program on that host from
 * what the C library's own start adds: glibc's startup asks the CPU about
 * itself with dozens of CPUID instructions (68 for Debian 12's /bin/true),
 * and on a virtual machine each one traps to the hypervisor (9-14 us apiece
 * on our build hosts). Built with -nostdlib -static (Makefile). */
#if defined(__x86_64__)
__attribute__((naked, noreturn)) void _start(void)
{
    __asm__ volatile("mov $60, %eax\n\t" /* SYS_exit */
                     "xor %edi, %edi\n\t"
                     "syscall");
}
#elif defined(__aarch64__)
__attribute__((naked, noreturn)) void _start(void)
{
    __asm__ volatile("mov x8, #93\n\t" /* SYS_exit */
                     "mov x0, #0\n\t"
                     "svc #0");
}
#else
#error "noop: add this architecture's exit system call"
#endif
