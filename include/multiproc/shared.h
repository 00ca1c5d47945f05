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
 *  mp_shared_array_free.
 *  @retval MP_EINVAL  out is NULL, an unknown typecode or lock mode, or MP_LOCK_GIVEN without a
 *      lock.
 *  @retval MP_ENOMEM  out of memory or shared memory.
 *  @retval MP_ELIMIT  out of descriptors or handles for a new shared arena.
 *  @retval MP_ESYS    the OS refused the shared memory (the message names the call). */
MP_API int mp_shared_value_new(mp_context *ctx, char typecode, const void *init, mp_lock_mode mode,
                               mp_lock *lock, mp_shared_array **out);
/** Python's RawValue(typecode, init).
 *  @retval MP_EINVAL  out is NULL, or an unknown typecode.
 *  @par Other errors
 *  As mp_shared_value_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_raw_value_new(mp_context *ctx, char typecode, const void *init,
                            mp_shared_array **out);
/** Python's Array(typecode, size_or_initializer, lock): n items, copied from init when
 *  it is not NULL (n items of the C type), else zero. At most 1 GiB of items
 *  (MP_EINVAL beyond).
 *  @retval MP_EINVAL  out is NULL, an unknown typecode or lock mode, MP_LOCK_GIVEN without a
 *      lock, or more than 1 GiB of items.
 *  @par Other errors
 *  As mp_shared_value_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_shared_array_new(mp_context *ctx, char typecode, size_t n, const void *init,
                               mp_lock_mode mode, mp_lock *lock, mp_shared_array **out);
/** Python's RawArray(typecode, size_or_initializer).
 *  @retval MP_EINVAL  out is NULL, an unknown typecode, or more than 1 GiB of items.
 *  @par Other errors
 *  As mp_shared_value_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_raw_array_new(mp_context *ctx, char typecode, size_t n, const void *init,
                            mp_shared_array **out);
/** sharedctypes.copy(obj): a new raw object with a copy of the contents.
 *  @retval MP_EINVAL  a or out is NULL.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread.
 *  @par Other errors
 *  As mp_shared_value_new (MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_shared_array_copy(mp_shared_array *a, mp_shared_array **out);
/** sharedctypes.synchronized(obj, lock): a new object over the same memory with the
 *  given lock (NULL: a new RLock).
 *  @retval MP_EINVAL  a or out is NULL.
 *  @retval MP_ENOMEM  out of memory (also for the new RLock).
 *  @retval MP_ELIMIT  out of descriptors or handles for the new RLock.
 *  @retval MP_ESYS    the OS refused the new RLock's shared memory. */
MP_API int mp_shared_array_synchronized(mp_shared_array *a, mp_lock *lock, mp_shared_array **out);
/** NULL is fine; the memory lives on in the other processes that hold it. */
MP_API void mp_shared_array_free(mp_shared_array *a);

/** The typecode; 0 for NULL. */
MP_API char mp_shared_array_typecode(const mp_shared_array *a);
/** Number of items (1 for a Value).
 *  @return 0 for NULL. */
MP_API size_t mp_shared_array_len(const mp_shared_array *a);
/** Python's get_lock(): the lock (borrowed), NULL for a raw object. */
MP_API mp_lock *mp_shared_array_get_lock(const mp_shared_array *a);
/** Python's get_obj(): the shared memory itself (len * item size bytes). Access it
 *  under the lock when other processes write.
 *  @return NULL for NULL. */
MP_API void *mp_shared_array_get_obj(const mp_shared_array *a);

