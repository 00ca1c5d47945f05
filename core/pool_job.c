/* A pool's jobs and their chunks: what the calls (core/pool_call.c) submit and wait
 * for, and what the pool's handler (core/pool.c) cuts, hands to workers and answers;
 * core/pool_job.h has the shape.
 *
 * A job holds its input encoded item by item (values) or points into the caller's
 * array (records); chunks are cut from it as workers have room, so the chunk size can
 * follow what the first chunks measured (chunksize 0). Its results go straight to
 * their place: a map's list, a records call's output array, imap's answers. */
#include <stdio.h>
#include <string.h>

#include "pool_job.h"
#include "value_internal.h"

#define AUTO_TARGET_NS 1e6 /* adaptive chunks aim at about 1 ms of work... */
#define AUTO_MIN_NS 1e5    /* ...and the tail's pieces at no less than 0.1 ms */
#define CHUNK_MAX 65536    /* items in one chunk, at most */
/* ...and bytes in one adaptive chunk (either way): a queue's items up to a quarter of
 * its 1 MiB ring travel inside the ring, bigger ones in a block of their own
 * (core/queue_big.c), which costs more than one more chunk does. */
#define CHUNK_BYTES_MAX ((size_t)192 << 10)
#define SOURCE_AHEAD 512    /* items read from a source ahead of what was taken... */
#define SOURCE_AHEAD_PER 16 /* ...plus this many per worker */

/* The pool's struct: it outlives its handle while jobs of it live (pool_stop freed the
 * rest). */
void mp__pool_ref(mp_pool *p) { atomic_fetch_add(&p->refs, 1); }

void mp__pool_unref(mp_pool *p) {
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    mp__os_cond_free(p->hcv);
    mp__os_cond_free(p->rcv);
    mp__os_mutex_free(p->mu);
    mp__free(p);
}

/* ---- jobs ---------------------------------------------------------------------------- */

void mp__pool_answer_free(mp__pool_answer *a) {
    if (a->list) {
        /* Items taken by the caller left holes. */
        for (size_t i = 0; i < a->list->u.seq.n; i++) mp_value_free(a->list->u.seq.items[i]);
        a->list->u.seq.n = 0;
    }
    mp_value_free(a->list);
    mp__free(a->msg);
    mp__free(a);
}

void mp__pool_job_unref(mp__pool_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    mp__pool_unref(j->pool);
    mp__buf_free(&j->in);
    mp__free(j->off);
    for (size_t i = 0; j->items && i < j->nitems; i++) mp_value_free(j->items[i]);
    mp__free(j->items);
    mp__value_slab_free(j->slabs);
    mp_value_free(j->value);
    while (j->answers) {
        mp__pool_answer *a = j->answers;
        j->answers = a->next;
        mp__pool_answer_free(a);
    }
    mp__free(j->msg);
    mp_connection_free(j->wait_r);
    mp_connection_free(j->wait_w);
    mp__os_cond_free(j->cv);
    mp__os_mutex_free(j->mu);
    mp__free(j);
}

