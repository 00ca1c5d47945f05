/* The queue_* metric group of mp_bench (bench_queue.c). */
#ifndef MP_BENCH_QUEUE_H
#define MP_BENCH_QUEUE_H

#include <stdbool.h>

/** Runs "queue_small_items", "queue_large_items" or "rawpipe_64MiB" and reports the
 *  figure; a negative MP_E* code (explained on stderr) on failure. */
int bench_queue_metric(const char *metric, bool quick,
                       void (*report)(const char *metric, double value, const char *unit));

#endif
