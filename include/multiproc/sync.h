/* multiproc synchronisation: Lock, RLock, Semaphore, BoundedSemaphore, Condition,
 * Event, Barrier, shared between processes on every start method. Included by
 * multiproc.h.
 *
 * Every object lives in a block of shared memory (posix: a memfd, Windows: an unnamed
 * section) and travels to a child as a process argument (mp_args_add_lock...): the
 * child gets its own object over the same state. The OS resources go when the last
 * process that holds the object lets go; nothing is left in /dev/shm. On the dummy
 * start method the same objects work between threads.
 *
 * Timeouts are double seconds: 0 (or any negative value) tries once without blocking,
 * MP_FOREVER waits forever; expiry is MP_ETIMEDOUT (a Barrier breaks: MP_EBROKEN).
 * Blocking calls are not interrupted by signals. A NULL object is MP_EINVAL.
 *
 * Owner death: when a process dies holding a Lock or RLock (also the lock of a
 * Condition), the next acquirer gets the lock with MP_EOWNERDEAD instead of blocking
 * forever (a blocked acquirer checks the holder's liveness every ~50 ms, so it notices
 * within a fraction of a second). The lock is then held normally; repair what it
 * protected. Semaphore counts are not owned (as in Python): a process that dies after
 * acquiring never gives its unit back; nothing detects it. */
#ifndef MULTIPROC_SYNC_H
#define MULTIPROC_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "multiproc/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in multiproc.h as well (C11 allows the repetition): this header stands alone. */
typedef struct mp_args mp_args;
typedef struct mp_context mp_context;

/* ---- Lock and RLock ----------------------------------------------------------- */

/** A Lock or an RLock (a lock's kind is fixed at creation; a Condition takes either). */
typedef struct mp_lock mp_lock;

/** A Lock: any thread of any process may release it, also one that did not acquire it
 *  (Python's semantics). ctx NULL = the default context. Free with mp_lock_free.
 *  @retval MP_EINVAL  out is NULL.
 *  @retval MP_ENOMEM  out of memory or shared memory.
 *  @retval MP_ELIMIT  out of descriptors or handles for a new shared arena.
 *  @retval MP_ESYS    the OS refused the shared memory (the message names the call). */
MP_API int mp_lock_new(mp_context *ctx, mp_lock **out);
/** An RLock: re-entrant for the owning thread, which must release it as often as it
 *  acquired it; only the owner may release.
 *  @retval MP_EINVAL  out is NULL.
 *  @par Other errors
 *  As mp_lock_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_rlock_new(mp_context *ctx, mp_lock **out);
/** Acquires: 0, MP_ETIMEDOUT (not acquired; also for timeout 0 when held), or
 *  MP_EOWNERDEAD (acquired: the previous holder's process died holding it). A thread
 *  acquiring a Lock it holds waits (Python's Lock deadlocks; use a timeout).
 *  @retval MP_ETIMEDOUT not acquired within timeout.
 *  @retval MP_EOWNERDEAD acquired; the previous holder died holding it.
 *  @retval MP_EINVAL  l is NULL.
 *  @retval MP_EFULL   an RLock acquired UINT32_MAX times by its owner. */
MP_API int mp_lock_acquire(mp_lock *l, double timeout);
/** Releases: MP_ESTATE when not held; for an RLock MP_EPERM when another thread holds
 *  it.
 *  @retval MP_EINVAL  l is NULL.
 *  @retval MP_ESTATE  l is not held.
 *  @retval MP_EPERM   an RLock held by another thread. */
MP_API int mp_lock_release(mp_lock *l);
/** True for an RLock.
 *  @return false for NULL. */
MP_API bool mp_lock_is_recursive(const mp_lock *l);
/** True when the calling thread holds l (it acquired it and has not released it).
 *  @return false for NULL. */
MP_API bool mp_lock_is_mine(const mp_lock *l);
/** Python 3.14's locked(): true while any thread of any process holds l (also a
 *  process that died holding it, until the next acquirer takes it over); false for
 *  NULL. A snapshot: another process may take or release l at any time. */
