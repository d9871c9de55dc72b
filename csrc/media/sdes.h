/* sdes.h — SRTP (libsrtp2) keyed by SDES (RFC 4568): one outbound context
 * with our key, one inbound with the peer's, for RTP and RTCP. Suites:
 * AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM.
 * Keys are the base64 "inline:" key-params (a lifetime is accepted; an
 * MKI is not). No Lua. */
#ifndef LUASIP_MEDIA_SDES_H
#define LUASIP_MEDIA_SDES_H

#include <stddef.h>
#include <stdint.h>

typedef struct sdes sdes_t;

/* Room a protected packet needs beyond its plain length. */
#define SDES_TRAILER 32

enum { SDES_OK = 0, SDES_AUTH = -1, SDES_REPLAY = -2, SDES_FAIL = -3 };

int sdes_suite_known(char const *suite);
/* A fresh random key for suite, base64, into b64 (at least 64 bytes). */
int sdes_new_key(char const *suite, char *b64, size_t size);
sdes_t *sdes_create(char const *suite, char const *local_key, char const *remote_key, char *err,
                    size_t errlen);
void sdes_destroy(sdes_t *s);
/* In place; *len grows by at most SDES_TRAILER. */
int sdes_protect(sdes_t *s, uint8_t *pkt, int *len, int rtcp);
/* In place; SDES_OK, or SDES_AUTH / SDES_REPLAY / SDES_FAIL (drop it). */
int sdes_unprotect(sdes_t *s, uint8_t *pkt, int *len, int rtcp);

#endif
