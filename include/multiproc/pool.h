/* multiproc Pool and ThreadPool: Python's multiprocessing.pool for C. Included by
 * multiproc.h.
 *
 * A pool runs task functions in worker processes of a context (a ThreadPool is the same
 * pool on the dummy context: threads). Task functions are plain C functions of a loaded
 * module; they travel as module + offset + build identity, as process targets do (a
 * worker of another build refuses them: MP_ERESOLVE).
 *
 * Beyond Python:
 *  - a worker that dies in a task (a crash, abort, exit, the OOM killer, SIGKILL) fails
 *    that task with MP_EWORKERDIED, whose message names the signal or exit code; a new
 *    worker takes its place and every other task completes: no call ever hangs on a
 *    dead worker (CPython's hangs);
 *  - a task may be given a time limit: past it, it fails with MP_ETIMEDOUT and its
 *    worker is killed and replaced;
 *  - terminate fails every pending result at once (MP_ECLOSED) instead of leaving get()
 *    blocked;
 *  - imap and map over a source pull their input lazily, with a bounded number of tasks
 *    in flight (CPython reads the whole iterable first);
 *  - an async result can be waited on with mp_wait, next to connections and processes;
 *  - chunk sizes adapt to the measured task time by default (chunksize 0);
 *  - record tasks map a function over arrays of fixed-size binary records with no
 *    encoding at all.
 *
 * Threads: every call may be made from any thread. Callbacks (callback,
 * error_callback, progress) run on the pool's result-handler thread, one at a time, as
 * Python's do; they must not block on the pool they belong to. */
#ifndef MULTIPROC_POOL_H
#define MULTIPROC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/connection.h"
#include "multiproc/export.h"
#include "multiproc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in multiproc.h as well (C11 allows the repetition): this header stands alone. */
typedef struct mp_args mp_args;
typedef struct mp_context mp_context;

typedef struct mp_pool mp_pool;
typedef struct mp_async_result mp_async_result;
typedef struct mp_imap mp_imap;

/* ---- task functions -------------------------------------------------------------- */

/** A value task, run in a worker. arg (borrowed) is the item for map, imap and map over
 *  a source, the argument tuple for apply and starmap (Python's `f(*args)`). Returns 0
 *  and sets `*result` to a new value (NULL stands for None), or a negative MP_E* code:
 *  that task's error, with the detail given by mp_task_error (else the code's text). */
typedef int (*mp_task_fn)(const mp_value *arg, mp_value **result);

/** A record task, run in a worker: reads one input record and writes one output record
 *  (both sizes are given at the call; out is NULL when the output size is 0). 0 or a
 *  negative MP_E* code, which fails the whole call. */
typedef int (*mp_record_fn)(const void *in, void *out);

/** In a task: records code and a printf-style detail as the task's error (Python's
 *  raise); returns code, so `return mp_task_error(MP_EINVAL, "bad item %d", x);`.
 *  @par Errors
 *  None: returns code. */
MP_API int mp_task_error(int code, const char *fmt, ...)
#if defined(__GNUC__) && !defined(__MINGW32__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/** A lazy input: 1 and *item (a new value the pool takes), 0 at the end, or a negative
 *  MP_E* code (the call fails with it). Called on the pool's result-handler thread,
 *  never on two threads at once, only while fewer tasks than the window are in flight. */
typedef int (*mp_source_fn)(void *ctx, mp_value **item);

/* ---- the pool ---------------------------------------------------------------------- */

/** Options; all-zero (or a NULL pointer) means Python's defaults. */
typedef struct mp_pool_opts {
    int processes; /* workers; 0: mp_process_cpu_count() */
    /** Run once in each worker before its first task, with its own copy of initargs
     *  (handles and library objects arrive as in a target's arguments; they live as
     *  long as the worker). Non-zero fails every call of the pool with that error
     *  (CPython would start new workers forever). A worker that dies before it is
     *  ready is replaced; the third such death in a row (an initializer that crashes)
     *  fails every call with MP_EWORKERDIED. */
    int (*initializer)(mp_args *initargs);
    const mp_args *initargs;   /* copied by mp_pool_new */
    unsigned maxtasksperchild; /* 0: none; else a worker is replaced after that many tasks
                                  (a task is a chunk, as in Python) */
    double task_timeout;       /* 0 or MP_FOREVER: none; else a task running longer fails
                                  with MP_ETIMEDOUT and its worker is replaced */
} mp_pool_opts;

