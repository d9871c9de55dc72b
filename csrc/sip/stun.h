/* stun.h — learn the public address of a host behind NAT with a STUN
 * Binding request (RFC 5389/3489) through sofia's stun client. Pure C;
 * csrc/lua_ua.c binds it as core.stun(). */
#ifndef LUASIP_SIP_STUN_H
#define LUASIP_SIP_STUN_H

#include <sofia-sip/su_wait.h>

typedef struct sip_stun sip_stun_t;

/* addr is "ip" and port the mapped port on success; addr is NULL and err
 * says why otherwise. Called once, never from inside sip_stun_query(). */
typedef void sip_stun_f(void *arg, char const *addr, int port, char const *err);

/* Ask server ("host" or "host:port") what address a UDP socket bound on
 * local_host maps to. NULL with err filled when the query cannot start. */
sip_stun_t *sip_stun_query(su_root_t *root, char const *server, char const *local_host,
                           sip_stun_f *cb, void *arg, char *err, size_t errlen);
/* Cancel or clean up; safe after the callback, and from inside it. */
void sip_stun_destroy(sip_stun_t *q);

#endif
