/* credentials_fuzz.c — libFuzzer target for csrc/sip/credentials.c, the
 * parser of Authorization / Proxy-Authorization values.
 *   make fuzz            # runs every target for FUZZ_SECONDS
 * Input: the bytes are one header value. Beyond not crashing, it checks
 * that every span lies inside the input, that names are distinct, and
 * that what was parsed, written back out with every value quoted,
 * parses to the same scheme, names and values. */
#include "sip/credentials.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int inside(char const *s, size_t len, char const *p, size_t n)
{
  return p >= s && n <= len && (size_t)(p - s) <= len - n;
}

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  char const *s = (char const *)data, *scheme, *scheme2;
  size_t slen, slen2, out_len = 0;
  cred_param_t p[CRED_MAX_PARAMS], p2[CRED_MAX_PARAMS];
  int n = credentials_parse(s, size, &scheme, &slen, p, CRED_MAX_PARAMS), n2;
  char *out, *values;
  if (n < 0)
    return 0;
  if (!slen || !inside(s, size, scheme, slen))
    abort();
  out = malloc(2 * size + 8);
  values = malloc(size + 1);
  memcpy(out, scheme, slen);
  out_len = slen;
  for (int k = 0; k < n; k++) {
    size_t vlen;
    if (!p[k].name_len || !inside(s, size, p[k].name, p[k].name_len) ||
        !inside(s, size, p[k].value, p[k].value_len))
      abort();
    for (int j = 0; j < k; j++)
      if (p[j].name_len == p[k].name_len && !strncasecmp(p[j].name, p[k].name, p[k].name_len))
        abort();
    vlen = credentials_unquote(&p[k], values);
    if (vlen > p[k].value_len)
      abort();
    out[out_len++] = k ? ',' : ' ';
    memcpy(out + out_len, p[k].name, p[k].name_len);
    out_len += p[k].name_len;
    out[out_len++] = '=';
    out[out_len++] = '"';
    for (size_t i = 0; i < vlen; i++) {
      if (values[i] == '"' || values[i] == '\\')
        out[out_len++] = '\\';
      out[out_len++] = values[i];
    }
    out[out_len++] = '"';
  }
  n2 = credentials_parse(out, out_len, &scheme2, &slen2, p2, CRED_MAX_PARAMS);
  if (n2 != n || slen2 != slen || memcmp(scheme, scheme2, slen))
    abort();
  for (int k = 0; k < n; k++) {
    char *a = malloc(p[k].value_len + 1), *b = malloc(p2[k].value_len + 1);
    size_t la = credentials_unquote(&p[k], a), lb = credentials_unquote(&p2[k], b);
    if (p2[k].name_len != p[k].name_len || memcmp(p2[k].name, p[k].name, p[k].name_len) ||
        la != lb || memcmp(a, b, la))
      abort();
    free(a);
    free(b);
  }
  free(out);
  free(values);
  return 0;
}
