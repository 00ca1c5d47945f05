/* A pool's calls: jobs, their chunks, async results and imap iterators (the pool, its
 * workers and handler thread are in core/pool.c; core/pool_internal.h has the shape).
 *
 * A job holds its input encoded item by item (values) or points into the caller's
 * array (records); chunks are cut from it as workers have room, so the chunk size can
 * follow what the first chunks measured (chunksize 0). Its results go straight to
 * their place: a map's list, a records call's output array, imap's answers. */
#include <stdio.h>
#include <string.h>

#include "pool_internal.h"
#include "value_internal.h"

#define AUTO_TARGET_NS 1e6  /* adaptive chunks aim at about 1 ms of work... */
#define AUTO_MIN_NS 1e5     /* ...and the tail's pieces at no less than 0.1 ms */
#define CHUNK_MAX 65536     /* items in one chunk, at most */
#define WAIT_SPINS 2000     /* looks at a result before sleeping on it (some µs) */
#define SOURCE_AHEAD 512    /* items read from a source ahead of what was taken... */
#define SOURCE_AHEAD_PER 16 /* ...plus this many per worker */

enum { J_APPLY, J_MAP, J_IMAP, J_IMAP_UNORDERED };

/* A chunk's answer kept for an imap iterator until its items are taken. */
typedef struct answer {
    struct answer *next;
    size_t first, n, taken;
    mp_value *list; /* rc == 0: its items are taken one by one */
    int rc;
    char *msg;
} answer;

struct mp__pool_job {
    mp__pool_job *next;  /* in the pool's jobs list, then its released list */
    mp__pool_job *nnext; /* in the pool's list of jobs to notify */
    mp__pool_job *pnext; /* in the pool's list of progress to report */
    mp_pool *pool;       /* its struct lives as long as the job (a reference) */
    _Atomic int refs;    /* the pool's while it has the job, and the caller's handle */
    int mode, kind;
    uint32_t fn;
    mp_call_opts opts;
    size_t chunking; /* as given: 0 auto, MP_CHUNKSIZE_PYTHON, n */
    double limit;    /* per item, seconds (MP_FOREVER: none) */
    double est_ns;   /* measured time per item (auto) */
    size_t probe;    /* chunk sizes before the first measure: 1, 2, 4... */

    /* input, under the pool's mutex */
    int raw;     /* MP__PK_I64/F64: items are 8-byte numbers, no offsets */
    mp__buf in;  /* values: items encoded one after the other */
    size_t *off; /* item i - base starts at off[i - base]; one more at the end */
    size_t noff, offcap;
    size_t base;     /* the item off[0] belongs to */
    size_t cursor;   /* the next item to cut */
    size_t total;    /* items known so far */
    bool input_done; /* no more items will come */
    mp_source_fn src;
    void *src_ctx;
    bool feeding;             /* the handler is reading the source */
    const unsigned char *rin; /* records */
    unsigned char *rout;
    size_t in_size, out_size;
    size_t chunks_out; /* cut and not answered */
    bool started;      /* a chunk was put in an inbox */
    bool finished;     /* the outcome is known (and will be notified) */
    bool stopped;      /* no more chunks are cut (canceled, terminated, freed...) */
    bool progress_due; /* in the pool's progress list */

    /* outcome, under the job's mutex */
    mp__mutex *mu;
    mp__cond *cv;
    bool ready;              /* finished and notified (callbacks ran) */
    _Atomic bool ready_hint; /* ready, read without mu by a waiter that spins first */
    int rc;
    char *msg;
    size_t done, failed; /* items answered, of them failed */
    mp_value **items;    /* map: results by item index (placed by the handler) */
    size_t nitems;
    void *slabs;      /* map: the blocks its raw results' nodes live in */
    mp_value *rnodes; /* a list's map: the nodes of all its raw results, in one block */
    mp_value *value;  /* apply: the result; map: the list (made when ready) */
    answer *answers;  /* imap: answered chunks not fully taken */
    size_t next_item; /* imap: the next item to yield (ordered) */
    size_t taken;     /* imap: items taken by the caller */
    mp_connection *wait_r, *wait_w;
};

struct mp_async_result {
    mp__pool_job *j;
};

struct mp_imap {
    mp__pool_job *j;
};

/* ---- jobs ---------------------------------------------------------------------------- */

static void answer_free(answer *a) {
    if (a->list) {
        /* Items taken by the caller left holes. */
        for (size_t i = 0; i < a->list->u.seq.n; i++) mp_value_free(a->list->u.seq.items[i]);
        a->list->u.seq.n = 0;
    }
    mp_value_free(a->list);
    mp__free(a->msg);
    mp__free(a);
}

static void job_unref(mp__pool_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    mp__pool_unref(j->pool);
    mp__buf_free(&j->in);
    mp__free(j->off);
    for (size_t i = 0; j->items && i < j->nitems; i++) mp_value_free(j->items[i]);
    mp__free(j->items);
    mp__value_slab_free(j->slabs);
    mp_value_free(j->value);
    while (j->answers) {
        answer *a = j->answers;
        j->answers = a->next;
        answer_free(a);
    }
    mp__free(j->msg);
    mp_connection_free(j->wait_r);
    mp_connection_free(j->wait_w);
    mp__os_cond_free(j->cv);
    mp__os_mutex_free(j->mu);
    mp__free(j);
}

static mp__pool_job *job_new(mp_pool *p, int mode, int kind, const mp_call_opts *opts) {
    mp__pool_job *j = mp__calloc(1, sizeof *j);
    if (!j) return NULL;
    if (mp__os_mutex_new(&j->mu) || mp__os_cond_new(&j->cv)) {
        mp__os_mutex_free(j->mu);
        mp__free(j);
        return NULL;
    }
    atomic_init(&j->refs, 1);
    j->pool = p;
    mp__pool_ref(p);
    j->mode = mode;
    j->kind = kind;
    if (opts) j->opts = *opts;
    j->chunking = j->opts.chunksize;
    double t = j->opts.timeout > 0 ? j->opts.timeout : p->task_timeout;
    j->limit = mp__forever(t) ? MP_FOREVER : t;
    j->probe = 1;
    return j;
}

