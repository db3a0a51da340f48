#include "json.h"

#include <math.h>
#include <string.h>

int cb_json_depth(const char *text, size_t len)
{
    int depth = 0, max = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return -1;
        }
    }
    return max;
}

json_t *cb_json_parse_body(const char *text, size_t len, bool empty_ok,
                           struct cb_error **err)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' ||
                       text[i] == '\t'))
        i++;
    if (i == len) {
        if (empty_ok)
            return json_object();
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "request body must be JSON");
        return NULL;
    }
    /* Depth first: jansson's parser recurses per level. */
    if (cb_json_depth(text, len) > CB_JSON_MAX_DEPTH) {
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                     "JSON nested deeper than %d levels", CB_JSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "invalid JSON at line %d column %d: %s",
                     jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "request body must be a JSON object");
        return NULL;
    }
    return v;
}

int cb_json_get_string(json_t *obj, const char *key, size_t max_len,
                       const char **out, struct cb_error **err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'%s' must be a string", key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > max_len)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "'%s' is longer than %zu bytes", key, max_len);
    if (strlen(s) != n)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'%s' contains NUL", key);
    *out = s;
    return 1;
}

int cb_json_get_number(json_t *obj, const char *key, double min, double max,
                       double *out, struct cb_error **err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "'%s' must be between %g and %g", key, min, max);
    *out = d;
    return 1;
}

int cb_json_get_bool(json_t *obj, const char *key, bool *out, struct cb_error **err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 1;
}

int cb_json_get_string_map(json_t *obj, const char *key, size_t max_entries,
                           json_t **out, struct cb_error **err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'%s' must be an object", key);
    if (json_object_size(v) > max_entries)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "'%s' has more than %zu entries", key, max_entries);
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val)
    {
        if (!json_is_string(val))
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                                "'%s.%s' must be a string", key, k);
        if (strlen(json_string_value(val)) != json_string_length(val) || !*k ||
            strlen(k) > 256 || json_string_length(val) > 65536)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                                "'%s' has an invalid entry", key);
    }
    *out = v;
    return 1;
}

int cb_json_check_keys(json_t *obj, const char *const *allowed, struct cb_error **err)
{
    const char *k;
    json_t *val;
    json_object_foreach(obj, k, val)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], k) == 0)
                ok = true;
        if (!ok)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "unknown field '%.64s'", k);
    }
    return 0;
}

bool cb_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cb_base64_encode(const void *data, size_t len)
{
    const unsigned char *in = data;
    char *out = cb_xmalloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = 0;
    return out;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

void *cb_base64_decode(const char *text, size_t len, size_t *out_len)
{
    if (len % 4)
        return NULL;
    unsigned char *out = cb_xmalloc(len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            bool pad_ok = i + 4 == len && k >= 2 && text[i + k] == '=';
            v[k] = pad_ok ? 0 : b64_value(text[i + k]);
            if (v[k] < 0 || (k == 2 && text[i + 2] == '=' && text[i + 3] != '=')) {
                free(out);
                return NULL;
            }
        }
        unsigned w = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
        out[o++] = (unsigned char)(w >> 16);
        if (text[i + 2] != '=')
            out[o++] = (unsigned char)(w >> 8);
        if (text[i + 3] != '=')
            out[o++] = (unsigned char)w;
    }
    *out_len = o;
    return out;
}
