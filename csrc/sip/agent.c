/* agent.c — a SIP transaction agent (nta) on one address and several
 * transports, configured as a proxy (RFC 3261 §16): requests go to the
 * application; what needs no application (a URI scheme we do not serve,
 * Proxy-Require, OPTIONS when asked to, responses to stateless forwards)
 * is handled here. */
#include "agent.h"
#include "proxy.h"

#include <sofia-sip/nta.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/tport.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/url.h>

#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sip_agent {
  su_root_t *root;
  nta_agent_t *nta;
  sip_agent_request_f *cb;
  void *arg;
  char *user_agent;
  char *allow;      /* OPTIONS answered in C with this Allow, or NULL */
  char **aliases;
  char host[64];    /* the bound address, IPv6 without brackets */
  int port;
  int in_callback;  /* inside a->cb, called from nta's receive path */
  int doomed;       /* 1: destroyed during a callback; 2: reaper scheduled */
};

static void free_aliases(char **aliases)
{
  for (int i = 0; aliases && aliases[i]; i++)
    free(aliases[i]);
  free(aliases);
}

static void agent_free(sip_agent_t *a)
{
  nta_agent_destroy(a->nta);
  free(a->user_agent);
  free(a->allow);
  free_aliases(a->aliases);
  free(a);
}

static void agent_reap(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
  (void)m;
  su_timer_destroy(t);
  agent_free(arg);
}

#define SIP_AGENT_UDP_RMEM (4u << 20)
#ifndef SIP_AGENT_PRELOAD
#define SIP_AGENT_PRELOAD 2048
#endif

/* nta_agent_create() binds no transport when given this as its URL. */
#define NO_TRANSPORTS ((url_string_t const *)(intptr_t)-1)

/* RFC 3261 §16.3 step 5: a proxy supports no Proxy-Require extension. */
static int unsupported_proxy_require(sip_t const *sip)
{
  sip_method_t m = sip->sip_request->rq_method;
  return sip->sip_proxy_require && m != sip_method_ack && m != sip_method_cancel;
}

/* A response that matched no client transaction: one to a request we
 * forwarded statelessly, or a 2xx retransmission after its transaction
 * ended (§16.7 step 10, §17.1.1.2). If the top Via is ours, it goes
 * upstream statelessly; anything else is discarded (§18.1.2).
 *
 * Except a final non-2xx to an INVITE: we never forward an INVITE
 * statelessly, so it belongs to a branch of ours that is gone. That is
 * what a CANCELled branch over TCP sends: nta ends such a client
 * transaction as soon as the CANCEL is out (outgoing_complete on a reliable
 * transport), so its 487 arrives here. Forwarded, it would end the
 * caller's transaction while the script tries another target (voicemail
 * after a ring timeout). */
static void forward_stray_response(sip_agent_t *a, msg_t *msg, sip_t *sip)
{
  url_t url[1];
  if (!sip->sip_via || (sip->sip_status && sip->sip_status->st_status >= 300 && sip->sip_cseq &&
                        sip->sip_cseq->cs_method == sip_method_invite)) {
    msg_destroy(msg);
    return;
  }
  url_init(url, url_sip);
  url->url_host = sip->sip_via->v_host;
  url->url_port = sip->sip_via->v_port;
  if (!sip_agent_is_me(a, url) || !sip->sip_via->v_next) {
    msg_destroy(msg);
    return;
  }
  nta_msg_tsend(a->nta, msg, NULL, TAG_END()); /* removes our Via */
}

