/* multiproc queues: Queue, SimpleQueue, JoinableQueue, shared between any number of
 * producer and consumer processes on every start method. Included by multiproc.h.
 *
 * A queue lives in shared memory (posix: a memfd; Windows: an unnamed section): a ring
 * of records, with futex-style waiting. Items are bytes, or values encoded with the
 * codec of connections (mp_value_dumps). An item is never torn or interleaved: with
 * many producers and consumers every item arrives whole, exactly once.
 *
 * put is synchronous: when it returns, the item is in the queue's shared memory and
 * stays there until a process takes it, even when the putting process exits at once.
 * There is no feeder thread, so nothing like Python's join_thread / cancel_join_thread
 * is needed, and a child that put a large item and exited never deadlocks the parent
 * that joins it before reading (CPython gh-73983). Items too big for the ring are
 * handed over in a shared-memory block of their own, so one item is limited only by
 * memory; those blocks are recycled, and go when the last process holding the queue
 * lets go. Windows has no way to park a handle in the kernel: a big item is kept by the
 * process that created the queue, and is lost if that process has ended before the item
 * is taken (the getter skips it).
 *
 * Limits: an unbounded queue that outgrows its ring continues in an overflow area of
 * 8 GiB of address space (posix, sparse; less under a low ulimit -f) or 128 MiB
 * (Windows); past that, put waits as on a full queue. A get that reaches a big item
 * still being written waits for its writer, whatever its timeout.
 *
 * A process that dies while putting or getting leaves the queue usable: the survivors
 * see no half item (a dying producer's item is dropped; an item a dying consumer had
 * taken is gone with it).
 *
 * Timeouts are double seconds: 0 (or negative) tries once (put_nowait / get_nowait),
 * MP_FOREVER waits forever. As in Python, a put that cannot place its item in time is
 * MP_EFULL and a get that finds nothing in time is MP_EEMPTY; on a queue shut down
 * (mp_queue_shutdown) they give MP_ESHUTDOWN, as Python's ShutDown. Blocking calls are
 * not interrupted by signals. A NULL queue is MP_EINVAL. */
#ifndef MULTIPROC_QUEUE_H
#define MULTIPROC_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/export.h"
#include "multiproc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in multiproc.h as well (C11 allows the repetition): this header stands alone. */
typedef struct mp_args mp_args;
typedef struct mp_context mp_context;

typedef struct mp_queue mp_queue;

typedef enum mp_queue_kind {
    MP_QUEUE = 1,         /* Python's Queue */
    MP_SIMPLE_QUEUE = 2,  /* SimpleQueue: unbounded; put, get, empty, close */
    MP_JOINABLE_QUEUE = 3 /* JoinableQueue: Queue plus task_done and join */
} mp_queue_kind;

/** Options for mp_queue_new_opts; all-zero means Python's defaults. */
typedef struct mp_queue_opts {
    mp_queue_kind kind; /* 0 means MP_QUEUE */
    int64_t maxsize;    /* most items in the queue at once; <= 0 unbounded (Python) */
    size_t ring_bytes;  /* size of the shared ring; 0 picks the default */
} mp_queue_opts;

/** Python's Queue(maxsize): maxsize <= 0 is unbounded. ctx NULL = the default context.
 *  Free with mp_queue_free.
 *  @retval MP_EINVAL  out is NULL.
 *  @retval MP_ENOMEM  out of memory, or no room for the shared ring and its overflow area (also
 *      under a low ulimit -f).
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused the shared memory (the message names the call). */
MP_API int mp_queue_new(mp_context *ctx, int64_t maxsize, mp_queue **out);
/** Python's SimpleQueue().
 *  @retval MP_EINVAL  out is NULL.
 *  @par Other errors
 *  As mp_queue_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_simple_queue_new(mp_context *ctx, mp_queue **out);
/** Python's JoinableQueue(maxsize).
 *  @retval MP_EINVAL  out is NULL.
 *  @par Other errors
 *  As mp_queue_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_joinable_queue_new(mp_context *ctx, int64_t maxsize, mp_queue **out);
/** Any kind, with options (opts NULL = defaults).
 *  @retval MP_EINVAL  out is NULL, an unknown kind, or ring_bytes over the limit (512 MiB).
 *  @par Other errors
 *  As mp_queue_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_queue_new_opts(mp_context *ctx, const mp_queue_opts *opts, mp_queue **out);
/** Frees this process's object (NULL is fine); the queue and its items live on in the
 *  other processes that hold it. */
MP_API void mp_queue_free(mp_queue *q);
/** The queue's kind; 0 (no kind) for NULL. */
MP_API mp_queue_kind mp_queue_get_kind(const mp_queue *q);

