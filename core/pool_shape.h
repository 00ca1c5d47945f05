/* The pool's insides, shared by core/pool.c (the pool, its workers and result-handler
 * thread), core/pool_job.c (jobs and their chunks), core/pool_call.c (the calls, async
 * results, imap) and core/pool_worker.c (the worker process).
 *
 * Shape. Every worker has an inbox of its own (a SimpleQueue the parent alone puts
 * to); all workers put their answers on one results queue, which the parent's
 * result-handler thread reads. The parent decides which worker runs what, so it knows
 * at every moment which tasks each worker holds, in order: when a worker dies, the task
 * it was running (the one whose sequence number it last wrote to its slot in a shared
 * array) fails with MP_EWORKERDIED and the tasks still waiting in its inbox go to other
 * workers. Nothing depends on the worker's cooperation, so a crash anywhere (in a task,
 * in a queue operation, during startup) is accounted for.
 *
 * A task is a chunk of a job's items. Value items are encoded one by one when the job
 * is submitted (or pulled from a source), so a chunk of any size is cut later by
 * copying a byte range; record items are cut from the caller's array. */
#ifndef MP_CORE_POOL_SHAPE_H
#define MP_CORE_POOL_SHAPE_H

#include <stdatomic.h>

#include "os.h"

/* ---- messages --------------------------------------------------------------------- */

/* parent -> worker (inbox) */
enum {
    MP__PM_FNDEF = 'F', /* fn: the task function with that id, as a module + offset ref */
    MP__PM_INIT = 'I',  /* run the initializer (fn 0 if defined), then say READY */
    MP__PM_TASK = 'T',  /* run a chunk */
    MP__PM_QUIT = 'Q',  /* exit */
};

/* worker -> parent (results), and the parent's own wake-up */
enum {
    MP__PR_READY = 'R',    /* initialized, takes tasks */
    MP__PR_INITFAIL = 'E', /* the initializer failed: rc + message */
    MP__PR_DONE = 'D',     /* a chunk: rc 0 + results, or rc + message */
    MP__PR_RETIRE = 'X',   /* maxtasksperchild reached: it exits */
    MP__PR_SKIPPED = 'S',  /* a chunk revoked before it ran (a cancel): not run */
    MP__PR_WAKE = 'W',     /* from a thread of the parent: look at the pool again */
};

/* What a chunk's items (and a worker's answer) are: a pickled list of values, records,
 * or, when every item is an int (or every one a float), their raw 8-byte array: the
 * common numeric map then needs no pickle at all. */
enum { MP__PK_VALUE = 1, MP__PK_RECORD = 2, MP__PK_I64 = 3, MP__PK_F64 = 4 };

/** Header of every inbox message; the payload follows. */
typedef struct mp__pool_msg {
    uint8_t type;
    uint8_t kind; /* MP__PK_* (TASK) */
    uint16_t pad;
    uint32_t fn;      /* function id (FNDEF, TASK) */
    uint64_t seq;     /* the chunk's sequence number, unique in the pool (TASK) */
    uint32_t n;       /* items in the chunk */
    uint32_t in_size; /* record sizes (RECORD) */
    uint32_t out_size;
    uint32_t pad2;
} mp__pool_msg;

/** Header of every results message; the payload follows. */
typedef struct mp__pool_res {
    uint8_t type;
    uint8_t enc; /* DONE: how the results are encoded (MP__PK_*) */
    uint8_t pad[2];
    uint32_t worker; /* its index */
    uint32_t gen;    /* which incarnation of that worker */
    int32_t rc;      /* 0, or the error (payload: the message) */
    uint64_t seq;
    uint64_t ns; /* DONE: time spent in the task function(s) */
} mp__pool_res;

/* A chunk's values travel as one pickled list whose items were encoded one by one
 * (mp__pickle_dump_item): PROTO 5, EMPTY_LIST, MARK, the items, APPENDS, STOP. */
static inline void mp__pool_list_begin(mp__buf *b) {
    static const unsigned char head[4] = {0x80, 5, ']', '('};
    mp__buf_put(b, head, sizeof head);
}
static inline void mp__pool_list_end(mp__buf *b) {
    static const unsigned char tail[2] = {'e', '.'};
    mp__buf_put(b, tail, sizeof tail);
}

/* ---- the parent (core/pool.c, pool_job.c, pool_call.c) --------------------------------------- */

enum { MP__POOL_RUN, MP__POOL_CLOSE, MP__POOL_TERMINATE };

