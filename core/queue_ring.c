/* The queue's ring: putting and getting records and the overflow arena. Items too big
 * for the ring are handed over in blocks of their own (queue_big.c); both wait the same
 * way (queue_wait.c). Layout and the overflow protocol: queue_layout.h.
 *
 * Fast path, one item, no contention: the side's lock word (one CAS, one exchange),
 * the record copy, one release store of tail (or head), and one fence before looking
 * whether the other side sleeps. No system call unless somebody sleeps. */
#include <string.h>

#include "queue_layout.h"

void (*mp__queue_fault_hook)(int point);

/* The getter gives consumed arena memory back once this much has piled up. */
#define Q_CLEAN_MIN ((uint64_t)4 << 20)

static inline uint64_t round8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

static inline _Atomic uint64_t *ovf_end(mp__qrec *r) { return (_Atomic uint64_t *)(void *)(r + 1); }

static uint64_t rec_need(const mp__qrec *r) { return sizeof(mp__qrec) + round8(r->len); }

/* Takes a side's lock; the clock starts first only when the lock is busy. */
static int side_lock(mp__lockw *w, mp__qclock *c) {
    if (atomic_load_explicit(&w->f.val, memory_order_relaxed) != 0) mp__qclock_deadline(c);
    return mp__lockw_acquire(w, c->set ? mp__left(c->deadline) : c->timeout);
}

static void copy_halves(void *dst, const void *src, size_t len, int point) {
    size_t half = len / 2;
    if (half) memcpy(dst, src, half);
    mp__queue_fault(point);
    if (len - half) memcpy((char *)dst + half, (const char *)src + half, len - half);
}

/* ---- put ---- */

/* Bytes a record of need bytes takes at pos in a ring of size: with the WRAP filler
 * when it does not fit before the end. */
static inline uint64_t span(uint64_t pos, uint64_t size, uint64_t need) {
    uint64_t contig = size - (pos & (size - 1));
    return need > contig ? contig + need : need;
}

/* Room in the ring for need bytes, leaving the OVF reserve? Under the put lock. */
static bool ring_room(mp_queue *q, uint64_t need) {
    mp__qshared *s = q->s;
    uint64_t pos = atomic_load_explicit(&s->tail, memory_order_relaxed);
    uint64_t want = pos + span(pos, s->ring_size, need) + MP__QRESERVE;
    if (want - s->put.head_seen <= s->ring_size) return true;
    s->put.head_seen = atomic_load_explicit(&s->head, memory_order_acquire);
    return want - s->put.head_seen <= s->ring_size;
}

static bool arena_room(mp_queue *q, uint64_t at, uint64_t need) {
    mp__qshared *s = q->s;
    uint64_t want = at + span(at, s->arena_size, need);
    if (want - s->put.a_head_seen <= s->arena_size) return true;
    s->put.a_head_seen = atomic_load_explicit(&s->a_head, memory_order_acquire);
    return want - s->put.a_head_seen <= s->arena_size;
}

static inline uint32_t shut_state(const mp_queue *q) {
    return atomic_load_explicit(&q->s->shut, memory_order_acquire);
}

static bool count_room(mp_queue *q, void *arg) {
    (void)arg;
    mp__qshared *s = q->s;
    if (s->maxsize <= 0) return true;
    uint64_t n = atomic_load_explicit(&s->put.nput, memory_order_relaxed);
    if (n - s->put.nget_seen < (uint64_t)s->maxsize) return true;
    s->put.nget_seen = atomic_load_explicit(&s->get.nget, memory_order_acquire);
    return n - s->put.nget_seen < (uint64_t)s->maxsize;
}

/* The open OVF record (items go to the arena), or NULL. A record counts only once
 * published, so a putter that died before publishing it left nothing open. */
static mp__qrec *open_ovf(mp_queue *q) {
    mp__qshared *s = q->s;
    if (s->put.ovf == 0) return NULL;
    uint64_t at = s->put.ovf - 1;
    if (at >= atomic_load_explicit(&s->tail, memory_order_relaxed)) return NULL;
    mp__qrec *r = mp__qrec_at(q->ring, q->mask, at);
    if ((r->flags & MP__QREC_TYPE) != MP__QREC_OVF) return NULL;
    uint64_t end = atomic_load_explicit(ovf_end(r), memory_order_relaxed);
    return (end & MP__QOVF_CLOSED) ? NULL : r;
}