/** Starts a pool of workers of ctx (NULL: the default context). MP_ECHILD (and the
 *  worker's reason) when a worker cannot start. Free with mp_pool_free.
 *  @retval MP_EINVAL  out is NULL, processes < 0, or initargs without an initializer.
 *  @retval MP_ESTATE  ctx is NULL and no start method is registered (mp_init not called).
 *  @retval MP_ERESOLVE the initializer is not a function of a loaded module.
 *  @retval MP_ECHILD  a worker could not start (see mp_process_start; MP_ERESOLVE likewise).
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_pool_new(mp_context *ctx, const mp_pool_opts *opts, mp_pool **out);
/** Python's ThreadPool: the same pool on the dummy context.
 *  @retval MP_ESTATE  the dummy start method is not registered (mp_init not called).
 *  @par Other errors
 *  As mp_pool_new. */
MP_API int mp_thread_pool_new(const mp_pool_opts *opts, mp_pool **out);
/** No more tasks may be submitted (MP_ESTATE then); the workers exit once the work
 *  submitted is done.
 *  @retval MP_EINVAL  p is NULL. */
MP_API int mp_pool_close(mp_pool *p);
/** Stops the workers now; every result not ready yet fails with MP_ECLOSED.
 *  @retval MP_EINVAL  p is NULL. */
MP_API int mp_pool_terminate(mp_pool *p);
/** Waits for the workers to exit: MP_ESTATE before close or terminate, MP_ETIMEDOUT.
 *  @retval MP_ETIMEDOUT the workers did not all exit within timeout.
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_ESTATE  neither closed nor terminated. */
MP_API int mp_pool_join(mp_pool *p, double timeout);
/** Terminates the pool if it still runs (Python's with-block), joins and frees it.
 *  Async results and imap iterators of the pool stay valid until freed (failed with
 *  MP_ECLOSED if they were not ready). NULL is fine. */
MP_API void mp_pool_free(mp_pool *p);
/** The number of workers.
 *  @par Errors
 *  None: a count, 0 for NULL. */
MP_API int mp_pool_processes(const mp_pool *p);
/** The workers' pids now (thread ids on dummy): *n of them, at most cap into pids.
 *  @retval MP_EINVAL  p or n is NULL, or pids is NULL with cap > 0. */
MP_API int mp_pool_worker_pids(mp_pool *p, int64_t *pids, size_t cap, size_t *n);

/* ---- per-call options ----------------------------------------------------------- */

/** chunksize: Python's rule for map (len / (4 * processes), rounded up). */
#define MP_CHUNKSIZE_PYTHON ((size_t)-1)

/** Options of a call; all-zero (or a NULL pointer) means the defaults. */
typedef struct mp_call_opts {
    /** Items per task: 0 (the default) adapts to the measured task time, so both trivial
     *  and slow tasks run near full speed; MP_CHUNKSIZE_PYTHON is Python's rule for map;
     *  n sends n items per task (Python's chunksize; imap's default there is 1). */
    size_t chunksize;
    double timeout; /* per task; 0: the pool's task_timeout (MP_FOREVER: none) */
    /** On success: result borrowed (the async result keeps it; NULL for records). */
    void (*callback)(void *ctx, const mp_value *result);
    /** On failure: the first error and its detail. */
    void (*error_callback)(void *ctx, int code, const char *message);
    /** After each task: items done and failed so far, of total (0 while a source has
     *  not ended). */
    void (*progress)(void *ctx, size_t done, size_t total, size_t failed);
    void *ctx;
} mp_call_opts;

/* ---- calls on values ---------------------------------------------------------- */
/* Every call encodes its items before it returns: the caller may change or free them at
 * once, also after an _async call. A map of an empty list succeeds at once with an empty
 * list (its callback is called, as Python's). */

/** Python's apply: fn(args) in a worker, waiting for it. 0 and *result (a new value,
 *  mp_value_free; NULL for None), or the task's error with its detail. args is a tuple
 *  or list (NULL: none).
 *  @retval MP_EINVAL  p, fn or result is NULL; args is not a tuple or list, or cannot be
 *      encoded.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_EWORKERDIED the worker died in the task.
 *  @retval MP_ETIMEDOUT the task ran past its time limit.
 *  @retval MP_ECLOSED the pool was terminated before the task ended.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  Any code the task returned (with its mp_task_error detail); a broken pool's error (its
 *  initializer's code, or MP_EWORKERDIED when workers kept dying before ready) for every call. */
