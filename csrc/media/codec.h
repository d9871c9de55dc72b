/* codec.h — audio codecs behind one interface: PCMU and PCMA (G.711, with a
 * fading packet-repetition concealment) and Opus (RFC 7587, libopus; mono
 * at 48 kHz, its own concealment; fmtp maxaveragebitrate and useinbandfec
 * honoured when encoding). 16-bit linear PCM in and out at the codec's
 * audio rate. No Lua. */
#ifndef LUASIP_MEDIA_CODEC_H
#define LUASIP_MEDIA_CODEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct codec codec_t;

/* NULL when name/rate/channels is not a codec the engine has. */
codec_t *codec_create(char const *name, unsigned rate, unsigned channels, char const *fmtp);
void codec_destroy(codec_t *c);

char const *codec_name(codec_t const *c);
unsigned codec_audio_rate(codec_t const *c); /* PCM samples per second */
unsigned codec_rtp_rate(codec_t const *c);   /* RTP timestamp units per second */

/* What makes this codec's encoded output: name, rate and encoder settings
 * ("opus/48000 b=32000 fec=1"). Two codecs with the same key produce the
 * same packets for the same audio, so an encoding can be shared. */
char const *codec_key(codec_t const *c);
/* A new codec with c's settings (its own state): an encoder for a shared
 * encoding. */
codec_t *codec_twin(codec_t const *c);

/* Encode n samples; returns the payload length, or -1. */
int codec_encode(codec_t *c, int16_t const *pcm, int n, uint8_t *out, size_t size);
/* Decode a payload to at most max samples; returns how many, or -1. */
int codec_decode(codec_t *c, uint8_t const *in, size_t len, int16_t *pcm, int max);
/* Whether lost audio can be rebuilt from the packet after it (Opus's
 * in-band FEC; codec_recover), so a jitter buffer should hold that packet. */
int codec_has_fec(codec_t const *c);
/* Samples of audio a payload holds (its duration), or -1. */
int codec_packet_samples(codec_t const *c, uint8_t const *in, size_t len);
/* Recover the n samples lost just before the payload `next` from the
 * redundancy it carries (Opus in-band FEC); n, or -1 when the codec has
 * none (then conceal). */
int codec_recover(codec_t *c, uint8_t const *next, size_t len, int16_t *pcm, int n);
/* Make up n samples for a lost packet (packet-loss concealment). */
int codec_conceal(codec_t *c, int16_t *pcm, int n);

#endif