/* Writes a record at pos of a ring (a WRAP first when needed); returns its position. */
static uint64_t place(unsigned char *base, uint64_t size, uint64_t pos, uint64_t need) {
    uint64_t total = span(pos, size, need);
    if (total != need) {
        mp__qrec *w = mp__qrec_at(base, size - 1, pos);
        w->len = 0;
        w->flags = MP__QREC_WRAP;
        pos += total - need;
    }
    return pos;
}

/* The item is about to show (its commit word will read commit): count it now, so that
 * nget never runs ahead of nput, noting enough for put_recover to undo the count when
 * this process dies before the commit. */
static void count_put(mp_queue *q, uint64_t commit) {
    mp__qshared *s = q->s;
    uint64_t n = atomic_load_explicit(&s->put.nput, memory_order_relaxed) + 1;
    s->put.input = n;
    s->put.icommit = commit;
    /* The steps must reach memory in this order for put_recover (a killed process's
     * stores all land, so keeping the compiler from reordering is enough). */
    atomic_signal_fence(memory_order_seq_cst);
    if (q->kind == MP_JOINABLE_QUEUE) {
        /* Raised before the item shows, so a task_done can never run ahead of it; a kill
         * between the raise and the note below leaks one task (one instruction). */
        atomic_fetch_add(&s->unfinished.val, 1);
        s->put.uraised = n;
        atomic_signal_fence(memory_order_seq_cst);
    }
    atomic_store_explicit(&s->put.nput, n, memory_order_relaxed);
}

bool mp__queue_task_dec(mp_queue *q) {
    mp__futex *f = &q->s->unfinished;
    uint32_t v = atomic_load(&f->val);
    do {
        if (v == 0) return false;
    } while (!atomic_compare_exchange_weak(&f->val, &v, v - 1));
    if (v == 1 && atomic_load(&f->waiters) != 0) mp__os_futex_wake(f, INT32_MAX);
    return true;
}

/* JoinableQueue: an item that will never be delivered (its putter died or failed
 * before it showed, or a getter dropped it) is no task. */
static void uncount_task(mp_queue *q) {
    if (q->kind == MP_JOINABLE_QUEUE) mp__queue_task_dec(q);
}

static void fill(mp__qrec *r, uint32_t type, const void *buf, size_t len,
                 const mp__qspill_body *body) {
    if (body) {
        r->len = sizeof *body;
        r->flags = type | MP__QREC_SPILL;
        memcpy(r + 1, body, sizeof *body);
    } else {
        r->len = (uint32_t)len;
        r->flags = type;
        copy_halves(r + 1, buf, len, MP__QFAULT_PUT_PARTIAL);
    }
}

typedef struct arena_arg {
    uint64_t need;
    bool arena_only; /* the item can only go to the arena: ring room does not help */
} arena_arg;

/* A putter waiting for room also wakes for a shutdown (then refuses to put). */
static bool count_room_or_shut(mp_queue *q, void *arg) {
    return (shut_state(q) & MP__QSHUT) || count_room(q, arg);
}

static bool ring_or_arena_room(mp_queue *q, void *argp) {
    arena_arg *a = argp;
    if (shut_state(q) & MP__QSHUT) return true;
    mp__qrec *o = open_ovf(q);
    uint64_t at = o ? atomic_load_explicit(ovf_end(o), memory_order_relaxed) : q->s->put.a_tail;
    return (!a->arena_only && ring_room(q, a->need)) || arena_room(q, at, a->need);
}

/* Places the record (under the put lock): in the ring when it has room, else in the
 * arena. 0, MP_ETIMEDOUT when even the arena stayed full, or MP_ESHUTDOWN (not
 * recorded) when the queue was shut down meanwhile. */
