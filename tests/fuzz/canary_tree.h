/* canary_tree.h — the fixture the filesystem fuzzers share: a temp base
 * directory holding a "sandbox root" and, beside it, a canary directory with
 * one file. Whatever an input makes the code under test do inside the root,
 * the canary (and the base's own entry list) must stay exactly as it was.
 * Header-only (static functions): each fuzzer is its own program. */
#ifndef CB_FUZZ_CANARY_TREE_H
#define CB_FUZZ_CANARY_TREE_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[128], rootp[160], canary[160];
static int rootfd = -1;
static struct stat canary_dir0, canary_file0, base0;

static int canary_rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
    (void)sb, (void)f, (void)ftw;
    remove(p);
    return 0;
}

static void canary_tree_cleanup(void) { nftw(base, canary_rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* Make base (/tmp/<prefix>.XXXXXX), base/canary/file and an empty
 * base/root; removed at exit. */
static void canary_tree_create(const char *prefix)
{
    snprintf(base, sizeof(base), "/tmp/%s.XXXXXX", prefix);
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
    atexit(canary_tree_cleanup);
}

/* Open the root and record the canary's state once the tree is built. */
static void canary_tree_seal(void)
{
    rootfd = open(rootp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        abort();
    char p[256];
    snprintf(p, sizeof(p), "%s/file", canary);
    stat(canary, &canary_dir0);
    stat(p, &canary_file0);
    stat(base, &base0);
}

static int canary_same(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_nlink == b->st_nlink &&
           a->st_mode == b->st_mode && a->st_uid == b->st_uid &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Abort (a fuzzer finding) when anything about the canary or the base's
 * entries changed. */
static void check_canary(void)
{
    struct stat d, f, b;
    char p[256];
    snprintf(p, sizeof(p), "%s/file", canary);
    if (stat(canary, &d) || stat(p, &f) || stat(base, &b) || !canary_same(&d, &canary_dir0) ||
        !canary_same(&f, &canary_file0) || !canary_same(&b, &base0)) {
        fprintf(stderr, "canary changed\n");
        abort();
    }
}

#endif
