/* Shared between core/sync.c (blocks, Lock, RLock, Semaphore, Event, argument types)
 * and core/sync_cond.c (Condition, Barrier). */
#ifndef MP_CORE_SYNC_INTERNAL_H
#define MP_CORE_SYNC_INTERNAL_H

#include "os_sync.h"

/* ---- blocks: one shared-memory block per object ----
 *
 * A block starts with this header. Blocks are also listed per process by id, so an
 * object that reaches a process which maps its block already (a dummy child, a fork
 * child, the same object passed twice) reuses that mapping: one address per process,
 * which also lets ThreadSanitizer see the synchronisation on the dummy backend. */
enum { MP__SYNC_MAGIC = 0x6d707331 /* "mps1" */ };
enum mp__sync_kind {
    MP__K_LOCK = 1,
    MP__K_SEMAPHORE,
    MP__K_CONDITION,
    MP__K_EVENT,
    MP__K_BARRIER,
    MP__K_QUEUE, /* core/queue.c */
    MP__K_SHARED_ARRAY, /* core/sharedctypes.c */
};

typedef struct mp__sync_hdr {
    uint64_t id;
    uint32_t magic;
    uint32_t kind;
    uint64_t size;
} mp__sync_hdr;

typedef struct mp__block {
    uint64_t id;
    void *base;
    size_t size;
    mp_os_handle h;
    int refs; /* under the global lock */
    struct mp__block *next;
} mp__block;

/** A new zero-filled block with its header filled in. */
int mp__block_new(uint32_t kind, size_t size, mp__block **out);
/** One more user in this process. */
void mp__block_ref(mp__block *b);
/** One user fewer; the last unmaps it and closes its handle. NULL is fine. */
void mp__block_release(mp__block *b);
/** Unique key for a futex inside the block. */
void mp__block_futex_init(const mp__block *b, mp__futex *f);
/** Appends the description and the handle. */
void mp__block_reduce(const mp__block *b, mp__buf *buf, mp_os_handle *handles, size_t *nh);
/** Finds (this process maps it already) or maps the block described at r from handle h.
 *  *took says whether the block adopted h; when not, the caller closes h once the whole
 *  object was rebuilt. On failure h is untouched. */
int mp__block_rebuild(mp__rd *r, uint32_t kind, mp_os_handle h, mp__block **out, bool *took);
/** Undoes a successful mp__block_rebuild when a later step failed: h stays open. */
void mp__block_unrebuild(mp__block *b, bool took);

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

/** A deadline for a timeout (< 0: none), and what is left of it (< 0: none; >= 0). */
double mp__sync_deadline(double timeout);
double mp__sync_left(double deadline);

struct mp_lock {
    mp__block *blk;
    mp__lockw *w;
    _Atomic int refs; /* the user's reference plus one per condition over it */
};

void mp__lock_ref(mp_lock *l);
extern const mp__objtype mp__objtype_lock, mp__objtype_rlock;
/** The object types for nesting a lock in another object's description. */
size_t mp__lock_handle_count(const void *obj);
int mp__lock_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh);
/** Like an objtype rebuild, but handles that were not adopted go into *spare (the
 *  caller closes them once everything succeeded). */
int mp__lock_rebuild_nested(mp__rd *r, const mp_os_handle *handles, size_t nh, mp_lock **out,
                            mp_os_handle *spare);

/** Argument helpers. */
int mp__sync_args_add(mp_args *a, const mp__objtype *t, void *obj, const char *fn);

#endif
