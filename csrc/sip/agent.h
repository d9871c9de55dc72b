/* agent.h — a SIP transaction agent (nta) bound to one address on one or
 * more transports, set up as a proxy/registrar (not a UA). Pure C; csrc/lagent.c binds it.
 * Requests go to the application (csrc/lrequest.c makes them Lua objects);
 * responses to requests it proxied statelessly go back upstream here. */
#ifndef LUASIP_SIP_AGENT_H
#define LUASIP_SIP_AGENT_H

#include <sofia-sip/su_wait.h>
#include <sofia-sip/url.h>

typedef struct sip_agent sip_agent_t;

struct msg_s;
struct sip_s;
struct nta_agent_s;

/* A request for the application, which owns msg from then on (and may
 * answer it statelessly, or make it a transaction). Not called for
 * retransmissions or CANCELs of transactions in progress, ACKs of
 * non-2xx responses, or what the agent answered itself. */
typedef void sip_agent_request_f(void *arg, struct msg_s *msg, struct sip_s *sip);

typedef struct {
  char const *host;              /* literal address to bind */
  int port;                      /* 0: any free port, the same for all transports */
  char const *const *transports; /* "udp", "tcp"; NULL-terminated */
  unsigned max_size;             /* largest SIP message accepted, bytes */
  int trace;                     /* log every message sent and received */
  char const *user_agent;        /* Server header value, or NULL */
  char const *const *aliases;    /* other host names that mean us; NULL-terminated */
} sip_agent_config_t;

enum { SIP_AGENT_MAX_TPORTS = 8 };

sip_agent_t *sip_agent_create(su_root_t *root, sip_agent_config_t const *cfg,
                              sip_agent_request_f *cb, void *arg,
                              char *err, size_t errlen);
void sip_agent_destroy(sip_agent_t *a);

/* The bound port (the same on every transport). */
/* Around a call from nta into the application (a client transaction's
 * response): a sip_agent_destroy() meanwhile frees the agent only after
 * the outermost leave, on the next turn of the loop. */
void sip_agent_enter(sip_agent_t *a);
void sip_agent_leave(sip_agent_t *a);

int sip_agent_port(sip_agent_t const *a);
/* Bound listening points as "udp/127.0.0.1:5060" strings; returns count. */
int sip_agent_addresses(sip_agent_t const *a, char out[][96], int max);
int sip_agent_set_trace(sip_agent_t *a, int on);
/* Answer OPTIONS in C (200 with Allow) instead of handing them over. */
void sip_agent_answer_options(sip_agent_t *a, int on, char const *allow);
/* Is this URI one of ours: a bound address with our port, or an alias? */
int sip_agent_is_me(void *agent, url_t const *url);
struct nta_agent_s *sip_agent_nta(sip_agent_t const *a);
char const *sip_agent_user_agent(sip_agent_t const *a);

#endif
