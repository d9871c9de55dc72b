/* stun.c — public address discovery with sofia's STUN client; see stun.h. */
#include "sip/stun.h"

#include <sofia-sip/stun.h>
#include <sofia-sip/stun_tag.h>
#include <sofia-sip/su.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sip_stun {
  su_root_t *root;
  stun_handle_t *sh;
  su_socket_t sock;
  sip_stun_f *cb;
  void *arg;
  su_timer_t *later;  /* deferred report and teardown: never inside sofia's callback */
  int reported;
  int in_callback;
  int doomed;
  char addr[64];
  int port;
  char err[128];
};

static void teardown(sip_stun_t *q)
{
  if (q->sh) {
    stun_handle_destroy(q->sh);
    q->sh = NULL;
  }
  if (q->sock != INVALID_SOCKET) {
    close(q->sock);
    q->sock = INVALID_SOCKET;
  }
}

static void on_later(su_root_magic_t *rm, su_timer_t *t, su_timer_arg_t *arg)
{
  sip_stun_t *q = (sip_stun_t *)arg;
  (void)rm; (void)t;
  teardown(q);
  if (!q->reported) {
    q->reported = 1;
    q->in_callback = 1;
    q->cb(q->arg, q->addr[0] ? q->addr : NULL, q->port, q->err);
    q->in_callback = 0;
    if (q->doomed) {
      su_timer_destroy(q->later);
      free(q);
    }
  }
}

static void on_discovery(stun_discovery_magic_t *magic, stun_handle_t *sh,
                         stun_discovery_t *sd, stun_action_t action, stun_state_t event)
{
  sip_stun_t *q = (sip_stun_t *)magic;
  (void)sh; (void)action;
  if (q->reported || q->addr[0] || q->err[0])
    return;
  if (event == stun_discovery_done) {
    su_sockaddr_t su[1];
    socklen_t len = sizeof su;
    memset(su, 0, sizeof su);
    if (stun_discovery_get_address(sd, su, &len) == 0 && su->su_family == AF_INET) {
      inet_ntop(AF_INET, &su->su_sin.sin_addr, q->addr, sizeof q->addr);
      q->port = ntohs(su->su_sin.sin_port);
    } else {
      snprintf(q->err, sizeof q->err, "STUN answer without a usable mapped address");
    }
  } else if (event >= stun_error) {
    snprintf(q->err, sizeof q->err, "STUN: %s", stun_str_state(event));
  } else {
    return; /* progress */
  }
  su_timer_set_interval(q->later, on_later, (su_timer_arg_t *)q, 0);
}

sip_stun_t *sip_stun_query(su_root_t *root, char const *server, char const *local_host,
                           sip_stun_f *cb, void *arg, char *err, size_t errlen)
{
  sip_stun_t *q = calloc(1, sizeof *q);
  su_sockaddr_t su[1];
  if (!q) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  q->root = root;
  q->cb = cb;
  q->arg = arg;
  q->sock = INVALID_SOCKET;
  memset(su, 0, sizeof su);
  if (inet_pton(AF_INET, local_host, &su->su_sin.sin_addr) != 1) {
    snprintf(err, errlen, "STUN needs an IPv4 listen address, not %s", local_host);
    free(q);
    return NULL;
  }
  su->su_family = AF_INET;
  q->sock = su_socket(AF_INET, SOCK_DGRAM, 0);
  if (q->sock == INVALID_SOCKET || bind(q->sock, &su->su_sa, sizeof su->su_sin) != 0) {
    snprintf(err, errlen, "STUN: cannot bind a socket on %s", local_host);
    teardown(q);
    free(q);
    return NULL;
  }
  su_setblocking(q->sock, 0);
  q->later = su_timer_create(su_root_task(root), 0);
  q->sh = stun_handle_init(root, STUNTAG_SERVER(server), TAG_END());
  if (!q->later || !q->sh ||
      stun_bind(q->sh, on_discovery, (stun_discovery_magic_t *)q,
                STUNTAG_SOCKET(q->sock), STUNTAG_REGISTER_EVENTS(1), TAG_END()) < 0) {
    snprintf(err, errlen, "STUN: cannot query %s", server);
    teardown(q);
    if (q->later)
      su_timer_destroy(q->later);
    free(q);
    return NULL;
  }
  return q;
}

void sip_stun_destroy(sip_stun_t *q)
{
  if (!q || q->doomed)
    return;
  q->doomed = 1;
  q->reported = 1;
  if (q->in_callback)
    return; /* on_later frees it when the callback returns */
  /* Not inside sofia's stun callback (that one never calls out): the
   * handle can go now. */
  teardown(q);
  su_timer_destroy(q->later);
  free(q);
}
