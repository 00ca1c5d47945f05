/* What the files of mp_bench share: a clock and the start and finish of the children
 * the metrics measure. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#endif

#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

#include "multiproc.h"
#include "bench.h"

double bench_now(void) {
#ifdef _WIN32
    static LARGE_INTEGER freq;
    LARGE_INTEGER t;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart / (double)freq.QuadPart;
#else
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
#endif
}

int bench_start_child(int (*fn)(mp_args *), int (*build_args)(mp_args *, void *), void *arg,
                      mp_process **out) {
    mp_context *ctx = mp_get_context("fork");
    if (!ctx) ctx = mp_get_context(NULL); /* Windows: no fork */
    mp_args *a = NULL;
    int rc = mp_args_new(&a);
    if (!rc) rc = build_args(a, arg);
    mp_process_opts po = {.target = fn, .args = a};
    if (!rc) rc = mp_process_new(ctx, &po, out);
    if (!rc && (rc = mp_process_start(*out)) < 0) {
        mp_process_free(*out);
        *out = NULL;
    }
    mp_args_free(a);
    return rc;
}

int bench_finish_child(mp_process *p, double timeout) {
    int code = -1;
    int rc = mp_process_join(p, timeout);
    if (!rc) rc = mp_process_exitcode(p, &code);
    if (rc < 0) {
        mp_process_kill(p);
        mp_process_join(p, 5.0);
    } else if (code != 0) {
        rc = MP_ECHILD;
    }
    mp_process_free(p);
    return rc;
}
