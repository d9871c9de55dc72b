/* proxy.c — RFC 3261 §16 message surgery (see proxy.h). */
#include "proxy.h"

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>
#include <sofia-sip/sip_tag.h>
#include <sofia-sip/su_md5.h>
#include <sofia-sip/sip_util.h>
#include <sofia-sip/su_string.h>

#include <stdio.h>
#include <string.h>

static int set_request_uri(msg_t *msg, sip_t *sip, url_t const *url)
{
  sip_request_t *rq = sip_request_create(msg_home(msg), sip->sip_request->rq_method,
                                         sip->sip_request->rq_method_name,
                                         (url_string_t const *)url, NULL);
  if (!rq)
    return -1;
  return msg_header_replace(msg, (msg_pub_t *)sip, (msg_header_t *)sip->sip_request,
                            (msg_header_t *)rq);
}

int proxy_preprocess_routes(msg_t *msg, sip_t *sip, proxy_is_me_f *is_me, void *arg)
{
  int consumed = 0;

  /* A strict router put our Record-Route (it carries lr) into the
   * Request-URI and the real target at the end of Route. */
  if (sip->sip_route && url_has_param(sip->sip_request->rq_url, "lr") &&
      is_me(arg, sip->sip_request->rq_url)) {
    sip_route_t *last = sip->sip_route;
    while (last->r_next)
      last = last->r_next;
    if (set_request_uri(msg, sip, last->r_url) < 0)
      return -1;
    msg_header_remove(msg, (msg_pub_t *)sip, (msg_header_t *)last);
    consumed = 1;
  }
  /* Our own Route (one or two when we recorded a transport change). */
  while (sip->sip_route && is_me(arg, sip->sip_route->r_url)) {
    msg_header_remove(msg, (msg_pub_t *)sip, (msg_header_t *)sip->sip_route);
    consumed = 1;
  }
  return consumed;
}

static void md5_field(su_md5_t *md5, char const *s)
{
  su_md5_strupdate(md5, s ? s : "");
  su_md5_update(md5, "\n", 1);
}

void proxy_loop_hash(sip_t const *sip, char out[17])
{
  su_md5_t md5[1];
  char digest[33];
  char buf[1024];
  char num[24];

  su_md5_init(md5);
  url_e(buf, sizeof buf, sip->sip_request->rq_url);
  buf[sizeof buf - 1] = '\0';
  md5_field(md5, buf);
  md5_field(md5, sip->sip_from ? sip->sip_from->a_tag : NULL);
  md5_field(md5, sip->sip_to ? sip->sip_to->a_tag : NULL);
  md5_field(md5, sip->sip_call_id ? sip->sip_call_id->i_id : NULL);
  snprintf(num, sizeof num, "%u", sip->sip_cseq ? sip->sip_cseq->cs_seq : 0);
  md5_field(md5, num);
  for (sip_proxy_require_t const *p = sip->sip_proxy_require; p; p = p->k_next)
    for (int i = 0; p->k_items && p->k_items[i]; i++)
      md5_field(md5, p->k_items[i]);
  for (sip_proxy_authorization_t const *a = sip->sip_proxy_authorization; a; a = a->au_next)
    for (int i = 0; a->au_params && a->au_params[i]; i++)
      md5_field(md5, a->au_params[i]);
  su_md5_hexdigest(md5, digest);
  memcpy(out, digest, 16);
  out[16] = '\0';
}

int proxy_is_loop(sip_t const *sip, char const *hash, proxy_is_me_f *is_me, void *arg)
{
  size_t hlen = strlen(hash);
  for (sip_via_t const *v = sip->sip_via; v; v = v->v_next) {
    url_t url[1];
    if (!v->v_branch || strlen(v->v_branch) < 7 + hlen ||
        !su_casenmatch(v->v_branch, "z9hG4bK", 7) ||
        strncmp(v->v_branch + 7, hash, hlen) != 0)
      continue;
    url_init(url, url_sip);
    url->url_host = v->v_host;
    url->url_port = v->v_port;
    if (is_me(arg, url))
      return 1;
  }
  return 0;
}

static int is_body_part(msg_header_t const *h)
{
  /* header lines sofia could not parse (sip_error_class) stay where they
   * are, among the headers */
  return h->sh_class == sip_separator_class || h->sh_class == sip_payload_class;
}

