/* sdpmap.c — see sdpmap.h. */
#include "media/sdpmap.h"

#include <sofia-sip/sdp.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/su_string.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy(char *dst, size_t size, char const *src)
{
  size_t n = src ? strlen(src) : 0;
  if (n >= size)
    n = size - 1;
  memcpy(dst, src ? src : "", n);
  dst[n] = '\0';
}

int sdpmap_known_codec(char const *name, unsigned rate, unsigned channels)
{
  if (!name)
    return 0;
  if (su_casematch(name, "PCMU") || su_casematch(name, "PCMA"))
    return rate == 8000 && channels <= 1;
  if (su_casematch(name, "opus")) /* RFC 7587: always opus/48000/2 */
    return rate == 48000 && channels == 2;
  return 0;
}

static unsigned channels_of(sdp_rtpmap_t const *rm)
{
  unsigned long c;
  if (!rm->rm_params || !*rm->rm_params)
    return 1;
  c = strtoul(rm->rm_params, NULL, 10);
  return c >= 1 && c <= 8 ? (unsigned)c : 0;
}

static void parse_crypto(char const *v, sdpmap_t *out)
{
  /* a=crypto:<tag> <suite> inline:<key-params>[|lifetime][|MKI] [session-params] */
  sdpmap_crypto_t *c;
  char suite[32], key[160];
  int tag, n = 0;
  if (out->ncrypto >= SDPMAP_MAX_CRYPTO || !v)
    return;
  if (sscanf(v, "%d %31s inline:%159s%n", &tag, suite, key, &n) != 3 || tag < 0 ||
      tag > 999999999)
    return;
  if (strlen(key) >= sizeof c->key)
    return;
  c = &out->crypto[out->ncrypto++];
  c->tag = tag;
  copy(c->suite, sizeof c->suite, suite);
  copy(c->key, sizeof c->key, key);
}

/* Sofia's SDP parser (Debian 1.12.11) loops forever, allocating, when an
 * m= line's format list holds a character outside its token set: its
 * token() does not advance over a character it cannot take, and under a
 * non-RTP transport parse_media() calls it until memory runs out
 * ("m=audio 4000 udp \"", "m=audio 4P00T0R /AVP 0" where the port ends
 * at the P, or tabs after the proto). So every m= line must first match
 * RFC 4566's grammar,
 *   m=<media> SP <port>["/"<integer>] SP <proto> 1*(SP <fmt>)
 * media and fmt tokens, port digits, proto tokens and '/': walked the way
 * sofia walks it, so that each format starts with a token character. */
#define SDP_TOKEN "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`{|}~"

static size_t span(char const *s, size_t i, size_t end, char const *set)
{
  while (i < end && s[i] && strchr(set, s[i]))
    i++;
  return i;
}

static int m_line_ok(char const *s, size_t i, size_t end)
{
  size_t j;
  j = span(s, i, end, SDP_TOKEN); /* media */
  if (j == i || (i = span(s, j, end, " ")) == j)
    return 0;
  j = span(s, i, end, "0123456789"); /* port */
  if (j == i)
    return 0;
  if (j < end && s[j] == '/') { /* number of ports */
    i = j + 1;
    j = span(s, i, end, "0123456789");
    if (j == i)
      return 0;
  }
  if ((i = span(s, j, end, " ")) == j)
    return 0;
  j = span(s, i, end, "/" SDP_TOKEN); /* proto */
  if (j == i)
    return 0;
  /* sofia takes the one character after the proto, then spaces; each
   * format then skips blanks, takes a token and the character after it,
   * then blanks. Blanks with nothing after them stall it as surely as a
   * non-token character does. */
  if (j < end) {
    if (s[j] != ' ')
      return 0;
    j = span(s, j + 1, end, " ");
  }
  for (i = j; i < end; i = j) {
    i = span(s, i, end, " \t");
    j = span(s, i, end, SDP_TOKEN); /* a format */
    if (j == i)
      return 0;
    if (j < end) {
      if (s[j] != ' ' && s[j] != '\t')
        return 0;
      j = span(s, j + 1, end, " \t");
    }
  }
  return 1;
}

/* Lines as sofia splits them: at CR or LF, leading blanks skipped. */
static int m_lines_ok(char const *sdp, size_t len)
{
  for (size_t i = 0; i < len;) {
    size_t end = i;
    while (end < len && sdp[end] != '\r' && sdp[end] != '\n')
      end++;
    i = span(sdp, i, end, " \t");
    if (end - i >= 2 && sdp[i] == 'm' && sdp[i + 1] == '=' && !m_line_ok(sdp, i + 2, end))
      return 0;
    i = end + 1;
  }
  return 1;
}

/* Is name in the comma list allow (NULL: everything)? */
static int allowed(char const *allow, char const *name)
{
  size_t n = strlen(name);
  if (!allow)
    return 1;
  for (char const *p = allow; *p;) {
    char const *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && su_casenmatch(p, name, n))
      return 1;
    if (!end)
      break;
    p = end + 1;
  }
  return 0;
}

int sdpmap_parse(char const *sdp, size_t len, sdpmap_t *out, char *err, size_t errlen)
{
  return sdpmap_parse_allow(sdp, len, NULL, out, err, errlen);
}

