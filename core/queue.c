/* Queue, SimpleQueue and JoinableQueue: the objects, the public calls, and how a queue
 * travels to a child. The ring itself is in queue_ring.c; the layout of the shared
 * block in queue_layout.h. */
#include <string.h>

#include "queue_layout.h"

enum {
    Q_RING_DEFAULT = 1 << 20,
    Q_RING_MIN = 1 << 12,
    Q_RING_MAX = 1 << 29,
};

static size_t ring_offset(void) { return (sizeof(mp__qshared) + 127) & ~(size_t)127; }

static mp_queue *queue_wrap(mp__block *b, mp__qspill *spill, mp_os_handle arena_h) {
    mp_queue *q = mp__calloc(1, sizeof *q);
    if (!q) return NULL;
    q->blk = b;
    q->s = b->base;
    q->ring = (unsigned char *)b->base + q->s->ring_off;
    q->mask = q->s->ring_size - 1;
    q->kind = (mp_queue_kind)q->s->qkind;
    q->spill = spill;
    q->arena_h = arena_h;
    atomic_init(&q->arena, NULL);
    atomic_init(&q->closed, false);
    return q;
}

int mp_queue_new_opts(mp_context *ctx, const mp_queue_opts *opts, mp_queue **out) {
    (void)ctx; /* every start method shares the same kind of queue */
    if (!out) return mp__err(MP_EINVAL, "mp_queue_new: out is NULL");
    *out = NULL;
    mp_queue_opts o = {0};
    if (opts) o = *opts;
    if (o.kind == 0) o.kind = MP_QUEUE;
    if (o.kind != MP_QUEUE && o.kind != MP_SIMPLE_QUEUE && o.kind != MP_JOINABLE_QUEUE)
        return mp__err(MP_EINVAL, "mp_queue_new: unknown kind %d", (int)o.kind);
    if (o.ring_bytes > Q_RING_MAX)
        return mp__err(MP_EINVAL, "mp_queue_new: ring_bytes %zu is over the limit %d", o.ring_bytes,
                       Q_RING_MAX);
    size_t ring = o.ring_bytes ? Q_RING_MIN : Q_RING_DEFAULT;
    while (ring < o.ring_bytes) ring <<= 1;
    if (o.kind == MP_SIMPLE_QUEUE || o.maxsize < 0) o.maxsize = 0;

    mp__block *b;
    int rc = mp__block_new(MP__K_QUEUE, ring_offset() + ring, &b);
    if (rc) return rc;
    mp__qshared *s = b->base;
    s->qkind = (uint32_t)o.kind;
    s->creator_pid = mp__os_sync_pid();
    s->maxsize = o.maxsize;
    s->ring_size = ring;
    s->ring_off = ring_offset();
    s->spill_min = ring / 4;
    mp_os_handle arena_h;
    if ((rc = mp__os_qarena_new(&s->arena_size, &arena_h)) != 0) {
        mp__block_release(b);
        return rc;
    }
    if (s->arena_size < ring) {
        mp__os_handle_close(arena_h);
        mp__block_release(b);
        return mp__err(MP_ENOMEM,
                       "mp_queue_new: a ring of %zu bytes is larger than the "
                       "overflow area this process may make (ulimit -f)",
                       ring);
    }
    mp__block_futex_init(b, &s->put.lock.f);
    mp__block_futex_init(b, &s->put.notempty);
    mp__block_futex_init(b, &s->get.lock.f);
    mp__block_futex_init(b, &s->get.notfull);
    mp__block_futex_init(b, &s->unfinished);
    mp__qspill *spill;
    rc = mp__os_qspill_new(s->creator_pid, &s->get.spill_free, &spill);
    if (rc) {
        mp__os_handle_close(arena_h);
        mp__block_release(b);
        return rc;
    }
    mp_queue *q = queue_wrap(b, spill, arena_h);
    if (!q) {
        mp__os_qspill_free(spill);
        mp__os_handle_close(arena_h);
        mp__block_release(b);
        return mp__err(MP_ENOMEM, "mp_queue_new: out of memory");
    }
    *out = q;
    return 0;
}

