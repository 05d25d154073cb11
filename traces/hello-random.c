/* The program recorded in traces/hello-random/: see traces/README.md. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("hello from the detrec fixture, argc=%d argv[1]=%s\n", argc, argc > 1 ? argv[1] : "(none)");

    unsigned char bytes[16];
    ssize_t n = getrandom(bytes, sizeof bytes, 0);
    printf("getrandom(%zu)=%zd ", sizeof bytes, n);
    for (int i = 0; i < 16; i++) printf("%02x", bytes[i]);
    printf("\n");

    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    printf("clock_gettime=%d realtime=%lld.%09ld\n", rc, (long long)ts.tv_sec, ts.tv_nsec);

    static const char direct[] = "written with write(2)\n";
    write(1, direct, strlen(direct));
    return 7;
}