static int put_record(mp_queue *q, uint32_t type, const void *buf, size_t len,
                      const mp__qspill_body *body, bool arena_only, mp__qclock *c, uint64_t *mark) {
    mp__qshared *s = q->s;
    uint64_t need = sizeof(mp__qrec) + round8(body ? sizeof *body : len);
    for (;;) {
        mp__qrec *o = open_ovf(q);
        if (o) s->put.a_tail = atomic_load_explicit(ovf_end(o), memory_order_relaxed);
        if (!arena_only && ring_room(q, need)) {
            /* Back to the ring: the arena's items all come before this one. */
            if (o)
                atomic_store_explicit(ovf_end(o), s->put.a_tail | MP__QOVF_CLOSED,
                                      memory_order_release);
            s->put.ovf = 0;
            uint64_t pos = place(q->ring, s->ring_size,
                                 atomic_load_explicit(&s->tail, memory_order_relaxed), need);
            count_put(q, pos + need);
            fill(mp__qrec_at(q->ring, q->mask, pos), type, buf, len, body);
            *mark = (pos + 1) * 2;
            atomic_store_explicit(&s->tail, pos + need, memory_order_release);
            s->put.icommit = 0;
            return 0;
        }
        unsigned char *a = mp__queue_arena(q);
        if (!a) return mp__err_wrap(MP_ENOMEM, "queue: cannot map the overflow arena");
        if (!arena_room(q, s->put.a_tail, need)) {
            arena_arg arg = {need, arena_only};
            int rc = mp__queue_wait(q, ring_or_arena_room, &arg, &s->get.put_waiters,
                                    &s->get.put_sleep, &s->get.notfull, c);
            if (rc) return rc;
            if (shut_state(q) & MP__QSHUT) return MP_ESHUTDOWN;
            continue;
        }
        if (!o) {
            /* The reserve guarantees the ring room for this. */
            uint64_t pos =
                place(q->ring, s->ring_size, atomic_load_explicit(&s->tail, memory_order_relaxed),
                      sizeof(mp__qrec) + 8);
            s->put.ovf = pos + 1;
            o = mp__qrec_at(q->ring, q->mask, pos);
            o->len = 8;
            o->flags = MP__QREC_OVF;
            atomic_store_explicit(ovf_end(o), s->put.a_tail, memory_order_relaxed);
            atomic_store_explicit(&s->tail, pos + sizeof(mp__qrec) + 8, memory_order_release);
        }
        uint64_t amask = s->arena_size - 1;
        uint64_t pos = place(a, s->arena_size, s->put.a_tail, need);
        count_put(q, pos + need);
        fill(mp__qrec_at(a, amask, pos), type, buf, len, body);
        *mark = (pos + 1) * 2 + 1;
        s->put.a_tail = pos + need;
        atomic_store_explicit(ovf_end(o), s->put.a_tail, memory_order_release);
        s->put.icommit = 0;
        return 0;
    }
}

/* The put side was taken over from a dead putter: a big item it was writing is given
 * up (queue_big.c); any other item showed whole or not at all (the commit is one
 * store), and if not while counted already, it is uncounted. */
static void put_recover(mp_queue *q) {
    mp__qshared *s = q->s;
    mp__queue_big_put_recover(q);
    uint64_t commit = s->put.icommit;
    if (commit == 0) return;
    s->put.icommit = 0;
    if (atomic_load_explicit(&s->put.nput, memory_order_relaxed) != s->put.input) return;
    /* The commit word is tail, or the end in the OVF record when it went to the arena
     * (the dead putter opened that record before counting). */
    bool shown = atomic_load_explicit(&s->tail, memory_order_relaxed) == commit;
    if (!shown && s->put.ovf != 0 &&
        s->put.ovf - 1 < atomic_load_explicit(&s->tail, memory_order_relaxed)) {
        mp__qrec *o = mp__qrec_at(q->ring, q->mask, s->put.ovf - 1);
        if ((o->flags & MP__QREC_TYPE) == MP__QREC_OVF)
            shown = (atomic_load_explicit(ovf_end(o), memory_order_relaxed) & ~MP__QOVF_CLOSED) ==
                    commit;
    }
    if (!shown) {
        atomic_store_explicit(&s->put.nput, s->put.input - 1, memory_order_relaxed);
        if (s->put.uraised == s->put.input) uncount_task(q);
    }
}