typedef struct mp__pool_job mp__pool_job;

/** A task: a chunk of a job's items, with the inbox message that carries it (kept until
 *  it is answered, so it can go to another worker if its own dies first). */
typedef struct mp__pool_chunk {
    struct mp__pool_chunk *next;
    mp__pool_job *job;
    uint32_t fn;        /* its job's task function */
    uint64_t seq;       /* set when it is put in an inbox */
    size_t first, n;    /* items [first, first + n) of the job */
    unsigned char *msg; /* mp__pool_msg + payload */
    size_t len;
    int worker;
    double started; /* when it (probably) began to run: for the time limit */
    double limit;   /* seconds it may run (MP_FOREVER: no limit) */
    double expect;  /* seconds it should take, from the job's measures (0: unknown) */
    bool timed_out;
} mp__pool_chunk;

typedef struct mp__pool_w {
    mp_process *proc; /* NULL between a death and the new incarnation */
    mp_queue *inbox;
    mp_shared_array *slot; /* MP__POOL_SLOT words: what it runs, what was revoked */
    uint32_t gen;
    int64_t pid;
    bool ready;    /* initialized: takes tasks */
    bool retiring; /* takes no more (maxtasksperchild, quitting, a late thread) */
    bool quit_sent;
    bool zombie;                 /* a thread past its time limit: replaced, gone once it returns */
    mp__pool_chunk *head, *tail; /* in its inbox or running, in order */
    size_t inflight;
    bool *known; /* the function ids it was told about */
    size_t nknown;
} mp__pool_w;

typedef struct mp__pool_fn {
    void *ptr;
    mp__fnref ref;
    double est_ns; /* its time per item, as last measured: where its next call's chunk
                      sizes start (0: not known, they probe) */
} mp__pool_fn;

struct mp_pool {
    _Atomic int refs; /* the caller's handle and each job: the struct outlives the
                             workers and queues while results of it are alive */
    mp_context *ctx;
    int n;        /* workers */
    int cap;      /* worker slots: n, and more while threads past their time
                             limit cannot be stopped (a new one takes each one's place) */
    bool threads; /* dummy: workers are threads (they cannot be killed) */
    int (*initializer)(mp_args *);
    mp_args *initargs;
    int64_t maxtasks;
    double task_timeout; /* MP_FOREVER: none */
    size_t window;       /* chunks in flight per worker */
    unsigned started;    /* workers started, for their names */

    mp__mutex *mu;    /* everything below */
    int state;        /* MP__POOL_* */
    int broken;       /* 0, or why no task can run (the initializer failed...) */
    int start_deaths; /* workers that died before they were ready, in a row */
    char *broken_msg;
    mp__pool_w *w;
    mp_queue *results; /* workers -> the handler; also its wake-ups */
    mp__thread *handler;
    mp__pool_fn *fns; /* id 0 is the initializer when there is one */
    size_t nfns;
    uint64_t seq;
    mp__pool_chunk *requeued; /* from dead workers: they go first */
    mp__pool_job *jobs;       /* every job not finished or with chunks out, in order */
    mp__pool_job *notify;     /* finished: to notify (handler thread), newest first */
    mp__pool_job *released;   /* let go by the pool: to unref (handler thread) */
    mp__pool_job *progress;   /* with progress to report (handler thread) */
    unsigned char *rbuf;      /* the handler's receive buffer */
    size_t rcap;

    /* Who takes messages from results: the handler thread, or a thread waiting in a
     * synchronous call, which then reads and handles the answers itself (core/pool.c,
     * "Callers read their answers"). Under mu. */
    int reader;         /* MP__READER_* */
    int callers;        /* threads in a synchronous apply that would read */
    int rwaiters;       /* threads waiting on rcv for their turn to read */
    bool reader_kicked; /* a wake-up was posted to end the handler's read */
    bool handler_wants; /* the handler needs the turn (a dead worker's answers) */
    bool parked;        /* the handler sleeps on hcv while callers read */
    bool hkick;         /* ...and has something to look at */
    mp__cond *hcv, *rcv;
    struct mp__pool_note *handoff; /* messages a caller read for the handler, in order */
};

enum { MP__READER_NONE, MP__READER_HANDLER, MP__READER_CALLER };

/* core/pool.c */
/** The id of task function fn in the pool's table (added on first use). Under mu. */
int mp__pool_fn_id(mp_pool *p, void *fn, uint32_t *id);
/** Revokes chunk c, in its worker's inbox: 0, or MP_ESTATE when it runs or may run
 *  (the worker then skips it or runs it). Under mu. */
