/* Condition and Barrier. */
#include <string.h>

#include "sync_internal.h"

/* ---- Condition ----
 *
 * Each waiting thread takes a slot of the condition's block and sleeps on the slot's
 * own word, so notify(n) wakes exactly the n longest-waiting threads (by ticket) and
 * a thread that times out just gives its slot back: no stolen or lost wakeups, no
 * counting of tokens. Slots are only touched with the condition's lock held, except
 * for the word the notifier sets and the sleeper reads. The state of a slot is in
 * single words, so a process killed in the middle of a notify leaves nothing
 * half-linked; slots of dead waiters are reclaimed when the table fills up. */

enum { COND_SLOTS = 1024 };

typedef struct cond_slot {
    mp__futex f; /* val: 1 once notified */
    uint32_t used;
    uint32_t ticket;
    uint32_t pid;
    uint32_t pad;
} cond_slot;

typedef struct cond_shared {
    mp__sync_hdr hdr;
    uint32_t hiwater; /* slots at and above are unused */
    uint32_t next_ticket;
    cond_slot slots[COND_SLOTS];
} cond_shared;

struct mp_condition {
    mp__block *blk;
    cond_shared *s;
    mp_lock *lock;
};

int mp_condition_new(mp_context *ctx, mp_lock *lock, mp_condition **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_condition_new: out is NULL");
    *out = NULL;
    mp_condition *c = mp__calloc(1, sizeof *c);
    if (!c) return mp__err(MP_ENOMEM, "mp_condition_new: out of memory");
    int rc;
    if (lock) {
        mp__lock_ref(lock);
        c->lock = lock;
    } else if ((rc = mp_rlock_new(ctx, &c->lock)) != 0) {
        mp__free(c);
        return rc;
    }
    if ((rc = mp__block_alloc(MP__K_CONDITION, sizeof(cond_shared), &c->blk)) != 0) {
        mp_lock_free(c->lock);
        mp__free(c);
        return rc;
    }
    c->s = c->blk->base;
    for (size_t i = 0; i < COND_SLOTS; i++) mp__block_futex_init(c->blk, &c->s->slots[i].f);
    *out = c;
    return 0;
}

mp_lock *mp_condition_lock(const mp_condition *c) { return c ? c->lock : NULL; }

int mp_condition_acquire(mp_condition *c, double timeout) {
    if (!c) return mp__err(MP_EINVAL, "mp_condition_acquire: condition is NULL");
    return mp_lock_acquire(c->lock, timeout);
}

int mp_condition_release(mp_condition *c) {
    if (!c) return mp__err(MP_EINVAL, "mp_condition_release: condition is NULL");
    return mp_lock_release(c->lock);
}

static int slot_alloc(cond_shared *s, uint32_t me) {
    for (uint32_t i = 0; i < s->hiwater; i++)
        if (!s->slots[i].used) return (int)i;
    if (s->hiwater < COND_SLOTS) return (int)s->hiwater++;
    for (uint32_t i = 0; i < COND_SLOTS; i++) {
        cond_slot *sl = &s->slots[i];
        if (sl->pid != me && !mp__os_proc_alive(sl->pid)) {
            sl->used = 0;
            return (int)i;
        }
    }
    return -1;
}

int mp_condition_wait(mp_condition *c, double timeout) {
    if (!c) return mp__err(MP_EINVAL, "mp_condition_wait: condition is NULL");
    mp__lockw *w = c->lock->w;
    if (!mp__lockw_is_mine(w))
        return mp__err(MP_EPERM,
                       "mp_condition_wait: the caller does not hold the condition's lock");
    cond_shared *s = c->s;
    uint32_t me = mp__os_sync_pid();
    int idx = slot_alloc(s, me);
    if (idx < 0) return mp__err(MP_EFULL, "mp_condition_wait: %d threads wait already", COND_SLOTS);
    cond_slot *sl = &s->slots[idx];
    atomic_store_explicit(&sl->f.val, 0, memory_order_relaxed);
    sl->used = 1;
    sl->ticket = s->next_ticket++;
    sl->pid = me;
    uint32_t saved;
    mp__lockw_release_save(w, &saved);
    double deadline = mp__deadline(timeout);
    while (atomic_load_explicit(&sl->f.val, memory_order_acquire) == 0) {
        double left = mp__left(deadline);
        if (left == 0) break;
        mp__os_futex_wait(&sl->f, 0, left);
    }
    int rl = mp__lockw_acquire_restore(w, saved);
    /* A notify that came after the timeout but before the lock was back still counts:
     * the notifier counted this thread as woken. */
    bool notified = atomic_load_explicit(&sl->f.val, memory_order_relaxed) != 0;
    sl->used = 0;
    if (rl == MP_EOWNERDEAD)
        return mp__err(MP_EOWNERDEAD,
                       "mp_condition_wait: the lock's previous holder died holding it");
    if (!notified)
        return mp__err(MP_ETIMEDOUT, "mp_condition_wait: timed out after %.3f s", timeout);
    return 0;
}

