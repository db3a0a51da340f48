/* json.h — parsing untrusted JSON request bodies, and small accessors.
 *
 * Bodies come from API callers (untrusted): the size is capped by the HTTP
 * layer, the nesting depth is checked here before jansson sees the text (its
 * recursive parser would otherwise follow an attacker's depth), duplicate
 * keys are rejected (two "user" keys must not mean two things to two
 * readers), and NUL inside strings is refused. */
#ifndef CB_DAEMON_JSON_H
#define CB_DAEMON_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define CB_JSON_MAX_DEPTH 32

/* Deepest nesting of arrays/objects in text (strings skipped); -1 when the
 * text is so broken that brackets do not match (jansson reports details). */
int cb_json_depth(const char *text, size_t len);

/* Parse a request body. An empty body parses as an empty object when
 * empty_ok. Returns a new reference or NULL with *err (BAD_REQUEST). */
json_t *cb_json_parse_body(const char *text, size_t len, bool empty_ok,
                           struct cb_error **err);

/* Typed optional fields. Each returns 0 when absent (out untouched), 1 when
 * present and valid, or -1 with *err (BAD_REQUEST naming the field). */
int cb_json_get_string(json_t *obj, const char *key, size_t max_len,
                       const char **out, struct cb_error **err);
int cb_json_get_number(json_t *obj, const char *key, double min, double max,
                       double *out, struct cb_error **err);
int cb_json_get_bool(json_t *obj, const char *key, bool *out,
                     struct cb_error **err);
/* An object whose values are all strings (env, metadata). */
int cb_json_get_string_map(json_t *obj, const char *key, size_t max_entries,
                           json_t **out, struct cb_error **err);
/* Reject keys that are not in the NULL-terminated list (typos must not be
 * silently ignored). */
int cb_json_check_keys(json_t *obj, const char *const *allowed,
                       struct cb_error **err);

/* Is s valid UTF-8 (so it can travel in a JSON string)? */
bool cb_utf8_valid(const char *s, size_t len);
/* Base64 encode/decode (standard alphabet with padding). Decode returns
 * NULL on invalid input. Results are malloc'd. */
char *cb_base64_encode(const void *data, size_t len);
void *cb_base64_decode(const char *text, size_t len, size_t *out_len);

#endif
