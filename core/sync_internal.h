/* Shared between core/sync.c (Lock, RLock, Semaphore, Event, argument types) and
 * core/sync_cond.c (Condition, Barrier); the blocks they live in are core/block.h. */
#ifndef MP_CORE_SYNC_INTERNAL_H
#define MP_CORE_SYNC_INTERNAL_H

#include "block.h"
#include "os_sync.h"

/* ---- the lock word, for Lock/RLock and inside Condition and Barrier blocks ----
 *
 * f.val is 0 when free, else the holder's pid: acquiring is one CAS, releasing one
 * exchange, and a system call happens only when someone sleeps (f.waiters). A blocked
 * acquirer checks the holder's process every MP__SYNC_SLICE seconds and takes the lock
 * over from a dead one (MP_EOWNERDEAD). owner is the holder's thread (for RLock and
 * Condition); count is the RLock depth, touched by the owner only. */
typedef struct mp__lockw {
    mp__futex f;
    _Atomic uint64_t owner;
    uint32_t count;
    uint32_t recursive;
} mp__lockw;

#define MP__SYNC_SLICE 0.05

int mp__lockw_acquire(mp__lockw *w, double timeout);
int mp__lockw_release(mp__lockw *w);
bool mp__lockw_is_mine(const mp__lockw *w);
/** Condition wait: release every level (the caller holds it), remembering the depth. */
void mp__lockw_release_save(mp__lockw *w, uint32_t *saved);
/** ...and take it back at that depth (waits as long as it takes): 0 or MP_EOWNERDEAD. */
int mp__lockw_acquire_restore(mp__lockw *w, uint32_t saved);

struct mp_lock {
    mp__block *blk;
    mp__lockw *w;
    _Atomic int refs; /* the user's reference plus one per condition over it */
};

void mp__lock_ref(mp_lock *l);
extern const mp__objtype mp__objtype_lock, mp__objtype_rlock;
/** The object types for nesting a lock in another object's description. */
size_t mp__lock_handle_count(const void *obj);
size_t mp__lock_blocks(const void *obj, mp__block **out);
int mp__lock_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh);
/** Like an objtype rebuild, but handles that were not adopted go into *spare (the
 *  caller closes them once everything succeeded). */
int mp__lock_rebuild_nested(mp__rd *r, const mp_os_handle *handles, size_t nh, mp_lock **out,
                            mp_os_handle *spare);

/** Argument helpers. */
int mp__sync_args_add(mp_args *a, const mp__objtype *t, void *obj, const char *fn);

#endif