int mp_queue_new(mp_context *ctx, int64_t maxsize, mp_queue **out) {
    mp_queue_opts o = {.kind = MP_QUEUE, .maxsize = maxsize};
    return mp_queue_new_opts(ctx, &o, out);
}

int mp_simple_queue_new(mp_context *ctx, mp_queue **out) {
    mp_queue_opts o = {.kind = MP_SIMPLE_QUEUE};
    return mp_queue_new_opts(ctx, &o, out);
}

int mp_joinable_queue_new(mp_context *ctx, int64_t maxsize, mp_queue **out) {
    mp_queue_opts o = {.kind = MP_JOINABLE_QUEUE, .maxsize = maxsize};
    return mp_queue_new_opts(ctx, &o, out);
}

void mp_queue_free(mp_queue *q) {
    if (!q) return;
    mp__os_qspill_free(q->spill);
    unsigned char *a = atomic_load(&q->arena);
    if (a) mp__os_qarena_unmap(a, q->s->arena_size);
    mp__os_handle_close(q->arena_h);
    mp__block_release(q->blk);
    mp__free(q);
}

mp_queue_kind mp_queue_get_kind(const mp_queue *q) { return q ? q->kind : (mp_queue_kind)0; }

/* ---- put and get ---- */

int mp_queue_put_bytes(mp_queue *q, const void *buf, size_t len, double timeout) {
    return mp__queue_put(q, buf, len, MP__QREC_BYTES, timeout, "mp_queue_put_bytes");
}

int mp_queue_put(mp_queue *q, const mp_value *v, double timeout) {
    if (!q) return mp__err(MP_EINVAL, "mp_queue_put: queue is NULL");
    if (!v) return mp__err(MP_EINVAL, "mp_queue_put: value is NULL");
    void *buf;
    size_t len;
    int rc = mp_value_dumps(v, &buf, &len);
    if (rc == MP_ENOMEM) return rc;
    if (rc) return mp__err_wrap(MP_ENOTSUP, "mp_queue_put: the value cannot be encoded");
    rc = mp__queue_put(q, buf, len, MP__QREC_VALUE, timeout, "mp_queue_put");
    mp_value_buf_free(buf);
    return rc;
}

int mp_queue_get_bytes(mp_queue *q, void **out, size_t *len, double timeout) {
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!out || !len) return mp__err(MP_EINVAL, "mp_queue_get_bytes: NULL argument");
    mp__qdst d = {0};
    int rc = mp__queue_get(q, &d, timeout, "mp_queue_get_bytes");
    if (rc) return rc;
    *out = d.out;
    *len = d.len;
    return 0;
}

int mp_queue_get_bytes_into(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout) {
    if (len) *len = 0;
    if (!len) return mp__err(MP_EINVAL, "mp_queue_get_bytes_into: len is NULL");
    if (!buf && cap) return mp__err(MP_EINVAL, "mp_queue_get_bytes_into: buf is NULL");
    /* A NULL buffer of capacity 0 still takes an empty item, never allocates. */
    static char none;
    mp__qdst d = {.buf = buf ? buf : &none, .cap = cap};
    int rc = mp__queue_get(q, &d, timeout, "mp_queue_get_bytes_into");
    if (rc == 0 || rc == MP_ETOOBIG) *len = d.len;
    return rc;
}

