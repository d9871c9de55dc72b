/* rawudp.c — the raw loopback packet limits the media benchmark compares
 * against, with no media work at all:
 *
 *   rawudp SECONDS        one thread sends 172-byte datagrams (an RTP header
 *                         + 20 ms of G.711) to itself over 127.0.0.1 with
 *                         sendmmsg, 32 at a time, on one socket pair, and
 *                         reads them back with recvmmsg (the "raw
 *                         loopback limit");
 *   rawudp SECONDS PAIRS  the same datagrams over PAIRS socket pairs, one
 *                         per call as RTP has them: each round sends one
 *                         datagram on every pair (sendto), then reads every
 *                         pair once (recvmmsg), as the engine's tick does.
 *                         This is the kernel's floor for per-call sockets.
 *
 * Prints packets sent-and-received per second of CPU. Bounded: runs for
 * the seconds given (default 3). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define SIZE 172

static double cpu(void)
{
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* One datagram per pair per round, every pair read once per round. */
static int per_pair(double seconds, int pairs, int paced)
{
  struct timespec next;
  struct rlimit rl;
  int *rx = calloc((size_t)pairs, sizeof *rx), *tx = calloc((size_t)pairs, sizeof *tx);
  struct sockaddr_in *to = calloc((size_t)pairs, sizeof *to);
  static unsigned char out[SIZE], in[4][2048];
  struct mmsghdr rm[4];
  struct iovec riov[4];
  unsigned long long got = 0;
  if (!rx || !tx || !to)
    return 1;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  for (int i = 0; i < pairs; i++) {
    socklen_t alen = sizeof to[i];
    to[i] = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    rx[i] = socket(AF_INET, SOCK_DGRAM, 0);
    tx[i] = socket(AF_INET, SOCK_DGRAM, 0);
    if (rx[i] < 0 || tx[i] < 0 || bind(rx[i], (struct sockaddr *)&to[i], sizeof to[i]) < 0 ||
        getsockname(rx[i], (struct sockaddr *)&to[i], &alen) < 0) {
      perror("socket pairs");
      return 1;
    }
  }
  memset(out, 0x80, sizeof out);
  memset(rm, 0, sizeof rm);
  for (int i = 0; i < 4; i++) {
    riov[i] = (struct iovec){ in[i], sizeof in[i] };
    rm[i].msg_hdr = (struct msghdr){ .msg_iov = &riov[i], .msg_iovlen = 1 };
  }
  double t0 = cpu(), wall0 = (double)time(NULL);
  clock_gettime(CLOCK_MONOTONIC, &next);
  while (paced ? (double)time(NULL) - wall0 < seconds
               : cpu() - t0 < seconds && (double)time(NULL) - wall0 < seconds * 4 + 5) {
    if (paced) {
      next.tv_nsec += 20000000L;
      if (next.tv_nsec >= 1000000000L)
        next.tv_sec++, next.tv_nsec -= 1000000000L;
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    for (int i = 0; i < pairs; i++)
      sendto(tx[i], out, SIZE, 0, (struct sockaddr *)&to[i], sizeof to[i]);
    for (int i = 0; i < pairs; i++) {
      int r = recvmmsg(rx[i], rm, 4, MSG_DONTWAIT, NULL);
      if (r > 0)
        got += (unsigned long long)r;
    }
  }
  printf("%.0f\n", got / (cpu() - t0));
  return 0;
}

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 3;
  if (argc > 2 && atoi(argv[2]) > 1)
    return per_pair(seconds, atoi(argv[2]), argc > 3 && strcmp(argv[3], "paced") == 0);
  int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t alen = sizeof a;
  static unsigned char out[BATCH][SIZE], in[BATCH][2048];
  struct mmsghdr sm[BATCH], rm[BATCH];
  struct iovec siov[BATCH], riov[BATCH];
  unsigned long long got = 0;
  int buf = 4 << 20;
  setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (bind(rx, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(rx, (struct sockaddr *)&a, &alen) < 0) {
    perror("bind");
    return 1;
  }
  memset(sm, 0, sizeof sm);
  memset(rm, 0, sizeof rm);
  for (int i = 0; i < BATCH; i++) {
    memset(out[i], 0x80 + i, SIZE);
    siov[i] = (struct iovec){ out[i], SIZE };
    sm[i].msg_hdr = (struct msghdr){ .msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &siov[i], .msg_iovlen = 1 };
    riov[i] = (struct iovec){ in[i], sizeof in[i] };
    rm[i].msg_hdr = (struct msghdr){ .msg_iov = &riov[i], .msg_iovlen = 1 };
  }
  double t0 = cpu(), wall0 = (double)time(NULL);
  while (cpu() - t0 < seconds && (double)time(NULL) - wall0 < seconds * 4 + 5) {
    int n = sendmmsg(tx, sm, BATCH, 0);
    if (n <= 0)
      continue;
    int left = n;
    while (left > 0) {
      int r = recvmmsg(rx, rm, BATCH, MSG_DONTWAIT, NULL);
      if (r <= 0)
        break;
      left -= r;
      got += (unsigned long long)r;
    }
  }
  printf("%.0f\n", got / (cpu() - t0));
  return 0;
}
