/* A pool's jobs (core/pool_job.c): their shape, for the calls that make and wait for
 * them (core/pool_call.c) and the functions they share. The pool's own shape is in
 * core/pool_shape.h. */
#ifndef MP_CORE_POOL_JOB_H
#define MP_CORE_POOL_JOB_H

#include "pool_shape.h"

enum { J_APPLY, J_MAP, J_IMAP, J_IMAP_UNORDERED };

/* A chunk's answer kept for an imap iterator until its items are taken. */
typedef struct mp__pool_answer {
    struct mp__pool_answer *next;
    size_t first, n, taken;
    mp_value *list; /* rc == 0: its items are taken one by one */
    int rc;
    char *msg;
} mp__pool_answer;

struct mp__pool_job {
    mp__pool_job *next;  /* in the pool's jobs list, then its released list */
    mp__pool_job *nnext; /* in the pool's list of jobs to notify */
    mp__pool_job *pnext; /* in the pool's list of progress to report */
    mp_pool *pool;       /* its struct lives as long as the job (a reference) */
    _Atomic int refs;    /* the pool's while it has the job, and the caller's handle */
    int mode, kind;
    bool sync; /* a synchronous apply's: its caller reads the answer (no kick on submit) */
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
    size_t expected; /* items there will be, when known before they all are (a list's
                        numbers, encoded while the first chunks run); else 0. Set
                        before the job is submitted, never changed after */
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
    void *slabs;              /* map: the blocks its raw results' nodes live in */
    mp_value *rnodes;         /* a list's map: the nodes of all its raw results, in one block */
    mp_value *value;          /* apply: the result; map: the list (made when ready) */
    mp__pool_answer *answers; /* imap: answered chunks not fully taken */
    size_t next_item;         /* imap: the next item to yield (ordered) */
    size_t taken;             /* imap: items taken by the caller */
    mp_connection *wait_r, *wait_w;
};

/** A new job of pool p (a reference to p; the caller's reference to it). NULL on failure. */
mp__pool_job *mp__pool_job_new(mp_pool *p, int mode, int kind, const mp_call_opts *opts);
/** Appends item v (encoded) to j's input: 0 or an error. */
int mp__pool_job_add_item(mp__pool_job *j, const mp_value *v);
/** Drops a reference; the last frees the job. NULL is fine. */
void mp__pool_job_unref(mp__pool_job *j);
/** Nothing more of j is cut (what is out finishes and is dropped). Under the pool's mu. */
void mp__pool_job_stop_locked(mp__pool_job *j);
/** Decides j's outcome, once (notified later on the handler thread). Under the pool's mu. */
void mp__pool_job_finish_locked(mp_pool *p, mp__pool_job *j, int rc, const char *msg);
/** The pool lets go of j if it is finished with nothing out. Under the pool's mu. */
void mp__pool_job_release_locked(mp_pool *p, mp__pool_job *j);
/** Frees an imap answer and the items the caller did not take. */
void mp__pool_answer_free(mp__pool_answer *a);

#endif