int mp_queue_get(mp_queue *q, mp_value **out, double timeout) {
    if (out) *out = NULL;
    if (!out) return mp__err(MP_EINVAL, "mp_queue_get: out is NULL");
    mp__qdst d = {0};
    int rc = mp__queue_get(q, &d, timeout, "mp_queue_get");
    if (rc) return rc;
    if (d.type == MP__QREC_VALUE) {
        rc = mp_value_loads(d.out, d.len, &q->vlim, out);
        if (rc && rc != MP_ENOMEM)
            rc = mp__err_wrap(MP_EPROTO, "mp_queue_get: the item does not decode");
    } else {
        *out = mp_value_bytes(d.out, d.len);
        if (!*out) rc = mp__err(MP_ENOMEM, "mp_queue_get: out of memory");
    }
    mp__free(d.out);
    return rc;
}

void mp_queue_free_bytes(void *p) { mp__free(p); }

int mp_queue_set_value_limits(mp_queue *q, const mp_value_limits *lim) {
    if (!q) return mp__err(MP_EINVAL, "mp_queue_set_value_limits: q is NULL");
    if (lim) {
        q->vlim = *lim;
    } else {
        memset(&q->vlim, 0, sizeof q->vlim);
    }
    return 0;
}

/* ---- state ---- */

static size_t items(const mp__qshared *s) {
    /* nget first: an item is counted in nput before it shows, so this order never
     * sees more taken than put (the check is for a recovery in between). */
    uint64_t got = atomic_load_explicit(&s->get.nget, memory_order_acquire);
    uint64_t put = atomic_load_explicit(&s->put.nput, memory_order_acquire);
    return put > got ? (size_t)(put - got) : 0;
}

static bool is_closed(const mp_queue *q) {
    return atomic_load_explicit(&q->closed, memory_order_relaxed);
}

static bool full(const mp_queue *q) {
    return q->s->maxsize > 0 && items(q->s) >= (uint64_t)q->s->maxsize;
}

/* The state queries' checks: 0, or the error (out stays zero). */
static int query_check(const mp_queue *q, const void *out, bool simple_has_it, const char *fn) {
    if (!q || !out) return mp__err(MP_EINVAL, "%s: NULL argument", fn);
    if (is_closed(q)) return mp__err(MP_ECLOSED, "%s: the queue is closed", fn);
    if (!simple_has_it && q->kind == MP_SIMPLE_QUEUE)
        return mp__err(MP_ENOTSUP, "%s: not supported on a SimpleQueue (as in Python)", fn);
    return 0;
}

int mp_queue_qsize(mp_queue *q, size_t *n) {
    if (n) *n = 0;
    int rc = query_check(q, n, false, "mp_queue_qsize");
    if (rc) return rc;
    *n = items(q->s);
    return 0;
}

int mp_queue_is_empty(mp_queue *q, bool *out) {
    if (out) *out = false;
    int rc = query_check(q, out, true, "mp_queue_is_empty");
    if (rc) return rc;
    *out = items(q->s) == 0;
    return 0;
}

int mp_queue_is_full(mp_queue *q, bool *out) {
    if (out) *out = false;
    int rc = query_check(q, out, false, "mp_queue_is_full");
    if (rc) return rc;
    *out = full(q);
    return 0;
}

bool mp_queue_empty(mp_queue *q) { return q && !is_closed(q) && items(q->s) == 0; }

bool mp_queue_full(mp_queue *q) { return q && !is_closed(q) && full(q); }

int mp_queue_shutdown(mp_queue *q, bool immediate) {
    if (!q) return mp__err(MP_EINVAL, "mp_queue_shutdown: queue is NULL");
    if (is_closed(q)) return mp__err(MP_ECLOSED, "mp_queue_shutdown: the queue is closed");
    if (q->kind == MP_SIMPLE_QUEUE)
        return mp__err(MP_ENOTSUP,
                       "mp_queue_shutdown: a SimpleQueue has no shutdown (as in Python)");
    return mp__queue_shutdown(q, immediate);
}

bool mp_queue_is_shutdown(const mp_queue *q) {
    return q && !is_closed(q) && (atomic_load(&q->s->shut) & MP__QSHUT);
}

int mp_queue_close(mp_queue *q) {
    if (!q) return mp__err(MP_EINVAL, "mp_queue_close: queue is NULL");
    atomic_store(&q->closed, true);
    return 0;
}

