/* Internals of the queues (core/queue.c: objects and API; core/queue_ring.c: the ring;
 * core/queue_big.c: items too big for the ring), the tests' fault injection points are
 * in core/queue_fault.h. */
#ifndef MP_CORE_QUEUE_LAYOUT_H
#define MP_CORE_QUEUE_LAYOUT_H

#include "block.h"
#include "internal.h"
#include "os_queue.h"
#include "queue_fault.h"
#include "sync_internal.h"

/* ---- the shared block ----
 *
 * The ring holds records: an 8-byte header (length of the body, flags) and the body,
 * padded to 8 bytes; a record never wraps (a WRAP record fills the end of the ring
 * instead). head and tail are byte counters that only grow; a record is visible once
 * tail (release) is past it, and its space is free again once head is past it.
 *
 * The put side and the get side each have their own 128-byte lines (the adjacent-line
 * prefetcher pairs 64-byte lines), written by their side only, except for the waiter counts of the other side, which change only around
 * a sleep. Each side keeps what it last saw of the other side's counters, and looks
 * again only when that says full or empty, so the lines move between CPUs about once
 * per batch, not once per item.
 *
 * The overflow arena. put never waits for room on a queue whose item count allows one
 * more (Python's queues are bounded by items, and unbounded ones never block): when
 * the ring is full, the putter writes an OVF record in the ring (a ring record always
 * leaves MP__QRESERVE bytes for one) and appends the following items to the arena, a
 * second ring in its own block, as large as address space allows and filled only as
 * needed. The OVF record's body is the arena's end (bit 0: CLOSED); the putter
 * publishes arena records by moving it, and closes the episode as soon as the ring
 * has room again, then goes on in the ring. A getter at an OVF record reads the arena
 * up to that end, and passes the record once it is closed and drained. Every step of
 * either side is one store, so a process killed anywhere leaves a consistent queue. */
enum {
    MP__QREC_BYTES = 1,
    MP__QREC_VALUE = 2,
    MP__QREC_WRAP = 3,
    MP__QREC_OVF = 4,
    MP__QREC_TYPE = 0xff,
    MP__QREC_SPILL = 0x100, /* the body names a spill block: seq, size, rec[2] */
};
#define MP__QOVF_CLOSED ((uint64_t)1)
/* Room a ring record leaves for an OVF record: the record, and a WRAP before it. */
#define MP__QRESERVE ((uint64_t)24)

typedef struct mp__qrec {
    uint32_t len; /* of the body */
    uint32_t flags;
} mp__qrec;

/* A big item's record. The record shows as soon as the block is handed over, and the
 * putter then writes the item in chunks, raising done after each: a getter copies
 * each chunk right behind it, while it is still in cache, and the block comes back to
 * the free list in time for the putter's next item. The putter returns only once the
 * whole item is in the block (gh-73983 holds). A putter that dies on the way leaves
 * done short: the next putter (put_recover) or the getter (seeing the writer gone)
 * marks it aborted, and the item is dropped as a whole. */
typedef struct mp__qspill_body {
    uint64_t seq;
    uint64_t size;
    uint64_t rec[2];
    uint64_t done;   /* bytes written so far (atomic); MP__QSPILL_ABORTED: given up */
    uint64_t writer; /* pid of the putter */
} mp__qspill_body;
#define MP__QSPILL_ABORTED ((uint64_t)1 << 63)

/* Shutdown (queue.Queue.shutdown of Python 3.13): SHUT refuses puts; IMMEDIATE refuses
 * gets at once; SEALED is set once shutdown has held the put side after SHUT, so no put
 * can commit any more and a getter that finds nothing may answer ShutDown. (A process
 * killed between SHUT and SEALED leaves getters of an empty queue waiting as before;
 * another shutdown seals it.) */
enum { MP__QSHUT = 1, MP__QSHUT_IMMEDIATE = 2, MP__QSHUT_SEALED = 4 };

