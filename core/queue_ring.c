/* The queue's ring: putting and getting records, waiting, and the hand-over of items
 * too big for the ring (through the OS layer's spill channel, core/os_queue.h).
 *
 * Fast path, one item, no contention: the side's lock word (one CAS, one exchange),
 * the record copy, one release store of tail (or head), and one fence before looking
 * whether the other side sleeps. No system call unless somebody sleeps. */
#include <string.h>

#include "queue_internal.h"

void (*mp__queue_fault_hook)(int point);

static inline void fault(int point) {
    void (*h)(int) = mp__queue_fault_hook;
    if (h) h(point);
}

/* A waiter spins this many rounds before it sleeps: an item usually arrives within a
 * few microseconds in a stream, and a sleep/wake pair costs two system calls plus a
 * scheduler round trip. Kept short, because on a loaded machine the spinner takes
 * the CPU from the process it waits for. */
enum { Q_SPIN = 400 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t round8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* Wakes the other side's sleepers, if any. The fence orders the caller's counter
 * store before the look at the waiter count; a waiter raises its count before it
 * looks at the counter (wait_for), so one of the two sees the other. */
static inline void wake_waiters(_Atomic uint32_t *waiters, mp__futex *f) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(waiters, memory_order_relaxed) != 0) {
        atomic_fetch_add(&f->val, 1);
        mp__os_futex_wake(f, INT32_MAX);
    }
}

typedef bool (*ready_fn)(mp_queue *q, void *arg);

/* Spins a little, then sleeps on f until ready() or the deadline: 0 or MP_ETIMEDOUT. */
static int wait_for(mp_queue *q, ready_fn ready, void *arg, _Atomic uint32_t *waiters,
                    mp__futex *f, double deadline) {
    for (int i = 0; i < Q_SPIN; i++) {
        if (ready(q, arg)) return 0;
        if (deadline >= 0 && mp__sync_left(deadline) == 0) return MP_ETIMEDOUT;
        cpu_relax();
    }
    for (;;) {
        atomic_fetch_add(waiters, 1);
        atomic_thread_fence(memory_order_seq_cst);
        uint32_t v = atomic_load(&f->val);
        if (ready(q, arg)) {
            atomic_fetch_sub(waiters, 1);
            return 0;
        }
        double left = mp__sync_left(deadline);
        int r = left == 0 ? MP_ETIMEDOUT : mp__os_futex_wait(f, v, left);
        atomic_fetch_sub(waiters, 1);
        if (ready(q, arg)) return 0;
        if (r == MP_ETIMEDOUT && mp__sync_left(deadline) == 0) return MP_ETIMEDOUT;
    }
}

/* ---- put ---- */

typedef struct put_arg {
    uint64_t need;  /* bytes of the record */
    uint64_t total; /* out: need plus the WRAP filler, if any */
} put_arg;

/* Is there room for the record (and, bounded, for one more item)? Under the put lock. */
static bool put_ready(mp_queue *q, void *argp) {
    mp__qshared *s = q->s;
    put_arg *a = argp;
    uint64_t pos = atomic_load_explicit(&s->put.tail, memory_order_relaxed);
    uint64_t contig = s->ring_size - (pos & q->mask);
    a->total = a->need > contig ? contig + a->need : a->need;
    if (pos + a->total - s->put.head_seen > s->ring_size) {
        s->put.head_seen = atomic_load_explicit(&s->get.head, memory_order_acquire);
        if (pos + a->total - s->put.head_seen > s->ring_size) return false;
    }
    if (s->maxsize > 0) {
        uint64_t n = atomic_load_explicit(&s->put.nput, memory_order_relaxed);
        if (n - s->put.nget_seen >= (uint64_t)s->maxsize) {
            s->put.nget_seen = atomic_load_explicit(&s->get.nget, memory_order_acquire);
            if (n - s->put.nget_seen >= (uint64_t)s->maxsize) return false;
        }
    }
    return true;
}

static void put_copy(void *dst, const void *src, size_t len, int point) {
    size_t half = len / 2;
    if (half) memcpy(dst, src, half);
    fault(point);
    if (len - half) memcpy((char *)dst + half, (const char *)src + half, len - half);
}

