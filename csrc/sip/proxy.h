/* proxy.h — the message surgery of an RFC 3261 §16 proxy: route
 * preprocessing, loop detection, the per-branch copy of a request (Request-URI,
 * Max-Forwards, Record-Route, strict routes) and the Via removal on
 * responses. Pure C over sofia's msg/sip structures; no transactions here. */
#ifndef LUASIP_SIP_PROXY_H
#define LUASIP_SIP_PROXY_H

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/url.h>

/* Is this URI (host and port) one of ours? */
typedef int proxy_is_me_f(void *arg, url_t const *url);

enum { PROXY_DEFAULT_MAX_FORWARDS = 70 };

/* §16.4: undo a strict router's rewrite (a Request-URI of ours that we put
 * in a Record-Route: the real target is the last Route), then drop the top
 * Route when it is ours. Returns 1 when a Route of ours was consumed (the
 * request follows a route this proxy recorded), 0 when not, -1 on memory
 * failure. */
int proxy_preprocess_routes(msg_t *msg, sip_t *sip, proxy_is_me_f *is_me, void *arg);

/* The loop-detection part of our branch parameters (§16.6 step 8): a hash
 * of what a looping request keeps and a spiralling one changes: the
 * Request-URI as received, From and To tags, Call-ID, CSeq number,
 * Proxy-Require and Proxy-Authorization. out gets 16 hex digits. */
void proxy_loop_hash(sip_t const *sip, char out[17]);

/* §16.3 step 4: 1 if a Via of ours carries this request's loop hash (it
 * has been here before with the same target: a loop, not a spiral). */
int proxy_is_loop(sip_t const *sip, char const *hash, proxy_is_me_f *is_me, void *arg);

/* A copy of the request msg to forward to one target (§16.6): Request-URI
 * set to target (NULL keeps it), Max-Forwards decremented (70 when absent),
 * a Record-Route (NULL for none) added on top, extra header lines
 * ("Name: value\r\n...", may be NULL) added, and a strict next hop
 * rewritten per §16.6 step 7 / §16.12. NULL with err filled on failure. */
msg_t *proxy_branch_request(msg_t *orig, char const *target, char const *record_route,
                            char const *headers, char *err, size_t errlen);

/* Headers added to a parsed message with sip_add_tl(SIPTAG_HEADER_STR())
 * (luasip.message add_header/set_header) go to the end of its fragment
 * chain, after the body, and would be sent as part of it: move every header
 * found after the body back above it. Returns how many moved, -1 on memory
 * failure. proxy_branch_request() does it on its copy, last. */
int proxy_order_chain(msg_t *msg);

/* Remove the top Via of a response (ours) before it goes upstream.
 * Returns 0, or -1 when there is no Via left to send it to. */
int proxy_strip_via(msg_t *response);

#endif
