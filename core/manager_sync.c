/* SyncManager's queue and synchronisation typeids served by a C manager: Queue,
 * JoinableQueue, Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier.
 * Their methods may block (a get on an empty queue, an acquire): they lock their own
 * state (the types are concurrent) and wait in slices that end when the server stops
 * (mp__mwait). Python's method names, arguments and exceptions, as threading's and
 * queue's. */
#include <stdio.h>
#include <string.h>

#include "manager_types.h"

/* ---- Queue and JoinableQueue (Python's queue.Queue serves both) ---- */

typedef struct queue_obj {
    mp__mutex *mu;
    mp__cond *changed; /* an item put or taken, a task done: waiters look again */
    mp_value **ring;
    size_t head, n, cap;
    int64_t maxsize;
    int64_t unfinished;
} queue_obj;

static void q_free(void *p) {
    queue_obj *q = p;
    for (size_t i = 0; i < q->n; i++) mp_value_free(q->ring[(q->head + i) % q->cap]);
    mp__free(q->ring);
    mp__os_cond_free(q->changed);
    mp__os_mutex_free(q->mu);
    mp__free(q);
}

static int q_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *ms = A(0, "maxsize");
    queue_obj *q = mp__calloc(1, sizeof *q);
    if (!q) return mt_nomem();
    q->maxsize = ms ? mp_value_as_int(ms) : 0;
    if (mp__os_mutex_new(&q->mu) || mp__os_cond_new(&q->changed)) {
        q_free(q);
        return mt_nomem();
    }
    *obj = q;
    return 0;
}

static bool q_full(const queue_obj *q) { return q->maxsize > 0 && (int64_t)q->n >= q->maxsize; }

static int q_put_common(queue_obj *q, const mp_value *item, double deadline) {
    mp_value *c = mp_value_copy(item);
    if (!c) return mt_nomem();
    mp__os_mutex_lock(q->mu);
    int rc = 0;
    while (q_full(q) && !rc) rc = mp__mwait(q->changed, q->mu, deadline);
    if (!rc && q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 16;
        mp_value **ring = mp__malloc(cap * sizeof *ring);
        if (!ring) {
            rc = mt_nomem();
        } else {
            for (size_t i = 0; i < q->n; i++) ring[i] = q->ring[(q->head + i) % q->cap];
            mp__free(q->ring);
            q->ring = ring;
            q->cap = cap;
            q->head = 0;
        }
    }
    if (!rc) {
        q->ring[(q->head + q->n) % q->cap] = c;
        q->n++;
        q->unfinished++;
        c = NULL;
        mp__os_cond_broadcast(q->changed);
    }
    mp__os_mutex_unlock(q->mu);
    mp_value_free(c);
    if (rc == MP_ETIMEDOUT) return mp_manager_raise(MP_EFULL, "queue.Full", NULL);
    if (rc == MP_ECLOSED) return mp_manager_raise(MP_ECLOSED, "EOFError", "manager shutting down");
    return rc;
}

static int q_get_common(queue_obj *q, double deadline, mp_value **r) {
    mp__os_mutex_lock(q->mu);
    int rc = 0;
    while (!q->n && !rc) rc = mp__mwait(q->changed, q->mu, deadline);
    if (!rc) {
        *r = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        mp__os_cond_broadcast(q->changed);
    }
    mp__os_mutex_unlock(q->mu);
    if (rc == MP_ETIMEDOUT) return mp_manager_raise(MP_EEMPTY, "queue.Empty", NULL);
    if (rc == MP_ECLOSED) return mp_manager_raise(MP_ECLOSED, "EOFError", "manager shutting down");
    return rc;
}

static int q_put(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *item = A(0, "item");
    double deadline;
    int rc = mt_need(item, "put", "item");
    if (!rc) rc = mp__mdeadline(A(1, "block"), A(2, "timeout"), &deadline);
    return rc ? rc : q_put_common(p, item, deadline);
}

static int q_put_nowait(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *item = A(0, "item");
    int rc = mt_need(item, "put_nowait", "item");
    return rc ? rc : q_put_common(p, item, mp__os_monotonic());
}

static int q_get(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    double deadline;
    int rc = mp__mdeadline(A(0, "block"), A(1, "timeout"), &deadline);
    return rc ? rc : q_get_common(p, deadline, r);
}