/** Puts len bytes (buf may be NULL when len is 0). MP_EFULL when a bounded queue stays
 *  full for timeout seconds; MP_ECLOSED after mp_queue_close; MP_ESHUTDOWN once the
 *  queue is shut down.
 *  @retval MP_EFULL     a bounded queue stayed full (or its put side busy) for timeout; a big
 *      item found the big-item channel full.
 *  @retval MP_EINVAL    q is NULL, or buf is NULL with len > 0.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ESHUTDOWN q is shut down.
 *  @retval MP_ENOMEM    the overflow area or a big item's block cannot be mapped.
 *  @retval MP_ELIMIT    out of descriptors for a big item's block.
 *  @retval MP_ESYS      the OS refused (the message names the call). */
MP_API int mp_queue_put_bytes(mp_queue *q, const void *buf, size_t len, double timeout);
/** Puts a value (encoded with mp_value_dumps; MP_ENOTSUP for what it cannot encode).
 *  @retval MP_EINVAL    q or v is NULL.
 *  @retval MP_ENOTSUP   v cannot be encoded (see mp_value_dumps).
 *  @retval MP_ENOMEM    out of memory encoding v.
 *  @par Other errors
 *  As mp_queue_put_bytes (MP_EFULL, MP_ECLOSED, MP_ESHUTDOWN, MP_ESYS...). */
MP_API int mp_queue_put(mp_queue *q, const mp_value *v, double timeout);
/** Takes the next item into a new buffer of exactly its size (free with
 *  mp_queue_free_bytes; an empty item gives a non-NULL buffer and *len 0). A value
 *  item gives its encoded bytes. MP_EEMPTY when nothing came within timeout;
 *  MP_ESHUTDOWN once the queue is shut down and empty (at once after an immediate
 *  shutdown).
 *  @retval MP_EEMPTY    nothing came within timeout.
 *  @retval MP_EINVAL    q, out or len is NULL.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ESHUTDOWN shut down and empty (at once after an immediate shutdown).
 *  @retval MP_ENOMEM    out of memory for the item, or the overflow area cannot be mapped.
 *  @retval MP_EPROTO    a big item's shared record is corrupt.
 *  @retval MP_ESYS      the OS refused (the message names the call). */
MP_API int mp_queue_get_bytes(mp_queue *q, void **out, size_t *len, double timeout);
/** Takes the next item into buf[0 .. cap): 0 and *len its size. When it does not fit:
 *  MP_ETOOBIG, *len its size, and the item stays first in the queue (retry with a
 *  bigger buffer). Nothing is allocated.
 *  @retval MP_ETOOBIG   the item does not fit (see above).
 *  @retval MP_EEMPTY    nothing came within timeout.
 *  @retval MP_EINVAL    q or len is NULL, or buf is NULL with cap > 0.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ESHUTDOWN shut down and empty.
 *  @retval MP_ENOMEM    the overflow area cannot be mapped.
 *  @retval MP_EPROTO    a big item's shared record is corrupt.
 *  @retval MP_ESYS      the OS refused (the message names the call). */
MP_API int mp_queue_get_bytes_into(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout);
/** Takes the next item as a value (free with mp_value_free): a bytes item gives a
 *  bytes value. An item that does not decode (with the limits of
 *  mp_queue_set_value_limits) is consumed and reported (MP_EPROTO).
 *  @retval MP_EEMPTY    nothing came within timeout.
 *  @retval MP_EPROTO    the item does not decode, or is beyond this object's value limits
 *      (it is consumed; the message says why).
 *  @retval MP_EINVAL    q or out is NULL.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ESHUTDOWN shut down and empty.
 *  @retval MP_ENOMEM    out of memory.
 *  @retval MP_ESYS      the OS refused (the message names the call). */
MP_API int mp_queue_get(mp_queue *q, mp_value **out, double timeout);
/** The limits mp_queue_get decodes items with on this object (copied; NULL: back to the
 *  defaults), for producers not trusted: fewer values, bytes or nesting, and
 *  refuse_objects to refuse GLOBAL/STACK_GLOBAL. Only this object: the queue passed to
 *  another process gets with the defaults there. Set it before getting, not during a
 *  get in another thread. Whatever the limits, decoding never makes more than a small
 *  multiple of the item's size (mp_value_loads).
 *  @retval MP_EINVAL    q is NULL. */
MP_API int mp_queue_set_value_limits(mp_queue *q, const mp_value_limits *lim);
/** Frees a buffer from mp_queue_get_bytes (NULL is fine). */
MP_API void mp_queue_free_bytes(void *p);

