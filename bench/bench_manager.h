/* The manager_* metric group of mp_bench (bench_manager.c). */
#ifndef MP_BENCH_MANAGER_H
#define MP_BENCH_MANAGER_H

#include <stdbool.h>

/** Runs "manager_dict_setget" as cpython_baseline.py does and reports the figure; a
 *  negative MP_E* code (explained on stderr) on failure. */
int bench_manager_metric(const char *metric, bool quick,
                         void (*report)(const char *metric, double value, const char *unit));

#endif
