/* A small program whose output changes on every run: random bytes, the
 * time, and its pid. Recorded once, it replays the same every time. */
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  unsigned char r[8];
  getrandom(r, sizeof r, 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  printf("args:");
  for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
  printf("\nrandom: ");
  for (unsigned i = 0; i < sizeof r; i++) printf("%02x", r[i]);
  printf("\ntime: %lld.%09ld pid: %d\n", (long long)ts.tv_sec, ts.tv_nsec, getpid());
  return 0;
}
