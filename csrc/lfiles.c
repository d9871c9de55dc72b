/* lfiles.c — the few file-system calls the durable stores need and Lua
 * lacks (voicemail's audio folder):
 *
 *   core.mkdir(path [, mode])   -> true | nil, reason, errno name
 *       makes path and its missing parents (mkdir -p; mode default 0750)
 *   core.listdir(path)          -> { name, ... } (sorted, no . and ..) |
 *                                  nil, reason, errno name
 *   core.fsync_dir(path)        -> true | nil, reason, errno name
 *       makes the folder's entries (a rename, an unlink) durable */
#include "lcore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(lua_State *L, char const *path, int err)
{
  errno = err;
  return lsip_fail_errno(L, path);
}

static int l_mkdir(lua_State *L)
{
  size_t n;
  char const *path = luaL_checklstring(L, 1, &n);
  mode_t mode = (mode_t)luaL_optinteger(L, 2, 0750);
  char *p;

  if (n == 0 || n >= 4096)
    return luaL_argerror(L, 1, "a path of 1 to 4095 bytes");
  p = malloc(n + 1);
  if (!p)
    return luaL_error(L, "core.mkdir: out of memory");
  memcpy(p, path, n + 1);
  /* each parent in turn, then the folder itself */
  for (size_t i = 1; i <= n; i++) {
    if (i < n && p[i] != '/')
      continue;
    p[i] = '\0';
    if (mkdir(p, mode) != 0 && errno != EEXIST) {
      int err = errno;
      free(p);
      return fail(L, path, err);
    }
    if (i < n)
      p[i] = '/';
  }
  free(p);
  struct stat st;
  if (stat(path, &st) != 0)
    return fail(L, path, errno);
  if (!S_ISDIR(st.st_mode))
    return fail(L, path, ENOTDIR);
  lua_pushboolean(L, 1);
  return 1;
}

static int cmp_names(void const *a, void const *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int l_listdir(lua_State *L)
{
  char const *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0;
  int err = 0;

  if (!d)
    return fail(L, path, errno);
  while ((errno = 0, e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      char **nn = realloc(names, ncap * sizeof *nn);
      if (!nn) {
        err = ENOMEM;
        break;
      }
      names = nn;
      cap = ncap;
    }
    names[n] = strdup(e->d_name);
    if (!names[n]) {
      err = ENOMEM;
      break;
    }
    n++;
  }
  if (!err && errno)
    err = errno;
  closedir(d);
  if (!err && n > 1) /* names is NULL for an empty folder */
    qsort(names, n, sizeof *names, cmp_names);
  if (!err && !lua_checkstack(L, 2))
    err = ENOMEM;
  if (!err) {
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      lua_pushstring(L, names[i]);
      lua_rawseti(L, -2, (int)i + 1);
    }
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return err ? fail(L, path, err) : 1;
}

static int l_fsync_dir(lua_State *L)
{
  char const *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return fail(L, path, errno);
  if (fsync(fd) != 0) {
    int err = errno;
    close(fd);
    return fail(L, path, err);
  }
  close(fd);
  lua_pushboolean(L, 1);
  return 1;
}

void lsip_open_files(lua_State *L, lsip_ctx *ctx)
{
  static luaL_Reg const funcs[] = {
    { "mkdir", l_mkdir }, { "listdir", l_listdir }, { "fsync_dir", l_fsync_dir }, { NULL, NULL },
  };
  lsip_setfuncs(L, ctx, funcs);
}
