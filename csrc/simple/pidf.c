/* pidf.c — see pidf.h. */
#include "simple/pidf.h"

#include <expat.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ------------------------------------------------------------ */

/* What an element is, from its parent and its namespace-qualified name. */
enum elem {
  E_OTHER, E_PRESENCE, E_TUPLE, E_STATUS, E_BASIC, E_CONTACT, E_TNOTE, E_TIMESTAMP,
  E_NOTE, E_PERSON, E_ACTIVITIES, E_ACTIVITY, E_ISCOMPOSING, E_STATE, E_LASTACTIVE,
  E_CONTENTTYPE, E_REFRESH,
};

enum doc { DOC_PIDF, DOC_ISCOMPOSING };

typedef struct {
  XML_Parser xp;
  enum doc doc;
  int depth;
  enum elem stack[PIDF_MAX_DEPTH + 1];
  char *text;                /* the text of the element being captured */
  size_t ntext;
  char *activity;            /* the RPID activity element being read */
  int failed;
  char *err;
  size_t errlen;
  pidf_t *p;
  iscomposing_t *c;
  int have_state;
  unsigned flags;            /* PIDF_LENIENT */
} parse_t;

static void fail(parse_t *x, char const *fmt, ...)
{
  va_list ap;
  if (x->failed)
    return;
  x->failed = 1;
  va_start(ap, fmt);
  vsnprintf(x->err, x->errlen, fmt, ap);
  va_end(ap);
  XML_StopParser(x->xp, XML_FALSE);
}

/* Split expat's "namespace-URI local" name. */
static int is(char const *name, char const *ns, char const *local)
{
  size_t n = strlen(ns);
  return strncmp(name, ns, n) == 0 && name[n] == ' ' && strcmp(name + n + 1, local) == 0;
}

static char const *local_in(char const *name, char const *ns)
{
  size_t n = strlen(ns);
  return strncmp(name, ns, n) == 0 && name[n] == ' ' ? name + n + 1 : NULL;
}

/* An unprefixed attribute's value, or NULL. */
static char const *attr(char const **atts, char const *name)
{
  for (; atts && atts[0]; atts += 2)
    if (strcmp(atts[0], name) == 0)
      return atts[1];
  return NULL;
}

static int captures(enum elem e)
{
  switch (e) {
  case E_BASIC: case E_CONTACT: case E_TNOTE: case E_TIMESTAMP: case E_NOTE:
  case E_ACTIVITY: case E_STATE: case E_LASTACTIVE: case E_CONTENTTYPE: case E_REFRESH:
    return 1;
  default:
    return 0;
  }
}

static char *dup_str(parse_t *x, char const *s)
{
  char *d = strdup(s);
  if (!d)
    fail(x, "out of memory");
  return d;
}