int mp__queue_put(mp_queue *q, const void *buf, size_t len, uint32_t type, double timeout,
                  const char *fn) {
    if (!q) return mp__err(MP_EINVAL, "%s: queue is NULL", fn);
    if (!buf && len) return mp__err(MP_EINVAL, "%s: buf is NULL", fn);
    if (atomic_load_explicit(&q->closed, memory_order_relaxed))
        return mp__err(MP_ECLOSED, "%s: the queue is closed", fn);
    mp__qshared *s = q->s;
    if (atomic_load_explicit(&s->shut, memory_order_relaxed) & MP__QSHUT)
        return mp__err(MP_ESHUTDOWN, "%s: the queue is shut down", fn);
    mp__qclock c = {.timeout = mp__timeout(timeout)};
    /* On an unbounded queue a put never reports Full (Python): another putter holds the
     * put side only for one copy, so wait for it whatever the timeout. */
    mp__qclock lc = {.timeout = MP_FOREVER};
    int rc = side_lock(&s->put.lock, s->maxsize <= 0 ? &lc : &c);
    if (rc == MP_ETIMEDOUT)
        return mp__err(MP_EFULL, "%s: the queue stayed busy for %.3f s", fn, timeout);
    if (rc == MP_EOWNERDEAD)
        put_recover(q);
    else if (rc != 0)
        return mp__err(rc, "%s: cannot take the put side", fn);
    /* Looked at under the put side: a shutdown holds it once after refusing puts, so no
     * put commits after mp_queue_shutdown has returned. */
    bool room = (shut_state(q) & MP__QSHUT) || count_room(q, NULL);
    if (!room) {
        rc = mp__queue_wait(q, count_room_or_shut, NULL, &s->get.put_waiters, &s->get.put_sleep,
                            &s->get.notfull, &c);
        if (rc) {
            rc = mp__err(MP_EFULL, "%s: the queue stayed full for %.3f s", fn, timeout);
            goto unlock;
        }
    }
    if (shut_state(q) & MP__QSHUT) {
        rc = mp__err(MP_ESHUTDOWN, "%s: the queue is shut down", fn);
        goto unlock;
    }
    mp__qspill_body body, *bp = NULL;
    bool arena_only = false;
    if (len > s->spill_min) {
        rc = mp__queue_big_put_begin(q, len, &body, &arena_only, fn);
        if (rc) goto unlock;
        if (!arena_only) bp = &body;
    }
    uint64_t mark = 0;
    rc = put_record(q, type, buf, len, bp, arena_only, &c, &mark);
    if (rc) {
        if (bp) mp__os_qspill_cancel(q->spill);
        if (rc == MP_ETIMEDOUT)
            rc = mp__err(MP_EFULL, "%s: the queue stayed full for %.3f s", fn, timeout);
        if (rc == MP_ESHUTDOWN) rc = mp__err(MP_ESHUTDOWN, "%s: the queue is shut down", fn);
        goto unlock;
    }
    if (bp) rc = mp__queue_big_put_stream(q, mark, body.seq, buf, len);
unlock:
    if (rc == 0) mp__queue_note_cpu(&s->put.cpu);
    mp__lockw_release(&s->put.lock);
    if (rc == 0) mp__queue_wake(&s->put.get_waiters, &s->put.get_sleep, &s->put.notempty);
    return rc;
}

/* ---- get ---- */

/* What the getter finds next, under the get lock. */
typedef struct next_rec {
    mp__qrec *r; /* NULL: nothing yet */
    uint64_t pos;
    bool in_arena;
} next_rec;

/* The next item record, stepping over WRAPs and closed, drained OVFs (the steps
 * are stores, so they happen here, under the get lock). */
