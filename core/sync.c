/* Lock, RLock, Semaphore, BoundedSemaphore and Event over words in shared memory (in
 * blocks of core/block.c). Condition and Barrier are in sync_cond.c. */
#include <string.h>

#include "sync_internal.h"

/* ---- the lock word ---- */

/* The caller's ids, cached per thread here too so that the fast path makes no call;
 * the OS layer's fork handler drops them in a forked child. */
static MP__THREAD_LOCAL uint32_t t_pid;
static MP__THREAD_LOCAL uint64_t t_tid;

void mp__sync_forget_ids(void) {
    t_pid = 0;
    t_tid = 0;
}

static void ids_fill(void) {
    t_tid = mp__os_sync_tid();
    t_pid = mp__os_sync_pid();
}

static inline uint32_t my_pid(void) {
    if (t_pid == 0) ids_fill();
    return t_pid;
}

static inline uint64_t my_tid(void) {
    if (t_pid == 0) ids_fill();
    return t_tid;
}

/* Is the process holding the lock as pid gone? watched and wh cache a watch on it. */
static bool holder_dead(uint32_t pid, uint32_t *watched, mp_os_handle *wh) {
    if (pid == my_pid()) return false; /* another thread of ours */
    if (*watched != pid) {
        mp__os_proc_watch_close(*wh);
        *wh = MP_INVALID_OS_HANDLE;
        *watched = pid;
        if (mp__os_proc_watch(pid, wh) != 0) {
            *wh = MP_INVALID_OS_HANDLE;
            *watched = 0;
            return true;
        }
    }
    return mp__os_proc_watch_gone(*wh);
}

/* No spinning before sleeping (as glibc's default mutex): measured on a loaded 2-CPU
 * machine, any spin made two contending processes slower and far less steady, since
 * a spinning waiter takes the CPU from the holder it waits for. */
static int lockw_acquire_slow(mp__lockw *w, uint32_t me, double timeout) {
    double deadline = mp__deadline(timeout);
    uint32_t watched = 0;
    mp_os_handle wh = MP_INVALID_OS_HANDLE;
    int rc;
    for (;;) {
        uint32_t v = atomic_load_explicit(&w->f.val, memory_order_relaxed);
        if (v == 0) {
            if (atomic_compare_exchange_strong_explicit(&w->f.val, &v, me, memory_order_acquire,
                                                        memory_order_relaxed)) {
                rc = 0;
                break;
            }
            continue;
        }
        double left = mp__left(deadline);
        double slice = (left >= 0 && left < MP__SYNC_SLICE) ? left : MP__SYNC_SLICE;
        int r = slice > 0 ? mp__os_futex_wait(&w->f, v, slice) : MP_ETIMEDOUT;
        if (r != MP_ETIMEDOUT) continue;
        /* The same holder for a whole slice (or the time is up): is it still alive? */
        if (holder_dead(v, &watched, &wh)) {
            if (atomic_compare_exchange_strong_explicit(&w->f.val, &v, me, memory_order_acquire,
                                                        memory_order_relaxed)) {
                rc = MP_EOWNERDEAD;
                break;
            }
            continue;
        }
        if (left == 0) {
            rc = MP_ETIMEDOUT;
            break;
        }
    }
    mp__os_proc_watch_close(wh);
    return rc;
}

int mp__lockw_acquire(mp__lockw *w, double timeout) {
    uint32_t me = my_pid();
    uint32_t v = 0;
    int rc = 0;
    if (!atomic_compare_exchange_strong_explicit(&w->f.val, &v, me, memory_order_acquire,
                                                 memory_order_relaxed))
        rc = lockw_acquire_slow(w, me, timeout);
    if (rc == 0 || rc == MP_EOWNERDEAD)
        atomic_store_explicit(&w->owner, my_tid(), memory_order_relaxed);
    return rc;
}

int mp__lockw_release(mp__lockw *w) {
    atomic_store_explicit(&w->owner, 0, memory_order_relaxed);
    /* seq_cst: the exchange must come before the look at waiters (see mp__futex). */
    if (atomic_exchange(&w->f.val, 0) == 0) return MP_ESTATE;
    if (atomic_load(&w->f.waiters) != 0) mp__os_futex_wake(&w->f, 1);
    return 0;
}

bool mp__lockw_is_mine(const mp__lockw *w) {
    return atomic_load_explicit(&w->f.val, memory_order_relaxed) == my_pid() &&
           atomic_load_explicit(&w->owner, memory_order_relaxed) == my_tid();
}

