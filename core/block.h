/* The shared-memory blocks the synchronisation objects, queues and shared arrays live
 * in (core/block.c). A small object is a slot of a shared arena (many objects per OS
 * handle); a queue or a big array is a dedicated block with a handle of its own. */
#ifndef MP_CORE_BLOCK_H
#define MP_CORE_BLOCK_H

#include "os_sync.h"

/* ---- blocks ----
 *
 * A block starts with this header. Dedicated blocks are listed per process by id, so
 * one that reaches a process which maps it already (a dummy child, a fork child, the
 * same object passed twice) reuses that mapping; arenas are listed the same way, so an
 * arena object always has one address per process, which also lets ThreadSanitizer
 * see the synchronisation on the dummy backend. */
enum { MP__SYNC_MAGIC = 0x6d707331 /* "mps1" */ };
enum mp__sync_kind {
    MP__K_LOCK = 1,
    MP__K_SEMAPHORE,
    MP__K_CONDITION,
    MP__K_EVENT,
    MP__K_BARRIER,
    MP__K_QUEUE,        /* core/queue.c */
    MP__K_SHARED_ARRAY, /* core/sharedctypes.c */
};

typedef struct mp__sync_hdr {
    _Atomic uint64_t id; /* a free arena slot: the offset of the next free one */
    uint32_t magic;      /* 0 in a free arena slot */
    uint32_t kind;
    uint32_t size;
    _Atomic uint32_t refs; /* arena slots: the objects over it in every process */
} mp__sync_hdr;

/* The largest object an arena slot holds; bigger ones get a dedicated block. */
#define MP__ARENA_SLOT_MAX ((size_t)64 << 10)

typedef struct mp__arena mp__arena;

typedef struct mp__block {
    uint64_t id;
    void *base;
    size_t size;
    mp_os_handle h;   /* dedicated: the block's own handle */
    mp__arena *arena; /* NULL: a dedicated block */
    uint32_t off;     /* in the arena */
    uint32_t pid;     /* arena: the process that counted this object in refs (0: none) */
    int refs;         /* users in this process, under the global lock */
    struct mp__block *next, *prev;
} mp__block;

/** A new zero-filled block with its header filled in: an arena slot when size fits
 *  one (MP__ARENA_SLOT_MAX), else a dedicated block. */
int mp__block_alloc(uint32_t kind, size_t size, mp__block **out);
/** A new zero-filled dedicated block (one OS handle of its own: queues). */
int mp__block_new(uint32_t kind, size_t size, mp__block **out);
/** One more user in this process. */
void mp__block_ref(mp__block *b);
/** One user fewer; the last unmaps it and closes its handle (a dedicated block) or gives
 *  its slot back once no process uses it (an arena slot). NULL is fine. */
void mp__block_release(mp__block *b);
/** Unique key for a futex inside the block. */
void mp__block_futex_init(const mp__block *b, mp__futex *f);
/** How many handles mp__block_reduce appends: 1 for a dedicated block, 0 for a slot. */
size_t mp__block_handle_count(const mp__block *b);
/** Appends the description and, for a dedicated block, the handle. A slot's arena
 *  travels once per argument list (mp__arena_* below). */
void mp__block_reduce(const mp__block *b, mp__buf *buf, mp_os_handle *handles, size_t *nh);
/** Finds (this process maps it already) or maps the block described at r. A dedicated
 *  block uses handles[0] (nh >= 1): *took says whether the block adopted it; when not,
 *  the caller closes it once the whole object was rebuilt (mp__block_handle_count says
 *  whether there was one). A slot uses no handle: its arena must be mapped already (the
 *  argument list's arena section). On failure the handles are untouched. */
int mp__block_rebuild(mp__rd *r, uint32_t kind, const mp_os_handle *handles, size_t nh,
                      mp__block **out, bool *took);
/** Undoes a successful mp__block_rebuild when a later step failed: a handle stays open. */
void mp__block_unrebuild(mp__block *b, bool took);

/* ---- arenas, as they travel: once per argument list, before its objects ---- */

/** The arena a block is a slot of, NULL for a dedicated block. */
static inline mp__arena *mp__block_arena(const mp__block *b) { return b ? b->arena : NULL; }
/** Appends arena a's description and its handle. */
void mp__arena_reduce(const mp__arena *a, mp__buf *buf, mp_os_handle *handles, size_t *nh);
/** Finds or maps the arena described at r from handle h and holds it (one local user)
 *  until mp__arena_drop, so the slots described after it find it. *took says whether
 *  the arena adopted h; when not, the caller closes h. On failure h is untouched. */
int mp__arena_rebuild(mp__rd *r, mp_os_handle h, mp__arena **out, bool *took);
/** Lets go of what mp__arena_rebuild held. NULL is fine. */
void mp__arena_drop(mp__arena *a);

#endif
