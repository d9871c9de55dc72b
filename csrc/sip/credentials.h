/* credentials.h — the auth-scheme and auth-params of one Authorization or
 * Proxy-Authorization value (RFC 7616 §3.4, RFC 3261 §25.1):
 *
 *   credentials = auth-scheme LWS auth-param *(COMMA auth-param)
 *   auth-param  = token EQUAL ( token / quoted-string )
 *
 * No Lua here; lua/luasip/auth.lua reaches it through core.credentials. */
#ifndef LUASIP_SIP_CREDENTIALS_H
#define LUASIP_SIP_CREDENTIALS_H

#include <stddef.h>

/* A span of the input. A quoted value's span is inside the quotes, still
 * escaped; credentials_unquote() copies it out. */
typedef struct {
  char const *name;
  size_t name_len;
  char const *value;
  size_t value_len;
  int quoted;
} cred_param_t;

#define CRED_MAX_PARAMS 64

/* Parse s[0..len). On success the scheme's span and up to max parameters,
 * returning how many; -1 when malformed: no scheme, no space between it and
 * the first parameter, a parameter without '=' or value, an unterminated
 * quoted string, junk between parameters, more than max parameters, or a
 * parameter name given twice (ignoring case), which could be read two
 * ways. Empty list elements (",,") and surrounding spaces and tabs are
 * allowed. */
int credentials_parse(char const *s, size_t len, char const **scheme, size_t *scheme_len,
                      cred_param_t *params, int max);

/* Copy a parameter's value to dst (room for value_len bytes), removing a
 * quoted value's backslash escapes; returns the length written. */
size_t credentials_unquote(cred_param_t const *p, char *dst);

#endif
