/* A pool's calls: apply, map, starmap, imap and records, sync and async, and what they
 * return (async results, imap iterators). They make jobs (core/pool_job.c), put them
 * in the pool and wake its handler (core/pool.c), and wait for their outcome. */
#include <stdio.h>
#include <string.h>

#include "pool_job.h"
#include "value_internal.h"

#define PREFETCH_AHEAD 16 /* items: the numeric map's nodes are read this far ahead */
#define FILL_MIN 16384    /* a list of numbers this long goes in while it is copied... */
#define FILL_FIRST 2048   /* ...from its first this many on, in blocks that double... */
#define FILL_MAX 32768    /* ...up to this many */
#define WAIT_SPINS 2000   /* looks at a result before sleeping on it (some µs) */

struct mp_async_result {
    mp__pool_job *j;
};

struct mp_imap {
    mp__pool_job *j;
};

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
        if (j->input_done && j->total == 0) mp__pool_job_finish_locked(p, j, 0, NULL);
        mp__pool_job_release_locked(p, j);
        mp__pool_dispatch(p);
    }
    bool wake = !rc && (j->src || j->finished);
    /* A handler asleep while callers read its answers must read this job's. */
    if (!rc && !wake && !j->sync) mp__pool_kick_locked(p);
    mp__os_mutex_unlock(p->mu);
    if (wake) mp__pool_wake(p);
    return rc;
}

/* Copies the numbers of items [from, to) (all of type t) to d, 8 bytes each: where it
 * stopped, at the first item of another type or at to. */
static size_t copy_numbers(unsigned char *d, mp_value *const *it, size_t from, size_t to, int t) {
    for (size_t i = from; i < to; i++) {
        const mp_value *v = it[i];
        /* The nodes lie anywhere: their lines are asked for a little ahead. */
        if (i + PREFETCH_AHEAD < to) MP__PREFETCH(it[i + PREFETCH_AHEAD], 0);
        if (v->type != t) return i;
        memcpy(d + 8 * i, &v->u, 8); /* int64 and double: both 8 bytes at u */
    }
    return to;
}

/* The rest of a list of numbers whose first ones went in with job j: block by block,
 * each one handed to the workers as soon as it is copied. An item of another type
 * turns what is not cut yet into pickled items (as if the list had been mixed from
 * the start); one that cannot be pickled fails the job. The caller then waits for it. */
static void fill_numbers(mp_pool *p, mp__pool_job *j, const mp_value *items) {
    mp_value *const *it = items->u.seq.items;
    size_t n = j->expected, k = j->total, block = FILL_FIRST;
    int t = it[0]->type;
    unsigned char *d = j->in.data; /* room for all n: the cutter reads below total only */
    while (k < n) {
        block = block * 2 < FILL_MAX ? block * 2 : FILL_MAX;
        size_t end = n - k < block ? n : k + block;
        size_t upto = copy_numbers(d, it, k, end, t);
        mp__os_mutex_lock(p->mu);
        if (upto == end) {
            j->total = end;
            j->in.len = 8 * end;
        } else if (!j->stopped) {
            /* Not all numbers: the chunks cut so far stay raw, the rest is pickled. */
            j->raw = 0;
            j->in.len = 0;
            j->noff = 0;
            j->base = j->total = j->cursor;
            int rc = 0;
            for (size_t i = j->cursor; i < n && !rc; i++) rc = mp__pool_job_add_item(j, it[i]);
            if (rc) {
                mp__pool_job_finish_locked(p, j, rc, mp_last_error_message());
                mp__pool_job_stop_locked(j);
            }
            end = n;
        } else {
            end = n; /* stopped: nothing more is cut, so nothing more is copied */
        }
        if (end == n) {
            j->input_done = true;
            mp__pool_job_release_locked(p, j); /* finished meanwhile (a failure, a terminate) */
        }
        mp__pool_dispatch(p);
        mp__os_mutex_unlock(p->mu);
        k = end;
    }
}