/** The approximate number of items (Python's qsize; exact when nobody else is putting
 *  or getting, except that an item lost with a process that died putting or getting it
 *  may count until a later get passes its place). MP_ENOTSUP on a SimpleQueue;
 *  MP_ECLOSED after mp_queue_close.
 *  @retval MP_EINVAL    q or n is NULL.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ENOTSUP   a SimpleQueue. */
MP_API int mp_queue_qsize(mp_queue *q, size_t *n);
/** Python's empty() and full() (approximate as in Python): 0 and *out, MP_ECLOSED
 *  after mp_queue_close (Python raises there, at least once the queue's pipe is
 *  closed); is_full is MP_ENOTSUP on a SimpleQueue (it has no full()).
 *  @retval MP_EINVAL    q or out is NULL.
 *  @retval MP_ECLOSED   q was closed in this process. */
MP_API int mp_queue_is_empty(mp_queue *q, bool *out);
/** As mp_queue_is_empty: 0 and *out true when a bounded queue holds maxsize items.
 *  @retval MP_EINVAL    q or out is NULL.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ENOTSUP   a SimpleQueue. */
MP_API int mp_queue_is_full(mp_queue *q, bool *out);
/** The same as predicates: false after mp_queue_close and for NULL (so a closed queue
 *  is neither empty nor full; use the forms above to tell). */
MP_API bool mp_queue_empty(mp_queue *q);
MP_API bool mp_queue_full(mp_queue *q);

/** Python 3.13's queue.Queue.shutdown (multiprocessing's Queue has none; queue.Queue's
 *  semantics, for every process that holds q): from now on every put gives
 *  MP_ESHUTDOWN, also a put blocked on a full queue (it is woken); a get gives the
 *  items still in the queue and then MP_ESHUTDOWN instead of waiting, also a get
 *  blocked on an empty queue. With immediate, the items left are dropped, each counted
 *  as a task done (a JoinableQueue's join returns once the items taken earlier are
 *  done), and every get gives MP_ESHUTDOWN at once. A put that was placing its item
 *  when shutdown began completes before this returns; nothing is put after. Twice is
 *  fine (immediate later still drops what is left). It waits for a put in progress to
 *  finish (a blocked one gives up at once). MP_ENOTSUP on a SimpleQueue (as in Python);
 *  MP_ECLOSED after mp_queue_close. task_done, qsize and join work as before.
 *  @retval MP_EINVAL    q is NULL.
 *  @retval MP_ECLOSED   q was closed in this process.
 *  @retval MP_ENOTSUP   a SimpleQueue.
 *  @retval MP_ESYS      waiting for the put or get side failed in the OS (rare). */
MP_API int mp_queue_shutdown(mp_queue *q, bool immediate);
/** True once q was shut down (by any process); false for NULL and after mp_queue_close. */
MP_API bool mp_queue_is_shutdown(const mp_queue *q);

/** This process will neither put nor get on q any more: later calls give MP_ECLOSED
 *  (Python's close). Items already put stay for the other processes. Twice is fine.
 *  @retval MP_EINVAL    q is NULL. */
MP_API int mp_queue_close(mp_queue *q);

/** JoinableQueue: one item taken earlier is done. MP_ESTATE when called more times than
 *  items were put (Python's ValueError); MP_ENOTSUP on other kinds.
 *  @retval MP_EINVAL    q is NULL.
 *  @retval MP_ENOTSUP   not a JoinableQueue.
 *  @retval MP_ESTATE    more calls than items put. */
MP_API int mp_queue_task_done(mp_queue *q);
/** JoinableQueue: waits until every item put has been marked done: 0 or MP_ETIMEDOUT
 *  (Python's join has no timeout: pass MP_FOREVER). MP_ENOTSUP on other kinds.
 *  @retval MP_ETIMEDOUT tasks are still not done after timeout.
 *  @retval MP_EINVAL    q is NULL.
 *  @retval MP_ENOTSUP   not a JoinableQueue. */
MP_API int mp_queue_join(mp_queue *q, double timeout);

/** A queue passed to a child: it receives its own object over the same queue (q must
 *  stay alive until the process has started).
 *  @retval MP_EINVAL    a or q is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM    out of memory. */
MP_API int mp_args_add_queue(mp_args *a, mp_queue *q);
/** In a child, the queue at i (NULL if i is not a queue; mp_args_object_type names it
 *  "queue"). Borrowed: freed with the args. */
MP_API mp_queue *mp_args_queue(const mp_args *a, size_t i);

#ifdef __cplusplus
}
#endif
#endif
