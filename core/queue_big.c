/* The queue's big items (bodies above ring/4, queue_layout.h: mp__qspill_body): each
 * travels in a block of its own, handed over through the OS layer's spill channel
 * (core/os_queue.h) while the ring holds a record naming it. The putter publishes the
 * record first and then writes the item chunk by chunk; the getter copies each chunk
 * right behind it. A putter or getter that dies on the way costs that item only. */
#include <stddef.h>
#include <string.h>

#include "queue_layout.h"

static inline _Atomic uint64_t *spill_done(mp__qrec *r) {
    return (_Atomic uint64_t *)(void *)((char *)(r + 1) + offsetof(mp__qspill_body, done));
}

/* A big item is written and read in chunks of this size: small enough to be still in
 * cache when the getter copies it out right behind the putter. */
#define Q_CHUNK ((uint64_t)512 << 10)

/* The record of the big item being written (put.stream), or NULL. */
static mp__qrec *stream_rec(mp_queue *q) {
    mp__qshared *s = q->s;
    uint64_t mark = s->put.stream;
    if (mark < 2) return NULL;
    uint64_t pos = mark / 2 - 1;
    mp__qrec *r;
    if (mark & 1) {
        unsigned char *a = mp__queue_arena(q);
        if (!a) return NULL;
        r = mp__qrec_at(a, s->arena_size - 1, pos);
    } else {
        r = mp__qrec_at(q->ring, q->mask, pos);
    }
    mp__qspill_body b;
    if (!(r->flags & MP__QREC_SPILL)) return NULL;
    memcpy(&b, r + 1, offsetof(mp__qspill_body, done));
    return b.seq == s->put.stream_seq ? r : NULL;
}

/* ---- put ---- */

void mp__queue_big_put_recover(mp_queue *q) {
    mp__qshared *s = q->s;
    mp__qrec *sr = stream_rec(q);
    if (sr) {
        atomic_fetch_or(spill_done(sr), MP__QSPILL_ABORTED);
        mp__queue_wake(&s->put.get_waiters, &s->put.get_sleep, &s->put.notempty);
    }
    s->put.stream = 0;
}

int mp__queue_big_put_begin(mp_queue *q, size_t len, mp__qspill_body *body, bool *arena_only,
                            const char *fn) {
    mp__qshared *s = q->s;
    *arena_only = false;
    int rc = mp__os_qspill_take(q->spill, len);
    if (rc) return rc;
    memset(body, 0, sizeof *body);
    body->seq = ++s->put.spill_seq;
    body->size = len;
    body->writer = mp__os_sync_pid();
    /* Never waits: when the channel is full, the item goes whole into the arena. */
    rc = mp__os_qspill_send(q->spill, body->seq, len, body->rec, 0);
    if (rc == MP_EFULL && len <= UINT32_MAX - 16) {
        *arena_only = true;
        return 0;
    }
    if (rc == MP_EFULL) rc = mp__err(MP_EFULL, "%s: the big-item channel is full", fn);
    return rc;
}

int mp__queue_big_put_stream(mp_queue *q, uint64_t mark, uint64_t seq, const void *buf,
                             size_t len) {
    mp__qshared *s = q->s;
    s->put.stream_seq = seq;
    s->put.stream = mark;
    mp__qrec *r = stream_rec(q);
    int rc = r ? 0 : mp__err(MP_EPROTO, "queue: lost the record of a big item");
    uint64_t half = len / 2;
    for (uint64_t off = 0; off < len && rc == 0;) {
        uint64_t n = len - off < Q_CHUNK ? len - off : Q_CHUNK;
        if (off < half && off + n > half) n = half - off; /* the fault point, exactly */
        rc = mp__os_qspill_write(q->spill, off, (const char *)buf + off, (size_t)n);
        if (rc) break;
        off += n;
        atomic_store_explicit(spill_done(r), off, memory_order_release);
        if (off == half) mp__queue_fault(MP__QFAULT_PUT_SPILL);
        /* Wake a getter copying behind us (the fence: see mp__queue_wake). */
        atomic_thread_fence(memory_order_seq_cst);
        mp__queue_wake(&s->put.get_waiters, &s->put.get_sleep, &s->put.notempty);
    }
    if (rc && r) {
        atomic_fetch_or(spill_done(r), MP__QSPILL_ABORTED);
        mp__queue_wake(&s->put.get_waiters, &s->put.get_sleep, &s->put.notempty);
    }
    s->put.stream = 0;
    mp__os_qspill_cancel(q->spill);
    return rc;
}

/* ---- get ---- */

void mp__queue_big_body(const mp__qrec *r, mp__qspill_body *body) {
    /* All but done, which the putter may be raising: that one is read atomically. */
    memcpy(body, r + 1, offsetof(mp__qspill_body, done));
    memcpy(&body->writer, (const char *)(r + 1) + offsetof(mp__qspill_body, writer),
           sizeof body->writer);
    body->done = 0;
}

typedef struct progress_arg {
    mp__qrec *r;
    uint64_t seen;
} progress_arg;

static bool stream_moved(mp_queue *q, void *argp) {
    (void)q;
    progress_arg *a = argp;
    return atomic_load_explicit(spill_done(a->r), memory_order_acquire) != a->seen;
}

int mp__queue_big_get_stream(mp_queue *q, mp__qrec *r, const mp__qspill_body *b, void *dst) {
    mp__qshared *s = q->s;
    uint64_t got = 0, half = b->size / 2;
    bool faulted = false;
    while (got < b->size) {
        uint64_t done = atomic_load_explicit(spill_done(r), memory_order_acquire);
        if (done & MP__QSPILL_ABORTED) return MP_ENOENT;
        if (done > b->size) return mp__err(MP_EPROTO, "queue: a big item's record is corrupt");
        if (done > got) {
            /* Stop at the middle once, for the fault point. */
            uint64_t to = (!faulted && got < half && done > half) ? half : done;
            int rc = mp__os_qspill_read(q->spill, got, (char *)dst + got, (size_t)(to - got));
            if (rc) return rc;
            got = to;
            if (!faulted && got >= half) {
                faulted = true;
                mp__queue_fault(MP__QFAULT_GET_PARTIAL);
            }
            continue;
        }
        /* Waits for the putter, checking now and then that it is still at it: it holds
         * the put side while it writes. */
        progress_arg a = {r, done};
        mp__qclock c = {.timeout = MP__SYNC_SLICE};
        if (mp__queue_wait(q, stream_moved, &a, &s->put.get_waiters, &s->put.get_sleep,
                           &s->put.notempty, &c) == 0)
            continue;
        uint32_t holder = atomic_load_explicit(&s->put.lock.f.val, memory_order_acquire);
        if (holder != (uint32_t)b->writer || !mp__os_proc_alive((uint32_t)b->writer)) {
            if (atomic_load_explicit(spill_done(r), memory_order_acquire) == done) return MP_ENOENT;
        }
    }
    return 0;
}
