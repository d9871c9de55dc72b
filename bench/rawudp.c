/* rawudp.c — the raw loopback packet limit the media benchmark compares
 * against: one thread sends 172-byte datagrams (an RTP header + 20 ms of
 * G.711) to itself over 127.0.0.1 with sendmmsg, 32 at a time, and reads
 * them back with recvmmsg; it prints packets sent-and-received per second
 * of CPU. Bounded: runs for the seconds given (default 3). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv)
{
  double seconds = argc > 1 ? atof(argv[1]) : 3;
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