MP_API bool mp_lock_is_locked(const mp_lock *l);
/** Frees this process's object (NULL is fine); the lock itself lives on in the other
 *  processes that hold it. Does not release it. */
MP_API void mp_lock_free(mp_lock *l);

/* ---- Semaphore and BoundedSemaphore ------------------------------------------ */

typedef struct mp_semaphore mp_semaphore;

/** A Semaphore with an initial value (at most INT32_MAX).
 *  @retval MP_EINVAL  out is NULL, or value is over INT32_MAX.
 *  @retval MP_ENOMEM  out of memory or shared memory.
 *  @retval MP_ELIMIT  out of descriptors or handles for a new shared arena.
 *  @retval MP_ESYS    the OS refused the shared memory (the message names the call). */
MP_API int mp_semaphore_new(mp_context *ctx, unsigned value, mp_semaphore **out);
/** A BoundedSemaphore: releasing past the initial value is MP_ESTATE.
 *  @retval MP_EINVAL  out is NULL, or value is over INT32_MAX.
 *  @par Other errors
 *  As mp_semaphore_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_bounded_semaphore_new(mp_context *ctx, unsigned value, mp_semaphore **out);
/** Decrements, waiting while the value is 0: 0 or MP_ETIMEDOUT.
 *  @retval MP_ETIMEDOUT the value stayed 0 for timeout.
 *  @retval MP_EINVAL  s is NULL. */
MP_API int mp_semaphore_acquire(mp_semaphore *s, double timeout);
/** Increments and wakes one waiter. MP_ESTATE past a bounded semaphore's bound, or at
 *  INT32_MAX.
 *  @retval MP_EINVAL  s is NULL.
 *  @retval MP_ESTATE  past a bounded semaphore's initial value, or at INT32_MAX. */
MP_API int mp_semaphore_release(mp_semaphore *s);
/** The current value into *value (0 on error).
 *  @retval MP_EINVAL  s or value is NULL. */
MP_API int mp_semaphore_get_value(const mp_semaphore *s, int *value);
/** True for a BoundedSemaphore.
 *  @return false for NULL. */
MP_API bool mp_semaphore_is_bounded(const mp_semaphore *s);
/** NULL is fine. */
MP_API void mp_semaphore_free(mp_semaphore *s);

/* ---- Condition ---------------------------------------------------------------- */

typedef struct mp_condition mp_condition;

/** A Condition over lock (a Lock or an RLock, which the condition keeps alive: the
 *  caller may free its own reference), or over a new RLock when lock is NULL. At most
 *  1024 threads may wait on one condition at a time (MP_EFULL beyond).
 *  @retval MP_EINVAL  out is NULL.
 *  @retval MP_ENOMEM  out of memory or shared memory.
 *  @retval MP_ELIMIT  out of descriptors or handles for a new shared arena.
 *  @retval MP_ESYS    the OS refused the shared memory (the message names the call). */
MP_API int mp_condition_new(mp_context *ctx, mp_lock *lock, mp_condition **out);
/** The condition's lock (borrowed, lives as long as c).
 *  @return NULL for NULL. */
MP_API mp_lock *mp_condition_lock(const mp_condition *c);
/** mp_lock_acquire / mp_lock_release on the condition's lock.
 *  @retval MP_EINVAL  c is NULL.
 *  @par Other errors
 *  As mp_lock_acquire (MP_ETIMEDOUT, MP_EOWNERDEAD, MP_EFULL). */
MP_API int mp_condition_acquire(mp_condition *c, double timeout);
/** mp_lock_release on the condition's lock.
 *  @retval MP_EINVAL  c is NULL.
 *  @par Other errors
 *  As mp_lock_release (MP_ESTATE, MP_EPERM). */
MP_API int mp_condition_release(mp_condition *c);
/** Releases the lock (all levels of an RLock), waits for a notify or the timeout, and
 *  re-acquires the lock (as often as before) in every case: 0 when notified,
 *  MP_ETIMEDOUT, MP_EPERM when the caller does not hold the lock, MP_EOWNERDEAD (woken
 *  or not: the lock is held again, its previous holder died), MP_EFULL (too many
 *  waiters).
 *  @retval MP_ETIMEDOUT not notified within timeout (the lock is held again).
 *  @retval MP_EOWNERDEAD the lock's previous holder died (the lock is held again).
 *  @retval MP_EINVAL  c is NULL.
 *  @retval MP_EPERM   the caller does not hold the lock.
 *  @retval MP_EFULL   1024 threads wait already. */
