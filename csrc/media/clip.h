/* clip.h — audio files decoded once, for playing to many calls.
 *
 * A clip is a whole file (any format libsndfile reads) mixed down to mono
 * and resampled (speexdsp) to the rate a codec wants, held in memory. A
 * cache keeps clips by path, rate, size and modification time: a prompt
 * played to a thousand callers is read and resampled once. Clips are
 * reference counted; unreferenced ones stay cached up to a byte budget,
 * least recently used first out.
 *
 * A clip also keeps its encodings: the packets one codec setting makes of
 * it at one packet size. The first player encodes packet by packet as it
 * plays (the cost of a live encoding, never a stall); every later player of
 * the same file, codec and settings only copies the packets. No Lua. */
#ifndef LUASIP_MEDIA_CLIP_H
#define LUASIP_MEDIA_CLIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct clip clip_t;
typedef struct clip_enc clip_enc_t;
typedef struct codec codec_t;
typedef struct clip_cache clip_cache_t;

/* The longest file a clip holds (longer ones are refused). */
#define CLIP_MAX_SECONDS 3600

clip_cache_t *clip_cache_create(size_t budget_bytes);
/* Frees every clip; clips still referenced must be released first. */
void clip_cache_destroy(clip_cache_t *c);

/* The clip of path at rate (a new reference), loading it if needed; NULL
 * with err when the file cannot be read. */
clip_t *clip_get(clip_cache_t *c, char const *path, unsigned rate, char *err, size_t errlen);
void clip_release(clip_t *clip);

int16_t const *clip_samples(clip_t const *clip, size_t *n);

/* The clip's encoding by codec c's settings (codec_key) in packets of
 * ptime samples: shared, owned by the clip; NULL when out of memory. */
clip_enc_t *clip_encoding(clip_t *clip, codec_t const *c, unsigned ptime);
size_t clip_enc_packets(clip_enc_t const *x);
/* Packet i's payload (the last one padded with silence), encoding what no
 * player has encoded yet; NULL past the end or when encoding fails. */
uint8_t const *clip_packet(clip_enc_t *x, size_t i, size_t *len);

typedef struct {
  unsigned clips, referenced;
  size_t bytes;
  uint64_t hits, loads;
  unsigned encodings;        /* the encoded-prompt cache: encodings held, */
  uint64_t encoded, reused; /* packets encoded, and copied from an encoding */
} clip_stats_t;
clip_stats_t clip_cache_stats(clip_cache_t const *c);

#endif
