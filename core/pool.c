/* The pool in the parent: its workers, the result-handler thread, and the dispatch of
 * chunks (core/pool_shape.h says how it is shaped). The calls are in
 * core/pool_call.c, the jobs and their chunks in core/pool_job.c.
 *
 * Locking: the pool's mutex guards the workers, the job lists and every chunk not
 * answered yet; a job's own mutex guards what its waiters read (its outcome, imap's
 * answers). The order is pool, then job. Task functions and callbacks never run under
 * either: callbacks run on the handler thread with no lock held. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "pool_shape.h"
#include "value_internal.h"

#define CHECK_EVERY 0.05 /* seconds between looks at the workers' lives and time limits */
/* Workers that may die in a row before they are ready (killed from outside while they
 * start, say) and still be replaced; one more breaks the pool, so an initializer that
 * crashes fails the calls instead of starting workers forever (as CPython's does). */
#define START_DEATHS_MAX 3

/* ---- workers ----------------------------------------------------------------------- */

static _Atomic int64_t *slot_of(mp_pool *p, int i) {
    return (_Atomic int64_t *)mp_shared_array_get_obj(p->w[i].slot);
}

static void slot_clear(mp_pool *p, int i) {
    for (int k = 0; k < MP__POOL_SLOT; k++) atomic_store(&slot_of(p, i)[k], 0);
}

static int64_t slot_read(mp_pool *p, int i) {
    return atomic_load(&slot_of(p, i)[MP__POOL_RUN_WORD]);
}

int mp__pool_revoke_locked(mp_pool *p, mp__pool_chunk *c) {
    _Atomic int64_t *s = slot_of(p, c->worker);
    if (atomic_load(&s[MP__POOL_RUN_WORD]) == (int64_t)c->seq) return MP_ESTATE; /* it runs */
    /* A word not holding a revoke still to be honoured (its chunk still waits). */
    int k = MP__POOL_REVOKE_A;
    for (mp__pool_chunk *o = p->w[c->worker].head; o; o = o->next)
        if (o != c && atomic_load(&s[k]) == (int64_t)o->seq) k = MP__POOL_REVOKE_B;
    atomic_store(&s[k], (int64_t)c->seq);
    return atomic_load(&s[MP__POOL_RUN_WORD]) == (int64_t)c->seq ? MP_ESTATE : 0;
}

static int put_msg(mp__pool_w *w, const mp__pool_msg *m, const void *payload, size_t n) {
    mp__buf b = {0};
    mp__buf_put(&b, m, sizeof *m);
    mp__buf_put(&b, payload, n);
    int rc = b.err ? mp__err(MP_ENOMEM, "pool: out of memory")
                   : mp_queue_put_bytes(w->inbox, b.data, b.len, MP_FOREVER);
    mp__buf_free(&b);
    return rc;
}

/* Tells worker w about function id, once. */
static int teach_fn(mp_pool *p, mp__pool_w *w, uint32_t id) {
    if (id < w->nknown && w->known[id]) return 0;
    if (id >= w->nknown) {
        size_t k = id + 16;
        bool *kn = mp__realloc(w->known, k * sizeof *kn);
        if (!kn) return mp__err(MP_ENOMEM, "pool: out of memory");
        memset(kn + w->nknown, 0, (k - w->nknown) * sizeof *kn);
        w->known = kn;
        w->nknown = k;
    }
    const mp__fnref *r = &p->fns[id].ref;
    mp__buf b = {0};
    mp__buf_str(&b, r->module);
    mp__buf_u64(&b, r->offset);
    mp__buf_str(&b, r->build);
    mp__pool_msg m = {.type = MP__PM_FNDEF, .fn = id};
    int rc = b.err ? mp__err(MP_ENOMEM, "pool: out of memory") : put_msg(w, &m, b.data, b.len);
    mp__buf_free(&b);
    if (!rc) w->known[id] = true;
    return rc;
}

/* Lets worker w go: its process (given grace seconds to end, then killed) and inbox. */
static void worker_forget(mp__pool_w *w, double grace) {
    mp__err_mute();
    if (w->proc && mp_process_join(w->proc, grace) != 0) {
        mp_process_kill(w->proc);
        mp_process_join(w->proc, MP_FOREVER);
    }
    mp__err_unmute();
    mp_process_free(w->proc);
    w->proc = NULL;
    mp_queue_free(w->inbox);
    w->inbox = NULL;
    w->head = w->tail = NULL;
    w->inflight = 0;
}