static int values_job(mp_pool *p, int mode, void *fn, const mp_value *items, bool apply, bool sync,
                      const mp_call_opts *opts, const char *who, mp__pool_job **out) {
    *out = NULL;
    if (!p) return mp__err(MP_EINVAL, "%s: pool is NULL", who);
    if (!fn) return mp__err(MP_EINVAL, "%s: the task function is NULL", who);
    mp_value_type t = mp_value_get_type(items);
    if (apply ? (items && t != MP_VALUE_TUPLE && t != MP_VALUE_LIST)
              : (t != MP_VALUE_TUPLE && t != MP_VALUE_LIST))
        return mp__err(MP_EINVAL, "%s: %s must be a list or a tuple", who,
                       apply ? "args" : "items");
    mp__pool_job *j = mp__pool_job_new(p, mode, MP__PK_VALUE, opts);
    if (!j) return mp__err(MP_ENOMEM, "%s: out of memory", who);
    j->sync = sync;
    int rc = 0;
    if (apply) {
        static const mp_value empty = {.type = MP_VALUE_TUPLE};
        rc = mp__pool_job_add_item(j, items ? items : &empty);
    } else {
        size_t n = items->u.seq.n;
        mp_value *const *it = items->u.seq.items;
        /* All ints, or all floats: raw 8-byte numbers (nothing to pickle), copied in the
         * pass that checks them (the nodes are read once). A long list under adaptive
         * chunks goes in as soon as its first numbers are copied: the first chunks run
         * while the rest are (fill_numbers). */
        int t = n ? it[0]->type : -1;
        bool same = t == MP_VALUE_INT || t == MP_VALUE_FLOAT;
        unsigned char *d = same ? mp__buf_reserve(&j->in, 8 * n) : NULL;
        if (same && !d) rc = mp__err(MP_ENOMEM, "%s: out of memory for %zu items", who, n);
        size_t first = !j->opts.chunksize && n >= FILL_MIN ? FILL_FIRST : n;
        if (same && !rc) same = copy_numbers(d, it, 0, first, t) == first;
        if (same && !rc) {
            j->raw = t == MP_VALUE_INT ? MP__PK_I64 : MP__PK_F64;
            j->in.len = 8 * first;
            j->total = first;
            if (first < n) j->expected = n;
        }
        for (size_t i = 0; i < n && !rc && !same; i++) rc = mp__pool_job_add_item(j, it[i]);
    }
    j->input_done = !j->expected;
    if (!rc) rc = submit(p, j, fn, who);
    if (rc) {
        mp__pool_job_unref(j);
        return rc;
    }
    if (j->expected) fill_numbers(p, j, items);
    *out = j;
    return 0;
}

static int source_job(mp_pool *p, int mode, mp_task_fn fn, mp_source_fn src, void *ctx,
                      const mp_call_opts *opts, const char *who, mp__pool_job **out) {
    *out = NULL;
    if (!p || !fn || !src) return mp__err(MP_EINVAL, "%s: NULL argument", who);
    mp__pool_job *j = mp__pool_job_new(p, mode, MP__PK_VALUE, opts);
    if (!j) return mp__err(MP_ENOMEM, "%s: out of memory", who);
    j->src = src;
    j->src_ctx = ctx;
    int rc = submit(p, j, (void *)fn, who);
    if (rc) {
        mp__pool_job_unref(j);
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

/* A synchronous call: waits for job j of pool p and hands over its value. An apply's
 * caller reads its answer itself when it can (mp__pool_read_answers): two wake-ups
 * instead of three. A map's answers stay with the handler: there the caller's thread
 * copies the input while the first answers come, and measured, a long map read by its
 * caller ran a third slower (200 000 trivial items: 27 against 39 M tasks/s). */
static int finish_sync(mp_pool *p, mp__pool_job *j, mp_value **result) {
    if (j->mode != J_APPLY || !mp__pool_job_plain(j) ||
        mp__pool_read_answers(p, j, MP_FOREVER) != 0)
        job_wait(j, MP_FOREVER);
    int rc = job_outcome(j);
    if (!rc && result) {
        mp__os_mutex_lock(j->mu);
        *result = j->value;
        j->value = NULL;
        mp__os_mutex_unlock(j->mu);
    }
    mp__pool_job_unref(j);
    return rc;
}

/* ---- the calls ---------------------------------------------------------------------- */

static mp_async_result *wrap_result(mp__pool_job *j) {
    mp_async_result *r = mp__malloc(sizeof *r);
    if (!r) {
        mp__pool_job_unref(j);
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
    int rc = values_job(p, J_APPLY, (void *)fn, args, true, true, NULL, "mp_pool_apply", &j);
    return rc ? rc : finish_sync(p, j, result);
}

int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_value *args, const mp_call_opts *opts,
                        mp_async_result **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_apply_async: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_APPLY, (void *)fn, args, true, false, opts, "mp_pool_apply_async", &j);
    if (rc) return rc;
    return (*out = wrap_result(j)) ? 0 : MP_ENOMEM;
}

int mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                mp_value **results) {
    if (!results) return mp__err(MP_EINVAL, "mp_pool_map: results is NULL");
    *results = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_MAP, (void *)fn, items, false, false, opts, "mp_pool_map", &j);
    return rc ? rc : finish_sync(p, j, results);
}