int mp_condition_wait_for(mp_condition *c, mp_predicate_fn pred, void *arg, double timeout) {
    if (!c || !pred) return mp__err(MP_EINVAL, "mp_condition_wait_for: NULL argument");
    if (!mp__lockw_is_mine(c->lock->w))
        return mp__err(MP_EPERM,
                       "mp_condition_wait_for: the caller does not hold the condition's lock");
    double deadline = mp__deadline(timeout);
    while (!pred(arg)) {
        double left = mp__left(deadline);
        if (left == 0)
            return mp__err(MP_ETIMEDOUT, "mp_condition_wait_for: timed out after %.3f s", timeout);
        int rc = mp_condition_wait(c, left);
        if (rc != 0 && rc != MP_ETIMEDOUT) return rc;
    }
    return 0;
}

static void slot_notify(cond_slot *sl) {
    atomic_store(&sl->f.val, 1);
    if (atomic_load(&sl->f.waiters) != 0) mp__os_futex_wake(&sl->f, 1);
}

static bool slot_waiting(const cond_slot *sl) {
    return sl->used && atomic_load_explicit(&sl->f.val, memory_order_relaxed) == 0;
}

int mp_condition_notify(mp_condition *c, int n) {
    if (!c) return mp__err(MP_EINVAL, "mp_condition_notify: condition is NULL");
    if (!mp__lockw_is_mine(c->lock->w))
        return mp__err(MP_EPERM,
                       "mp_condition_notify: the caller does not hold the condition's lock");
    cond_shared *s = c->s;
    uint32_t me = mp__os_sync_pid();
    int waiting = 0;
    for (uint32_t i = 0; i < s->hiwater; i++) waiting += slot_waiting(&s->slots[i]);
    if (n >= waiting) {
        for (uint32_t i = 0; i < s->hiwater; i++)
            if (slot_waiting(&s->slots[i])) slot_notify(&s->slots[i]);
        return 0;
    }
    for (int woken = 0; woken < n;) {
        cond_slot *best = NULL;
        for (uint32_t i = 0; i < s->hiwater; i++) {
            cond_slot *sl = &s->slots[i];
            if (slot_waiting(sl) && (!best || (int32_t)(sl->ticket - best->ticket) < 0)) best = sl;
        }
        if (!best) break;
        /* A waiter whose process died must not use up one of the n. */
        if (best->pid != me && !mp__os_proc_alive(best->pid)) {
            best->used = 0;
            continue;
        }
        slot_notify(best);
        woken++;
    }
    return 0;
}

int mp_condition_notify_all(mp_condition *c) { return mp_condition_notify(c, INT32_MAX); }

void mp_condition_free(mp_condition *c) {
    if (!c) return;
    mp__block_release(c->blk);
    mp_lock_free(c->lock);
    mp__free(c);
}

static size_t cond_handle_count(const void *obj) {
    const mp_condition *c = obj;
    return mp__lock_handle_count(c->lock) + mp__block_handle_count(c->blk);
}

static size_t cond_blocks(const void *obj, mp__block **out) {
    const mp_condition *c = obj;
    out[0] = c->lock->blk;
    out[1] = c->blk;
    return 2;
}

static int cond_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    const mp_condition *c = obj;
    mp__lock_reduce(c->lock, b, handles, nh);
    mp__block_reduce(c->blk, b, handles, nh);
    return 0;
}

static int cond_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    mp_condition *c = mp__calloc(1, sizeof *c);
    if (!c) return mp__err(MP_ENOMEM, "sync: out of memory");
    mp_os_handle spare;
    int rc = mp__lock_rebuild_nested(r, handles, nh, &c->lock, &spare);
    if (rc) {
        mp__free(c);
        return rc;
    }
    size_t k = mp__lock_handle_count(c->lock);
    bool took;
    rc = mp__block_rebuild(r, MP__K_CONDITION, handles + k, nh - k, &c->blk, &took);
    if (rc) {
        mp__block_unrebuild(c->lock->blk, spare == MP_INVALID_OS_HANDLE);
        mp__free(c->lock);
        mp__free(c);
        return rc;
    }
    if (spare != MP_INVALID_OS_HANDLE) mp__os_handle_close(spare);
    if (mp__block_handle_count(c->blk) && !took) mp__os_handle_close(handles[k]);
    c->s = c->blk->base;
    *out = c;
    return 0;
}

