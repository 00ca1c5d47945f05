/* bench_queue: queue_small_items, queue_large_items and rawpipe_64MiB.
 *
 *   queue_small_items  items/s: a child (fork context) puts n 8-byte bytes items and an
 *                      empty one as the end mark; we take them with
 *                      mp_queue_get_bytes_into into one reused buffer (as
 *                      cpython_baseline.py, the clock starts once the child started).
 *   queue_large_items  MiB/s: the same with 64 MiB items into one reused buffer; the
 *                      first item is taken before the clock starts (steady state: the
 *                      spill blocks exist and are mapped on both sides).
 *   rawpipe_64MiB      MiB/s: the floor to compare the large items with: a forked child
 *                      write()s the same bytes into a plain pipe and we read() them into
 *                      one reused buffer (posix only). */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "multiproc.h"
#include "bench.h"
#include "bench_queue.h"

#define BIG ((size_t)64 << 20)

/* [0] queue, [1] count, [2] item size: puts count items, then an empty one. */
static int producer_target(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    int64_t n = mp_args_int(a, 1);
    size_t size = (size_t)mp_args_int(a, 2);
    char *item = calloc(1, size ? size : 1);
    if (!q || !item) {
        free(item);
        return 1;
    }
    memset(item, 'x', size);
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        memcpy(item, &i, size < sizeof i ? size : sizeof i);
        rc = mp_queue_put_bytes(q, item, size, 60.0);
    }
    if (!rc) rc = mp_queue_put_bytes(q, NULL, 0, 60.0);
    free(item);
    return rc ? 1 : 0;
}

typedef struct producer_args {
    mp_queue *q;
    int64_t n;
    size_t size;
} producer_args;

static int add_producer_args(mp_args *a, void *arg) {
    producer_args *pa = arg;
    int rc = mp_args_add_queue(a, pa->q);
    if (!rc) rc = mp_args_add_int(a, pa->n);
    return rc ? rc : mp_args_add_int(a, (int64_t)pa->size);
}

static int start_producer(mp_queue *q, int64_t n, size_t size, mp_process **out) {
    producer_args pa = {q, n, size};
    return bench_start_child(producer_target, add_producer_args, &pa, out);
}

static int finish(mp_process *p) { return bench_finish_child(p, 120.0); }

/* Takes items until the empty end mark: *count items, *dt seconds from the first
 * timed get (after `skip` untimed ones). */
static int drain(mp_queue *q, void *buf, size_t cap, int skip, int64_t *count, double *dt) {
    size_t len = 0;
    int rc = 0;
    for (int i = 0; i < skip && !rc; i++) rc = mp_queue_get_bytes_into(q, buf, cap, &len, 120.0);
    int64_t n = 0;
    double t = bench_now();
    while (!rc) {
        rc = mp_queue_get_bytes_into(q, buf, cap, &len, 120.0);
        if (!rc && len == 0) break;
        n++;
    }
    *dt = bench_now() - t;
    *count = n;
    return rc;
}

static int run_queue(int64_t n, size_t size, int skip, int64_t *count, double *dt) {
    mp_queue *q = NULL;
    mp_process *p = NULL;
    void *buf = malloc(size ? size : 1);
    if (!buf) return MP_ENOMEM;
    int rc = mp_queue_new(NULL, 0, &q);
    if (!rc) rc = start_producer(q, n + skip, size, &p);
    if (!rc) rc = drain(q, buf, size, skip, count, dt);
    int rc2 = p ? finish(p) : 0;
    mp_queue_free(q);
    free(buf);
    return rc < 0 ? rc : rc2;
}

#ifndef _WIN32
static int run_rawpipe(int n, double *mib_s) {
    int fds[2];
    if (pipe(fds) != 0) return MP_ESYS;
    char *buf = malloc(BIG);
    if (!buf) {
        close(fds[0]);
        close(fds[1]);
        return MP_ENOMEM;
    }
    memset(buf, 'x', BIG);
    pid_t pid = fork();
    if (pid < 0) {
        free(buf);
        close(fds[0]);
        close(fds[1]);
        return MP_ESYS;
    }
    if (pid == 0) {
        close(fds[0]);
        for (int i = 0; i < n + 1; i++)
            for (size_t off = 0; off < BIG;) {
                ssize_t k = write(fds[1], buf + off, BIG - off);
                if (k <= 0) _exit(1);
                off += (size_t)k;
            }
        _exit(0);
    }
    close(fds[1]);
    int rc = 0;
    double t = 0;
    for (int i = 0; i < n + 1 && !rc; i++) {
        if (i == 1) t = bench_now(); /* as the queue: the first item is untimed */
        for (size_t off = 0; off < BIG;) {
            ssize_t k = read(fds[0], buf + off, BIG - off);
            if (k <= 0) {
                rc = MP_EPIPE;
                break;
            }
            off += (size_t)k;
        }
    }
    double dt = bench_now() - t;
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    free(buf);
    if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) rc = MP_ECHILD;
    if (!rc) *mib_s = n * (double)(BIG >> 20) / dt;
    return rc;
}
#endif

int bench_queue_metric(const char *metric, bool quick,
                       void (*report)(const char *metric, double value, const char *unit)) {
    int rc = 0;
    int64_t count = 0;
    double dt = 0, v = 0;
    const char *unit = "MiB/s";
    if (!strcmp(metric, "queue_small_items")) {
        int64_t n = quick ? 200000 : 2000000;
        rc = run_queue(n, 8, 0, &count, &dt);
        if (!rc && count != n) rc = MP_EPROTO;
        v = count / dt;
        unit = "items/s";
    } else if (!strcmp(metric, "queue_large_items")) {
        int64_t n = quick ? 4 : 24;
        rc = run_queue(n, BIG, 1, &count, &dt);
        if (!rc && count != n) rc = MP_EPROTO;
        v = count * (double)(BIG >> 20) / dt;
    } else if (!strcmp(metric, "rawpipe_64MiB")) {
#ifdef _WIN32
        return 0;
#else
        rc = run_rawpipe(quick ? 4 : 24, &v);
#endif
    } else {
        return MP_EINVAL;
    }
    if (rc < 0) {
        fprintf(stderr, "mp_bench: %s: %s (%s): %s\n", metric, mp_strerror(rc), mp_err_name(rc),
                mp_last_error_message());
        return rc;
    }
    report(metric, v, unit);
    return 0;
}
