/* The shared-memory blocks of the synchronisation objects, queues and shared arrays:
 * dedicated blocks (one OS handle each) and the shared arenas small objects are slots
 * of, with this process's lists of what it maps. docs/architecture.md, "Arenas". */
#include <string.h>

#include "arena_hook.h"
#include "block.h"

/* ---- the arena's shared layout ----
 *
 * An arena is one shared block (one handle) cut into slots of 64 << c bytes (classes
 * c = 0..ARENA_CLASSES-1), handed out by bumping `bump`, given back to one free list
 * per class. The lists are Treiber stacks whose head is (tag << 32 | offset) with the
 * next offset in the free slot's first word; every process that maps the arena may
 * push and pop, so a fork child allocates from its parent's arenas safely and a slot
 * whose last user is a child goes back to the list from there. */
enum { ARENA_MAGIC = 0x6d706172 /* "mpar" */, ARENA_CLASSES = 11, ARENA_FIRST = 256 };

typedef struct arena_shared {
    uint64_t id;
    uint32_t magic;
    uint32_t pad;
    uint64_t size;
    _Atomic uint64_t bump; /* the first offset never handed out */
    _Atomic uint64_t live; /* slots in use */
    _Atomic uint64_t seq;  /* allocations so far: object ids */
    _Atomic uint64_t free[ARENA_CLASSES];
} arena_shared;

_Static_assert(sizeof(arena_shared) <= ARENA_FIRST, "arena header too big");
_Static_assert(((size_t)64 << (ARENA_CLASSES - 1)) == MP__ARENA_SLOT_MAX, "slot classes");

struct mp__arena {
    uint64_t id;
    arena_shared *s;
    size_t size;
    mp_os_handle h;
    int refs;   /* slots this process uses + the allocator's hold + decodes in progress */
    bool alloc; /* this process allocates from it (it made it, or its parent did) */
    struct mp__arena *next;
};

/* Under the global lock: what this process maps, and its slots counted in refs. */
static mp__arena *g_arenas; /* newest first */
static mp__block g_live = {.next = &g_live, .prev = &g_live};
static mp__block *g_blocks; /* dedicated blocks */
static size_t g_arena_next = (size_t)256 << 10;
static size_t g_arena_max = (size_t)64 << 20;
static bool g_hook;

void mp__arena_set_sizes(size_t first, size_t max) {
    mp__os_global_lock();
    if (first >= ((size_t)64 << 10)) g_arena_next = first;
    if (max >= ((size_t)64 << 10)) g_arena_max = max;
    mp__os_global_unlock();
}

void mp__arena_stats(size_t *mapped, size_t *own, uint64_t *live) {
    *mapped = *own = 0;
    *live = 0;
    mp__os_global_lock();
    for (const mp__arena *a = g_arenas; a; a = a->next) {
        (*mapped)++;
        if (!a->alloc) continue;
        (*own)++;
        *live += atomic_load(&a->s->live);
    }
    mp__os_global_unlock();
}

static unsigned slot_class(size_t size) {
    unsigned c = 0;
    while (((size_t)64 << c) < size) c++;
    return c;
}

static mp__sync_hdr *slot_at(const mp__arena *a, uint32_t off) {
    return (mp__sync_hdr *)((char *)a->s + off);
}

/* A slot offset read from shared memory: in the arena and on a slot boundary. */
static bool slot_ok(const mp__arena *a, uint64_t off, size_t csz) {
    return off >= ARENA_FIRST && off % 64 == 0 && off + csz <= a->size;
}

static uint32_t slot_pop(mp__arena *a, unsigned c) {
    _Atomic uint64_t *head = &a->s->free[c];
    uint64_t old = atomic_load(head);
    while ((uint32_t)old != 0) {
        uint32_t off = (uint32_t)old;
        if (!slot_ok(a, off, (size_t)64 << c)) return 0; /* a corrupted list: not used */
        uint64_t next = atomic_load_explicit(&slot_at(a, off)->id, memory_order_relaxed);
        uint64_t nw = ((old >> 32) + 1) << 32 | (uint32_t)next;
        if (atomic_compare_exchange_weak(head, &old, nw)) return off;
    }
    return 0;
}

static void slot_push(mp__arena *a, unsigned c, uint32_t off) {
    _Atomic uint64_t *head = &a->s->free[c];
    uint64_t old = atomic_load(head), nw;
    do {
        atomic_store_explicit(&slot_at(a, off)->id, (uint32_t)old, memory_order_relaxed);
        nw = ((old >> 32) + 1) << 32 | off;
    } while (!atomic_compare_exchange_weak(head, &old, nw));
}

