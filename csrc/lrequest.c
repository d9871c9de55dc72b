/* lrequest.c — the server side's Lua objects over nta (lua/luasip/server.lua
 * builds the routing API on them):
 *
 *   luasip.request  one incoming request: its message, an optional server
 *                   transaction (made on demand: REGISTER and other
 *                   requests answered at once stay stateless; an INVITE
 *                   gets one at its first response, so that nta absorbs
 *                   the ACK of a non-2xx), replies,
 *                   stateless forwarding and relaying of branch responses.
 *   luasip.branch   one client transaction forwarding the request to one
 *                   target (a stateful proxy's branch, RFC 3261 §16.6).
 *
 * Both are anchored while nta can call back into them (a server
 * transaction waiting for its final response, a branch waiting for its
 * final response); every request and branch of an agent is closed before
 * the agent itself goes. */
#include "lcore.h"
#include "lsiptags.h"
#include "sip/agent.h"
#include "sip/proxy.h"

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/tport.h>

#include <stdio.h>
#include <string.h>

#define REQUEST_CLASS "luasip.request"
#define BRANCH_CLASS "luasip.branch"

static lsip_classref req_class = LSIP_CLASSREF(REQUEST_CLASS);
static lsip_classref branch_class = LSIP_CLASSREF(BRANCH_CLASS);

/* What requests and branches share, so an agent can find its own. */
typedef struct {
  lsip_obj obj;
  sip_agent_t *agent;
} lserver_obj;

typedef struct {
  lserver_obj s;
  msg_t *msg;
  tport_t *tport;   /* the transport it came on (a reference), or NULL */
  nta_incoming_t *irq;
  int final;        /* final status sent upstream, 0 before */
  int routed;       /* a Route of ours was consumed on arrival */
  unsigned branches;
  char hash[17];    /* loop-detection hash, "" until computed */
} lreq;

typedef struct {
  lserver_obj s;
  nta_outgoing_t *orq;
  int invite;
  int status;       /* last status received */
} lbranch;

/* Forget the Lua callback once C will not call it again: the closures
 * proxy.lua gives (cancel, branch responses) hold the request and its
 * branches, so a registry reference kept until close() would keep them all
 * alive until the server closes. */
static void drop_callback(lsip_obj *o)
{
  if (o->fn_ref == LUA_NOREF)
    return;
  if (!o->ctx->closing)
    luaL_unref(o->ctx->L, LUA_REGISTRYINDEX, o->fn_ref);
  o->fn_ref = LUA_NOREF;
}

/* Push the callback and the object for a call from C: returns the number
 * of arguments pushed (the object, nil if unanchored), or -1 with nothing
 * pushed when there is no callback. */
static int push_callback(lsip_obj *o)
{
  int n = lsip_obj_push_call(o);
  if (n == 1) {
    lua_pushnil(o->ctx->L);
    n = 2;
  }
  return n > 0 ? n - 1 : -1;
}

/* ---- requests ------------------------------------------------------------ */