/* Starts worker i (a new incarnation): its inbox, its process, its initialization. */
static int worker_start(mp_pool *p, int i) {
    mp__pool_w *w = &p->w[i];
    mp_args *a = NULL;
    w->gen++;
    w->ready = w->retiring = w->quit_sent = w->zombie = false;
    w->nknown = 0;
    mp__free(w->known);
    w->known = NULL;
    int rc = w->slot ? 0 : mp_raw_array_new(p->ctx, 'q', MP__POOL_SLOT, NULL, &w->slot);
    if (rc) return rc;
    slot_clear(p, i);
    rc = mp_simple_queue_new(p->ctx, &w->inbox);
    if (!rc) rc = mp_args_new(&a);
    if (!rc) rc = mp_args_add_queue(a, w->inbox);
    if (!rc) rc = mp_args_add_queue(a, p->results);
    if (!rc) rc = mp_args_add_shared_array(a, w->slot);
    if (!rc) rc = mp_args_add_int(a, i);
    if (!rc) rc = mp_args_add_int(a, w->gen);
    if (!rc) rc = mp_args_add_int(a, p->maxtasks);
    if (!rc && p->initargs) rc = mp__args_extend(a, p->initargs);
    if (!rc) {
        char name[64];
        snprintf(name, sizeof name, "PoolWorker-%u", ++p->started);
        /* Daemonic, as Python's: a worker never outlives the pool's process. */
        mp_process_opts o = {.target = mp__pool_worker, .name = name, .args = a, .daemon = true};
        rc = mp_process_new(p->ctx, &o, &w->proc);
        if (!rc) rc = mp_process_start(w->proc);
    }
    mp_args_free(a);
    if (!rc && p->initializer) rc = teach_fn(p, w, 0);
    if (!rc) {
        mp__pool_msg m = {.type = MP__PM_INIT};
        rc = put_msg(w, &m, NULL, 0);
    }
    if (rc) {
        rc = mp__err_wrap(rc, "pool: cannot start a worker");
        worker_forget(w, 0);
        return rc;
    }
    w->pid = mp_process_pid(w->proc);
    mp_log(MP_LOG_DEBUG, "added worker %s (pid %lld)", mp_process_name(w->proc), (long long)w->pid);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------- */

/* A chunk queued behind one that runs long would wait for it while other workers go
 * idle: a worker takes a second chunk only while its first one is young. */
static bool stuck(const mp__pool_w *w, double now) {
    const mp__pool_chunk *c = w->head;
    if (!c) return false;
    double young = c->expect > 0.001 ? 2 * c->expect : 0.002;
    return now - c->started > young;
}

static mp__pool_w *least_loaded(mp_pool *p) {
    mp__pool_w *best = NULL;
    double now = 0;
    for (int i = 0; i < p->cap; i++) {
        mp__pool_w *w = &p->w[i];
        if (!w->proc || !w->ready || w->retiring || w->inflight >= p->window) continue;
        if (w->inflight) {
            if (!now) now = mp__os_monotonic();
            if (stuck(w, now)) continue;
        }
        if (!best || w->inflight < best->inflight) best = w;
    }
    return best;
}

/* Puts chunk c in worker w's inbox: it runs after what w holds already. */
static int send_chunk(mp_pool *p, mp__pool_w *w, mp__pool_chunk *c) {
    int rc = teach_fn(p, w, c->fn);
    if (rc) return rc;
    c->seq = ++p->seq;
    mp__pool_msg *m = (mp__pool_msg *)c->msg;
    m->seq = c->seq;
    rc = mp_queue_put_bytes(w->inbox, c->msg, c->len, MP_FOREVER);
    if (rc) return rc;
    c->next = NULL;
    c->worker = (int)(w - p->w);
    if (w->tail)
        w->tail->next = c;
    else
        w->head = c;
    w->tail = c;
    if (++w->inflight == 1) c->started = mp__os_monotonic();
    return 0;
}

void mp__pool_dispatch(mp_pool *p) {
    if (p->state != MP__POOL_RUN && p->state != MP__POOL_CLOSE) return;
    for (;;) {
        mp__pool_w *w = least_loaded(p);
        if (!w) return;
        mp__pool_chunk *c = p->requeued;
        if (c) {
            p->requeued = c->next;
            if (mp__pool_chunk_dropped_locked(p, c)) continue;
        } else if (!(c = mp__pool_next_chunk(p))) {
            return;
        }
        int rc = send_chunk(p, w, c);
        if (rc) mp__pool_chunk_failed_locked(p, c, rc);
    }
}

/* ---- a worker's end ----------------------------------------------------------------- */

/* Worker i has ended (crashed, killed, retired or quit): the task it was running fails,
 * those still waiting in its inbox go to the others, and a new worker takes its place
 * while the pool runs. Under the pool's mutex. */
static void worker_lost(mp_pool *p, int i) {
    mp__pool_w *w = &p->w[i];
    int code = 0;
    mp__err_mute();
    if (mp_process_join(w->proc, 5.0) != 0) {
        mp_process_kill(w->proc);
        mp_process_join(w->proc, MP_FOREVER);
    }
    mp_process_exitcode(w->proc, &code);
    mp__err_unmute();
    char how[160];
    mp__os_describe_exit(code, how, sizeof how);
    if (w->retiring || w->quit_sent)
        mp_log(MP_LOG_DEBUG, "cleaning up worker %d (pid %lld)", i, (long long)w->pid);
    else
        mp_log(MP_LOG_WARNING, "pool worker %d (pid %lld) %s; it is replaced", i, (long long)w->pid,
               how);
    mp__pool_chunk *c = w->head;
    if (c && (int64_t)c->seq == slot_read(p, i)) {
        w->head = c->next;
        if (c->timed_out)
            mp__err(
                MP_ETIMEDOUT,
                "pool: a task ran past its time limit (%.3f s); its worker (pid %lld) was killed",
                c->limit, (long long)w->pid);
        else
            mp__err(MP_EWORKERDIED, "pool: the worker running the task (pid %lld) %s",
                    (long long)w->pid, how);
        mp__pool_chunk_failed_locked(p, c, c->timed_out ? MP_ETIMEDOUT : MP_EWORKERDIED);
    }
    /* The rest never started: they go first, in their order, to the other workers. */
    mp__pool_chunk *rest = w->head, **end = &rest;
    while (*end) end = &(*end)->next;
    *end = p->requeued;
    p->requeued = rest;
    w->head = w->tail = NULL;
    bool died_starting = !w->ready && !w->retiring;
    bool zombie = w->zombie;
    w->zombie = false;
    worker_forget(w, 5.0);
    if (p->state != MP__POOL_RUN || zombie) return; /* a zombie was replaced already */
    if (died_starting && !p->broken && ++p->start_deaths >= START_DEATHS_MAX) {
        mp__err(MP_EWORKERDIED, "pool: a worker (pid %lld) %s before it was ready",
                (long long)w->pid, how);
        mp__pool_break_locked(p, MP_EWORKERDIED);
        return;
    }
    if (!p->broken) {
        int rc = worker_start(p, i);
        if (rc) mp__pool_break_locked(p, rc);
    }
}

/* A new worker in a free slot, which is added if there is none (a thread past its time
 * limit keeps its own until it returns). */
static int spare_start(mp_pool *p) {
    int k = 0;
    while (k < p->cap && p->w[k].proc) k++;
    if (k == p->cap) {
        mp__pool_w *w = mp__realloc(p->w, (size_t)(p->cap + 1) * sizeof *w);
        if (!w) return mp__err(MP_ENOMEM, "pool: out of memory");
        p->w = w;
        memset(&p->w[p->cap], 0, sizeof *w);
        p->cap++;
    }
    return worker_start(p, k);
}

/* Kills the worker running a chunk past its time limit; its end is noticed as any
 * other. A thread (dummy) cannot be killed: its chunk fails now and its late answer is
 * dropped. */
static void enforce_limits(mp_pool *p, double now) {
    for (int i = 0; i < p->cap; i++) {
        mp__pool_w *w = &p->w[i];
        mp__pool_chunk *c = w->head;
        if (!w->proc || !c || c->timed_out || mp__forever(c->limit)) continue;
        if (now < c->started + c->limit || (int64_t)c->seq != slot_read(p, i)) continue;
        c->timed_out = true;
        if (p->threads) {
            w->head = c->next;
            w->inflight--;
            w->retiring = true; /* busy until it returns; then it is replaced */
            /* What waits behind it goes to the others (the thread skips it later). */
            for (mp__pool_chunk **pp = &w->head; *pp;) {
                mp__pool_chunk *o = *pp;
                if (mp__pool_revoke_locked(p, o) != 0) {
                    pp = &o->next;
                    continue;
                }
                *pp = o->next;
                w->inflight--;
                o->next = p->requeued;
                p->requeued = o;
            }
            w->tail = NULL;
            for (mp__pool_chunk *o = w->head; o; o = o->next) w->tail = o;
            mp__err(MP_ETIMEDOUT, "pool: a task ran past its time limit (%.3f s)", c->limit);
            mp__pool_chunk_failed_locked(p, c, MP_ETIMEDOUT);
            w->zombie = true;
            if (p->state == MP__POOL_RUN && !p->broken) {
                int rc = spare_start(p);
                if (rc) mp__pool_break_locked(p, rc);
            }
            continue;
        }
        mp__err_mute();
        mp_process_kill(w->proc);
        mp__err_unmute();
    }
}

/* ---- the result handler ------------------------------------------------------------ */

static void post(mp_pool *p, uint8_t type) {
    mp__pool_res r = {.type = type};
    mp__err_mute();
    mp_queue_put_bytes(p->results, &r, sizeof r, MP_FOREVER);
    mp__err_unmute();
}

void mp__pool_kick_locked(mp_pool *p) {
    p->hkick = true;
    if (p->parked) mp__os_cond_signal(p->hcv);
}

void mp__pool_wake(mp_pool *p) {
    mp__os_mutex_lock(p->mu);
    if (p->results) post(p, MP__PR_WAKE); /* else the pool was freed: nobody to wake */
    mp__pool_kick_locked(p);
    mp__os_mutex_unlock(p->mu);
}

/* Takes the next message into *buf (of *cap bytes, grown as needed): its length, or a
 * negative code. Only the reader (p->reader) calls it. */
static int64_t next_result(mp_pool *p, unsigned char **buf, size_t *cap, double timeout) {
    for (;;) {
        size_t len = 0;
        int rc = mp_queue_get_bytes_into(p->results, *buf, *cap, &len, timeout);
        if (rc == 0) return (int64_t)len;
        if (rc != MP_ETOOBIG) return rc;
        size_t c = *cap ? *cap : 4096;
        while (c < len) c *= 2;
        unsigned char *b = mp__realloc(*buf, c);
        if (!b) return mp__err(MP_ENOMEM, "pool: out of memory for a %zu-byte answer", len);
        *buf = b;
        *cap = c;
    }
}

/* One message from a worker (or a wake-up), handled by the reader: the handler, or a
 * caller (by_caller), which leaves to the handler what must run there: 1 then, and
 * nothing was done. Takes the pool's mutex itself: decoding a chunk's results happens
 * without it. Jobs that finish go to the notify list (mp__pool_run_deferred). */
static int handle(mp_pool *p, const unsigned char *msg, size_t len, bool by_caller) {
    mp__pool_res r;
    if (len < sizeof r) return 0;
    memcpy(&r, msg, sizeof r);
    const unsigned char *payload = msg + sizeof r;
    size_t n = len - sizeof r;
    mp__os_mutex_lock(p->mu);
    if (r.type == MP__PR_WAKE) {
        if (by_caller) mp__pool_kick_locked(p); /* it was meant for the handler */
        mp__os_mutex_unlock(p->mu);
        return 0;
    }
    mp__pool_w *w = r.worker < (uint32_t)p->cap ? &p->w[r.worker] : NULL;
    if (!w || w->gen != r.gen || !w->proc) {
        mp__os_mutex_unlock(p->mu); /* from a worker that is gone */
        return 0;
    }
    /* A caller handles answers of jobs with nothing to run on the handler thread, and
     * the bookkeeping that starts nothing; the rest is the handler's. */
    if (by_caller && r.type != MP__PR_READY && r.type != MP__PR_SKIPPED &&
        !(r.type == MP__PR_DONE &&
          (!w->head || w->head->seq != r.seq || mp__pool_job_plain(w->head->job)))) {
        mp__os_mutex_unlock(p->mu);
        return 1;
    }
    mp__pool_chunk *c = NULL;
    switch (r.type) {
    case MP__PR_READY:
        w->ready = true;
        p->start_deaths = 0;
        break;
    case MP__PR_INITFAIL:
        if (!p->broken) {
            mp__err(r.rc < 0 ? r.rc : MP_ECHILD, "pool: the initializer failed: %.*s", (int)n,
                    (const char *)payload);
            mp__pool_break_locked(p, r.rc < 0 ? r.rc : MP_ECHILD);
        }
        break;
    case MP__PR_RETIRE:
        w->retiring = true;
        worker_lost(p, (int)r.worker);
        break;
    case MP__PR_SKIPPED:
        /* Revoked before it ran: the head (a worker answers in order). Its job was
         * canceled; or the cancel failed, and it runs elsewhere. */
        if ((c = w->head) && c->seq == r.seq) {
            w->head = c->next;
            if (!w->head) w->tail = NULL;
            w->inflight--;
            if (!mp__pool_chunk_dropped_locked(p, c)) {
                c->next = p->requeued;
                p->requeued = c;
            }
        }
        c = NULL;
        break;
    case MP__PR_DONE:
        c = w->head;
        if (!c || c->seq != r.seq) {
            c = NULL; /* answered late: it failed already (time limit) */
            break;
        }
        w->head = c->next;
        if (!w->head) w->tail = NULL;
        w->inflight--;
        if (w->head) w->head->started = mp__os_monotonic();
        break;
    default:
        break;
    }
    if (p->threads && w->proc && w->retiring && !w->head && !w->quit_sent) {
        /* A thread left behind by a time limit is done with it: it goes, another comes. */
        mp__pool_msg m = {.type = MP__PM_QUIT};
        mp__err_mute();
        put_msg(w, &m, NULL, 0);
        mp__err_unmute();
        w->quit_sent = true;
    }
    mp__pool_dispatch(p);
    if (c) mp__pool_chunk_taken_locked(p, c, r.ns);
    mp__os_mutex_unlock(p->mu);
    if (c) mp__pool_chunk_answered(p, c, r.rc, r.enc, payload, n);
    return 0;
}

/* ---- callers read their answers ----------------------------------------------------
 * A synchronous call answered through the handler costs three wake-ups (the worker,
 * the handler, the caller) where a pipe's round trip costs two. So a thread waiting in
 * a synchronous call takes the reader's turn itself: it reads the results queue and
 * handles what it reads, as long as that has nothing to run on the handler thread (a
 * callback, progress, a source to read, a worker to replace); meanwhile the handler
 * sleeps on hcv, waking every CHECK_EVERY for its rounds (time limits, dead workers).
 * A message the caller may not handle goes to the handoff list, in order, and the
 * caller stops reading (so no later message of that worker overtakes it); the handler
 * is kicked, takes the turn, handles the handoff first, and reads again once no caller
 * wants to. When the last caller stops reading with work still out, it kicks the
 * handler too, so some thread always reads while answers are due. */

typedef struct mp__pool_note {
    struct mp__pool_note *next;
    size_t len;
    unsigned char msg[];
} mp__pool_note;

/* Waits (under mu) until the turn to read is free, and takes it for who. */
static void take_turn(mp_pool *p, int who) {
    while (p->reader != MP__READER_NONE) {
        p->rwaiters++;
        mp__os_cond_wait(p->rcv, p->mu, CHECK_EVERY);
        p->rwaiters--;
    }
    p->reader = who;
}

static void give_turn(mp_pool *p) {
    p->reader = MP__READER_NONE;
    p->reader_kicked = false;
    if (p->rwaiters) mp__os_cond_broadcast(p->rcv);
}

/* Whether the pool has answers or messages due: someone must read. Under mu. */
static bool awaited(const mp_pool *p) {
    if (p->jobs || p->requeued || p->notify || p->released || p->progress || p->handoff ||
        p->state != MP__POOL_RUN)
        return true;
    for (int i = 0; i < p->cap; i++) {
        const mp__pool_w *w = &p->w[i];
        if (w->proc && (w->head || !w->ready || w->retiring)) return true;
    }
    return false;
}

int mp__pool_read_answers(mp_pool *p, mp__pool_job *j, double deadline) {
    size_t cap = 512;
    unsigned char *buf = mp__malloc(cap);
    if (!buf) return 1;
    int rc = 1;
    mp__os_mutex_lock(p->mu);
    p->callers++;
    for (;;) {
        if (mp__pool_job_notified(j)) {
            rc = 0;
            break;
        }
        double left = mp__left(deadline);
        if (left == 0 || !p->results || p->state == MP__POOL_TERMINATE || p->handoff ||
            p->handler_wants)
            break;
        if (p->reader != MP__READER_NONE) {
            /* The handler may sleep in its read for CHECK_EVERY: a wake-up ends it. */
            if (p->reader == MP__READER_HANDLER && !p->reader_kicked) {
                post(p, MP__PR_WAKE);
                p->reader_kicked = true;
            }
            p->rwaiters++;
            mp__os_cond_wait(p->rcv, p->mu, left < CHECK_EVERY ? left : CHECK_EVERY);
            p->rwaiters--;
            continue;
        }
        p->reader = MP__READER_CALLER;
        mp__os_mutex_unlock(p->mu);
        int64_t len = next_result(p, &buf, &cap, left < CHECK_EVERY ? left : CHECK_EVERY);
        int later = len >= 0 ? handle(p, buf, (size_t)len, true) : 0;
        mp__pool_note *note = later ? mp__malloc(sizeof *note + (size_t)len) : NULL;
        if (note) {
            note->next = NULL;
            note->len = (size_t)len;
            memcpy(note->msg, buf, (size_t)len);
        }
        bool left_over = mp__pool_run_deferred(p, false);
        mp__os_mutex_lock(p->mu);
        if (later) {
            mp__pool_note **pp = &p->handoff;
            while (*pp) pp = &(*pp)->next;
            *pp = note;
            if (!note) { /* no memory to keep it: it is lost, and the pool with it */
                mp__err(MP_ENOMEM, "pool: out of memory for an answer");
                mp__pool_break_locked(p, MP_ENOMEM);
            }
        }
        if (later || left_over) mp__pool_kick_locked(p);
        give_turn(p);
        if (len < 0 && len != MP_ETIMEDOUT) break;
    }
    if (--p->callers == 0 && awaited(p)) mp__pool_kick_locked(p);
    mp__os_mutex_unlock(p->mu);
    mp__free(buf);
    return rc;
}

/* With the turn, under mu: takes what callers left to the handler, unlocks mu and
 * handles it, in order. */
static void handle_handoff_unlock(mp_pool *p) {
    mp__pool_note *notes = p->handoff;
    p->handoff = NULL;
    mp__os_mutex_unlock(p->mu);
    while (notes) {
        mp__pool_note *nx = notes->next;
        handle(p, notes->msg, notes->len, false);
        mp__free(notes);
        notes = nx;
    }
}

/* The handler's turn: handles what callers left to it, then reads one message unless
 * callers read; while they do, it sleeps until kicked or for CHECK_EVERY. */
static void handler_turn(mp_pool *p) {
    mp__os_mutex_lock(p->mu);
    if (p->callers > 0 && !p->hkick && !p->handoff) {
        p->parked = true;
        mp__os_cond_wait(p->hcv, p->mu, CHECK_EVERY);
        p->parked = false;
    }
    p->hkick = false;
    if (p->callers > 0 && !p->handoff) {
        mp__os_mutex_unlock(p->mu);
        return;
    }
    take_turn(p, MP__READER_HANDLER);
    bool read = p->callers == 0 && p->results;
    handle_handoff_unlock(p);
    int64_t len = read ? next_result(p, &p->rbuf, &p->rcap, CHECK_EVERY) : -1;
    if (len >= 0) handle(p, p->rbuf, (size_t)len, false);
    mp__os_mutex_lock(p->mu);
    give_turn(p);
    mp__os_mutex_unlock(p->mu);
}

/* Whether the handler's work is over: terminated, or closed with every worker gone. */
static bool handler_done(mp_pool *p) {
    if (p->state == MP__POOL_TERMINATE) return true;
    if (p->state != MP__POOL_CLOSE) return false;
    for (int i = 0; i < p->cap; i++)
        if (p->w[i].proc) return false;
    return true;
}

/* Closing: once no job is left, each worker is told to quit. */
static void close_workers(mp_pool *p) {
    if (p->state != MP__POOL_CLOSE || p->jobs) return;
    for (int i = 0; i < p->cap; i++) {
        mp__pool_w *w = &p->w[i];
        if (!w->proc || w->quit_sent) continue;
        mp__pool_msg m = {.type = MP__PM_QUIT};
        mp__err_mute();
        put_msg(w, &m, NULL, 0);
        mp__err_unmute();
        w->quit_sent = true;
        w->retiring = true;
    }
}

/* Under mu: a worker that has ended is let go, after its last answers (still in the
 * queue) were taken; a caller reading gives the turn up first. */
static void check_workers(mp_pool *p) {
    for (int i = 0; i < p->cap; i++) {
        mp__pool_w *w = &p->w[i];
        if (!w->proc || mp_process_is_alive(w->proc)) continue;
        p->handler_wants = true;
        if (p->reader == MP__READER_CALLER && !p->reader_kicked) {
            post(p, MP__PR_WAKE);
            p->reader_kicked = true;
        }
        take_turn(p, MP__READER_HANDLER);
        handle_handoff_unlock(p);
        int64_t len;
        while ((len = next_result(p, &p->rbuf, &p->rcap, 0)) >= 0)
            handle(p, p->rbuf, (size_t)len, false);
        mp__os_mutex_lock(p->mu);
        give_turn(p);
        p->handler_wants = false;
        if (w->proc && !mp_process_is_alive(w->proc)) worker_lost(p, i);
    }
}

static void handler_main(void *arg) {
    mp_pool *p = arg;
    double last = 0;
    for (;;) {
        mp__os_mutex_lock(p->mu);
        double now = mp__os_monotonic();
        if (now - last >= CHECK_EVERY || p->state != MP__POOL_RUN) {
            last = now;
            enforce_limits(p, now);
            check_workers(p);
        }
        close_workers(p);
        mp__pool_dispatch(p);
        bool done = handler_done(p);
        mp__os_mutex_unlock(p->mu);
        mp__pool_run_deferred(p, true);
        if (done) break;
        while (mp__pool_feed_source(p)) { /* a batch of a source's items: to the workers */
            mp__os_mutex_lock(p->mu);
            mp__pool_dispatch(p);
            mp__os_mutex_unlock(p->mu);
        }
        handler_turn(p);
        mp__pool_run_deferred(p, true);
    }
}

/* ---- the pool ---------------------------------------------------------------------- */

/* Everything but the struct and its mutex, which jobs of the pool may still lock. */
static void pool_stop(mp_pool *p) {
    mp__os_mutex_lock(p->mu);
    for (int i = 0; p->w && i < p->cap; i++) {
        worker_forget(&p->w[i], 5.0);
        mp__free(p->w[i].known);
        mp_shared_array_free(p->w[i].slot);
    }
    mp__free(p->w);
    p->w = NULL;
    p->n = p->cap = 0;
    for (size_t i = 0; i < p->nfns; i++) mp__fnref_clear(&p->fns[i].ref);
    mp__free(p->fns);
    p->fns = NULL;
    p->nfns = 0;
    /* A caller may be in the middle of its read (a terminate's wake-up ends it). */
    take_turn(p, MP__READER_HANDLER);
    mp_queue_free(p->results);
    p->results = NULL;
    give_turn(p);
    while (p->handoff) {
        mp__pool_note *n = p->handoff;
        p->handoff = n->next;
        mp__free(n);
    }
    mp_args_free(p->initargs);
    p->initargs = NULL;
    mp__free(p->rbuf);
    p->rbuf = NULL;
    mp__free(p->broken_msg);
    p->broken_msg = NULL;
    mp__os_mutex_unlock(p->mu);
}

static void pool_destroy(mp_pool *p) {
    if (p->mu) pool_stop(p);
    mp__pool_unref(p);
}

int mp_pool_new(mp_context *ctx, const mp_pool_opts *opts, mp_pool **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_pool_new: out is NULL");
    *out = NULL;
    mp_pool_opts o = opts ? *opts : (mp_pool_opts){0};
    if (o.processes < 0) return mp__err(MP_EINVAL, "mp_pool_new: processes must be at least 1");
    if (o.initargs && !o.initializer)
        return mp__err(MP_EINVAL, "mp_pool_new: initargs without an initializer");
    if (!ctx) ctx = mp_get_context(NULL);
    if (!ctx) return MP_ESTATE; /* it said why */
    mp_pool *p = mp__calloc(1, sizeof *p);
    if (!p) return mp__err(MP_ENOMEM, "mp_pool_new: out of memory");
    atomic_init(&p->refs, 1);
    p->ctx = ctx;
    p->n = o.processes ? o.processes : mp_process_cpu_count();
    const struct mp_backend_ops *ops = mp__context_ops(ctx);
    p->threads = ops && (ops->flags & MP_BACKEND_THREADS);
    p->initializer = o.initializer;
    p->maxtasks = o.maxtasksperchild;
    p->task_timeout = o.task_timeout > 0 ? o.task_timeout : MP_FOREVER;
    p->window = 2;
    int rc = mp__os_mutex_new(&p->mu);
    if (!rc) rc = mp__os_cond_new(&p->hcv);
    if (!rc) rc = mp__os_cond_new(&p->rcv);
    p->cap = p->n;
    if (!rc && !(p->w = mp__calloc((size_t)p->cap, sizeof *p->w)))
        rc = mp__err(MP_ENOMEM, "mp_pool_new: out of memory");
    if (!rc && o.initargs) rc = mp__args_copy(o.initargs, &p->initargs);
    if (!rc) rc = mp_simple_queue_new(ctx, &p->results);
    if (!rc && o.initializer) {
        uint32_t id;
        rc = mp__pool_fn_id(p, (void *)o.initializer, &id); /* id 0 */
    }
    for (int i = 0; !rc && i < p->n; i++) rc = worker_start(p, i);
    if (!rc) rc = mp__os_thread_start(handler_main, p, &p->handler);
    if (rc) {
        for (int i = 0; i < p->cap; i++)
            if (p->w && p->w[i].proc) {
                mp__err_mute();
                mp_process_kill(p->w[i].proc);
                mp__err_unmute();
            }
        pool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

int mp_thread_pool_new(const mp_pool_opts *opts, mp_pool **out) {
    mp_context *ctx = mp_get_context("dummy");
    if (!ctx) {
        if (out) *out = NULL;
        return MP_ESTATE;
    }
    return mp_pool_new(ctx, opts, out);
}

int mp_pool_close(mp_pool *p) {
    if (!p) return mp__err(MP_EINVAL, "mp_pool_close: pool is NULL");
    mp__os_mutex_lock(p->mu);
    if (p->state == MP__POOL_RUN) p->state = MP__POOL_CLOSE;
    mp__os_mutex_unlock(p->mu);
    mp__pool_wake(p);
    return 0;
}

int mp_pool_terminate(mp_pool *p) {
    if (!p) return mp__err(MP_EINVAL, "mp_pool_terminate: pool is NULL");
    mp__os_mutex_lock(p->mu);
    if (p->state != MP__POOL_TERMINATE) {
        p->state = MP__POOL_TERMINATE;
        mp__err(MP_ECLOSED, "pool: terminated");
        mp__pool_fail_all_locked(p, MP_ECLOSED);
        mp__err_mute();
        for (int i = 0; i < p->cap; i++) {
            mp__pool_w *w = &p->w[i];
            if (!w->proc) continue;
            if (!p->threads) {
                mp_process_terminate(w->proc);
            } else if (!w->quit_sent) {
                /* A thread cannot be stopped: it is asked to, behind what it holds. */
                mp__pool_msg m = {.type = MP__PM_QUIT};
                put_msg(w, &m, NULL, 0);
                w->quit_sent = true;
            }
        }
        mp__err_unmute();
    }
    mp__os_mutex_unlock(p->mu);
    mp__pool_wake(p);
    mp__pool_run_deferred(p, true);
    return 0;
}

int mp_pool_join(mp_pool *p, double timeout) {
    if (!p) return mp__err(MP_EINVAL, "mp_pool_join: pool is NULL");
    mp__os_mutex_lock(p->mu);
    int state = p->state;
    mp__os_mutex_unlock(p->mu);
    if (state == MP__POOL_RUN)
        return mp__err(MP_ESTATE,
                       "mp_pool_join: the pool is still running (close or terminate it first)");
    if (!p->handler) return 0;
    int rc = mp__os_thread_join(p->handler, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(rc, "mp_pool_join: timed out after %.3f s", timeout);
    if (rc) return rc;
    mp__os_thread_free(p->handler);
    p->handler = NULL;
    /* Workers a terminate stopped are reaped here; the handler let them go already
     * when it saw them end. */
    mp__os_mutex_lock(p->mu);
    for (int i = 0; i < p->cap; i++) worker_forget(&p->w[i], 5.0);
    mp__os_mutex_unlock(p->mu);
    return 0;
}

void mp_pool_free(mp_pool *p) {
    if (!p) return;
    mp__os_mutex_lock(p->mu);
    bool running = p->state != MP__POOL_TERMINATE;
    mp__os_mutex_unlock(p->mu);
    if (running) mp_pool_terminate(p);
    mp_pool_join(p, MP_FOREVER);
    mp__os_mutex_lock(p->mu);
    mp__pool_detach_jobs_locked(p);
    mp__os_mutex_unlock(p->mu);
    pool_destroy(p);
}

int mp_pool_processes(const mp_pool *p) { return p ? p->n : 0; }

int mp_pool_worker_pids(mp_pool *p, int64_t *pids, size_t cap, size_t *n) {
    if (n) *n = 0;
    if (!p || !n || (cap && !pids)) return mp__err(MP_EINVAL, "mp_pool_worker_pids: NULL argument");
    mp__os_mutex_lock(p->mu);
    for (int i = 0; i < p->cap; i++) {
        if (!p->w[i].proc || p->w[i].zombie) continue;
        if (*n < cap) pids[*n] = p->w[i].pid;
        ++*n;
    }
    mp__os_mutex_unlock(p->mu);
    return 0;
}

int mp__pool_fn_id(mp_pool *p, void *fn, uint32_t *id) {
    for (size_t i = 0; i < p->nfns; i++)
        if (p->fns[i].ptr == fn) {
            *id = (uint32_t)i;
            return 0;
        }
    mp__pool_fn *f = mp__realloc(p->fns, (p->nfns + 1) * sizeof *f);
    if (!f) return mp__err(MP_ENOMEM, "pool: out of memory");
    p->fns = f;
    f = &p->fns[p->nfns];
    memset(f, 0, sizeof *f);
    int rc = mp__os_fn_to_ref(fn, &f->ref);
    if (rc) return mp__err_wrap(rc, "pool: the task function cannot be sent to a worker");
    f->ptr = fn;
    *id = (uint32_t)p->nfns++;
    return 0;
}
