rockspec_format = "3.0"
package = "luasip"
version = "scm-1"
source = {
  url = "git+file:///luasip",
}
description = {
  summary = "SIP applications as short Lua scripts on one C event loop (Sofia-SIP)",
  detailed = [[
luasip is a Lua module with a C core over Sofia-SIP. Registrars, proxies,
user agents, B2BUAs, IVR and presence bots become short Lua scripts driven by
one event loop, with coroutine tasks, a REPL and the `luasip` command.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  -- found with pkg-config by the Makefile: sofia-sip-ua, libedit
}
build = {
  type = "make",
  build_target = "rock",
  install_target = "rock-install",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
  install = {
    bin = { luasip = "bin/luasip" },
  },
}
