/* What the files of mp_bench share. */
#ifndef MP_BENCH_H
#define MP_BENCH_H

/** Seconds on a monotonic clock; only differences are meaningful. */
double bench_now(void);

#endif
