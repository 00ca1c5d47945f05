/* scale.*: how cost grows with the amount of work (bench/run scale).
 *
 *   scale.lock_create.<N>      us/object  N Locks made (and kept) one after the other
 *   scale.value_create.<N>     us/object  N Values ('q', with their lock) likewise
 *       N = 1e3, 1e4, 1e5, 1e6 (quick: up to 1e5); time per object, so a flat row is
 *       linear growth. They come from shared arenas: a program under ulimit -n 1024
 *       makes a million of each.
 *   scale.start_join.<method>.<N>  us/process  N no-op children started one after the
 *       other, mp_active_children once, then waited for together with mp_wait over
 *       their sentinels, then joined: per process, for N = 1, 8, 64, 256.
 *
 * Not part of the default run (a million objects and hundreds of processes take a
 * while): only when a filter names it ("scale", "scale.lock"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "bench.h"

typedef void (*bench_report_fn)(const char *, double, const char *);

static int scale_fail(const char *metric, const char *what, int rc) {
    fprintf(stderr, "mp_bench: %s: %s: %s (%s): %s\n", metric, what, mp_strerror(rc),
            mp_err_name(rc), mp_last_error_message());
    return rc < 0 ? rc : MP_EINVAL;
}

static const char *count_name(size_t n) {
    return n == 1000 ? "1e3" : n == 10000 ? "1e4" : n == 100000 ? "1e5" : "1e6";
}

/* N objects made one after the other, all alive at the end, then freed. */
static int objects(bool values, size_t n, bench_report_fn report) {
    char metric[64];
    snprintf(metric, sizeof metric, "scale.%s_create.%s", values ? "value" : "lock", count_name(n));
    void **objs = calloc(n, sizeof *objs);
    if (!objs) return scale_fail(metric, "calloc", MP_ENOMEM);
    int rc = 0;
    size_t made = 0;
    double t0 = bench_now();
    for (; made < n && !rc; made++) {
        if (values) {
            int64_t init = (int64_t)made;
            rc = mp_shared_value_new(NULL, 'q', &init, MP_LOCK_NEW, NULL,
                                     (mp_shared_array **)&objs[made]);
        } else {
            rc = mp_lock_new(NULL, (mp_lock **)&objs[made]);
        }
    }
    double t = bench_now() - t0;
    if (rc) {
        made--;
        scale_fail(metric, values ? "mp_shared_value_new" : "mp_lock_new", rc);
        fprintf(stderr, "mp_bench: %s: failed after %zu objects\n", metric, made);
    } else {
        report(metric, t / (double)n * 1e6, "us/object");
    }
    for (size_t i = 0; i < made; i++) {
        if (values)
            mp_shared_array_free(objs[i]);
        else
            mp_lock_free(objs[i]);
    }
    free(objs);
    return rc;
}

static int noop(mp_args *a) {
    (void)a;
    return 0;
}

/* N children started at once, waited for together, joined: per process. */
static int children(mp_context *ctx, const char *method, size_t n, bench_report_fn report) {
    char metric[80];
    snprintf(metric, sizeof metric, "scale.start_join.%s.%zu", method, n);
    mp_process **ps = calloc(n, sizeof *ps);
    mp_waitable *ws = calloc(n, sizeof *ws);
    bool *ready = calloc(n, sizeof *ready), *done = calloc(n, sizeof *done);
    int rc = ps && ws && ready && done ? 0 : MP_ENOMEM;
    size_t started = 0;
    double t0 = bench_now();
    for (; started < n && !rc; started++) {
        mp_process_opts po = {.target = noop};
        rc = mp_process_new(ctx, &po, &ps[started]);
        if (!rc) rc = mp_process_start(ps[started]);
        if (rc) {
            scale_fail(metric, "start", rc);
            mp_process_free(ps[started]);
            ps[started] = NULL;
        }
    }
    if (rc) started--;
    /* Python's active_children(): the ones still running (the rest are reaped). */
    size_t active = 0;
    if (!rc && (rc = mp_active_children(NULL, 0, &active)) != 0)
        scale_fail(metric, "mp_active_children", rc);
    /* mp_wait over the sentinels of those not seen ended yet, until none is left. */
    size_t *idx = calloc(n, sizeof *idx);
    if (!idx && !rc) rc = scale_fail(metric, "calloc", MP_ENOMEM);
    size_t left = started;
    double deadline = bench_now() + 120;
    while (!rc && left > 0) {
        size_t k = 0;
        for (size_t i = 0; i < started; i++) {
            mp_os_handle h;
            if (done[i] || mp_process_sentinel(ps[i], &h) != 0) continue;
            ws[k] = mp_waitable_handle(h);
            idx[k++] = i;
        }
        if ((rc = mp_wait(ws, k, 30, ready, NULL)) != 0) {
            scale_fail(metric, "mp_wait", rc);
            break;
        }
        for (size_t j = 0; j < k; j++)
            if (ready[j]) {
                done[idx[j]] = true;
                left--;
            }
        if (left && bench_now() > deadline) rc = scale_fail(metric, "children", MP_ETIMEDOUT);
    }
    free(idx);
    for (size_t i = 0; i < started; i++) {
        int code = -1;
        int r = mp_process_join(ps[i], 60);
        if (!r) r = mp_process_exitcode(ps[i], &code);
        if (!rc && (r || code != 0)) rc = scale_fail(metric, "join", r ? r : MP_ECHILD);
    }
    double t = bench_now() - t0;
    if (!rc) report(metric, t / (double)n * 1e6, "us/process");
    for (size_t i = 0; i < started; i++) mp_process_free(ps[i]);
    free(ps);
    free(ws);
    free(ready);
    free(done);
    return rc;
}

int bench_scale_metrics(bool quick, bool (*wanted)(const void *ctx, const char *metric),
                        const void *wctx, bench_report_fn report) {
    int failed = 0;
    static const size_t counts[] = {1000, 10000, 100000, 1000000};
    for (int v = 0; v < 2; v++)
        for (size_t i = 0; i < (quick ? 3u : 4u); i++) {
            char metric[64];
            snprintf(metric, sizeof metric, "scale.%s_create.%s", v ? "value" : "lock",
                     count_name(counts[i]));
            if (wanted(wctx, metric) && objects(v == 1, counts[i], report) != 0) failed = 1;
        }
    static const size_t kids[] = {1, 8, 64, 256};
    const char *const *methods = mp_get_all_start_methods();
    for (size_t m = 0; methods && methods[m]; m++) {
        if (!strcmp(methods[m], "dummy")) continue; /* threads: not what this measures */
        mp_context *ctx = mp_get_context(methods[m]);
        if (!ctx) continue;
        /* One start first, not timed: a forkserver's server starts with it. */
        char warm[80];
        snprintf(warm, sizeof warm, "scale.start_join.%s.", methods[m]);
        if (wanted(wctx, warm)) {
            mp_process_opts po = {.target = noop};
            mp_process *p = NULL;
            if (mp_process_new(ctx, &po, &p) == 0 && mp_process_start(p) == 0)
                mp_process_join(p, 60);
            mp_process_free(p);
        }
        for (size_t i = 0; i < (quick ? 3u : 4u); i++) {
            char metric[80];
            snprintf(metric, sizeof metric, "scale.start_join.%s.%zu", methods[m], kids[i]);
            if (wanted(wctx, metric) && children(ctx, methods[m], kids[i], report) != 0) failed = 1;
        }
    }
    return failed ? MP_ECHILD : 0;
}