static enum elem classify(parse_t *x, enum elem parent, char const *name, char const **atts)
{
  char const *v, *local;
  if (x->depth == 1) {
    if (x->doc == DOC_PIDF) {
      if (!is(name, PIDF_NS, "presence")) {
        fail(x, "not a PIDF document (the root is not " PIDF_NS " presence)");
        return E_OTHER;
      }
      if ((v = attr(atts, "entity")))
        x->p->entity = dup_str(x, v);
      return E_PRESENCE;
    }
    if (!is(name, ISCOMPOSING_NS, "isComposing")) {
      fail(x, "not an isComposing document (the root is not " ISCOMPOSING_NS " isComposing)");
      return E_OTHER;
    }
    return E_ISCOMPOSING;
  }
  switch (parent) {
  case E_PRESENCE:
    if (is(name, PIDF_NS, "tuple")) {
      pidf_tuple_t *t;
      if (x->p->ntuples >= PIDF_MAX_TUPLES) {
        fail(x, "more than %d tuples", PIDF_MAX_TUPLES);
        return E_OTHER;
      }
      if (!x->p->tuples && !(x->p->tuples = calloc(PIDF_MAX_TUPLES, sizeof *x->p->tuples))) {
        fail(x, "out of memory");
        return E_OTHER;
      }
      t = &x->p->tuples[x->p->ntuples++];
      t->priority = -1;
      if (!(v = attr(atts, "id"))) {
        fail(x, "a tuple without an id");
        return E_OTHER;
      }
      t->id = dup_str(x, v);
      return E_TUPLE;
    }
    if (is(name, PIDF_NS, "note"))
      return E_NOTE;
    if (is(name, PIDF_DM_NS, "person"))
      return E_PERSON;
    return E_OTHER;
  case E_TUPLE: {
    pidf_tuple_t *t = &x->p->tuples[x->p->ntuples - 1];
    if (is(name, PIDF_NS, "status"))
      return E_STATUS;
    if (is(name, PIDF_NS, "contact")) {
      if ((v = attr(atts, "priority"))) {
        char *end;
        double d = strtod(v, &end);
        if (end == v || *end || d < 0 || d > 1) {
          fail(x, "contact priority '%.40s' is not a number from 0 to 1", v);
          return E_OTHER;
        }
        t->priority = d;
      }
      return E_CONTACT;
    }
    if (is(name, PIDF_NS, "note"))
      return E_TNOTE;
    if (is(name, PIDF_NS, "timestamp"))
      return E_TIMESTAMP;
    return E_OTHER;
  }
  case E_STATUS:
    return is(name, PIDF_NS, "basic") ? E_BASIC : E_OTHER;
  case E_PERSON:
    if (is(name, PIDF_RPID_NS, "activities"))
      return E_ACTIVITIES;
    if (is(name, PIDF_DM_NS, "note"))
      return E_NOTE;
    return E_OTHER;
  case E_ACTIVITIES:
    local = local_in(name, PIDF_RPID_NS);
    if (!local || strcmp(local, "note") == 0)
      return E_OTHER;
    free(x->activity);
    x->activity = dup_str(x, local);
    return E_ACTIVITY;
  case E_ISCOMPOSING:
    if (is(name, ISCOMPOSING_NS, "state"))
      return E_STATE;
    if (is(name, ISCOMPOSING_NS, "lastactive"))
      return E_LASTACTIVE;
    if (is(name, ISCOMPOSING_NS, "contenttype"))
      return E_CONTENTTYPE;
    if (is(name, ISCOMPOSING_NS, "refresh"))
      return E_REFRESH;
    return E_OTHER;
  default:
    return E_OTHER;
  }
}

static void XMLCALL on_start(void *arg, XML_Char const *name, XML_Char const **atts)
{
  parse_t *x = arg;
  enum elem e;
  if (x->failed)
    return;
  if (++x->depth > PIDF_MAX_DEPTH) {
    fail(x, "elements nested deeper than %d", PIDF_MAX_DEPTH);
    return;
  }
  e = classify(x, x->depth > 1 ? x->stack[x->depth - 1] : E_OTHER, name, atts);
  x->stack[x->depth] = e;
  x->ntext = 0;
}

/* The captured text without surrounding white space, as a new string. */
static char *take_text(parse_t *x)
{
  size_t a = 0, b = x->ntext;
  char *s;
  while (a < b && isspace((unsigned char)x->text[a]))
    a++;
  while (b > a && isspace((unsigned char)x->text[b - 1]))
    b--;
  s = malloc(b - a + 1);
  if (!s) {
    fail(x, "out of memory");
    return NULL;
  }
  memcpy(s, x->text + a, b - a);
  s[b - a] = 0;
  return s;
}

static void add_to(parse_t *x, char **list, unsigned *n, unsigned max, char *s, char const *what)
{
  if (*n >= max) {
    free(s);
    fail(x, "more than %u %s", max, what);
    return;
  }
  list[(*n)++] = s;
}

static void set_once(char **field, char *s)
{
  if (*field)
    free(s);
  else
    *field = s;
}

