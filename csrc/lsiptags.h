/* lsiptags.h — Lua option tables to sofia tag lists and back (lsiptags.c). */
#ifndef LUASIP_LSIPTAGS_H
#define LUASIP_LSIPTAGS_H

#include "lcore.h"

#include <sofia-sip/nua.h>
#include <sofia-sip/su_tag.h>

enum lsip_optset {
  LSIP_OPTS_REQUEST, /* a request or response: to, headers, sdp, ... */
  LSIP_OPTS_UA,      /* UA settings: url, proxy, certificate_dir, ... */
};

/* Fill tags (at most max, TAG_END included) from the option table at idx.
 * String values are kept alive in the table at `keep` until the call
 * returns; keys the set does not know are left to the Lua layer. Raises a
 * one-line error on a value of the wrong type or a bad header. */
int lsip_build_tags(lua_State *L, int idx, int keep, enum lsip_optset set,
                    tagi_t *tags, int max, su_home_t *home, char const *what);

/* headers = { Name = "value" | {"v1", ...}, ... } or { "Name: value", ... }
 * at index t: push the checked "Name: value\r\n..." text. */
void lsip_push_headers(lua_State *L, int t, char const *what);

/* The tags of a nua event as a table: callstate, offer/answer flags,
 * local_sdp, remote_sdp, audio (direction), substate, refer_event, contact. */
void lsip_push_event_info(lua_State *L, tagi_t const *tags);

/* The live nua handle of the luasip.handle at idx, or NULL (lua_ua.c). */
nua_handle_t *lsip_nua_handle_of(lua_State *L, int idx);

#endif