int mp__pool_revoke_locked(mp_pool *p, mp__pool_chunk *c);
/** Hands chunks to workers with room. Under mu. */
void mp__pool_dispatch(mp_pool *p);
/** Makes the handler look at the pool (a job came, a source may be read again). */
void mp__pool_wake(mp_pool *p);
/** ...the same, under mu, for a handler that sleeps while callers read (no post). */
void mp__pool_kick_locked(mp_pool *p);
/** Reads and handles the pool's answers on the calling thread until job j is ready
 *  (0), or returns 1 when the handler must do it (a callback to run, a source to read,
 *  a dead worker, a terminate...) or at deadline: the caller then waits as usual. */
int mp__pool_read_answers(mp_pool *p, mp__pool_job *j, double deadline);

/* core/pool_job.c, called by core/pool.c */
/** A job's hold on the pool (not on its workers: mp_pool_free stops those). */
void mp__pool_ref(mp_pool *p);
void mp__pool_unref(mp_pool *p);
/** The next chunk to run, cut from the jobs in submission order; NULL if none. Under mu. */
mp__pool_chunk *mp__pool_next_chunk(mp_pool *p);
/** Chunk c failed with rc (detail recorded): its job learns it. Frees c. Under mu. */
void mp__pool_chunk_failed_locked(mp_pool *p, mp__pool_chunk *c, int rc);
/** Drops chunk c (waiting to run again) if its job is over: true then. Under mu. */
bool mp__pool_chunk_dropped_locked(mp_pool *p, mp__pool_chunk *c);
/** Chunk c was answered (took ns in the task functions): its job's bookkeeping. Under mu. */
void mp__pool_chunk_taken_locked(mp_pool *p, mp__pool_chunk *c, uint64_t ns);
/** ...then, without the lock, on the handler thread: the results go to the job, its
 *  callbacks run. Frees c. */
void mp__pool_chunk_answered(mp_pool *p, mp__pool_chunk *c, int rc, int enc,
                             const unsigned char *payload, size_t n);
/** The pool cannot run tasks any more (detail recorded): every job fails with rc. */
void mp__pool_break_locked(mp_pool *p, int rc);
/** Every job not finished fails with rc (detail recorded). Under mu. */
void mp__pool_fail_all_locked(mp_pool *p, int rc);
/** Notifies the jobs that finished under the lock (callbacks, waiters), lets go of the
 *  released ones and reports progress. Handler thread; with callbacks false, any
 *  thread: only jobs with no callback are notified, and the result says whether
 *  something was left for the handler. */
bool mp__pool_run_deferred(mp_pool *p, bool callbacks);
/** Whether job j has nothing to run on the handler thread (no callback, no progress,
 *  no source to read): its answers may be handled by any thread. */
bool mp__pool_job_plain(const mp__pool_job *j);
/** Whether job j was notified (its waiters may return). Any thread, no lock. */
bool mp__pool_job_notified(mp__pool_job *j);
/** Reads a batch of a lazy job's source if one has room: true then (the caller hands
 *  the new items to workers and calls again). Handler thread, no lock. */
bool mp__pool_feed_source(mp_pool *p);
/** The pool goes away: its jobs (finished by now) stop pointing at it. Under mu. */
void mp__pool_detach_jobs_locked(mp_pool *p);

/* ---- the worker process (core/pool_worker.c) -------------------------------------- */

/* Its arguments, in this order; the initializer's arguments follow. */
enum {
    MP__PW_INBOX,
    MP__PW_RESULTS,
    MP__PW_SLOTS, /* its raw 'q' array of MP__POOL_SLOT words (see below) */
    MP__PW_INDEX,
    MP__PW_GEN,
    MP__PW_MAXTASKS,
    MP__PW_NFIXED
};

/* A worker's words in the slots array: the seq of the chunk it runs, written before it
 * runs it; and seqs the parent revoked (a cancel) before they ran. The worker writes
 * RUN then reads REVOKE, the parent writes REVOKE then reads RUN (both sequentially
 * consistent): at least one of them sees the other's, so a revoked chunk is either
 * skipped or known to the parent as maybe running. */
enum { MP__POOL_RUN_WORD, MP__POOL_REVOKE_A, MP__POOL_REVOKE_B, MP__POOL_SLOT };

/** The worker's target. */
int mp__pool_worker(mp_args *a);

#endif
