/* pidf_fuzz.c — libFuzzer target for csrc/simple/pidf.c: PIDF and
 * isComposing bodies as they come in PUBLISH, NOTIFY and MESSAGE.
 *   make fuzz
 * Input: a selector byte (bit 0 clear: PIDF, parsed PIDF_LENIENT when bit 1
 * is set; bit 0 set: isComposing), then the body.
 * Beyond not crashing: whatever parses must survive building and parsing
 * again with the same content (ids, basic status, contact, priority to
 * three digits, notes, timestamps, activities; isComposing's fields). */
#include "simple/pidf.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same(char const *a, char const *b)
{
  return strcmp(a ? a : "", b ? b : "") == 0;
}

static void check_pidf(pidf_t const *a, pidf_t const *b)
{
  if (!same(a->entity, b->entity) || a->ntuples != b->ntuples || a->nnotes != b->nnotes ||
      a->nactivities != b->nactivities)
    abort();
  for (unsigned i = 0; i < a->ntuples; i++) {
    pidf_tuple_t const *x = &a->tuples[i], *y = &b->tuples[i];
    if (!same(x->id, y->id) || x->basic != y->basic || !same(x->contact, y->contact) ||
        !same(x->note, y->note) || !same(x->timestamp, y->timestamp))
      abort();
    /* a priority is written only with its contact */
    if (x->contact && (x->priority < 0) != (y->priority < 0))
      abort();
    if (x->contact && x->priority >= 0 && fabs(x->priority - y->priority) > 1e-3)
      abort();
  }
  for (unsigned i = 0; i < a->nnotes; i++)
    if (!same(a->notes[i], b->notes[i]))
      abort();
  for (unsigned i = 0; i < a->nactivities; i++)
    if (!same(a->activities[i], b->activities[i]))
      abort();
}

int LLVMFuzzerTestOneInput(uint8_t const *data, size_t size)
{
  char err[200];
  char *xml;
  if (size < 1 || size > 65536)
    return 0;
  if (data[0] % 2 == 0) {
    pidf_t p, q;
    if (pidf_parse((char const *)data + 1, size - 1, data[0] & 2 ? PIDF_LENIENT : 0, &p, err, sizeof err) < 0)
      return 0;
    if (!(xml = pidf_build(&p)))
      abort();
    if (pidf_parse(xml, strlen(xml), 0, &q, err, sizeof err) < 0)
      abort();
    check_pidf(&p, &q);
    pidf_free(&p);
    pidf_free(&q);
  } else {
    iscomposing_t c, d;
    if (iscomposing_parse((char const *)data + 1, size - 1, &c, err, sizeof err) < 0)
      return 0;
    if (!(xml = iscomposing_build(&c)))
      abort();
    if (iscomposing_parse(xml, strlen(xml), &d, err, sizeof err) < 0)
      abort();
    if (c.active != d.active || c.refresh != d.refresh || !same(c.content_type, d.content_type) ||
        !same(c.last_active, d.last_active))
      abort();
    iscomposing_free(&c);
    iscomposing_free(&d);
  }
  free(xml);
  return 0;
}
