/* fuzz_proto.c — libFuzzer target for the control protocol parser.
 *
 * The input is a byte stream as a peer would send it: a sequence of frames.
 * Each header is parsed; each payload is walked field by field, recursing
 * into PROC fields (bounded depth), and every field is fed to every typed
 * accessor, so out-of-bounds reads, overflows and leaks show up under ASan.
 * The builder is exercised too: each parsed field list is re-encoded and
 * must parse back to the same tags and lengths.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc/lib \
 *         tests/fuzz/fuzz_proto.c src/lib/proto.c src/lib/util.c */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const struct cb_field_view *f)
{
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    if (cb_field_u32(f, &u32) == 0 && f->len != 4)
        abort();
    if (cb_field_u64(f, &u64) == 0 && f->len != 8)
        abort();
    if (cb_field_i32(f, &i32) == 0 && f->len != 4)
        abort();
    char *s = cb_field_strdup(f);
    if (s && strlen(s) != f->len)
        abort();
    free(s);
}

static void walk(const uint8_t *p, size_t n, int depth, struct cb_builder *b)
{
    size_t off = 0;
    struct cb_field_view f;
    int r;
    while ((r = cb_proto_next_field(p, n, &off, &f)) > 0) {
        if (f.value + f.len > p + n || off > n)
            abort(); /* the parser handed out a view past the buffer */
        check_field(&f);
        if (f.tag == CB_F_PROC && depth < 8)
            walk(f.value, f.len, depth + 1, NULL);
        if (b)
            cb_builder_bytes(b, f.tag, f.value, f.len);
    }
    if (r != 0 && r != -EPROTO)
        abort();
    struct cb_field_view any;
    cb_proto_find(p, n, CB_F_PID, &any);
}

/* Re-encode a well-formed payload and compare. */
static void roundtrip(const uint8_t *p, size_t n, const struct cb_frame_header *h)
{
    /* Start from a small caller-given buffer (as cellbox-init recycles
     * one), so every non-trivial payload also exercises the growth path. */
    uint8_t *start = malloc(64);
    if (!start)
        abort();
    struct cb_builder b;
    cb_builder_init_buffer(&b, h->type, h->request_id, start, 64);
    walk(p, n, 0, &b);
    size_t off = 0;
    struct cb_field_view f;
    int r;
    while ((r = cb_proto_next_field(p, n, &off, &f)) > 0)
        ;
    if (r == 0) {
        if (cb_builder_finish(&b) != 0 || b.len != n + CB_PROTO_HEADER_SIZE ||
            memcmp(b.buf + CB_PROTO_HEADER_SIZE, p, n) != 0)
            abort();
    }
    cb_builder_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (size - off >= CB_PROTO_HEADER_SIZE) {
        struct cb_frame_header h;
        if (cb_proto_parse_header(data + off, size - off, &h) < 0)
            break;
        off += CB_PROTO_HEADER_SIZE;
        size_t n = h.length <= size - off ? h.length : size - off;
        roundtrip(data + off, n, &h);
        off += n;
    }
    return 0;
}
