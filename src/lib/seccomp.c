#include "seccomp_bpf.h"

#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
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

/* A policy name's x86-64 number: libseccomp's table, else ours for calls
 * newer than some libseccomp releases (seccomp_policy.h); -1 if neither. */
static int policy_nr(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    for (size_t i = 0; nr == __NR_SCMP_ERROR && i < CB_ARRAY_SIZE(cb_seccomp_x86_64_numbers); i++)
        if (strcmp(cb_seccomp_x86_64_numbers[i].name, name) == 0)
            nr = cb_seccomp_x86_64_numbers[i].nr;
    return nr == __NR_SCMP_ERROR ? -1 : nr;
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

static int build_filter(scmp_filter_ctx ctx, bool allow_list, struct cb_error **err)
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
    for (size_t i = 0; allow_list && i < CB_ARRAY_SIZE(cb_seccomp_allowed); i++) {
        const char *name = cb_seccomp_allowed[i];
        if (is_denied(name))
            return cb_error_set(err, EINVAL, CB_ERR_INTERNAL,
                                "seccomp policy allows denied %s", name);
        int nr = policy_nr(name);
        if (nr < 0)
            continue; /* unknown to this libseccomp */
        if (nr >= CB_SECCOMP_FIRST_UNREVIEWED) /* the prologue answers ENOSYS first */
            return cb_error_set(err, EINVAL, CB_ERR_INTERNAL,
                                "seccomp policy allows %s past the reviewed numbers", name);
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
    /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 15), /* else: libseccomp */
    /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(nr)),
    /* Numbers the policy has not reviewed: ENOSYS (seccomp_policy.h),
     * but x32's (bit 30) and open_tree_attr go on to libseccomp (EPERM). */
    /* 3 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, CB_SECCOMP_FIRST_UNREVIEWED, 0, 3),
    /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 12, 0), /* libseccomp */
    /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CB_SECCOMP_NR_OPEN_TREE_ATTR, 11, 0),
    /* 6 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4),
    /* 8 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(args[1])),
    /* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 6, 0),
    /* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 5, 0),
    /* 11 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4), /* else: libseccomp */
    /* 13 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(args[0])),
    /* 14 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_VSOCK, 1, 0),
    /* 15 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    /* 16 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    /* 17: libseccomp's program follows */
};

/* libseccomp's program for the policy (allow_list) or for the argument
 * rules alone, behind the prologue. */
