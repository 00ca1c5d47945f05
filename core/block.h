/* The shared-memory blocks the synchronisation objects, queues and shared arrays live
 * in (core/block.c): one block per object, travelling as one OS handle. */
#ifndef MP_CORE_BLOCK_H
#define MP_CORE_BLOCK_H

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
    MP__K_QUEUE,        /* core/queue.c */
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

#endif
