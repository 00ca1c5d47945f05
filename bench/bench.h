/* What the files of mp_bench share. */
#ifndef MP_BENCH_H
#define MP_BENCH_H

/** Seconds on a monotonic clock; only differences are meaningful. */
double bench_now(void);

/** Starts fn in a child on the fork start method (the default one where there is no
 *  fork), with the arguments build_args(list, arg) adds to a new list. */
struct mp_process;
struct mp_args;
int bench_start_child(int (*fn)(struct mp_args *), int (*build_args)(struct mp_args *, void *),
                      void *arg, struct mp_process **out);
/** Joins a benchmark child (killing it after timeout seconds) and frees it: 0, or
 *  MP_ECHILD when it exited non-zero, or the join's error. */
int bench_finish_child(struct mp_process *p, double timeout);

/** One pool metric (bench_pool.c): pool_map_trivial, pool_imap_chunksize1,
 *  pool_apply_sync, pool_map_records, pool_map_10ms_auto. */
#include <stdbool.h>
int bench_pool_metric(const char *metric, bool quick,
                      void (*report)(const char *, double, const char *));

/** The scale.* metrics (bench_scale.c), those wanted(ctx, name) selects. */
int bench_scale_metrics(bool quick, bool (*wanted)(const void *ctx, const char *metric),
                        const void *wctx, void (*report)(const char *, double, const char *));

#endif
