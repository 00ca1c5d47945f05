/* mp_pipe_ab: the raw pipe and connections in each read-ahead state measured side by
 * side, for a machine too busy for bench/compare's one-shot figures. Each round runs
 * one short batch of every variant in turn, so load hits them alike; per variant it
 * prints the minimum and the median batch and their ratio to the raw pipe (and the
 * min-max of the per-round ratios). The raw variant is os_floor.c's: two pipes, write
 * 64 / read 64; 1 MiB messages through a pipe grown to 1 MiB. posix only.
 *   os pipe        a plain fork() over two raw pipes
 *   mp forced on   a plain fork(), both ends MP_READ_AHEAD_ON
 *   mp off         a plain fork(), both ends MP_READ_AHEAD_OFF (the old default)
 *   mp default     the default mode with the end passed to a child started by the
 *                  library (spawn: no fork, so the parent's own end keeps reading
 *                  ahead; the child's copy of the passed end reads without)
 *   mp def. fork   the default mode over a plain fork(): both ends are inherited, so
 *                  both stop reading ahead (same as off)
 *   mp on, spawn   as mp default, both ends forced on (the child turns its copy on):
 *                  the same start, so only the child's read mode differs
 * Only the timed loop counts (a start is outside it).
 *
 *   mp_pipe_ab [rounds]      (default 15)
 *
 * MP_AB_ONLY=0..5 runs only that variant, e.g. under `perf stat -e
 * instructions:u,instructions:k`, whose counts the load does not skew. */
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

enum { RAW, FORCED, OFF, DEFAULT, DEFAULT_FORK, FORCED_SPAWN, NVAR };
static const char *const names[NVAR] = {"os pipe",    "mp forced on", "mp off",
                                        "mp default", "mp def. fork", "mp on, spawn"};

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

/* The child's side over a connection: echoes RT_N messages, or sinks TP_N 1 MiB
 * messages and answers "k". 0, or the exit code naming what failed. */
static int conn_child(mp_connection *c2, bool rt) {
    char m[64];
    for (int i = 0; i < (rt ? RT_N : TP_N); i++) {
        if (rt) {
            size_t len;
            if (mp_connection_recv_bytes_into(c2, m, sizeof m, 0, &len, NULL) ||
                mp_connection_send_bytes(c2, m, len))
                return 5;
        } else {
            void *p;
            size_t len;
            if (mp_connection_recv_bytes(c2, 0, &p, &len)) return 6;
            mp_connection_free_bytes(p);
        }
    }
    if (!rt && mp_connection_send_bytes(c2, "k", 1)) return 7;
    return 0;
}

/* [0] the child's end, [1] round trips (1) or throughput (0), [2] force read-ahead on. */
static int spawned_child(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 8;
    if (mp_args_int(a, 2) && mp_connection_set_read_ahead(c, MP_READ_AHEAD_ON)) return 9;
    return conn_child(c, mp_args_int(a, 1) != 0);
}

/* One batch: microseconds per round trip (rt) or MiB/s (!rt); < 0 on failure. */
static double batch(int var, bool rt, char *big) {
    int a[2], b[2];
    mp_connection *c1 = NULL, *c2 = NULL;
    mp_process *proc = NULL;
    pid_t pid = -1;
    if (var == RAW) {
        if (pipe(a) || pipe(b)) return -1;
        if (!rt) fcntl(a[1], F_SETPIPE_SZ, (int)MIB);
    } else {
        if (mp_pipe(true, &c1, &c2)) return -1;
        mp_read_ahead mode = var == FORCED || var == FORCED_SPAWN ? MP_READ_AHEAD_ON
                             : var == OFF                         ? MP_READ_AHEAD_OFF
                                                                  : MP_READ_AHEAD_AUTO;
        mp_connection_set_read_ahead(c1, mode);
        mp_connection_set_read_ahead(c2, mode);
    }
    if (var == DEFAULT || var == FORCED_SPAWN) {
        mp_args *args = NULL;
        int rc = mp_args_new(&args);
        if (!rc) rc = mp_args_add_connection(args, c2);
        if (!rc) rc = mp_args_add_int(args, rt);
        if (!rc) rc = mp_args_add_int(args, var == FORCED_SPAWN);
        mp_process_opts po = {.target = spawned_child, .args = args};
        if (!rc) rc = mp_process_new(mp_get_context("spawn"), &po, &proc);
        if (!rc) rc = mp_process_start(proc);
        mp_args_free(args);
        mp_connection_free(c2); /* the child has its own */
        c2 = NULL;
        if (rc) return -1;
    } else {
        pid = fork();
        if (pid < 0) return -1;
    }
    if (pid == 0) {
        if (var != RAW) _exit(conn_child(c2, rt));
        char m[64];
        for (int i = 0; i < (rt ? RT_N : TP_N); i++) {
            if (rt) {
                full_read(a[0], m, sizeof m);
                full_write(b[1], m, sizeof m);
            } else {
                full_read(a[0], big, MIB);
            }
        }
        if (!rt) full_write(b[1], "k", 1);
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
    bool ok;
    if (proc) {
        int code = -1;
        ok = !mp_process_join(proc, 60.0) && !mp_process_exitcode(proc, &code) && code == 0;
        mp_process_free(proc);
    } else {
        int st = 0;
        waitpid(pid, &st, 0);
        ok = WIFEXITED(st) && !WEXITSTATUS(st);
    }
    if (var == RAW) {
        close(a[0]), close(a[1]), close(b[0]), close(b[1]);
    } else {
        mp_connection_free(c1);
        mp_connection_free(c2);
    }
    if (!ok) return -1;
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
    double *ratio = calloc((size_t)rounds, sizeof(double));
    if (!ratio) return 1;
    for (int k = 0; k < 2; k++) {
        /* The ratio to the raw pipe within each round (the same load), then its median
         * and range across rounds; for throughput, raw / variant, so above 1 is slower. */
        double rmed[NVAR], rmin[NVAR], rmax[NVAR];
        for (int j = 0; j < NVAR; j++) {
            for (int r = 0; r < rounds; r++)
                ratio[r] = k == 0 ? v[k][j][r] / v[k][RAW][r] : v[k][RAW][r] / v[k][j][r];
            qsort(ratio, (size_t)rounds, sizeof(double), cmp);
            rmed[j] = ratio[rounds / 2];
            rmin[j] = ratio[0];
            rmax[j] = ratio[rounds - 1];
        }
        for (int j = 0; j < NVAR; j++) qsort(v[k][j], (size_t)rounds, sizeof(double), cmp);
        /* round trip: lower is better (best = min); throughput: higher (best = max) */
        double best0 = k == 0 ? v[k][RAW][0] : v[k][RAW][rounds - 1];
        double med0 = v[k][RAW][rounds / 2];
        printf("%s, %d rounds\n",
               k == 0 ? "pipe_roundtrip_64B (us)" : "pipe_throughput_1MiB (MiB/s)", rounds);
        for (int j = 0; j < NVAR; j++) {
            double best = k == 0 ? v[k][j][0] : v[k][j][rounds - 1], med = v[k][j][rounds / 2];
            printf("  %-12s best %9.3f (%.3fx)  median %9.3f (%.3fx)  per-round cost ratio "
                   "median %.3f [%.3f-%.3f]\n",
                   names[j], best, best / best0, med, med / med0, rmed[j], rmin[j], rmax[j]);
        }
    }
    free(ratio);
    return 0;
}