/* ---- JoinableQueue ---- */

int mp_queue_task_done(mp_queue *q) {
    if (!q) return mp__err(MP_EINVAL, "mp_queue_task_done: queue is NULL");
    if (q->kind != MP_JOINABLE_QUEUE)
        return mp__err(MP_ENOTSUP, "mp_queue_task_done: only a JoinableQueue has task_done");
    if (!mp__queue_task_dec(q))
        return mp__err(MP_ESTATE, "mp_queue_task_done: called more times than items were put");
    return 0;
}

int mp_queue_join(mp_queue *q, double timeout) {
    if (!q) return mp__err(MP_EINVAL, "mp_queue_join: queue is NULL");
    if (q->kind != MP_JOINABLE_QUEUE)
        return mp__err(MP_ENOTSUP, "mp_queue_join: only a JoinableQueue has join");
    mp__futex *f = &q->s->unfinished;
    double deadline = mp__deadline(timeout);
    for (;;) {
        uint32_t v = atomic_load(&f->val);
        if (v == 0) return 0;
        double left = mp__left(deadline);
        if (left == 0)
            return mp__err(MP_ETIMEDOUT, "mp_queue_join: %u tasks still not done after %.3f s", v,
                           timeout);
        mp__os_futex_wait(f, v, left);
    }
}

/* ---- passing a queue to a child: the block and the spill channel ---- */

static size_t queue_handle_count(const void *obj) {
    (void)obj;
    return 2 + mp__os_qspill_handle_count();
}

static int queue_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    const mp_queue *q = obj;
    mp__block_reduce(q->blk, b, handles, nh);
    handles[(*nh)++] = q->arena_h;
    mp__os_qspill_reduce(q->spill, handles, nh);
    return 0;
}

static int queue_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    if (nh < queue_handle_count(NULL))
        return mp__err(MP_EPROTO, "queue: %zu handles, expected %zu", nh, queue_handle_count(NULL));
    mp__block *b;
    bool took;
    int rc = mp__block_rebuild(r, MP__K_QUEUE, handles, nh, &b, &took);
    if (rc) return rc;
    mp__qshared *s = b->base;
    uint64_t ring = s->ring_size;
    if (ring < Q_RING_MIN || ring > Q_RING_MAX || (ring & (ring - 1)) ||
        s->ring_off != ring_offset() || s->ring_off + ring > b->size || s->spill_min != ring / 4 ||
        s->arena_size < ring || (s->arena_size & (s->arena_size - 1)) ||
        (s->qkind != MP_QUEUE && s->qkind != MP_SIMPLE_QUEUE && s->qkind != MP_JOINABLE_QUEUE)) {
        mp__block_unrebuild(b, took);
        return mp__err(MP_EPROTO, "queue: the shared block is malformed");
    }
    mp_queue *q = queue_wrap(b, NULL, handles[1]);
    if (!q) {
        mp__block_unrebuild(b, took);
        return mp__err(MP_ENOMEM, "queue: out of memory");
    }
    rc = mp__os_qspill_rebuild(s->creator_pid, &s->get.spill_free, handles + 2, &q->spill);
    if (rc) {
        mp__free(q);
        mp__block_unrebuild(b, took);
        return rc;
    }
    if (!took) mp__os_handle_close(handles[0]);
    *out = q;
    return 0;
}

static void queue_objfree(void *obj) { mp_queue_free(obj); }

const mp__objtype mp__objtype_queue = {
    .name = "queue",
    .handle_count = queue_handle_count,
    .reduce = queue_reduce,
    .rebuild = queue_rebuild,
    .free = queue_objfree,
};

int mp_args_add_queue(mp_args *a, mp_queue *q) {
    return mp__sync_args_add(a, &mp__objtype_queue, q, "mp_args_add_queue");
}

mp_queue *mp_args_queue(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__objtype_queue);
}
