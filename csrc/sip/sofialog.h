/* sofialog.h — capture sofia-sip's own log output. Module logs (nta, nua,
 * tport, ...) arrive as whole lines; tport's message dumps (TPTAG_LOG) are
 * reassembled into one trace record per SIP message. Pure C. */
#ifndef LUASIP_SIP_SOFIALOG_H
#define LUASIP_SIP_SOFIALOG_H

#include <stddef.h>

enum { SOFIALOG_LINE = 0, SOFIALOG_TRACE = 1 };

/* kind: SOFIALOG_LINE with source the module name ("nta", "tport", ...), or
 * SOFIALOG_TRACE with source "send"/"recv" and text = header line + message. */
typedef void sofialog_f(void *arg, int kind, char const *source,
                        char const *text, size_t len);

typedef struct sofialog sofialog_t;

/* Sofia's logs are process-wide, so one capture is active at a time;
 * a later one replaces the earlier. */
sofialog_t *sofialog_start(sofialog_f *cb, void *arg);
void sofialog_stop(sofialog_t *s);
/* Feed text as if sofia had logged it, on su_log_default (where message
 * dumps arrive) or on a module log. For tests and the fuzzer. */
void sofialog_feed(sofialog_t *s, int default_channel, char const *text, size_t len);

#endif
