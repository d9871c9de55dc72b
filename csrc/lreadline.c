/* lreadline.c — luasip.readline: libedit's readline callback interface, so
 * the REPL edits lines while the loop keeps running (stdin is just another
 * watched fd). libedit's readline API is one global terminal session, so the
 * few statics here mirror that; there is one REPL per process. */
#include "compat.h"

#include <editline/readline.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *completed_line;   /* set by the line handler */
static int line_state;         /* 0 none, 1 line, 2 EOF */
static int installed;
static char *prompt_copy;
static lua_State *completion_L; /* the state inside read_char(), for completion */
static int completer_ref = LUA_NOREF;

static void line_handler(char *line)
{
  free(completed_line);
  completed_line = line;
  line_state = line ? 1 : 2;
  /* libedit leaves the terminal cooked until install() is called again, so
   * output of the evaluated line lands before the next prompt. */
  installed = 0;
}

/* Matches for the word being completed: [0] is the longest common prefix,
 * as readline expects. */
static char **complete(const char *text, int start, int end)
{
  lua_State *L = completion_L;
  char **matches = NULL;
  int n;
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  if (!L || completer_ref == LUA_NOREF)
    return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushstring(L, text);
  lua_pushstring(L, rl_line_buffer);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  n = (int)lua_rawlen(L, -1);
  if (n > 0 && (matches = calloc((size_t)n + 2, sizeof *matches))) {
    size_t common = SIZE_MAX;
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      matches[i] = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
      lua_pop(L, 1);
      if (i == 1)
        common = strlen(matches[1]);
      else {
        size_t k = 0;
        while (k < common && matches[i][k] == matches[1][k])
          k++;
        common = k;
      }
    }
    matches[0] = strndup(matches[1], common);
    rl_completion_append_character = '\0'; /* "luasip.sleep" then "(" */
  }
  lua_pop(L, 1);
  return matches;
}

/* install(prompt) — show the prompt and start reading a line */
static int l_install(lua_State *L)
{
  char const *prompt = luaL_checkstring(L, 1);
  free(prompt_copy);
  prompt_copy = strdup(prompt);
  rl_callback_handler_install(prompt_copy, line_handler);
  installed = 1;
  return 0;
}

static int l_remove(lua_State *L)
{
  (void)L;
  if (installed)
    rl_callback_handler_remove();
  installed = 0;
  return 0;
}

/* read_char() -> line | false (EOF) | nil (line not complete yet) */
static int l_read_char(lua_State *L)
{
  line_state = 0;
  completion_L = L;
  rl_callback_read_char();
  completion_L = NULL;
  if (line_state != 0) {
    /* This libedit re-enters unbuffered mode, printing a fresh prompt,
     * before it hands over the line: erase it, the caller's output goes
     * here and install() prints the next prompt. */
    fputs("\r\033[2K", stdout);
    fflush(stdout);
  }
  if (line_state == 1) {
    lua_pushstring(L, completed_line);
    free(completed_line);
    completed_line = NULL;
    return 1;
  }
  if (line_state == 2) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* print_above(text) — print while a line is being edited, then redraw the
 * prompt and the partial line below it. */
static int l_print_above(lua_State *L)
{
  size_t len;
  char const *text = luaL_checklstring(L, 1, &len);
  if (!installed) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
  }
  fputs("\r\033[2K", stdout);
  fwrite(text, 1, len, stdout);
  if (len == 0 || text[len - 1] != '\n')
    fputc('\n', stdout);
  fflush(stdout);
  rl_forced_update_display();
  return 0;
}

/* cancel_line() — Ctrl-C at the prompt: drop the partial line, new prompt */
static int l_cancel_line(lua_State *L)
{
  (void)L;
  if (!installed)
    return 0;
  rl_replace_line("", 0);
  fputs("\n", stdout);
  fflush(stdout);
  rl_forced_update_display();
  return 0;
}

static int l_add_history(lua_State *L)
{
  add_history(luaL_checkstring(L, 1));
  return 0;
}

static int l_read_history(lua_State *L)
{
  lua_pushboolean(L, read_history(luaL_checkstring(L, 1)) == 0);
  return 1;
}

static int l_write_history(lua_State *L)
{
  char const *path = luaL_checkstring(L, 1);
  int keep = (int)luaL_optinteger(L, 2, 1000);
  int ok = write_history(path) == 0;
  if (ok)
    history_truncate_file(path, keep);
  lua_pushboolean(L, ok);
  return 1;
}

/* set_completer(fn(word, line) -> {candidates}) */
static int l_set_completer(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushvalue(L, 1);
  completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* read_fd(fd) -> bytes | false (EOF) | nil (nothing now). One read(2) of
 * what is there, for line input when stdin is not a terminal: stdio would
 * buffer lines the loop's watch then never hears about. */
static int l_read_fd(lua_State *L)
{
  char buf[4096];
  ssize_t n = read((int)luaL_checkinteger(L, 1), buf, sizeof buf);
  if (n > 0)
    lua_pushlstring(L, buf, (size_t)n);
  else if (n == 0)
    lua_pushboolean(L, 0);
  else
    lua_pushnil(L);
  return 1;
}

static int l_isatty(lua_State *L)
{
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 0)));
  return 1;
}

/* Runs when the state closes, before lua_close() unloads this library and
 * with it the statics that still point at these allocations. */
static int module_gc(lua_State *L)
{
  (void)L;
  if (installed)
    rl_callback_handler_remove();
  installed = 0;
  free(prompt_copy);
  prompt_copy = NULL;
  free(completed_line);
  completed_line = NULL;
  completer_ref = LUA_NOREF;
  return 0;
}

int luaopen_luasip_readline(lua_State *L)
{
  static luaL_Reg const funcs[] = {
    { "install", l_install }, { "remove", l_remove },
    { "read_char", l_read_char }, { "print_above", l_print_above },
    { "cancel_line", l_cancel_line }, { "add_history", l_add_history },
    { "read_history", l_read_history }, { "write_history", l_write_history },
    { "set_completer", l_set_completer }, { "isatty", l_isatty },
    { "read_fd", l_read_fd },
    { NULL, NULL },
  };
  compat_pin_module((void *)luaopen_luasip_readline);
  /* luasip owns SIGINT/SIGTERM; libedit's handlers would re-raise them to
   * the whole process group. */
  rl_catch_signals = 0;
  rl_attempted_completion_function = complete;
  rl_readline_name = "luasip";
  using_history();
  lua_newuserdata(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, module_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_newlib(L, funcs);
  return 1;
}