typedef struct mp__qshared {
    mp__sync_hdr hdr;
    uint32_t qkind; /* mp_queue_kind */
    uint32_t creator_pid;
    int64_t maxsize;       /* <= 0: unbounded */
    uint64_t ring_size;    /* a power of two */
    uint64_t ring_off;     /* from the start of the block */
    uint64_t spill_min;    /* bodies longer than this go to a spill block */
    uint64_t arena_size;   /* a power of two */
    _Atomic uint32_t shut; /* MP__QSHUT_* bits: a line both sides read anyway, written once */
    uint32_t pad;
    _Alignas(128) struct {
        mp__lockw lock;
        _Atomic uint64_t nput;       /* items published (raised just before) */
        uint64_t icommit, input;     /* a put in progress: the commit word's value after
                                        it (0: none), and nput's once it counted */
        uint64_t uraised;            /* JoinableQueue: input of the put that raised
                                        unfinished (put_recover undoes it) */
        uint64_t stream, stream_seq; /* a big item being written: 2 * (1 + position) +
                                        in arena (0: none), and its seq */
        uint64_t head_seen, nget_seen, a_head_seen; /* the get side's, as last read */
        uint64_t spill_seq;
        uint64_t ovf;                 /* 1 + position of the last OVF record; 0: none */
        uint64_t a_tail;              /* arena end, when no episode is open */
        _Atomic uint32_t get_waiters; /* getters about to sleep on notempty */
        _Atomic uint32_t get_sleep;   /* the notempty value the getter sleeps on */
        mp__futex notempty;
        _Atomic int32_t cpu; /* 1 + where the last put ran (0: not known): a getter
                                spins only while it runs elsewhere */
    } put;
    _Alignas(128) struct {
        mp__lockw lock;
        _Atomic uint64_t nget; /* items taken (or lost with a dead getter) */
        _Atomic uint64_t busy; /* 2 * (1 + position) + in arena, of the item being read */
        uint64_t busy_nget;    /* nget once that item is taken */
        uint64_t tail_seen;
        uint64_t a_clean;             /* the arena before this was given back to the OS */
        _Atomic uint32_t put_waiters; /* putters about to sleep on notfull */
        _Atomic uint32_t put_sleep;   /* the notfull value the putter sleeps on */
        mp__futex notfull;
        _Atomic int32_t cpu;         /* 1 + where the last get ran: the same, for putters */
        _Atomic uint32_t spill_free; /* recycled spill blocks waiting */
    } get;
    /* The published counters have lines of their own: the other side reads them
     * whenever it catches up, which would otherwise take the lock word's line away
     * from its side once per item. */
    _Alignas(128) _Atomic uint64_t tail;
    _Alignas(128) _Atomic uint64_t head;
    _Atomic uint64_t a_head;            /* arena */
    _Alignas(128) mp__futex unfinished; /* JoinableQueue: val = tasks not done */
} mp__qshared;

struct mp_queue {
    mp__block *blk;
    mp__qshared *s;
    unsigned char *ring;
    uint64_t mask;
    mp__qspill *spill;
    mp_os_handle arena_h;
    _Atomic(unsigned char *) arena; /* mapped on first use */
    mp_queue_kind kind;
    _Atomic bool closed;  /* this object only (Python's close) */
    mp_value_limits vlim; /* this object's gets (mp_queue_set_value_limits); zeros: defaults */
};

/* ---- what the ring (core/queue_ring.c) and the big items (core/queue_big.c) share ---- */

static inline void mp__queue_fault(int point) {
    void (*h)(int) = mp__queue_fault_hook;
    if (h) h(point);
}

static inline mp__qrec *mp__qrec_at(unsigned char *base, uint64_t mask, uint64_t pos) {
    return (mp__qrec *)(base + (pos & mask));
}

/* Wakes the other side's sleepers, if any; called right after the side's lock was
 * released. A waiter raises its count, then fences, then looks at the counter
 * (mp__queue_wait); the caller stored the counter, then released the lock, then looks
 * at the count. The release is a seq_cst exchange, a full barrier on every target
 * (x86: a locked instruction; ARMv8: stlxr then ldar stay in order), which takes the
 * place of a second fence per item here: one of the two sides sees the other. */
