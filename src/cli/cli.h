/* cli.h — shared pieces of the cellbox CLI: the global context, calls to the
 * public API, output helpers and the command entry points.
 *
 * Exit codes: 0 success, 1 an API or runtime error (message on stderr),
 * 2 a usage error. `exec` and `run` exit with the process's own code. */
#ifndef CB_CLI_H
#define CB_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#include "error.h"
#include "http_client.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2

struct cli_ctx {
    struct cli_endpoint ep;
    int json; /* --json: print machine-readable output */
};

/* ---- api.c: JSON calls to cellboxd -------------------------------------- */

/* Send a JSON request (body may be NULL) and return the decoded answer
 * (a new reference; json null for empty bodies). On an HTTP error the API's
 * message lands in *err with the matching kind. */
json_t *cli_api_json(const struct cli_ctx *ctx, const char *method, const char *target,
                     json_t *body, struct cb_error **err);
/* GET target and show it: as JSON with --json, else its "items" (or the
 * array itself) through print_table. Returns a CLI exit code. */
int cli_list(const struct cli_ctx *ctx, const char *target, void (*print_table)(json_t *items));
/* Turn a non-2xx response into an error carrying the API's message. */
int cli_api_error_from_response(const struct http_response *resp, struct cb_error **err);
/* Print "cellbox: message" to stderr and return CLI_EXIT_ERROR. */
int cli_report(struct cb_error *err);
/* Build "/v1/sandboxes/<id><suffix>" with the id percent-encoded (owned). */
char *cli_sandbox_path(const char *id, const char *suffix);

/* ---- output.c ------------------------------------------------------------ */

struct cli_table {
    size_t ncols;
    const char *const *headers;
    char **cells; /* nrows * ncols owned strings */
    size_t nrows;
};

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *headers);
/* Add a row of ncols strings (copied). */
void cli_table_add(struct cli_table *t, const char *const *row);
void cli_table_print(const struct cli_table *t, FILE *out);
void cli_table_free(struct cli_table *t);
/* Pretty-print a JSON value on stdout followed by a newline. */
void cli_print_json(json_t *v);
/* A scalar field as text ("-" when missing or null); owned. Nested values are
 * rendered as compact JSON. */
char *cli_json_text(json_t *obj, const char *key);
/* A timestamp field: numbers (epoch seconds) as ISO-8601 UTC, strings as
 * they are; owned. */
char *cli_json_time(json_t *obj, const char *key);
/* Print an object as aligned "key: value" lines. */
void cli_print_object(json_t *obj, FILE *out);

/* ---- base64.c ------------------------------------------------------------ */

char *cli_base64_encode(const void *data, size_t len);
/* Decode into an owned buffer; returns NULL on malformed input. */
unsigned char *cli_base64_decode(const char *s, size_t *out_len);

/* ---- args.c -------------------------------------------------------------- */

/* Add "K=V" to a JSON object; returns -1 (after printing) when malformed. */
int cli_parse_kv(json_t *obj, const char *arg, const char *what);
/* Parse a non-negative number; returns -1 (after printing) when malformed. */
int cli_parse_number(const char *arg, const char *what, double *out);
/* Read a whole fd into memory (owned). Returns -errno on error. */
int cli_read_fd(int fd, char **out, size_t *len);
int cli_usage_error(const char *cmd, const char *fmt, ...) CB_PRINTF(2, 3);

/* ---- commands ------------------------------------------------------------ */

typedef int (*cli_command_fn)(struct cli_ctx *ctx, int argc, char **argv);

int cmd_create(struct cli_ctx *ctx, int argc, char **argv);
int cmd_ls(struct cli_ctx *ctx, int argc, char **argv);
int cmd_info(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rm(struct cli_ctx *ctx, int argc, char **argv);
int cmd_lifecycle(struct cli_ctx *ctx, int argc, char **argv); /* stop/start/pause/resume */
int cmd_keepalive(struct cli_ctx *ctx, int argc, char **argv);
int cmd_update(struct cli_ctx *ctx, int argc, char **argv); /* PATCH: limits, lifetime, labels */

int cmd_exec(struct cli_ctx *ctx, int argc, char **argv);
int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
int cmd_ps(struct cli_ctx *ctx, int argc, char **argv);
int cmd_logs(struct cli_ctx *ctx, int argc, char **argv);
int cmd_kill(struct cli_ctx *ctx, int argc, char **argv);

int cmd_cp(struct cli_ctx *ctx, int argc, char **argv);
int cmd_cat(struct cli_ctx *ctx, int argc, char **argv);
int cmd_write(struct cli_ctx *ctx, int argc, char **argv);
int cmd_ls_files(struct cli_ctx *ctx, int argc, char **argv);

int cmd_admin(struct cli_ctx *ctx, int argc, char **argv);

/* terminals (cmd_pty.c) and exposed ports (cmd_ports.c) */
int cmd_shell(struct cli_ctx *ctx, int argc, char **argv);
int cmd_attach(struct cli_ctx *ctx, int argc, char **argv);
int cmd_pty(struct cli_ctx *ctx, int argc, char **argv); /* pty ls | pty kill */
int cmd_expose(struct cli_ctx *ctx, int argc, char **argv);
int cmd_unexpose(struct cli_ctx *ctx, int argc, char **argv);
int cmd_ports(struct cli_ctx *ctx, int argc, char **argv);

/* Shared by create and run (cmd_sandbox.c): the create options. Returns the
 * getopt result handled (1), not ours (0) or a usage error (-1). */
extern const struct option cli_create_options[];
extern const char cli_create_optstring[];
extern const char cli_create_help[];
int cli_create_option(json_t *body, int opt, const char *arg);
/* POST /v1/sandboxes with the body; returns the sandbox object or NULL. */
json_t *cli_create_sandbox(const struct cli_ctx *ctx, json_t *body, struct cb_error **err);

/* Shared by exec and run (cmd_exec.c). */
int cli_exec_option(json_t *body, int opt, const char *arg);
/* Stream an exec; returns the exit code to exit with (or CLI_EXIT_ERROR). */
int cli_exec_stream(const struct cli_ctx *ctx, const char *id, json_t *body);
/* Read stdin into body.stdin_b64 when stdin is not a terminal. */
int cli_exec_attach_stdin(json_t *body);

#endif
