/* pidf.h — SIMPLE bodies over expat, with no Lua: presence documents
 * (PIDF, RFC 3863, with the data model of RFC 4479 and RPID activities of
 * RFC 4480) and message composition indications (isComposing, RFC 3994).
 *
 * Parsing is namespace-aware: elements are matched by namespace URI and
 * local name, whatever prefixes the document uses; unknown elements are
 * skipped. A document type declaration is refused (no entity expansion),
 * and documents are bounded (PIDF_MAX_DEPTH, PIDF_MAX_TUPLES, ...).
 * Strings in the results are malloc'd, NUL-terminated UTF-8; free the
 * whole result with pidf_free / iscomposing_free. Building returns a
 * malloc'd document with every text and attribute escaped. */
#ifndef LUASIP_SIMPLE_PIDF_H
#define LUASIP_SIMPLE_PIDF_H

#include <stddef.h>

#define PIDF_NS "urn:ietf:params:xml:ns:pidf"
#define PIDF_DM_NS "urn:ietf:params:xml:ns:pidf:data-model"
#define PIDF_RPID_NS "urn:ietf:params:xml:ns:pidf:rpid"
#define ISCOMPOSING_NS "urn:ietf:params:xml:ns:im-iscomposing"

#define PIDF_MAX_DEPTH 32
#define PIDF_MAX_TUPLES 32
#define PIDF_MAX_NOTES 16
#define PIDF_MAX_ACTIVITIES 16
#define PIDF_MAX_TEXT 4096

enum pidf_basic { PIDF_BASIC_NONE, PIDF_BASIC_OPEN, PIDF_BASIC_CLOSED };

typedef struct {
  char *id;            /* the tuple's id attribute */
  enum pidf_basic basic;
  char *contact;       /* its contact URI, or NULL */
  double priority;     /* the contact's priority (0..1), or -1 */
  char *note;          /* its first note, or NULL */
  char *timestamp;     /* as written (RFC 3339), or NULL */
} pidf_tuple_t;

typedef struct {
  char *entity;        /* the presentity's URI */
  pidf_tuple_t *tuples;
  unsigned ntuples;
  char *notes[PIDF_MAX_NOTES]; /* presence-level and person notes, in order */
  unsigned nnotes;
  char *activities[PIDF_MAX_ACTIVITIES]; /* RPID activity names ("away",
                                            "on-the-phone", ...; "other"
                                            gives its text) */
  unsigned nactivities;
} pidf_t;

typedef struct {
  int active;          /* state: 1 active, 0 idle */
  char *content_type;  /* contenttype, or NULL */
  char *last_active;   /* lastactive, as written, or NULL */
  unsigned refresh;    /* seconds, 0 when absent */
} iscomposing_t;

/* pidf_parse flags. PIDF_LENIENT: a basic status other than open or closed
 * (baresip sends "?" before its user picks one) leaves the tuple's basic
 * PIDF_BASIC_NONE instead of failing the document. For what a watcher
 * receives; a presence server refuses such a PUBLISH. */
#define PIDF_LENIENT 1u

/* Parse a PIDF document into out (zeroed first). 0, or -1 with a reason
 * in err (out then holds nothing to free). */
int pidf_parse(char const *buf, size_t len, unsigned flags, pidf_t *out, char *err, size_t errlen);
void pidf_free(pidf_t *p);

/* A PIDF document for p (tuples, notes, and the activities in an RPID
 * person element), or NULL when memory runs out. */
char *pidf_build(pidf_t const *p);

int iscomposing_parse(char const *buf, size_t len, iscomposing_t *out, char *err, size_t errlen);
void iscomposing_free(iscomposing_t *c);
char *iscomposing_build(iscomposing_t const *c);

#endif