mp__pool_job *mp__pool_job_new(mp_pool *p, int mode, int kind, const mp_call_opts *opts) {
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
int mp__pool_job_add_item(mp__pool_job *j, const mp_value *v) {
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
void mp__pool_job_stop_locked(mp__pool_job *j) {
    j->stopped = true;
    j->cursor = j->total;
}

/* Decides the outcome (once): the job is notified by the handler thread without the
 * pool's lock, even if chunks of it are still out. A task's error decides a map but
 * does not stop it: its other tasks still run (as in Python), so their progress, and
 * the workers they might crash, are seen. Under the pool's mutex. */
void mp__pool_job_finish_locked(mp_pool *p, mp__pool_job *j, int rc, const char *msg) {
    if (j->finished) return;
    j->finished = true;
    /* A records job reads and writes the caller's arrays, which are the caller's again
     * once the job is decided: nothing more of it is cut. */
    if (j->kind == MP__PK_RECORD) mp__pool_job_stop_locked(j);
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
void mp__pool_job_release_locked(mp_pool *p, mp__pool_job *j) {
    if (!j->finished || j->chunks_out || (!j->stopped && j->cursor < j->total) ||
        (!j->stopped && !j->input_done))
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

bool mp__pool_job_plain(const mp__pool_job *j) {
    return !j->opts.callback && !j->opts.error_callback && !j->opts.progress && !j->src;
}

bool mp__pool_job_notified(mp__pool_job *j) {
    return atomic_load_explicit(&j->ready_hint, memory_order_acquire);
}

bool mp__pool_run_deferred(mp_pool *p, bool callbacks) {
    for (;;) {
        mp__os_mutex_lock(p->mu);
        /* Oldest first: the notify list is pushed at its head. */
        mp__pool_job **pick = NULL, *n = NULL, *r = p->released, *g = NULL;
        for (mp__pool_job **pp = &p->notify; *pp; pp = &(*pp)->nnext)
            if (callbacks || mp__pool_job_plain(*pp)) pick = pp;
        if (pick) {
            n = *pick;
            *pick = n->nnext;
        }
        if (r) p->released = r->next;
        if (callbacks && (g = p->progress)) {
            p->progress = g->pnext;
            g->progress_due = false;
        }
        bool left = p->notify || p->progress;
        mp__os_mutex_unlock(p->mu);
        if (!n && !r && !g) return left;
        if (g) {
            mp__os_mutex_lock(g->mu);
            size_t done = g->done, failed = g->failed;
            mp__os_mutex_unlock(g->mu);
            mp__os_mutex_lock(p->mu);
            size_t total = g->input_done ? g->total : 0;
            mp__os_mutex_unlock(p->mu);
            g->opts.progress(g->opts.ctx, done, total, failed);
            mp__pool_job_unref(g);
        }
        if (n) {
            job_notify(n);
            mp__pool_job_unref(n); /* the notify list's */
        }
        if (r) mp__pool_job_unref(r); /* the pool's */
    }
}

void mp__pool_fail_all_locked(mp_pool *p, int rc) {
    const char *msg = mp_last_error_message();
    char copy[512];
    snprintf(copy, sizeof copy, "%s", msg);
    for (mp__pool_job *j = p->jobs; j; j = j->next) {
        mp__pool_job_finish_locked(p, j, rc, copy);
        mp__pool_job_stop_locked(j);
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
        mp__pool_job_release_locked(p, j);
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
    mp__pool_run_deferred(p, true);
    mp__os_mutex_lock(p->mu);
    while (p->jobs) { /* finished, with chunks that will never come back */
        mp__pool_job *j = p->jobs;
        p->jobs = j->next;
        mp__os_mutex_unlock(p->mu);
        mp__pool_job_unref(j);
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
        size_t known = j->input_done ? j->total : j->expected;
        if (known) {
            size_t cap = (known - j->cursor + 2 * workers - 1) / (2 * workers);
            size_t least = j->est_ns > 0 ? (size_t)(AUTO_MIN_NS / j->est_ns) : 1;
            if (cap < least) cap = least;
            if (s > cap) s = cap;
        } else if (j->src) {
            size_t cap = (SOURCE_AHEAD + SOURCE_AHEAD_PER * workers) / (2 * workers * p->window);
            if (s > cap) s = cap;
        }
        size_t per = j->kind == MP__PK_RECORD
                         ? (j->in_size > j->out_size ? j->in_size : j->out_size)
                     : j->raw ? 8
                              : 0; /* values: cut() looks at their bytes */
        if (per && s > CHUNK_BYTES_MAX / per) s = CHUNK_BYTES_MAX / per;
    }
    if (s < 1) s = 1;
    return s < avail ? s : avail;
}

static mp__pool_chunk *cut(mp_pool *p, mp__pool_job *j) {
    size_t avail = j->total - j->cursor;
    if (!avail) return NULL;
    size_t k = chunk_size(p, j, avail);
    if (!j->chunking && j->kind != MP__PK_RECORD && !j->raw) {
        /* An adaptive chunk of encoded values stops at CHUNK_BYTES_MAX (one item at least). */
        const size_t *o = j->off + (j->cursor - j->base);
        if (o[k] - o[0] > CHUNK_BYTES_MAX) {
            size_t lo = 1, hi = k; /* o[lo] - o[0] fits, or lo is 1; o[hi] - o[0] does not */
            while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (o[mid] - o[0] > CHUNK_BYTES_MAX)
                    hi = mid;
                else
                    lo = mid;
            }
            k = lo;
        }
    }
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
        mp__pool_job_finish_locked(p, j, MP_ENOMEM, NULL);
        mp__pool_job_stop_locked(j);
        mp__pool_job_release_locked(p, j);
        return NULL; /* the list changed: the caller comes back */
    }
    return NULL;
}

/* A new answer for chunk c (its items' list, or its error); NULL if out of memory. */
static mp__pool_answer *answer_new(const mp__pool_chunk *c, int rc, const char *msg,
                                   mp_value *list) {
    mp__pool_answer *a = mp__calloc(1, sizeof *a);
    if (!a) return NULL;
    a->first = c->first;
    a->n = c->n;
    a->rc = rc;
    a->msg = rc ? mp__strdup(msg) : NULL;
    a->list = list;
    return a;
}

/* Keeps answer a for the iterator: in item order for imap, as they come for
 * imap_unordered. Under the job's mu. */
static void answer_keep(mp__pool_job *j, mp__pool_answer *a) {
    mp__pool_answer **pp = &j->answers;
    if (j->mode == J_IMAP)
        while (*pp && (*pp)->first < a->first) pp = &(*pp)->next;
    else
        while (*pp) pp = &(*pp)->next;
    a->next = *pp;
    *pp = a;
}

void mp__pool_chunk_failed_locked(mp_pool *p, mp__pool_chunk *c, int rc) {
    mp__pool_job *j = c->job;
    const char *msg = mp_last_error_message();
    j->chunks_out--;
    if (j->mode == J_IMAP || j->mode == J_IMAP_UNORDERED) {
        /* Each of its items reports the error; the iteration goes on. */
        mp__pool_answer *a = answer_new(c, rc, msg, NULL);
        mp__os_mutex_lock(j->mu);
        if (a) answer_keep(j, a);
        j->done += c->n;
        j->failed += c->n;
        bool all = j->input_done && j->done == j->total;
        mp__os_cond_broadcast(j->cv);
        mp__os_mutex_unlock(j->mu);
        if (!a) {
            mp__pool_job_finish_locked(p, j, MP_ENOMEM, "pool: out of memory");
            mp__pool_job_stop_locked(j);
        }
        if (all) mp__pool_job_finish_locked(p, j, 0, NULL);
    } else {
        mp__os_mutex_lock(j->mu);
        j->done += c->n;
        j->failed += c->n;
        mp__os_mutex_unlock(j->mu);
        mp__pool_job_finish_locked(p, j, rc, msg);
    }
    if (j->opts.progress && !j->progress_due) {
        /* Reported by the handler thread, as every progress is. */
        j->progress_due = true;
        atomic_fetch_add(&j->refs, 1);
        j->pnext = p->progress;
        p->progress = j;
    }
    mp__pool_job_release_locked(p, j);
    mp__free(c->msg);
    mp__free(c);
}

bool mp__pool_chunk_dropped_locked(mp_pool *p, mp__pool_chunk *c) {
    mp__pool_job *j = c->job;
    if (!j->stopped) return false;
    j->chunks_out--;
    mp__pool_job_release_locked(p, j);
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

/* A list job's final item count, read without the pool's lock (the handler's side):
 * expected is fixed before submission, and total is once all items are in. */
static size_t list_length(const mp__pool_job *j) { return j->expected ? j->expected : j->total; }

static int grow_items(mp__pool_job *j, size_t need) {
    if (need > j->nitems) {
        size_t cap = j->nitems ? j->nitems : 16;
        while (cap < need) cap *= 2;
        /* A list's length is known (and fixed) from the start: room for all at once. */
        size_t all = list_length(j);
        if (!j->src && all >= need) cap = all;
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
            void *slab = mp__value_slab_new(list_length(j), &j->rnodes);
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
    mp__pool_answer *a = NULL;
    if (!rc && !imap && list) rc = place_items(j, list, c->first); /* no one reads them yet */
    if (rc && !msg[0]) snprintf(msg, sizeof msg, "%s", mp_last_error_message());
    if (imap && (a = answer_new(c, rc, msg, list))) list = NULL;
    mp_value_free(list);
    mp__os_mutex_lock(j->mu);
    if (a) answer_keep(j, a);
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
        mp__pool_job_finish_locked(p, j, rc, msg);
    else if (total_known && done == total)
        mp__pool_job_finish_locked(p, j, 0, NULL);
    bool finished = j->finished;
    mp__pool_job_release_locked(p, j);
    mp__os_mutex_unlock(p->mu);
    if (j->opts.progress) j->opts.progress(j->opts.ctx, done, total_known ? total : 0, failed);
    (void)finished;
    mp__free(c->msg);
    mp__free(c);
}

/* ---- sources ----------------------------------------------------------------------- */

/* How many items a source job may read now. Under the pool's mu (done and taken are
 * the job's, under its own: the pool's lock comes first, as in mp__pool_job_finish_locked). */
static size_t source_room(mp_pool *p, mp__pool_job *j) {
    size_t ahead = SOURCE_AHEAD + SOURCE_AHEAD_PER * (size_t)p->n;
    mp__os_mutex_lock(j->mu);
    size_t gone = j->mode == J_MAP ? j->done : j->taken;
    mp__os_mutex_unlock(j->mu);
    size_t used = j->total - gone;
    return used < ahead ? ahead - used : 0;
}

bool mp__pool_feed_source(mp_pool *p) {
    {
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
        if (!j) return false;
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
                rc = mp__pool_job_add_item(&tmp, v);
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
            mp__pool_job_finish_locked(p, j, rc, mp_last_error_message());
            mp__pool_job_stop_locked(j); /* a source that failed is read no more */
        } else if (got == 0) {
            j->input_done = true;
        }
        mp__os_mutex_lock(j->mu);
        bool all = j->input_done && j->done == j->total;
        mp__os_mutex_unlock(j->mu);
        if (all) mp__pool_job_finish_locked(p, j, 0, NULL);
        mp__pool_job_release_locked(p, j);
        mp__os_mutex_unlock(p->mu);
        mp__buf_free(&tmp.in);
        mp__free(tmp.off);
        mp__pool_run_deferred(p, true);
        mp__pool_job_unref(j);
    }
    return true;
}