static void req_release(lsip_obj *o)
{
  lreq *r = (lreq *)o;
  if (r->irq) {
    /* Never answered: nta would keep it waiting; a 500 ends it cleanly. */
    if (!r->final && !o->ctx->closing)
      nta_incoming_treply(r->irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
    nta_incoming_destroy(r->irq);
    r->irq = NULL;
  }
  if (r->msg) {
    msg_destroy(r->msg);
    r->msg = NULL;
  }
  if (r->tport) {
    tport_unref(r->tport);
    r->tport = NULL;
  }
}

/* Push a new luasip.request owning msg. The caller has checked sip. */
void lsip_push_request(lua_State *L, lsip_ctx *ctx, sip_agent_t *agent, msg_t *msg)
{
  lreq *r = compat_newuserdata(L, sizeof *r);
  sip_t *sip = sip_object(msg);
  memset(r, 0, sizeof *r);
  r->s.agent = agent;
  r->msg = msg;
  /* Known now, during the delivery, and no longer after it: a server
   * transaction made later needs it (without one, nta's reply would
   * borrow a transport without a reference and later drop one it never
   * took, freeing the listening transport). */
  r->tport = tport_delivered_by(nta_agent_tports(sip_agent_nta(agent)), msg);
  if (r->tport)
    r->tport = tport_ref(r->tport);
  r->routed = proxy_preprocess_routes(msg, sip, sip_agent_is_me, agent) > 0;
  lsip_setclass(L, &req_class);
  lsip_obj_init(ctx, &r->s.obj, LSIP_REQUESTS, req_release);
}

static lreq *check_req(lua_State *L)
{
  lreq *r = lsip_checkclass(L, 1, &req_class);
  if (!r->msg)
    luaL_error(L, "luasip.request: used after its server closed");
  return r;
}

/* r:message() -> luasip.message over the same msg (it sees later changes) */
static int req_message(lua_State *L)
{
  lsip_push_msg(L, check_req(L)->msg);
  return 1;
}

static void finished(lreq *r, int status)
{
  if (status < 200 || r->final)
    return;
  r->final = status;
  if (r->irq) {
    /* nta keeps the transaction for retransmissions and ACK on its own */
    nta_incoming_destroy(r->irq);
    r->irq = NULL;
  }
  drop_callback(&r->s.obj);
  lsip_obj_unanchor(&r->s.obj);
}

static int make_transaction(lua_State *L, lreq *r, int idx);

/* r:reply(status, reason, headers_string, body, content_type, to_tag)
 *   -> true | nil, err. to_tag: the To tag of a response that makes a
 * dialog (a SUBSCRIBE's 2xx); the request gets a server transaction, so
 * the retransmissions of the request get the same answer. */
static int req_reply(lua_State *L)
{
  lreq *r = check_req(L);
  int status = (int)luaL_checkinteger(L, 2);
  char const *reason = luaL_optstring(L, 3, NULL);
  char const *headers = luaL_optstring(L, 4, NULL);
  size_t blen = 0;
  char const *body = luaL_optlstring(L, 5, NULL, &blen);
  char const *ctype = luaL_optstring(L, 6, NULL);
  char const *to_tag = luaL_optstring(L, 7, NULL);
  char const *server = sip_agent_user_agent(r->s.agent);
  sip_t *sip = sip_object(r->msg);
  sip_payload_t pl[1]; /* the body, copied by sofia into the response */
  int rc;

  sip_payload_init(pl);
  pl->pl_data = (char *)body;
  pl->pl_len = (usize_t)blen;
  if (status < 100 || status > 699)
    return luaL_error(L, "luasip.request: status must be 100..699");
  if (!reason)
    reason = sip_status_phrase(status);
  if (!reason)
    reason = status < 200 ? "Session Progress" : status < 300 ? "OK" : "Failed";
  if (r->final)
    return lsip_fail(L, "a final response was already sent", "EALREADY");
  if (sip->sip_request->rq_method == sip_method_ack)
    return lsip_fail(L, "ACK gets no response", "EINVAL");
  /* An INVITE is answered through a server transaction (§17.2.1): nta
   * absorbs the retransmissions and the ACK of a non-2xx final response,
   * which would otherwise reach the handlers as a new request (and be
   * proxied on by a catch-all one). */
  if (!r->irq && (to_tag || sip->sip_request->rq_method == sip_method_invite))
    make_transaction(L, r, 1);
  if (to_tag && (!r->irq || !nta_incoming_tag(r->irq, to_tag)))
    return lsip_fail(L, "cannot set the To tag", "EINVAL");
  if (r->irq) {
    rc = nta_incoming_treply(r->irq, status, reason,
                             TAG_IF(server, SIPTAG_SERVER_STR(server)),
                             TAG_IF(headers && *headers, SIPTAG_HEADER_STR(headers)),
                             TAG_IF(ctype, SIPTAG_CONTENT_TYPE_STR(ctype)),
                             TAG_IF(body, SIPTAG_PAYLOAD(pl)),
                             TAG_END());
  } else {
    rc = nta_msg_treply(sip_agent_nta(r->s.agent), msg_ref_create(r->msg), status, reason,
                        TAG_IF(server, SIPTAG_SERVER_STR(server)),
                        TAG_IF(headers && *headers, SIPTAG_HEADER_STR(headers)),
                        TAG_IF(ctype, SIPTAG_CONTENT_TYPE_STR(ctype)),
                        TAG_IF(body, SIPTAG_PAYLOAD(pl)),
                        TAG_END());
  }
  if (rc < 0)
    return lsip_fail(L, "the response could not be sent", "EIO");
  finished(r, status);
  lua_pushboolean(L, 1);
  return 1;
}

static int req_cancelled(nta_incoming_magic_t *magic, nta_incoming_t *irq, sip_t const *sip)
{
  lreq *r = (lreq *)magic;
  (void)irq;
  if (!sip) /* the transaction timed out in nta */
    return 0;
  if (sip->sip_request && sip->sip_request->rq_method == sip_method_cancel) {
    int n = push_callback(&r->s.obj);
    if (n > 0) {
      lua_pushstring(r->s.obj.ctx->L, "cancel");
      lsip_pcall(r->s.obj.ctx, n + 1, 0);
    }
  }
  return 200; /* nta answered the CANCEL already, before this call */
}

/* Create the server transaction of request r (the userdata at idx). */
static int make_transaction(lua_State *L, lreq *r, int idx)
{
  sip_t *sip = sip_object(r->msg);
  r->irq = nta_incoming_create(sip_agent_nta(r->s.agent), NULL, msg_ref_create(r->msg), sip,
                               TAG_IF(r->tport, NTATAG_TPORT(r->tport)), TAG_END());
  if (!r->irq)
    return -1;
  if (sip->sip_request->rq_method != sip_method_cancel)
    nta_incoming_bind(r->irq, req_cancelled, (nta_incoming_magic_t *)r);
  lsip_obj_anchor(L, &r->s.obj, idx);
  return 0;
}

/* r:transaction(on_event) — make the request stateful: retransmissions
 * are absorbed from now on, and on_event(r, "cancel") runs when the
 * upstream client CANCELs it. Idempotent. */
static int req_transaction(lua_State *L)
{
  lreq *r = check_req(L);
  sip_t *sip = sip_object(r->msg);
  if (r->irq || r->final) {
    if (r->irq && lua_isfunction(L, 2))
      lsip_obj_set_fn(L, &r->s.obj, 2);
    lua_pushboolean(L, r->irq != NULL);
    return 1;
  }
  if (sip->sip_request->rq_method == sip_method_ack)
    return lsip_fail(L, "ACK has no transaction", "EINVAL");
  if (make_transaction(L, r, 1) < 0)
    return lsip_fail(L, "cannot create the server transaction", "ENOMEM");
  if (lua_isfunction(L, 2))
    lsip_obj_set_fn(L, &r->s.obj, 2);
  lua_pushboolean(L, 1);
  return 1;
}

/* r:loop() -> true when this request has been here with the same target
 * (§16.3 step 4); computes the hash our branches carry. */
static int req_loop(lua_State *L)
{
  lreq *r = check_req(L);
  sip_t *sip = sip_object(r->msg);
  if (!r->hash[0])
    proxy_loop_hash(sip, r->hash);
  lua_pushboolean(L, proxy_is_loop(sip, r->hash, sip_agent_is_me, r->s.agent));
  return 1;
}

/* r:max_forwards() -> count, or nil when absent */
static int req_max_forwards(lua_State *L)
{
  sip_t *sip = sip_object(check_req(L)->msg);
  if (sip->sip_max_forwards)
    lua_pushinteger(L, (lua_Integer)sip->sip_max_forwards->mf_count);
  else
    lua_pushnil(L);
  return 1;
}

static int req_info(lua_State *L)
{
  lreq *r = check_req(L);
  lua_pushinteger(L, r->final);
  lua_pushboolean(L, r->routed);
  lua_pushboolean(L, r->irq != NULL);
  return 3;
}

/* r:set_uri(uri) — rewrite the Request-URI */
static int req_set_uri(lua_State *L)
{
  lreq *r = check_req(L);
  sip_t *sip = sip_object(r->msg);
  char const *uri = luaL_checkstring(L, 2);
  su_home_t *home = msg_home(r->msg);
  url_t *url = url_make(home, uri);
  sip_request_t *rq;
  if (!url || url->url_type == url_invalid || url->url_type == url_unknown)
    return luaL_error(L, "luasip.request: bad URI '%s'", uri);
  /* The loop hash is of the Request-URI as received (§16.6 step 8): fix it
   * now, or a request rewritten here and relayed back to us (a spiral)
   * would carry the hash of its new URI and look like a loop on return. */
  if (!r->hash[0])
    proxy_loop_hash(sip, r->hash);
  rq = sip_request_create(home, sip->sip_request->rq_method, sip->sip_request->rq_method_name,
                          (url_string_t *)url, NULL);
  if (!rq || msg_header_replace(r->msg, (msg_pub_t *)sip, (msg_header_t *)sip->sip_request,
                                (msg_header_t *)rq) < 0)
    return luaL_error(L, "luasip.request: out of memory");
  lua_pushboolean(L, 1);
  return 1;
}

/* The stateless forward: r:forward(target|nil, record_route|nil, headers|nil, next_hop|nil) */
static int req_forward(lua_State *L)
{
  lreq *r = check_req(L);
  char const *target = luaL_optstring(L, 2, NULL);
  char const *rr = luaL_optstring(L, 3, NULL);
  char const *headers = luaL_optstring(L, 4, NULL);
  char const *hop = luaL_optstring(L, 5, NULL);
  char err[128];
  msg_t *copy = proxy_branch_request(r->msg, target, rr, headers, err, sizeof err);
  if (!copy)
    return lsip_fail(L, err, "EINVAL");
  if (nta_msg_tsend(sip_agent_nta(r->s.agent), copy, (url_string_t const *)hop, TAG_END()) < 0)
    return lsip_fail(L, "cannot forward the request", "EIO");
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- branches ------------------------------------------------------------ */

static void branch_release(lsip_obj *o)
{
  lbranch *b = (lbranch *)o;
  if (b->orq) {
    nta_outgoing_destroy(b->orq);
    b->orq = NULL;
  }
}

static int branch_response(nta_outgoing_magic_t *magic, nta_outgoing_t *orq, sip_t const *sip)
{
  lbranch *b = (lbranch *)magic;
  lsip_ctx *ctx = b->s.obj.ctx;
  int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
  int final = status >= 200;
  int n;
  sip_agent_t *agent = b->s.agent;
  b->status = status;
  sip_agent_enter(agent); /* the callback may close the server */
  n = push_callback(&b->s.obj);
  if (n > 0) {
    lua_pushinteger(ctx->L, status);
    if (sip) {
      msg_t *resp = nta_outgoing_getresponse(orq); /* a new reference */
      lsip_push_msg(ctx->L, resp);
      msg_destroy(resp);
    } else {
      lua_pushnil(ctx->L);
    }
    lsip_pcall(ctx, n + 2, 0);
  }
  if (final && b->orq) {
    /* Later 2xx from other forks arrive as stray responses and go
     * upstream statelessly (agent.c). */
    nta_outgoing_destroy(b->orq);
    b->orq = NULL;
    drop_callback(&b->s.obj);
    lsip_obj_unanchor(&b->s.obj);
  }
  sip_agent_leave(agent);
  return 0;
}

static int send_branch(lua_State *L, lsip_ctx *ctx, sip_agent_t *agent, msg_t *msg,
                       char const *hop, char const *key, int fn_idx);

/* r:branch(target|nil, record_route|nil, headers|nil, next_hop|nil, fn)
 *   -> branch | nil, err. fn(branch, status, response|nil) runs for every
 * response but 100; status 408/503 with no response when nta gives up. */
static int req_branch(lua_State *L)
{
  lreq *r = check_req(L);
  char const *target = luaL_optstring(L, 2, NULL);
  char const *rr = luaL_optstring(L, 3, NULL);
  char const *headers = luaL_optstring(L, 4, NULL);
  char const *hop = luaL_optstring(L, 5, NULL);
  sip_t *sip = sip_object(r->msg);
  char err[128], key[64];
  msg_t *copy;

  luaL_checktype(L, 6, LUA_TFUNCTION);
  if (!r->hash[0])
    proxy_loop_hash(sip, r->hash);
  copy = proxy_branch_request(r->msg, target, rr, headers, err, sizeof err);
  if (!copy)
    return lsip_fail(L, err, "EINVAL");
  snprintf(key, sizeof key, "z9hG4bK%s.%x%x", r->hash, ++r->branches,
           (unsigned)(uintptr_t)r & 0xffffu);
  return send_branch(L, r->s.obj.ctx, r->s.agent, copy, hop, key, 6);
}

/* Push a branch sending msg (taken over) as a new client transaction to
 * hop (NULL: by its Route or Request-URI), with callback at fn_idx;
 * key: its Via branch (NULL: nta's own). */
static int send_branch(lua_State *L, lsip_ctx *ctx, sip_agent_t *agent, msg_t *msg,
                       char const *hop, char const *key, int fn_idx)
{
  lbranch *b = compat_newuserdata(L, sizeof *b);
  memset(b, 0, sizeof *b);
  b->s.agent = agent;
  b->invite = sip_object(msg)->sip_request->rq_method == sip_method_invite;
  b->orq = nta_outgoing_mcreate(sip_agent_nta(agent), branch_response,
                                (nta_outgoing_magic_t *)b, (url_string_t const *)hop, msg,
                                TAG_IF(key, NTATAG_BRANCH_KEY(key)), TAG_END());
  if (!b->orq) {
    msg_destroy(msg);
    return lsip_fail(L, "cannot send the request to this target", "EIO");
  }
  lsip_setclass(L, &branch_class);
  lsip_obj_init(ctx, &b->s.obj, LSIP_REQUESTS, branch_release);
  lsip_obj_set_fn(L, &b->s.obj, fn_idx);
  lsip_obj_anchor(L, &b->s.obj, -1);
  return 1;
}

/* agent:request(text, next_hop|nil, fn) -> branch | nil, err — a request
 * of our own (a NOTIFY of a subscription we serve, a MESSAGE): text is the
 * whole request without Via, which nta adds; it goes to next_hop, else to
 * its first Route (loose routing) or its Request-URI. fn(branch, status,
 * response|nil) as for r:branch(). Called by lagent.c with the agent. */
int lsip_agent_request(lua_State *L, lsip_ctx *ctx, sip_agent_t *agent)
{
  size_t len;
  char const *text = luaL_checklstring(L, 2, &len);
  char const *hop = luaL_optstring(L, 3, NULL);
  msg_t *msg;
  sip_t *sip;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  if (len == 0 || len > 65536)
    return lsip_fail(L, "the request must be 1 to 65536 bytes", "EINVAL");
  msg = nta_msg_create(sip_agent_nta(agent), 0);
  if (msg) {
    msg_iovec_t iov[2];
    if (msg_recv_iovec(msg, iov, 2, len, 1) < 0 || iov[0].mv_len != len) {
      msg_destroy(msg);
      msg = NULL;
    } else {
      memcpy(iov[0].mv_base, text, len);
      msg_recv_commit(msg, len, 1);
      if (msg_extract(msg) < 0)
        msg_set_flags(msg, MSG_FLG_ERROR);
    }
  }
  if (!msg)
    return lsip_fail(L, "out of memory", "ENOMEM");
  sip = sip_object(msg);
  if (!sip || (sip->sip_flags & MSG_FLG_ERROR) || sip->sip_error || !sip->sip_request ||
      !sip->sip_from || !sip->sip_to || !sip->sip_call_id || !sip->sip_cseq ||
      sip->sip_cseq->cs_method != sip->sip_request->rq_method || sip->sip_via) {
    msg_destroy(msg);
    return lsip_fail(L, "not a well-formed request without Via", "EINVAL");
  }
  if (sip->sip_request->rq_method == sip_method_invite ||
      sip->sip_request->rq_method == sip_method_ack ||
      sip->sip_request->rq_method == sip_method_cancel) {
    msg_destroy(msg);
    return lsip_fail(L, "INVITE, ACK and CANCEL are not sent this way", "EINVAL");
  }
  return send_branch(L, ctx, agent, msg, hop, NULL, 4);
}

/* b:cancel() — CANCEL a pending INVITE branch (§9.1); a non-INVITE branch
 * is just abandoned (its final response is ignored). */
static int branch_cancel(lua_State *L)
{
  lbranch *b = lsip_checkclass(L, 1, &branch_class);
  if (!b->orq || b->status >= 200) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (b->invite) {
    nta_outgoing_tcancel(b->orq, NULL, NULL, TAG_END());
    lua_pushboolean(L, 1);
    return 1;
  }
  lsip_obj_close(&b->s.obj);
  lua_pushboolean(L, 1);
  return 1;
}

static int branch_status(lua_State *L)
{
  lbranch *b = lsip_checkclass(L, 1, &branch_class);
  lua_pushinteger(L, b->status);
  return 1;
}

static int branch_close(lua_State *L)
{
  lbranch *b = lsip_checkclass(L, 1, &branch_class);
  lsip_obj_close(&b->s.obj);
  return 0;
}

/* r:relay(response) — send a branch's response upstream (its top Via, ours,
 * removed): through the server transaction while it lasts, statelessly
 * after (a 2xx from another fork after the first, §16.7 step 5). */
static int req_relay(lua_State *L)
{
  lreq *r = check_req(L);
  msg_t *resp = lsip_check_msg(L, 2);
  sip_t *sip = sip_object(resp);
  int status = sip && sip->sip_status ? sip->sip_status->st_status : 0;
  msg_t *copy;
  int rc;
  if (!status)
    return luaL_error(L, "luasip.request: relay takes a response");
  if (r->final && !r->irq && !(status >= 200 && status < 300))
    return lsip_fail(L, "a final response was already sent", "EALREADY");
  copy = msg_copy(resp);
  if (copy && proxy_order_chain(copy) < 0) { /* an on_response hook's headers */
    msg_destroy(copy);
    return lsip_fail(L, "out of memory", "ENOMEM");
  }
  if (!copy || !sip->sip_via || !sip->sip_via->v_next) {
    msg_destroy(copy);
    return lsip_fail(L, "the response has no Via to go back to", "EINVAL");
  }
  if (r->irq) {
    proxy_strip_via(copy);
    rc = nta_incoming_mreply(r->irq, copy);
  } else {
    rc = nta_msg_tsend(sip_agent_nta(r->s.agent), copy, NULL, TAG_END()); /* strips our Via */
  }
  finished(r, status);
  if (rc < 0)
    return lsip_fail(L, "the response could not be sent", "EIO");
  lua_pushboolean(L, 1);
  return 1;
}

static int req_close(lua_State *L)
{
  lreq *r = lsip_checkclass(L, 1, &req_class);
  lsip_obj_close(&r->s.obj);
  return 0;
}

static int req_tostring(lua_State *L)
{
  lreq *r = lsip_checkclass(L, 1, &req_class);
  sip_t const *sip = r->msg ? sip_object(r->msg) : NULL;
  if (sip && sip->sip_request)
    lua_pushfstring(L, "luasip.request (%s %s)", sip->sip_request->rq_method_name,
                    sip->sip_call_id ? sip->sip_call_id->i_id : "-");
  else
    lua_pushstring(L, "luasip.request (closed)");
  return 1;
}

/* Close every request and branch of an agent that is going away. */
void lsip_close_requests(lsip_ctx *ctx, sip_agent_t *agent)
{
  lsip_obj *o = ctx->objects.next;
  while (o != &ctx->objects) {
    lsip_obj *next = o->next;
    if (o->kind == LSIP_REQUESTS && ((lserver_obj *)o)->agent == agent)
      lsip_obj_close(o);
    o = next;
  }
}

/* core.header_lines(headers [, what]) -> "Name: value\r\n..." checked */
static int l_header_lines(lua_State *L)
{
  lsip_push_headers(L, 1, luaL_optstring(L, 2, "luasip"));
  return 1;
}

void lsip_open_request(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = { { "header_lines", l_header_lines }, { NULL, NULL } };
  static luaL_Reg const req_methods[] = {
    { "message", req_message }, { "reply", req_reply }, { "transaction", req_transaction },
    { "loop", req_loop }, { "max_forwards", req_max_forwards }, { "info", req_info },
    { "set_uri", req_set_uri }, { "forward", req_forward }, { "branch", req_branch },
    { "relay", req_relay }, { "close", req_close }, { NULL, NULL },
  };
  static luaL_Reg const req_meta[] = {
    { "__gc", req_close }, { "__tostring", req_tostring }, { NULL, NULL },
  };
  static luaL_Reg const branch_methods[] = {
    { "cancel", branch_cancel }, { "status", branch_status }, { "close", branch_close },
    { NULL, NULL },
  };
  static luaL_Reg const branch_meta[] = {
    { "__gc", branch_close }, { NULL, NULL },
  };
  lsip_setfuncs(L, ctx, funcs);
  lsip_class(L, REQUEST_CLASS, req_methods, req_meta);
  lsip_class(L, BRANCH_CLASS, branch_methods, branch_meta);
  lsip_classref_init(L, &req_class);
  lsip_classref_init(L, &branch_class);
}