static int q_get_nowait(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return q_get_common(p, mp__os_monotonic(), r);
}

static int q_qsize(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    queue_obj *q = p;
    mp__os_mutex_lock(q->mu);
    size_t n = q->n;
    mp__os_mutex_unlock(q->mu);
    return mt_ret_int((int64_t)n, r);
}

static int q_empty(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    queue_obj *q = p;
    mp__os_mutex_lock(q->mu);
    bool e = q->n == 0;
    mp__os_mutex_unlock(q->mu);
    return mt_ret_bool(e, r);
}

static int q_isfull(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    queue_obj *q = p;
    mp__os_mutex_lock(q->mu);
    bool f = q_full(q);
    mp__os_mutex_unlock(q->mu);
    return mt_ret_bool(f, r);
}

static int q_task_done(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    queue_obj *q = p;
    int rc = 0;
    mp__os_mutex_lock(q->mu);
    if (q->unfinished <= 0)
        rc = mp_manager_raise(MP_EINVAL, "ValueError", "task_done() called too many times");
    else if (--q->unfinished == 0)
        mp__os_cond_broadcast(q->changed);
    mp__os_mutex_unlock(q->mu);
    return rc;
}

static int q_join(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    queue_obj *q = p;
    int rc = 0;
    mp__os_mutex_lock(q->mu);
    while (q->unfinished > 0 && !rc) rc = mp__mwait(q->changed, q->mu, MP_FOREVER);
    mp__os_mutex_unlock(q->mu);
    return rc ? mp_manager_raise(rc, "EOFError", "manager shutting down") : 0;
}

static const mp_manager_method k_queue_methods[] = {
    {"empty", q_empty, NULL},           {"full", q_isfull, NULL}, {"get", q_get, NULL},
    {"get_nowait", q_get_nowait, NULL}, {"join", q_join, NULL},   {"put", q_put, NULL},
    {"put_nowait", q_put_nowait, NULL}, {"qsize", q_qsize, NULL}, {"task_done", q_task_done, NULL},
};

const mp_manager_type mp__mtype_queue = {
    .type_id = "Queue",
    .create = q_create,
    .free = q_free,
    .methods = k_queue_methods,
    .nmethods = NMETH(k_queue_methods),
    .concurrent = true,
};

const mp_manager_type mp__mtype_joinable_queue = {
    .type_id = "JoinableQueue",
    .create = q_create,
    .free = q_free,
    .methods = k_queue_methods,
    .nmethods = NMETH(k_queue_methods),
    .concurrent = true,
};

/* ---- Lock, RLock, Semaphore, BoundedSemaphore: one counter ---- */

typedef struct sem_obj {
    mp__mutex *mu;
    mp__cond *changed;
    int64_t value, initial;
    int64_t owner, depth; /* locks: the serving thread holding it, and how deep (RLock) */
    bool lock, recursive, bounded;
} sem_obj;

static void sem_free(void *p) {
    sem_obj *s = p;
    mp__os_cond_free(s->changed);
    mp__os_mutex_free(s->mu);
    mp__free(s);
}

static int sem_new(int64_t value, bool lock, bool recursive, bool bounded, void **obj) {
    if (value < 0)
        return mp_manager_raise(MP_EINVAL, "ValueError", "semaphore initial value must be >= 0");
    sem_obj *s = mp__calloc(1, sizeof *s);
    if (!s) return mt_nomem();
    s->value = s->initial = value;
    s->lock = lock;
    s->recursive = recursive;
    s->bounded = bounded;
    if (mp__os_mutex_new(&s->mu) || mp__os_cond_new(&s->changed)) {
        sem_free(s);
        return mt_nomem();
    }
    *obj = s;
    return 0;
}

static int lock_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args, (void)kwds;
    return sem_new(1, true, false, false, obj);
}
static int rlock_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args, (void)kwds;
    return sem_new(1, true, true, false, obj);
}
static int semaphore_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *v = A(0, "value");
    return sem_new(v ? mp_value_as_int(v) : 1, false, false, false, obj);
}
static int bsemaphore_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *v = A(0, "value");
    return sem_new(v ? mp_value_as_int(v) : 1, false, false, true, obj);
}