void mp__lockw_release_save(mp__lockw *w, uint32_t *saved) {
    *saved = w->recursive ? w->count : 1;
    w->count = 0;
    mp__lockw_release(w);
}

int mp__lockw_acquire_restore(mp__lockw *w, uint32_t saved) {
    int rc = mp__lockw_acquire(w, MP_FOREVER);
    if (w->recursive) w->count = saved;
    return rc;
}

/* ---- Lock and RLock ---- */

typedef struct lock_shared {
    mp__sync_hdr hdr;
    mp__lockw w;
} lock_shared;

static mp_lock *lock_wrap(mp__block *b) {
    mp_lock *l = mp__calloc(1, sizeof *l);
    if (!l) return NULL;
    l->blk = b;
    l->w = &((lock_shared *)b->base)->w;
    atomic_init(&l->refs, 1);
    return l;
}

static int lock_create(mp_context *ctx, bool recursive, mp_lock **out) {
    (void)ctx; /* every start method shares the same kind of object */
    if (!out) return mp__err(MP_EINVAL, "mp_lock_new: out is NULL");
    *out = NULL;
    mp__block *b;
    int rc = mp__block_alloc(MP__K_LOCK, sizeof(lock_shared), &b);
    if (rc) return rc;
    lock_shared *s = b->base;
    mp__block_futex_init(b, &s->w.f);
    s->w.recursive = recursive;
    mp_lock *l = lock_wrap(b);
    if (!l) {
        mp__block_release(b);
        return mp__err(MP_ENOMEM, "mp_lock_new: out of memory");
    }
    *out = l;
    return 0;
}

int mp_lock_new(mp_context *ctx, mp_lock **out) { return lock_create(ctx, false, out); }
int mp_rlock_new(mp_context *ctx, mp_lock **out) { return lock_create(ctx, true, out); }

int mp_lock_acquire(mp_lock *l, double timeout) {
    if (!l) return mp__err(MP_EINVAL, "mp_lock_acquire: lock is NULL");
    mp__lockw *w = l->w;
    if (w->recursive && mp__lockw_is_mine(w)) {
        if (w->count == UINT32_MAX) return mp__err(MP_EFULL, "mp_lock_acquire: recursion too deep");
        w->count++;
        return 0;
    }
    int rc = mp__lockw_acquire(w, timeout);
    if (rc == 0 || rc == MP_EOWNERDEAD)
        if (w->recursive) w->count = 1;
    if (rc == 0) return 0;
    if (rc == MP_EOWNERDEAD) {
        return mp__err(MP_EOWNERDEAD, "mp_lock_acquire: the previous holder died holding the lock");
    }
    return mp__err(rc, "mp_lock_acquire: timed out after %.3f s", timeout);
}

int mp_lock_release(mp_lock *l) {
    if (!l) return mp__err(MP_EINVAL, "mp_lock_release: lock is NULL");
    mp__lockw *w = l->w;
    if (w->recursive) {
        if (atomic_load_explicit(&w->f.val, memory_order_relaxed) == 0)
            return mp__err(MP_ESTATE, "mp_lock_release: the rlock is not held");
        if (!mp__lockw_is_mine(w))
            return mp__err(MP_EPERM, "mp_lock_release: the rlock is held by another thread");
        if (--w->count > 0) return 0;
    }
    if (mp__lockw_release(w) != 0)
        return mp__err(MP_ESTATE, "mp_lock_release: the lock is not held");
    return 0;
}

bool mp_lock_is_recursive(const mp_lock *l) { return l && l->w->recursive; }
bool mp_lock_is_locked(const mp_lock *l) {
    return l && atomic_load_explicit(&l->w->f.val, memory_order_relaxed) != 0;
}
bool mp_lock_is_mine(const mp_lock *l) { return l && mp__lockw_is_mine(l->w); }

void mp__lock_ref(mp_lock *l) { atomic_fetch_add(&l->refs, 1); }

void mp_lock_free(mp_lock *l) {
    if (!l || atomic_fetch_sub(&l->refs, 1) != 1) return;
    mp__block_release(l->blk);
    mp__free(l);
}

size_t mp__lock_handle_count(const void *obj) {
    return mp__block_handle_count(((const mp_lock *)obj)->blk);
}

