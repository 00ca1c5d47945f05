/* What the ring (queue_ring.c) and the big items (queue_big.c) share: waiting for the
 * other side, and the overflow arena's mapping. */
#include "queue_layout.h"

/* A waiter spins up to this many rounds before it sleeps: in a stream an item usually
 * comes within microseconds, and a sleep/wake pair costs two system calls and a
 * scheduler round trip (on an idle VM, where a halted CPU must be woken, ten times
 * that). But a spin pays only while the other side runs on another CPU: on the same
 * CPU (a busy machine, or the scheduler keeping a ping-pong pair together) it takes the
 * time the other side needs, and the item comes after the sleep anyway. So a waiter
 * spins only when the other side's last operation ran on another CPU than its own. */
enum { Q_SPIN = 400 };

static int spin_rounds(mp_queue *q, _Atomic uint32_t *waiters) {
    _Atomic int32_t *other = waiters == &q->s->put.get_waiters ? &q->s->put.cpu : &q->s->get.cpu;
    int32_t there = atomic_load_explicit(other, memory_order_relaxed);
    return there && there == mp__os_cpu() + 1 ? 0 : Q_SPIN;
}

unsigned char *mp__queue_arena(mp_queue *q) {
    unsigned char *a = atomic_load_explicit(&q->arena, memory_order_acquire);
    if (a) return a;
    void *p;
    if (mp__os_qarena_map(q->arena_h, q->s->arena_size, &p) != 0) return NULL;
    unsigned char *none = NULL;
    if (!atomic_compare_exchange_strong(&q->arena, &none, (unsigned char *)p)) {
        mp__os_qarena_unmap(p, q->s->arena_size); /* another thread of ours was first */
        return none;
    }
    return p;
}

/* Only the holder of a side's lock waits here, so one sleeper at a time per word:
 * it notes in sleep_val the value it sleeps on, and a waker makes the system call
 * only while val still equals it, i.e. once per sleep, not once per item. */
int mp__queue_wait(mp_queue *q, mp__qready_fn ready, void *arg, _Atomic uint32_t *waiters,
                   _Atomic uint32_t *sleep_val, mp__futex *f, mp__qclock *c) {
    if (ready(q, arg)) return 0;
    if (c->timeout == 0) return MP_ETIMEDOUT;
    int spins = spin_rounds(q, waiters);
    for (int i = 0; i < spins; i++) {
        mp__cpu_relax();
        if (ready(q, arg)) return 0;
    }
    double deadline = mp__qclock_deadline(c);
    for (;;) {
        atomic_fetch_add(waiters, 1);
        atomic_thread_fence(memory_order_seq_cst);
        uint32_t v = atomic_load(&f->val);
        atomic_store(sleep_val, v);
        atomic_thread_fence(memory_order_seq_cst);
        if (ready(q, arg)) {
            atomic_fetch_sub(waiters, 1);
            return 0;
        }
        double left = mp__left(deadline);
        int r = left == 0 ? MP_ETIMEDOUT : mp__os_futex_wait(f, v, left);
        atomic_fetch_sub(waiters, 1);
        if (ready(q, arg)) return 0;
        if (r == MP_ETIMEDOUT && mp__left(deadline) == 0) return MP_ETIMEDOUT;
    }
}