static int find_next(mp_queue *q, next_rec *n) {
    mp__qshared *s = q->s;
    n->r = NULL;
    for (;;) {
        uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
        if (head == s->get.tail_seen) {
            s->get.tail_seen = atomic_load_explicit(&s->tail, memory_order_acquire);
            if (head == s->get.tail_seen) return 0;
        }
        mp__qrec *r = mp__qrec_at(q->ring, q->mask, head);
        uint32_t t = r->flags & MP__QREC_TYPE;
        if (t == MP__QREC_WRAP) {
            atomic_store_explicit(&s->head, head + (s->ring_size - (head & q->mask)),
                                  memory_order_release);
            continue;
        }
        if (t != MP__QREC_OVF) {
            *n = (next_rec){r, head, false};
            return 0;
        }
        uint64_t end = atomic_load_explicit(ovf_end(r), memory_order_acquire);
        uint64_t ah = atomic_load_explicit(&s->a_head, memory_order_relaxed);
        if (ah == (end & ~MP__QOVF_CLOSED)) {
            if (!(end & MP__QOVF_CLOSED)) return 0;
            atomic_store_explicit(&s->head, head + rec_need(r), memory_order_release);
            continue;
        }
        unsigned char *a = mp__queue_arena(q);
        if (!a) return mp__err_wrap(MP_ENOMEM, "queue: cannot map the overflow arena");
        mp__qrec *ar = mp__qrec_at(a, s->arena_size - 1, ah);
        if ((ar->flags & MP__QREC_TYPE) == MP__QREC_WRAP) {
            atomic_store_explicit(&s->a_head, ah + (s->arena_size - (ah & (s->arena_size - 1))),
                                  memory_order_release);
            continue;
        }
        *n = (next_rec){ar, ah, true};
        return 0;
    }
}

/* An item, or a shutdown that ends the wait (immediate, or no put can come). */
static bool get_ready(mp_queue *q, void *arg) {
    next_rec *n = arg;
    if (shut_state(q) & (MP__QSHUT_IMMEDIATE | MP__QSHUT_SEALED)) return true;
    return find_next(q, n) != 0 || n->r != NULL;
}

/* Gives consumed arena memory back, when no putter is in the arena. */
static void arena_clean(mp_queue *q) {
    mp__qshared *s = q->s;
    uint64_t ah = atomic_load_explicit(&s->a_head, memory_order_relaxed);
    if (ah - s->get.a_clean < Q_CLEAN_MIN) return;
    /* Only when the put side looks free: a busy one is tried again after a later get. */
    if (atomic_load_explicit(&s->put.lock.f.val, memory_order_relaxed) != 0) return;
    int rc = mp__lockw_acquire(&s->put.lock, 0);
    if (rc == MP_EOWNERDEAD)
        put_recover(q); /* as any taker of a dead putter's side */
    else if (rc != 0)
        return;
    unsigned char *a = atomic_load_explicit(&q->arena, memory_order_relaxed);
    if (!open_ovf(q) && s->put.a_tail == ah) {
        uint64_t from = s->get.a_clean, size = s->arena_size;
        if (ah - from >= size) from = ah - size;
        while (from < ah) {
            uint64_t off = from & (size - 1);
            uint64_t len = ah - from < size - off ? ah - from : size - off;
            mp__os_qarena_discard(q->arena_h, a, off, len);
            from += len;
        }
        s->get.a_clean = ah;
    }
    mp__lockw_release(&s->put.lock);
}

/* Moves past the item record at n (need bytes); the caller wakes putters once it let
 * the get side go. */
static void get_advance(mp_queue *q, const next_rec *n, uint64_t need) {
    mp__qshared *s = q->s;
    atomic_store_explicit(&s->get.nget, s->get.busy_nget, memory_order_release);
    atomic_store_explicit(n->in_arena ? &s->a_head : &s->head, n->pos + need, memory_order_release);
    atomic_store_explicit(&s->get.busy, 0, memory_order_relaxed);
}

static uint64_t busy_mark(const next_rec *n) { return (n->pos + 1) * 2 + (n->in_arena ? 1 : 0); }

/* Marks the item at n as being taken (get_advance ends that). */
static void get_begin(mp__qshared *s, const next_rec *n) {
    s->get.busy_nget = atomic_load_explicit(&s->get.nget, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->get.busy, busy_mark(n), memory_order_relaxed);
}

/* The get side was taken over from a dead getter: an item it had begun to read is gone
 * with it (the rest of the queue is untouched), and counted as taken exactly once. */
static void get_recover(mp_queue *q) {
    mp__qshared *s = q->s;
    uint64_t busy = atomic_load_explicit(&s->get.busy, memory_order_relaxed);
    if (busy == 0) return;
    next_rec n;
    if (find_next(q, &n) != 0 || !n.r || busy_mark(&n) != busy) {
        /* It had moved past the item: only the count may be missing. */
        atomic_store_explicit(&s->get.nget, s->get.busy_nget, memory_order_release);
        atomic_store_explicit(&s->get.busy, 0, memory_order_relaxed);
        return;
    }
    get_advance(q, &n, rec_need(n.r));
}

