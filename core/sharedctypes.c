/* Value, Array, RawValue, RawArray, copy and synchronized (multiprocessing.sharedctypes)
 * over the unnamed shared blocks of core/sync.c: a memfd / unnamed section that goes
 * with its last user, so nothing can be left in /dev/shm. The optional lock is a
 * separate Lock/RLock object, nested in the description as Condition nests its lock. */
#include <float.h>
#include <limits.h>
#include <string.h>

#include "block.h"
#include "shared_internal.h"
#include "sync_internal.h"

/* Items start on a cache line of their own, past the header. */
enum { ITEMS_OFF = 64 };
/* mp__block_rebuild refuses descriptions of blocks above 1 GiB. */
#define ITEMS_MAX (((size_t)1 << 30) - ITEMS_OFF)

typedef struct arr_shared {
    mp__sync_hdr hdr;
    uint32_t typecode;
    uint32_t itemsize;
    uint64_t n;
} arr_shared;

_Static_assert(sizeof(arr_shared) <= ITEMS_OFF, "array header too big");

struct mp_shared_array {
    mp__block *blk;
    unsigned char *items;
    size_t n, isz;
    char tc;
    mp_lock *lock; /* a reference of ours; NULL: raw */
};

enum tkind { T_CHAR, T_SIGNED, T_UNSIGNED, T_FLOAT };

typedef struct tinfo {
    char code;
    unsigned char kind;
    unsigned char size;
} tinfo;

static const tinfo g_types[] = {
    {'c', T_CHAR, sizeof(char)},
    {'b', T_SIGNED, sizeof(signed char)},
    {'B', T_UNSIGNED, sizeof(unsigned char)},
    {'h', T_SIGNED, sizeof(short)},
    {'H', T_UNSIGNED, sizeof(unsigned short)},
    {'i', T_SIGNED, sizeof(int)},
    {'I', T_UNSIGNED, sizeof(unsigned int)},
    {'l', T_SIGNED, sizeof(long)},
    {'L', T_UNSIGNED, sizeof(unsigned long)},
    {'q', T_SIGNED, sizeof(long long)},
    {'Q', T_UNSIGNED, sizeof(unsigned long long)},
    {'f', T_FLOAT, sizeof(float)},
    {'d', T_FLOAT, sizeof(double)},
};

static const tinfo *type_of(char code) {
    for (size_t i = 0; i < sizeof g_types / sizeof g_types[0]; i++)
        if (g_types[i].code == code) return &g_types[i];
    return NULL;
}

size_t mp_typecode_size(char typecode) {
    const tinfo *t = type_of(typecode);
    return t ? t->size : 0;
}

/* The caller passes the shape it checked: the shared header is never read again, as
 * another process holding the block could change it after the check. */
static mp_shared_array *wrap(mp__block *b, mp_lock *lock, char tc, const tinfo *t, size_t n) {
    mp_shared_array *a = mp__calloc(1, sizeof *a);
    if (!a) return NULL;
    a->blk = b;
    a->items = (unsigned char *)b->base + ITEMS_OFF;
    a->n = n;
    a->isz = t->size;
    a->tc = tc;
    a->lock = lock;
    return a;
}

/* The lock an object gets for mode: a new reference in *out (NULL for none). */
static int lock_for(mp_context *ctx, mp_lock_mode mode, mp_lock *given, const char *fn,
                    mp_lock **out) {
    *out = NULL;
    switch (mode) {
    case MP_LOCK_NONE:
        return 0;
    case MP_LOCK_NEW:
        return mp_rlock_new(ctx, out);
    case MP_LOCK_GIVEN:
        if (!given) return mp__err(MP_EINVAL, "%s: MP_LOCK_GIVEN needs a lock", fn);
        mp__lock_ref(given);
        *out = given;
        return 0;
    }
    return mp__err(MP_EINVAL, "%s: unknown lock mode %d", fn, (int)mode);
}

