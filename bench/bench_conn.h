/* The pipe_* metric group of mp_bench (bench_conn.c). */
#ifndef MP_BENCH_CONN_H
#define MP_BENCH_CONN_H

#include <stdbool.h>

/** Runs "pipe_roundtrip_64B" or "pipe_throughput_1MiB" as cpython_baseline.py does and
 *  reports the figure; a negative MP_E* code (explained on stderr) on failure. */
int bench_conn_metric(const char *metric, bool quick,
                      void (*report)(const char *metric, double value, const char *unit));

#endif
