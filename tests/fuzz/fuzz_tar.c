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

#include "canary_tree.h"

static const struct cb_fs_owner own = {101000, 101000, 100000, 100000};


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    canary_tree_create("cb-fuzz-tar");
    /* Symlinks out, as the sandbox could have planted them. */
    char l[256];
    snprintf(l, sizeof(l), "%s/canary", rootp);
    if (symlink(canary, l))
        abort();
    snprintf(l, sizeof(l), "%s/up", rootp);
    if (symlink("../../../..", l))
        abort();
    canary_tree_seal();
    return 0;
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