MP_API int mp_condition_wait(mp_condition *c, double timeout);
/** A predicate for mp_condition_wait_for, called with the lock held. */
typedef bool (*mp_predicate_fn)(void *arg);
/** Waits until pred(arg) is true (checked first, then after each wakeup): 0, or
 *  MP_ETIMEDOUT when it is still false at the timeout; errors as mp_condition_wait.
 *  The lock is held on return.
 *  @retval MP_ETIMEDOUT pred is still false at the timeout.
 *  @retval MP_EINVAL  c or pred is NULL.
 *  @retval MP_EPERM   the caller does not hold the lock.
 *  @par Other errors
 *  As mp_condition_wait (MP_EOWNERDEAD, MP_EFULL). */
MP_API int mp_condition_wait_for(mp_condition *c, mp_predicate_fn pred, void *arg, double timeout);
/** Wakes up to n of the threads waiting (the longest waiting first); MP_EPERM when the
 *  caller does not hold the lock. A waiter whose process died does not use up one of
 *  the n.
 *  @retval MP_EINVAL  c is NULL.
 *  @retval MP_EPERM   the caller does not hold the lock. */
MP_API int mp_condition_notify(mp_condition *c, int n);
/** Wakes every waiting thread; MP_EPERM when the caller does not hold the lock.
 *  @retval MP_EINVAL  c is NULL.
 *  @retval MP_EPERM   the caller does not hold the lock. */
MP_API int mp_condition_notify_all(mp_condition *c);
/** NULL is fine; drops the condition's reference to its lock. */
MP_API void mp_condition_free(mp_condition *c);

/* ---- Event -------------------------------------------------------------------- */

typedef struct mp_event mp_event;

/** A new, clear Event.
 *  @retval MP_EINVAL  out is NULL.
 *  @retval MP_ENOMEM  out of memory or shared memory.
 *  @retval MP_ELIMIT  out of descriptors or handles for a new shared arena.
 *  @retval MP_ESYS    the OS refused the shared memory (the message names the call). */
MP_API int mp_event_new(mp_context *ctx, mp_event **out);
/** Sets the flag and wakes every waiter.
 *  @retval MP_EINVAL  e is NULL. */
MP_API int mp_event_set(mp_event *e);
/** Clears the flag.
 *  @retval MP_EINVAL  e is NULL. */
MP_API int mp_event_clear(mp_event *e);
/** Whether the flag is set; false for NULL. */
MP_API bool mp_event_is_set(const mp_event *e);
/** Waits until the flag is set: 0 (also when it was set and cleared again while this
 *  thread waited, as threading.Event), MP_ETIMEDOUT.
 *  @retval MP_ETIMEDOUT the flag stayed clear for timeout.
 *  @retval MP_EINVAL  e is NULL. */
MP_API int mp_event_wait(mp_event *e, double timeout);
/** NULL is fine. */
MP_API void mp_event_free(mp_event *e);

/* ---- Barrier ------------------------------------------------------------------ */

typedef struct mp_barrier mp_barrier;

/** The barrier's action: run by the last party to arrive, before any is released
 *  (in that party's process, with the barrier's internal lock held). It receives that
 *  process's own copy of the action's arguments (never NULL: an empty list when none
 *  were given); objects among them (a queue, a shared value...) are that process's
 *  objects over the shared state, so state travels through them, not through globals.
 *  It must be a function of a loaded module, like a process target (it travels as
 *  module + offset). Non-zero breaks the barrier. */
typedef int (*mp_barrier_action_fn)(mp_args *args);

