/* mp_pipe_ab: the raw pipe, a buffered connection and a default (unbuffered) one
 * measured side by side, for a machine too busy for bench/compare's one-shot figures.
 * Each round runs one short batch of every variant in turn, so load hits them alike;
 * per variant it prints the minimum and the median batch and their ratio to the raw
 * pipe. Every variant forks a plain child over inherited descriptors, so only the
 * message path differs (the raw variant is os_floor.c's: two pipes, write 64 / read 64;
 * 1 MiB messages through a pipe grown to 1 MiB). posix only.
 *
 *   mp_pipe_ab [rounds]      (default 15)
 *
 * MP_AB_ONLY=0|1|2 runs only the raw, buffered or default variant, e.g. under
 * `perf stat -e instructions:u,instructions:k`, whose counts the load does not skew. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "multiproc.h"

/* bench.h's clock lives in bench.c, which also holds mp_bench's main: this separate
 * program reads the same monotonic clock itself. */
static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum { RAW, BUFFERED, UNBUFFERED, NVAR };
static const char *const names[NVAR] = {"os pipe", "mp buffered", "mp default"};

#define RT_N 2000 /* round trips per batch */
#define TP_N 40   /* 1 MiB messages per batch */
#define MIB ((size_t)1 << 20)

static void full_write(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) _exit(3);
        p += w;
        n -= (size_t)w;
    }
}

static void full_read(int fd, char *p, size_t n) {
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) _exit(4);
        p += r;
        n -= (size_t)r;
    }
}

/* One batch: microseconds per round trip (rt) or MiB/s (!rt); < 0 on failure. */
static double batch(int var, bool rt, char *big) {
    int a[2], b[2];
    mp_connection *c1 = NULL, *c2 = NULL;
    if (var == RAW) {
        if (pipe(a) || pipe(b)) return -1;
        if (!rt) fcntl(a[1], F_SETPIPE_SZ, (int)MIB);
    } else {
        if (mp_pipe(true, &c1, &c2)) return -1;
        mp_connection_set_buffered(c1, var == BUFFERED);
        mp_connection_set_buffered(c2, var == BUFFERED);
    }
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char m[64];
        for (int i = 0; i < (rt ? RT_N : TP_N); i++) {
            if (var == RAW) {
                if (rt) {
                    full_read(a[0], m, sizeof m);
                    full_write(b[1], m, sizeof m);
                } else {
                    full_read(a[0], big, MIB);
                }
            } else if (rt) {
                size_t len;
                if (mp_connection_recv_bytes_into(c2, m, sizeof m, 0, &len, NULL) ||
                    mp_connection_send_bytes(c2, m, len))
                    _exit(5);
            } else {
                void *p;
                size_t len;
                if (mp_connection_recv_bytes(c2, 0, &p, &len)) _exit(6);
                mp_connection_free_bytes(p);
            }
        }
        if (!rt) {
            if (var == RAW)
                full_write(b[1], "k", 1);
            else if (mp_connection_send_bytes(c2, "k", 1))
                _exit(7);
        }
        _exit(0);
    }
    char m[64];
    memset(m, 'x', sizeof m);
    double t = bench_now();
    for (int i = 0; i < (rt ? RT_N : TP_N); i++) {
        if (var == RAW) {
            if (rt) {
                full_write(a[1], m, sizeof m);
                full_read(b[0], m, sizeof m);
            } else {
                full_write(a[1], big, MIB);
            }
        } else if (rt) {
            size_t len;
            if (mp_connection_send_bytes(c1, m, sizeof m) ||
                mp_connection_recv_bytes_into(c1, m, sizeof m, 0, &len, NULL))
                return -1;
        } else if (mp_connection_send_bytes(c1, big, MIB)) {
            return -1;
        }
    }
    if (!rt) {
        if (var == RAW)
            full_read(b[0], m, 1);
        else {
            size_t len;
            if (mp_connection_recv_bytes_into(c1, m, sizeof m, 0, &len, NULL)) return -1;
        }
    }
    double dt = bench_now() - t;
    int st = 0;
    waitpid(pid, &st, 0);
    if (var == RAW) {
        close(a[0]), close(a[1]), close(b[0]), close(b[1]);
    } else {
        mp_connection_free(c1);
        mp_connection_free(c2);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    return rt ? dt / RT_N * 1e6 : TP_N / dt;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    if (mp_init(&argc, &argv)) return 1;
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > 1000) rounds = 15;
    const char *o = getenv("MP_AB_ONLY");
    int only = o && *o ? atoi(o) : -1;
    char *big = malloc(MIB);
    double *v[2][NVAR];
    if (!big) return 1;
    memset(big, 'x', MIB);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < NVAR; j++)
            if (!(v[k][j] = calloc((size_t)rounds, sizeof(double)))) return 1;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < NVAR; j++) {
                int var = (j + r) % NVAR; /* rotate the order */
                if (only >= 0 && var != only) continue;
                double x = batch(var, k == 0, big);
                if (x < 0) {
                    fprintf(stderr, "mp_pipe_ab: %s batch failed: %s\n", names[var],
                            mp_last_error_message());
                    return 1;
                }
                v[k][var][r] = x;
            }
    if (only >= 0) return 0; /* a single variant has no ratios to print */
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < NVAR; j++) qsort(v[k][j], (size_t)rounds, sizeof(double), cmp);
        /* round trip: lower is better (best = min); throughput: higher (best = max) */
        double best0 = k == 0 ? v[k][RAW][0] : v[k][RAW][rounds - 1];
        double med0 = v[k][RAW][rounds / 2];
        printf("%s, %d rounds\n",
               k == 0 ? "pipe_roundtrip_64B (us)" : "pipe_throughput_1MiB (MiB/s)", rounds);
        for (int j = 0; j < NVAR; j++) {
            double best = k == 0 ? v[k][j][0] : v[k][j][rounds - 1], med = v[k][j][rounds / 2];
            printf("  %-12s best %9.3f (%.3fx)  median %9.3f (%.3fx)\n", names[j], best,
                   best / best0, med, med / med0);
        }
    }
    return 0;
}
