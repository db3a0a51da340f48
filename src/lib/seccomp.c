#include "seccomp_bpf.h"

#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "seccomp_policy.h"

size_t cb_seccomp_denied_count(void) { return CB_ARRAY_SIZE(cb_seccomp_denied); }
const char *cb_seccomp_denied_name(size_t i) { return cb_seccomp_denied[i].name; }

static void ctx_releasep(scmp_filter_ctx *c)
{
    if (*c)
        seccomp_release(*c);
}

static bool is_denied(const char *name)
{
    for (size_t i = 0; i < CB_ARRAY_SIZE(cb_seccomp_denied); i++)
        if (strcmp(cb_seccomp_denied[i].name, name) == 0)
            return true;
    return false;
}

static int add_argument_rules(scmp_filter_ctx ctx)
{
    int r;
    /* ioctl and socket: in the prologue (below), not here. */
    /* A nested user namespace gives back every capability over new
     * namespaces: the door to most container-escape kernel bugs. clone's
     * flags are in arg0 on x86-64, like unshare's. */
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, 0))) < 0 ||
        (r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(unshare), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, 0))) < 0)
        return r;
    /* clone3 passes its flags in memory, which seccomp cannot read: answer
     * ENOSYS so glibc falls back to clone (checked above). */
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0)
        return r;
    /* personality: only the values Docker allows (Linux, UNAME26,
     * ADDR_NO_RANDOMIZE combinations, query). */
    static const unsigned long long personas[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};
    for (size_t i = 0; i < CB_ARRAY_SIZE(personas); i++)
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1,
                                  SCMP_A0(SCMP_CMP_EQ, personas[i]))) < 0)
            return r;
    return 0;
}

static int build_filter(scmp_filter_ctx ctx, struct cb_error **err)
{
    /* Wrong-ABI calls (int 0x80 = i386, x32) answer EPERM instead of the
     * default kill so probes and old binaries see a clean error. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(EPERM));
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "seccomp badarch");
    /* Same decisions, different shape: libseccomp's default output tests
     * the syscall number against each rule in turn (a few hundred
     * compares for a syscall late in the list); level 2 emits a binary
     * search on the number. It matters twice: every syscall of the sandbox
     * that the kernel's per-syscall cache cannot decide walks the program,
     * and at load (SECCOMP_SET_MODE_FILTER, once per sandbox) the kernel
     * emulates the program for every syscall number of every ABI to fill
     * that cache, so the load time is (syscalls x program depth). */
    if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "seccomp optimize");
    for (size_t i = 0; i < CB_ARRAY_SIZE(cb_seccomp_allowed); i++) {
        const char *name = cb_seccomp_allowed[i];
        if (is_denied(name))
            return cb_error_set(err, EINVAL, CB_ERR_INTERNAL,
                                "seccomp policy allows denied %s", name);
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR)
            continue; /* unknown to this libseccomp */
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) < 0)
            return cb_error_set(err, -r, CB_ERR_INTERNAL, "seccomp rule %s", name);
    }
    if ((r = add_argument_rules(ctx)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "seccomp argument rules");
    return 0;
}

/* ioctl and socket are decided by a few instructions put in front of
 * libseccomp's program, because libseccomp cannot say what they need:
 * "allowed unless the low 32 bits of an argument are X". The kernel reads
 * ioctl's cmd and socket's family as 32-bit ints, but they arrive in 64-bit
 * registers, so a comparison of the whole register is bypassed by setting
 * high bits. Expressed in libseccomp's rules (masked-equal on both halves)
 * the complement of the excluded values took ~32 rules per value, about
 * two thirds of a 588-instruction program: the kernel converts and JITs
 * the whole program at every sandbox start (~0.2 ms) and every ioctl
 * walked that trie. Here it is one load and one compare per value.
 *
 * Only the native x86-64 numbers are matched; every other arch or number
 * (x32's have bit 30 set) falls through to libseccomp's program unchanged,
 * which decides them as before (ioctl and socket have no rule there, so
 * anything not caught here is the default EPERM). */
#define LOW32(field) ((unsigned)offsetof(struct seccomp_data, field)) /* little-endian */

/* TIOCSTI pushes bytes into a terminal's input queue (type commands into
 * whatever shell shares the tty); TIOCLINUX can do the same on a virtual
 * console. AF_VSOCK reaches the hypervisor / host services on VMs. */