static uint32_t slot_bump(mp__arena *a, size_t csz) {
    size_t align = csz < 4096 ? csz : 4096; /* a slot never spans more pages than needed */
    uint64_t cur = atomic_load(&a->s->bump), start;
    do {
        start = (cur + align - 1) & ~(uint64_t)(align - 1);
        if (start + csz > a->size) return 0;
    } while (!atomic_compare_exchange_weak(&a->s->bump, &cur, start + csz));
    return (uint32_t)start;
}

static void arena_unmap(mp__arena *a) {
    mp__os_shm_unmap(a->s, a->size);
    if (a->h != MP_INVALID_OS_HANDLE) mp__os_handle_close(a->h);
    mp__free(a);
}

/* Under the lock: one local user fewer; the last one takes a out of the list and
 * returns it, for the caller to unmap after the lock. */
static mp__arena *arena_unref(mp__arena *a) {
    if (--a->refs > 0) return NULL;
    for (mp__arena **p = &g_arenas; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    return a;
}

static mp__arena *arena_find(uint64_t id) {
    for (mp__arena *a = g_arenas; a; a = a->next)
        if (a->id == id) return a;
    return NULL;
}

static mp__arena *newest_alloc(void) {
    for (mp__arena *a = g_arenas; a; a = a->next)
        if (a->alloc) return a;
    return NULL;
}

/* An arena of this process's with no slot in use anywhere, and not the one it
 * allocates from next: the allocator lets go of it (under the lock). */
static mp__arena *arena_maybe_retire(mp__arena *a) {
    if (!a->alloc || a->refs != 1 || atomic_load(&a->s->live) != 0 || a == newest_alloc())
        return NULL;
    a->alloc = false;
    return arena_unref(a);
}

static int arena_create(size_t need, mp__arena **out) {
    *out = NULL;
    size_t size = g_arena_next;
    while (size < need + ARENA_FIRST) size *= 2;
    mp__arena *a = mp__calloc(1, sizeof *a);
    if (!a) return mp__err(MP_ENOMEM, "sync: out of memory");
    uint64_t id = 0;
    int rc = 0;
    while (id == 0 && !rc) rc = mp__os_random(&id, sizeof id);
    void *base = NULL;
    if (!rc) rc = mp__os_shm_create(size, &a->h, &base);
    if (rc) {
        mp__free(a);
        return mp__err_wrap(rc, "sync: cannot make a shared arena of %zu KiB for new objects",
                            size >> 10);
    }
    a->id = id;
    a->s = base;
    a->size = size;
    a->refs = 1; /* the allocator's hold */
    a->alloc = true;
    a->s->id = id;
    a->s->magic = ARENA_MAGIC;
    a->s->size = size;
    atomic_store(&a->s->bump, ARENA_FIRST);
    a->next = g_arenas;
    g_arenas = a;
    if (g_arena_next < g_arena_max) g_arena_next *= 2;
    *out = a;
    return 0;
}

static void live_add(mp__block *b) {
    b->next = &g_live;
    b->prev = g_live.prev;
    g_live.prev->next = b;
    g_live.prev = b;
}

static void live_del(mp__block *b) {
    if (!b->next) return;
    b->prev->next = b->next;
    b->next->prev = b->prev;
    b->next = b->prev = NULL;
}

/* Under the lock: b no longer counts in its slot's users; the last one frees the slot.
 * A fork child's copy of its parent's object never counted (pid is not the child's). */
static void slot_put(mp__block *b) {
    bool counted = b->pid != 0 && b->pid == mp__os_sync_pid();
    b->pid = 0;
    live_del(b);
    if (!counted) return;
    mp__arena *a = b->arena;
    mp__sync_hdr *h = slot_at(a, b->off);
    if (atomic_fetch_sub(&h->refs, 1) != 1) return;
    h->magic = 0;
    slot_push(a, slot_class(h->size), b->off);
    atomic_fetch_sub(&a->s->live, 1);
}

/* At this process's exit its objects stop counting, so the slots of the ones it
 * never freed (a child keeps its arguments to the end) can be used again. */
static void exit_hook(void) {
    mp__os_global_lock();
    while (g_live.next != &g_live) slot_put(g_live.next);
    mp__os_global_unlock();
}

static int slot_alloc(uint32_t kind, size_t size, mp__block *b) {
    unsigned c = slot_class(size);
    size_t csz = (size_t)64 << c;
    uint32_t pid = mp__os_sync_pid();
    mp__os_global_lock();
    if (!g_hook) g_hook = mp__exit_hook_add(exit_hook) == 0;
    mp__arena *a;
    uint32_t off = 0;
    bool reused = false, passed = false;
    for (a = g_arenas; a; a = a->next) {
        if (!a->alloc) continue;
        if ((off = slot_pop(a, c)) != 0) {
            reused = true;
            break;
        }
        if ((off = slot_bump(a, csz)) != 0) break;
        passed = true;
    }
    if (!off) {
        int rc = arena_create(csz, &a);
        if (rc) {
            mp__os_global_unlock();
            return rc;
        }
        off = slot_bump(a, csz);
    }
    /* Past a full arena: let go of the ones whose last slot a child gave back. */
    mp__arena *retired = NULL;
    if (passed)
        for (mp__arena *o = g_arenas; o && !retired; o = o->next)
            if (o != a) retired = arena_maybe_retire(o);
    mp__sync_hdr *h = slot_at(a, off);
    /* A used slot holds its last object's bytes; the first word stays atomic, as a
     * popper in another process may still read it. */
    if (reused) memset((char *)h + sizeof h->id, 0, size - sizeof h->id);
    uint64_t id = a->id + atomic_fetch_add(&a->s->seq, 1) + 1;
    if (id == 0) id = 1;
    atomic_store(&h->id, id);
    h->magic = MP__SYNC_MAGIC;
    h->kind = kind;
    h->size = (uint32_t)size;
    atomic_store(&h->refs, 1);
    atomic_fetch_add(&a->s->live, 1);
    a->refs++;
    b->id = id;
    b->base = h;
    b->size = size;
    b->h = MP_INVALID_OS_HANDLE;
    b->arena = a;
    b->off = off;
    b->pid = pid;
    b->refs = 1;
    live_add(b);
    mp__os_global_unlock();
    if (retired) arena_unmap(retired);
    return 0;
}

int mp__block_alloc(uint32_t kind, size_t size, mp__block **out) {
    if (size > MP__ARENA_SLOT_MAX) return mp__block_new(kind, size, out);
    *out = NULL;
    mp__block *b = mp__calloc(1, sizeof *b);
    if (!b) return mp__err(MP_ENOMEM, "sync: out of memory");
    int rc = slot_alloc(kind, size, b);
    if (rc) {
        mp__free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- dedicated blocks ---- */

static mp__block *blocks_find(uint64_t id) {
    for (mp__block *b = g_blocks; b; b = b->next)
        if (b->id == id) return b;
    return NULL;
}

int mp__block_new(uint32_t kind, size_t size, mp__block **out) {
    *out = NULL;
    mp__block *b = mp__calloc(1, sizeof *b);
    if (!b) return mp__err(MP_ENOMEM, "sync: out of memory");
    uint64_t id = 0;
    int rc;
    while (id == 0)
        if ((rc = mp__os_random(&id, sizeof id)) != 0) goto fail;
    if ((rc = mp__os_shm_create(size, &b->h, &b->base)) != 0) {
        rc = mp__err_wrap(rc, "sync: cannot make a shared block of %zu KiB", (size + 1023) >> 10);
        goto fail;
    }
    b->id = id;
    b->size = size;
    b->refs = 1;
    mp__sync_hdr *hdr = b->base;
    hdr->id = id;
    hdr->magic = MP__SYNC_MAGIC;
    hdr->kind = kind;
    hdr->size = (uint32_t)size;
    mp__os_global_lock();
    b->next = g_blocks;
    g_blocks = b;
    mp__os_global_unlock();
    *out = b;
    return 0;
fail:
    mp__free(b);
    return rc;
}

void mp__block_ref(mp__block *b) {
    mp__os_global_lock();
    b->refs++;
    mp__os_global_unlock();
}

static void block_unlink(mp__block *b) {
    for (mp__block **p = &g_blocks; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            return;
        }
}

void mp__block_release(mp__block *b) {
    if (!b) return;
    mp__arena *gone = NULL, *retired = NULL;
    mp__os_global_lock();
    bool last = --b->refs == 0;
    if (last && b->arena) {
        slot_put(b);
        gone = arena_unref(b->arena);
        if (!gone) retired = arena_maybe_retire(b->arena);
    } else if (last) {
        block_unlink(b);
    }
    mp__os_global_unlock();
    if (!last) return;
    if (gone) arena_unmap(gone);
    if (retired) arena_unmap(retired);
    if (!b->arena) {
        mp__os_shm_unmap(b->base, b->size);
        if (b->h != MP_INVALID_OS_HANDLE) mp__os_handle_close(b->h);
    }
    mp__free(b);
}

void mp__block_futex_init(const mp__block *b, mp__futex *f) {
    /* Unique among live futexes: a slot's offset is its own in its arena. */
    uint64_t base = b->arena ? b->arena->id + b->off : b->id;
    mp__os_futex_init(f, base + (uint64_t)((char *)f - (char *)b->base));
}

size_t mp__block_handle_count(const mp__block *b) { return b->arena ? 0 : 1; }

enum { DESC_DEDICATED = 0, DESC_SLOT = 1 };

void mp__block_reduce(const mp__block *b, mp__buf *buf, mp_os_handle *handles, size_t *nh) {
    if (b->arena) {
        mp__buf_u8(buf, DESC_SLOT);
        mp__buf_u64(buf, b->arena->id);
        mp__buf_u32(buf, b->off);
        mp__buf_u64(buf, b->id);
        mp__buf_u32(buf, (uint32_t)b->size);
        return;
    }
    mp__buf_u8(buf, DESC_DEDICATED);
    mp__buf_u64(buf, b->id);
    mp__buf_u64(buf, b->size);
    handles[(*nh)++] = b->h;
}

static int slot_rebuild(mp__rd *r, uint32_t kind, mp__block **out) {
    uint64_t aid = mp__rd_u64(r);
    uint32_t off = mp__rd_u32(r);
    uint64_t id = mp__rd_u64(r);
    uint32_t size = mp__rd_u32(r);
    if (r->err || id == 0 || size < sizeof(mp__sync_hdr) || size > MP__ARENA_SLOT_MAX)
        return mp__err(MP_EPROTO, "sync: malformed object description");
    mp__block *b = mp__calloc(1, sizeof *b);
    if (!b) return mp__err(MP_ENOMEM, "sync: out of memory");
    int rc = 0;
    mp__os_global_lock();
    mp__arena *a = arena_find(aid);
    mp__sync_hdr *h = NULL;
    if (!a) {
        rc = mp__err(MP_EPROTO, "sync: the object's arena did not come with it");
    } else if (!slot_ok(a, off, (size_t)64 << slot_class(size))) {
        rc = mp__err(MP_EPROTO, "sync: the object lies outside its arena");
    } else {
        h = slot_at(a, off);
        /* Counted only while some process still holds it: a slot already given back
         * may hold another object by now. */
        uint32_t n = atomic_load(&h->refs);
        do {
            if (n == 0) break;
        } while (!atomic_compare_exchange_weak(&h->refs, &n, n + 1));
        if (n == 0)
            rc = mp__err(MP_EPROTO, "sync: the object was freed before it arrived");
        else if (atomic_load(&h->id) != id || h->magic != MP__SYNC_MAGIC || h->kind != kind ||
                 h->size != size) {
            atomic_fetch_sub(&h->refs, 1); /* never the last: its holder counts */
            rc = mp__err(MP_EPROTO, "sync: the shared block does not match its description");
        }
    }
    if (!rc) {
        a->refs++;
        b->id = id;
        b->base = h;
        b->size = size;
        b->h = MP_INVALID_OS_HANDLE;
        b->arena = a;
        b->off = off;
        b->pid = mp__os_sync_pid();
        b->refs = 1;
        live_add(b);
        if (!g_hook) g_hook = mp__exit_hook_add(exit_hook) == 0;
    }
    mp__os_global_unlock();
    if (rc) {
        mp__free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int mp__block_rebuild(mp__rd *r, uint32_t kind, const mp_os_handle *handles, size_t nh,
                      mp__block **out, bool *took) {
    *out = NULL;
    *took = false;
    uint8_t mode = mp__rd_u8(r);
    if (mode == DESC_SLOT && !r->err) return slot_rebuild(r, kind, out);
    uint64_t id = mp__rd_u64(r), size = mp__rd_u64(r);
    if (r->err || mode != DESC_DEDICATED || id == 0 || size < sizeof(mp__sync_hdr) ||
        size > ((uint64_t)1 << 30))
        return mp__err(MP_EPROTO, "sync: malformed object description");
    if (nh < 1) return mp__err(MP_EPROTO, "sync: a shared block needs its handle");
    mp_os_handle h = handles[0];
    mp__os_global_lock();
    mp__block *b = blocks_find(id);
    int rc = 0;
    if (b && b->h == h) {
        /* A fork child: the description names the very descriptor this block holds
         * (fork keeps the numbers), and the caller closes h as a spare. The block
         * keeps a copy, so it never hands out a number that was closed and reused. */
        mp_os_handle d;
        rc = mp__os_handle_dup(h, &d);
        if (!rc) b->h = d;
    }
    if (b && !rc) b->refs++;
    mp__os_global_unlock();
    if (rc) return rc;
    if (b) {
        *out = b;
        return 0;
    }
    b = mp__calloc(1, sizeof *b);
    if (!b) return mp__err(MP_ENOMEM, "sync: out of memory");
    rc = mp__os_shm_map(h, (size_t)size, &b->base);
    if (rc) {
        mp__free(b);
        return rc;
    }
    const mp__sync_hdr *hdr = b->base;
    if (hdr->magic != MP__SYNC_MAGIC || atomic_load(&hdr->id) != id || hdr->kind != kind ||
        hdr->size != size) {
        mp__os_shm_unmap(b->base, (size_t)size);
        mp__free(b);
        return mp__err(MP_EPROTO, "sync: the shared block does not match its description");
    }
    b->id = id;
    b->size = (size_t)size;
    b->h = h;
    b->refs = 1;
    mp__os_global_lock();
    /* Another thread may have mapped it meanwhile; two mappings would still work. */
    b->next = g_blocks;
    g_blocks = b;
    mp__os_global_unlock();
    *took = true;
    *out = b;
    return 0;
}

void mp__block_unrebuild(mp__block *b, bool took) {
    if (!b) return;
    if (took) b->h = MP_INVALID_OS_HANDLE; /* the handle goes back to the caller */
    mp__block_release(b);
}

/* ---- arenas as they travel ---- */

void mp__arena_reduce(const mp__arena *a, mp__buf *buf, mp_os_handle *handles, size_t *nh) {
    mp__buf_u64(buf, a->id);
    mp__buf_u64(buf, a->size);
    handles[(*nh)++] = a->h;
}

int mp__arena_rebuild(mp__rd *r, mp_os_handle h, mp__arena **out, bool *took) {
    *out = NULL;
    *took = false;
    uint64_t id = mp__rd_u64(r), size = mp__rd_u64(r);
    if (r->err || id == 0 || size <= ARENA_FIRST || size > ((uint64_t)1 << 32))
        return mp__err(MP_EPROTO, "sync: malformed arena description");
    int rc = 0;
    mp__os_global_lock();
    mp__arena *a = arena_find(id);
    if (a) {
        /* A fork child gets the very descriptor its copy of the arena holds (fork keeps
         * the numbers): it stays the arena's. Elsewhere h is a spare. */
        *took = a->h == h;
        a->refs++;
        *out = a;
        mp__os_global_unlock();
        return 0;
    }
    /* Mapped under the lock: one mapping per arena in a process, whoever comes first. */
    void *base = NULL;
    a = mp__calloc(1, sizeof *a);
    if (!a)
        rc = mp__err(MP_ENOMEM, "sync: out of memory");
    else if ((rc = mp__os_shm_map(h, (size_t)size, &base)) != 0)
        rc = mp__err_wrap(rc, "sync: cannot map a shared arena of %llu KiB",
                          (unsigned long long)(size >> 10));
    else if (((arena_shared *)base)->magic != ARENA_MAGIC || ((arena_shared *)base)->id != id ||
             ((arena_shared *)base)->size != size) {
        mp__os_shm_unmap(base, (size_t)size);
        rc = mp__err(MP_EPROTO, "sync: the shared arena does not match its description");
    }
    if (rc) {
        mp__os_global_unlock();
        mp__free(a);
        return rc;
    }
    a->id = id;
    a->s = base;
    a->size = (size_t)size;
    a->h = h;
    a->refs = 1;
    a->next = g_arenas;
    g_arenas = a;
    mp__os_global_unlock();
    *took = true;
    *out = a;
    return 0;
}

void mp__arena_drop(mp__arena *a) {
    if (!a) return;
    mp__os_global_lock();
    mp__arena *gone = arena_unref(a);
    mp__os_global_unlock();
    if (gone) arena_unmap(gone);
}
