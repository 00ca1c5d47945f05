/* Internal declarations shared by core/, backends/, dummy/ and the OS layers (these
 * through core/os*.h): errors, memory, the launch wire, arguments, settings. */
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

/** Records code and a printf-style detail as this thread's last error; returns code.
 *  The last OS error number becomes 0. Nothing is recorded while muted. */
int mp__err(int code, const char *fmt, ...) MP__PRINTF(2, 3);
/** As mp__err, for an error the OS reported as oserr (errno / GetLastError), which
 *  mp_last_os_error() then gives. */
int mp__err_os(int code, int oserr, const char *fmt, ...) MP__PRINTF(3, 4);
/** Records code with the detail "<fmt...>: <the last error's detail>": context added
 *  to an error a callee recorded (its OS error number is kept). */
int mp__err_wrap(int code, const char *fmt, ...) MP__PRINTF(2, 3);
/** Clears this thread's detail message. */
void mp__err_clear(void);
/** While muted (nestable), mp__err* record nothing and only return the code: for
 *  predicates and best-effort work, which must not overwrite the caller's last error
 *  (nor pay for formatting a message nobody reads). */
void mp__err_mute(void);
void mp__err_unmute(void);

/* ---- timeouts ----
 * Seconds: MP_FOREVER (+infinity) waits forever; a negative timeout or NaN means "do
 * not wait" (Python's). Deadlines are absolute mp__os_monotonic() times, MP_FOREVER
 * for none (mp__deadline in core/os.h). */

/** The timeout a caller gave, made canonical: >= 0, or MP_FOREVER. */
static inline double mp__timeout(double t) { return t > 0 ? t : 0.0; }
/** Whether a timeout or deadline is MP_FOREVER. */
static inline bool mp__forever(double t) { return t == MP_FOREVER; }

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
/** Room for n more bytes at the end (len unchanged): a pointer to them, or NULL (the
 *  buffer's err says why). */
void *mp__buf_reserve(mp__buf *b, size_t n);
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
struct mp__block;
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
    /** rebuild closes all its handles when it fails (a type whose description nests
     *  an argument list: the nested objects may have closed theirs already). */
    bool closes_on_failure;
    /** The shared blocks (core/block.h) reduce describes, at most 2, into out; NULL: none.
     *  The argument list sends the arenas of arena slots once, ahead of its items. */
    size_t (*blocks)(const void *obj, struct mp__block **out);
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
/** Whether the args carry library objects, whose rebuild in a child may fail (a block
 *  unlinked meanwhile); values and raw handles cannot. */
bool mp__args_has_objects(const mp_args *a);
/** OS handles the args will hand to a child (raw handles and objects' handles). */
size_t mp__args_handle_count(const mp_args *a);
/** A deep copy (OS handles are copied as values: not duplicated, not owned). */
int mp__args_copy(const mp_args *src, mp_args **out);
/** Moves a's items from index from on into a new list *tail (with what a owns of
 *  them); a keeps the ones before. */
int mp__args_split(mp_args *a, size_t from, mp_args **tail);
/** Appends a copy of from's items to a (as mp__args_copy copies). */
int mp__args_extend(mp_args *a, const mp_args *from);

/** A copy that owns its objects and OS handles, rebuilt in this process from duplicated
 *  handles (as a dummy child's are): it outlives src and src's objects. */
int mp__args_clone(const mp_args *src, mp_args **out);
/** Decodes a list nested in an object's description (encoded by mp__args_encode with
 *  indexes from 0 into handles): on success the handles are the list's, on failure they
 *  are all closed (its objtype sets closes_on_failure). The handles themselves are
 *  used, not copies: a fork child's rebuilt blocks must see their own numbers. */
int mp__args_rebuild_nested(mp__rd *r, const mp_os_handle *handles, size_t nhandles, mp_args **out);

/** In a forked child: forgets the values' node depot, which another thread of the
 *  parent may have been changing at the fork (its nodes are left to the child's exit). */
void mp__value_after_fork_child(void);

/* ---- function identity (OS layer, resolved through core/launch.c) ---- */
typedef struct mp__fnref {
    char *module;    /* path of the module (executable or shared library) */
    uint64_t offset; /* fn - module base */
    char *build;     /* identity of the build: GNU build-id, or size/mtime, or PE stamp */
} mp__fnref;
void mp__fnref_clear(mp__fnref *r);

/* ---- process-wide settings and state (core/runtime.c) ---- */

/** The OS layer and the authkey (mp_init; later calls do nothing). */
int mp__runtime_init(void);
/** Registers fn to run at the process's exit (mp__shutdown), once however often it is
 *  added; before the daemonic children are stopped. */
int mp__exit_hook_add(void (*fn)(void));
/** The logging settings a child inherits (core/log.c), and their setting in the child. */
void mp__log_settings(int *level, bool *to_stderr);
void mp__log_inherit(int level, bool to_stderr);
/** Who logs: core/process.c tells the logger how to name the current process. */
typedef const char *(*mp__log_namer)(void);
void mp__log_set_namer(mp__log_namer fn);
/** A fork child drops the finalizers it copied from its parent. */
void mp__finalize_after_fork_child(void);
void mp__exit_hooks_run(void);
/** Global lock for process bookkeeping (recursive, re-made in a forked child). */
void mp__lock(void);
void mp__unlock(void);
/** The executable exec-based backends run. */
const char *mp__executable(void);
/** The library's 32-byte authkey (random, inherited by children). */
const unsigned char *mp__authkey(void);
void mp__set_authkey(const unsigned char key[32]);

/** Asks for the line at a to be brought in: a hint for loops that read (rw 0) or
 *  write (rw 1) memory they reach through pointers, where the hardware cannot guess. */
#if defined(__GNUC__) || defined(__clang__)
#define MP__PREFETCH(a, rw) __builtin_prefetch((a), (rw))
#else
#define MP__PREFETCH(a, rw) ((void)(a))
#endif

/** One pause in a spin-wait: lets the other hyperthread run, costs no system call. */
static inline void mp__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