size_t mp__lock_blocks(const void *obj, mp__block **out) {
    out[0] = ((const mp_lock *)obj)->blk;
    return 1;
}

int mp__lock_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    mp__block_reduce(((const mp_lock *)obj)->blk, b, handles, nh);
    return 0;
}

int mp__lock_rebuild_nested(mp__rd *r, const mp_os_handle *handles, size_t nh, mp_lock **out,
                            mp_os_handle *spare) {
    *out = NULL;
    *spare = MP_INVALID_OS_HANDLE;
    mp__block *b;
    bool took;
    int rc = mp__block_rebuild(r, MP__K_LOCK, handles, nh, &b, &took);
    if (rc) return rc;
    mp_lock *l = lock_wrap(b);
    if (!l) {
        mp__block_unrebuild(b, took);
        return mp__err(MP_ENOMEM, "sync: out of memory");
    }
    if (mp__block_handle_count(b) && !took) *spare = handles[0];
    *out = l;
    return 0;
}

/* As an argument: the same type for both kinds, named after the kind. */
static int lock_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    mp_lock *l;
    mp_os_handle spare;
    int rc = mp__lock_rebuild_nested(r, handles, nh, &l, &spare);
    if (rc) return rc;
    if (spare != MP_INVALID_OS_HANDLE) mp__os_handle_close(spare);
    *out = l;
    return 0;
}

static void lock_objfree(void *obj) { mp_lock_free(obj); }

const mp__objtype mp__objtype_lock = {
    .name = "lock",
    .handle_count = mp__lock_handle_count,
    .reduce = mp__lock_reduce,
    .rebuild = lock_rebuild,
    .free = lock_objfree,
    .blocks = mp__lock_blocks,
};
const mp__objtype mp__objtype_rlock = {
    .name = "rlock",
    .handle_count = mp__lock_handle_count,
    .reduce = mp__lock_reduce,
    .rebuild = lock_rebuild,
    .free = lock_objfree,
    .blocks = mp__lock_blocks,
};

int mp__sync_args_add(mp_args *a, const mp__objtype *t, void *obj, const char *fn) {
    if (!a) return mp__err(MP_EINVAL, "%s: args is NULL", fn);
    if (!obj) return mp__err(MP_EINVAL, "%s: object is NULL", fn);
    return mp__args_add_object(a, t, obj);
}

int mp_args_add_lock(mp_args *a, mp_lock *l) {
    const mp__objtype *t = (l && l->w->recursive) ? &mp__objtype_rlock : &mp__objtype_lock;
    return mp__sync_args_add(a, t, l, "mp_args_add_lock");
}

mp_lock *mp_args_lock(const mp_args *a, size_t i) {
    mp_lock *l = mp__args_object(a, i, &mp__objtype_lock);
    return l ? l : mp__args_object(a, i, &mp__objtype_rlock);
}

/* ---- Semaphore and BoundedSemaphore ---- */

enum { SEM_MAX = 0x7fffffff };

typedef struct sem_shared {
    mp__sync_hdr hdr;
    mp__futex f; /* val: the value */
    uint32_t bounded;
    uint32_t bound;
} sem_shared;

struct mp_semaphore {
    mp__block *blk;
    sem_shared *s;
};

static mp_semaphore *sem_wrap(mp__block *b) {
    mp_semaphore *s = mp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->blk = b;
    s->s = b->base;
    return s;
}

static int sem_create(bool bounded, unsigned value, mp_semaphore **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_semaphore_new: out is NULL");
    *out = NULL;
    if (value > SEM_MAX)
        return mp__err(MP_EINVAL, "mp_semaphore_new: value %u is too large", value);
    mp__block *b;
    int rc = mp__block_alloc(MP__K_SEMAPHORE, sizeof(sem_shared), &b);
    if (rc) return rc;
    sem_shared *ss = b->base;
    mp__block_futex_init(b, &ss->f);
    atomic_store(&ss->f.val, value);
    ss->bounded = bounded;
    ss->bound = value;
    mp_semaphore *s = sem_wrap(b);
    if (!s) {
        mp__block_release(b);
        return mp__err(MP_ENOMEM, "mp_semaphore_new: out of memory");
    }
    *out = s;
    return 0;
}

int mp_semaphore_new(mp_context *ctx, unsigned value, mp_semaphore **out) {
    (void)ctx;
    return sem_create(false, value, out);
}

int mp_bounded_semaphore_new(mp_context *ctx, unsigned value, mp_semaphore **out) {
    (void)ctx;
    return sem_create(true, value, out);
}