/* Appends one encoded item (values). */
static int job_add_item(mp__pool_job *j, const mp_value *v) {
    if (j->noff + 1 >= j->offcap) {
        size_t cap = j->offcap ? j->offcap * 2 : 64;
        size_t *o = mp__realloc(j->off, cap * sizeof *o);
        if (!o) return mp__err(MP_ENOMEM, "pool: out of memory");
        j->off = o;
        j->offcap = cap;
    }
    if (j->noff == 0) j->off[j->noff++] = j->in.len;
    int rc = mp__pickle_dump_item(v, &j->in);
    if (rc) {
        j->in.len = j->off[j->noff - 1];
        j->in.err = 0;
        return rc == MP_ENOMEM ? rc : mp__err_wrap(rc, "pool: item %zu cannot be sent", j->total);
    }
    j->off[j->noff++] = j->in.len;
    j->total++;
    return 0;
}

/* Nothing more of the job is cut (what is out finishes and is dropped). */
static void job_stop_locked(mp__pool_job *j) {
    j->stopped = true;
    j->cursor = j->total;
}

/* Decides the outcome (once): the job is notified by the handler thread without the
 * pool's lock, even if chunks of it are still out. A task's error decides a map but
 * does not stop it: its other tasks still run (as in Python), so their progress, and
 * the workers they might crash, are seen. Under the pool's mutex. */
static void job_finish_locked(mp_pool *p, mp__pool_job *j, int rc, const char *msg) {
    if (j->finished) return;
    j->finished = true;
    /* A records job reads and writes the caller's arrays, which are the caller's again
     * once the job is decided: nothing more of it is cut. */
    if (j->kind == MP__PK_RECORD) job_stop_locked(j);
    mp__os_mutex_lock(j->mu);
    if (rc && !j->rc) {
        j->rc = rc;
        j->msg = mp__strdup(msg && msg[0] ? msg : mp_strerror(rc));
    }
    mp__os_mutex_unlock(j->mu);
    atomic_fetch_add(&j->refs, 1); /* the notify list's */
    j->nnext = p->notify;
    p->notify = j;
}

/* The pool lets go of a finished job once none of its chunks is out; its reference
 * is dropped by the handler, without the pool's lock. Under mu. */
static void job_release_locked(mp_pool *p, mp__pool_job *j) {
    if (!j->finished || j->chunks_out || (!j->stopped && j->cursor < j->total) ||
        (!j->stopped && j->src && !j->input_done))
        return;
    for (mp__pool_job **pp = &p->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            j->next = p->released;
            p->released = j;
            return;
        }
}

/* Builds a map's list from the results placed so far (all of them, when it succeeded). */
static void job_make_list(mp__pool_job *j) {
    if (j->value || j->rc) return;
    mp_value *l = mp__value_alloc(MP_VALUE_LIST);
    if (!l) {
        j->rc = MP_ENOMEM;
        j->msg = mp__strdup("pool: out of memory for the results");
        return;
    }
    l->u.seq.items = j->items; /* all total of them placed: the rest is room */
    l->u.seq.n = j->total;
    l->u.seq.cap = j->nitems;
    l->u.seq.slabs = j->slabs;
    j->slabs = NULL;
    j->items = NULL;
    j->nitems = 0;
    j->value = l;
}

/* Tells the world: callbacks first (as Python's), then waiters. Handler thread, no
 * lock held. */
static void job_notify(mp__pool_job *j) {
    mp__os_mutex_lock(j->mu);
    if (j->ready) {
        mp__os_mutex_unlock(j->mu);
        return;
    }
    if (j->mode == J_MAP && j->kind == MP__PK_VALUE) job_make_list(j);
    if (j->mode == J_APPLY && !j->rc && !j->value && j->nitems >= 1) {
        j->value = j->items[0];
        j->items[0] = NULL;
        if (mp_value_get_type(j->value) == MP_VALUE_NONE) { /* None is NULL here */
            mp_value_free(j->value);
            j->value = NULL;
        }
    }
    int rc = j->rc;
    mp__os_mutex_unlock(j->mu);
    if (rc && j->opts.error_callback) j->opts.error_callback(j->opts.ctx, rc, j->msg);
    if (!rc && j->opts.callback && (j->mode == J_APPLY || j->mode == J_MAP))
        j->opts.callback(j->opts.ctx, j->value);
    mp__os_mutex_lock(j->mu);
    j->ready = true;
    atomic_store_explicit(&j->ready_hint, true, memory_order_release);
    if (j->wait_w) {
        mp__err_mute();
        mp_connection_send_bytes(j->wait_w, "r", 1);
        mp__err_unmute();
    }
    mp__os_mutex_unlock(j->mu);
    /* After the unlock, so a woken waiter does not wake only to wait for mu (the
     * notify list's reference keeps j alive). */
    mp__os_cond_broadcast(j->cv);
}

void mp__pool_run_deferred(mp_pool *p) {
    for (;;) {
        mp__os_mutex_lock(p->mu);
        /* Oldest first: the notify list is pushed at its head. */
        mp__pool_job **pp = &p->notify, *n = NULL, *r = p->released;
        while (*pp && (*pp)->nnext) pp = &(*pp)->nnext;
        if (*pp) {
            n = *pp;
            *pp = NULL;
        }
        if (r) p->released = r->next;
        mp__pool_job *g = p->progress;
        if (g) {
            p->progress = g->pnext;
            g->progress_due = false;
        }
        mp__os_mutex_unlock(p->mu);
        if (!n && !r && !g) return;
        if (g) {
            mp__os_mutex_lock(g->mu);
            size_t done = g->done, failed = g->failed;
            mp__os_mutex_unlock(g->mu);
            mp__os_mutex_lock(p->mu);
            size_t total = g->input_done ? g->total : 0;
            mp__os_mutex_unlock(p->mu);
            g->opts.progress(g->opts.ctx, done, total, failed);
            job_unref(g);
        }
        if (n) {
            job_notify(n);
            job_unref(n); /* the notify list's */
        }
        if (r) job_unref(r); /* the pool's */
    }
}

