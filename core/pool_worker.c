/* A pool's worker process: reads its inbox, runs chunks, answers on the results queue
 * (core/pool_shape.h says how the messages look). It trusts its parent, which alone
 * writes its inbox, but not its task functions: an error in one is that task's error,
 * and a crash is the parent's to notice. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pool_shape.h"
#include "value_internal.h"

/* The task functions this worker knows, by id; NULL with an error for one it could
 * not resolve (its tasks fail with that error). */
typedef struct fn_entry {
    void *fn;
    int rc;
    char *why;
} fn_entry;

typedef struct worker {
    mp_queue *inbox, *results;
    _Atomic int64_t *slot; /* MP__POOL_SLOT words */
    uint32_t index, gen;
    mp_args *initargs;
    fn_entry *fns;
    size_t nfns;
    unsigned char *buf; /* the message being handled */
    size_t cap;
    mp__buf out; /* the answer being built */
} worker;

int mp_task_error(int code, const char *fmt, ...) {
    if (!fmt) return mp__err(code, NULL); /* the code's own text */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mp__err(code, "%s", msg);
}

static int answer(worker *w, uint8_t type, int rc, uint64_t seq, uint64_t ns, const void *p,
                  size_t n) {
    mp__pool_res r = {
        .type = type, .worker = w->index, .gen = w->gen, .rc = rc, .seq = seq, .ns = ns};
    w->out.len = 0;
    mp__buf_put(&w->out, &r, sizeof r);
    mp__buf_put(&w->out, p, n);
    if (w->out.err) return w->out.err;
    return mp_queue_put_bytes(w->results, w->out.data, w->out.len, MP_FOREVER);
}

/* An error answer: rc with the detail recorded for it (or the code's own text). */
static int answer_error(worker *w, uint8_t type, int rc, uint64_t seq) {
    const char *m = mp_last_error_message();
    if (!m[0]) m = mp_strerror(rc);
    return answer(w, type, rc, seq, 0, m, strlen(m));
}

/* Waits for the next message into w->buf: its length, or a negative error. */
static int64_t next_message(worker *w) {
    for (;;) {
        size_t len = 0;
        int rc = mp_queue_get_bytes_into(w->inbox, w->buf, w->cap, &len, MP_FOREVER);
        if (rc == 0) return (int64_t)len;
        if (rc != MP_ETOOBIG) return rc;
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < len) cap *= 2;
        unsigned char *b = mp__realloc(w->buf, cap);
        if (!b) return mp__err(MP_ENOMEM, "pool worker: out of memory for a %zu-byte task", len);
        w->buf = b;
        w->cap = cap;
    }
}

static void define_fn(worker *w, const mp__pool_msg *m, const unsigned char *p, size_t n) {
    if (m->fn >= w->nfns) {
        size_t k = m->fn + 8;
        fn_entry *f = mp__realloc(w->fns, k * sizeof *f);
        if (!f) return; /* its tasks will say the function is unknown */
        memset(f + w->nfns, 0, (k - w->nfns) * sizeof *f);
        w->fns = f;
        w->nfns = k;
    }
    fn_entry *e = &w->fns[m->fn];
    mp__free(e->why);
    *e = (fn_entry){0};
    mp__rd r = {p, n, 0};
    mp__fnref ref = {0};
    ref.module = mp__rd_str(&r);
    ref.offset = mp__rd_u64(&r);
    ref.build = mp__rd_str(&r);
    e->rc = r.err ? mp__err(MP_EPROTO, "pool worker: malformed function reference")
                  : mp__os_ref_to_fn(&ref, &e->fn);
    if (e->rc) e->why = mp__strdup(mp_last_error_message());
    mp__fnref_clear(&ref);
}

static const fn_entry *fn_of(worker *w, uint32_t id) {
    static const fn_entry unknown = {NULL, MP_EPROTO, NULL};
    return id < w->nfns && (w->fns[id].fn || w->fns[id].rc) ? &w->fns[id] : &unknown;
}

/* One value chunk: the payload is a pickled list; the answer is the pickled list of
 * the results, each encoded as soon as it is made. */
