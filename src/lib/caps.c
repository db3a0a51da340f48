#include "caps.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

uint64_t cb_caps_default_keep(void)
{
    static const int keep[] = {
        CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD,
        CAP_NET_RAW, CAP_SETGID, CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP,
        CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
    };
    uint64_t mask = 0;
    for (size_t i = 0; i < CB_ARRAY_SIZE(keep); i++)
        mask |= 1ull << keep[i];
    return mask;
}

int cb_caps_last_cap(void)
{
    char buf[16] = {0};
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0)
            return atoi(buf);
    }
    return CAP_LAST_CAP;
}

int cb_caps_drop_bounding(uint64_t keep, int last_cap)
{
    for (int cap = 0; cap <= last_cap && cap < 64; cap++) {
        if (keep & (1ull << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -errno;
    }
    return 0;
}

int cb_caps_clear_ambient(void)
{
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 ? -errno : 0;
}

int cb_caps_lock_securebits(void)
{
    unsigned long bits = SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                         SECBIT_NOROOT_LOCKED;
    return prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0 ? -errno : 0;
}

int cb_caps_no_new_privs(void)
{
    /* setuid binaries and file capabilities cannot raise privileges. */
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
}