static void XMLCALL on_end(void *arg, XML_Char const *name)
{
  parse_t *x = arg;
  enum elem e;
  char *s;
  (void)name;
  if (x->failed)
    return;
  e = x->stack[x->depth--];
  if (!captures(e))
    return;
  if (!(s = take_text(x)))
    return;
  x->ntext = 0;
  switch (e) {
  case E_BASIC: {
    pidf_tuple_t *t = &x->p->tuples[x->p->ntuples - 1];
    if (strcmp(s, "open") == 0)
      t->basic = PIDF_BASIC_OPEN;
    else if (strcmp(s, "closed") == 0)
      t->basic = PIDF_BASIC_CLOSED;
    else if (!(x->flags & PIDF_LENIENT))
      fail(x, "basic status '%.40s' is neither open nor closed", s);
    free(s);
    break;
  }
  case E_CONTACT:
    set_once(&x->p->tuples[x->p->ntuples - 1].contact, s);
    break;
  case E_TNOTE:
    set_once(&x->p->tuples[x->p->ntuples - 1].note, s);
    break;
  case E_TIMESTAMP:
    set_once(&x->p->tuples[x->p->ntuples - 1].timestamp, s);
    break;
  case E_NOTE:
    add_to(x, x->p->notes, &x->p->nnotes, PIDF_MAX_NOTES, s, "notes");
    break;
  case E_ACTIVITY:
    /* <rpid:other>text</rpid:other> names itself by its text */
    if (strcmp(x->activity, "other") == 0 && *s) {
      add_to(x, x->p->activities, &x->p->nactivities, PIDF_MAX_ACTIVITIES, s, "activities");
    } else {
      free(s);
      add_to(x, x->p->activities, &x->p->nactivities, PIDF_MAX_ACTIVITIES,
             dup_str(x, x->activity), "activities");
    }
    break;
  case E_STATE:
    if (strcmp(s, "active") == 0)
      x->c->active = 1;
    else if (strcmp(s, "idle") == 0)
      x->c->active = 0;
    else
      fail(x, "isComposing state '%.40s' is neither active nor idle", s);
    x->have_state = 1;
    free(s);
    break;
  case E_LASTACTIVE:
    set_once(&x->c->last_active, s);
    break;
  case E_CONTENTTYPE:
    set_once(&x->c->content_type, s);
    break;
  case E_REFRESH: {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v > 86400)
      fail(x, "isComposing refresh '%.40s' is not a number of seconds", s);
    else
      x->c->refresh = (unsigned)v;
    free(s);
    break;
  }
  default:
    free(s);
  }
}

static void XMLCALL on_text(void *arg, XML_Char const *s, int len)
{
  parse_t *x = arg;
  if (x->failed || x->depth < 1 || !captures(x->stack[x->depth]) || len <= 0)
    return;
  if (x->ntext + (size_t)len > PIDF_MAX_TEXT) {
    fail(x, "a text longer than %d bytes", PIDF_MAX_TEXT);
    return;
  }
  memcpy(x->text + x->ntext, s, (size_t)len);
  x->ntext += (size_t)len;
}

static void XMLCALL on_doctype(void *arg, XML_Char const *name, XML_Char const *sysid,
                               XML_Char const *pubid, int internal)
{
  (void)name, (void)sysid, (void)pubid, (void)internal;
  fail(arg, "a document type declaration is not allowed");
}