static int run_values(worker *w, const mp__pool_msg *m, const fn_entry *f, const unsigned char *p,
                      size_t n, uint64_t *ns) {
    mp_value_limits lim = {.max_items = SIZE_MAX / 4, .max_size = SIZE_MAX / 4};
    mp_value *items = NULL;
    int rc = mp_value_loads(p, n, &lim, &items);
    if (rc) return mp__err_wrap(rc, "pool worker: a task's items do not decode");
    if (mp_value_get_type(items) != MP_VALUE_LIST || mp_value_len(items) != m->n) {
        mp_value_free(items);
        return mp__err(MP_EPROTO, "pool worker: a task of %u items arrived as something else",
                       m->n);
    }
    mp_task_fn fn = (mp_task_fn)f->fn;
    mp__buf *o = &w->out;
    mp__pool_list_begin(o);
    double t0 = mp__os_monotonic();
    for (size_t i = 0; i < m->n && !rc; i++) {
        mp_value *res = NULL;
        mp__err_clear();
        rc = fn(mp_value_item(items, i), &res);
        if (rc > 0)
            rc = mp__err(MP_EINVAL, "pool: a task function returned %d (0 or a negative code)", rc);
        if (!rc) {
            static const mp_value none = {.type = MP_VALUE_NONE};
            rc = mp__pickle_dump_item(res ? res : &none, o);
            if (rc) rc = mp__err_wrap(rc, "pool: a task's result cannot be encoded");
        }
        mp_value_free(res);
    }
    *ns = (uint64_t)((mp__os_monotonic() - t0) * 1e9);
    mp__pool_list_end(o);
    mp_value_free(items);
    if (!rc && o->err) rc = mp__err(MP_ENOMEM, "pool worker: out of memory for the results");
    return rc;
}

/* A scalar as a value that lives on the stack (no node to allocate or free). */
static mp_value scalar(int kind, const unsigned char *p) {
    mp_value v;
    memset(&v, 0, sizeof v);
    if (kind == MP__PK_I64) {
        v.type = MP_VALUE_INT;
        memcpy(&v.u.i, p, 8);
    } else {
        v.type = MP_VALUE_FLOAT;
        memcpy(&v.u.f, p, 8);
    }
    return v;
}

/* One chunk of raw ints or floats. The results are kept raw too while every one is of
 * the kind of the first; the first that is not turns them all into a pickled list. */