static int sem_acquire(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    sem_obj *s = p;
    const mp_value *blk = A(0, "blocking"), *tmo = A(1, "timeout");
    double deadline = MP_FOREVER;
    bool block = blk ? mp_value_as_bool(blk) : true;
    if (tmo && mp_value_get_type(tmo) != MP_VALUE_NONE) {
        double t = mp_value_as_float(tmo);
        if (!block && t != -1)
            return mp_manager_raise(MP_EINVAL, "ValueError",
                                    "can't specify a timeout for a non-blocking call");
        if (t < 0 && t != -1)
            return mp_manager_raise(MP_EINVAL, "ValueError", "timeout value must be positive");
        if (t >= 0) deadline = mp__deadline(t);
    }
    if (!block) deadline = mp__os_monotonic();
    int64_t me = mp__os_thread_id();
    int rc = 0;
    mp__os_mutex_lock(s->mu);
    if (s->recursive && s->depth && s->owner == me) {
        s->depth++;
    } else {
        while (s->value == 0 && !rc) rc = mp__mwait(s->changed, s->mu, deadline);
        if (!rc) {
            s->value--;
            s->owner = me;
            s->depth = 1;
        }
    }
    mp__os_mutex_unlock(s->mu);
    if (rc == MP_ETIMEDOUT) return mt_ret_bool(false, r);
    if (rc) return mp_manager_raise(rc, "EOFError", "manager shutting down");
    return mt_ret_bool(true, r);
}

static int sem_release(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    sem_obj *s = p;
    const mp_value *nv = s->lock ? NULL : A(0, "n");
    int64_t n = nv ? mp_value_as_int(nv) : 1;
    if (n < 1) return mp_manager_raise(MP_EINVAL, "ValueError", "n must be one or more");
    int rc = 0;
    mp__os_mutex_lock(s->mu);
    if (s->recursive) {
        if (!s->depth || s->owner != mp__os_thread_id())
            rc = mp_manager_raise(MP_EPERM, "RuntimeError", "cannot release un-acquired lock");
        else if (--s->depth == 0)
            s->value = 1;
    } else if (s->lock) {
        if (s->value)
            rc = mp_manager_raise(MP_EPERM, "RuntimeError", "release unlocked lock");
        else
            s->value = 1;
    } else if (s->bounded && s->value + n > s->initial) {
        rc = mp_manager_raise(MP_EINVAL, "ValueError", "Semaphore released too many times");
    } else {
        s->value += n;
    }
    if (!rc) mp__os_cond_broadcast(s->changed);
    mp__os_mutex_unlock(s->mu);
    return rc;
}

static int sem_value(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    sem_obj *s = p;
    mp__os_mutex_lock(s->mu);
    int64_t v = s->value;
    mp__os_mutex_unlock(s->mu);
    return mt_ret_int(v, r);
}

static const mp_manager_method k_lock_methods[] = {
    {"acquire", sem_acquire, NULL},
    {"release", sem_release, NULL},
};
static const mp_manager_method k_sem_methods[] = {
    {"acquire", sem_acquire, NULL},
    {"release", sem_release, NULL},
    {"get_value", sem_value, NULL},
};

#define SEM_TYPE(var, name, ctor, meths) \
    const mp_manager_type var = {        \
        .type_id = name,                 \
        .create = ctor,                  \
        .free = sem_free,                \
        .methods = meths,                \
        .nmethods = NMETH(meths),        \
        .concurrent = true,              \
    }
SEM_TYPE(mp__mtype_lock, "Lock", lock_create, k_lock_methods);
SEM_TYPE(mp__mtype_rlock, "RLock", rlock_create, k_lock_methods);
SEM_TYPE(mp__mtype_semaphore, "Semaphore", semaphore_create, k_sem_methods);
SEM_TYPE(mp__mtype_bsemaphore, "BoundedSemaphore", bsemaphore_create, k_sem_methods);

/* ---- Event ---- */

typedef struct event_obj {
    mp__mutex *mu;
    mp__cond *changed;
    bool flag;
} event_obj;

static void ev_free(void *p) {
    event_obj *e = p;
    mp__os_cond_free(e->changed);
    mp__os_mutex_free(e->mu);
    mp__free(e);
}

static int ev_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args, (void)kwds;
    event_obj *e = mp__calloc(1, sizeof *e);
    if (!e) return mt_nomem();
    if (mp__os_mutex_new(&e->mu) || mp__os_cond_new(&e->changed)) {
        ev_free(e);
        return mt_nomem();
    }
    *obj = e;
    return 0;
}

