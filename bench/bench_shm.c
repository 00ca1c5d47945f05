/* shm_1GiB.*: milliseconds for a 1 GiB SharedMemory block: create (tracked: shm_open,
 * ftruncate, mmap and the tracker's registration), attach by name (in this process:
 * the same system calls a child makes), first touch of every page (what the kernel
 * really spends; creating is lazy), and unlink after closing (which frees the pages).
 * The best of a few rounds: the machine is shared. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#endif

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "multiproc.h"
#include "bench.h"

int bench_shm_1gib(bool quick);

static int shm_fail(const char *what, int rc) {
    fprintf(stderr, "mp_bench: shm_1GiB: %s: %s (%s): %s\n", what, mp_strerror(rc), mp_err_name(rc),
            mp_last_error_message());
    return rc < 0 ? rc : MP_EINVAL;
}

static void keep_min(double *best, double v) {
    if (*best < 0 || v < *best) *best = v;
}

int bench_shm_1gib(bool quick) {
    const size_t size = (size_t)1 << 30;
    double best[4] = {-1, -1, -1, -1};
    int rounds = quick ? 1 : 3;
    for (int r = 0; r < rounds; r++) {
        mp_shm *s = NULL, *a = NULL;
        mp_shm_opts o = {.create = true, .size = size};
        double t0 = bench_now();
        int rc = mp_shm_open(&o, &s);
        double t1 = bench_now();
        if (rc < 0) return shm_fail("create", rc);
        mp_shm_opts oa = {.name = mp_shm_name(s)};
        rc = mp_shm_open(&oa, &a);
        double t2 = bench_now();
        if (rc < 0) {
            mp_shm_unlink(s);
            mp_shm_free(s);
            return shm_fail("attach", rc);
        }
        memset(mp_shm_buf(a), 1, size);
        double t3 = bench_now();
        mp_shm_free(a);
        mp_shm_close(s);
        double t4 = bench_now();
        rc = mp_shm_unlink(s);
        double t5 = bench_now();
        mp_shm_free(s);
        if (rc < 0) return shm_fail("unlink", rc);
        keep_min(&best[0], (t1 - t0) * 1e3);
        keep_min(&best[1], (t2 - t1) * 1e3);
        keep_min(&best[2], (t3 - t2) * 1e3);
        keep_min(&best[3], (t5 - t4) * 1e3);
    }
    static const char *const names[4] = {"shm_1GiB.create", "shm_1GiB.attach", "shm_1GiB.touch",
                                         "shm_1GiB.unlink"};
    for (int i = 0; i < 4; i++) {
        printf("mp.%s %.3f ms\n", names[i], best[i]);
        fflush(stdout);
    }
    return 0;
}
