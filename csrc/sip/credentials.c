/* credentials.c — see credentials.h. */
#include "sip/credentials.h"

#include <string.h>
#include <strings.h>

/* RFC 3261 token characters: alphanumerics and -.!%*_+`'~ */
static int is_token(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("-.!%*_+`'~", c) != NULL);
}

static size_t skip_ws(char const *s, size_t i, size_t len)
{
  while (i < len && (s[i] == ' ' || s[i] == '\t'))
    i++;
  return i;
}

static size_t token_end(char const *s, size_t i, size_t len)
{
  while (i < len && is_token((unsigned char)s[i]))
    i++;
  return i;
}

int credentials_parse(char const *s, size_t len, char const **scheme, size_t *scheme_len,
                      cred_param_t *params, int max)
{
  size_t i = skip_ws(s, 0, len), e;
  int n = 0;
  e = token_end(s, i, len);
  if (e == i)
    return -1;
  *scheme = s + i;
  *scheme_len = e - i;
  i = e;
  for (;;) {
    size_t ws = skip_ws(s, i, len);
    cred_param_t p;
    if (ws >= len)
      break;
    if (n == 0) {
      if (ws == i) /* "Digestfoo" */
        return -1;
      i = ws;
    } else {
      if (s[ws] != ',')
        return -1;
      i = ws + 1;
      while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
        i++;
      if (i >= len)
        break;
    }
    e = token_end(s, i, len);
    if (e == i)
      return -1;
    p.name = s + i;
    p.name_len = e - i;
    i = skip_ws(s, e, len);
    if (i >= len || s[i] != '=')
      return -1;
    i = skip_ws(s, i + 1, len);
    if (i < len && s[i] == '"') {
      size_t j = i + 1;
      while (j < len && s[j] != '"') {
        if (s[j] == '\\') {
          if (j + 1 >= len) /* a backslash escaping nothing */
            return -1;
          j++;
        }
        j++;
      }
      if (j >= len)
        return -1;
      p.value = s + i + 1;
      p.value_len = j - i - 1;
      p.quoted = 1;
      i = j + 1;
    } else {
      e = token_end(s, i, len);
      if (e == i)
        return -1;
      p.value = s + i;
      p.value_len = e - i;
      p.quoted = 0;
      i = e;
    }
    for (int k = 0; k < n; k++)
      if (params[k].name_len == p.name_len && strncasecmp(params[k].name, p.name, p.name_len) == 0)
        return -1;
    if (n >= max)
      return -1;
    params[n++] = p;
  }
  return n;
}

size_t credentials_unquote(cred_param_t const *p, char *dst)
{
  size_t n = 0;
  for (size_t i = 0; i < p->value_len; i++) {
    if (p->quoted && p->value[i] == '\\')
      i++; /* credentials_parse() saw to it that something follows */
    dst[n++] = p->value[i];
  }
  return n;
}