static int array_create(mp_context *ctx, char typecode, size_t n, const void *init,
                        mp_lock_mode mode, mp_lock *given, const char *fn, mp_shared_array **out) {
    if (!out) return mp__err(MP_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    const tinfo *t = type_of(typecode);
    if (!t)
        return mp__err(MP_EINVAL, "%s: unknown typecode '%c' (0x%02x)", fn,
                       typecode >= 0x20 && typecode < 0x7f ? typecode : '?',
                       (unsigned)(unsigned char)typecode);
    if (n > ITEMS_MAX / t->size)
        return mp__err(MP_EINVAL, "%s: %zu items of '%c' exceed the limit of %zu bytes", fn, n,
                       typecode, (size_t)ITEMS_MAX);
    mp_lock *lock;
    int rc = lock_for(ctx, mode, given, fn, &lock);
    if (rc) return rc;
    mp__block *b;
    if ((rc = mp__block_alloc(MP__K_SHARED_ARRAY, ITEMS_OFF + n * t->size, &b)) != 0) {
        mp_lock_free(lock);
        return rc;
    }
    arr_shared *s = b->base;
    s->typecode = (unsigned char)typecode;
    s->itemsize = t->size;
    s->n = n;
    if (init && n) memcpy((unsigned char *)b->base + ITEMS_OFF, init, n * t->size);
    mp_shared_array *a = wrap(b, lock, typecode, t, n);
    if (!a) {
        mp__block_release(b);
        mp_lock_free(lock);
        return mp__err(MP_ENOMEM, "%s: out of memory", fn);
    }
    *out = a;
    return 0;
}

int mp_shared_value_new(mp_context *ctx, char typecode, const void *init, mp_lock_mode mode,
                        mp_lock *lock, mp_shared_array **out) {
    return array_create(ctx, typecode, 1, init, mode, lock, "mp_shared_value_new", out);
}

int mp_raw_value_new(mp_context *ctx, char typecode, const void *init, mp_shared_array **out) {
    return array_create(ctx, typecode, 1, init, MP_LOCK_NONE, NULL, "mp_raw_value_new", out);
}

int mp_shared_array_new(mp_context *ctx, char typecode, size_t n, const void *init,
                        mp_lock_mode mode, mp_lock *lock, mp_shared_array **out) {
    return array_create(ctx, typecode, n, init, mode, lock, "mp_shared_array_new", out);
}

int mp_raw_array_new(mp_context *ctx, char typecode, size_t n, const void *init,
                     mp_shared_array **out) {
    return array_create(ctx, typecode, n, init, MP_LOCK_NONE, NULL, "mp_raw_array_new", out);
}

/* Takes a's lock for an access. A plain Lock this thread holds already would wait for
 * itself forever: a clear error instead (Python would hang). A holder that died leaves
 * the lock to us (MP_EOWNERDEAD): the access goes ahead, as the items are plain data. */
static int guard(mp_shared_array *a, const char *fn) {
    if (!a->lock) return 0;
    if (!mp_lock_is_recursive(a->lock) && mp_lock_is_mine(a->lock))
        return mp__err(MP_ESTATE, "%s: this thread holds the (non-recursive) lock already", fn);
    int rc = mp_lock_acquire(a->lock, MP_FOREVER);
    return rc == MP_EOWNERDEAD ? 0 : rc;
}

static void unguard(mp_shared_array *a) {
    if (a->lock) mp_lock_release(a->lock);
}

int mp_shared_array_copy(mp_shared_array *a, mp_shared_array **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_shared_array_copy: out is NULL");
    *out = NULL;
    if (!a) return mp__err(MP_EINVAL, "mp_shared_array_copy: array is NULL");
    mp_shared_array *c;
    int rc = array_create(NULL, a->tc, a->n, NULL, MP_LOCK_NONE, NULL, "mp_shared_array_copy", &c);
    if (rc) return rc;
    if ((rc = guard(a, "mp_shared_array_copy")) != 0) {
        mp_shared_array_free(c);
        return rc;
    }
    memcpy(c->items, a->items, a->n * a->isz);
    unguard(a);
    *out = c;
    return 0;
}

int mp_shared_array_synchronized(mp_shared_array *a, mp_lock *lock, mp_shared_array **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_shared_array_synchronized: out is NULL");
    *out = NULL;
    if (!a) return mp__err(MP_EINVAL, "mp_shared_array_synchronized: array is NULL");
    mp_lock *l;
    int rc = lock_for(NULL, lock ? MP_LOCK_GIVEN : MP_LOCK_NEW, lock,
                      "mp_shared_array_synchronized", &l);
    if (rc) return rc;
    mp_shared_array *s = wrap(a->blk, l, a->tc, type_of(a->tc), a->n);
    if (!s) {
        mp_lock_free(l);
        return mp__err(MP_ENOMEM, "mp_shared_array_synchronized: out of memory");
    }
    mp__block_ref(a->blk);
    *out = s;
    return 0;
}

void mp_shared_array_free(mp_shared_array *a) {
    if (!a) return;
    mp__block_release(a->blk);
    mp_lock_free(a->lock);
    mp__free(a);
}

char mp_shared_array_typecode(const mp_shared_array *a) { return a ? a->tc : 0; }
size_t mp_shared_array_len(const mp_shared_array *a) { return a ? a->n : 0; }
mp_lock *mp_shared_array_get_lock(const mp_shared_array *a) { return a ? a->lock : NULL; }
void *mp_shared_array_get_obj(const mp_shared_array *a) { return a ? a->items : NULL; }

static int check_index(const mp_shared_array *a, size_t i, const char *fn) {
    if (!a) return mp__err(MP_EINVAL, "%s: array is NULL", fn);
    if (i >= a->n)
        return mp__err(MP_EINVAL, "%s: index %zu out of range (length %zu)", fn, i, a->n);
    return 0;
}

static int check_slice(const mp_shared_array *a, size_t start, size_t stop, const void *p,
                       const char *fn) {
    if (!a) return mp__err(MP_EINVAL, "%s: array is NULL", fn);
    if (start > stop || stop > a->n)
        return mp__err(MP_EINVAL, "%s: slice [%zu, %zu) out of range (length %zu)", fn, start, stop,
                       a->n);
    if (!p && stop > start) return mp__err(MP_EINVAL, "%s: buffer is NULL", fn);
    return 0;
}

static int read_items(mp_shared_array *a, size_t start, size_t stop, void *to, const char *fn) {
    int rc = guard(a, fn);
    if (rc) return rc;
    memcpy(to, a->items + start * a->isz, (stop - start) * a->isz);
    unguard(a);
    return 0;
}

static int write_items(mp_shared_array *a, size_t start, size_t stop, const void *from,
                       const char *fn) {
    int rc = guard(a, fn);
    if (rc) return rc;
    memcpy(a->items + start * a->isz, from, (stop - start) * a->isz);
    unguard(a);
    return 0;
}

int mp_shared_array_get(mp_shared_array *a, size_t i, void *out) {
    int rc = check_index(a, i, "mp_shared_array_get");
    if (!rc && !out) rc = mp__err(MP_EINVAL, "mp_shared_array_get: out is NULL");
    return rc ? rc : read_items(a, i, i + 1, out, "mp_shared_array_get");
}

int mp_shared_array_set(mp_shared_array *a, size_t i, const void *in) {
    int rc = check_index(a, i, "mp_shared_array_set");
    if (!rc && !in) rc = mp__err(MP_EINVAL, "mp_shared_array_set: in is NULL");
    return rc ? rc : write_items(a, i, i + 1, in, "mp_shared_array_set");
}

int mp_shared_array_get_slice(mp_shared_array *a, size_t start, size_t stop, void *out) {
    int rc = check_slice(a, start, stop, out, "mp_shared_array_get_slice");
    if (rc || start == stop) return rc;
    return read_items(a, start, stop, out, "mp_shared_array_get_slice");
}

int mp_shared_array_set_slice(mp_shared_array *a, size_t start, size_t stop, const void *in) {
    int rc = check_slice(a, start, stop, in, "mp_shared_array_set_slice");
    if (rc || start == stop) return rc;
    return write_items(a, start, stop, in, "mp_shared_array_set_slice");
}

/* ---- typed views: one item widened to int64 / double, or narrowed back with a range
 * check ---- */

typedef union item {
    char c;
    signed char b;
    unsigned char B;
    short h;
    unsigned short H;
    int i;
    unsigned int I;
    long l;
    unsigned long L;
    long long q;
    unsigned long long Q;
    float f;
    double d;
} item;

int mp_shared_array_get_int(mp_shared_array *a, size_t i, int64_t *out) {
    if (out) *out = 0;
    int rc = check_index(a, i, "mp_shared_array_get_int");
    if (rc) return rc;
    if (!out) return mp__err(MP_EINVAL, "mp_shared_array_get_int: out is NULL");
    if (type_of(a->tc)->kind == T_FLOAT)
        return mp__err(MP_EINVAL, "mp_shared_array_get_int: typecode '%c' holds floats", a->tc);
    item v;
    if ((rc = read_items(a, i, i + 1, &v, "mp_shared_array_get_int")) != 0) return rc;
    switch (a->tc) {
    case 'c':
        *out = (unsigned char)v.c;
        break; /* a byte, as Python's ord() of it */
    case 'b':
        *out = v.b;
        break;
    case 'B':
        *out = v.B;
        break;
    case 'h':
        *out = v.h;
        break;
    case 'H':
        *out = v.H;
        break;
    case 'i':
        *out = v.i;
        break;
    case 'I':
        *out = v.I;
        break;
    case 'l':
        *out = v.l;
        break;
    case 'L':
    case 'Q': {
        unsigned long long u = a->tc == 'L' ? v.L : v.Q;
        if (u > (unsigned long long)INT64_MAX)
            return mp__err(MP_EINVAL, "mp_shared_array_get_int: %llu does not fit in int64", u);
        *out = (int64_t)u;
        break;
    }
    default:
        *out = v.q;
        break;
    }
    return 0;
}

static int out_of_range(const mp_shared_array *a, int64_t v) {
    return mp__err(MP_EINVAL, "mp_shared_array_set_int: %lld out of range for typecode '%c'",
                   (long long)v, a->tc);
}

int mp_shared_array_set_int(mp_shared_array *a, size_t i, int64_t v) {
    int rc = check_index(a, i, "mp_shared_array_set_int");
    if (rc) return rc;
    item it;
    int64_t lo = 0;
    uint64_t hi = 0;
    switch (a->tc) {
    case 'c':
        lo = 0, hi = UCHAR_MAX;
        break;
    case 'b':
        lo = SCHAR_MIN, hi = SCHAR_MAX;
        break;
    case 'B':
        lo = 0, hi = UCHAR_MAX;
        break;
    case 'h':
        lo = SHRT_MIN, hi = SHRT_MAX;
        break;
    case 'H':
        lo = 0, hi = USHRT_MAX;
        break;
    case 'i':
        lo = INT_MIN, hi = INT_MAX;
        break;
    case 'I':
        lo = 0, hi = UINT_MAX;
        break;
    case 'l':
        lo = LONG_MIN, hi = LONG_MAX;
        break;
    case 'L':
        lo = 0, hi = ULONG_MAX;
        break;
    case 'q':
        lo = LLONG_MIN, hi = LLONG_MAX;
        break;
    case 'Q':
        lo = 0, hi = ULLONG_MAX;
        break;
    default:
        break; /* floats: Python converts an int assigned to a c_double */
    }
    if (type_of(a->tc)->kind != T_FLOAT && (v < lo || (v > 0 && (uint64_t)v > hi)))
        return out_of_range(a, v);
    switch (a->tc) {
    case 'c':
        it.c = (char)(unsigned char)v;
        break;
    case 'b':
        it.b = (signed char)v;
        break;
    case 'B':
        it.B = (unsigned char)v;
        break;
    case 'h':
        it.h = (short)v;
        break;
    case 'H':
        it.H = (unsigned short)v;
        break;
    case 'i':
        it.i = (int)v;
        break;
    case 'I':
        it.I = (unsigned int)v;
        break;
    case 'l':
        it.l = (long)v;
        break;
    case 'L':
        it.L = (unsigned long)v;
        break;
    case 'q':
        it.q = (long long)v;
        break;
    case 'Q':
        it.Q = (unsigned long long)v;
        break;
    case 'f':
        it.f = (float)v;
        break;
    default:
        it.d = (double)v;
        break;
    }
    return write_items(a, i, i + 1, &it, "mp_shared_array_set_int");
}

int mp_shared_array_get_double(mp_shared_array *a, size_t i, double *out) {
    if (out) *out = 0;
    int rc = check_index(a, i, "mp_shared_array_get_double");
    if (rc) return rc;
    if (!out) return mp__err(MP_EINVAL, "mp_shared_array_get_double: out is NULL");
    if (type_of(a->tc)->kind != T_FLOAT)
        return mp__err(MP_EINVAL, "mp_shared_array_get_double: typecode '%c' holds integers",
                       a->tc);
    item v;
    if ((rc = read_items(a, i, i + 1, &v, "mp_shared_array_get_double")) != 0) return rc;
    *out = a->tc == 'f' ? (double)v.f : v.d;
    return 0;
}

int mp_shared_array_set_double(mp_shared_array *a, size_t i, double v) {
    int rc = check_index(a, i, "mp_shared_array_set_double");
    if (rc) return rc;
    if (type_of(a->tc)->kind != T_FLOAT)
        return mp__err(MP_EINVAL, "mp_shared_array_set_double: typecode '%c' holds integers",
                       a->tc);
    item it;
    if (a->tc == 'f') {
        /* As Python's struct 'f': a finite value beyond float's range is an overflow. */
        if (v == v && (v > FLT_MAX || v < -FLT_MAX) && v - v == 0)
            return mp__err(MP_EINVAL, "mp_shared_array_set_double: %g out of range for 'f'", v);
        it.f = (float)v;
    } else {
        it.d = v;
    }
    return write_items(a, i, i + 1, &it, "mp_shared_array_set_double");
}

/* ---- as a process argument: the block's handle, and the lock's when there is one ---- */

static size_t arr_handle_count(const void *obj) {
    const mp_shared_array *a = obj;
    return (a->lock ? mp__lock_handle_count(a->lock) : 0) + mp__block_handle_count(a->blk);
}

static size_t arr_blocks(const void *obj, mp__block **out) {
    const mp_shared_array *a = obj;
    size_t n = 0;
    if (a->lock) out[n++] = a->lock->blk;
    out[n++] = a->blk;
    return n;
}

static int arr_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    const mp_shared_array *a = obj;
    mp__buf_u8(b, a->lock != NULL);
    if (a->lock) mp__lock_reduce(a->lock, b, handles, nh);
    mp__block_reduce(a->blk, b, handles, nh);
    return 0;
}

