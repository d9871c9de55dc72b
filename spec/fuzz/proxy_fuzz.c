/* proxy_fuzz.c — libFuzzer target for csrc/sip/proxy.c, the proxy's
 * surgery on requests and responses that arrive from the network: route
 * preprocessing (§16.4, strict-router undo), the loop hash and loop check
 * over every Via, the per-branch copy (Request-URI, Max-Forwards,
 * Record-Route, strict next hop) and the Via removal on responses.
 *   make fuzz            # runs every target for FUZZ_SECONDS
 * Input: one SIP message as it would arrive on a socket. */
#include "sip/proxy.h"

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_parser.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* "us" is 127.0.0.1:5060 and the alias example.com */
static int is_me(void *arg, url_t const *url)
{
  char const *p = url->url_port;
  (void)arg;
  if (!url->url_host)
    return 0;
  if (strcmp(url->url_host, "example.com") == 0)
    return 1;
  return strcmp(url->url_host, "127.0.0.1") == 0 && (!p || !*p || strcmp(p, "5060") == 0);
}

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  msg_t *msg = msg_make(sip_default_mclass(), 0, data, (ssize_t)size);
  sip_t *sip;
  char err[128], hash[17];
  if (!msg)
    return 0;
  sip = sip_object(msg);
  if (sip && sip->sip_request) {
    msg_t *copy;
    if (proxy_preprocess_routes(msg, sip, is_me, NULL) < 0)
      abort();
    proxy_loop_hash(sip, hash);
    if (strlen(hash) != 16)
      abort();
    (void)proxy_is_loop(sip, hash, is_me, NULL);
    copy = proxy_branch_request(msg, "sip:bob@192.0.2.1:5070;transport=tcp",
                                "<sip:127.0.0.1:5060;lr>", "X-Branch: 1\r\n", err, sizeof err);
    if (copy) {
      if (msg_serialize(copy, (msg_pub_t *)sip_object(copy)) < 0)
        ; /* a message sofia cannot encode again is refused, not a crash */
      msg_destroy(copy);
    }
    copy = proxy_branch_request(msg, NULL, NULL, NULL, err, sizeof err);
    msg_destroy(copy);
  } else if (sip && sip->sip_status) {
    (void)proxy_strip_via(msg);
  }
  msg_destroy(msg);
  return 0;
}
