/* opusref.c — libopus alone, for bench/opus.sh: what encoding costs with
 * no engine around it. N encoders set up as the engine sets up a call's
 * (48 kHz mono, VOIP, the negotiated 32 kb/s, complexity 5, in-band FEC at
 * 5% expected loss) each encode SECONDS of 20 ms frames of the tone the
 * engine's live benchmark plays (440 + 1200 Hz), round robin as the tick
 * does. Prints the encoder CPU per frame and the calls (50 frames a
 * second each) one core could encode.
 *
 *   opusref N SECONDS */
#include <math.h>
#include <opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define FRAME 960

static double cpu_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 100, seconds = argc > 2 ? atoi(argv[2]) : 5;
  OpusEncoder **enc = calloc((size_t)(n > 0 ? n : 1), sizeof *enc);
  static int16_t pcm[50][FRAME]; /* one second of the tone */
  unsigned char out[1500];
  long frames = 0, bytes = 0;
  double t0;
  if (n < 1 || n > 100000 || seconds < 1 || seconds > 600 || !enc) {
    fprintf(stderr, "usage: opusref N SECONDS\n");
    return 2;
  }
  for (int i = 0; i < 50 * FRAME; i++) {
    double t = i / 48000.0;
    /* the engine's tone: two frequencies at -13 dBm0 each */
    double amp = 32767.0 * pow(10.0, (-13 - 3.14) / 20.0);
    pcm[i / FRAME][i % FRAME] =
        (int16_t)lrint(amp * (sin(2 * M_PI * 440 * t) + sin(2 * M_PI * 1200 * t)));
  }
  for (int i = 0; i < n; i++) {
    int err = 0;
    enc[i] = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    if (err != OPUS_OK || !enc[i]) {
      fprintf(stderr, "opus_encoder_create: %s\n", opus_strerror(err));
      return 1;
    }
    opus_encoder_ctl(enc[i], OPUS_SET_BITRATE(32000));
    opus_encoder_ctl(enc[i], OPUS_SET_COMPLEXITY(5));
    opus_encoder_ctl(enc[i], OPUS_SET_INBAND_FEC(1));
    opus_encoder_ctl(enc[i], OPUS_SET_PACKET_LOSS_PERC(5));
  }
  t0 = cpu_now();
  for (int tick = 0; tick < seconds * 50; tick++)
    for (int i = 0; i < n; i++) {
      int len = opus_encode(enc[i], pcm[tick % 50], FRAME, out, sizeof out);
      if (len < 0) {
        fprintf(stderr, "opus_encode: %s\n", opus_strerror(len));
        return 1;
      }
      frames++;
      bytes += len;
    }
  double cpu = cpu_now() - t0;
  printf("frames=%ld cpu=%.3f us_per_frame=%.2f calls_per_core=%.0f bytes_per_frame=%.1f\n", frames,
         cpu, cpu * 1e6 / frames, frames / cpu / 50.0, (double)bytes / frames);
  for (int i = 0; i < n; i++)
    opus_encoder_destroy(enc[i]);
  free(enc);
  return 0;
}
