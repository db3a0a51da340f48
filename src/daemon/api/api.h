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
/* admin.c */
void cb_api_keys_create(struct cb_http_req *req);
void cb_api_keys_list(struct cb_http_req *req);
void cb_api_keys_delete(struct cb_http_req *req);
/* SHA-256 hex of an API key (auth and key creation). */
void cb_api_key_hash(const char *key, char out[65]);

#endif