static inline void mp__queue_wake(_Atomic uint32_t *waiters, _Atomic uint32_t *sleep_val,
                                  mp__futex *f) {
    if (atomic_load_explicit(waiters, memory_order_relaxed) == 0) return;
    uint32_t v = atomic_load_explicit(&f->val, memory_order_relaxed);
    if (v == atomic_load_explicit(sleep_val, memory_order_relaxed) &&
        atomic_compare_exchange_strong(&f->val, &v, v + 1))
        mp__os_futex_wake(f, INT32_MAX);
}

typedef bool (*mp__qready_fn)(mp_queue *q, void *arg);

/* The deadline of a call, read from the clock only once the call has to wait (a
 * clock read costs as much as a whole item on some machines). */
typedef struct mp__qclock {
    double timeout, deadline;
    bool set;
} mp__qclock;

/** The call's deadline, from the clock on first use. */
static inline double mp__qclock_deadline(mp__qclock *c) {
    if (!c->set) {
        c->deadline = mp__deadline(c->timeout);
        c->set = true;
    }
    return c->deadline;
}

/* ---- waiting and the arena (core/queue_wait.c) ---- */

/** Notes in *cpu where this side runs (under its lock, on a line it owns anyway). */
static inline void mp__queue_note_cpu(_Atomic int32_t *cpu) {
    int32_t c = (int32_t)mp__os_cpu() + 1;
    if (atomic_load_explicit(cpu, memory_order_relaxed) != c)
        atomic_store_explicit(cpu, c, memory_order_relaxed);
}

/** Spins a little, then sleeps on f until ready() or the deadline: 0 or MP_ETIMEDOUT. */
int mp__queue_wait(mp_queue *q, mp__qready_fn ready, void *arg, _Atomic uint32_t *waiters,
                   _Atomic uint32_t *sleep_val, mp__futex *f, mp__qclock *c);
/** The arena, mapped in this process on first use (NULL and an error on failure). */
unsigned char *mp__queue_arena(mp_queue *q);

/* ---- big items (core/queue_big.c), each call under its side's lock ---- */

/** Put side: a block for an item of len bytes, handed over as the next seq, and body
 *  for its record. *arena_only when the channel is full: then no block is sent and the
 *  item goes whole into the arena. */
int mp__queue_big_put_begin(mp_queue *q, size_t len, mp__qspill_body *body, bool *arena_only,
                            const char *fn);
/** Put side: writes a big item whose record (at mark) shows already, chunk by chunk. */
int mp__queue_big_put_stream(mp_queue *q, uint64_t mark, uint64_t seq, const void *buf, size_t len);
/** Put side, taken over from a dead putter: a big item it was writing is given up. */
void mp__queue_big_put_recover(mp_queue *q);
/** Get side: the body of big item record r (done is left 0: the copy reads it). */
void mp__queue_big_body(const mp__qrec *r, mp__qspill_body *body);
/** Get side, the block received: copies the item out as its putter writes it: 0,
 *  MP_ENOENT when the putter gave up or died, or an error of the read. */
int mp__queue_big_get_stream(mp_queue *q, mp__qrec *r, const mp__qspill_body *b, void *dst);

/* ---- the ring (core/queue_ring.c) ---- */

/** Puts one item of type MP__QREC_BYTES / MP__QREC_VALUE. */
int mp__queue_put(mp_queue *q, const void *buf, size_t len, uint32_t type, double timeout,
                  const char *fn);

/** Where a get puts the item: into a caller's buffer, or a new one. */
typedef struct mp__qdst {
    void *buf; /* in: the caller's buffer (cap bytes); NULL: allocate */
    size_t cap;
    void *out;     /* out: the allocated buffer */
    size_t len;    /* out: the item's size (also on MP_ETOOBIG) */
    uint32_t type; /* out: MP__QREC_BYTES / MP__QREC_VALUE */
} mp__qdst;

int mp__queue_get(mp_queue *q, mp__qdst *d, double timeout, const char *fn);
/** JoinableQueue: one task fewer, waking joiners at 0; false when there was none. */
bool mp__queue_task_dec(mp_queue *q);
/** Shuts the queue down in every process (Python 3.13's queue.Queue.shutdown): puts
 *  are refused from now on, waiters are woken; immediate also drops every item (each
 *  one a task done) and refuses gets at once. */
int mp__queue_shutdown(mp_queue *q, bool immediate);

#endif
