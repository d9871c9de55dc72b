/* message_fuzz.c — libFuzzer target for csrc/lmsg.c, which turns a SIP
 * message sofia parsed off the network into Lua values: URI parameter
 * splitting, name-address parameters, challenge parameters (unquoting),
 * header lookup by name and compact name, and the raw encoding.
 *   make fuzz            # runs every target for FUZZ_SECONDS
 * Input: one SIP message, as it would arrive on a socket. Every field and
 * method of the message object is read from Lua; any Lua error fails. */
#include "lcore.h"

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_parser.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static char const reader[] =
  "return function(m)\n"
  "  local t = {}\n"
  "  for _, k in ipairs{'method','status','reason','is_request','uri','from','to','contact',\n"
  "      'contacts','call_id','cseq','body','content_type','source','source_port','transport'} do\n"
  "    t[k] = m[k]\n"
  "  end\n"
  "  for _, n in ipairs{'Via','v','From','f','Contact','m','X-Unknown','Authorization',\n"
  "      'WWW-Authenticate','Proxy-Authenticate','Content-Length','l'} do\n"
  "    t[n] = m:header(n); t[n .. '*'] = m:headers(n)\n"
  "  end\n"
  "  t.all = m:headers(); t.raw = m:raw(); t.ch = m:challenges(); t.s = tostring(m)\n"
  "  for _, a in ipairs(t.all) do assert(type(a[1]) == 'string' and type(a[2]) == 'string') end\n"
  "  m:remove_header('Via'); m:remove_header('X-Unknown'); pcall(m.set_header, m, 'X-Set', 'v')\n"
  "  pcall(m.add_header, m, 'Contact', '<sip:a@b>'); t.raw2 = m:raw()\n"
  "  return t\n"
  "end\n";

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  static lua_State *L;
  static int fn_ref;
  msg_t *msg;
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    lsip_open_msg(L, NULL);
    if (luaL_dostring(L, reader) != LUA_OK)
      abort();
    fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  msg = msg_make(sip_default_mclass(), 0, data, (ssize_t)size);
  if (!msg)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lsip_push_msg(L, msg);
  msg_destroy(msg); /* the message object holds its own reference */
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "reading the message failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