int mp__queue_get(mp_queue *q, mp__qdst *d, double timeout, const char *fn) {
    if (!q) return mp__err(MP_EINVAL, "%s: queue is NULL", fn);
    if (atomic_load_explicit(&q->closed, memory_order_relaxed))
        return mp__err(MP_ECLOSED, "%s: the queue is closed", fn);
    mp__qshared *s = q->s;
    if (atomic_load_explicit(&s->shut, memory_order_relaxed) & MP__QSHUT_IMMEDIATE)
        return mp__err(MP_ESHUTDOWN, "%s: the queue is shut down", fn);
    mp__qclock c = {.timeout = mp__timeout(timeout)};
    int rc = side_lock(&s->get.lock, &c);
    if (rc == MP_ETIMEDOUT)
        return mp__err(MP_EEMPTY, "%s: nothing came within %.3f s", fn, timeout);
    if (rc == MP_EOWNERDEAD)
        get_recover(q);
    else if (rc != 0)
        return mp__err(rc, "%s: cannot take the get side", fn);
    /* Where the get side stood (recovery included): moved before a sleep means records
     * were passed or dropped, which putters waiting for room must hear of. */
    uint64_t head0 = atomic_load_explicit(&s->head, memory_order_relaxed) + (rc == MP_EOWNERDEAD);
    uint64_t ahead0 = atomic_load_explicit(&s->a_head, memory_order_relaxed);
    for (;;) {
        next_rec n;
        /* Read before looking for an item: sealed then and nothing found means that
         * nothing can come any more (Python: ShutDown once shut down and empty). */
        uint32_t shut = shut_state(q);
        if (shut & MP__QSHUT_IMMEDIATE) {
            rc = mp__err(MP_ESHUTDOWN, "%s: the queue is shut down", fn);
            break;
        }
        rc = find_next(q, &n);
        if (rc) break;
        if (!n.r && (shut & MP__QSHUT_SEALED)) {
            rc = mp__err(MP_ESHUTDOWN, "%s: the queue is shut down and empty", fn);
            break;
        }
        if (!n.r) {
            /* This call may have moved the get side already (a dead getter's item, a
             * dropped item, WRAP and OVF records): putters waiting for room must hear of
             * it before we sleep, or both sides could sleep forever. (Only then: the
             * fence would cost a consumer that often finds the queue empty.) */
            if (atomic_load_explicit(&s->head, memory_order_relaxed) != head0 ||
                atomic_load_explicit(&s->a_head, memory_order_relaxed) != ahead0) {
                atomic_thread_fence(memory_order_seq_cst);
                mp__queue_wake(&s->get.put_waiters, &s->get.put_sleep, &s->get.notfull);
                head0 = atomic_load_explicit(&s->head, memory_order_relaxed);
                ahead0 = atomic_load_explicit(&s->a_head, memory_order_relaxed);
            }
            rc = mp__queue_wait(q, get_ready, &n, &s->put.get_waiters, &s->put.get_sleep,
                                &s->put.notempty, &c);
            if (rc) {
                rc = mp__err(MP_EEMPTY, "%s: nothing came within %.3f s", fn, timeout);
                break;
            }
            continue; /* an item, or a shutdown: look again */
        }
        mp__qrec *r = n.r;
        uint64_t need = rec_need(r);
        mp__qspill_body body;
        bool spill = r->flags & MP__QREC_SPILL;
        if (spill) mp__queue_big_body(r, &body);
        uint64_t size = spill ? body.size : r->len;
        if (size > SIZE_MAX) {
            rc = mp__err(MP_ENOMEM, "%s: an item of %llu bytes does not fit in memory", fn,
                         (unsigned long long)size);
            break;
        }
        d->len = (size_t)size;
        d->type = r->flags & MP__QREC_TYPE;
        void *dst = d->buf;
        if (dst && size > d->cap) {
            rc = mp__err(MP_ETOOBIG, "%s: the item has %zu bytes, the buffer %zu", fn, d->len,
                         d->cap);
            break;
        }
        if (!dst) {
            dst = mp__malloc(size ? (size_t)size : 1);
            if (!dst) {
                rc = mp__err(MP_ENOMEM, "%s: out of memory for an item of %zu bytes", fn, d->len);
                break;
            }
        }
        get_begin(s, &n);
        if (spill) {
            rc = mp__os_qspill_recv(q->spill, body.seq, body.size, body.rec);
            if (rc == MP_ENOENT) {
                /* Taken by a getter that died, or its keeper ended: that item is lost. */
                if (!d->buf) mp__free(dst);
                get_advance(q, &n, need);
                continue;
            }
            if (rc) {
                if (!d->buf) mp__free(dst);
                atomic_store_explicit(&s->get.busy, 0, memory_order_relaxed);
                break;
            }
            rc = mp__queue_big_get_stream(q, r, &body, dst);
            mp__os_qspill_done(q->spill, rc == 0);
            if (rc) {
                /* Its putter died or failed while writing it: the item is dropped, and
                 * is no task of a JoinableQueue. */
                if (!d->buf) mp__free(dst);
                get_advance(q, &n, need);
                uncount_task(q);
                if (rc == MP_ENOENT) continue;
                break;
            }
        } else {
            copy_halves(dst, r + 1, d->len, MP__QFAULT_GET_PARTIAL);
        }
        if (!d->buf) d->out = dst;
        get_advance(q, &n, need);
        arena_clean(q);
        mp__queue_note_cpu(&s->get.cpu);
        rc = 0;
        break;
    }
    mp__lockw_release(&s->get.lock);
    mp__queue_wake(&s->get.put_waiters, &s->get.put_sleep, &s->get.notfull);
    return rc;
}