void mp__pool_fail_all_locked(mp_pool *p, int rc) {
    const char *msg = mp_last_error_message();
    char copy[512];
    snprintf(copy, sizeof copy, "%s", msg);
    for (mp__pool_job *j = p->jobs; j; j = j->next) {
        job_finish_locked(p, j, rc, copy);
        job_stop_locked(j);
    }
    /* Chunks waiting for a worker will never run. */
    while (p->requeued) {
        mp__pool_chunk *c = p->requeued;
        p->requeued = c->next;
        c->job->chunks_out--;
        mp__free(c->msg);
        mp__free(c);
    }
    for (int i = 0; i < p->cap; i++) {
        while (p->w[i].head) {
            mp__pool_chunk *c = p->w[i].head;
            p->w[i].head = c->next;
            c->job->chunks_out--;
            mp__free(c->msg);
            mp__free(c);
        }
        p->w[i].tail = NULL;
        p->w[i].inflight = 0;
    }
    for (mp__pool_job *j = p->jobs, *nx; j; j = nx) {
        nx = j->next;
        job_release_locked(p, j);
    }
}

void mp__pool_break_locked(mp_pool *p, int rc) {
    if (!p->broken) {
        p->broken = rc;
        p->broken_msg = mp__strdup(mp_last_error_message());
    }
    mp__pool_fail_all_locked(p, rc);
}

void mp__pool_detach_jobs_locked(mp_pool *p) {
    /* By now every job is finished (terminate failed the rest); the handler has gone,
     * so whatever it did not get to is done here. */
    mp__os_mutex_unlock(p->mu);
    mp__pool_run_deferred(p);
    mp__os_mutex_lock(p->mu);
    while (p->jobs) { /* finished, with chunks that will never come back */
        mp__pool_job *j = p->jobs;
        p->jobs = j->next;
        mp__os_mutex_unlock(p->mu);
        job_unref(j);
        mp__os_mutex_lock(p->mu);
    }
}

/* ---- chunks ---------------------------------------------------------------------- */

static size_t chunk_size(mp_pool *p, mp__pool_job *j, size_t avail) {
    size_t s;
    size_t workers = (size_t)p->n;
    if (j->chunking == MP_CHUNKSIZE_PYTHON) {
        s = 1;
        if (j->input_done) {
            s = j->total / (4 * workers);
            if (j->total % (4 * workers)) s++;
        }
    } else if (j->chunking) {
        s = j->chunking;
    } else {
        if (j->est_ns <= 0) {
            s = j->probe;
            if (j->probe < CHUNK_MAX) j->probe *= 2;
        } else {
            double want = AUTO_TARGET_NS / j->est_ns;
            s = want < 1 ? 1 : want > CHUNK_MAX ? CHUNK_MAX : (size_t)want;
        }
        /* Guided: the tail comes in smaller pieces, so no worker is left with a long one;
         * but not so small that a round trip costs more than the piece's work. */
        if (j->input_done) {
            size_t cap = (j->total - j->cursor + 2 * workers - 1) / (2 * workers);
            size_t least = j->est_ns > 0 ? (size_t)(AUTO_MIN_NS / j->est_ns) : 1;
            if (cap < least) cap = least;
            if (s > cap) s = cap;
        } else if (j->src) {
            size_t cap = (SOURCE_AHEAD + SOURCE_AHEAD_PER * workers) / (2 * workers * p->window);
            if (s > cap) s = cap;
        }
    }
    if (s < 1) s = 1;
    return s < avail ? s : avail;
}

static mp__pool_chunk *cut(mp_pool *p, mp__pool_job *j) {
    size_t avail = j->total - j->cursor;
    if (!avail) return NULL;
    size_t k = chunk_size(p, j, avail);
    mp__pool_chunk *c = mp__calloc(1, sizeof *c);
    if (!c) return NULL;
    mp__pool_msg m = {.type = MP__PM_TASK,
                      .kind = (uint8_t)j->kind,
                      .fn = j->fn,
                      .n = (uint32_t)k,
                      .in_size = (uint32_t)j->in_size,
                      .out_size = (uint32_t)j->out_size};
    mp__buf b = {0};
    mp__buf_put(&b, &m, sizeof m);
    if (j->kind == MP__PK_RECORD) {
        mp__buf_put(&b, j->rin + j->cursor * j->in_size, k * j->in_size);
    } else if (j->raw) {
        ((mp__pool_msg *)b.data)->kind = (uint8_t)j->raw;
        mp__buf_put(&b, j->in.data + 8 * (j->cursor - j->base), 8 * k);
    } else {
        size_t from = j->off[j->cursor - j->base], to = j->off[j->cursor + k - j->base];
        mp__pool_list_begin(&b);
        mp__buf_put(&b, j->in.data + from, to - from);
        mp__pool_list_end(&b);
    }
    if (b.err) {
        mp__buf_free(&b);
        mp__free(c);
        return NULL;
    }
    c->job = j;
    c->fn = j->fn;
    c->first = j->cursor;
    c->n = k;
    c->msg = b.data;
    c->len = b.len;
    c->limit = mp__forever(j->limit) ? MP_FOREVER : j->limit * (double)k;
    c->expect = j->est_ns > 0 ? j->est_ns * (double)k * 1e-9 : 0;
    j->cursor += k;
    j->chunks_out++;
    j->started = true;
    /* A source's items are dropped once cut: the buffer stays as small as the window. */
    if (j->src && j->cursor - j->base >= 1024 && 2 * (j->cursor - j->base) >= j->noff) {
        size_t shift = j->cursor - j->base, bytes = j->off[shift];
        memmove(j->in.data, j->in.data + bytes, j->in.len - bytes);
        j->in.len -= bytes;
        for (size_t i = shift; i < j->noff; i++) j->off[i - shift] = j->off[i] - bytes;
        j->noff -= shift;
        j->base += shift;
    }
    return c;
}

mp__pool_chunk *mp__pool_next_chunk(mp_pool *p) {
    for (mp__pool_job *j = p->jobs; j; j = j->next) {
        if (j->stopped || j->cursor == j->total) continue;
        mp__pool_chunk *c = cut(p, j);
        if (c) return c;
        mp__err(MP_ENOMEM, "pool: out of memory for a task");
        job_finish_locked(p, j, MP_ENOMEM, NULL);
        job_stop_locked(j);
        job_release_locked(p, j);
        return NULL; /* the list changed: the caller comes back */
    }
    return NULL;
}

