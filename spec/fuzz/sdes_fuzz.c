/* sdes_fuzz.c — libFuzzer target for csrc/media/sdes.c: SDES key-params as
 * they come from a peer's a=crypto line, and SRTP packets off the network.
 *   make fuzz
 * Input: a suite selector byte, then "local key\nremote key\npacket".
 * Beyond not crashing: when both keys are accepted, a packet protected by
 * one side must unprotect on the other to the same bytes, and the fuzzed
 * packet must never unprotect to more bytes than it had. */
#include "media/sdes.h"

#include <stdlib.h>
#include <string.h>

static char const *const suites[] = { "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32",
                                      "AEAD_AES_128_GCM", "NULL_CIPHER" };

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  char buf[512], err[200];
  char *lk, *rk, *pkt;
  size_t pktlen;
  sdes_t *a, *b;
  if (size < 1 || size > sizeof buf - 1)
    return 0;
  char const *suite = suites[data[0] % 4];
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = 0;
  lk = buf;
  rk = memchr(buf, '\n', size - 1);
  if (!rk)
    return 0;
  *rk++ = 0;
  pkt = strchr(rk, '\n');
  if (!pkt)
    return 0;
  *pkt++ = 0;
  pktlen = size - 1 - (size_t)(pkt - buf);
  a = sdes_create(suite, lk, rk, err, sizeof err);
  if (!a)
    return 0;
  b = sdes_create(suite, rk, lk, err, sizeof err);
  if (!b)
    abort(); /* the same two keys, swapped */
  /* a well-formed packet round-trips */
  uint8_t rtp[12 + 160 + SDES_TRAILER] = { 0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4 };
  uint8_t copy[sizeof rtp];
  int len = 12 + 160;
  memset(rtp + 12, 0x55, 160);
  memcpy(copy, rtp, sizeof rtp);
  if (sdes_protect(a, rtp, &len, 0) != SDES_OK || len > 12 + 160 + SDES_TRAILER)
    abort();
  if (sdes_unprotect(b, rtp, &len, 0) != SDES_OK || len != 12 + 160 || memcmp(rtp, copy, 172))
    abort();
  /* the fuzzed packet, as if received */
  if (pktlen >= 12 && pktlen <= 1500) {
    uint8_t in[1500];
    int n = (int)pktlen;
    memcpy(in, pkt, pktlen);
    if (sdes_unprotect(b, in, &n, (in[1] >= 200 && in[1] <= 204)) == SDES_OK && n > (int)pktlen)
      abort();
  }
  sdes_destroy(a);
  sdes_destroy(b);
  return 0;
}