/** Item i into *out (one item of the C type), under the lock when there is one.
 *  MP_EINVAL for i out of range.
 *  @retval MP_EINVAL  a or out is NULL, or i is out of range.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_get(mp_shared_array *a, size_t i, void *out);
/** Item i from *in (one item of the C type), under the lock when there is one.
 *  @retval MP_EINVAL  a or in is NULL, or i is out of range.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_set(mp_shared_array *a, size_t i, const void *in);
/** Items [start, stop) into out / from in (stop - start items), under the lock.
 *  MP_EINVAL when start > stop or stop > len.
 *  @retval MP_EINVAL  a is NULL, the range is bad, or out is NULL with stop > start.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_get_slice(mp_shared_array *a, size_t start, size_t stop, void *out);
/** Items [start, stop) from in, under the lock.
 *  @retval MP_EINVAL  a is NULL, the range is bad, or in is NULL with stop > start.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_set_slice(mp_shared_array *a, size_t start, size_t stop, const void *in);
/** Item i converted, as Python's int / float view of it: integer codes and 'c' give
 *  int64 (an unsigned 64-bit item above INT64_MAX is MP_EINVAL; 'c' is its byte value
 *  0..255), float codes double. Setting checks the range of the typecode (MP_EINVAL
 *  when it does not fit, as Python's OverflowError). The int calls on a float code and
 *  the double calls on an integer code are MP_EINVAL, except set_int on 'f'/'d', which
 *  stores the converted value (as Python assigning an int to a c_double). A plain Lock
 *  given as the lock and already held by the calling thread is MP_ESTATE for every
 *  accessor (Python would deadlock).
 *  @retval MP_EINVAL  a or out is NULL, i out of range, a float typecode, or an item above
 *      INT64_MAX.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_get_int(mp_shared_array *a, size_t i, int64_t *out);
/** Sets item i from an int64, range-checked for the typecode (see mp_shared_array_get_int).
 *  @retval MP_EINVAL  a is NULL, i out of range, or v does not fit the typecode.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_set_int(mp_shared_array *a, size_t i, int64_t v);
/** Item i as a double, for 'f' and 'd' (see mp_shared_array_get_int).
 *  @retval MP_EINVAL  a or out is NULL, i out of range, or an integer typecode.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_get_double(mp_shared_array *a, size_t i, double *out);
/** Sets item i, for 'f' and 'd' (see mp_shared_array_get_int).
 *  @retval MP_EINVAL  a is NULL, i out of range, an integer typecode, or v out of range for 'f'.
 *  @retval MP_ESTATE  a's plain Lock is held by the calling thread. */
MP_API int mp_shared_array_set_double(mp_shared_array *a, size_t i, double v);

/** Adds a Value or Array (with its lock) to a child's arguments; a must live until the process
 *  has started.
 *  @retval MP_EINVAL  a or s is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_shared_array(mp_args *a, mp_shared_array *s);
/** In a child: the object at i ("shared_array"), borrowed (freed with the args).
 *  @return NULL when i is out of range or not a shared array. */
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
 *  exist is MP_ENOENT. Free with mp_shm_free.
 *  @retval MP_EINVAL  out or opts is NULL, no name without create, size 0 with create, or a bad
 *      name (empty, over 255 bytes, a '/').
 *  @retval MP_ENOENT  attaching a name that does not exist.
 *  @retval MP_EEXIST  creating a name that exists (or no free generated name after 100 tries).
 *  @retval MP_EPERM   no permission, or a tracked open in a setuid/setgid program.
 *  @retval MP_ETIMEDOUT the tracker did not answer within 10 s.
 *  @retval MP_ETOOBIG the block is too big to map here.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_shm_open(const mp_shm_opts *opts, mp_shm **out);
/** The name (without '/'), as Python's .name; owned by s.
 *  @return NULL for NULL. */
MP_API const char *mp_shm_name(const mp_shm *s);
/** The mapped size as the OS reports it (Python's .size; Windows rounds up to pages).
 *  @return 0 for NULL. */
MP_API size_t mp_shm_size(const mp_shm *s);
/** The size asked for at creation (the mapped size when attached).
 *  @return 0 for NULL. */
MP_API size_t mp_shm_requested_size(const mp_shm *s);
/** The mapping (Python's .buf); NULL once closed. */
MP_API void *mp_shm_buf(const mp_shm *s);
/** Unmaps; the block stays for others. Twice is fine.
 *  @retval MP_EINVAL  s is NULL. */
MP_API int mp_shm_close(mp_shm *s);
/** Removes the name (posix; nothing on Windows): others that attached keep their
 *  mapping. MP_ENOENT when already gone. Call once, from one process.
 *  @retval MP_EINVAL  s is NULL.
 *  @retval MP_ENOENT  already unlinked.
 *  @retval MP_EPERM   no permission.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_shm_unlink(mp_shm *s);
/** Closes (if open) and frees s. NULL is fine. Does not unlink. */
MP_API void mp_shm_free(mp_shm *s);