static int parse(enum doc doc, char const *buf, size_t len, unsigned flags, pidf_t *p, iscomposing_t *c,
                 char *err, size_t errlen)
{
  parse_t x;
  int ok;
  memset(&x, 0, sizeof x);
  x.doc = doc, x.flags = flags, x.p = p, x.c = c, x.err = err, x.errlen = errlen;
  if (errlen)
    err[0] = 0;
  if (len > (size_t)0x7fffffff) {
    snprintf(err, errlen, "document too large");
    return -1;
  }
  x.text = malloc(PIDF_MAX_TEXT);
  x.xp = XML_ParserCreateNS(NULL, ' ');
  if (!x.text || !x.xp) {
    free(x.text);
    if (x.xp)
      XML_ParserFree(x.xp);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  XML_SetUserData(x.xp, &x);
  XML_SetElementHandler(x.xp, on_start, on_end);
  XML_SetCharacterDataHandler(x.xp, on_text);
  XML_SetStartDoctypeDeclHandler(x.xp, on_doctype);
  ok = XML_Parse(x.xp, buf, (int)len, XML_TRUE) == XML_STATUS_OK;
  if (!ok && !x.failed)
    snprintf(err, errlen, "malformed XML at line %lu: %s", (unsigned long)XML_GetCurrentLineNumber(x.xp),
             XML_ErrorString(XML_GetErrorCode(x.xp)));
  if (ok && !x.failed && doc == DOC_ISCOMPOSING && !x.have_state)
    fail(&x, "an isComposing document without a state");
  XML_ParserFree(x.xp);
  free(x.text);
  free(x.activity);
  return ok && !x.failed ? 0 : -1;
}

int pidf_parse(char const *buf, size_t len, unsigned flags, pidf_t *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof *out);
  if (parse(DOC_PIDF, buf, len, flags, out, NULL, err, errlen) < 0) {
    pidf_free(out);
    return -1;
  }
  return 0;
}

void pidf_free(pidf_t *p)
{
  if (!p)
    return;
  free(p->entity);
  for (unsigned i = 0; i < p->ntuples; i++) {
    free(p->tuples[i].id);
    free(p->tuples[i].contact);
    free(p->tuples[i].note);
    free(p->tuples[i].timestamp);
  }
  free(p->tuples);
  for (unsigned i = 0; i < p->nnotes; i++)
    free(p->notes[i]);
  for (unsigned i = 0; i < p->nactivities; i++)
    free(p->activities[i]);
  memset(p, 0, sizeof *p);
}

int iscomposing_parse(char const *buf, size_t len, iscomposing_t *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof *out);
  if (parse(DOC_ISCOMPOSING, buf, len, 0, NULL, out, err, errlen) < 0) {
    iscomposing_free(out);
    return -1;
  }
  return 0;
}

void iscomposing_free(iscomposing_t *c)
{
  if (!c)
    return;
  free(c->content_type);
  free(c->last_active);
  memset(c, 0, sizeof *c);
}

/* ---- building ----------------------------------------------------------- */

typedef struct {
  char *s;
  size_t n, cap;
  int oom;
} buf_t;

static void put(buf_t *b, char const *s, size_t n)
{
  if (b->oom)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 512;
    char *t;
    while (cap < b->n + n + 1)
      cap *= 2;
    if (!(t = realloc(b->s, cap))) {
      b->oom = 1;
      return;
    }
    b->s = t, b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}

static void puts_(buf_t *b, char const *s) { put(b, s, strlen(s)); }

/* Text or an attribute value, escaped; tab, newline and carriage return
 * as character references, so that they survive attribute-value and
 * line-end normalisation; other control characters, which XML 1.0 cannot
 * carry, are dropped. */
static void put_escaped(buf_t *b, char const *s)
{
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    switch (ch) {
    case '&': puts_(b, "&amp;"); break;
    case '<': puts_(b, "&lt;"); break;
    case '>': puts_(b, "&gt;"); break;
    case '"': puts_(b, "&quot;"); break;
    case '\'': puts_(b, "&apos;"); break;
    case '\t': puts_(b, "&#9;"); break;
    case '\n': puts_(b, "&#10;"); break;
    case '\r': puts_(b, "&#13;"); break;
    default:
      if (ch >= 0x20)
        put(b, s, 1);
    }
  }
}