static int agent_request(nta_agent_magic_t *magic, nta_agent_t *nta,
                         msg_t *msg, sip_t *sip)
{
  sip_agent_t *a = (sip_agent_t *)magic;
  sip_method_t method;
  url_t const *ruri;

  if (!sip->sip_request) {
    forward_stray_response(a, msg, sip);
    return 0;
  }
  method = sip->sip_request->rq_method;
  ruri = sip->sip_request->rq_url;

  if (ruri->url_type != url_sip && ruri->url_type != url_sips &&
      ruri->url_type != url_tel) {
    if (method == sip_method_ack)
      msg_destroy(msg);
    else
      nta_msg_treply(nta, msg, SIP_416_UNSUPPORTED_URI, TAG_END());
  } else if (unsupported_proxy_require(sip)) {
    nta_msg_treply(nta, msg, SIP_420_BAD_EXTENSION,
                   SIPTAG_UNSUPPORTED(sip->sip_proxy_require), TAG_END());
  } else if (method == sip_method_options && (a->allow || !a->cb) &&
             !sip->sip_route && !(sip->sip_to && sip->sip_to->a_tag)) {
    if (sip->sip_require) /* §8.2.2.3: we support no extension here */
      nta_msg_treply(nta, msg, SIP_420_BAD_EXTENSION,
                     SIPTAG_UNSUPPORTED(sip->sip_require), TAG_END());
    else
    nta_msg_treply(nta, msg, SIP_200_OK,
                   SIPTAG_ALLOW_STR(a->allow ? a->allow : "OPTIONS"),
                   SIPTAG_ACCEPT_STR("application/sdp"),
                   TAG_IF(a->user_agent, SIPTAG_SERVER_STR(a->user_agent)),
                   TAG_END());
  } else if (!a->cb || a->doomed) {
    if (method == sip_method_ack)
      msg_destroy(msg);
    else
      nta_msg_treply(nta, msg, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
  } else {
    sip_agent_enter(a);
    a->cb(a->arg, msg, sip);
    sip_agent_leave(a);
  }
  return 0;
}

void sip_agent_enter(sip_agent_t *a)
{
  a->in_callback++;
}

void sip_agent_leave(sip_agent_t *a)
{
  if (--a->in_callback == 0 && a->doomed == 1) {
    /* nta still uses the agent after this returns: free it on the next
     * turn (once, however many callbacks come before then). If no timer
     * can be had, leak it rather than crash. */
    su_timer_t *t = su_timer_create(su_root_task(a->root), 0);
    a->doomed = 2;
    if (t && su_timer_set_interval(t, agent_reap, a, 0) < 0)
      su_timer_destroy(t);
  }
}

static int tport_bound_port(nta_agent_t *nta)
{
  tport_t *tp = tport_primaries(nta_agent_tports(nta));
  return tp ? atoi(tport_name(tp)->tpn_port) : 0;
}

/* Bind every transport on cfg->host:port. Sofia crashes on a URI with a
 * comma-separated transport list, so each is added on its own. */
static int bind_all(sip_agent_t *a, sip_agent_config_t const *cfg, int port,
                    char *err, size_t errlen)
{
  int v6 = strchr(cfg->host, ':') != NULL;
  for (int i = 0; cfg->transports[i]; i++) {
    char url[256];
    snprintf(url, sizeof url, "sip:%s%s%s:%d;transport=%s", v6 ? "[" : "",
             cfg->host, v6 ? "]" : "", port, cfg->transports[i]);
    /* A 4 MiB UDP receive buffer (the kernel caps it at net.core.rmem_max
     * unless we may force it) rides out a burst or a slow handler instead
     * of dropping requests; the default 208 KiB holds ~300 REGISTERs. */
    if (nta_agent_add_tport(a->nta, (url_string_t const *)url,
                            TPTAG_UDP_RMEM(SIP_AGENT_UDP_RMEM),
                            TPTAG_UDP_WMEM(SIP_AGENT_UDP_RMEM), TAG_END()) < 0) {
      snprintf(err, errlen, "cannot listen on %s/%s:%d: %s", cfg->transports[i],
               cfg->host, port, strerror(errno ? errno : EADDRINUSE));
      return -1;
    }
    if (port == 0)
      port = tport_bound_port(a->nta);
  }
  a->port = port;
  snprintf(a->host, sizeof a->host, "%s", cfg->host);
  return 0;
}

sip_agent_t *sip_agent_create(su_root_t *root, sip_agent_config_t const *cfg,
                              sip_agent_request_f *cb, void *arg,
                              char *err, size_t errlen)
{
  sip_agent_t *a = calloc(1, sizeof *a);
  /* With port 0 the first transport picks a free port and the others must
   * get the same one, which another process may hold: retry a few times. */
  int attempts = cfg->port == 0 ? 16 : 1;

  if (!a) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  a->root = root;
  a->cb = cb;
  a->arg = arg;
  if (cfg->user_agent)
    a->user_agent = strdup(cfg->user_agent);
  if (cfg->aliases) {
    int n = 0;
    while (cfg->aliases[n])
      n++;
    a->aliases = calloc((size_t)n + 1, sizeof *a->aliases);
    for (int i = 0; a->aliases && i < n; i++)
      a->aliases[i] = strdup(cfg->aliases[i]);
  }

  while (attempts-- > 0) {
    a->nta = nta_agent_create(root, NO_TRANSPORTS, agent_request, (nta_agent_magic_t *)a,
                              NTATAG_MAXSIZE(cfg->max_size),
                              NTATAG_UA(0),           /* a proxy: 2xx pass through */
                              NTATAG_CANCEL_487(0),   /* CANCEL goes to the branches */
                              NTATAG_MERGE_482(0),    /* merging is for UASes (§8.2.2.2) */
                              NTATAG_PASS_100(0),
                              NTATAG_PRELOAD(SIP_AGENT_PRELOAD),
                              NTATAG_SERVER_RPORT(1),
                              NTATAG_CLIENT_RPORT(1),
                              TAG_END());
    if (!a->nta) {
      snprintf(err, errlen, "cannot create the SIP agent: %s", strerror(errno));
      break;
    }
    if (bind_all(a, cfg, cfg->port, err, errlen) == 0) {
      /* TPTAG_LOG given to nta_agent_create() does not reach the tport
       * master; set it on the bound transports. */
      if (cfg->trace)
        sip_agent_set_trace(a, 1);
      /* An idle TCP connection closes after 2 min, like Kamailio's
       * tcp_connection_lifetime. tport stops reading a connection that
       * sent garbage and never sees its FIN: this bounds those too. */
      tport_set_params(nta_agent_tports(a->nta), TPTAG_IDLE(120000), TAG_END());
      return a;
    }
    nta_agent_destroy(a->nta);
    a->nta = NULL;
  }
  free(a->user_agent);
  free_aliases(a->aliases);
  free(a);
  return NULL;
}

void sip_agent_destroy(sip_agent_t *a)
{
  if (!a || a->doomed)
    return;
  if (a->in_callback) {
    /* The application closed us from our own callback. */
    a->doomed = 1;
    a->cb = NULL;
    return;
  }
  agent_free(a);
}

int sip_agent_port(sip_agent_t const *a) { return a->port; }

int sip_agent_addresses(sip_agent_t const *a, char out[][96], int max)
{
  int n = 0;
  for (tport_t *tp = tport_primaries(nta_agent_tports(a->nta)); tp && n < max;
       tp = tport_next(tp)) {
    tp_name_t const *name = tport_name(tp);
    /* sofia keeps IPv6 hosts in brackets already */
    int v6 = strchr(name->tpn_host, ':') != NULL && name->tpn_host[0] != '[';
    snprintf(out[n++], 96, "%s/%s%s%s:%s", name->tpn_proto, v6 ? "[" : "",
             name->tpn_host, v6 ? "]" : "", name->tpn_port);
  }
  return n;
}

int sip_agent_set_trace(sip_agent_t *a, int on)
{
  return tport_set_params(nta_agent_tports(a->nta), TPTAG_LOG(on != 0), TAG_END());
}

void sip_agent_answer_options(sip_agent_t *a, int on, char const *allow)
{
  free(a->allow);
  a->allow = on ? strdup(allow ? allow : "OPTIONS") : NULL;
}

nta_agent_t *sip_agent_nta(sip_agent_t const *a) { return a->nta; }
char const *sip_agent_user_agent(sip_agent_t const *a) { return a->user_agent; }

/* Compare hosts ignoring IPv6 brackets and case. */
static int host_is(char const *h, char const *mine)
{
  size_t hl = strlen(h), ml = strlen(mine);
  if (hl >= 2 && h[0] == '[')
    h++, hl -= 2;
  if (ml >= 2 && mine[0] == '[')
    mine++, ml -= 2;
  return hl == ml && su_casenmatch(h, mine, hl);
}

int sip_agent_is_me(void *agent, url_t const *url)
{
  sip_agent_t const *a = agent;
  char const *p = url->url_port;
  int port = p && *p ? atoi(p) : (url->url_type == url_sips ? 5061 : 5060);
  if (!url->url_host)
    return 0;
  if (host_is(url->url_host, a->host))
    return port == a->port;
  for (int i = 0; a->aliases && a->aliases[i]; i++)
    if (host_is(url->url_host, a->aliases[i]))
      return !(p && *p) || port == a->port;
  return 0;
}