static void cond_objfree(void *obj) { mp_condition_free(obj); }

const mp__objtype mp__objtype_condition = {
    .name = "condition",
    .handle_count = cond_handle_count,
    .reduce = cond_reduce,
    .rebuild = cond_rebuild,
    .free = cond_objfree,
    .blocks = cond_blocks,
};

int mp_args_add_condition(mp_args *a, mp_condition *c) {
    return mp__sync_args_add(a, &mp__objtype_condition, c, "mp_args_add_condition");
}

mp_condition *mp_args_condition(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__objtype_condition);
}

/* ---- Barrier ----
 * threading.Barrier's state machine over an internal lock word and one sequence word
 * that every state change bumps (everyone re-checks the state, so plain broadcasts do). */

enum { B_FILLING = 0, B_DRAINING = 1, B_RESETTING = -1, B_BROKEN = -2 };

typedef struct barrier_shared {
    mp__sync_hdr hdr;
    mp__lockw lock;
    mp__futex seq;
    _Atomic int32_t state;
    _Atomic uint32_t count;
    uint32_t parties;
    uint32_t pad;
    double timeout;
} barrier_shared;

struct mp_barrier {
    mp__block *blk;
    barrier_shared *s;
    mp_barrier_action_fn action;
    mp_args *args; /* this process's own copy of the action's arguments (with action) */
};

static void b_broadcast(barrier_shared *s) {
    atomic_fetch_add(&s->seq.val, 1);
    if (atomic_load(&s->seq.waiters) != 0) mp__os_futex_wake(&s->seq, INT32_MAX);
}

static int32_t b_state(const barrier_shared *s) {
    return atomic_load_explicit(&s->state, memory_order_relaxed);
}
static void b_set_state(barrier_shared *s, int32_t v) {
    atomic_store_explicit(&s->state, v, memory_order_relaxed);
}

/* A party that died holding the internal lock may have left the state half-changed:
 * the barrier counts as broken. */
static void b_lock(barrier_shared *s) {
    if (mp__lockw_acquire(&s->lock, MP_FOREVER) == MP_EOWNERDEAD) {
        b_set_state(s, B_BROKEN);
        b_broadcast(s);
    }
}

static void b_unlock(barrier_shared *s) { mp__lockw_release(&s->lock); }

/* Waits for a broadcast (or the deadline) with the lock released; MP_ETIMEDOUT. */
static int b_wait(barrier_shared *s, double deadline) {
    uint32_t v = atomic_load(&s->seq.val);
    b_unlock(s);
    double left = mp__left(deadline);
    int r = left == 0 ? MP_ETIMEDOUT : mp__os_futex_wait(&s->seq, v, left);
    b_lock(s);
    return r == MP_ETIMEDOUT ? MP_ETIMEDOUT : 0;
}

static mp_barrier *barrier_wrap(mp__block *b) {
    mp_barrier *br = mp__calloc(1, sizeof *br);
    if (!br) return NULL;
    br->blk = b;
    br->s = b->base;
    return br;
}

int mp_barrier_new(mp_context *ctx, unsigned parties, mp_barrier_action_fn action,
                   const mp_args *action_args, double timeout, mp_barrier **out) {
    (void)ctx;
    if (!out) return mp__err(MP_EINVAL, "mp_barrier_new: out is NULL");
    *out = NULL;
    if (parties < 1 || parties > INT32_MAX)
        return mp__err(MP_EINVAL, "mp_barrier_new: parties must be >= 1");
    if (action_args && !action)
        return mp__err(MP_EINVAL, "mp_barrier_new: action_args without an action");
    mp_args *args = NULL;
    int rc;
    if (action) {
        /* Refuse here what a child could not resolve (like a process target). */
        mp__fnref ref = {0};
        rc = mp__os_fn_to_ref((void *)action, &ref);
        mp__fnref_clear(&ref);
        if (rc) return rc;
        /* Our own copy, as each process that gets the barrier makes its own: the
         * caller's list and objects may go at once. */
        rc = action_args ? mp__args_clone(action_args, &args) : mp_args_new(&args);
        if (rc) return rc;
    }
    mp__block *b;
    if ((rc = mp__block_alloc(MP__K_BARRIER, sizeof(barrier_shared), &b)) != 0) {
        mp_args_free(args);
        return rc;
    }
    barrier_shared *s = b->base;
    mp__block_futex_init(b, &s->lock.f);
    mp__block_futex_init(b, &s->seq);
    s->parties = parties;
    s->timeout = mp__timeout(timeout);
    mp_barrier *br = barrier_wrap(b);
    if (!br) {
        mp__block_release(b);
        mp_args_free(args);
        return mp__err(MP_ENOMEM, "mp_barrier_new: out of memory");
    }
    br->action = action;
    br->args = args;
    *out = br;
    return 0;
}

