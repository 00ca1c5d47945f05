/* lock_uncontended, lock_contended_2proc: ns per acquire+release pair of an mp_lock,
 * measured as ../shared/bench/cpython_baseline.py and os_floor.c do: a loop in this
 * process, then two children hammering one lock (the time includes their start and
 * join, amortised over the iterations; fork when available, as both baselines). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "multiproc.h"
#include "bench.h"

int bench_sync_lock(bool quick, bool contended);

static int sync_fail(const char *metric, const char *what, int rc) {
    fprintf(stderr, "mp_bench: %s: %s: %s (%s): %s\n", metric, what, mp_strerror(rc),
            mp_err_name(rc), mp_last_error_message());
    return rc < 0 ? rc : MP_EINVAL;
}

/* [0] lock, [1] iterations. */
static int locker_target(mp_args *args) {
    mp_lock *l = mp_args_lock(args, 0);
    int64_t n = mp_args_int(args, 1);
    if (!l) return 2;
    for (int64_t i = 0; i < n; i++) {
        if (mp_lock_acquire(l, MP_FOREVER) < 0 || mp_lock_release(l) < 0) return 1;
    }
    return 0;
}

static int contended_run(mp_lock *l, int64_t n, const char *metric, double *dt) {
    /* fork, as the baselines; elsewhere the default method (the start is amortised). */
    mp_context *ctx = mp_get_context("fork");
    if (!ctx) ctx = mp_get_context(NULL);
    mp_args *args = NULL;
    mp_process *ps[2] = {NULL, NULL};
    int rc = mp_args_new(&args);
    if (rc == 0) rc = mp_args_add_lock(args, l);
    if (rc == 0) rc = mp_args_add_int(args, n);
    if (rc < 0) {
        mp_args_free(args);
        return sync_fail(metric, "arguments", rc);
    }
    mp_process_opts po = {.target = locker_target, .args = args};
    double t = bench_now();
    for (int k = 0; k < 2 && rc == 0; k++) {
        rc = mp_process_new(ctx, &po, &ps[k]);
        if (rc == 0) rc = mp_process_start(ps[k]);
    }
    for (int k = 0; k < 2; k++) {
        if (!ps[k]) continue;
        int code = -1;
        if (mp_process_join(ps[k], 300.0) < 0) {
            mp_process_kill(ps[k]);
            mp_process_join(ps[k], 5.0);
            if (rc == 0) rc = MP_ETIMEDOUT;
        } else if (mp_process_exitcode(ps[k], &code) == 0 && code != 0 && rc == 0) {
            rc = MP_ECHILD;
        }
    }
    *dt = bench_now() - t;
    for (int k = 0; k < 2; k++) mp_process_free(ps[k]);
    mp_args_free(args);
    return rc < 0 ? sync_fail(metric, "children", rc) : 0;
}

int bench_sync_lock(bool quick, bool contended) {
    const char *metric = contended ? "lock_contended_2proc" : "lock_uncontended";
    mp_lock *l = NULL;
    int rc = mp_lock_new(NULL, &l);
    if (rc < 0) return sync_fail(metric, "mp_lock_new", rc);
    int64_t n;
    double dt = 0;
    if (!contended) {
        n = quick ? 1000000 : 10000000;
        for (int i = 0; i < 10000; i++) { /* warm-up */
            mp_lock_acquire(l, MP_FOREVER);
            mp_lock_release(l);
        }
        double t = bench_now();
        for (int64_t i = 0; i < n; i++) {
            mp_lock_acquire(l, MP_FOREVER);
            mp_lock_release(l);
        }
        dt = bench_now() - t;
    } else {
        n = quick ? 200000 : 2000000;
        rc = contended_run(l, n, metric, &dt);
        n *= 2;
    }
    mp_lock_free(l);
    if (rc < 0) return rc;
    printf("mp.%s %.3f %s\n", metric, dt / (double)n * 1e9, "ns/pair");
    fflush(stdout);
    return 0;
}
