/* multiproc shared state: Value, Array, RawValue, RawArray (multiprocessing.sharedctypes),
 * SharedMemory and ShareableList (multiprocessing.shared_memory). Included by
 * multiproc.h.
 *
 * Values and arrays live in an unnamed shared block (posix: a memfd; Windows: an
 * unnamed section) and travel to children as process arguments: nothing ever appears in
 * /dev/shm for them. SharedMemory blocks are named so unrelated processes (also Python
 * ones) can attach: posix shm_open names (/dev/shm), Windows named file mappings.
 *
 * Lifetime of named blocks: posix names outlive processes, so a block the creator
 * tracks (the default) is unlinked once every tracking process that created or
 * attached it (of any program of the same user) has ended without unlinking it,
 * however they ended (also kill -9 of the whole tree) — but never while a process that
 * tracks it is alive (CPython's resource tracker unlinks blocks other live processes
 * use: gh-82300). Closing does not end tracking; ending the process or unlinking does.
 * A block created untracked or by Python is never unlinked for you. untracked = true
 * opts out (Python 3.13's track=False). The mechanism, a per-user daemon outside the
 * process tree, is described in docs/architecture.md. A setuid/setgid program cannot
 * track (the daemon would act with its privileges for an unprivileged user): a tracked
 * create or attach there is MP_EPERM; pass untracked = true and unlink the block
 * yourself. A tracker that does not answer within 10 s makes that open MP_ETIMEDOUT;
 * the blocks this process tracks already stay tracked. Windows: a named mapping
 * vanishes with its last handle, so nothing can leak and unlink does nothing (as in
 * Python).
 *
 * Typecodes are Python's array/ctypes codes with the native C sizes:
 *   'c' char, 'b' signed char, 'B' unsigned char, 'h' short, 'H' unsigned short,
 *   'i' int, 'I' unsigned int, 'l' long, 'L' unsigned long, 'q' long long,
 *   'Q' unsigned long long, 'f' float, 'd' double.
 * Any other code is MP_EINVAL. */
#ifndef MULTIPROC_SHARED_H
#define MULTIPROC_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/export.h"
#include "multiproc/sync.h"
#include "multiproc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in multiproc.h as well (C11 allows the repetition): this header stands alone. */
typedef struct mp_args mp_args;
typedef struct mp_context mp_context;

/** Size in bytes of one item of typecode, 0 for an unknown code. */
MP_API size_t mp_typecode_size(char typecode);

/* ---- Value and Array (sharedctypes) -------------------------------------------- */

/** How a Value or Array is synchronised: Python's lock argument. */
typedef enum mp_lock_mode {
    MP_LOCK_NEW = 0,  /* lock=True: a new RLock (the default) */
    MP_LOCK_NONE = 1, /* lock=False: raw, no lock (as RawValue / RawArray) */
    MP_LOCK_GIVEN = 2 /* lock=<Lock or RLock>: the given one (kept alive by the object) */
} mp_lock_mode;

/** A shared array of items of one typecode; a Value is an array of one item. */
typedef struct mp_shared_array mp_shared_array;

/** Python's Value(typecode, init, lock): init points to one item of the typecode's C
 *  type (NULL: zero). lock is used only with MP_LOCK_GIVEN. Free with
 *  mp_shared_array_free. */
MP_API int mp_shared_value_new(mp_context *ctx, char typecode, const void *init, mp_lock_mode mode,
                               mp_lock *lock, mp_shared_array **out);
/** Python's RawValue(typecode, init). */
MP_API int mp_raw_value_new(mp_context *ctx, char typecode, const void *init,
                            mp_shared_array **out);
/** Python's Array(typecode, size_or_initializer, lock): n items, copied from init when
 *  it is not NULL (n items of the C type), else zero. At most 1 GiB of items
 *  (MP_EINVAL beyond). */
MP_API int mp_shared_array_new(mp_context *ctx, char typecode, size_t n, const void *init,
                               mp_lock_mode mode, mp_lock *lock, mp_shared_array **out);
/** Python's RawArray(typecode, size_or_initializer). */
MP_API int mp_raw_array_new(mp_context *ctx, char typecode, size_t n, const void *init,
                            mp_shared_array **out);
/** sharedctypes.copy(obj): a new raw object with a copy of the contents. */
MP_API int mp_shared_array_copy(mp_shared_array *a, mp_shared_array **out);
/** sharedctypes.synchronized(obj, lock): a new object over the same memory with the
 *  given lock (NULL: a new RLock). */
MP_API int mp_shared_array_synchronized(mp_shared_array *a, mp_lock *lock, mp_shared_array **out);
/** NULL is fine; the memory lives on in the other processes that hold it. */
MP_API void mp_shared_array_free(mp_shared_array *a);

MP_API char mp_shared_array_typecode(const mp_shared_array *a);
/** Number of items (1 for a Value). */
MP_API size_t mp_shared_array_len(const mp_shared_array *a);
/** Python's get_lock(): the lock (borrowed), NULL for a raw object. */
MP_API mp_lock *mp_shared_array_get_lock(const mp_shared_array *a);
/** Python's get_obj(): the shared memory itself (len * item size bytes). Access it
 *  under the lock when other processes write. */
MP_API void *mp_shared_array_get_obj(const mp_shared_array *a);

/** Item i into *out (one item of the C type), under the lock when there is one.
 *  MP_EINVAL for i out of range. */
MP_API int mp_shared_array_get(mp_shared_array *a, size_t i, void *out);
MP_API int mp_shared_array_set(mp_shared_array *a, size_t i, const void *in);
/** Items [start, stop) into out / from in (stop - start items), under the lock.
 *  MP_EINVAL when start > stop or stop > len. */