void mp__pool_chunk_failed_locked(mp_pool *p, mp__pool_chunk *c, int rc) {
    mp__pool_job *j = c->job;
    const char *msg = mp_last_error_message();
    j->chunks_out--;
    if (j->mode == J_IMAP || j->mode == J_IMAP_UNORDERED) {
        /* Each of its items reports the error; the iteration goes on. */
        answer *a = mp__calloc(1, sizeof *a);
        mp__os_mutex_lock(j->mu);
        if (a) {
            a->first = c->first;
            a->n = c->n;
            a->rc = rc;
            a->msg = mp__strdup(msg);
            answer **pp = &j->answers;
            if (j->mode == J_IMAP)
                while (*pp && (*pp)->first < a->first) pp = &(*pp)->next;
            else
                while (*pp) pp = &(*pp)->next;
            a->next = *pp;
            *pp = a;
        }
        j->done += c->n;
        j->failed += c->n;
        bool all = j->input_done && j->done == j->total;
        mp__os_cond_broadcast(j->cv);
        mp__os_mutex_unlock(j->mu);
        if (!a) {
            job_finish_locked(p, j, MP_ENOMEM, "pool: out of memory");
            job_stop_locked(j);
        }
        if (all) job_finish_locked(p, j, 0, NULL);
    } else {
        mp__os_mutex_lock(j->mu);
        j->done += c->n;
        j->failed += c->n;
        mp__os_mutex_unlock(j->mu);
        job_finish_locked(p, j, rc, msg);
    }
    if (j->opts.progress && !j->progress_due) {
        /* Reported by the handler thread, as every progress is. */
        j->progress_due = true;
        atomic_fetch_add(&j->refs, 1);
        j->pnext = p->progress;
        p->progress = j;
    }
    job_release_locked(p, j);
    mp__free(c->msg);
    mp__free(c);
}

bool mp__pool_chunk_dropped_locked(mp_pool *p, mp__pool_chunk *c) {
    mp__pool_job *j = c->job;
    if (!j->stopped) return false;
    j->chunks_out--;
    job_release_locked(p, j);
    mp__free(c->msg);
    mp__free(c);
    return true;
}

void mp__pool_chunk_taken_locked(mp_pool *p, mp__pool_chunk *c, uint64_t ns) {
    mp__pool_job *j = c->job;
    if (c->n && ns) {
        double x = (double)ns / (double)c->n;
        j->est_ns = j->est_ns > 0 ? 0.5 * j->est_ns + 0.5 * x : x;
        p->fns[j->fn].est_ns = j->est_ns;
    }
}

/* A list of the n raw numbers of an answer. NULL with an error recorded on failure. */
static mp_value *raw_list(const unsigned char *p, size_t n, int enc) {
    mp_value *l = mp__value_alloc(MP_VALUE_LIST);
    if (!l) return NULL;
    l->u.seq.items = mp__malloc((n ? n : 1) * sizeof *l->u.seq.items);
    if (!l->u.seq.items) {
        mp_value_free(l);
        mp__err(MP_ENOMEM, "pool: out of memory for the results");
        return NULL;
    }
    l->u.seq.cap = n ? n : 1;
    for (size_t i = 0; i < n; i++) {
        mp_value *v = mp__value_alloc(enc == MP__PK_I64 ? MP_VALUE_INT : MP_VALUE_FLOAT);
        if (!v) {
            mp_value_free(l);
            return NULL;
        }
        if (enc == MP__PK_I64)
            memcpy(&v->u.i, p + 8 * i, 8);
        else
            memcpy(&v->u.f, p + 8 * i, 8);
        l->u.seq.items[l->u.seq.n++] = v;
    }
    return l;
}

static int grow_items(mp__pool_job *j, size_t need) {
    if (need > j->nitems) {
        size_t cap = j->nitems ? j->nitems : 16;
        while (cap < need) cap *= 2;
        /* A list's length is known (and fixed) from the start: room for all at once. */
        if (!j->src && j->total >= need) cap = j->total;
        mp_value **it = mp__realloc(j->items, cap * sizeof *it);
        if (!it) return mp__err(MP_ENOMEM, "pool: out of memory for the results");
        memset(it + j->nitems, 0, (cap - j->nitems) * sizeof *it);
        j->items = it;
        j->nitems = cap;
    }
    return 0;
}

/* A map's raw results go straight to their place, their nodes in one block. */
static int place_raw(mp__pool_job *j, const unsigned char *p, size_t n, int enc, size_t first) {
    mp_value *nodes;
    int rc = grow_items(j, first + n);
    if (rc) return rc;
    if (!j->src) {
        /* A list's length is known: one block for all, the same size at each call, so
         * the one the last call's results gave back is reused whole. */
        if (!j->rnodes) {
            void *slab = mp__value_slab_new(j->total, &j->rnodes);
            if (!slab) return MP_ENOMEM;
            mp__value_slab_chain(&j->slabs, slab);
        }
        nodes = j->rnodes + first;
    } else {
        void *slab = mp__value_slab_new(n, &nodes);
        if (!slab) return MP_ENOMEM;
        mp__value_slab_chain(&j->slabs, slab);
    }
    for (size_t i = 0; i < n; i++) {
        mp_value *v = &nodes[i];
        v->flags = MP__VF_SLAB;
        v->height = 0;
        v->next = NULL;
        if (enc == MP__PK_I64) {
            v->type = MP_VALUE_INT;
            memcpy(&v->u.i, p + 8 * i, 8);
        } else {
            v->type = MP_VALUE_FLOAT;
            memcpy(&v->u.f, p + 8 * i, 8);
        }
        j->items[first + i] = v;
    }
    return 0;
}

/* Moves the items of a decoded list into the job's results from index first on. */
static int place_items(mp__pool_job *j, mp_value *list, size_t first) {
    size_t n = list->u.seq.n;
    int rc = grow_items(j, first + n);
    if (rc) return rc;
    memcpy(j->items + first, list->u.seq.items, n * sizeof *list->u.seq.items);
    list->u.seq.n = 0;
    return 0;
}