static const struct sock_filter prologue[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(arch)),
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 11), /* else: libseccomp */
    /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(nr)),
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4),
    /* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(args[1])),
    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 6, 0),
    /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 5, 0),
    /* 7 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4), /* else: libseccomp */
    /* 9 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(args[0])),
    /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_VSOCK, 1, 0),
    /* 11 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* 12 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    /* 13: libseccomp's program follows */
};

int cb_seccomp_compile(struct cb_seccomp_program *out, struct cb_error **err)
{
    _cleanup_(ctx_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return cb_error_set(err, ENOMEM, CB_ERR_INTERNAL, "seccomp_init");
    if (build_filter(ctx, err) < 0)
        return -1;
    _cleanup_close_ int fd = memfd_create("cb-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "memfd_create");
    int r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "seccomp export");
    struct stat st;
    if (fstat(fd, &st) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "seccomp export");
    size_t n = (size_t)st.st_size;
    size_t np = CB_ARRAY_SIZE(prologue);
    if (n == 0 || n % sizeof(struct sock_filter) ||
        n / sizeof(struct sock_filter) + np > BPF_MAXINSNS)
        return cb_error_set(err, E2BIG, CB_ERR_INTERNAL, "seccomp program size %zu", n);
    struct sock_filter *insns = cb_xmalloc(sizeof prologue + n);
    memcpy(insns, prologue, sizeof prologue);
    if (pread(fd, insns + np, n, 0) != (ssize_t)n) {
        free(insns);
        return cb_error_set(err, EIO, CB_ERR_INTERNAL, "seccomp export read");
    }
    out->insns = insns;
    out->len = (unsigned short)(np + n / sizeof(struct sock_filter));
    return 0;
}

void cb_seccomp_program_clear(struct cb_seccomp_program *p)
{
    free(p->insns);
    p->insns = NULL;
    p->len = 0;
}

/* A tiny classic-BPF interpreter for the subset libseccomp emits, so tests
 * can check decisions without loading the filter. */
unsigned cb_seccomp_evaluate(const struct cb_seccomp_program *p, unsigned arch,
                             int nr, const unsigned long long args[6])
{
    struct seccomp_data d = {.nr = nr, .arch = arch};
    for (int i = 0; i < 6; i++)
        d.args[i] = args ? args[i] : 0;
    uint32_t A = 0, X = 0, mem[BPF_MEMWORDS] = {0};
    for (unsigned pc = 0; pc < p->len; pc++) {
        const struct sock_filter *f = &p->insns[pc];
        uint32_t src = BPF_SRC(f->code) == BPF_X ? X : f->k;
        switch (BPF_CLASS(f->code)) {
        case BPF_LD:
            if (BPF_MODE(f->code) == BPF_ABS && f->k + 4 <= sizeof d)
                memcpy(&A, (const char *)&d + f->k, 4);
            else if (BPF_MODE(f->code) == BPF_IMM)
                A = f->k;
            else if (BPF_MODE(f->code) == BPF_MEM && f->k < BPF_MEMWORDS)
                A = mem[f->k];
            break;
        case BPF_LDX:
            X = BPF_MODE(f->code) == BPF_MEM && f->k < BPF_MEMWORDS ? mem[f->k] : f->k;
            break;
        case BPF_ST: if (f->k < BPF_MEMWORDS) mem[f->k] = A; break;
        case BPF_STX: if (f->k < BPF_MEMWORDS) mem[f->k] = X; break;
        case BPF_ALU:
            switch (BPF_OP(f->code)) {
            case BPF_AND: A &= src; break;
            case BPF_OR: A |= src; break;
            case BPF_ADD: A += src; break;
            case BPF_SUB: A -= src; break;
            case BPF_RSH: A >>= src; break;
            case BPF_LSH: A <<= src; break;
            default: break;
            }
            break;
        case BPF_JMP: {
            bool t;
            switch (BPF_OP(f->code)) {
            case BPF_JA: pc += f->k; continue;
            case BPF_JEQ: t = A == src; break;
            case BPF_JGT: t = A > src; break;
            case BPF_JGE: t = A >= src; break;
            case BPF_JSET: t = (A & src) != 0; break;
            default: return SECCOMP_RET_KILL_PROCESS;
            }
            pc += t ? f->jt : f->jf;
            break;
        }
        case BPF_RET: return BPF_RVAL(f->code) == BPF_A ? A : f->k;
        case BPF_MISC: if (BPF_MISCOP(f->code) == BPF_TAX) X = A; else A = X; break;
        default: return SECCOMP_RET_KILL_PROCESS;
        }
    }
    return SECCOMP_RET_KILL_PROCESS;
}