MP_API int mp_shared_array_get_slice(mp_shared_array *a, size_t start, size_t stop, void *out);
MP_API int mp_shared_array_set_slice(mp_shared_array *a, size_t start, size_t stop, const void *in);
/** Item i converted, as Python's int / float view of it: integer codes and 'c' give
 *  int64 (an unsigned 64-bit item above INT64_MAX is MP_EINVAL; 'c' is its byte value
 *  0..255), float codes double. Setting checks the range of the typecode (MP_EINVAL
 *  when it does not fit, as Python's OverflowError). The int calls on a float code and
 *  the double calls on an integer code are MP_EINVAL, except set_int on 'f'/'d', which
 *  stores the converted value (as Python assigning an int to a c_double). A plain Lock
 *  given as the lock and already held by the calling thread is MP_ESTATE for every
 *  accessor (Python would deadlock). */
MP_API int mp_shared_array_get_int(mp_shared_array *a, size_t i, int64_t *out);
MP_API int mp_shared_array_set_int(mp_shared_array *a, size_t i, int64_t v);
MP_API int mp_shared_array_get_double(mp_shared_array *a, size_t i, double *out);
MP_API int mp_shared_array_set_double(mp_shared_array *a, size_t i, double v);

MP_API int mp_args_add_shared_array(mp_args *a, mp_shared_array *s);
/** In a child: the object at i ("shared_array"), borrowed (freed with the args). */
MP_API mp_shared_array *mp_args_shared_array(const mp_args *a, size_t i);

/* ---- SharedMemory -------------------------------------------------------------- */

typedef struct mp_shm mp_shm;

/** Options for mp_shm_open; all-zero means Python's defaults (attach by name,
 *  tracked). */
typedef struct mp_shm_opts {
    const char *name; /* 1..255 bytes (Linux's NAME_MAX, as Python), no '/' anywhere
                          (MP_EINVAL otherwise); NULL with create: a new "psm_..." name */
    bool create;      /* create a new block (MP_EEXIST when the name exists) */
    size_t size;      /* with create: > 0 (MP_EINVAL otherwise); ignored when attaching */
    bool untracked;   /* Python's track=False: never unlinked for you */
} mp_shm_opts;

/** Python's SharedMemory(name, create, size, track): attaching a name that does not
 *  exist is MP_ENOENT. Free with mp_shm_free. */
MP_API int mp_shm_open(const mp_shm_opts *opts, mp_shm **out);
/** The name (without '/'), as Python's .name; owned by s. */
MP_API const char *mp_shm_name(const mp_shm *s);
/** The mapped size as the OS reports it (Python's .size; Windows rounds up to pages). */
MP_API size_t mp_shm_size(const mp_shm *s);
/** The size asked for at creation (the mapped size when attached). */
MP_API size_t mp_shm_requested_size(const mp_shm *s);
/** The mapping (Python's .buf); NULL once closed. */
MP_API void *mp_shm_buf(const mp_shm *s);
/** Unmaps; the block stays for others. Twice is fine. */
MP_API int mp_shm_close(mp_shm *s);
/** Removes the name (posix; nothing on Windows): others that attached keep their
 *  mapping. MP_ENOENT when already gone. Call once, from one process. */
MP_API int mp_shm_unlink(mp_shm *s);
/** Closes (if open) and frees s. NULL is fine. Does not unlink. */
MP_API void mp_shm_free(mp_shm *s);

MP_API int mp_args_add_shm(mp_args *a, mp_shm *s);
/** In a child: the block at i ("shm"), attached, borrowed (freed with the args). */
MP_API mp_shm *mp_args_shm(const mp_args *a, size_t i);

/* ---- ShareableList -------------------------------------------------------------- */

/** A fixed-length list of int, float, bool, str, bytes and None items in a SharedMemory
 *  block, in Python's ShareableList layout, so Python can attach ours and we theirs. */
typedef struct mp_shareable_list mp_shareable_list;

/** Creates one from a list or tuple value (items of the kinds above; MP_ENOTSUP for
 *  others; MP_EINVAL for a str that is not UTF-8 Python's codec takes, surrogates
 *  included), in a new block named name (NULL: generated). */
MP_API int mp_shareable_list_new(const mp_value *items, const char *name, mp_shareable_list **out);
/** Attaches an existing one by name. */
MP_API int mp_shareable_list_attach(const char *name, mp_shareable_list **out);
MP_API size_t mp_shareable_list_len(const mp_shareable_list *l);
/** Item i as a new value (free with mp_value_free). MP_EPROTO for a slot that does not
 *  decode, also a str slot that is not UTF-8 (Python: UnicodeDecodeError). */
MP_API int mp_shareable_list_get(mp_shareable_list *l, size_t i, mp_value **out);
/** Replaces item i. As in Python, a str or bytes item may not grow past the slot
 *  allocated at creation (MP_ETOOBIG); a str must be UTF-8 (MP_EINVAL, as _new). */
MP_API int mp_shareable_list_set(mp_shareable_list *l, size_t i, const mp_value *v);
/** Python's count(value) and index(value) (MP_ENOENT when absent). */
MP_API int mp_shareable_list_count(mp_shareable_list *l, const mp_value *v, size_t *n);
MP_API int mp_shareable_list_index(mp_shareable_list *l, const mp_value *v, size_t *i);
/** Its block (borrowed): name, close, unlink. */
MP_API mp_shm *mp_shareable_list_shm(const mp_shareable_list *l);
/** Frees l and closes its block (does not unlink). NULL is fine. */
MP_API void mp_shareable_list_free(mp_shareable_list *l);

#ifdef __cplusplus
}
#endif
#endif