static int arr_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    *out = NULL;
    uint8_t has_lock = mp__rd_u8(r);
    if (r->err || has_lock > 1)
        return mp__err(MP_EPROTO, "shared_array: malformed object description");
    mp_lock *lock = NULL;
    mp_os_handle spare = MP_INVALID_OS_HANDLE;
    int rc;
    if (has_lock && (rc = mp__lock_rebuild_nested(r, handles, nh, &lock, &spare)) != 0) return rc;
    size_t k = lock ? mp__lock_handle_count(lock) : 0;
    mp__block *b;
    bool took;
    rc = mp__block_rebuild(r, MP__K_SHARED_ARRAY, handles + k, nh - k, &b, &took);
    /* One read of the shared header: what is checked is what is used. */
    arr_shared hdr;
    /* Past the block header, whose use count other processes change meanwhile. */
    if (!rc)
        memcpy((char *)&hdr + sizeof hdr.hdr, (const char *)b->base + sizeof hdr.hdr,
               sizeof hdr - sizeof hdr.hdr);
    const tinfo *t = rc ? NULL : type_of((char)hdr.typecode);
    if (!rc && (!t || hdr.typecode > 0x7f || hdr.itemsize != t->size ||
                hdr.n > ITEMS_MAX / t->size || ITEMS_OFF + hdr.n * t->size > b->size)) {
        mp__block_unrebuild(b, took);
        rc = mp__err(MP_EPROTO, "shared_array: the shared block does not match its description");
    }
    mp_shared_array *a = rc ? NULL : wrap(b, lock, (char)hdr.typecode, t, (size_t)hdr.n);
    if (!rc && !a) {
        mp__block_unrebuild(b, took);
        rc = mp__err(MP_ENOMEM, "shared_array: out of memory");
    }
    if (rc) {
        if (lock) {
            mp__block_unrebuild(lock->blk, spare == MP_INVALID_OS_HANDLE);
            mp__free(lock);
        }
        return rc;
    }
    if (spare != MP_INVALID_OS_HANDLE) mp__os_handle_close(spare);
    if (mp__block_handle_count(b) && !took) mp__os_handle_close(handles[k]);
    *out = a;
    return 0;
}

static void arr_objfree(void *obj) { mp_shared_array_free(obj); }

const mp__objtype mp__objtype_shared_array = {
    .name = "shared_array",
    .handle_count = arr_handle_count,
    .reduce = arr_reduce,
    .rebuild = arr_rebuild,
    .free = arr_objfree,
    .blocks = arr_blocks,
};

int mp_args_add_shared_array(mp_args *a, mp_shared_array *s) {
    return mp__sync_args_add(a, &mp__objtype_shared_array, s, "mp_args_add_shared_array");
}

mp_shared_array *mp_args_shared_array(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__objtype_shared_array);
}