int sdpmap_parse_allow(char const *sdp, size_t len, char const *allow, sdpmap_t *out, char *err,
                       size_t errlen)
{
  su_home_t home[1] = { SU_HOME_INIT(home) };
  sdp_parser_t *p;
  sdp_session_t *s;
  sdp_media_t *m = NULL;
  sdp_connection_t *c;
  int rc = -1;
  memset(out, 0, sizeof *out);
  out->pt = out->te_pt = -1;
  if (len > 65536 || len > (size_t)INT32_MAX) {
    snprintf(err, errlen, "description too large");
    return -1;
  }
  if (!m_lines_ok(sdp, len)) {
    snprintf(err, errlen, "malformed SDP: an m= line is not media port proto format list");
    return -1;
  }
  p = sdp_parse(home, sdp, (issize_t)len, 0);
  s = sdp_session(p);
  if (!s) {
    snprintf(err, errlen, "malformed SDP: %s", sdp_parsing_error(p) ? sdp_parsing_error(p) : "?");
    goto done;
  }
  out->audio = -1;
  for (sdp_media_t *x = s->sdp_media; x; x = x->m_next) {
    sdpmap_stream_t *st;
    if (out->nstreams == SDPMAP_MAX_STREAMS) {
      snprintf(err, errlen, "more than %d media streams", SDPMAP_MAX_STREAMS);
      goto done;
    }
    st = &out->streams[out->nstreams];
    copy(st->media, sizeof st->media, x->m_type_name ? x->m_type_name : "audio");
    copy(st->proto, sizeof st->proto, x->m_proto_name ? x->m_proto_name : "RTP/AVP");
    if (x->m_rtpmaps)
      snprintf(st->fmt, sizeof st->fmt, "%u", x->m_rtpmaps->rm_pt);
    else
      copy(st->fmt, sizeof st->fmt, x->m_format && x->m_format->l_text ? x->m_format->l_text : "0");
    if (out->audio < 0 && x->m_type == sdp_media_audio)
      out->audio = out->nstreams, m = x;
    out->nstreams++;
  }
  if (out->audio < 0) {
    snprintf(err, errlen, "no audio stream");
    goto done;
  }
  out->port = m->m_rejected ? 0 : (unsigned)(m->m_port > 65535 ? 0 : m->m_port);
  out->secure = m->m_proto == sdp_proto_srtp ||
                (m->m_proto_name && su_casenmatch(m->m_proto_name, "RTP/SAVP", 8));
  out->sendrecv = m->m_mode;
  c = sdp_media_connections(m);
  if (c && c->c_address) {
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, c->c_address, &a4) == 1) {
      out->ipv6 = 0;
    } else if (inet_pton(AF_INET6, c->c_address, &a6) == 1) {
      out->ipv6 = 1;
    } else {
      snprintf(err, errlen, "connection address is not numeric: %.40s", c->c_address);
      goto done;
    }
    copy(out->addr, sizeof out->addr, c->c_address);
  } else if (out->port) {
    snprintf(err, errlen, "no connection address");
    goto done;
  }
  /* The first format we know, in the peer's order (m_rtpmaps keeps it). */
  for (sdp_rtpmap_t *rm = m->m_rtpmaps; rm; rm = rm->rm_next) {
    unsigned ch = channels_of(rm);
    if (out->pt < 0 && sdpmap_known_codec(rm->rm_encoding, (unsigned)rm->rm_rate, ch) &&
        allowed(allow, rm->rm_encoding)) {
      out->pt = rm->rm_pt;
      copy(out->codec, sizeof out->codec, rm->rm_encoding);
      out->rate = (unsigned)rm->rm_rate;
      out->channels = ch ? ch : 1;
      copy(out->fmtp, sizeof out->fmtp, rm->rm_fmtp);
    }
  }
  if (out->pt >= 0) { /* telephone-event at the codec's clock rate, else any
                        * (baresip and others offer 8 kHz events beside Opus) */
    for (sdp_rtpmap_t *rm = m->m_rtpmaps; rm; rm = rm->rm_next)
      if (rm->rm_encoding && su_casematch(rm->rm_encoding, "telephone-event") && rm->rm_rate &&
          (out->te_pt < 0 || rm->rm_rate == out->rate)) {
        out->te_pt = rm->rm_pt;
        out->te_rate = (unsigned)rm->rm_rate;
        if (rm->rm_rate == out->rate)
          break;
      }
  }
  out->rtcp_port = out->port ? out->port + 1 : 0;
  for (sdp_attribute_t *a = m->m_attributes; a; a = a->a_next) {
    if (!a->a_name)
      continue;
    if (su_casematch(a->a_name, "ptime") && a->a_value) {
      unsigned long v = strtoul(a->a_value, NULL, 10);
      out->ptime = v >= 10 && v <= 120 ? (unsigned)v : 0;
    } else if (su_casematch(a->a_name, "rtcp-mux")) {
      out->rtcp_mux = 1;
    } else if (su_casematch(a->a_name, "rtcp") && a->a_value) {
      unsigned long v = strtoul(a->a_value, NULL, 10);
      if (v > 0 && v < 65536)
        out->rtcp_port = (unsigned)v;
    } else if (su_casematch(a->a_name, "crypto")) {
      parse_crypto(a->a_value, out);
    }
  }
  if (out->rtcp_mux)
    out->rtcp_port = out->port;
  rc = 0;
done:
  su_home_deinit(home);
  return rc;
}