MP_API int mp_pool_apply(mp_pool *p, mp_task_fn fn, const mp_value *args, mp_value **result);
/** Python's apply_async: mp_pool_apply without waiting; *out is the caller's
 *  (mp_async_result_free).
 *  @retval MP_EINVAL  p, fn or out is NULL; args is not a tuple or list, or cannot be encoded.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  A broken pool's error. The task's own errors come from mp_async_result_get. */
MP_API int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_value *args,
                               const mp_call_opts *opts, mp_async_result **out);
/** Python's map: fn(item) for every item of a list or tuple, in order. 0 and *results
 *  (a new list), or the first error of a task (the others are dropped).
 *  @retval MP_EINVAL  p, fn or results is NULL; items is not a list or tuple, or an item cannot
 *      be encoded.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_EWORKERDIED a worker died in a task.
 *  @retval MP_ETIMEDOUT a task ran past its time limit.
 *  @retval MP_ECLOSED the pool was terminated before the call ended.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  Any code a task returned; a broken pool's error (as mp_pool_apply). */
MP_API int mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                       mp_value **results);
/** Python's map_async: mp_pool_map without waiting; the list comes from mp_async_result_get.
 *  @retval MP_EINVAL  p, fn or out is NULL; items is not a list or tuple, or an item cannot be
 *      encoded.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  A broken pool's error. The tasks' errors come from mp_async_result_get. */
MP_API int mp_pool_map_async(mp_pool *p, mp_task_fn fn, const mp_value *items,
                             const mp_call_opts *opts, mp_async_result **out);
/** Python's starmap: each item is the argument tuple (or list) of one call.
 *  @par Errors
 *  As mp_pool_map. */
MP_API int mp_pool_starmap(mp_pool *p, mp_task_fn fn, const mp_value *items,
                           const mp_call_opts *opts, mp_value **results);
/** Python's starmap_async: mp_pool_starmap without waiting.
 *  @par Errors
 *  As mp_pool_map_async. */
MP_API int mp_pool_starmap_async(mp_pool *p, mp_task_fn fn, const mp_value *items,
                                 const mp_call_opts *opts, mp_async_result **out);
/** map over a source, pulled lazily (bounded tasks in flight); results in order.
 *  @retval MP_EINVAL  p, fn, src or results is NULL, or an item cannot be encoded.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @par Other errors
 *  A negative code src returned; otherwise as mp_pool_map (a task's code, MP_EWORKERDIED,
 *  MP_ETIMEDOUT, MP_ECLOSED, MP_ENOMEM). */
MP_API int mp_pool_map_source(mp_pool *p, mp_task_fn fn, mp_source_fn src, void *src_ctx,
                              const mp_call_opts *opts, mp_value **results);

/** Python's imap (ordered) and imap_unordered (in completion order) over a list or
 *  tuple; read with mp_imap_next.
 *  @retval MP_EINVAL  p, fn or out is NULL; items is not a list or tuple, or an item cannot be
 *      encoded.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  A broken pool's error. The tasks' errors come from mp_imap_next. */
MP_API int mp_pool_imap(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                        mp_imap **out);
/** Python's imap_unordered: results in completion order.
 *  @par Errors
 *  As mp_pool_imap. */
MP_API int mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn, const mp_value *items,
                                  const mp_call_opts *opts, mp_imap **out);
/** imap over a source: its items are pulled only as results are taken, so an endless
 *  source needs bounded memory. ordered: imap, else imap_unordered.
 *  @retval MP_EINVAL  p, fn, src or out is NULL.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  A broken pool's error. The tasks' and the source's errors come from mp_imap_next. */
MP_API int mp_pool_imap_source(mp_pool *p, mp_task_fn fn, mp_source_fn src, void *src_ctx,
                               bool ordered, const mp_call_opts *opts, mp_imap **out);
/** The next result: 0 and *item (a new value, NULL for None); the error of the task that
 *  item was in (iteration goes on with the next item); MP_EOF after the last one;
 *  MP_ETIMEDOUT.
 *  @retval MP_EOF     no more results.
 *  @retval MP_ETIMEDOUT no result within timeout.
 *  @retval MP_EINVAL  it or item is NULL.
 *  @retval MP_EWORKERDIED the worker died in that item's task.
 *  @retval MP_ECLOSED the pool was terminated (the call failed as a whole).
 *  @par Other errors
 *  The code of that item's task (with its detail), a negative code of the source, or, for the
 *  call as a whole, a broken pool's error or MP_ENOMEM. */
