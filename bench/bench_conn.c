/* bench_conn: pipe_roundtrip_64B and pipe_throughput_1MiB, measured as
 * ../shared/bench/cpython_baseline.py measures them: a duplex Pipe to a child on the
 * fork context; the child echoes n 64-byte messages, or sinks n 1 MiB messages and
 * answers with the byte count. bench.c lists the two metrics in its group table.
 * Each end has one owner, so both sides turn read-ahead on for good
 * (mp_connection_set_buffered): a small message then costs one read, not two. The
 * default (MP_READ_AHEAD_AUTO) would switch off at the fork, which copies every end.
 * MP_BENCH_CONN_UNBUFFERED=1 in the environment measures read-ahead off (two reads per
 * message); a forked child inherits it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "bench.h"
#include "bench_conn.h"

static int set_buffered(mp_connection *c) {
    const char *off = getenv("MP_BENCH_CONN_UNBUFFERED");
    return mp_connection_set_buffered(c, !(off && *off && strcmp(off, "0") != 0));
}

/* [0] connection, [1] count: echoes count messages through one reused buffer. */
static int conn_echo_target(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    int64_t n = mp_args_int(a, 1);
    char buf[256];
    if (set_buffered(c) < 0) return 1;
    for (int64_t i = 0; i < n; i++) {
        size_t len = 0;
        if (mp_connection_recv_bytes_into(c, buf, sizeof buf, 0, &len, NULL) < 0) return 1;
        if (mp_connection_send_bytes(c, buf, len) < 0) return 1;
    }
    return 0;
}

/* [0] connection, [1] count: receives count messages (recv_bytes, as the baseline's
 * sink allocates each one too), then sends the total as text. */
static int conn_sink_target(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    int64_t n = mp_args_int(a, 1);
    unsigned long long total = 0;
    if (set_buffered(c) < 0) return 1;
    for (int64_t i = 0; i < n; i++) {
        void *p = NULL;
        size_t len = 0;
        if (mp_connection_recv_bytes(c, 0, &p, &len) < 0) return 1;
        total += len;
        mp_connection_free_bytes(p);
    }
    char msg[32];
    int k = snprintf(msg, sizeof msg, "%llu", total);
    return mp_connection_send_bytes(c, msg, (size_t)k) < 0 ? 1 : 0;
}

typedef struct peer_args {
    mp_connection *peer;
    int n;
} peer_args;

static int add_peer_args(mp_args *a, void *arg) {
    peer_args *pa = arg;
    int rc = mp_args_add_connection(a, pa->peer);
    return rc ? rc : mp_args_add_int(a, pa->n);
}

static int start_peer(mp_target_fn fn, mp_connection *peer, int n, mp_process **out) {
    peer_args pa = {peer, n};
    return bench_start_child(fn, add_peer_args, &pa, out);
}

static int finish_peer(mp_process *p) { return bench_finish_child(p, 60.0); }

static int bench_conn_roundtrip(int n, double *us) {
    mp_connection *a = NULL, *b = NULL;
    mp_process *p = NULL;
    char msg[64], back[64];
    memset(msg, 'x', sizeof msg);
    int rc = mp_pipe(true, &a, &b);
    if (!rc) rc = set_buffered(a);
    if (!rc) rc = start_peer(conn_echo_target, b, n, &p);
    mp_connection_free(b); /* the child has its own */
    if (rc < 0) {
        mp_connection_free(a);
        return rc;
    }
    double t = bench_now();
    for (int i = 0; i < n && !rc; i++) {
        size_t len = 0;
        rc = mp_connection_send_bytes(a, msg, sizeof msg);
        if (!rc) rc = mp_connection_recv_bytes_into(a, back, sizeof back, 0, &len, NULL);
    }
    double dt = bench_now() - t;
    mp_connection_free(a);
    int rc2 = finish_peer(p);
    if (rc < 0 || rc2 < 0) return rc < 0 ? rc : rc2;
    *us = dt / n * 1e6;
    return 0;
}

static int bench_conn_throughput(int n, double *mib_s) {
    mp_connection *a = NULL, *b = NULL;
    mp_process *p = NULL;
    size_t sz = (size_t)1 << 20;
    char *big = malloc(sz);
    if (!big) return MP_ENOMEM;
    memset(big, 'x', sz);
    int rc = mp_pipe(true, &a, &b);
    if (!rc) rc = set_buffered(a);
    if (!rc) rc = start_peer(conn_sink_target, b, n, &p);
    mp_connection_free(b);
    if (rc < 0) {
        mp_connection_free(a);
        free(big);
        return rc;
    }
    double t = bench_now();
    for (int i = 0; i < n && !rc; i++) rc = mp_connection_send_bytes(a, big, sz);
    void *ans = NULL;
    size_t len = 0;
    if (!rc) rc = mp_connection_recv_bytes(a, 0, &ans, &len);
    double dt = bench_now() - t;
    mp_connection_free_bytes(ans);
    mp_connection_free(a);
    free(big);
    int rc2 = finish_peer(p);
    if (rc < 0 || rc2 < 0) return rc < 0 ? rc : rc2;
    *mib_s = n / dt;
    return 0;
}

int bench_conn_metric(const char *metric, bool quick,
                      void (*report)(const char *metric, double value, const char *unit)) {
    bool rt = strcmp(metric, "pipe_roundtrip_64B") == 0;
    int n = rt ? (quick ? 2000 : 20000) : (quick ? 50 : 400);
    double v = 0;
    int rc = rt ? bench_conn_roundtrip(n, &v) : bench_conn_throughput(n, &v);
    if (rc < 0) {
        fprintf(stderr, "mp_bench: %s: %s (%s): %s\n", metric, mp_strerror(rc), mp_err_name(rc),
                mp_last_error_message());
        return rc;
    }
    report(metric, v, rt ? "us" : "MiB/s");
    return 0;
}
