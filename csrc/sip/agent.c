/* agent.c — a SIP transaction agent (nta) on one address and several
 * transports. It answers OPTIONS (RFC 3261 §11) statelessly and tells the
 * application what it answered; every other method gets 501 until the
 * server roles take over. */
#include "agent.h"

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
  int port;
  int in_callback;  /* inside a->cb, called from nta's receive path */
  int doomed;       /* 1: destroyed during a callback; 2: reaper scheduled */
};

static void agent_free(sip_agent_t *a)
{
  nta_agent_destroy(a->nta);
  free(a->user_agent);
  free(a);
}

static void agent_reap(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
  (void)m;
  su_timer_destroy(t);
  agent_free(arg);
}

/* nta_agent_create() binds no transport when given this as its URL. */
#define NO_TRANSPORTS ((url_string_t const *)(intptr_t)-1)

#define ALLOWED "OPTIONS"
#define ACCEPTED "application/sdp"

/* RFC 3261 §8.2.2.3: this agent supports no extensions, so any Require
 * (outside ACK and CANCEL, which never carry it meaningfully) gets 420. */
static int unsupported_require(sip_t const *sip)
{
  sip_method_t m = sip->sip_request->rq_method;
  return sip->sip_require && m != sip_method_ack && m != sip_method_cancel;
}

/* Fill info from the request, copying every string into home: the reply
 * consumes msg, and with it the method name of an unknown method. */
static void describe_request(su_home_t *home, msg_t *msg, sip_t const *sip,
                             sip_request_info_t *info)
{
  su_sockaddr_t const *src = msg_addr(msg);
  char addr[SU_ADDRSIZE] = "";
  memset(info, 0, sizeof *info);
  info->method = su_strdup(home, sip->sip_request->rq_method_name);
  info->request_uri = url_as_string(home, sip->sip_request->rq_url);
  info->from = sip->sip_from ? url_as_string(home, sip->sip_from->a_url) : NULL;
  info->call_id = su_strdup(home, sip->sip_call_id ? sip->sip_call_id->i_id : "");
  info->cseq = sip->sip_cseq ? sip->sip_cseq->cs_seq : 0;
  info->transport = msg_addrinfo(msg)->ai_protocol == IPPROTO_UDP ? "udp" : "tcp";
  if (src) {
    su_inet_ntop(src->su_family, SU_ADDR(src), addr, sizeof addr);
    info->src_port = ntohs(src->su_port);
  }
  info->src_addr = su_strdup(home, addr);
  if (!info->method || !info->request_uri || !info->call_id || !info->src_addr)
    info->method = NULL; /* out of memory: do not report */
  if (!info->from)
    info->from = "";
}

static int agent_request(nta_agent_magic_t *magic, nta_agent_t *nta,
                         msg_t *msg, sip_t *sip)
{
  sip_agent_t *a = (sip_agent_t *)magic;
  su_home_t home[1] = { SU_HOME_INIT(home) };
  sip_request_info_t info;
  sip_method_t method;
  url_t const *ruri;

  /* nta also hands over responses that match no client transaction (RFC
   * 3261 §17.1.3: discard them), and stray ACKs have nothing to answer. */
  if (!sip->sip_request || sip->sip_request->rq_method == sip_method_ack) {
    msg_destroy(msg);
    return 0;
  }
  method = sip->sip_request->rq_method;
  ruri = sip->sip_request->rq_url;
  memset(&info, 0, sizeof info);
  if (a->cb)
    describe_request(home, msg, sip, &info);

  if (ruri->url_type != url_sip && ruri->url_type != url_sips &&
      ruri->url_type != url_tel) {
    info.status = 416;
    nta_msg_treply(nta, msg, SIP_416_UNSUPPORTED_URI, TAG_END());
  } else if (unsupported_require(sip)) {
    info.status = 420;
    nta_msg_treply(nta, msg, SIP_420_BAD_EXTENSION,
                   SIPTAG_UNSUPPORTED(sip->sip_require), TAG_END());
  } else if (method == sip_method_options) {
    info.status = 200;
    nta_msg_treply(nta, msg, SIP_200_OK,
                   SIPTAG_ALLOW_STR(ALLOWED), SIPTAG_ACCEPT_STR(ACCEPTED),
                   TAG_IF(a->user_agent, SIPTAG_SERVER_STR(a->user_agent)),
                   TAG_END());
  } else {
    info.status = 501;
    nta_msg_treply(nta, msg, SIP_501_NOT_IMPLEMENTED,
                   SIPTAG_ALLOW_STR(ALLOWED), TAG_END());
  }
  /* msg and sip are gone now; info points into home */
  if (a->cb && info.method) {
    a->in_callback++;
    a->cb(a->arg, &info);
    a->in_callback--;
  }
  su_home_deinit(home);
  if (a->doomed == 1 && !a->in_callback) {
    /* nta still uses the agent after this returns: free it on the next
     * turn (once, however many requests arrive before then). If no timer
     * can be had, leak it rather than crash. */
    su_timer_t *t = su_timer_create(su_root_task(a->root), 0);
    a->doomed = 2;
    if (t && su_timer_set_interval(t, agent_reap, a, 0) < 0)
      su_timer_destroy(t);
  }
  return 0;
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
    if (nta_agent_add_tport(a->nta, (url_string_t const *)url, TAG_END()) < 0) {
      snprintf(err, errlen, "cannot listen on %s/%s:%d: %s", cfg->transports[i],
               cfg->host, port, strerror(errno ? errno : EADDRINUSE));
      return -1;
    }
    if (port == 0)
      port = tport_bound_port(a->nta);
  }
  a->port = port;
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

  while (attempts-- > 0) {
    a->nta = nta_agent_create(root, NO_TRANSPORTS, agent_request, (nta_agent_magic_t *)a,
                              NTATAG_MAXSIZE(cfg->max_size),
                              NTATAG_SERVER_RPORT(1),
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
      return a;
    }
    nta_agent_destroy(a->nta);
    a->nta = NULL;
  }
  free(a->user_agent);
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