static int ev_flag(event_obj *e, int set, mp_value **r) {
    mp__os_mutex_lock(e->mu);
    if (set >= 0) {
        e->flag = set;
        if (set) mp__os_cond_broadcast(e->changed);
    }
    bool f = e->flag;
    mp__os_mutex_unlock(e->mu);
    return r ? mt_ret_bool(f, r) : 0;
}

static int ev_is_set(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return ev_flag(p, -1, r);
}
static int ev_set(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    return ev_flag(p, 1, NULL);
}
static int ev_clear(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    return ev_flag(p, 0, NULL);
}

static int ev_wait(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    event_obj *e = p;
    const mp_value *t = A(0, "timeout");
    double deadline = MP_FOREVER;
    if (t && mp_value_get_type(t) != MP_VALUE_NONE) deadline = mp__deadline(mp_value_as_float(t));
    int rc = 0;
    mp__os_mutex_lock(e->mu);
    while (!e->flag && !rc) rc = mp__mwait(e->changed, e->mu, deadline);
    bool f = e->flag;
    mp__os_mutex_unlock(e->mu);
    if (rc && rc != MP_ETIMEDOUT) return mp_manager_raise(rc, "EOFError", "manager shutting down");
    return mt_ret_bool(f, r);
}

static const mp_manager_method k_event_methods[] = {
    {"clear", ev_clear, NULL},
    {"is_set", ev_is_set, NULL},
    {"set", ev_set, NULL},
    {"wait", ev_wait, NULL},
};

const mp_manager_type mp__mtype_event = {
    .type_id = "Event",
    .create = ev_create,
    .free = ev_free,
    .methods = k_event_methods,
    .nmethods = NMETH(k_event_methods),
    .concurrent = true,
};

/* ---- Condition: an RLock (Python's default) with wait and notify ---- */

typedef struct cond_obj {
    mp__mutex *mu;
    mp__cond *changed;
    int64_t owner, depth;        /* the serving thread holding the lock, and how deep */
    struct cwaiter *head, *tail; /* the waiters not notified yet, oldest first */
} cond_obj;

/* A waiter, on its own stack while it waits; notify takes it off the list. */
typedef struct cwaiter {
    struct cwaiter *next;
    bool notified;
} cwaiter;

static void cond_free(void *p) {
    cond_obj *c = p;
    mp__os_cond_free(c->changed);
    mp__os_mutex_free(c->mu);
    mp__free(c);
}

static int cond_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *lock = A(0, "lock");
    if (lock && mp_value_get_type(lock) != MP_VALUE_NONE)
        return mp_manager_raise(MP_ENOTSUP, "TypeError",
                                "Condition: a lock of its own cannot be given to a C manager");
    cond_obj *c = mp__calloc(1, sizeof *c);
    if (!c) return mt_nomem();
    if (mp__os_mutex_new(&c->mu) || mp__os_cond_new(&c->changed)) {
        cond_free(c);
        return mt_nomem();
    }
    *obj = c;
    return 0;
}

/* With c->mu held: takes the lock for me, depth deep, by deadline. */
static int cond_take(cond_obj *c, int64_t me, int64_t depth, double deadline) {
    int rc = 0;
    while (c->depth && c->owner != me && !rc) rc = mp__mwait(c->changed, c->mu, deadline);
    if (!rc) {
        c->owner = me;
        c->depth += depth;
    }
    return rc;
}

static int cond_acquire(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    cond_obj *c = p;
    const mp_value *blk = A(0, "blocking"), *tmo = A(1, "timeout");
    bool block = blk ? mp_value_as_bool(blk) : true;
    double deadline = block ? MP_FOREVER : mp__os_monotonic();
    if (block && tmo && mp_value_get_type(tmo) != MP_VALUE_NONE && mp_value_as_float(tmo) >= 0)
        deadline = mp__deadline(mp_value_as_float(tmo));
    mp__os_mutex_lock(c->mu);
    int rc = cond_take(c, mp__os_thread_id(), 1, deadline);
    mp__os_mutex_unlock(c->mu);
    if (rc == MP_ETIMEDOUT) return mt_ret_bool(false, r);
    if (rc) return mp_manager_raise(rc, "EOFError", "manager shutting down");
    return mt_ret_bool(true, r);
}