static int run_raw(worker *w, const mp__pool_msg *m, const fn_entry *f, const unsigned char *p,
                   size_t n, uint64_t *ns, uint8_t *enc) {
    if (n != (size_t)m->n * 8)
        return mp__err(MP_EPROTO, "pool worker: %zu bytes for %u numbers", n, m->n);
    mp_task_fn fn = (mp_task_fn)f->fn;
    mp__buf *o = &w->out;
    size_t start = o->len; /* the results begin here, behind the answer's header */
    int mode = 0, rc = 0;
    double t0 = mp__os_monotonic();
    /* One argument node for the whole chunk: only its number changes (building a
     * whole struct per item costs more than the item's work). Room for every raw
     * result up front: each is then one 8-byte store. */
    mp_value arg;
    memset(&arg, 0, sizeof arg);
    if (m->n && !mp__buf_reserve(o, 8 * (size_t)m->n))
        return mp__err(MP_ENOMEM, "pool worker: out of memory for %u results", m->n);
    for (size_t i = 0; i < m->n && !rc; i++) {
        mp_value *res = NULL;
        if (m->kind == MP__PK_I64) {
            arg.type = MP_VALUE_INT;
            memcpy(&arg.u.i, p + 8 * i, 8);
        } else {
            arg.type = MP_VALUE_FLOAT;
            memcpy(&arg.u.f, p + 8 * i, 8);
        }
        mp__err_clear();
        rc = fn(&arg, &res);
        if (rc > 0)
            rc = mp__err(MP_EINVAL, "pool: a task function returned %d (0 or a negative code)", rc);
        if (rc) {
            mp_value_free(res);
            break;
        }
        int t = res ? res->type : MP_VALUE_NONE;
        int want = t == MP_VALUE_INT ? MP__PK_I64 : t == MP_VALUE_FLOAT ? MP__PK_F64 : MP__PK_VALUE;
        if (!mode) {
            mode = want;
            if (mode == MP__PK_VALUE) mp__pool_list_begin(o);
        } else if (mode != MP__PK_VALUE && want != mode) {
            /* The raw results so far become the start of a pickled list. */
            size_t k = (o->len - start) / 8;
            unsigned char *raw = mp__malloc(k * 8 + 1);
            if (!raw) {
                mp_value_free(res);
                rc = mp__err(MP_ENOMEM, "pool worker: out of memory");
                break;
            }
            memcpy(raw, o->data + start, k * 8);
            o->len = start;
            mp__pool_list_begin(o);
            for (size_t j = 0; j < k; j++) {
                mp_value prev = scalar(mode, raw + 8 * j);
                mp__pickle_dump_item(&prev, o);
            }
            mp__free(raw);
            mode = MP__PK_VALUE;
        }
        if (mode == MP__PK_VALUE) {
            static const mp_value none = {.type = MP_VALUE_NONE};
            rc = mp__pickle_dump_item(res ? res : &none, o);
            if (rc) rc = mp__err_wrap(rc, "pool: a task's result cannot be encoded");
        } else {
            memcpy(o->data + o->len, &res->u, 8); /* int64 or double: 8 bytes at u */
            o->len += 8;
        }
        mp_value_free(res);
    }
    *ns = (uint64_t)((mp__os_monotonic() - t0) * 1e9);
    if (!mode) mode = MP__PK_I64; /* no item: an empty array */
    if (mode == MP__PK_VALUE) mp__pool_list_end(o);
    if (!rc && o->err) rc = mp__err(MP_ENOMEM, "pool worker: out of memory for the results");
    *enc = (uint8_t)mode;
    return rc;
}

static int run_records(worker *w, const mp__pool_msg *m, const fn_entry *f, const unsigned char *p,
                       size_t n, uint64_t *ns) {
    if ((uint64_t)m->n * m->in_size != n)
        return mp__err(MP_EPROTO, "pool worker: %zu bytes for %u records of %u", n, m->n,
                       m->in_size);
    mp__buf *o = &w->out;
    size_t need = (size_t)m->n * m->out_size;
    unsigned char *out = mp__buf_reserve(o, need);
    if (!out) return mp__err(MP_ENOMEM, "pool worker: out of memory for %u records", m->n);
    mp_record_fn fn = (mp_record_fn)f->fn;
    int rc = 0;
    double t0 = mp__os_monotonic();
    for (size_t i = 0; i < m->n && !rc; i++) {
        rc = fn(p + i * m->in_size, m->out_size ? out + i * m->out_size : NULL);
        if (rc > 0)
            rc = mp__err(MP_EINVAL, "pool: a record function returned %d (0 or a negative code)",
                         rc);
    }
    *ns = (uint64_t)((mp__os_monotonic() - t0) * 1e9);
    o->len += need;
    return rc;
}

/* Whether the chunk was revoked (after this worker said it runs it). */
static bool revoked(worker *w, uint64_t seq) {
    atomic_store(&w->slot[MP__POOL_RUN_WORD], (int64_t)seq);
    return atomic_load(&w->slot[MP__POOL_REVOKE_A]) == (int64_t)seq ||
           atomic_load(&w->slot[MP__POOL_REVOKE_B]) == (int64_t)seq;
}