static int export_program(bool allow_list, struct cb_seccomp_program *out, struct cb_error **err)
{
    _cleanup_(ctx_releasep) scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        return cb_error_set(err, ENOMEM, CB_ERR_INTERNAL, "seccomp_init");
    if (build_filter(ctx, allow_list, err) < 0)
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

/* ---- the compact program ----
 *
 * libseccomp tests each allowed syscall number on its own (a binary search
 * over ~295 numbers: ~390 instructions), where the numbers it allows are
 * 28 runs of consecutive ones. The kernel converts, checks and JITs the
 * whole program at every sandbox start, so the compact program searches
 * the runs instead: the same decisions in about a third of the length.
 * Only the shape is ours: which numbers are allowed comes from the same
 * policy through libseccomp's name table, the argument rules (clone,
 * unshare, personality, clone3) and every other arch and x32 stay
 * libseccomp's (its program for those rules alone is appended and decides
 * them), and the compact program is used only if it decides exactly as
 * the full one for every syscall number of every ABI with every argument
 * the rules look at (same_decisions); else the full one is. */
#define MAX_RUNS 128
#define COMPACT_MAX 1024

struct emit {
    struct sock_filter *insns;
    size_t n;
    bool overflow;
};

static size_t put(struct emit *e, struct sock_filter f)
{
    if (e->n >= COMPACT_MAX) {
        e->overflow = true;
        return e->n;
    }
    e->insns[e->n] = f;
    return e->n++;
}

/* Point the jt (or jf) of the jump at pc to the instruction at target. */
static void patch(struct emit *e, size_t pc, size_t target, bool jt)
{
    if (e->overflow || target <= pc || target - pc - 1 > 255) {
        e->overflow = true;
        return;
    }
    if (jt)
        e->insns[pc].jt = (unsigned char)(target - pc - 1);
    else
        e->insns[pc].jf = (unsigned char)(target - pc - 1);
}

struct run {
    unsigned lo, hi;
};

/* Binary search over runs[a, b) on the number in A; each leaf jumps to
 * allow or deny (fixed up by the caller through the lists). */
static void emit_search(struct emit *e, const struct run *runs, size_t a, size_t b,
                        size_t *to_allow, size_t *nallow, size_t *to_deny, size_t *ndeny)
{
    if (b - a == 1) {
        /* nr >= lo ? (nr > hi ? deny : allow) : deny */
        size_t ge = put(e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, runs[a].lo, 0, 0));
        size_t gt = put(e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, runs[a].hi, 0, 0));
        to_deny[(*ndeny)++] = ge * 2 + 0;  /* jf */
        to_deny[(*ndeny)++] = gt * 2 + 1;  /* jt */
        to_allow[(*nallow)++] = gt * 2 + 0; /* jf */
        return;
    }
    size_t mid = a + (b - a) / 2;
    size_t node = put(e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, runs[mid].lo, 0, 0));
    emit_search(e, runs, a, mid, to_allow, nallow, to_deny, ndeny);
    patch(e, node, e->n, true); /* nr >= runs[mid].lo: the upper half */
    emit_search(e, runs, mid, b, to_allow, nallow, to_deny, ndeny);
}

static bool has_rule_elsewhere(int nr)
{
    return nr == __NR_ioctl || nr == __NR_socket || nr == __NR_clone || nr == __NR_unshare ||
           nr == __NR_personality || nr == __NR_clone3;
}