int mp_barrier_wait_timeout(mp_barrier *b, double timeout, int *index) {
    if (index) *index = -1;
    if (!b) return mp__err(MP_EINVAL, "mp_barrier_wait: barrier is NULL");
    barrier_shared *s = b->s;
    int rc = 0;
    b_lock(s);
    /* Wait while the previous round drains or a reset finishes. */
    while (b_state(s) == B_DRAINING || b_state(s) == B_RESETTING) b_wait(s, MP_FOREVER);
    if (b_state(s) == B_BROKEN) {
        b_unlock(s);
        return mp__err(MP_EBROKEN, "mp_barrier_wait: the barrier is broken");
    }
    uint32_t idx = atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    if (idx + 1 == s->parties) {
        /* The last to arrive runs the action, in its own process with its own copy of
         * the arguments. Python re-raises the action's exception in this party; a C
         * action has only its return value, given in the detail. */
        int ar = b->action ? b->action(b->args) : 0;
        if (ar != 0) {
            b_set_state(s, B_BROKEN);
            rc = mp__err(MP_EBROKEN,
                         "mp_barrier_wait: the barrier's action failed (it returned %d)", ar);
        } else {
            b_set_state(s, B_DRAINING);
        }
        b_broadcast(s);
    } else {
        double deadline = mp__deadline(timeout);
        while (b_state(s) == B_FILLING) {
            if (b_wait(s, deadline) == MP_ETIMEDOUT && b_state(s) == B_FILLING) {
                /* Python's _wait: the party whose time ran out breaks the barrier and
                 * gets BrokenBarrierError like every other party. */
                b_set_state(s, B_BROKEN);
                b_broadcast(s);
                rc = mp__err(MP_EBROKEN,
                             "mp_barrier_wait: timed out after %.3f s: the barrier is broken",
                             timeout);
                break;
            }
        }
        if (!rc && b_state(s) < 0)
            rc = mp__err(MP_EBROKEN, "mp_barrier_wait: the barrier was %s while this party waited",
                         b_state(s) == B_RESETTING ? "reset" : "broken");
    }
    /* The last to leave a drained or reset barrier opens it for the next round. */
    if (atomic_fetch_sub_explicit(&s->count, 1, memory_order_relaxed) == 1 &&
        (b_state(s) == B_RESETTING || b_state(s) == B_DRAINING)) {
        b_set_state(s, B_FILLING);
        b_broadcast(s);
    }
    b_unlock(s);
    if (!rc && index) *index = (int)idx;
    return rc;
}

int mp_barrier_wait(mp_barrier *b, int *index) {
    if (!b) {
        if (index) *index = -1;
        return mp__err(MP_EINVAL, "mp_barrier_wait: barrier is NULL");
    }
    return mp_barrier_wait_timeout(b, b->s->timeout, index);
}

int mp_barrier_reset(mp_barrier *b) {
    if (!b) return mp__err(MP_EINVAL, "mp_barrier_reset: barrier is NULL");
    barrier_shared *s = b->s;
    b_lock(s);
    if (atomic_load_explicit(&s->count, memory_order_relaxed) > 0) {
        /* Waiters leave with an error; the last one out makes it FILLING. */
        if (b_state(s) == B_FILLING || b_state(s) == B_BROKEN) b_set_state(s, B_RESETTING);
    } else {
        b_set_state(s, B_FILLING);
    }
    b_broadcast(s);
    b_unlock(s);
    return 0;
}

int mp_barrier_abort(mp_barrier *b) {
    if (!b) return mp__err(MP_EINVAL, "mp_barrier_abort: barrier is NULL");
    b_lock(b->s);
    b_set_state(b->s, B_BROKEN);
    b_broadcast(b->s);
    b_unlock(b->s);
    return 0;
}

