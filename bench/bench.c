/* mp_bench: multiproc's side of the performance table.
 *
 * Usage: mp_bench [quick] [prefix...]
 *   quick    fewer iterations (a smoke run, figures are noisier)
 *   prefix   run only metrics whose name starts with one of the prefixes
 *            ("start_join", "start_join.spawn")
 *
 * Prints one line per metric, "mp.<metric> <value> <unit>" with "%.3f", the format
 * and metric names of ../shared/bench/cpython_baseline.py (which prints "py.<metric>"),
 * so bench/compare can join the two by name. Diagnostics go to stderr only, so stdout
 * stays machine-readable. Exit status: 0 when every metric ran, 1 otherwise.
 *
 * Adding a metric group: write one `static int bench_<group>(const bench_opts *o)`
 * that calls bench_wanted() for each metric it would produce and bench_report() for
 * each figure, then add it to the `groups` table at the bottom. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "bench.h"

/* ---- options, timing, reporting -------------------------------------------- */

typedef struct bench_opts {
    bool quick;
    int nfilters;
    char **filters; /* metric-name prefixes; none means all */
} bench_opts;

static bool bench_wanted(const bench_opts *o, const char *metric) {
    if (o->nfilters == 0) return true;
    for (int i = 0; i < o->nfilters; i++)
        if (strncmp(metric, o->filters[i], strlen(o->filters[i])) == 0) return true;
    return false;
}

/* The flush matters: stdout is a pipe under bench/compare (fully buffered), and a
 * fork child must not inherit unwritten lines that it could write a second time. */
static void bench_report(const char *metric, double value, const char *unit) {
    printf("mp.%s %.3f %s\n", metric, value, unit);
    fflush(stdout);
}

/* Reports a failed library call with both the code's message and the detail. */
static int bench_fail(const char *metric, const char *what, int rc) {
    fprintf(stderr, "mp_bench: %s: %s: %s (%s): %s\n", metric, what, mp_strerror(rc),
            mp_err_name(rc), mp_last_error_message());
    return rc < 0 ? rc : MP_EINVAL;
}

/* Iteration counts: the full run favours accuracy, quick is a smoke run. */
static int bench_iters(const bench_opts *o, int full, int quick) { return o->quick ? quick : full; }

/* ---- start_join: start + join of a no-op target, per start method ----------- */

static int noop_target(mp_args *args) {
    (void)args;
    return 0;
}

/* One Process() + start() + join() + free, as the baseline times (it includes the
 * object's construction too). A join timeout keeps a misbehaving backend from
 * hanging the whole run. */
static int start_join_once(mp_context *ctx, const char *metric) {
    mp_process_opts po = {.target = noop_target};
    mp_process *p = NULL;
    int code = -1;
    int rc = mp_process_new(ctx, &po, &p);
    if (rc < 0) return bench_fail(metric, "mp_process_new", rc);
    rc = mp_process_start(p);
    if (rc < 0) {
        bench_fail(metric, "mp_process_start", rc);
        goto out;
    }
    rc = mp_process_join(p, 60.0);
    if (rc < 0) {
        bench_fail(metric, "mp_process_join", rc);
        mp_process_kill(p); /* best effort; dummy threads cannot be killed */
        mp_process_join(p, 5.0);
        goto out;
    }
    rc = mp_process_exitcode(p, &code);
    if (rc < 0) {
        bench_fail(metric, "mp_process_exitcode", rc);
        goto out;
    }
    if (code != 0) {
        /* The no-op target returns 0, so anything else is a failed child bootstrap. */
        fprintf(stderr, "mp_bench: %s: child exited with %d, expected 0\n", metric, code);
        rc = MP_ECHILD;
    }
out:
    mp_process_free(p);
    return rc;
}

/* Exec-based methods (a fresh program per child) cost milliseconds; the in-image
 * ones (fork, a forkserver's fork, a thread) far less, so they get more rounds. */
static bool method_execs(const char *method) {
    return !strcmp(method, "spawn") || !strcmp(method, "apr") || !strcmp(method, "win32");
}

static int bench_start_join(const bench_opts *o) {
    const char *const *methods = mp_get_all_start_methods();
    int failed = 0;
    for (size_t m = 0; methods && methods[m]; m++) {
        char metric[96];
        snprintf(metric, sizeof metric, "start_join.%s", methods[m]);
        if (!bench_wanted(o, metric)) continue;
        mp_context *ctx = mp_get_context(methods[m]);
        if (!ctx) {
            bench_fail(metric, "mp_get_context", MP_EINVAL);
            failed++;
            continue;
        }
        int n = method_execs(methods[m]) ? bench_iters(o, 100, 10) : bench_iters(o, 200, 20);
        /* Warm-up: the forkserver starts its server here, and every method pages in
         * its code paths, so the timed loop measures the steady state. */
        if (start_join_once(ctx, metric) < 0) {
            failed++;
            continue;
        }
        double t = bench_now();
        int i;
        for (i = 0; i < n; i++)
            if (start_join_once(ctx, metric) < 0) break;
        double dt = bench_now() - t;
        if (i < n) {
            failed++;
            continue;
        }
        bench_report(metric, dt / n * 1e6, "us/process");
    }
    return failed ? MP_ECHILD : 0;
}

/* ---- pipe_roundtrip_64B, pipe_throughput_1MiB: bench_conn.c ------------------ */

#include "bench_conn.h"

static int bench_pipe_metric(const bench_opts *o, const char *metric) {
    return bench_wanted(o, metric) ? bench_conn_metric(metric, o->quick, bench_report) : 0;
}
static int bench_pipe_roundtrip(const bench_opts *o) {
    return bench_pipe_metric(o, "pipe_roundtrip_64B");
}
static int bench_pipe_throughput(const bench_opts *o) {
    return bench_pipe_metric(o, "pipe_throughput_1MiB");
}

