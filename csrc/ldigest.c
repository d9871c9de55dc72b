/* ldigest.c — the hashes of HTTP digest authentication (MD5, SHA-256,
 * SHA-512-256) from OpenSSL, for lua/luasip/digest.lua. */
#include "lcore.h"

#include <sofia-sip/su_string.h>

#include <openssl/evp.h>

/* core.hash(algorithm, data) -> lower-case hex */
static int l_hash(lua_State *L)
{
  char const *alg = luaL_checkstring(L, 1);
  size_t len;
  char const *data = luaL_checklstring(L, 2, &len);
  EVP_MD const *md = NULL;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  if (su_casematch(alg, "MD5"))
    md = EVP_md5();
  else if (su_casematch(alg, "SHA-256"))
    md = EVP_sha256();
  else if (su_casematch(alg, "SHA-512-256"))
    md = EVP_sha512_256();
  if (!md)
    return luaL_error(L, "core.hash: unknown algorithm '%s'", alg);
  if (!EVP_Digest(data, len, out, &outlen, md, NULL))
    return luaL_error(L, "core.hash: digest failed");
  for (unsigned i = 0; i < outlen; i++) {
    static char const digits[] = "0123456789abcdef";
    hex[2 * i] = digits[out[i] >> 4];
    hex[2 * i + 1] = digits[out[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * outlen);
  return 1;
}

void lsip_open_digest(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = { { "hash", l_hash }, { NULL, NULL } };
  lsip_setfuncs(L, ctx, funcs);
}