void mp__pool_chunk_answered(mp_pool *p, mp__pool_chunk *c, int rc, int enc,
                             const unsigned char *payload, size_t n) {
    mp__pool_job *j = c->job;
    char msg[512] = "";
    mp_value *list = NULL;
    if (rc) {
        snprintf(msg, sizeof msg, "%.*s", (int)(n < sizeof msg ? n : sizeof msg - 1),
                 (const char *)payload);
    } else if (j->kind == MP__PK_RECORD) {
        if (n != c->n * j->out_size) {
            rc = MP_EPROTO;
            snprintf(msg, sizeof msg, "pool: a worker answered %zu bytes for %zu records", n, c->n);
        } else if (n && j->rout) {
            /* The output is the caller's: once the job is finished (an earlier chunk
             * failed, a terminate) the caller may have it back, so a late answer is
             * dropped. Finishing takes mu, so the copy is done under it. */
            mp__os_mutex_lock(p->mu);
            if (!j->finished) memcpy(j->rout + c->first * j->out_size, payload, n);
            mp__os_mutex_unlock(p->mu);
        }
    } else if (enc == MP__PK_I64 || enc == MP__PK_F64) {
        if (n != 8 * c->n) {
            rc = MP_EPROTO;
            snprintf(msg, sizeof msg, "pool: a worker answered %zu bytes for %zu numbers", n, c->n);
        } else if (j->mode == J_IMAP || j->mode == J_IMAP_UNORDERED) {
            /* imap hands its items out one by one: nodes of their own */
            if (!(list = raw_list(payload, c->n, enc))) rc = MP_ENOMEM;
        } else {
            rc = place_raw(j, payload, c->n, enc, c->first); /* no one reads them yet */
        }
    } else {
        mp_value_limits lim = {.max_items = SIZE_MAX / 4, .max_size = SIZE_MAX / 4};
        rc = mp_value_loads(payload, n, &lim, &list);
        if (!rc && (list->type != MP_VALUE_LIST || list->u.seq.n != c->n)) rc = MP_EPROTO;
        if (rc) snprintf(msg, sizeof msg, "pool: the results of a task do not decode");
    }
    bool imap = j->mode == J_IMAP || j->mode == J_IMAP_UNORDERED;
    answer *a = NULL;
    if (!rc && !imap && list) rc = place_items(j, list, c->first); /* no one reads them yet */
    if (rc && !msg[0]) snprintf(msg, sizeof msg, "%s", mp_last_error_message());
    if (imap && (a = mp__calloc(1, sizeof *a))) {
        a->first = c->first;
        a->n = c->n;
        a->rc = rc;
        a->msg = rc ? mp__strdup(msg) : NULL;
        a->list = list;
        list = NULL;
    }
    mp_value_free(list);
    mp__os_mutex_lock(j->mu);
    if (a) {
        answer **pp = &j->answers;
        if (j->mode == J_IMAP)
            while (*pp && (*pp)->first < a->first) pp = &(*pp)->next;
        else
            while (*pp) pp = &(*pp)->next;
        a->next = *pp;
        *pp = a;
    }
    j->done += c->n;
    if (rc) j->failed += c->n;
    size_t done = j->done, failed = j->failed;
    mp__os_cond_broadcast(j->cv);
    mp__os_mutex_unlock(j->mu);

    mp__os_mutex_lock(p->mu);
    j->chunks_out--;
    bool total_known = j->input_done;
    size_t total = j->total;
    if (rc && (!imap || !a))
        job_finish_locked(p, j, rc, msg);
    else if (total_known && done == total)
        job_finish_locked(p, j, 0, NULL);
    bool finished = j->finished;
    job_release_locked(p, j);
    mp__os_mutex_unlock(p->mu);
    if (j->opts.progress) j->opts.progress(j->opts.ctx, done, total_known ? total : 0, failed);
    (void)finished;
    mp__free(c->msg);
    mp__free(c);
}

/* ---- sources ----------------------------------------------------------------------- */

/* How many items a source job may read now. Under the pool's mu (done and taken are
 * the job's, under its own: the pool's lock comes first, as in job_finish_locked). */
static size_t source_room(mp_pool *p, mp__pool_job *j) {
    size_t ahead = SOURCE_AHEAD + SOURCE_AHEAD_PER * (size_t)p->n;
    mp__os_mutex_lock(j->mu);
    size_t gone = j->mode == J_MAP ? j->done : j->taken;
    mp__os_mutex_unlock(j->mu);
    size_t used = j->total - gone;
    return used < ahead ? ahead - used : 0;
}

void mp__pool_feed_sources(mp_pool *p) {
    for (;;) {
        mp__os_mutex_lock(p->mu);
        mp__pool_job *j = p->jobs;
        size_t room = 0;
        for (; j; j = j->next)
            if (j->src && !j->input_done && !j->stopped && !j->feeding &&
                (room = source_room(p, j)))
                break;
        if (j) {
            j->feeding = true;
            atomic_fetch_add(&j->refs, 1);
        }
        mp__os_mutex_unlock(p->mu);
        if (!j) return;
        /* Read and encode without the pool's lock: the source is the caller's code. */
        mp__pool_job tmp = {0};
        int rc = 0, got = 1;
        size_t k = 0;
        for (; k < room && got == 1 && !rc; k++) {
            mp_value *v = NULL;
            mp__err_clear();
            got = j->src(j->src_ctx, &v);
            if (got < 0) {
                rc = got;
                if (!mp_last_error_message()[0])
                    mp__err(rc, "pool: the source failed: %s", mp_strerror(rc));
            } else if (got == 1) {
                rc = job_add_item(&tmp, v);
            }
            mp_value_free(v);
        }
        mp__os_mutex_lock(p->mu);
        j->feeding = false;
        if (!rc && tmp.total) {
            /* Append the batch: its bytes, and its offsets shifted to where they land. */
            size_t at = j->in.len;
            mp__buf_put(&j->in, tmp.in.data, tmp.in.len);
            size_t need = j->noff + tmp.total + 1;
            if (need > j->offcap) {
                size_t *o = mp__realloc(j->off, need * 2 * sizeof *o);
                if (o) {
                    j->off = o;
                    j->offcap = need * 2;
                }
            }
            if (j->in.err || need > j->offcap) {
                rc = mp__err(MP_ENOMEM, "pool: out of memory for the source's items");
            } else {
                if (j->noff == 0) j->off[j->noff++] = at;
                for (size_t i = 1; i <= tmp.total; i++) j->off[j->noff++] = at + tmp.off[i];
                j->total += tmp.total;
            }
        }
        if (rc) {
            job_finish_locked(p, j, rc, mp_last_error_message());
            job_stop_locked(j); /* a source that failed is read no more */
        } else if (got == 0) {
            j->input_done = true;
        }
        mp__os_mutex_lock(j->mu);
        bool all = j->input_done && j->done == j->total;
        mp__os_mutex_unlock(j->mu);
        if (all) job_finish_locked(p, j, 0, NULL);
        job_release_locked(p, j);
        mp__pool_dispatch(p);
        mp__os_mutex_unlock(p->mu);
        mp__buf_free(&tmp.in);
        mp__free(tmp.off);
        mp__pool_run_deferred(p);
        job_unref(j);
    }
}