/** Adds a SharedMemory block to a child's arguments (the child attaches it by name).
 *  @retval MP_EINVAL  a or s is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_shm(mp_args *a, mp_shm *s);
/** In a child: the block at i ("shm"), attached, borrowed (freed with the args).
 *  @return NULL when i is out of range or not a block. */
MP_API mp_shm *mp_args_shm(const mp_args *a, size_t i);

/* ---- ShareableList -------------------------------------------------------------- */

/** A fixed-length list of int, float, bool, str, bytes and None items in a SharedMemory
 *  block, in Python's ShareableList layout, so Python can attach ours and we theirs. */
typedef struct mp_shareable_list mp_shareable_list;

/** Creates one from a list or tuple value (items of the kinds above; MP_ENOTSUP for
 *  others; MP_EINVAL for a str that is not UTF-8 Python's codec takes, surrogates
 *  included), in a new block named name (NULL: generated).
 *  @retval MP_EINVAL  out is NULL, items is not a list or tuple, or a str is not UTF-8.
 *  @retval MP_ENOTSUP an item of another kind.
 *  @retval MP_ETOOBIG a str or bytes item of 9999990 bytes or more, or too many items.
 *  @par Other errors
 *  As mp_shm_open with create (MP_EEXIST for a name in use, MP_EINVAL for a bad name, MP_ENOMEM,
 *  MP_EPERM, MP_ETIMEDOUT, MP_ELIMIT, MP_ESYS). */
MP_API int mp_shareable_list_new(const mp_value *items, const char *name, mp_shareable_list **out);
/** Attaches an existing one by name.
 *  @retval MP_EINVAL  name or out is NULL, or a bad name.
 *  @retval MP_EPROTO  the block does not hold a shareable list.
 *  @par Other errors
 *  As mp_shm_open when attaching (MP_ENOENT, MP_EPERM, MP_ETIMEDOUT, MP_ENOMEM, MP_ELIMIT,
 *  MP_ESYS). */
MP_API int mp_shareable_list_attach(const char *name, mp_shareable_list **out);
/** Number of items; 0 for NULL. */
MP_API size_t mp_shareable_list_len(const mp_shareable_list *l);
/** Item i as a new value (free with mp_value_free). MP_EPROTO for a slot that does not
 *  decode, also a str slot that is not UTF-8 (Python: UnicodeDecodeError).
 *  @retval MP_EINVAL  l or out is NULL, or i out of range.
 *  @retval MP_ECLOSED the list's block was closed.
 *  @retval MP_EPROTO  the slot does not decode (see above).
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_shareable_list_get(mp_shareable_list *l, size_t i, mp_value **out);
/** Replaces item i. As in Python, a str or bytes item may not grow past the slot
 *  allocated at creation (MP_ETOOBIG); a str must be UTF-8 (MP_EINVAL, as _new).
 *  @retval MP_EINVAL  l or v is NULL, i out of range, or a str that is not UTF-8.
 *  @retval MP_ECLOSED the list's block was closed.
 *  @retval MP_ENOTSUP v is of a kind the list cannot hold.
 *  @retval MP_ETOOBIG a str or bytes longer than the slot, or a number in a slot under 8 bytes
 *      (a foreign block). */
MP_API int mp_shareable_list_set(mp_shareable_list *l, size_t i, const mp_value *v);
/** Python's count(value) and index(value) (MP_ENOENT when absent).
 *  @retval MP_EINVAL  l, v or n is NULL.
 *  @retval MP_ECLOSED the list's block was closed (and it has items).
 *  @retval MP_EPROTO  a slot does not decode. */
MP_API int mp_shareable_list_count(mp_shareable_list *l, const mp_value *v, size_t *n);
/** Python's index(value): the position of the first item equal to v.
 *  @retval MP_ENOENT  no item equals v.
 *  @retval MP_EINVAL  l, v or i is NULL.
 *  @retval MP_ECLOSED the list's block was closed (and it has items).
 *  @retval MP_EPROTO  a slot does not decode. */
MP_API int mp_shareable_list_index(mp_shareable_list *l, const mp_value *v, size_t *i);
/** Its block (borrowed): name, close, unlink.
 *  @return NULL for NULL. */
MP_API mp_shm *mp_shareable_list_shm(const mp_shareable_list *l);
/** Frees l and closes its block (does not unlink). NULL is fine. */
MP_API void mp_shareable_list_free(mp_shareable_list *l);

#ifdef __cplusplus
}
#endif
#endif