static int run_task(worker *w, const mp__pool_msg *m, const unsigned char *p, size_t n) {
    const fn_entry *f = fn_of(w, m->fn);
    uint64_t ns = 0;
    uint8_t enc = MP__PK_VALUE;
    int rc;
    /* The answer's header goes first; the results are appended behind it. */
    w->out.len = 0;
    mp__pool_res h = {.type = MP__PR_DONE, .worker = w->index, .gen = w->gen, .seq = m->seq};
    mp__buf_put(&w->out, &h, sizeof h);
    if (!f->fn) {
        rc = mp__err(f->rc ? f->rc : MP_EPROTO, "%s",
                     f->why ? f->why : "pool worker: unknown task function");
    } else if (m->kind == MP__PK_VALUE) {
        rc = run_values(w, m, f, p, n, &ns);
    } else if (m->kind == MP__PK_RECORD) {
        rc = run_records(w, m, f, p, n, &ns);
        enc = MP__PK_RECORD;
    } else if (m->kind == MP__PK_I64 || m->kind == MP__PK_F64) {
        rc = run_raw(w, m, f, p, n, &ns, &enc);
    } else {
        rc = mp__err(MP_EPROTO, "pool worker: unknown task kind %u", m->kind);
    }
    if (rc) return answer_error(w, MP__PR_DONE, rc, m->seq);
    if (w->out.err) return mp__err(MP_ENOMEM, "pool worker: out of memory");
    mp__pool_res *hp = (mp__pool_res *)w->out.data;
    hp->ns = ns;
    hp->enc = enc;
    return mp_queue_put_bytes(w->results, w->out.data, w->out.len, MP_FOREVER);
}

int mp__pool_worker(mp_args *a) {
    worker w = {
        .inbox = mp_args_queue(a, MP__PW_INBOX),
        .results = mp_args_queue(a, MP__PW_RESULTS),
        .index = (uint32_t)mp_args_int(a, MP__PW_INDEX),
        .gen = (uint32_t)mp_args_int(a, MP__PW_GEN),
    };
    mp_shared_array *slots = mp_args_shared_array(a, MP__PW_SLOTS);
    int64_t maxtasks = mp_args_int(a, MP__PW_MAXTASKS), done = 0;
    if (!w.inbox || !w.results || !slots || mp_shared_array_len(slots) < MP__POOL_SLOT) return 2;
    w.slot = (_Atomic int64_t *)mp_shared_array_get_obj(slots);
    if (mp__args_split(a, MP__PW_NFIXED, &w.initargs) != 0) return 2;
    int code = 0;
    for (;;) {
        int64_t len = next_message(&w);
        if (len < 0) {
            code = 3; /* the inbox broke: the parent is gone */
            break;
        }
        if ((size_t)len < sizeof(mp__pool_msg)) continue;
        mp__pool_msg m;
        memcpy(&m, w.buf, sizeof m);
        const unsigned char *p = w.buf + sizeof m;
        size_t n = (size_t)len - sizeof m;
        if (m.type == MP__PM_FNDEF) {
            define_fn(&w, &m, p, n);
        } else if (m.type == MP__PM_INIT) {
            /* fn 0 is defined before INIT only when there is an initializer */
            const fn_entry *f = w.nfns ? fn_of(&w, 0) : NULL;
            int rc = 0;
            if (!f) {
            } else if (f->fn) {
                mp__err_clear();
                rc = ((int (*)(mp_args *))f->fn)(w.initargs);
            } else if (f->rc) {
                rc = mp__err(f->rc, "%s", f->why ? f->why : "pool worker: unknown initializer");
            }
            if (rc) {
                answer_error(&w, MP__PR_INITFAIL, rc < 0 ? rc : MP_ECHILD, 0);
                code = 1;
                break;
            }
            answer(&w, MP__PR_READY, 0, 0, 0, NULL, 0);
        } else if (m.type == MP__PM_TASK) {
            if (revoked(&w, m.seq)) {
                if (answer(&w, MP__PR_SKIPPED, 0, m.seq, 0, NULL, 0) != 0) {
                    code = 4;
                    break;
                }
                continue;
            }
            if (run_task(&w, &m, p, n) != 0) {
                code = 4; /* the results queue broke */
                break;
            }
            if (maxtasks > 0 && ++done >= maxtasks) {
                answer(&w, MP__PR_RETIRE, 0, 0, 0, NULL, 0);
                break;
            }
        } else if (m.type == MP__PM_QUIT) {
            break;
        }
    }
    for (size_t i = 0; i < w.nfns; i++) mp__free(w.fns[i].why);
    mp__free(w.fns);
    mp__free(w.buf);
    mp__buf_free(&w.out);
    mp_args_free(w.initargs);
    return code;
}