static int compact_program(const struct cb_seccomp_program *args_only,
                           struct cb_seccomp_program *out)
{
    /* the allowed numbers, as runs */
    bool allowed[1024] = {false};
    for (size_t i = 0; i < CB_ARRAY_SIZE(cb_seccomp_allowed); i++) {
        int nr = policy_nr(cb_seccomp_allowed[i]);
        if (nr >= 0 && nr < 1024 && !has_rule_elsewhere(nr))
            allowed[nr] = true;
        else if (nr >= 1024)
            return -ERANGE;
    }
    struct run runs[MAX_RUNS];
    size_t nruns = 0;
    for (unsigned nr = 0; nr < 1024; nr++) {
        if (!allowed[nr])
            continue;
        if (nruns && runs[nruns - 1].hi == nr - 1)
            runs[nruns - 1].hi = nr;
        else if (nruns < MAX_RUNS)
            runs[nruns++] = (struct run){nr, nr};
        else
            return -E2BIG;
    }
    if (!nruns)
        return -EINVAL;
    struct emit e = {cb_xmalloc(COMPACT_MAX * sizeof *e.insns), 0, false};
    size_t to_allow[2 * MAX_RUNS + 8], to_deny[2 * MAX_RUNS + 8], to_rules[8];
    size_t nallow = 0, ndeny = 0, nrules = 0;
    /* ioctl and socket: the prologue, as it is (its last instruction falls
     * through to what follows: here, the x86-64 part below, which re-loads
     * the number; on another arch it jumps past its own end). */
    size_t np = CB_ARRAY_SIZE(prologue);
    for (size_t i = 0; i < np; i++)
        put(&e, prologue[i]);
    /* Another arch: libseccomp's rules program decides (badarch). Jumps
     * out of the prologue land at np, so test again. */
    put(&e, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(arch)));
    size_t arch = put(&e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 0));
    to_rules[nrules++] = arch * 2 + 0;
    put(&e, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, LOW32(nr)));
    /* x32 (bit 30) and the argument rules: libseccomp's rules program */
    size_t x32 = put(&e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 0));
    to_rules[nrules++] = x32 * 2 + 1;
    static const int rule_nrs[] = {__NR_clone, __NR_unshare, __NR_personality, __NR_clone3};
    for (size_t i = 0; i < CB_ARRAY_SIZE(rule_nrs); i++) {
        size_t j = put(&e, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                                         (unsigned)rule_nrs[i], 0, 0));
        to_rules[nrules++] = j * 2 + 1;
    }
    emit_search(&e, runs, 0, nruns, to_allow, &nallow, to_deny, &ndeny);
    size_t allow = put(&e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    size_t deny = put(&e, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
    size_t rules = e.n; /* libseccomp's rules program, without its own prologue copy */
    for (size_t i = np; i < args_only->len; i++)
        put(&e, args_only->insns[i]);
    for (size_t i = 0; i < nallow; i++)
        patch(&e, to_allow[i] / 2, allow, to_allow[i] % 2);
    for (size_t i = 0; i < ndeny; i++)
        patch(&e, to_deny[i] / 2, deny, to_deny[i] % 2);
    for (size_t i = 0; i < nrules; i++)
        patch(&e, to_rules[i] / 2, rules, to_rules[i] % 2);
    if (e.overflow || e.n > BPF_MAXINSNS) {
        free(e.insns);
        return -E2BIG;
    }
    out->insns = e.insns;
    out->len = (unsigned short)e.n;
    return 0;
}

/* Does b decide exactly as a? Every number of the native ABI and of x32,
 * i386's and a foreign arch's, each with argument values the rules look at
 * (and high bits the kernel ignores for 32-bit ones). */
static bool same_decisions(const struct cb_seccomp_program *a, const struct cb_seccomp_program *b)
{
    static const unsigned long long probes[][2] = {
        {0, 0},
        {CLONE_NEWUSER, 0},
        {CLONE_NEWUSER | CLONE_NEWNS, 0},
        {CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, 0},
        {0x100000000ull | CLONE_NEWUSER, 0},
        {0x8, 0}, {0x20000, 0}, {0x20008, 0}, {0xffffffff, 0}, {0x0400000, 0},
        {0x100000008ull, 0},
        {AF_VSOCK, TIOCSTI}, {0xffffffff00000000ull | AF_VSOCK, 0x100000000ull | TIOCSTI},
        {AF_INET, TIOCLINUX}, {AF_UNIX, 0xdead00000000ull | TIOCLINUX}, {AF_INET6, TCGETS},
    };
    /* Every probe on every native number (a rule on any of them would
     * show); for the other ABIs, which libseccomp refuses whole, fewer. */
    static const unsigned arches[] = {AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64};
    for (size_t ai = 0; ai < CB_ARRAY_SIZE(arches); ai++)
        for (unsigned base = 0; base <= 0x40000000; base += 0x40000000)
            for (unsigned nr = base; nr < base + 1100; nr++)
                for (size_t pi = 0; pi < CB_ARRAY_SIZE(probes);
                     pi += ai == 0 && base == 0 ? 1 : 5) {
                    unsigned long long args[6] = {probes[pi][0], probes[pi][1], 0, 0, 0, 0};
                    if (cb_seccomp_evaluate(a, arches[ai], (int)nr, args) !=
                        cb_seccomp_evaluate(b, arches[ai], (int)nr, args))
                        return false;
                }
    return true;
}

int cb_seccomp_compile(struct cb_seccomp_program *out, struct cb_error **err)
{
    struct cb_seccomp_program full = {0}, args_only = {0}, compact = {0};
    if (export_program(true, &full, err) < 0)
        return -1;
    if (getenv("CB_SECCOMP_FULL") == NULL && export_program(false, &args_only, NULL) == 0 &&
        compact_program(&args_only, &compact) == 0 && same_decisions(&full, &compact)) {
        cb_seccomp_program_clear(&full);
        *out = compact;
    } else {
        cb_seccomp_program_clear(&compact);
        *out = full;
    }
    cb_seccomp_program_clear(&args_only);
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
