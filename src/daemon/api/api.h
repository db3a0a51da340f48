/* api.h — handlers of the HTTP API v1 (one file per resource) and the
 * helpers they share. Every handler ends its request exactly once (http.h). */
#ifndef CB_DAEMON_API_H
#define CB_DAEMON_API_H

#include <jansson.h>

#include "daemon.h"
#include "http.h"
#include "sandbox.h"

/* The sandbox named by the {id} capture, visible to the caller's tenant;
 * answers 404 and returns NULL otherwise. */
struct cb_sbx *cb_api_sandbox(struct cb_http_req *req);
/* The JSON object body, or NULL after answering 400. */
json_t *cb_api_body(struct cb_http_req *req, bool empty_ok);
/* Sandbox object as the API shows it. */
json_t *cb_api_sandbox_json(struct cb_sbx *s, bool with_usage);
/* 503 for features other tiers or later versions provide. */
void cb_api_unavailable(struct cb_http_req *req);

/* initreq.c — relaying to a sandbox's init */
/* A process id from a route capture: decimal, 1..2^31-1. */
bool cb_api_parse_pid(const char *s, uint32_t *out);
/* Finish b, send it (no fds wanted) and free it; cb_initc_send's result. */
int cb_api_init_send(struct cb_initc *c, struct cb_builder *b, bool multi,
                     cb_initc_reply_cb cb, void *arg);
/* Ask init for its process table (PROCS reply to cb); < 0 when the
 * connection is gone (cb is not called then). */
int cb_api_send_list(struct cb_initc *c, cb_initc_reply_cb cb, void *arg);
/* Call fn for each PROC entry of a PROCS payload, in init's order (oldest
 * first). */
typedef void (*cb_api_proc_fn)(const uint8_t *proc, size_t len, void *arg);
void cb_api_for_each_proc(const uint8_t *p, size_t len, cb_api_proc_fn fn, void *arg);
/* Answer init's ERROR reply (or a lost connection, h == NULL): ESRCH gives
 * 404 with not_found, EPIPE 409, anything else 400 with init's message. */
void cb_api_respond_init_error(struct cb_http_req *req, const struct cb_frame_header *h,
                               const uint8_t *p, size_t len, const char *not_found);

/* service.c */
void cb_api_healthz(struct cb_http_req *req);
void cb_api_info(struct cb_http_req *req);
void cb_api_metrics(struct cb_http_req *req);
void cb_api_templates_list(struct cb_http_req *req);
/* sandboxes.c */
void cb_api_sandbox_create(struct cb_http_req *req);
void cb_api_sandbox_list(struct cb_http_req *req);
void cb_api_sandbox_get(struct cb_http_req *req);
void cb_api_sandbox_delete(struct cb_http_req *req);
void cb_api_sandbox_patch(struct cb_http_req *req);
void cb_api_sandbox_stop(struct cb_http_req *req);
void cb_api_sandbox_start(struct cb_http_req *req);
void cb_api_sandbox_pause(struct cb_http_req *req);
void cb_api_sandbox_resume(struct cb_http_req *req);
void cb_api_sandbox_keepalive(struct cb_http_req *req);
/* exec.c */
void cb_api_exec(struct cb_http_req *req);
/* Build a SPAWN frame from an exec-style body; NULL with *err on bad input. */
struct cb_builder;
int cb_api_build_spawn(struct cb_sbx *s, json_t *body, int mode, uint32_t request_id,
                       struct cb_builder *b, struct cb_error **err);
/* processes.c */
void cb_api_process_start(struct cb_http_req *req);
void cb_api_process_list(struct cb_http_req *req);
void cb_api_process_get(struct cb_http_req *req);
void cb_api_process_kill(struct cb_http_req *req);
void cb_api_process_signal(struct cb_http_req *req);
void cb_api_process_stdin(struct cb_http_req *req);
void cb_api_process_output(struct cb_http_req *req);
void cb_api_process_wait(struct cb_http_req *req);
/* ptys.c */
void cb_api_pty_create(struct cb_http_req *req);
void cb_api_pty_list(struct cb_http_req *req);
void cb_api_pty_delete(struct cb_http_req *req);
void cb_api_pty_ws(struct cb_http_req *req);
/* files.c */
void cb_api_files_read(struct cb_http_req *req);
void cb_api_files_write(struct cb_http_req *req);
void cb_api_files_delete(struct cb_http_req *req);
void cb_api_files_stat(struct cb_http_req *req);
void cb_api_files_list(struct cb_http_req *req);
void cb_api_files_mkdir(struct cb_http_req *req);
void cb_api_files_move(struct cb_http_req *req);
void cb_api_files_watch(struct cb_http_req *req);
void cb_api_archive_put(struct cb_http_req *req);
void cb_api_archive_get(struct cb_http_req *req);
/* ports.c */
void cb_api_port_expose(struct cb_http_req *req);
void cb_api_port_list(struct cb_http_req *req);
void cb_api_port_unexpose(struct cb_http_req *req);
/* admin.c */
void cb_api_keys_create(struct cb_http_req *req);
void cb_api_keys_list(struct cb_http_req *req);
void cb_api_keys_delete(struct cb_http_req *req);
/* SHA-256 hex of an API key (auth and key creation). */
void cb_api_key_hash(const char *key, char out[65]);

#endif
