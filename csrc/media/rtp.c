/* rtp.c — see rtp.h. */
#include "media/rtp.h"

#include <string.h>

static uint16_t get16(uint8_t const *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(uint8_t const *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

int rtp_parse(uint8_t const *p, size_t len, rtp_header_t *h)
{
  size_t off = RTP_HEADER_LEN, end = len;
  if (len < RTP_HEADER_LEN || (p[0] >> 6) != 2)
    return -1;
  h->csrc_count = p[0] & 0x0f;
  h->marker = p[1] >> 7;
  h->pt = p[1] & 0x7f;
  h->seq = get16(p + 2);
  h->ts = get32(p + 4);
  h->ssrc = get32(p + 8);
  off += 4u * h->csrc_count;
  if (off > len)
    return -1;
  h->has_ext = (p[0] >> 4) & 1;
  h->ext_profile = 0;
  if (h->has_ext) {
    size_t words;
    if (off + 4 > len)
      return -1;
    h->ext_profile = get16(p + off);
    words = get16(p + off + 2);
    off += 4 + 4 * words;
    if (off > len)
      return -1;
  }
  if (p[0] & 0x20) { /* padding: the last byte counts it, itself included */
    uint8_t pad = p[len - 1];
    if (pad == 0 || pad > len - off)
      return -1;
    end = len - pad;
  }
  h->payload_off = off;
  h->payload_len = end - off;
  return 0;
}

void rtp_write_header(uint8_t *out, int marker, unsigned pt, uint16_t seq, uint32_t ts,
                      uint32_t ssrc)
{
  out[0] = 0x80;
  out[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
  put16(out + 2, seq);
  put32(out + 4, ts);
  put32(out + 8, ssrc);
}

int rtp_is_rtcp(uint8_t const *p, size_t len)
{
  return len >= 2 && (p[0] >> 6) == 2 && p[1] >= 192 && p[1] <= 223;
}

/* ---- RTCP ---------------------------------------------------------------- */

static void read_report(uint8_t const *b, rtcp_report_t *r)
{
  uint32_t lost = (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
  r->ssrc = get32(b);
  r->fraction_lost = b[4];
  r->cumulative_lost = (int32_t)(lost & 0x800000 ? lost | 0xff000000u : lost);
  r->highest_seq = get32(b + 8);
  r->jitter = get32(b + 12);
  r->lsr = get32(b + 16);
  r->dlsr = get32(b + 20);
}

int rtcp_parse(uint8_t const *p, size_t len,
               void (*cb)(void *arg, rtcp_packet_t const *pkt), void *arg)
{
  size_t off = 0;
  int n = 0;
  if (len < 4)
    return -1;
  while (off < len) {
    uint8_t const *q = p + off;
    size_t plen, body = 4;
    rtcp_packet_t pkt;
    int count;
    if (len - off < 4 || (q[0] >> 6) != 2)
      return -1;
    plen = 4 * ((size_t)get16(q + 2) + 1);
    if (plen > len - off)
      return -1;
    /* padding is only allowed on the last packet of a compound */
    if ((q[0] & 0x20) && (off + plen != len || q[plen - 1] == 0 || q[plen - 1] > plen - 4))
      return -1;
    count = q[0] & 0x1f;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = q[1];
    /* RFC 3550 §6.1 wants an SR or RR first; RFC 5506 reduced-size
     * feedback (205, 206) may come alone. */
    if (n == 0 && pkt.type != RTCP_SR && pkt.type != RTCP_RR && pkt.type != 205 && pkt.type != 206)
      return -1;
    if (pkt.type == RTCP_SR || pkt.type == RTCP_RR) {
      body = 8 + (pkt.type == RTCP_SR ? 20 : 0);
      if (plen < body + 24u * (size_t)count)
        return -1;
      pkt.ssrc = get32(q + 4);
      if (pkt.type == RTCP_SR) {
        pkt.ntp_sec = get32(q + 8);
        pkt.ntp_frac = get32(q + 12);
        pkt.rtp_ts = get32(q + 16);
        pkt.packets = get32(q + 20);
        pkt.octets = get32(q + 24);
      }
      pkt.nreports = count;
      for (int i = 0; i < count; i++)
        read_report(q + body + 24 * i, &pkt.reports[i]);
    } else if (pkt.type == RTCP_BYE) {
      if (plen < 4 + 4u * (size_t)count)
        return -1;
      if (count)
        pkt.ssrc = get32(q + 4);
    }
    if (cb)
      cb(arg, &pkt);
    n++;
    off += plen;
  }
  return n;
}

size_t rtcp_write(uint8_t *out, size_t size, uint32_t ssrc, rtcp_sender_info_t const *sr,
                  rtcp_report_t const *reports, int nreports, char const *cname)
{
  size_t first = 8 + (sr ? 20 : 0) + 24u * (size_t)nreports, clen = cname ? strlen(cname) : 0;
  size_t sdes, total;
  if (nreports < 0 || nreports > 31 || clen > 255)
    return 0;
  /* SDES: header, SSRC, CNAME item (2 + clen), end item, padded to 32 bits */
  sdes = (8 + 2 + clen + 1 + 3) & ~(size_t)3;
  total = first + sdes;
  if (total > size)
    return 0;
  memset(out, 0, total);
  out[0] = (uint8_t)(0x80 | nreports);
  out[1] = sr ? RTCP_SR : RTCP_RR;
  put16(out + 2, (uint16_t)(first / 4 - 1));
  put32(out + 4, ssrc);
  if (sr) {
    put32(out + 8, sr->ntp_sec);
    put32(out + 12, sr->ntp_frac);
    put32(out + 16, sr->rtp_ts);
    put32(out + 20, sr->packets);
    put32(out + 24, sr->octets);
  }
  for (int i = 0; i < nreports; i++) {
    uint8_t *b = out + 8 + (sr ? 20 : 0) + 24 * i;
    rtcp_report_t const *r = &reports[i];
    int32_t lost = r->cumulative_lost;
    if (lost > 0x7fffff) lost = 0x7fffff;
    if (lost < -0x800000) lost = -0x800000;
    put32(b, r->ssrc);
    b[4] = r->fraction_lost;
    b[5] = (uint8_t)((uint32_t)lost >> 16);
    b[6] = (uint8_t)((uint32_t)lost >> 8);
    b[7] = (uint8_t)lost;
    put32(b + 8, r->highest_seq);
    put32(b + 12, r->jitter);
    put32(b + 16, r->lsr);
    put32(b + 20, r->dlsr);
  }
  out += first;
  out[0] = 0x81;
  out[1] = RTCP_SDES;
  put16(out + 2, (uint16_t)(sdes / 4 - 1));
  put32(out + 4, ssrc);
  out[8] = 1; /* CNAME */
  out[9] = (uint8_t)clen;
  if (clen)
    memcpy(out + 10, cname, clen);
  return total;
}

/* ---- telephone-event ----------------------------------------------------- */

int rtp_event_parse(uint8_t const *p, size_t len, rtp_event_t *e)
{
  if (len < 4)
    return -1;
  e->event = p[0];
  e->end = p[1] >> 7;
  e->volume = p[1] & 0x3f;
  e->duration = get16(p + 2);
  return 0;
}

void rtp_event_write(uint8_t out[4], rtp_event_t const *e)
{
  out[0] = e->event;
  out[1] = (uint8_t)((e->end ? 0x80 : 0) | (e->volume & 0x3f));
  put16(out + 2, e->duration);
}

static char const event_chars[] = "0123456789*#ABCD";

char rtp_event_char(unsigned event)
{
  return event < 16 ? event_chars[event] : 0;
}

int rtp_event_code(char c)
{
  char const *s;
  if (c >= 'a' && c <= 'd')
    c = (char)(c - 'a' + 'A');
  s = c ? strchr(event_chars, c) : NULL;
  return s ? (int)(s - event_chars) : -1;
}
