/* seccomp_bpf.h — (not seccomp.h: that name would shadow libseccomp's <seccomp.h> under -Isrc/lib) compile the container tier's seccomp policy once (libseccomp)
 * into a classic BPF program that sandbox children load with one syscall
 * and no allocation. Policy text: seccomp_policy.h. */
#ifndef CB_SECCOMP_BPF_H
#define CB_SECCOMP_BPF_H

#include <linux/filter.h>
#include <stddef.h>

#include "error.h"

struct cb_seccomp_program {
    struct sock_filter *insns; /* owned; freed by cb_seccomp_program_clear */
    unsigned short len;
};

int cb_seccomp_compile(struct cb_seccomp_program *out, struct cb_error **err);
void cb_seccomp_program_clear(struct cb_seccomp_program *p);

/* Run the compiled program on a synthetic seccomp_data (for tests): returns
 * the filter's SECCOMP_RET_* value. */
unsigned cb_seccomp_evaluate(const struct cb_seccomp_program *p, unsigned arch,
                             int nr, const unsigned long long args[6]);

/* Names of the explicitly denied syscalls (for tests and docs). */
size_t cb_seccomp_denied_count(void);
const char *cb_seccomp_denied_name(size_t i);

#endif