/* ---- lock_uncontended, lock_contended_2proc: bench_sync.c ----------------- */

int bench_sync_lock(bool quick, bool contended);
static int bench_lock_uncontended(const bench_opts *o) { return bench_sync_lock(o->quick, false); }
static int bench_lock_contended(const bench_opts *o) { return bench_sync_lock(o->quick, true); }

/* ---- queue_small_items, queue_large_items, rawpipe_64MiB: bench_queue.c ---- */

#include "bench_queue.h"

static int bench_queue_group(const bench_opts *o, const char *metric) {
    return bench_wanted(o, metric) ? bench_queue_metric(metric, o->quick, bench_report) : 0;
}
static int bench_queue_small(const bench_opts *o) {
    return bench_queue_group(o, "queue_small_items");
}
static int bench_queue_large(const bench_opts *o) {
    return bench_queue_group(o, "queue_large_items");
}
static int bench_rawpipe_64(const bench_opts *o) { return bench_queue_group(o, "rawpipe_64MiB"); }
/* ---- pool_*: bench_pool.c ----------------------------------------------------- */

static int bench_pool_group(const bench_opts *o, const char *metric) {
    return bench_wanted(o, metric) ? bench_pool_metric(metric, o->quick, bench_report) : 0;
}
static int bench_pool_map(const bench_opts *o) { return bench_pool_group(o, "pool_map_trivial"); }
static int bench_pool_imap(const bench_opts *o) {
    return bench_pool_group(o, "pool_imap_chunksize1");
}
static int bench_pool_apply(const bench_opts *o) { return bench_pool_group(o, "pool_apply_sync"); }
static int bench_pool_records(const bench_opts *o) {
    return bench_pool_group(o, "pool_map_records");
}
static int bench_pool_10ms(const bench_opts *o) {
    return bench_pool_group(o, "pool_map_10ms_auto");
}

/* ---- manager_dict_setget: bench_manager.c ----------------------------------- */

#include "bench_manager.h"

static int bench_manager_dict(const bench_opts *o) {
    const char *metric = "manager_dict_setget";
    return bench_wanted(o, metric) ? bench_manager_metric(metric, o->quick, bench_report) : 0;
}

/* ---- shm_1GiB.create/attach/touch/unlink: bench_shm.c --------------------- */

int bench_shm_1gib(bool quick);
static int bench_shm(const bench_opts *o) { return bench_shm_1gib(o->quick); }

/* ---- scale.*: bench_scale.c, only when a filter names it --------------------- */

static bool scale_wanted(const void *ctx, const char *metric) {
    const bench_opts *o = ctx;
    return o->nfilters > 0 && bench_wanted(o, metric);
}
static int bench_scale(const bench_opts *o) {
    return o->nfilters ? bench_scale_metrics(o->quick, scale_wanted, o, bench_report) : 0;
}

/* ---- the table of metric groups -------------------------------------------- */

typedef struct bench_group {
    const char *name;
    int (*run)(const bench_opts *o);
} bench_group;

/* Later groups follow the baseline's order: pipe_roundtrip_64B, pipe_throughput_1MiB,
 * queue_small_items, pool_*, lock_uncontended, lock_contended_2proc, manager_*. */
static const bench_group groups[] = {
    {"start_join", bench_start_join},
    {"pipe_roundtrip_64B", bench_pipe_roundtrip},
    {"pipe_throughput_1MiB", bench_pipe_throughput},
    {"queue_small_items", bench_queue_small},
    {"queue_large_items", bench_queue_large},
    {"rawpipe_64MiB", bench_rawpipe_64},
    {"pool_map_trivial", bench_pool_map},
    {"pool_imap_chunksize1", bench_pool_imap},
    {"pool_apply_sync", bench_pool_apply},
    {"pool_map_records", bench_pool_records},
    {"pool_map_10ms_auto", bench_pool_10ms},
    {"lock_uncontended", bench_lock_uncontended},
    {"lock_contended_2proc", bench_lock_contended},
    {"manager_dict_setget", bench_manager_dict},
    {"shm_1GiB", bench_shm},
    {"scale", bench_scale},
};

/* A group runs when any filter could select one of its metrics: either the filter is
 * a prefix of the group ("start") or names a metric inside it ("start_join.fork"). */
static bool group_wanted(const bench_opts *o, const char *group) {
    if (o->nfilters == 0) return true;
    size_t gl = strlen(group);
    for (int i = 0; i < o->nfilters; i++) {
        const char *f = o->filters[i];
        if (strncmp(group, f, strlen(f)) == 0 || (strncmp(f, group, gl) == 0 && f[gl] == '.'))
            return true;
    }
    return false;
}

int main(int argc, char **argv) {
    /* First: in a spawned child this runs the target and never returns. */
    int rc = mp_init(&argc, &argv);
    if (rc < 0) {
        fprintf(stderr, "mp_bench: mp_init: %s (%s)\n", mp_strerror(rc), mp_last_error_message());
        return 1;
    }

    bench_opts o = {.quick = false, .nfilters = 0, .filters = NULL};
    char **filters = calloc((size_t)(argc > 0 ? argc : 1), sizeof *filters);
    if (!filters) {
        fprintf(stderr, "mp_bench: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "quick"))
            o.quick = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: %s [quick] [metric-prefix...]\n", argv[0]);
            free(filters);
            return 0;
        } else
            filters[o.nfilters++] = argv[i];
    }
    o.filters = filters;

    int failed = 0;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        if (group_wanted(&o, groups[g].name) && groups[g].run(&o) < 0) failed++;
    free(filters);
    return failed ? 1 : 0;
}
