/* log.h — structured logs of cellboxd on stderr.
 *
 * One line per event, as JSON ({"ts":…,"level":…,"sandbox":…,"msg":…}) or as
 * text, chosen once at start. The sandbox id travels in its own field so an
 * operator can grep one sandbox's history. Messages never carry request
 * bodies (they may hold secrets). */
#ifndef CB_DAEMON_LOG_H
#define CB_DAEMON_LOG_H

#include <stdbool.h>

#include "util.h"

enum cb_log_level { CB_LOG_DEBUG, CB_LOG_INFO, CB_LOG_WARN, CB_LOG_ERROR };

void cb_log_setup(bool json, enum cb_log_level min_level);
/* sandbox may be NULL. */
void cb_log(enum cb_log_level level, const char *sandbox, const char *fmt, ...)
    CB_PRINTF(3, 4);

#define cb_log_info(sb, ...) cb_log(CB_LOG_INFO, sb, __VA_ARGS__)
#define cb_log_warn(sb, ...) cb_log(CB_LOG_WARN, sb, __VA_ARGS__)
#define cb_log_error(sb, ...) cb_log(CB_LOG_ERROR, sb, __VA_ARGS__)
#define cb_log_debug(sb, ...) cb_log(CB_LOG_DEBUG, sb, __VA_ARGS__)

#endif
