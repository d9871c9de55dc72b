/* rtp_fuzz.c — libFuzzer target for csrc/media/rtp.c: RTP headers, RTCP
 * compounds and RFC 4733 events as they arrive off the network.
 *   make fuzz            # runs every target for FUZZ_SECONDS
 * Input: one datagram. Beyond not crashing, it checks that a parsed RTP
 * payload lies inside the datagram, that RTCP report counts stay within
 * the packet, and that an RTCP packet we write parses back the same. */
#include "media/rtp.h"

#include <stdlib.h>
#include <string.h>

static void seen(void *arg, rtcp_packet_t const *pkt)
{
  if (pkt->nreports < 0 || pkt->nreports > 31)
    abort();
  ++*(int *)arg;
}

static void same_report(void *arg, rtcp_packet_t const *pkt)
{
  rtcp_packet_t *want = arg;
  if (pkt->type == RTCP_SR || pkt->type == RTCP_RR) {
    rtcp_report_t const *a = &pkt->reports[0], *b = &want->reports[0];
    if (pkt->nreports != want->nreports || pkt->ssrc != want->ssrc || a->ssrc != b->ssrc ||
        a->fraction_lost != b->fraction_lost || a->cumulative_lost != b->cumulative_lost ||
        a->highest_seq != b->highest_seq || a->jitter != b->jitter || a->lsr != b->lsr ||
        a->dlsr != b->dlsr)
      abort();
  }
}

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  rtp_header_t h;
  rtp_event_t ev;
  int count = 0, n;
  if (rtp_parse(data, size, &h) == 0) {
    if (h.payload_off > size || h.payload_len > size - h.payload_off)
      abort();
    if (rtp_event_parse(data + h.payload_off, h.payload_len, &ev) == 0 && ev.volume > 63)
      abort();
  }
  (void)rtp_is_rtcp(data, size);
  n = rtcp_parse(data, size, seen, &count);
  if (n >= 0 && n != count)
    abort();
  /* round trip: a report block built from the input's bytes */
  if (size >= 24) {
    uint8_t out[512];
    rtcp_packet_t want;
    rtcp_report_t r;
    size_t len;
    memcpy(&r, data, sizeof r < size ? sizeof r : size);
    r.cumulative_lost = (int32_t)((uint32_t)r.cumulative_lost << 8) >> 8; /* 24 bits */
    memset(&want, 0, sizeof want);
    want.nreports = 1;
    want.ssrc = r.ssrc ^ 1;
    want.reports[0] = r;
    len = rtcp_write(out, sizeof out, want.ssrc, NULL, &r, 1, "fuzz");
    if (!len || rtcp_parse(out, len, same_report, &want) != 2)
      abort();
  }
  return 0;
}