int mp_semaphore_acquire(mp_semaphore *s, double timeout) {
    if (!s) return mp__err(MP_EINVAL, "mp_semaphore_acquire: semaphore is NULL");
    mp__futex *f = &s->s->f;
    double deadline = -2;
    for (;;) {
        uint32_t v = atomic_load_explicit(&f->val, memory_order_relaxed);
        while (v > 0)
            if (atomic_compare_exchange_weak_explicit(&f->val, &v, v - 1, memory_order_acquire,
                                                      memory_order_relaxed))
                return 0;
        if (deadline == -2) deadline = mp__deadline(timeout);
        double left = mp__left(deadline);
        if (left == 0 || mp__os_futex_wait(f, 0, left) == MP_ETIMEDOUT) {
            if (atomic_load(&f->val) > 0) continue; /* one last look */
            return mp__err(MP_ETIMEDOUT, "mp_semaphore_acquire: timed out after %.3f s", timeout);
        }
    }
}

int mp_semaphore_release(mp_semaphore *s) {
    if (!s) return mp__err(MP_EINVAL, "mp_semaphore_release: semaphore is NULL");
    sem_shared *ss = s->s;
    uint32_t v = atomic_load_explicit(&ss->f.val, memory_order_relaxed);
    do {
        if (ss->bounded && v >= ss->bound)
            return mp__err(MP_ESTATE,
                           "mp_semaphore_release: bounded semaphore released too many times");
        if (v >= SEM_MAX) return mp__err(MP_ESTATE, "mp_semaphore_release: value at its maximum");
    } while (!atomic_compare_exchange_weak(&ss->f.val, &v, v + 1));
    if (atomic_load(&ss->f.waiters) != 0) mp__os_futex_wake(&ss->f, 1);
    return 0;
}

int mp_semaphore_get_value(const mp_semaphore *s, int *value) {
    if (value) *value = 0;
    if (!s || !value) return mp__err(MP_EINVAL, "mp_semaphore_get_value: NULL argument");
    *value = (int)atomic_load(&s->s->f.val);
    return 0;
}

bool mp_semaphore_is_bounded(const mp_semaphore *s) { return s && s->s->bounded; }

void mp_semaphore_free(mp_semaphore *s) {
    if (!s) return;
    mp__block_release(s->blk);
    mp__free(s);
}

static size_t sem_handle_count(const void *obj) {
    return mp__block_handle_count(((const mp_semaphore *)obj)->blk);
}

static size_t sem_blocks(const void *obj, mp__block **out) {
    out[0] = ((const mp_semaphore *)obj)->blk;
    return 1;
}

static int sem_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    mp__block_reduce(((const mp_semaphore *)obj)->blk, b, handles, nh);
    return 0;
}

static int sem_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    mp__block *b;
    bool took;
    int rc = mp__block_rebuild(r, MP__K_SEMAPHORE, handles, nh, &b, &took);
    if (rc) return rc;
    mp_semaphore *s = sem_wrap(b);
    if (!s) {
        mp__block_unrebuild(b, took);
        return mp__err(MP_ENOMEM, "sync: out of memory");
    }
    if (mp__block_handle_count(b) && !took) mp__os_handle_close(handles[0]);
    *out = s;
    return 0;
}

static void sem_objfree(void *obj) { mp_semaphore_free(obj); }

const mp__objtype mp__objtype_semaphore = {
    .name = "semaphore",
    .handle_count = sem_handle_count,
    .reduce = sem_reduce,
    .rebuild = sem_rebuild,
    .free = sem_objfree,
    .blocks = sem_blocks,
};
const mp__objtype mp__objtype_bounded_semaphore = {
    .name = "bounded_semaphore",
    .handle_count = sem_handle_count,
    .reduce = sem_reduce,
    .rebuild = sem_rebuild,
    .free = sem_objfree,
    .blocks = sem_blocks,
};

int mp_args_add_semaphore(mp_args *a, mp_semaphore *s) {
    const mp__objtype *t =
        (s && s->s->bounded) ? &mp__objtype_bounded_semaphore : &mp__objtype_semaphore;
    return mp__sync_args_add(a, t, s, "mp_args_add_semaphore");
}

mp_semaphore *mp_args_semaphore(const mp_args *a, size_t i) {
    mp_semaphore *s = mp__args_object(a, i, &mp__objtype_semaphore);
    return s ? s : mp__args_object(a, i, &mp__objtype_bounded_semaphore);
}

