/* fuzz_json.c — libFuzzer target for request-body validation (json.c):
 * depth pre-scan, jansson parse with duplicate rejection, typed accessors,
 * UTF-8 check and base64 round trip.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc/lib -Isrc/daemon \
 *     tests/fuzz/fuzz_json.c src/daemon/json.c src/lib/util.c src/lib/error.c \
 *     -ljansson -o build/fuzz_json */
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cb_error *err = NULL;
    json_t *v = cb_json_parse_body((const char *)data, size, true, &err);
    if (v) {
        const char *s = NULL;
        double d;
        bool b;
        json_t *m = NULL;
        static const char *const keys[] = {"name", "cmd", NULL};
        cb_json_get_string(v, "name", 64, &s, NULL);
        cb_json_get_number(v, "timeout", 0, 1e9, &d, NULL);
        cb_json_get_bool(v, "internet", &b, NULL);
        cb_json_get_string_map(v, "env", 1024, &m, NULL);
        cb_json_check_keys(v, keys, NULL);
        json_decref(v);
    }
    cb_error_free(err);
    if (cb_utf8_valid((const char *)data, size)) {
        char *e = cb_base64_encode(data, size);
        size_t n = 0;
        uint8_t *back = cb_base64_decode(e, strlen(e), &n);
        if (!back || n != size || memcmp(back, data, size) != 0)
            __builtin_trap();
        free(back);
        free(e);
    }
    size_t n2 = 0;
    free(cb_base64_decode((const char *)data, size, &n2));
    return 0;
}