bool mp_barrier_broken(const mp_barrier *b) { return b && b_state(b->s) == B_BROKEN; }

int mp_barrier_n_waiting(const mp_barrier *b) {
    if (!b || b_state(b->s) != B_FILLING) return 0;
    return (int)atomic_load_explicit(&b->s->count, memory_order_relaxed);
}

int mp_barrier_parties(const mp_barrier *b) { return b ? (int)b->s->parties : 0; }

void mp_barrier_free(mp_barrier *b) {
    if (!b) return;
    mp_args_free(b->args);
    mp__block_release(b->blk);
    mp__free(b);
}

/* The block, then the action's arguments' handles (their indexes in the description
 * count from the first of them). */
static size_t barrier_handle_count(const void *obj) {
    const mp_barrier *br = obj;
    return mp__block_handle_count(br->blk) + mp__args_handle_count(br->args);
}

static size_t barrier_blocks(const void *obj, mp__block **out) {
    out[0] = ((const mp_barrier *)obj)->blk;
    return 1;
}

static int barrier_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    const mp_barrier *br = obj;
    mp__block_reduce(br->blk, b, handles, nh);
    mp__buf_u8(b, br->action != NULL);
    if (!br->action) return 0;
    mp__fnref ref = {0};
    int rc = mp__os_fn_to_ref((void *)br->action, &ref);
    if (rc) return rc;
    mp__buf_str(b, ref.module);
    mp__buf_u64(b, ref.offset);
    mp__buf_str(b, ref.build);
    mp__fnref_clear(&ref);
    mp__buf a = {0};
    size_t na = 0;
    rc = mp__args_encode(br->args, &a, handles + *nh, &na);
    *nh += na;
    mp__buf_blob(b, a.data, a.len);
    if (a.err && !b->err) b->err = a.err;
    mp__buf_free(&a);
    return rc;
}

static void close_all(const mp_os_handle *handles, size_t from, size_t nh) {
    for (size_t i = from; i < nh; i++) mp__os_handle_close(handles[i]);
}

/* Closes every handle when it fails (closes_on_failure): the action's arguments come
 * last and close theirs when they fail, after some of their objects may have closed
 * or adopted theirs. */
static int barrier_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    mp__block *b;
    bool took;
    int rc = mp__block_rebuild(r, MP__K_BARRIER, handles, nh, &b, &took);
    if (rc) {
        close_all(handles, 0, nh);
        return rc;
    }
    size_t k = mp__block_handle_count(b);
    mp_barrier *br = barrier_wrap(b);
    bool nested = false;
    if (!br) {
        rc = mp__err(MP_ENOMEM, "sync: out of memory");
    } else if (mp__rd_u8(r)) {
        mp__fnref ref = {0};
        ref.module = mp__rd_str(r);
        ref.offset = mp__rd_u64(r);
        ref.build = mp__rd_str(r);
        size_t alen = 0;
        const void *awire = mp__rd_blob(r, &alen);
        void *fn = NULL;
        rc = r->err ? mp__err(MP_EPROTO, "sync: malformed barrier action")
                    : mp__os_ref_to_fn(&ref, &fn);
        mp__fnref_clear(&ref);
        /* Last: nothing may fail once the arguments have taken their handles. */
        if (!rc) {
            mp__rd ar = {awire, alen, 0};
            nested = true;
            rc = mp__args_rebuild_nested(&ar, handles + k, nh - k, &br->args);
        }
        br->action = (mp_barrier_action_fn)fn;
    } else if (nh != k) {
        rc = mp__err(MP_EPROTO, "sync: a barrier without an action has %zu handles", nh);
    }
    if (rc) {
        mp__free(br);
        mp__block_unrebuild(b, took);
        close_all(handles, 0, nested ? k : nh);
        return rc;
    }
    if (k && !took) mp__os_handle_close(handles[0]);
    *out = br;
    return 0;
}

static void barrier_objfree(void *obj) { mp_barrier_free(obj); }

const mp__objtype mp__objtype_barrier = {
    .name = "barrier",
    .handle_count = barrier_handle_count,
    .reduce = barrier_reduce,
    .rebuild = barrier_rebuild,
    .free = barrier_objfree,
    .closes_on_failure = true,
    .blocks = barrier_blocks,
};

int mp_args_add_barrier(mp_args *a, mp_barrier *b) {
    return mp__sync_args_add(a, &mp__objtype_barrier, b, "mp_args_add_barrier");
}

mp_barrier *mp_args_barrier(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__objtype_barrier);
}
