/* Internal declarations shared by core/, backends/, dummy/ and the OS layers. */
#ifndef MP_CORE_INTERNAL_H
#define MP_CORE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"

#if defined(_MSC_VER)
#define MP__THREAD_LOCAL __declspec(thread)
#else
#define MP__THREAD_LOCAL _Thread_local
#endif

#if defined(__MINGW32__)
/* mingw's plain printf format means msvcrt's rules; we build with C99 stdio. */
#define MP__PRINTF(f, a) __attribute__((format(gnu_printf, f, a)))
#elif defined(__GNUC__)
#define MP__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MP__PRINTF(f, a)
#endif

/* ---- errors (core/error.c) ---- */

/** Records code and a printf-style detail as this thread's last error; returns code. */
int mp__err(int code, const char *fmt, ...) MP__PRINTF(2, 3);
/** Clears this thread's detail message. */
void mp__err_clear(void);

/* ---- memory (core/error.c) ---- */
void *mp__malloc(size_t n);
void *mp__calloc(size_t n, size_t size);
void *mp__realloc(void *p, size_t n);
void mp__free(void *p);
char *mp__strdup(const char *s);

/* ---- a growable byte buffer and a reader, for the launch wire (core/wire.c) ---- */
typedef struct mp__buf {
    unsigned char *data;
    size_t len, cap;
    int err; /* first failure (MP_ENOMEM); later writes are no-ops */
} mp__buf;

void mp__buf_put(mp__buf *b, const void *p, size_t n);
void mp__buf_u8(mp__buf *b, uint8_t v);
void mp__buf_u32(mp__buf *b, uint32_t v);
void mp__buf_u64(mp__buf *b, uint64_t v);
void mp__buf_str(mp__buf *b, const char *s); /* u32 length + bytes; NULL = 0xffffffff */
void mp__buf_blob(mp__buf *b, const void *p, size_t n);
void mp__buf_free(mp__buf *b);

typedef struct mp__rd {
    const unsigned char *p;
    size_t left;
    int err; /* MP_EPROTO once anything was short or malformed */
} mp__rd;

uint8_t mp__rd_u8(mp__rd *r);
uint32_t mp__rd_u32(mp__rd *r);
uint64_t mp__rd_u64(mp__rd *r);
/** A freshly allocated copy (NUL-terminated); NULL for a NULL string or on error. */
char *mp__rd_str(mp__rd *r);
/** Points into the input; *n set. */
const void *mp__rd_blob(mp__rd *r, size_t *n);

/* ---- objects that travel to children as arguments (core/args.c, core/objtypes.c) ----
 *
 * The handle-transfer hook for library objects (connections, locks, queues, shared
 * memory...): reduce describes an object as bytes plus OS handles; the backend moves
 * the handles (fd passing, inheritance, DuplicateHandle, a dup on dummy); rebuild makes
 * the child's object from the bytes and its own handles. A type is listed once in
 * core/objtypes.c so a child can find it by name. */
typedef struct mp__objtype {
    const char *name;
    /** How many OS handles reduce will append for obj. */
    size_t (*handle_count)(const void *obj);
    /** Parent side: append a description to b and obj's handles to handles[*nh...]. */
    int (*reduce)(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh);
    /** Child side: build an object from the description and the delivered handles,
     *  taking ownership of them on success (on failure they stay the caller's). */
    int (*rebuild)(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out);
    /** Frees an object rebuild made (closing its handles). */
    void (*free)(void *obj);
} mp__objtype;

/** The types children can rebuild (core/objtypes.c), NULL-terminated. */
extern const mp__objtype *const mp__objtypes[];

/** Adds obj (borrowed: it must live until the process has started) to a. */
int mp__args_add_object(mp_args *a, const mp__objtype *t, void *obj);
/** The object at i if it is of type t, else NULL. */
void *mp__args_object(const mp_args *a, size_t i, const mp__objtype *t);

/* ---- arguments (core/args.c) ---- */
int mp__args_encode(const mp_args *a, mp__buf *b, mp_os_handle *handles, size_t *nhandles);
/** Handles referenced by the args become theirs (closed by mp_args_free); on failure the
 *  ones referenced are closed. */
int mp__args_decode(mp__rd *r, const mp_os_handle *handles, size_t nhandles, mp_args **out);
/** OS handles the args will hand to a child (raw handles and objects' handles). */
size_t mp__args_handle_count(const mp_args *a);
/** A deep copy (OS handles are copied as values: not duplicated, not owned). */
int mp__args_copy(const mp_args *src, mp_args **out);

