/* fuzz_tar.c — libFuzzer target: cb_fs_archive_extract on arbitrary bytes.
 *
 * Each input is extracted (small max_bytes / max_entries) into /x under a
 * temp "sandbox root" that contains a symlink to a canary directory beside
 * it; the tree is then removed with cb_fs_remove. After every input the
 * canary must be unchanged and nothing new may appear beside the root. */
#include <assert.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsops.h"

static char base[128], rootp[160], canary[160];
static int rootfd = -1;
static struct stat canary_dir0, canary_file0, base0;
static const struct cb_fs_owner own = {101000, 101000, 100000, 100000};

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
    remove(p);
    return 0;
}

static void cleanup(void) { nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(base, sizeof(base), "/tmp/cb-fuzz-tar.XXXXXX");
    if (!mkdtemp(base))
        abort();
    snprintf(rootp, sizeof(rootp), "%s/root", base);
    snprintf(canary, sizeof(canary), "%s/canary", base);
    mkdir(rootp, 0755);
    mkdir(canary, 0755);
    char p[256];
    snprintf(p, sizeof(p), "%s/file", canary);
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "CANARY", 6) != 6)
        abort();
    close(fd);
    /* Symlinks out, as the sandbox could have planted them. */
    char l[256];
    snprintf(l, sizeof(l), "%s/canary", rootp);
    if (symlink(canary, l))
        abort();
    snprintf(l, sizeof(l), "%s/up", rootp);
    if (symlink("../../../..", l))
        abort();
    rootfd = open(rootp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        abort();
    stat(canary, &canary_dir0);
    stat(p, &canary_file0);
    stat(base, &base0);
    atexit(cleanup);
    return 0;
}

static int same(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_nlink == b->st_nlink &&
           a->st_mode == b->st_mode && a->st_uid == b->st_uid &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void check_canary(void)
{
    struct stat d, f, b;
    char p[256];
    snprintf(p, sizeof(p), "%s/file", canary);
    if (stat(canary, &d) || stat(p, &f) || stat(base, &b) || !same(&d, &canary_dir0) ||
        !same(&f, &canary_file0) || !same(&b, &base0)) {
        fprintf(stderr, "canary changed\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int in = memfd_create("in", MFD_CLOEXEC);
    if (in < 0 || cb_write_all(in, data, size) < 0 || lseek(in, 0, SEEK_SET) != 0)
        abort();
    struct cb_error *err = NULL;
    int r = cb_fs_archive_extract(rootfd, "/x", in, &own, 1 << 20, 256, &err);
    close(in);
    if (r < 0) {
        /* Messages name members (input) but never the host root, unless
         * the input itself spelled it. */
        assert(err && err->message);
        assert(!strstr(err->message, rootp) || memmem(data, size, rootp, strlen(rootp)));
        cb_error_free(err);
        err = NULL;
    }
    check_canary();
    /* Round trip whatever landed, then clean up through the library too. */
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    cb_fs_archive_create(rootfd, "/x", out, &err);
    close(out);
    cb_error_free(err);
    err = NULL;
    if (cb_fs_remove(rootfd, "/x", true, &err) < 0 && err->kind != CB_ERR_NOT_FOUND) {
        fprintf(stderr, "remove: %s\n", err->message);
        abort();
    }
    cb_error_free(err);
    check_canary();
    /* Anything the archive put elsewhere in the root (it must not) would
     * show up here: the root holds only our two symlinks. */
    char extra[256];
    snprintf(extra, sizeof(extra), "%s/x", rootp);
    assert(access(extra, F_OK) != 0);
    return 0;
}