/* ---- submitting --------------------------------------------------------------------- */

/* Puts job j (its input ready) in the pool. On failure j is the caller's to drop. */
static int submit(mp_pool *p, mp__pool_job *j, void *fn, const char *who) {
    mp__os_mutex_lock(p->mu);
    int rc = 0;
    if (p->state != MP__POOL_RUN)
        rc = mp__err(MP_ESTATE, "%s: the pool is %s", who,
                     p->state == MP__POOL_CLOSE ? "closed" : "terminated");
    else if (p->broken)
        rc = mp__err(p->broken, "%s: %s", who,
                     p->broken_msg ? p->broken_msg : mp_strerror(p->broken));
    else
        rc = mp__pool_fn_id(p, fn, &j->fn);
    if (!rc && !j->chunking) j->est_ns = p->fns[j->fn].est_ns; /* a known function: no probing */
    if (!rc) {
        atomic_fetch_add(&j->refs, 1); /* the pool's */
        mp__pool_job **pp = &p->jobs;
        while (*pp) pp = &(*pp)->next;
        *pp = j;
        if (j->input_done && j->total == 0) job_finish_locked(p, j, 0, NULL);
        job_release_locked(p, j);
        mp__pool_dispatch(p);
    }
    bool wake = !rc && (j->src || j->finished);
    mp__os_mutex_unlock(p->mu);
    if (wake) mp__pool_wake(p);
    return rc;
}

static int values_job(mp_pool *p, int mode, void *fn, const mp_value *items, bool apply,
                      const mp_call_opts *opts, const char *who, mp__pool_job **out) {
    *out = NULL;
    if (!p) return mp__err(MP_EINVAL, "%s: pool is NULL", who);
    if (!fn) return mp__err(MP_EINVAL, "%s: the task function is NULL", who);
    mp_value_type t = mp_value_get_type(items);
    if (apply ? (items && t != MP_VALUE_TUPLE && t != MP_VALUE_LIST)
              : (t != MP_VALUE_TUPLE && t != MP_VALUE_LIST))
        return mp__err(MP_EINVAL, "%s: %s must be a list or a tuple", who,
                       apply ? "args" : "items");
    mp__pool_job *j = job_new(p, mode, MP__PK_VALUE, opts);
    if (!j) return mp__err(MP_ENOMEM, "%s: out of memory", who);
    int rc = 0;
    if (apply) {
        static const mp_value empty = {.type = MP_VALUE_TUPLE};
        rc = job_add_item(j, items ? items : &empty);
    } else {
        size_t n = items->u.seq.n;
        mp_value *const *it = items->u.seq.items;
        /* All ints, or all floats: raw 8-byte numbers (nothing to pickle), copied in the
         * pass that checks them (the nodes are read once). */
        int t = n ? it[0]->type : -1;
        bool same = t == MP_VALUE_INT || t == MP_VALUE_FLOAT;
        unsigned char *d = same ? mp__buf_reserve(&j->in, 8 * n) : NULL;
        if (same && !d) rc = mp__err(MP_ENOMEM, "%s: out of memory for %zu items", who, n);
        for (size_t i = 0; i < n && same && !rc; i++) {
            const mp_value *v = it[i];
            same = v->type == t;
            memcpy(d + 8 * i, &v->u, 8); /* int64 and double: both 8 bytes at u */
        }
        if (same && !rc) {
            j->raw = t == MP_VALUE_INT ? MP__PK_I64 : MP__PK_F64;
            j->in.len = 8 * n;
            j->total = n;
        }
        for (size_t i = 0; i < n && !rc && !same; i++) rc = job_add_item(j, it[i]);
    }
    j->input_done = true;
    if (!rc) rc = submit(p, j, fn, who);
    if (rc) {
        job_unref(j);
        return rc;
    }
    *out = j;
    return 0;
}

static int source_job(mp_pool *p, int mode, mp_task_fn fn, mp_source_fn src, void *ctx,
                      const mp_call_opts *opts, const char *who, mp__pool_job **out) {
    *out = NULL;
    if (!p || !fn || !src) return mp__err(MP_EINVAL, "%s: NULL argument", who);
    mp__pool_job *j = job_new(p, mode, MP__PK_VALUE, opts);
    if (!j) return mp__err(MP_ENOMEM, "%s: out of memory", who);
    j->src = src;
    j->src_ctx = ctx;
    int rc = submit(p, j, (void *)fn, who);
    if (rc) {
        job_unref(j);
        return rc;
    }
    *out = j;
    return 0;
}

/* ---- waiting ------------------------------------------------------------------------- */

static int job_wait(mp__pool_job *j, double timeout) {
    double deadline = mp__deadline(timeout);
    /* A short call (an apply) is often answered within microseconds: a while of
     * looking saves the sleep and the wake-up, which cost more than the call. */
    if (timeout > 0)
        for (int i = 0;
             i < WAIT_SPINS && !atomic_load_explicit(&j->ready_hint, memory_order_acquire); i++)
            mp__cpu_relax();
    mp__os_mutex_lock(j->mu);
    int rc = 0;
    while (!j->ready && rc == 0) {
        double left = mp__left(deadline);
        if (left == 0)
            rc = MP_ETIMEDOUT;
        else
            mp__os_cond_wait(j->cv, j->mu, left);
    }
    mp__os_mutex_unlock(j->mu);
    return rc;
}

/* The outcome of a ready job: 0, or its error with its detail recorded. */
static int job_outcome(mp__pool_job *j) {
    mp__os_mutex_lock(j->mu);
    int rc = j->rc;
    if (rc) mp__err(rc, "%s", j->msg ? j->msg : mp_strerror(rc));
    mp__os_mutex_unlock(j->mu);
    return rc;
}

/* A synchronous call: waits for job j and hands over its value. */
static int finish_sync(mp__pool_job *j, mp_value **result) {
    job_wait(j, MP_FOREVER);
    int rc = job_outcome(j);
    if (!rc && result) {
        mp__os_mutex_lock(j->mu);
        *result = j->value;
        j->value = NULL;
        mp__os_mutex_unlock(j->mu);
    }
    job_unref(j);
    return rc;
}

/* ---- the calls ---------------------------------------------------------------------- */