static void element(buf_t *b, char const *name, char const *text)
{
  puts_(b, "<"), puts_(b, name), puts_(b, ">");
  put_escaped(b, text);
  puts_(b, "</"), puts_(b, name), puts_(b, ">");
}

/* An RPID activity written as its own element: a name of letters, digits
 * and hyphens; anything else goes in <rpid:other>. */
static int activity_name(char const *s)
{
  if (!*s || !isalpha((unsigned char)*s))
    return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '-')
      return 0;
  return 1;
}

static char *finish(buf_t *b)
{
  if (b->oom) {
    free(b->s);
    return NULL;
  }
  return b->s;
}

char *pidf_build(pidf_t const *p)
{
  buf_t b = { 0 };
  char num[32];
  puts_(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"" PIDF_NS "\"");
  if (p->nactivities)
    puts_(&b, " xmlns:dm=\"" PIDF_DM_NS "\" xmlns:rpid=\"" PIDF_RPID_NS "\"");
  puts_(&b, " entity=\"");
  put_escaped(&b, p->entity ? p->entity : "");
  puts_(&b, "\">\n");
  for (unsigned i = 0; i < p->ntuples; i++) {
    pidf_tuple_t const *t = &p->tuples[i];
    puts_(&b, "  <tuple id=\"");
    if (t->id) {
      put_escaped(&b, t->id);
    } else {
      snprintf(num, sizeof num, "t%u", i + 1);
      puts_(&b, num);
    }
    puts_(&b, "\">\n    <status>");
    if (t->basic != PIDF_BASIC_NONE)
      element(&b, "basic", t->basic == PIDF_BASIC_OPEN ? "open" : "closed");
    puts_(&b, "</status>\n");
    if (t->contact) {
      puts_(&b, "    <contact");
      if (t->priority >= 0 && t->priority <= 1) {
        snprintf(num, sizeof num, " priority=\"%.3g\"", t->priority);
        puts_(&b, num);
      }
      puts_(&b, ">");
      put_escaped(&b, t->contact);
      puts_(&b, "</contact>\n");
    }
    if (t->note)
      puts_(&b, "    "), element(&b, "note", t->note), puts_(&b, "\n");
    if (t->timestamp)
      puts_(&b, "    "), element(&b, "timestamp", t->timestamp), puts_(&b, "\n");
    puts_(&b, "  </tuple>\n");
  }
  /* tuples, then notes, then other namespaces (RFC 3863 §4.4) */
  for (unsigned i = 0; i < p->nnotes; i++)
    puts_(&b, "  "), element(&b, "note", p->notes[i]), puts_(&b, "\n");
  if (p->nactivities) {
    puts_(&b, "  <dm:person id=\"p1\">\n    <rpid:activities>");
    for (unsigned i = 0; i < p->nactivities; i++) {
      if (activity_name(p->activities[i])) {
        puts_(&b, "<rpid:"), puts_(&b, p->activities[i]), puts_(&b, "/>");
      } else {
        element(&b, "rpid:other", p->activities[i]);
      }
    }
    puts_(&b, "</rpid:activities>\n  </dm:person>\n");
  }
  puts_(&b, "</presence>\n");
  return finish(&b);
}

char *iscomposing_build(iscomposing_t const *c)
{
  buf_t b = { 0 };
  char num[32];
  puts_(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<isComposing xmlns=\"" ISCOMPOSING_NS "\">\n  ");
  element(&b, "state", c->active ? "active" : "idle");
  puts_(&b, "\n");
  if (c->last_active)
    puts_(&b, "  "), element(&b, "lastactive", c->last_active), puts_(&b, "\n");
  if (c->content_type)
    puts_(&b, "  "), element(&b, "contenttype", c->content_type), puts_(&b, "\n");
  if (c->refresh) {
    snprintf(num, sizeof num, "%u", c->refresh);
    puts_(&b, "  "), element(&b, "refresh", num), puts_(&b, "\n");
  }
  puts_(&b, "</isComposing>\n");
  return finish(&b);
}
