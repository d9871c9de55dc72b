/* agent.h — a SIP transaction agent (nta) bound to one address on one or
 * more transports, answering OPTIONS itself. Pure C; csrc/lagent.c binds it.
 * The server roles (issue: proxy, registrar) grow from here. */
#ifndef LUASIP_SIP_AGENT_H
#define LUASIP_SIP_AGENT_H

#include <sofia-sip/su_wait.h>

typedef struct sip_agent sip_agent_t;

/* What the application learns about a request the agent handled. */
typedef struct {
  char const *method;
  char const *request_uri;
  char const *from;      /* the From URI */
  char const *call_id;
  unsigned cseq;
  char const *transport; /* "udp", "tcp" */
  char const *src_addr;  /* source address, no brackets */
  int src_port;
  int status;            /* what the agent answered */
} sip_request_info_t;

typedef void sip_agent_request_f(void *arg, sip_request_info_t const *info);

typedef struct {
  char const *host;              /* literal address to bind */
  int port;                      /* 0: any free port, the same for all transports */
  char const *const *transports; /* "udp", "tcp"; NULL-terminated */
  unsigned max_size;             /* largest SIP message accepted, bytes */
  int trace;                     /* log every message sent and received */
  char const *user_agent;        /* Server header value, or NULL */
} sip_agent_config_t;

enum { SIP_AGENT_MAX_TPORTS = 8 };

sip_agent_t *sip_agent_create(su_root_t *root, sip_agent_config_t const *cfg,
                              sip_agent_request_f *cb, void *arg,
                              char *err, size_t errlen);
void sip_agent_destroy(sip_agent_t *a);

/* The bound port (the same on every transport). */
int sip_agent_port(sip_agent_t const *a);
/* Bound listening points as "udp/127.0.0.1:5060" strings; returns count. */
int sip_agent_addresses(sip_agent_t const *a, char out[][96], int max);
int sip_agent_set_trace(sip_agent_t *a, int on);

#endif