/* ---- function identity (OS layer, resolved through core/launch.c) ---- */
typedef struct mp__fnref {
    char *module;     /* path of the module (executable or shared library) */
    uint64_t offset;  /* fn - module base */
    char *build;      /* identity of the build: GNU build-id, or size/mtime, or PE stamp */
} mp__fnref;
void mp__fnref_clear(mp__fnref *r);

/* ---- the launch: what a child needs to run (core/launch.c) ---- */
typedef struct mp__launch {
    mp__fnref ref;
    void *target_ptr;     /* valid in the same image (fork, dummy, forkserver after resolve) */
    char *name;
    char *identity;       /* "1", "1:2" */
    bool daemon;
    int64_t parent_pid;
    char *parent_name;
    char *start_method;   /* the backend that started the child */
    char *global_method;  /* the parent's global start method (NULL: unset) */
    unsigned char authkey[32];
    const unsigned char *args_wire; /* points into the payload */
    size_t args_len;
    size_t nhandles;      /* handles[0] is the parent sentinel, args' handles follow */
} mp__launch;

/** Encodes the launch of p into b; handles[0] becomes parent_sentinel and the args'
 *  handles follow (handles must have room for 1 + mp__args_handle_count). */
int mp__launch_encode(const mp_process *p, mp_os_handle parent_sentinel, mp__buf *b,
                      mp_os_handle *handles, size_t *nhandles);
/** Decodes a payload; the launch points into it (args_wire), so keep it alive. */
int mp__launch_decode(const void *payload, size_t len, mp__launch *out);
/** Resolves l->ref into l->target_ptr (no-op when already set). MP_ERESOLVE on failure. */
int mp__launch_resolve(mp__launch *l);
void mp__launch_clear(mp__launch *l);

/** Report hook: the child says whether it is about to run the target. */
typedef void (*mp__report_fn)(void *ctx, int rc, const char *msg);

/** Runs a child: sets current/parent process, resolves the target, reports, runs it,
 *  cleans up its own children; returns the exit code. handles are owned after this. */
int mp__child_run(mp__launch *l, mp_os_handle *handles, size_t nhandles,
                  mp__report_fn report, void *report_ctx);

/* ---- processes (core/process.c) ---- */
enum mp__pstate { MP__P_INIT, MP__P_STARTED, MP__P_ENDED, MP__P_CLOSED };

struct mp_process {
    const struct mp_backend_ops *ops;
    mp_context *ctx;
    char *name;
    char *identity;
    bool daemon;
    enum mp__pstate state;
    mp_target_fn target;
    mp_args *args;
    bool user_freed;      /* the user let go; the registry still reaps it */
    bool is_self;         /* current/parent process objects: not started by us */
    bool bk_terminated;   /* exit cleanup already sent it SIGTERM */
    /* filled by the backend */
    int64_t pid;
    mp_os_handle sentinel;
    int exitcode;
    void *bk;             /* backend-private */
    /* the children registry: each process object lists the children it started */
    struct mp_process *owner;    /* whose children list holds this one */
    struct mp_process *next;     /* sibling in owner's list */
    struct mp_process *children; /* started by this one, not yet reaped and let go */
    unsigned next_child_id;      /* for "Process-<identity>:N" */
};

/** Sets up the calling child (a process, or a dummy thread when thread is true) as
 *  described by l, with the parent's sentinel; returns its process object. */
mp_process *mp__process_child_begin(const mp__launch *l, mp_os_handle parent_sentinel, bool thread);
/** Ends a child begun with mp__process_child_begin: cleans its children up. */
void mp__process_child_end(mp_process *self, bool thread);
/** Global lock for process bookkeeping (recursive). */
void mp__lock(void);
void mp__unlock(void);
/** Bookkeeping after fork in the child (fork backend): forget the parent's children. */
void mp__process_after_fork_child(void);
/** End of a process (atexit, or a real child's end): children cleanup, then the
 *  backends' helper processes. */
void mp__shutdown(void);
/** Children cleanup: terminate daemonic, join the others (process exit, child end). */
void mp__process_cleanup_children(void);
/** The executable exec-based backends run. */
const char *mp__executable(void);
/** Forkserver preload list (NULL-terminated, static until changed). */
const char *const *mp__forkserver_preload(void);
/** The library's 32-byte authkey (random, inherited by children). */
const unsigned char *mp__authkey(void);
void mp__set_authkey(const unsigned char key[32]);
/** A real child takes its parent's global start method (Python's preparation data). */
void mp__set_inherited_start_method(const char *name);

/* Signals for the backend signal slot. */
enum { MP__SIG_TERM = 1, MP__SIG_KILL = 2, MP__SIG_INT = 3 };

#endif
