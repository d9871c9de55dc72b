/* sofialog_fuzz.c — libFuzzer target for csrc/sip/sofialog.c, which parses
 * sofia's log output (including tport's dumps of network messages) into
 * lines and per-message trace records.
 *   make fuzz            # runs every target for FUZZ_SECONDS
 * Input: the bytes are fed as log fragments; each fragment's length comes
 * from the byte before it, and its channel (the default log, where message
 * dumps arrive, or a module log) from that byte's top bit. */
#include "sip/sofialog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_record(void *arg, int kind, char const *source,
                         char const *text, size_t len)
{
  volatile unsigned sum = 0;
  (void)arg;
  if ((kind != SOFIALOG_LINE && kind != SOFIALOG_TRACE) || !source || !text)
    abort();
  for (size_t i = 0; i < len; i++) /* every byte must be readable */
    sum += (unsigned char)text[i];
  if (kind == SOFIALOG_TRACE && text[len] != '\0') /* records end in NUL */
    abort();
}

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  static sofialog_t *s;
  size_t i = 0;
  if (!s)
    s = sofialog_start(check_record, NULL);
  while (i < size) {
    uint8_t ctl = data[i++];
    size_t n = (size_t)(ctl & 0x7f) + 1;
    if (n > size - i)
      n = size - i;
    sofialog_feed(s, !(ctl & 0x80), (char const *)data + i, n);
    i += n;
  }
  /* a terminating newline flushes what is pending, like sofia's next line */
  sofialog_feed(s, 1, "\n", 1);
  sofialog_feed(s, 0, "\n", 1);
  return 0;
}