static int cond_release(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    cond_obj *c = p;
    int rc = 0;
    mp__os_mutex_lock(c->mu);
    if (!c->depth || c->owner != mp__os_thread_id())
        rc = mp_manager_raise(MP_EPERM, "RuntimeError", "cannot release un-acquired lock");
    else if (--c->depth == 0)
        mp__os_cond_broadcast(c->changed);
    mp__os_mutex_unlock(c->mu);
    return rc;
}

static int cond_wait(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    cond_obj *c = p;
    const mp_value *tmo = A(0, "timeout");
    double deadline = MP_FOREVER;
    if (tmo && mp_value_get_type(tmo) != MP_VALUE_NONE)
        deadline = mp__deadline(mp_value_as_float(tmo));
    int64_t me = mp__os_thread_id();
    mp__os_mutex_lock(c->mu);
    if (!c->depth || c->owner != me) {
        mp__os_mutex_unlock(c->mu);
        return mp_manager_raise(MP_EPERM, "RuntimeError", "cannot wait on un-acquired lock");
    }
    /* Let go of the lock (all the way down), wait for a notify, take it back. */
    int64_t depth = c->depth;
    c->depth = 0;
    cwaiter w = {NULL, false};
    if (c->tail)
        c->tail->next = &w;
    else
        c->head = &w;
    c->tail = &w;
    mp__os_cond_broadcast(c->changed);
    int rc = 0;
    while (!w.notified && !rc) rc = mp__mwait(c->changed, c->mu, deadline);
    bool woken = w.notified;
    if (!woken) {
        /* Gave up: off the list, so that a later notify wakes a waiter still there. */
        cwaiter *prev = NULL;
        for (cwaiter *x = c->head; x; prev = x, x = x->next)
            if (x == &w) {
                if (prev)
                    prev->next = w.next;
                else
                    c->head = w.next;
                if (c->tail == &w) c->tail = prev;
                break;
            }
    }
    int rc2 = cond_take(c, me, depth, MP_FOREVER);
    mp__os_mutex_unlock(c->mu);
    if (rc && rc != MP_ETIMEDOUT) return mp_manager_raise(rc, "EOFError", "manager shutting down");
    if (rc2) return mp_manager_raise(rc2, "EOFError", "manager shutting down");
    return mt_ret_bool(woken, r);
}

static int cond_notify_n(cond_obj *c, int64_t n) {
    int rc = 0;
    mp__os_mutex_lock(c->mu);
    if (!c->depth || c->owner != mp__os_thread_id()) {
        rc = mp_manager_raise(MP_EPERM, "RuntimeError", "cannot notify on un-acquired lock");
    } else {
        bool any = false;
        for (; n > 0 && c->head; n--) {
            cwaiter *w = c->head;
            c->head = w->next;
            if (!c->head) c->tail = NULL;
            w->notified = any = true;
        }
        if (any) mp__os_cond_broadcast(c->changed);
    }
    mp__os_mutex_unlock(c->mu);
    return rc;
}

static int cond_notify(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *n = A(0, "n");
    return cond_notify_n(p, n ? mp_value_as_int(n) : 1);
}

static int cond_notify_all(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    return cond_notify_n(p, INT64_MAX);
}

static const mp_manager_method k_cond_methods[] = {
    {"acquire", cond_acquire, NULL},
    {"release", cond_release, NULL},
    {"wait", cond_wait, NULL},
    {"notify", cond_notify, NULL},
    {"notify_all", cond_notify_all, NULL},
};

const mp_manager_type mp__mtype_condition = {
    .type_id = "Condition",
    .create = cond_create,
    .free = cond_free,
    .methods = k_cond_methods,
    .nmethods = NMETH(k_cond_methods),
    .concurrent = true,
};

/* ---- Barrier (threading.Barrier: no action, which cannot travel) ---- */

typedef struct barrier_obj {
    mp__mutex *mu;
    mp__cond *changed;
    int64_t parties, count;
    uint64_t generation, reset_gen; /* reset_gen: a reset broke that generation + 1 */
    double timeout;                 /* the default of wait, or MP_FOREVER */
    bool broken;
} barrier_obj;

static void barrier_free(void *p) {
    barrier_obj *b = p;
    mp__os_cond_free(b->changed);
    mp__os_mutex_free(b->mu);
    mp__free(b);
}