int proxy_order_chain(msg_t *msg)
{
  sip_t *sip = sip_object(msg);
  msg_header_t **head = msg_chain_head(msg);
  msg_header_t *h, *next;
  int after_body = 0, moved = 0, left = 0;

  if (!sip || !head)
    return -1;
  /* Visit only the fragments there are now: a moved header must never be
   * met again, whatever place sofia gives it. */
  for (h = *head; h; h = (msg_header_t *)h->sh_succ)
    left++;
  for (h = *head; h && left-- > 0; h = next) {
    msg_header_t *copy;
    next = (msg_header_t *)h->sh_succ;
    if (is_body_part(h)) {
      after_body = 1;
      continue;
    }
    /* a second single-valued header (two Content-Lengths) cannot be
     * inserted again: sofia asserts when it serializes such a list */
    if (!after_body || h->sh_class->hc_kind == msg_kind_single)
      continue;
    copy = msg_header_dup_one(msg_home(msg), h);
    if (!copy || msg_header_remove(msg, (msg_pub_t *)sip, h) < 0 ||
        msg_header_insert(msg, (msg_pub_t *)sip, copy) < 0)
      return -1;
    moved++;
  }
  return moved;
}

msg_t *proxy_branch_request(msg_t *orig, char const *target, char const *record_route,
                            char const *headers, char *err, size_t errlen)
{
  msg_t *msg;
  sip_t *sip;
  su_home_t *home;

  /* nta answers requests with unparsable headers 400 before we see them;
   * a copy of one (two Content-Lengths) would make sofia assert when it
   * serializes it, so never forward one that got here another way */
  if (!sip_object(orig) || sip_object(orig)->sip_error) {
    snprintf(err, errlen, "the request has malformed headers");
    return NULL;
  }
  msg = msg_copy(orig);
  sip = sip_object(msg);
  home = msg_home(msg);

  if (!msg || !sip || !sip->sip_request) {
    snprintf(err, errlen, "out of memory");
    msg_destroy(msg);
    return NULL;
  }
  if (target) {
    url_t *url = url_hdup(home, (url_t const *)url_make(home, target));
    if (!url || url->url_type == url_invalid || url->url_type == url_unknown) {
      snprintf(err, errlen, "bad target URI: %s", target);
      msg_destroy(msg);
      return NULL;
    }
    if (set_request_uri(msg, sip, url) < 0) {
      snprintf(err, errlen, "out of memory");
      msg_destroy(msg);
      return NULL;
    }
  }
  if (sip->sip_max_forwards) {
    sip_max_forwards_t *mf = sip_max_forwards_dup(home, sip->sip_max_forwards);
    if (mf) {
      if (mf->mf_count > 0)
        mf->mf_count--;
      msg_header_replace(msg, (msg_pub_t *)sip, (msg_header_t *)sip->sip_max_forwards,
                         (msg_header_t *)mf);
    }
  } else {
    sip_max_forwards_t mf[1];
    sip_max_forwards_init(mf)->mf_count = PROXY_DEFAULT_MAX_FORWARDS;
    msg_header_add_dup(msg, (msg_pub_t *)sip, (msg_header_t *)mf);
  }
  if (record_route) {
    sip_record_route_t *rr = sip_record_route_make(home, record_route);
    if (!rr || msg_header_insert(msg, (msg_pub_t *)sip, (msg_header_t *)rr) < 0) {
      snprintf(err, errlen, "bad Record-Route: %s", record_route);
      msg_destroy(msg);
      return NULL;
    }
  }
  if (headers && *headers &&
      sip_add_tl(msg, sip, SIPTAG_HEADER_STR(headers), TAG_END()) < 0) {
    snprintf(err, errlen, "bad headers");
    msg_destroy(msg);
    return NULL;
  }
  /* §16.6 step 7: a strict next hop gets the Request-URI, which moves to
   * the end of Route. */
  if (sip->sip_route && !url_has_param(sip->sip_route->r_url, "lr")) {
    sip_route_t *tail = sip_route_create(home, sip->sip_request->rq_url, NULL);
    sip_route_t *top = sip->sip_route;
    if (!tail || msg_header_add_dup(msg, (msg_pub_t *)sip, (msg_header_t *)tail) < 0 ||
        set_request_uri(msg, sip, top->r_url) < 0) {
      snprintf(err, errlen, "out of memory");
      msg_destroy(msg);
      return NULL;
    }
    msg_header_remove(msg, (msg_pub_t *)sip, (msg_header_t *)top);
  }
  /* what the handler and `headers` added, above the body */
  if (proxy_order_chain(msg) < 0) {
    snprintf(err, errlen, "out of memory");
    msg_destroy(msg);
    return NULL;
  }
  return msg;
}

int proxy_strip_via(msg_t *response)
{
  sip_t *sip = sip_object(response);
  if (!sip || !sip->sip_via)
    return -1;
  sip_via_remove(response, sip);
  return sip->sip_via ? 0 : -1;
}