/* ---- shutdown ---- */

/* Wakes every sleeper of f, whatever value it sleeps on (rare: no care for the cost). */
static void wake_all(mp__futex *f) {
    atomic_fetch_add(&f->val, 1);
    mp__os_futex_wake(f, INT32_MAX);
}

/* Under the get lock, once no put can commit: drops every item left, each a task done
 * (Python's shutdown(immediate=True) calls task_done per item it drops). */
static void drain(mp_queue *q) {
    mp__qshared *s = q->s;
    for (;;) {
        next_rec n;
        if (find_next(q, &n) != 0 || !n.r) return;
        mp__qrec *r = n.r;
        uint64_t need = rec_need(r);
        bool task = true;
        get_begin(s, &n);
        if (r->flags & MP__QREC_SPILL) {
            mp__qspill_body body;
            mp__queue_big_body(r, &body);
            int rc = mp__os_qspill_recv(q->spill, body.seq, body.size, body.rec);
            if (rc == 0) mp__os_qspill_done(q->spill, false);
            /* Gone with a getter that died: still its task, as in a get. */
            if (rc == MP_ENOENT) task = false;
        }
        get_advance(q, &n, need);
        if (task) uncount_task(q);
    }
}

int mp__queue_shutdown(mp_queue *q, bool immediate) {
    mp__qshared *s = q->s;
    atomic_fetch_or(&s->shut, MP__QSHUT | (immediate ? MP__QSHUT_IMMEDIATE : 0));
    /* Putters waiting for room (they refuse now), and with immediate the getters. */
    wake_all(&s->get.notfull);
    wake_all(&s->put.notempty);
    /* Once we have held the put side, no put can commit: every later holder sees SHUT
     * (a putter waiting under it woke above and lets go). */
    int rc = mp__lockw_acquire(&s->put.lock, MP_FOREVER);
    if (rc == MP_EOWNERDEAD)
        put_recover(q);
    else if (rc)
        return mp__err(rc, "mp_queue_shutdown: cannot take the put side");
    atomic_fetch_or(&s->shut, MP__QSHUT_SEALED);
    mp__lockw_release(&s->put.lock);
    /* Getters of an empty queue answer ShutDown now. */
    wake_all(&s->put.notempty);
    if (!immediate) return 0;
    mp__err_mute();
    rc = mp__lockw_acquire(&s->get.lock, MP_FOREVER);
    if (rc == MP_EOWNERDEAD) get_recover(q);
    if (rc == 0 || rc == MP_EOWNERDEAD) {
        drain(q);
        arena_clean(q);
        mp__lockw_release(&s->get.lock);
        rc = 0;
    }
    mp__err_unmute();
    return rc ? mp__err(rc, "mp_queue_shutdown: cannot take the get side") : 0;
}