/** A Barrier for parties (>= 1) threads/processes; action may be NULL; timeout is the
 *  default for mp_barrier_wait (MP_FOREVER: none). action_args (NULL: none; MP_EINVAL
 *  without an action) is copied at once, objects and OS handles included, so the
 *  caller may free it and its objects right away; the copy travels with the barrier
 *  to a child (mp_args_add_barrier), which rebuilds its own, as a target's arguments.
 *  @retval MP_EINVAL  out is NULL, parties is 0 or over INT32_MAX, or action_args without an
 *      action.
 *  @retval MP_ERESOLVE action is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory or shared memory (also copying action_args).
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_barrier_new(mp_context *ctx, unsigned parties, mp_barrier_action_fn action,
                          const mp_args *action_args, double timeout, mp_barrier **out);
/** Waits with the barrier's default timeout until all parties arrived. *index (may be
 *  NULL) gets the arrival index, 0..parties-1 (-1 on error). MP_EBROKEN (Python's
 *  BrokenBarrierError) for every party when the barrier is or becomes broken: abort,
 *  reset while waiting, a failed action (also for the party that ran it), a party's
 *  timeout (also for that party, whose expiry breaks it), a party that died holding
 *  the barrier's internal lock.
 *  @retval MP_EBROKEN the barrier is or became broken (see above).
 *  @retval MP_EINVAL  b is NULL. */
MP_API int mp_barrier_wait(mp_barrier *b, int *index);
/** mp_barrier_wait with an explicit timeout.
 *  @retval MP_EBROKEN the barrier is or became broken, also by this party's timeout.
 *  @retval MP_EINVAL  b is NULL. */
MP_API int mp_barrier_wait_timeout(mp_barrier *b, double timeout, int *index);
/** Returns the barrier to the empty state; parties waiting get MP_EBROKEN.
 *  @retval MP_EINVAL  b is NULL. */
MP_API int mp_barrier_reset(mp_barrier *b);
/** Breaks the barrier: current and future waits get MP_EBROKEN until a reset.
 *  @retval MP_EINVAL  b is NULL. */
MP_API int mp_barrier_abort(mp_barrier *b);
/** True while the barrier is broken; false for NULL. */
MP_API bool mp_barrier_broken(const mp_barrier *b);
/** Parties currently waiting (0 while draining or broken); 0 for NULL.
 *  @par Errors
 *  None: a count, 0 for NULL. */
MP_API int mp_barrier_n_waiting(const mp_barrier *b);
/** The number of parties; 0 for NULL.
 *  @par Errors
 *  None: a count, 0 for NULL. */
MP_API int mp_barrier_parties(const mp_barrier *b);
/** NULL is fine; frees this process's copy of the action's arguments. */
MP_API void mp_barrier_free(mp_barrier *b);

/* ---- as process arguments ----------------------------------------------------- */

/** Adds a synchronisation object to a (borrowed: it must live until the process has
 *  started). The child receives its own object over the same state.
 *  @retval MP_EINVAL  a or the object is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_lock(mp_args *a, mp_lock *l);
/** As mp_args_add_lock, for a Semaphore or BoundedSemaphore.
 *  @retval MP_EINVAL  a or s is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_semaphore(mp_args *a, mp_semaphore *s);
/** As mp_args_add_lock, for a Condition (its lock goes with it).
 *  @retval MP_EINVAL  a or c is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_condition(mp_args *a, mp_condition *c);
/** As mp_args_add_lock, for an Event.
 *  @retval MP_EINVAL  a or e is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_event(mp_args *a, mp_event *e);
/** As mp_args_add_lock, for a Barrier (its action's arguments go with it).
 *  @retval MP_EINVAL  a or b is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_barrier(mp_args *a, mp_barrier *b);
/** The object at i in a child's args, NULL when i is out of range or of another kind
 *  (mp_args_object_type names it: "lock", "rlock", "semaphore", "bounded_semaphore",
 *  "condition", "event", "barrier"). Borrowed: freed with the args. */
MP_API mp_lock *mp_args_lock(const mp_args *a, size_t i);
MP_API mp_semaphore *mp_args_semaphore(const mp_args *a, size_t i);
MP_API mp_condition *mp_args_condition(const mp_args *a, size_t i);
MP_API mp_event *mp_args_event(const mp_args *a, size_t i);
MP_API mp_barrier *mp_args_barrier(const mp_args *a, size_t i);

#ifdef __cplusplus
}
#endif
#endif
