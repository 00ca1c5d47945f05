/* bench_manager: manager_dict_setget, measured as ../shared/bench/cpython_baseline.py
 * measures Python's: a SyncManager started on the default start method, a dict proxy,
 * and for i in range(n): d[i] = i; d[i] (n = 5000, 500 quick), reported in us per
 * operation over the 2n operations. Each timed run sets fresh keys, as the baseline's
 * single run does; the figure is the median of a few runs. The baseline's first
 * operation also opens the proxy's connection, and so does ours: no warm-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "bench.h"
#include "bench_manager.h"

#define RUNS 3

static int fail(const char *what, int rc) {
    fprintf(stderr, "mp_bench: manager_dict_setget: %s: %s (%s): %s\n", what, mp_strerror(rc),
            mp_err_name(rc), mp_last_error_message());
    return rc < 0 ? rc : MP_EINVAL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* n rounds of d[k] = k; d[k] for k from first; checks every value read. */
static int setget(mp_proxy *d, int64_t first, int n) {
    for (int64_t k = first; k < first + n; k++) {
        mp_value *key = mp_value_int(k), *got = NULL;
        if (!key) return fail("mp_value_int", MP_ENOMEM);
        int rc = mp_proxy_setitem(d, key, key);
        if (rc < 0) {
            mp_value_free(key);
            return fail("d[i] = i", rc);
        }
        rc = mp_proxy_getitem(d, key, &got);
        mp_value_free(key);
        if (rc < 0) return fail("d[i]", rc);
        bool ok = mp_value_get_type(got) == MP_VALUE_INT && mp_value_as_int(got) == k;
        mp_value_free(got);
        if (!ok) return fail("d[i] read back something else", MP_EPROTO);
    }
    return 0;
}

int bench_manager_metric(const char *metric, bool quick,
                         void (*report)(const char *, double, const char *)) {
    if (strcmp(metric, "manager_dict_setget") != 0) return MP_EINVAL;
    /* A bound on every call, so a hung server fails the run instead of hanging it. */
    mp_manager_opts mo = {.timeout = 60.0};
    mp_manager *m = NULL;
    mp_proxy *d = NULL;
    int rc = mp_sync_manager_new(NULL, &mo, &m);
    if (rc < 0) return fail("mp_sync_manager_new", rc);
    if ((rc = mp_manager_start(m)) < 0) {
        fail("mp_manager_start", rc);
        goto out;
    }
    if ((rc = mp_manager_dict(m, NULL, &d)) < 0) {
        fail("mp_manager_dict", rc);
        goto out;
    }
    int n = quick ? 500 : 5000;
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now();
        if ((rc = setget(d, (int64_t)r * n, n)) < 0) goto out;
        t[r] = bench_now() - t0;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    report(metric, t[RUNS / 2] / (2.0 * n) * 1e6, "us/op");
out:
    mp_proxy_free(d);
    mp_manager_free(m);
    return rc;
}
