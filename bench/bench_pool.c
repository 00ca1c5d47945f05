/* The pool's metrics, shaped as ../shared/bench/cpython_baseline.py measures Python's
 * Pool (2 workers, x*x over ints, the default chunk size):
 *   pool_map_trivial      map of 200 000 ints          tasks/s
 *   pool_imap_chunksize1  imap of 5 000, chunksize 1   us/task
 *   pool_apply_sync       1 000 apply calls            us/call
 * and ours alone:
 *   pool_map_records      map over 8-byte records      records/s
 *   pool_map_10ms_auto    tasks of 10 ms, chunksize 0  efficiency (ideal / measured time)
 * Each figure is the median of a few timed runs after a warm-up run. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

#include "multiproc.h"
#include "bench.h"

static int sq(const mp_value *a, mp_value **r) {
    int64_t x = mp_value_as_int(a);
    *r = mp_value_int(x * x);
    return *r ? 0 : MP_ENOMEM;
}

static int sq_args(const mp_value *a, mp_value **r) { return sq(mp_value_item(a, 0), r); }

static int sq_record(const void *in, void *out) {
    int64_t x;
    memcpy(&x, in, sizeof x);
    x *= x;
    memcpy(out, &x, sizeof x);
    return 0;
}

/* 10 ms of work: a sleep, so the figure measures the pool, not the CPU share. */
static int ten_ms(const mp_value *a, mp_value **r) {
    (void)a;
#ifdef _WIN32
    Sleep(10);
#else
    struct timespec t = {0, 10 * 1000 * 1000};
    nanosleep(&t, NULL);
#endif
    *r = NULL;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static mp_value *ints(int n) {
    mp_value *l = mp_value_list_new();
    for (int i = 0; l && i < n; i++)
        if (mp_value_list_append(l, mp_value_int(i)) != 0) return NULL;
    return l;
}

#define RUNS 5

int bench_pool_metric(const char *metric, bool quick,
                      void (*report)(const char *, double, const char *)) {
    mp_pool *p = NULL;
    mp_pool_opts po = {.processes = 2};
    int rc = mp_pool_new(NULL, &po, &p);
    if (rc < 0) {
        fprintf(stderr, "mp_bench: pool: %s\n", mp_last_error_message());
        return rc;
    }
    double t[RUNS];
    mp_value *res = NULL;
    if (strcmp(metric, "pool_map_trivial") == 0) {
        int n = quick ? 20000 : 200000;
        mp_value *items = ints(n), *warm = ints(100);
        rc = items && warm ? mp_pool_map(p, sq, warm, NULL, &res) : MP_ENOMEM;
        mp_value_free(res);
        for (int r = 0; !rc && r < RUNS; r++) {
            double t0 = bench_now();
            rc = mp_pool_map(p, sq, items, NULL, &res);
            t[r] = bench_now() - t0;
            if (!rc &&
                mp_value_as_int(mp_value_item(res, (size_t)n - 1)) != (int64_t)(n - 1) * (n - 1))
                rc = MP_EPROTO;
            mp_value_free(res);
        }
        if (!rc) report(metric, n / median(t, RUNS), "tasks/s");
        mp_value_free(items);
        mp_value_free(warm);
    } else if (strcmp(metric, "pool_imap_chunksize1") == 0) {
        int m = quick ? 500 : 5000;
        mp_value *items = ints(m);
        mp_call_opts co = {.chunksize = 1};
        for (int r = 0; !rc && r < RUNS; r++) {
            mp_imap *it = NULL;
            double t0 = bench_now();
            rc = items ? mp_pool_imap(p, sq, items, &co, &it) : MP_ENOMEM;
            for (int i = 0; !rc && i < m; i++) {
                mp_value *v = NULL;
                rc = mp_imap_next(it, 60, &v);
                mp_value_free(v);
            }
            t[r] = bench_now() - t0;
            mp_imap_free(it);
        }
        if (!rc) report(metric, median(t, RUNS) / m * 1e6, "us/task");
        mp_value_free(items);
    } else if (strcmp(metric, "pool_apply_sync") == 0) {
        int m = quick ? 100 : 1000;
        mp_value *args = mp_value_tuple_new();
        if (!args || mp_value_list_append(args, mp_value_int(7)) != 0) rc = MP_ENOMEM;
        for (int r = 0; !rc && r < RUNS; r++) {
            double t0 = bench_now();
            for (int i = 0; !rc && i < m; i++) {
                rc = mp_pool_apply(p, sq_args, args, &res);
                mp_value_free(res);
            }
            t[r] = bench_now() - t0;
        }
        if (!rc) report(metric, median(t, RUNS) / m * 1e6, "us/call");
        mp_value_free(args);
    } else if (strcmp(metric, "pool_map_records") == 0) {
        size_t n = quick ? 1000000 : 10000000;
        int64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
        if (!in || !out) rc = MP_ENOMEM;
        for (size_t i = 0; !rc && i < n; i++) in[i] = (int64_t)i;
        if (!rc) rc = mp_pool_map_records(p, sq_record, in, 8, out, 8, n / 100, NULL);
        for (int r = 0; !rc && r < RUNS; r++) {
            double t0 = bench_now();
            rc = mp_pool_map_records(p, sq_record, in, 8, out, 8, n, NULL);
            t[r] = bench_now() - t0;
            if (!rc && out[n - 1] != (int64_t)(n - 1) * (int64_t)(n - 1)) rc = MP_EPROTO;
        }
        if (!rc) report(metric, (double)n / median(t, RUNS), "records/s");
        free(in);
        free(out);
    } else if (strcmp(metric, "pool_map_10ms_auto") == 0) {
        int n = quick ? 40 : 200;
        mp_value *items = ints(n);
        for (int r = 0; !rc && r < (quick ? 1 : 3); r++) {
            double t0 = bench_now();
            rc = items ? mp_pool_map(p, ten_ms, items, NULL, &res) : MP_ENOMEM;
            t[r] = bench_now() - t0;
            mp_value_free(res);
        }
        double ideal = (n + 1) / 2 * 0.010;
        if (!rc) report(metric, ideal / median(t, quick ? 1 : 3), "efficiency");
        mp_value_free(items);
    } else {
        rc = MP_EINVAL;
    }
    if (rc < 0)
        fprintf(stderr, "mp_bench: %s: %s (%s)\n", metric, mp_strerror(rc),
                mp_last_error_message());
    mp_pool_free(p);
    return rc;
}
