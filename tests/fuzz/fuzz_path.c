/* fuzz_path.c — libFuzzer target: cb_fs_normalize and confined resolution.
 *
 * Input: byte 0 picks an operation, the rest (up to a NUL) is a sandbox
 * path. The operation runs against a small fixed tree under a temp "sandbox
 * root" that contains symlinks out (absolute and relative), a loop and a
 * FIFO; next to the root sits a canary directory. After every input the
 * canary (names, sizes, mtimes, ctimes, link counts) must be unchanged and
 * nothing new may appear beside the root. Mutating operations are followed
 * by a rebuild of the tree so every input starts from the same state. */
#include <assert.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fsops.h"

#include "canary_tree.h"

static const struct cb_fs_owner own = {101000, 101000, 100000, 100000};

/* Empty the root but keep the directory itself: rootfd stays valid and the
 * base directory (checked for new names) is not touched. */
static int rm_below_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw)
{
    if (ftw->level > 0)
        remove(p);
    return 0;
}

static void at(const char *rel, char *out, size_t n) { snprintf(out, n, "%s%s", rootp, rel); }

static void build_tree(void)
{
    char p[512], t[512];
    nftw(rootp, rm_below_cb, 16, FTW_DEPTH | FTW_PHYS);
    at("/a", p, sizeof(p)); mkdir(p, 0755);
    at("/a/b", p, sizeof(p)); mkdir(p, 0755);
    at("/a/f", p, sizeof(p)); close(open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    at("/abs", p, sizeof(p)); if (symlink(canary, p)) abort();
    snprintf(t, sizeof(t), "../../../../../..%s", canary);
    at("/a/rel", p, sizeof(p)); if (symlink(t, p)) abort();
    at("/up", p, sizeof(p)); if (symlink("../../../../..", p)) abort();
    at("/loop", p, sizeof(p)); if (symlink("/loop", p)) abort();
    at("/fifo", p, sizeof(p)); mkfifo(p, 0644);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    canary_tree_create("cb-fuzz-path");
    build_tree();
    canary_tree_seal();
    return 0;
}

static void check_normalized(const char *n)
{
    assert(n[0] == '/');
    assert(strlen(n) <= CB_FS_MAX_PATH + 1);
    assert(!strstr(n, "//"));
    assert(!strstr(n, "/./"));
    size_t l = strlen(n);
    assert(l == 1 || n[l - 1] != '/');
    assert(!(l >= 2 && !strcmp(n + l - 2, "/.")));
}

static void run(int op, const char *path)
{
    struct cb_error *err = NULL;
    struct cb_fs_stat st = {0};
    int fd = -1;
    bool mutated = true;
    switch (op % 8) {
    case 0: fd = cb_fs_open_read(rootfd, path, &own, &st, &err); mutated = false; break;
    case 1:
        if (cb_fs_stat(rootfd, path, &own, &st, &err) == 0)
            assert(st.path && st.path[0] == '/');
        mutated = false;
        break;
    case 2: {
        struct cb_fs_stat *items = NULL;
        size_t n = 0;
        if (cb_fs_list(rootfd, path, 2, &own, &items, &n, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                cb_fs_stat_clear(&items[i]);
            free(items);
        }
        mutated = false;
        break;
    }
    case 3:
        fd = cb_fs_open_write(rootfd, path, 0644, true, &own, &err);
        if (fd >= 0 && write(fd, "x", 1) != 1)
            abort();
        break;
    case 4: cb_fs_mkdir(rootfd, path, op & 8, 0755, &own, &err); break;
    case 5: cb_fs_remove(rootfd, path, op & 8, &err); break;
    case 6: cb_fs_move(rootfd, path, "/moved", &err); cb_error_free(err); err = NULL;
            cb_fs_move(rootfd, "/a/f", path, &err); break;
    default: {
        int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
        cb_fs_archive_create(rootfd, path, out, &err);
        close(out);
        mutated = false;
        break;
    }
    }
    if (fd >= 0)
        close(fd);
    if (err) {
        /* A message may echo the caller's path, nothing else of the host:
         * it names the host root only when the input itself spelled it. */
        char *n = cb_fs_normalize(path, NULL);
        assert(err->message);
        assert(!strstr(err->message, rootp) || (n && strstr(n, rootp)) || strstr(path, rootp));
        free(n);
        cb_error_free(err);
    }
    cb_fs_stat_clear(&st);
    check_canary();
    if (mutated)
        build_tree();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1 || size > CB_FS_MAX_PATH + 64)
        return 0;
    char *path = malloc(size);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = '\0'; /* an embedded NUL ends the path, as in C */
    struct cb_error *err = NULL;
    char *n = cb_fs_normalize(path, &err);
    if (n) {
        check_normalized(n);
        char *again = cb_fs_normalize(n, &err); /* idempotent */
        assert(again && !strcmp(again, n));
        free(again);
        free(n);
    } else {
        assert(err && err->kind == CB_ERR_BAD_REQUEST);
    }
    cb_error_free(err);
    run(data[0], path);
    free(path);
    return 0;
}
