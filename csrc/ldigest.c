/* ldigest.c — for lua/luasip/auth.lua: the hashes of HTTP digest
 * authentication (MD5, SHA-256, SHA-512-256) and HMAC from OpenSSL, and
 * the credentials parser of csrc/sip/credentials.c. */
#include "lcore.h"
#include "sip/credentials.h"

#include <sofia-sip/su_string.h>

#include <ctype.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static EVP_MD const *digest_md(lua_State *L, char const *what)
{
  char const *alg = luaL_checkstring(L, 1);
  EVP_MD const *md = NULL;
  if (su_casematch(alg, "MD5"))
    md = EVP_md5();
  else if (su_casematch(alg, "SHA-256"))
    md = EVP_sha256();
  else if (su_casematch(alg, "SHA-512-256"))
    md = EVP_sha512_256();
  if (!md)
    luaL_error(L, "core.%s: unknown algorithm '%s'", what, alg);
  return md;
}

static void push_hex(lua_State *L, unsigned char const *out, unsigned outlen)
{
  char hex[2 * EVP_MAX_MD_SIZE];
  static char const digits[] = "0123456789abcdef";
  for (unsigned i = 0; i < outlen; i++) {
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * outlen);
}

/* core.hash(algorithm, data) -> lower-case hex */
static int l_hash(lua_State *L)
{
  EVP_MD const *md = digest_md(L, "hash");
  size_t len;
  char const *data = luaL_checklstring(L, 2, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (!EVP_Digest(data, len, out, &outlen, md, NULL))
    return luaL_error(L, "core.hash: digest failed");
  push_hex(L, out, outlen);
  return 1;
}

/* core.hmac(algorithm, key, data) -> lower-case hex (RFC 2104) */
static int l_hmac(lua_State *L)
{
  EVP_MD const *md = digest_md(L, "hmac");
  size_t klen, len;
  char const *key = luaL_checklstring(L, 2, &klen);
  char const *data = luaL_checklstring(L, 3, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (klen > INT_MAX || !HMAC(md, key, (int)klen, (unsigned char const *)data, len, out, &outlen))
    return luaL_error(L, "core.hmac: failed");
  push_hex(L, out, outlen);
  return 1;
}

/* core.credentials(value) -> scheme (lower case), { name = value } with
 * lower-case names and unquoted values; or nil when malformed. */
static int l_credentials(lua_State *L)
{
  size_t len, slen;
  char const *s = luaL_checklstring(L, 1, &len), *scheme;
  cred_param_t params[CRED_MAX_PARAMS];
  char small[256], *value = small; /* unquoted values are never longer than s */
  int n = credentials_parse(s, len, &scheme, &slen, params, CRED_MAX_PARAMS);
  luaL_Buffer b;
  if (n < 0) {
    lua_pushnil(L);
    return 1;
  }
  if (len > sizeof small)
    value = lua_newuserdata(L, len); /* below the results, removed at the end */
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < slen; i++)
    luaL_addchar(&b, (char)tolower((unsigned char)scheme[i]));
  luaL_pushresult(&b);
  lua_createtable(L, 0, n);
  for (int k = 0; k < n; k++) {
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < params[k].name_len; i++)
      luaL_addchar(&b, (char)tolower((unsigned char)params[k].name[i]));
    luaL_pushresult(&b);
    lua_pushlstring(L, value, credentials_unquote(&params[k], value));
    lua_rawset(L, -3);
  }
  if (value != small)
    lua_remove(L, -3);
  return 2;
}

/* core.random_token(n) -> n characters [0-9a-z] from the system's CSPRNG:
 * tags, Call-IDs and entity tags nobody can guess. */
static int l_random_token(lua_State *L)
{
  static char const alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char raw[64];
  char out[64];
  int i;
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "length must be 1..64");
  if (RAND_bytes(raw, (int)n) != 1)
    return luaL_error(L, "core.random_token: no randomness available");
  for (i = 0; i < n; i++)
    out[i] = alphabet[raw[i] % 36]; /* the bias of 256 % 36 is harmless here */
  lua_pushlstring(L, out, (size_t)n);
  return 1;
}

void lsip_open_digest(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = { { "hash", l_hash }, { "hmac", l_hmac }, { "credentials", l_credentials },
                                    { "random_token", l_random_token }, { NULL, NULL } };
  lsip_setfuncs(L, ctx, funcs);
}