/* ---- Event ----
 * val: bit 0 the flag, the bits above count the sets, so a waiter that sees the word
 * change knows a set happened even when a clear followed before it woke up. */

typedef struct event_shared {
    mp__sync_hdr hdr;
    mp__futex f;
} event_shared;

struct mp_event {
    mp__block *blk;
    event_shared *s;
};

static mp_event *event_wrap(mp__block *b) {
    mp_event *e = mp__calloc(1, sizeof *e);
    if (!e) return NULL;
    e->blk = b;
    e->s = b->base;
    return e;
}

int mp_event_new(mp_context *ctx, mp_event **out) {
    (void)ctx;
    if (!out) return mp__err(MP_EINVAL, "mp_event_new: out is NULL");
    *out = NULL;
    mp__block *b;
    int rc = mp__block_alloc(MP__K_EVENT, sizeof(event_shared), &b);
    if (rc) return rc;
    mp__block_futex_init(b, &((event_shared *)b->base)->f);
    mp_event *e = event_wrap(b);
    if (!e) {
        mp__block_release(b);
        return mp__err(MP_ENOMEM, "mp_event_new: out of memory");
    }
    *out = e;
    return 0;
}

int mp_event_set(mp_event *e) {
    if (!e) return mp__err(MP_EINVAL, "mp_event_set: event is NULL");
    mp__futex *f = &e->s->f;
    uint32_t v = atomic_load_explicit(&f->val, memory_order_relaxed);
    do {
        if (v & 1) return 0;
    } while (!atomic_compare_exchange_weak(&f->val, &v, ((v & ~1u) + 2u) | 1u));
    if (atomic_load(&f->waiters) != 0) mp__os_futex_wake(f, INT32_MAX);
    return 0;
}

int mp_event_clear(mp_event *e) {
    if (!e) return mp__err(MP_EINVAL, "mp_event_clear: event is NULL");
    atomic_fetch_and(&e->s->f.val, ~1u);
    return 0;
}

bool mp_event_is_set(const mp_event *e) { return e && (atomic_load(&e->s->f.val) & 1); }

int mp_event_wait(mp_event *e, double timeout) {
    if (!e) return mp__err(MP_EINVAL, "mp_event_wait: event is NULL");
    mp__futex *f = &e->s->f;
    uint32_t v = atomic_load(&f->val);
    if (v & 1) return 0;
    double deadline = mp__deadline(timeout);
    for (;;) {
        double left = mp__left(deadline);
        int r = left == 0 ? MP_ETIMEDOUT : mp__os_futex_wait(f, v, left);
        if (atomic_load(&f->val) != v) return 0;
        if (r == MP_ETIMEDOUT)
            return mp__err(MP_ETIMEDOUT, "mp_event_wait: timed out after %.3f s", timeout);
    }
}

void mp_event_free(mp_event *e) {
    if (!e) return;
    mp__block_release(e->blk);
    mp__free(e);
}

static size_t event_handle_count(const void *obj) {
    return mp__block_handle_count(((const mp_event *)obj)->blk);
}

static size_t event_blocks(const void *obj, mp__block **out) {
    out[0] = ((const mp_event *)obj)->blk;
    return 1;
}

static int event_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    mp__block_reduce(((const mp_event *)obj)->blk, b, handles, nh);
    return 0;
}

static int event_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    mp__block *b;
    bool took;
    int rc = mp__block_rebuild(r, MP__K_EVENT, handles, nh, &b, &took);
    if (rc) return rc;
    mp_event *e = event_wrap(b);
    if (!e) {
        mp__block_unrebuild(b, took);
        return mp__err(MP_ENOMEM, "sync: out of memory");
    }
    if (mp__block_handle_count(b) && !took) mp__os_handle_close(handles[0]);
    *out = e;
    return 0;
}

static void event_objfree(void *obj) { mp_event_free(obj); }

const mp__objtype mp__objtype_event = {
    .name = "event",
    .handle_count = event_handle_count,
    .reduce = event_reduce,
    .rebuild = event_rebuild,
    .free = event_objfree,
    .blocks = event_blocks,
};

int mp_args_add_event(mp_args *a, mp_event *e) {
    return mp__sync_args_add(a, &mp__objtype_event, e, "mp_args_add_event");
}

mp_event *mp_args_event(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__objtype_event);
}