int mp_pool_map_async(mp_pool *p, mp_task_fn fn, const mp_value *items, const mp_call_opts *opts,
                      mp_async_result **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_map_async: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_MAP, (void *)fn, items, false, false, opts, "mp_pool_map_async", &j);
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
    return rc ? rc : finish_sync(p, j, results);
}

static int imap_wrap(mp__pool_job *j, mp_imap **out) {
    mp_imap *it = mp__malloc(sizeof *it);
    if (!it) {
        mp__pool_job_unref(j);
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
    int rc = values_job(p, J_IMAP, (void *)fn, items, false, false, opts, "mp_pool_imap", &j);
    return rc ? rc : imap_wrap(j, out);
}

int mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn, const mp_value *items,
                           const mp_call_opts *opts, mp_imap **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_imap_unordered: out is NULL");
    *out = NULL;
    mp__pool_job *j;
    int rc = values_job(p, J_IMAP_UNORDERED, (void *)fn, items, false, false, opts,
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
    mp__pool_job *j = mp__pool_job_new(p, J_MAP, MP__PK_RECORD, opts);
    if (!j) return mp__err(MP_ENOMEM, "%s: out of memory", who);
    j->rin = in;
    j->rout = out;
    j->in_size = in_size;
    j->out_size = out_size;
    j->total = n;
    j->input_done = true;
    int rc = submit(p, j, (void *)fn, who);
    if (rc) {
        mp__pool_job_unref(j);
        return rc;
    }
    *jout = j;
    return 0;
}

int mp_pool_map_records(mp_pool *p, mp_record_fn fn, const void *in, size_t in_size, void *out,
                        size_t out_size, size_t n, const mp_call_opts *opts) {
    mp__pool_job *j;
    int rc = records_job(p, fn, in, in_size, out, out_size, n, opts, "mp_pool_map_records", &j);
    return rc ? rc : finish_sync(p, j, NULL);
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
        mp__pool_job_finish_locked(p, j, MP_ECANCELED, mp_last_error_message());
        mp__pool_job_stop_locked(j);
        mp__pool_job_release_locked(p, j);
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
    mp__pool_job_unref(r->j);
    mp__free(r);
}

/* ---- imap ---------------------------------------------------------------------------- */

/* The answer holding the next item to yield, or NULL. Under the job's mutex. */
static mp__pool_answer *next_answer(mp__pool_job *j) {
    mp__pool_answer *a = j->answers;
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
    mp__pool_answer *a;
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
            for (mp__pool_answer **pp = &j->answers; *pp; pp = &(*pp)->next)
                if (*pp == a) {
                    *pp = a->next;
                    break;
                }
            mp__pool_answer_free(a);
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
    mp__pool_job_finish_locked(p, j, 0, NULL);
    mp__pool_job_stop_locked(j);
    mp__pool_job_release_locked(p, j);
    mp__os_mutex_unlock(p->mu);
    mp__pool_wake(p);
    mp__pool_job_unref(j);
    mp__free(it);
}
