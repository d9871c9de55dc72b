/* sdpmap_fuzz.c — libFuzzer target for csrc/media/sdpmap.c, the mapping
 * of a peer's session description (parsed by sofia) to a media session.
 *   make fuzz            # runs every target for FUZZ_SECONDS
 * Input: one SDP body. Beyond not crashing, what maps must be in range. */
#include "media/sdpmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  sdpmap_t m;
  char err[160];
  if (sdpmap_parse((char const *)data, size, &m, err, sizeof err) < 0) {
    if (!memchr(err, '\0', sizeof err) || !err[0])
      abort();
    return 0;
  }
  if (m.port > 65535 || m.rtcp_port > 65536 || m.pt > 127 || m.te_pt > 127 || m.ncrypto < 0 ||
      m.ncrypto > SDPMAP_MAX_CRYPTO || !memchr(m.addr, '\0', sizeof m.addr) ||
      !memchr(m.codec, '\0', sizeof m.codec) || !memchr(m.fmtp, '\0', sizeof m.fmtp))
    abort();
  if (m.pt >= 0 && !sdpmap_known_codec(m.codec, m.rate, m.channels == 1 && !strcmp(m.codec, "opus") ? 2 : m.channels))
    abort();
  for (int i = 0; i < m.ncrypto; i++)
    if (!memchr(m.crypto[i].key, '\0', sizeof m.crypto[i].key))
      abort();
  return 0;
}