static mp_async_result *wrap_result(mp__pool_job *j) {
    mp_async_result *r = mp__malloc(sizeof *r);
    if (!r) {
        job_unref(j);
        mp__err(MP_ENOMEM, "pool: out of memory");
        return NULL;
    }
    r->j = j;
    return r;
}

int mp_pool_apply(mp_pool *p, mp_task_fn fn, const mp_value *args, mp_value **result) {
    if (!result) return mp__err(MP_EINVAL, "mp_pool_apply: result is NULL");
    *result = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_APPLY, (void *)fn, args, true, NULL, "mp_pool_apply", &j);
    return rc ? rc : finish_sync(j, result);
}

int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_value *args, const mp_call_opts *opts,
                        mp_async_result **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_apply_async: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_APPLY, (void *)fn, args, true, opts, "mp_pool_apply_async", &j);
    if (rc) return rc;
    return (*out = wrap_result(j)) ? 0 : MP_ENOMEM;
}

int mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                mp_value **results) {
    if (!results) return mp__err(MP_EINVAL, "mp_pool_map: results is NULL");
    *results = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_MAP, (void *)fn, items, false, opts, "mp_pool_map", &j);
    return rc ? rc : finish_sync(j, results);
}

int mp_pool_map_async(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                      mp_async_result **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_map_async: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_MAP, (void *)fn, items, false, opts, "mp_pool_map_async", &j);
    if (rc) return rc;
    return (*out = wrap_result(j)) ? 0 : MP_ENOMEM;
}

/* In C the task function gets one value either way: starmap differs from map only in
 * what the items are (argument tuples). */
int mp_pool_starmap(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                    mp_value **results) {
    return mp_pool_map(p, fn, items, opts, results);
}

int mp_pool_starmap_async(mp_pool *p, mp_task_fn fn, const mp_value *items,
                          const mp_call_opts *opts, mp_async_result **out) {
    return mp_pool_map_async(p, fn, items, opts, out);
}

int mp_pool_map_source(mp_pool *p, mp_task_fn fn, mp_source_fn src, void *src_ctx,
                       const mp_call_opts *opts, mp_value **results) {
    if (!results) return mp__err(MP_EINVAL, "mp_pool_map_source: results is NULL");
    *results = NULL;
    mp__pool_job *j;
    int rc = source_job(p, J_MAP, fn, src, src_ctx, opts, "mp_pool_map_source", &j);
    return rc ? rc : finish_sync(j, results);
}

static int imap_wrap(mp__pool_job *j, mp_imap **out) {
    mp_imap *it = mp__malloc(sizeof *it);
    if (!it) {
        job_unref(j);
        return mp__err(MP_ENOMEM, "pool: out of memory");
    }
    it->j = j;
    *out = it;
    return 0;
}

int mp_pool_imap(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                 mp_imap **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_imap: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_IMAP, (void *)fn, items, false, opts, "mp_pool_imap", &j);
    return rc ? rc : imap_wrap(j, out);
}

int mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn, const mp_value *items,
                           const mp_call_opts *opts, mp_imap **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_imap_unordered: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_IMAP_UNORDERED, (void *)fn, items, false, opts,
                        "mp_pool_imap_unordered", &j);
    return rc ? rc : imap_wrap(j, out);
}

int mp_pool_imap_source(mp_pool *p, mp_task_fn fn, mp_source_fn src, void *src_ctx, bool ordered,
                        const mp_call_opts *opts, mp_imap **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_imap_source: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = source_job(p, ordered ? J_IMAP : J_IMAP_UNORDERED, fn, src, src_ctx, opts,
                        "mp_pool_imap_source", &j);
    return rc ? rc : imap_wrap(j, out);
}

static int records_job(mp_pool *p, mp_record_fn fn, const void *in, size_t in_size, void *out,
                       size_t out_size, size_t n, const mp_call_opts *opts, const char *who,
                       mp__pool_job **jout) {
    *jout = NULL;
    if (!p || !fn) return mp__err(MP_EINVAL, "%s: NULL argument", who);
    if (n && ((!in && in_size) || (!out && out_size)))
        return mp__err(MP_EINVAL, "%s: a NULL array for %zu records", who, n);
    if (in_size > UINT32_MAX || out_size > UINT32_MAX)
        return mp__err(MP_EINVAL, "%s: records of more than 4 GiB", who);
    if (in_size && n > SIZE_MAX / in_size) return mp__err(MP_EINVAL, "%s: too many records", who);
    mp__pool_job *j = job_new(p, J_MAP, MP__PK_RECORD, opts);
    if (!j) return mp__err(MP_ENOMEM, "%s: out of memory", who);
    j->rin = in;
    j->rout = out;
    j->in_size = in_size;
    j->out_size = out_size;
    j->total = n;
    j->input_done = true;
    int rc = submit(p, j, (void *)fn, who);
    if (rc) {
        job_unref(j);
        return rc;
    }
    *jout = j;
    return 0;
}

int mp_pool_map_records(mp_pool *p, mp_record_fn fn, const void *in, size_t in_size, void *out,
                        size_t out_size, size_t n, const mp_call_opts *opts) {
    mp__pool_job *j;
    int rc = records_job(p, fn, in, in_size, out, out_size, n, opts, "mp_pool_map_records", &j);
    return rc ? rc : finish_sync(j, NULL);
}

int mp_pool_map_records_async(mp_pool *p, mp_record_fn fn, const void *in, size_t in_size,
                              void *out, size_t out_size, size_t n, const mp_call_opts *opts,
                              mp_async_result **out_result) {
    if (!out_result) return mp__err(MP_EINVAL, "mp_pool_map_records_async: out_result is NULL");
    *out_result = NULL;
    mp__pool_job *j;
    int rc =
        records_job(p, fn, in, in_size, out, out_size, n, opts, "mp_pool_map_records_async", &j);
    if (rc) return rc;
    return (*out_result = wrap_result(j)) ? 0 : MP_ENOMEM;
}

/* ---- async results ---------------------------------------------------------------- */

int mp_async_result_get(mp_async_result *r, double timeout, const mp_value **result) {
    if (result) *result = NULL;
    if (!r) return mp__err(MP_EINVAL, "mp_async_result_get: result is NULL");
    int rc = job_wait(r->j, timeout);
    if (rc) return mp__err(rc, "mp_async_result_get: not ready after %.3f s", timeout);
    rc = job_outcome(r->j);
    if (!rc && result) *result = r->j->value;
    return rc;
}

