/* sdpmap.h — from a negotiated remote session description (parsed by
 * sofia's SDP parser) to what a media session needs: where to send, which
 * codec and payload types, RTCP, direction, SRTP crypto lines. No Lua. */
#ifndef LUASIP_MEDIA_SDPMAP_H
#define LUASIP_MEDIA_SDPMAP_H

#include <stddef.h>

#define SDPMAP_MAX_CRYPTO 4
#define SDPMAP_MAX_STREAMS 8

/* One m= line as offered, so that an answer can list every stream in the
 * same order and reject those it does not take (RFC 3264 §6). */
typedef struct {
  char media[16];     /* "audio", "video", ... */
  char proto[24];     /* "RTP/AVP", ... */
  char fmt[32];       /* the first format */
} sdpmap_stream_t;

typedef struct {
  int tag;
  char suite[32];     /* AES_CM_128_HMAC_SHA1_80, ... */
  char key[128];      /* the inline: key-params, without "inline:" */
} sdpmap_crypto_t;

typedef struct {
  char addr[64];       /* connection address (numeric) */
  int ipv6;
  unsigned port;       /* 0: the stream is rejected */
  unsigned rtcp_port;  /* a=rtcp or port + 1 */
  int rtcp_mux;        /* a=rtcp-mux */
  int pt;              /* chosen codec's payload type, -1 if none we know */
  char codec[16];      /* "PCMU", "PCMA", "opus" */
  unsigned rate, channels;
  unsigned ptime;      /* ms, 0 when not given */
  char fmtp[256];      /* the chosen codec's fmtp, "" if none */
  int te_pt;           /* telephone-event (at the codec's rate if offered), -1 if none */
  unsigned te_rate;    /* its clock rate */
  int sendrecv;        /* bit 1: the peer sends, bit 2: the peer receives */
  int secure;          /* RTP/SAVP or RTP/SAVPF */
  int ncrypto;
  sdpmap_crypto_t crypto[SDPMAP_MAX_CRYPTO];
  int nstreams;        /* every m= line */
  int audio;           /* the index of the stream mapped above */
  sdpmap_stream_t streams[SDPMAP_MAX_STREAMS];
} sdpmap_t;

/* Map the first audio stream of sdp[0..len). 0 on success; -1 with a reason
 * in err when the description does not parse, has no audio stream or no
 * usable address, or more than SDPMAP_MAX_STREAMS streams. A stream with no
 * codec we know maps with pt -1. */
int sdpmap_parse(char const *sdp, size_t len, sdpmap_t *out, char *err, size_t errlen);
/* The same, choosing only among the codecs named in allow (a comma list,
 * case-insensitive; NULL: any we have), still in the peer's order. */
int sdpmap_parse_allow(char const *sdp, size_t len, char const *allow, sdpmap_t *out, char *err,
                       size_t errlen);

/* The codecs the engine has: 1 if name/rate/channels is one of them. */
int sdpmap_known_codec(char const *name, unsigned rate, unsigned channels);

#endif
