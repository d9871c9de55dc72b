/* sdes.c — see sdes.h. */
#include "media/sdes.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sdes {
  srtp_t tx, rx;
};

/* libsrtp2 is initialised once per process (its own global state). */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_ok;
static void init(void) { init_ok = srtp_init() == srtp_err_status_ok; }

typedef struct {
  char const *name;
  size_t key_len; /* master key + salt */
  void (*rtp)(srtp_crypto_policy_t *);
  void (*rtcp)(srtp_crypto_policy_t *);
} suite_t;

static suite_t const suites[] = {
  { "AES_CM_128_HMAC_SHA1_80", SRTP_AES_ICM_128_KEY_LEN_WSALT,
    srtp_crypto_policy_set_rtp_default, srtp_crypto_policy_set_rtcp_default },
  /* RFC 4568 §6.2.2: the _32 tag is for SRTP; SRTCP keeps the 80-bit tag */
  { "AES_CM_128_HMAC_SHA1_32", SRTP_AES_ICM_128_KEY_LEN_WSALT,
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32, srtp_crypto_policy_set_rtcp_default },
  { "AEAD_AES_128_GCM", SRTP_AES_GCM_128_KEY_LEN_WSALT,
    srtp_crypto_policy_set_aes_gcm_128_16_auth, srtp_crypto_policy_set_aes_gcm_128_16_auth },
};

static suite_t const *find(char const *name)
{
  for (size_t i = 0; name && i < sizeof suites / sizeof suites[0]; i++)
    if (!strcmp(suites[i].name, name))
      return &suites[i];
  return NULL;
}

int sdes_suite_known(char const *suite) { return find(suite) != NULL; }

int sdes_new_key(char const *suite, char *b64, size_t size)
{
  suite_t const *s = find(suite);
  unsigned char key[64];
  if (!s || size < 4 * ((s->key_len + 2) / 3) + 1 || RAND_bytes(key, (int)s->key_len) != 1)
    return -1;
  EVP_EncodeBlock((unsigned char *)b64, key, (int)s->key_len);
  return 0;
}

/* The master key and salt of an inline key-params ("KEY[|lifetime]"). */
static int decode_key(char const *param, size_t want, unsigned char *out, char *err, size_t errlen)
{
  char b64[128];
  unsigned char raw[96];
  size_t n = strcspn(param, "|");
  int got;
  if (param[n] == '|' && strchr(param + n + 1, '|')) {
    snprintf(err, errlen, "SRTP keys with an MKI are not supported");
    return -1;
  }
  if (n == 0 || n >= sizeof b64 || n % 4) {
    snprintf(err, errlen, "malformed SRTP key");
    return -1;
  }
  memcpy(b64, param, n);
  b64[n] = 0;
  got = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)n);
  if (got < 0) {
    snprintf(err, errlen, "malformed SRTP key (base64)");
    return -1;
  }
  /* EVP_DecodeBlock counts the padding as zero bytes */
  if (n >= 1 && b64[n - 1] == '=')
    got--;
  if (n >= 2 && b64[n - 2] == '=')
    got--;
  if ((size_t)got != want) {
    snprintf(err, errlen, "SRTP key of %d bytes, the suite needs %zu", got, want);
    return -1;
  }
  memcpy(out, raw, want);
  return 0;
}

static int make(srtp_t *ctx, suite_t const *su, unsigned char *key, int inbound)
{
  srtp_policy_t p;
  memset(&p, 0, sizeof p);
  su->rtp(&p.rtp);
  su->rtcp(&p.rtcp);
  p.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
  p.key = key;
  p.window_size = 1024;
  p.allow_repeat_tx = 1; /* the RFC 4733 end packet goes out three times */
  return srtp_create(ctx, &p) == srtp_err_status_ok ? 0 : -1;
}

sdes_t *sdes_create(char const *suite, char const *local_key, char const *remote_key, char *err,
                    size_t errlen)
{
  suite_t const *su = find(suite);
  unsigned char lk[64], rk[64];
  sdes_t *s;
  pthread_once(&once, init);
  if (!init_ok) {
    snprintf(err, errlen, "libsrtp2 did not initialise");
    return NULL;
  }
  if (!su) {
    snprintf(err, errlen, "unknown SRTP suite %.40s", suite ? suite : "?");
    return NULL;
  }
  if (decode_key(local_key, su->key_len, lk, err, errlen) < 0 ||
      decode_key(remote_key, su->key_len, rk, err, errlen) < 0)
    return NULL;
  s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (make(&s->tx, su, lk, 0) < 0 || make(&s->rx, su, rk, 1) < 0) {
    snprintf(err, errlen, "libsrtp2 refused the %s keys", suite);
    sdes_destroy(s);
    return NULL;
  }
  return s;
}

void sdes_destroy(sdes_t *s)
{
  if (!s)
    return;
  if (s->tx)
    srtp_dealloc(s->tx);
  if (s->rx)
    srtp_dealloc(s->rx);
  free(s);
}

int sdes_protect(sdes_t *s, uint8_t *pkt, int *len, int rtcp)
{
  srtp_err_status_t st = rtcp ? srtp_protect_rtcp(s->tx, pkt, len) : srtp_protect(s->tx, pkt, len);
  return st == srtp_err_status_ok ? SDES_OK : SDES_FAIL;
}

int sdes_unprotect(sdes_t *s, uint8_t *pkt, int *len, int rtcp)
{
  srtp_err_status_t st =
    rtcp ? srtp_unprotect_rtcp(s->rx, pkt, len) : srtp_unprotect(s->rx, pkt, len);
  if (st == srtp_err_status_ok)
    return SDES_OK;
  if (st == srtp_err_status_auth_fail)
    return SDES_AUTH;
  if (st == srtp_err_status_replay_fail || st == srtp_err_status_replay_old)
    return SDES_REPLAY;
  return SDES_FAIL;
}