int mp_async_result_wait(mp_async_result *r, double timeout) {
    if (!r) return mp__err(MP_EINVAL, "mp_async_result_wait: result is NULL");
    int rc = job_wait(r->j, timeout);
    return rc ? mp__err(rc, "mp_async_result_wait: not ready after %.3f s", timeout) : 0;
}

bool mp_async_result_ready(const mp_async_result *r) {
    if (!r) return false;
    mp__os_mutex_lock(r->j->mu);
    bool ready = r->j->ready;
    mp__os_mutex_unlock(r->j->mu);
    return ready;
}

int mp_async_result_successful(const mp_async_result *r, bool *ok) {
    if (ok) *ok = false;
    if (!r || !ok) return mp__err(MP_EINVAL, "mp_async_result_successful: NULL argument");
    mp__os_mutex_lock(r->j->mu);
    bool ready = r->j->ready;
    *ok = ready && !r->j->rc;
    mp__os_mutex_unlock(r->j->mu);
    return ready ? 0 : mp__err(MP_ESTATE, "mp_async_result_successful: the result is not ready");
}

int mp_async_result_cancel(mp_async_result *r) {
    if (!r) return mp__err(MP_EINVAL, "mp_async_result_cancel: result is NULL");
    mp__pool_job *j = r->j;
    mp_pool *p = j->pool;
    mp__os_mutex_lock(p->mu);
    int rc = 0;
    mp__os_mutex_lock(j->mu);
    size_t done = j->done;
    mp__os_mutex_unlock(j->mu);
    if (j->finished || done) {
        rc = mp__err(MP_ESTATE, "mp_async_result_cancel: %s",
                     j->finished ? "it is done" : "a task of it ran");
    } else {
        /* Its chunks in inboxes are revoked; one that runs (or may) refuses the cancel. */
        for (int i = 0; i < p->cap && !rc; i++)
            for (mp__pool_chunk *c = p->w[i].head; c && !rc; c = c->next)
                if (c->job == j && mp__pool_revoke_locked(p, c) != 0)
                    rc = mp__err(MP_ESTATE, "mp_async_result_cancel: a task of it has started");
    }
    if (!rc) {
        mp__err(MP_ECANCELED, "pool: the call was canceled");
        job_finish_locked(p, j, MP_ECANCELED, mp_last_error_message());
        job_stop_locked(j);
        job_release_locked(p, j);
    }
    mp__os_mutex_unlock(p->mu);
    if (!rc) mp__pool_wake(p); /* the handler notifies it */
    return rc;
}

int mp_async_result_waitable(mp_async_result *r, mp_waitable *out) {
    if (!r || !out) return mp__err(MP_EINVAL, "mp_async_result_waitable: NULL argument");
    mp__pool_job *j = r->j;
    mp__os_mutex_lock(j->mu);
    int rc = 0;
    if (!j->wait_r) {
        rc = mp_pipe(false, &j->wait_r, &j->wait_w);
        if (!rc && j->ready) {
            mp__err_mute();
            mp_connection_send_bytes(j->wait_w, "r", 1);
            mp__err_unmute();
        }
    }
    if (!rc) *out = mp_waitable_connection(j->wait_r);
    mp__os_mutex_unlock(j->mu);
    return rc;
}

void mp_async_result_free(mp_async_result *r) {
    if (!r) return;
    job_unref(r->j);
    mp__free(r);
}

/* ---- imap ---------------------------------------------------------------------------- */

/* The answer holding the next item to yield, or NULL. Under the job's mutex. */
static answer *next_answer(mp__pool_job *j) {
    answer *a = j->answers;
    if (!a) return NULL;
    if (j->mode == J_IMAP_UNORDERED) return a;
    return a->first + a->taken == j->next_item ? a : NULL;
}

int mp_imap_next(mp_imap *it, double timeout, mp_value **item) {
    if (item) *item = NULL;
    if (!it || !item) return mp__err(MP_EINVAL, "mp_imap_next: NULL argument");
    mp__pool_job *j = it->j;
    double deadline = mp__deadline(timeout);
    mp__os_mutex_lock(j->mu);
    int rc = 0;
    answer *a;
    for (;;) {
        if ((a = next_answer(j)) != NULL) break;
        if (j->rc) { /* the call failed as a whole (terminated, the pool broke) */
            rc = mp__err(j->rc, "%s", j->msg ? j->msg : mp_strerror(j->rc));
            break;
        }
        bool over = j->ready && !j->answers;
        if (over) {
            rc = mp__err(MP_EOF, "mp_imap_next: no more results");
            break;
        }
        double left = mp__left(deadline);
        if (left == 0) {
            rc = mp__err(MP_ETIMEDOUT, "mp_imap_next: no result after %.3f s", timeout);
            break;
        }
        mp__os_cond_wait(j->cv, j->mu, left);
    }
    if (a) {
        size_t k = a->taken++;
        if (a->rc) {
            rc = mp__err(a->rc, "%s", a->msg ? a->msg : mp_strerror(a->rc));
        } else {
            *item = a->list->u.seq.items[k];
            a->list->u.seq.items[k] = NULL;
            if (mp_value_get_type(*item) == MP_VALUE_NONE) {
                mp_value_free(*item);
                *item = NULL;
            }
        }
        j->next_item++;
        j->taken++;
        if (a->taken == a->n) {
            for (answer **pp = &j->answers; *pp; pp = &(*pp)->next)
                if (*pp == a) {
                    *pp = a->next;
                    break;
                }
            answer_free(a);
        }
    }
    mp_pool *p = a && j->src ? j->pool : NULL; /* it lives as long as j */
    mp__os_mutex_unlock(j->mu);
    if (p) mp__pool_wake(p); /* room for more of the source */
    return rc;
}

void mp_imap_free(mp_imap *it) {
    if (!it) return;
    mp__pool_job *j = it->j;
    mp_pool *p = j->pool;
    /* Nothing more is cut or read; what is out finishes and is dropped. */
    mp__os_mutex_lock(p->mu);
    job_finish_locked(p, j, 0, NULL);
    job_stop_locked(j);
    job_release_locked(p, j);
    mp__os_mutex_unlock(p->mu);
    mp__pool_wake(p);
    job_unref(j);
    mp__free(it);
}
