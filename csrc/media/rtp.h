/* rtp.h — RTP and RTCP packets (RFC 3550) and telephone-events (RFC 4733):
 * parsing what arrives from the network (never trusting a length) and
 * writing what we send. No sockets, no Lua. */
#ifndef LUASIP_MEDIA_RTP_H
#define LUASIP_MEDIA_RTP_H

#include <stddef.h>
#include <stdint.h>

#define RTP_HEADER_LEN 12

typedef struct {
  uint8_t marker;
  uint8_t pt;          /* payload type, 0..127 */
  uint16_t seq;
  uint32_t ts;
  uint32_t ssrc;
  uint8_t csrc_count;
  uint16_t ext_profile; /* when has_ext */
  uint8_t has_ext;
  size_t payload_off;   /* payload = packet + payload_off */
  size_t payload_len;   /* without padding */
} rtp_header_t;

/* Parse an RTP packet. 0 on success; -1 when it is not RTP version 2, is
 * shorter than its header, CSRC list or extension say, or its padding count
 * is zero or larger than what is left. */
int rtp_parse(uint8_t const *p, size_t len, rtp_header_t *h);

/* Write a 12-byte header (no CSRC, no extension) to out. */
void rtp_write_header(uint8_t *out, int marker, unsigned pt, uint16_t seq, uint32_t ts,
                      uint32_t ssrc);

/* RTP or RTCP on one port (RFC 5761 §4): the second byte of RTCP is a
 * packet type 192..223 (as a payload type with the marker bit, 64..95). */
int rtp_is_rtcp(uint8_t const *p, size_t len);

/* ---- RTCP ---------------------------------------------------------------- */

enum { RTCP_SR = 200, RTCP_RR = 201, RTCP_SDES = 202, RTCP_BYE = 203, RTCP_APP = 204 };

typedef struct {
  uint32_t ssrc;         /* the source this block reports on */
  uint8_t fraction_lost; /* of 256 */
  int32_t cumulative_lost; /* 24-bit signed */
  uint32_t highest_seq;  /* extended */
  uint32_t jitter;       /* timestamp units */
  uint32_t lsr;          /* middle 32 bits of the last SR's NTP time */
  uint32_t dlsr;         /* 1/65536 s */
} rtcp_report_t;

typedef struct {
  uint8_t type;           /* RTCP_SR, ... (other types are reported too) */
  uint32_t ssrc;          /* sender (SR/RR), first source (BYE); 0 otherwise */
  /* SR only */
  uint32_t ntp_sec, ntp_frac, rtp_ts, packets, octets;
  int nreports;
  rtcp_report_t reports[31];
} rtcp_packet_t;

/* Walk a compound RTCP packet (RFC 3550 §6.1): version 2 in every packet,
 * lengths that add up exactly, SR/RR report counts that fit. Calls cb per
 * packet and returns how many there were, or -1 when malformed (cb may
 * have seen the packets before the bad one; a caller drops the whole
 * compound then). */
int rtcp_parse(uint8_t const *p, size_t len,
               void (*cb)(void *arg, rtcp_packet_t const *pkt), void *arg);

/* Write an SR (when sr is non-NULL) or an RR with nreports blocks, then an
 * SDES with one CNAME. Returns the length, or 0 when out is too small. */
typedef struct {
  uint32_t ntp_sec, ntp_frac, rtp_ts, packets, octets;
} rtcp_sender_info_t;
size_t rtcp_write(uint8_t *out, size_t size, uint32_t ssrc, rtcp_sender_info_t const *sr,
                  rtcp_report_t const *reports, int nreports, char const *cname);

/* ---- RFC 4733 telephone-event ------------------------------------------ */

typedef struct {
  uint8_t event;     /* 0-9, 10 '*', 11 '#', 12-15 A-D, others */
  uint8_t end;
  uint8_t volume;    /* -dBm0, 0..63 */
  uint16_t duration; /* timestamp units */
} rtp_event_t;

/* Parse the first event of a telephone-event payload (4 bytes; redundant
 * blocks in RFC 2198 payloads come through a different payload type).
 * 0 on success, -1 when shorter than 4 bytes. */
int rtp_event_parse(uint8_t const *p, size_t len, rtp_event_t *e);
void rtp_event_write(uint8_t out[4], rtp_event_t const *e);

/* The character for an event (0-9 * # A-D), or 0. And the reverse, or -1. */
char rtp_event_char(unsigned event);
int rtp_event_code(char c);

#endif