int mp__queue_put(mp_queue *q, const void *buf, size_t len, uint32_t type, double timeout,
                  const char *fn) {
    if (!q) return mp__err(MP_EINVAL, "%s: queue is NULL", fn);
    if (!buf && len) return mp__err(MP_EINVAL, "%s: buf is NULL", fn);
    if (atomic_load_explicit(&q->closed, memory_order_relaxed))
        return mp__err(MP_ECLOSED, "%s: the queue is closed", fn);
    mp__qshared *s = q->s;
    bool spill = len > s->spill_min;
    put_arg a = {.need = sizeof(mp__qrec) + round8(spill ? sizeof(mp__qspill_body) : len)};
    double deadline = mp__sync_deadline(timeout);
    int rc = mp__lockw_acquire(&s->put.lock, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(MP_EFULL, "%s: the queue stayed busy for %.3f s", fn, timeout);
    if (rc != 0 && rc != MP_EOWNERDEAD) return mp__err(rc, "%s: cannot take the put side", fn);
    /* A putter that died here published nothing: its record lies past tail. */
    if (!put_ready(q, &a)) {
        rc = wait_for(q, put_ready, &a, &s->get.put_waiters, &s->get.notfull, deadline);
        if (rc) {
            mp__lockw_release(&s->put.lock);
            return mp__err(MP_EFULL, "%s: the queue stayed full for %.3f s", fn, timeout);
        }
    }
    mp__qspill_body body;
    if (spill) {
        void *base;
        rc = mp__os_qspill_take(q->spill, len, &base);
        if (rc) goto unlock;
        put_copy(base, buf, len, MP__QFAULT_PUT_SPILL);
        body.seq = ++s->put.spill_seq;
        body.size = len;
        rc = mp__os_qspill_send(q->spill, body.seq, len, body.rec, mp__sync_left(deadline));
        if (rc) {
            if (rc == MP_EFULL) rc = mp__err(MP_EFULL, "%s: the queue stayed full for %.3f s", fn, timeout);
            goto unlock;
        }
    }
    /* Counted before the item shows, so that a task_done can never run ahead of it. */
    if (q->kind == MP_JOINABLE_QUEUE) atomic_fetch_add(&s->unfinished.val, 1);
    uint64_t pos = atomic_load_explicit(&s->put.tail, memory_order_relaxed);
    if (a.total != a.need) {
        mp__qrec *w = (mp__qrec *)(q->ring + (pos & q->mask));
        w->len = 0;
        w->flags = MP__QREC_WRAP;
        pos += a.total - a.need;
    }
    mp__qrec *r = (mp__qrec *)(q->ring + (pos & q->mask));
    if (spill) {
        r->len = sizeof body;
        r->flags = type | MP__QREC_SPILL;
        memcpy(r + 1, &body, sizeof body);
    } else {
        r->len = (uint32_t)len;
        r->flags = type;
        put_copy(r + 1, buf, len, MP__QFAULT_PUT_PARTIAL);
    }
    atomic_store_explicit(&s->put.tail, pos + a.need, memory_order_release);
    atomic_store_explicit(&s->put.nput, atomic_load_explicit(&s->put.nput, memory_order_relaxed) + 1,
                          memory_order_release);
    wake_waiters(&s->put.get_waiters, &s->put.notempty);
unlock:
    mp__lockw_release(&s->put.lock);
    return rc;
}

/* ---- get ---- */

static bool get_ready(mp_queue *q, void *arg) {
    (void)arg;
    mp__qshared *s = q->s;
    uint64_t head = atomic_load_explicit(&s->get.head, memory_order_relaxed);
    if (head != s->get.tail_seen) return true;
    s->get.tail_seen = atomic_load_explicit(&s->put.tail, memory_order_acquire);
    return head != s->get.tail_seen;
}

/* Moves head past the record at head (need bytes) and wakes putters. */
static void get_advance(mp_queue *q, uint64_t head, uint64_t need, bool item) {
    mp__qshared *s = q->s;
    atomic_store_explicit(&s->get.head, head + need, memory_order_release);
    if (item)
        atomic_store_explicit(&s->get.nget, atomic_load_explicit(&s->get.nget, memory_order_relaxed) + 1,
                              memory_order_release);
    atomic_store_explicit(&s->get.busy, 0, memory_order_relaxed);
    wake_waiters(&s->get.put_waiters, &s->get.notfull);
}

static uint64_t rec_need(const mp__qrec *r) { return sizeof(mp__qrec) + round8(r->len); }

/* The get side was taken over from a dead getter: an item it had begun to read is gone
 * with it (the rest of the queue is untouched). */
static void get_recover(mp_queue *q) {
    mp__qshared *s = q->s;
    uint64_t head = atomic_load_explicit(&s->get.head, memory_order_relaxed);
    if (atomic_load_explicit(&s->get.busy, memory_order_relaxed) != head + 1) return;
    const mp__qrec *r = (const mp__qrec *)(q->ring + (head & q->mask));
    get_advance(q, head, rec_need(r), true);
}

int mp__queue_get(mp_queue *q, mp__qdst *d, double timeout, const char *fn) {
    if (!q) return mp__err(MP_EINVAL, "%s: queue is NULL", fn);
    if (atomic_load_explicit(&q->closed, memory_order_relaxed))
        return mp__err(MP_ECLOSED, "%s: the queue is closed", fn);
    mp__qshared *s = q->s;
    double deadline = mp__sync_deadline(timeout);
    int rc = mp__lockw_acquire(&s->get.lock, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(MP_EEMPTY, "%s: nothing came within %.3f s", fn, timeout);
    if (rc == MP_EOWNERDEAD) get_recover(q);
    else if (rc != 0) return mp__err(rc, "%s: cannot take the get side", fn);
    for (;;) {
        if (!get_ready(q, NULL)) {
            rc = wait_for(q, get_ready, NULL, &s->put.get_waiters, &s->put.notempty, deadline);
            if (rc) {
                rc = mp__err(MP_EEMPTY, "%s: nothing came within %.3f s", fn, timeout);
                break;
            }
        }
        uint64_t head = atomic_load_explicit(&s->get.head, memory_order_relaxed);
        const mp__qrec *r = (const mp__qrec *)(q->ring + (head & q->mask));
        if ((r->flags & MP__QREC_TYPE) == MP__QREC_WRAP) {
            get_advance(q, head, s->ring_size - (head & q->mask), false);
            continue;
        }
        uint64_t need = rec_need(r);
        mp__qspill_body body;
        bool spill = r->flags & MP__QREC_SPILL;
        if (spill) memcpy(&body, r + 1, sizeof body);
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
            rc = mp__err(MP_ETOOBIG, "%s: the item has %zu bytes, the buffer %zu", fn, d->len, d->cap);
            break;
        }
        if (!dst) {
            dst = mp__malloc(size ? (size_t)size : 1);
            if (!dst) {
                rc = mp__err(MP_ENOMEM, "%s: out of memory for an item of %zu bytes", fn, d->len);
                break;
            }
        }
        atomic_store_explicit(&s->get.busy, head + 1, memory_order_relaxed);
        if (spill) {
            const void *src;
            rc = mp__os_qspill_recv(q->spill, body.seq, body.size, body.rec, &src);
            if (rc == MP_ENOENT) {
                /* Taken by a getter that died, or its keeper ended: that item is lost. */
                if (!d->buf) mp__free(dst);
                get_advance(q, head, need, true);
                continue;
            }
            if (rc) {
                if (!d->buf) mp__free(dst);
                atomic_store_explicit(&s->get.busy, 0, memory_order_relaxed);
                break;
            }
            put_copy(dst, src, d->len, MP__QFAULT_GET_PARTIAL);
            mp__os_qspill_done(q->spill, true);
        } else {
            put_copy(dst, r + 1, d->len, MP__QFAULT_GET_PARTIAL);
        }
        if (!d->buf) d->out = dst;
        get_advance(q, head, need, true);
        rc = 0;
        break;
    }
    mp__lockw_release(&s->get.lock);
    return rc;
}