MP_API int mp_imap_next(mp_imap *it, double timeout, mp_value **item);
/** Stops pulling input; tasks in flight finish and are dropped. NULL is fine. */
MP_API void mp_imap_free(mp_imap *it);

/* ---- calls on records ------------------------------------------------------------ */

/** fn over n records of in_size bytes at in, writing n records of out_size bytes to out
 *  (out_size 0: no output). Nothing is encoded: records travel as bytes and results go
 *  straight into out. 0, or the first error: out then holds a part of the results, and
 *  no record is read from in or written to out once the call has returned (records
 *  tasks, unlike value tasks, are not all run after one failed).
 *  @retval MP_EINVAL  p or fn is NULL, in or out is NULL for n > 0 records of a non-zero size, a
 *      size over 4 GiB, or too many records.
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_EWORKERDIED a worker died in a task.
 *  @retval MP_ETIMEDOUT a task ran past its time limit.
 *  @retval MP_ECLOSED the pool was terminated before the call ended.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  Any code fn returned; a broken pool's error. */
MP_API int mp_pool_map_records(mp_pool *p, mp_record_fn fn, const void *in, size_t in_size,
                               void *out, size_t out_size, size_t n, const mp_call_opts *opts);
/** The same, asynchronously: in and out must stay valid until the result is ready
 *  (freeing the result early does not end the call: they are still used).
 *  @retval MP_EINVAL  p, fn or out_result is NULL, or the arrays are bad (as
 *      mp_pool_map_records).
 *  @retval MP_ESTATE  the pool is closed or terminated.
 *  @retval MP_ERESOLVE fn is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  A broken pool's error. The tasks' errors come from mp_async_result_get. */
MP_API int mp_pool_map_records_async(mp_pool *p, mp_record_fn fn, const void *in, size_t in_size,
                                     void *out, size_t out_size, size_t n, const mp_call_opts *opts,
                                     mp_async_result **out_result);

/* ---- async results (Python's AsyncResult / MapResult) ----------------------------- */

/** Waits up to timeout: 0 and *result (borrowed: valid until the result is freed; a
 *  list for map; NULL for None and for records), the task's error (its detail in
 *  mp_last_error_message), MP_ETIMEDOUT.
 *  @retval MP_ETIMEDOUT not ready within timeout.
 *  @retval MP_EINVAL  r is NULL.
 *  @retval MP_EWORKERDIED a worker died in a task of the call.
 *  @retval MP_ECLOSED the pool was terminated (or freed) before it was ready.
 *  @retval MP_ECANCELED it was canceled (mp_async_result_cancel).
 *  @par Other errors
 *  Any code a task returned, with its detail; MP_ETIMEDOUT also for a task past its time limit;
 *  a broken pool's error; MP_ENOMEM. */
MP_API int mp_async_result_get(mp_async_result *r, double timeout, const mp_value **result);
/** Waits up to timeout until ready: 0 or MP_ETIMEDOUT.
 *  @retval MP_ETIMEDOUT not ready within timeout.
 *  @retval MP_EINVAL  r is NULL. */
MP_API int mp_async_result_wait(mp_async_result *r, double timeout);
/** Whether the result is ready (succeeded or failed); false for NULL. */
MP_API bool mp_async_result_ready(const mp_async_result *r);
/** Whether it succeeded: MP_ESTATE while not ready (Python's ValueError).
 *  @retval MP_EINVAL  r or ok is NULL.
 *  @retval MP_ESTATE  not ready yet. */
MP_API int mp_async_result_successful(const mp_async_result *r, bool *ok);
/** Cancels it if none of its tasks has started: 0, and it fails with MP_ECANCELED;
 *  MP_ESTATE once a task started or it is ready.
 *  @retval MP_EINVAL  r is NULL.
 *  @retval MP_ESTATE  a task of it started or it is ready. */
MP_API int mp_async_result_cancel(mp_async_result *r);
/** Something mp_wait can wait on, ready once the result is (made on first use).
 *  @retval MP_EINVAL  r or out is NULL.
 *  @retval MP_ELIMIT  out of descriptors or handles for its pipe.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ESYS    the OS refused the pipe (the message names the call). */
MP_API int mp_async_result_waitable(mp_async_result *r, mp_waitable *out);
/** The call goes on; its result is dropped when it comes. NULL is fine. */
MP_API void mp_async_result_free(mp_async_result *r);

#ifdef __cplusplus
}
#endif
#endif