static int barrier_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *parties = A(0, "parties"), *action = A(1, "action"), *tmo = A(2, "timeout");
    int rc = mt_need(parties, "Barrier", "parties");
    if (rc) return rc;
    if (mp_value_as_int(parties) < 1)
        return mp_manager_raise(MP_EINVAL, "ValueError", "parties must be > 0");
    if (action && mp_value_get_type(action) != MP_VALUE_NONE)
        return mp_manager_raise(MP_ENOTSUP, "TypeError", "Barrier: an action cannot travel");
    barrier_obj *b = mp__calloc(1, sizeof *b);
    if (!b) return mt_nomem();
    b->parties = mp_value_as_int(parties);
    b->timeout =
        tmo && mp_value_get_type(tmo) != MP_VALUE_NONE ? mp_value_as_float(tmo) : MP_FOREVER;
    if (mp__os_mutex_new(&b->mu) || mp__os_cond_new(&b->changed)) {
        barrier_free(b);
        return mt_nomem();
    }
    *obj = b;
    return 0;
}

static int broken_barrier(void) {
    return mp_manager_raise(MP_EBROKEN, "threading.BrokenBarrierError", NULL);
}

static int barrier_wait(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    barrier_obj *b = p;
    const mp_value *tmo = A(0, "timeout");
    double t = tmo && mp_value_get_type(tmo) != MP_VALUE_NONE ? mp_value_as_float(tmo) : b->timeout;
    double deadline = mp__deadline(t);
    mp__os_mutex_lock(b->mu);
    if (b->broken) {
        mp__os_mutex_unlock(b->mu);
        return broken_barrier();
    }
    uint64_t gen = b->generation;
    int64_t index = b->count++;
    if (b->count == b->parties) {
        b->count = 0;
        b->generation++;
        mp__os_cond_broadcast(b->changed);
        mp__os_mutex_unlock(b->mu);
        return mt_ret_int(index, r);
    }
    int rc = 0;
    while (b->generation == gen && !b->broken && !rc) rc = mp__mwait(b->changed, b->mu, deadline);
    bool passed = b->generation != gen && b->reset_gen != gen + 1;
    if (!passed && b->generation == gen) {
        /* Timed out, stopped or aborted while waiting: the barrier breaks, as Python's. */
        b->broken = true;
        mp__os_cond_broadcast(b->changed);
    }
    mp__os_mutex_unlock(b->mu);
    return passed ? mt_ret_int(index, r) : broken_barrier();
}

static int barrier_abort(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    barrier_obj *b = p;
    mp__os_mutex_lock(b->mu);
    b->broken = true;
    mp__os_cond_broadcast(b->changed);
    mp__os_mutex_unlock(b->mu);
    return 0;
}

static int barrier_reset(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    barrier_obj *b = p;
    mp__os_mutex_lock(b->mu);
    if (b->count) {
        /* The parties waiting now are let go broken; the barrier starts afresh. */
        b->reset_gen = b->generation + 1;
        b->generation++;
        b->count = 0;
    }
    b->broken = false;
    mp__os_cond_broadcast(b->changed);
    mp__os_mutex_unlock(b->mu);
    return 0;
}

static int barrier_attr(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    barrier_obj *b = p;
    const char *name;
    int rc = mt_attr_name(A(0, NULL), "__getattribute__", &name);
    if (rc) return rc;
    mp__os_mutex_lock(b->mu);
    int64_t parties = b->parties, waiting = b->count;
    bool broken = b->broken;
    mp__os_mutex_unlock(b->mu);
    if (strcmp(name, "parties") == 0) return mt_ret_int(parties, r);
    if (strcmp(name, "n_waiting") == 0) return mt_ret_int(waiting, r);
    if (strcmp(name, "broken") == 0) return mt_ret_bool(broken, r);
    return mp_manager_raise(MP_ENOENT, "AttributeError", "'Barrier' object has no attribute '%s'",
                            name);
}

static const mp_manager_method k_barrier_methods[] = {
    {"__getattribute__", barrier_attr, NULL},
    {"wait", barrier_wait, NULL},
    {"abort", barrier_abort, NULL},
    {"reset", barrier_reset, NULL},
};

const mp_manager_type mp__mtype_barrier = {
    .type_id = "Barrier",
    .create = barrier_create,
    .free = barrier_free,
    .methods = k_barrier_methods,
    .nmethods = NMETH(k_barrier_methods),
    .concurrent = true,
};
