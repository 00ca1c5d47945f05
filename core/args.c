/* mp_args: the argument list of a target, and its wire form for the launch. */
#include <string.h>

#include "block.h"
#include "os.h"

typedef struct mp__arg {
    mp_arg_type type;
    union {
        int64_t i;
        double d;
        struct {
            char *p; /* NUL-terminated even for bytes, so strings need no copy */
            size_t n;
        } s;
        mp_os_handle h;
        struct {
            const mp__objtype *t;
            void *obj; /* borrowed in a parent's list, owned in a child's */
        } o;
    } u;
} mp__arg;

struct mp_args {
    mp__arg *items;
    size_t n, cap;
    bool owns_handles; /* a child's args: the handles were delivered to us */
};

int mp_args_new(mp_args **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_args_new: out is NULL");
    *out = mp__calloc(1, sizeof **out);
    return *out ? 0 : mp__err(MP_ENOMEM, "mp_args_new: out of memory");
}

void mp_args_free(mp_args *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        mp__arg *it = &a->items[i];
        if (it->type == MP_ARG_STR || it->type == MP_ARG_BYTES) mp__free(it->u.s.p);
        if (it->type == MP_ARG_OS_HANDLE && a->owns_handles && it->u.h != MP_INVALID_OS_HANDLE)
            mp__os_handle_close(it->u.h);
        if (it->type == MP_ARG_OBJECT && a->owns_handles && it->u.o.obj)
            it->u.o.t->free(it->u.o.obj);
    }
    mp__free(a->items);
    mp__free(a);
}

static mp__arg *args_push(mp_args *a, mp_arg_type t) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        mp__arg *items = mp__realloc(a->items, cap * sizeof *items);
        if (!items) return NULL;
        a->items = items;
        a->cap = cap;
    }
    mp__arg *it = &a->items[a->n++];
    memset(it, 0, sizeof *it);
    it->type = t;
    return it;
}

#define ARGS_CHECK(a, fn)                                         \
    do {                                                          \
        if (!(a)) return mp__err(MP_EINVAL, fn ": args is NULL"); \
    } while (0)

int mp_args_add_int(mp_args *a, int64_t v) {
    ARGS_CHECK(a, "mp_args_add_int");
    mp__arg *it = args_push(a, MP_ARG_INT);
    if (!it) return mp__err(MP_ENOMEM, "mp_args_add_int: out of memory");
    it->u.i = v;
    return 0;
}

int mp_args_add_double(mp_args *a, double v) {
    ARGS_CHECK(a, "mp_args_add_double");
    mp__arg *it = args_push(a, MP_ARG_DOUBLE);
    if (!it) return mp__err(MP_ENOMEM, "mp_args_add_double: out of memory");
    it->u.d = v;
    return 0;
}

static int args_add_mem(mp_args *a, mp_arg_type t, const void *p, size_t n) {
    char *copy = mp__malloc(n + 1);
    if (!copy) return mp__err(MP_ENOMEM, "mp_args: out of memory for %zu bytes", n);
    if (n) memcpy(copy, p, n);
    copy[n] = '\0';
    mp__arg *it = args_push(a, t);
    if (!it) {
        mp__free(copy);
        return mp__err(MP_ENOMEM, "mp_args: out of memory");
    }
    it->u.s.p = copy;
    it->u.s.n = n;
    return 0;
}

int mp_args_add_str(mp_args *a, const char *s) {
    ARGS_CHECK(a, "mp_args_add_str");
    if (!s) return mp__err(MP_EINVAL, "mp_args_add_str: string is NULL");
    return args_add_mem(a, MP_ARG_STR, s, strlen(s));
}

int mp_args_add_bytes(mp_args *a, const void *buf, size_t len) {
    ARGS_CHECK(a, "mp_args_add_bytes");
    if (!buf && len) return mp__err(MP_EINVAL, "mp_args_add_bytes: buffer is NULL");
    return args_add_mem(a, MP_ARG_BYTES, buf, len);
}

int mp_args_add_os_handle(mp_args *a, mp_os_handle h) {
    ARGS_CHECK(a, "mp_args_add_os_handle");
    if (h == MP_INVALID_OS_HANDLE)
        return mp__err(MP_EBADF, "mp_args_add_os_handle: invalid handle");
    if (a->owns_handles)
        return mp__err(MP_EINVAL,
                       "mp_args_add_os_handle: cannot add to a child's own argument list");
    mp__arg *it = args_push(a, MP_ARG_OS_HANDLE);
    if (!it) return mp__err(MP_ENOMEM, "mp_args_add_os_handle: out of memory");
    it->u.h = h;
    return 0;
}

size_t mp_args_count(const mp_args *a) { return a ? a->n : 0; }

static const mp__arg *args_at(const mp_args *a, size_t i, mp_arg_type t) {
    if (!a || i >= a->n || a->items[i].type != t) return NULL;
    return &a->items[i];
}

mp_arg_type mp_args_type(const mp_args *a, size_t i) {
    return (a && i < a->n) ? a->items[i].type : MP_ARG_NONE;
}

int64_t mp_args_int(const mp_args *a, size_t i) {
    const mp__arg *it = args_at(a, i, MP_ARG_INT);
    return it ? it->u.i : 0;
}

double mp_args_double(const mp_args *a, size_t i) {
    const mp__arg *it = args_at(a, i, MP_ARG_DOUBLE);
    return it ? it->u.d : 0.0;
}

const char *mp_args_str(const mp_args *a, size_t i) {
    const mp__arg *it = args_at(a, i, MP_ARG_STR);
    return it ? it->u.s.p : NULL;
}

const void *mp_args_bytes(const mp_args *a, size_t i, size_t *len) {
    const mp__arg *it = args_at(a, i, MP_ARG_BYTES);
    if (len) *len = it ? it->u.s.n : 0;
    return it ? it->u.s.p : NULL;
}

mp_os_handle mp_args_os_handle(const mp_args *a, size_t i) {
    const mp__arg *it = args_at(a, i, MP_ARG_OS_HANDLE);
    return it ? it->u.h : MP_INVALID_OS_HANDLE;
}

int mp__args_add_object(mp_args *a, const mp__objtype *t, void *obj) {
    ARGS_CHECK(a, "mp_args_add_object");
    if (!obj) return mp__err(MP_EINVAL, "mp_args: %s object is NULL", t->name);
    if (a->owns_handles)
        return mp__err(MP_EINVAL, "mp_args: cannot add to a child's own argument list");
    mp__arg *it = args_push(a, MP_ARG_OBJECT);
    if (!it) return mp__err(MP_ENOMEM, "mp_args: out of memory");
    it->u.o.t = t;
    it->u.o.obj = obj;
    return 0;
}

void *mp__args_object(const mp_args *a, size_t i, const mp__objtype *t) {
    const mp__arg *it = args_at(a, i, MP_ARG_OBJECT);
    return (it && it->u.o.t == t) ? it->u.o.obj : NULL;
}

const char *mp_args_object_type(const mp_args *a, size_t i) {
    const mp__arg *it = args_at(a, i, MP_ARG_OBJECT);
    return it ? it->u.o.t->name : NULL;
}

bool mp__args_has_objects(const mp_args *a) {
    for (size_t i = 0; a && i < a->n; i++)
        if (a->items[i].type == MP_ARG_OBJECT) return true;
    return false;
}

/* The arenas an argument list's objects are slots of, each once: they travel ahead of
 * the items, so a child gets one handle per arena however many objects it gets. */
typedef struct arena_set {
    mp__arena **v;
    size_t n, cap;
    bool oom;
} arena_set;

static void arena_set_add(arena_set *s, mp__arena *ar) {
    if (!ar || (s->n && s->v[s->n - 1] == ar)) return;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == ar) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        mp__arena **v = mp__realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = ar;
}

/* Returns how many blocks the objects name (with s->oom, an upper bound of s->n). */
static size_t arenas_collect(const mp_args *a, arena_set *s) {
    size_t nb = 0;
    for (size_t i = 0; a && i < a->n; i++) {
        const mp__arg *it = &a->items[i];
        if (it->type != MP_ARG_OBJECT || !it->u.o.t->blocks) continue;
        mp__block *blk[2];
        size_t k = it->u.o.t->blocks(it->u.o.obj, blk);
        for (size_t j = 0; j < k && j < 2; j++, nb++) arena_set_add(s, mp__block_arena(blk[j]));
    }
    return nb;
}

size_t mp__args_handle_count(const mp_args *a) {
    arena_set s = {0};
    size_t nb = arenas_collect(a, &s);
    /* Out of memory: never fewer than encode appends (it fails then, or sends fewer). */
    size_t k = s.oom ? nb : s.n;
    mp__free(s.v);
    for (size_t i = 0; a && i < a->n; i++) {
        const mp__arg *it = &a->items[i];
        if (it->type == MP_ARG_OS_HANDLE) k++;
        if (it->type == MP_ARG_OBJECT) k += it->u.o.t->handle_count(it->u.o.obj);
    }
    return k;
}

static const mp__objtype *objtype_find(const char *name) {
    for (size_t i = 0; name && mp__objtypes[i]; i++)
        if (strcmp(mp__objtypes[i]->name, name) == 0) return mp__objtypes[i];
    return NULL;
}

/* Handles travel out of band (the backend's transfer hook); the wire holds their index
 * in the launch's handle table. */
int mp__args_encode(const mp_args *a, mp__buf *b, mp_os_handle *handles, size_t *nhandles) {
    size_t n = a ? a->n : 0;
    int rc = 0;
    arena_set s = {0};
    arenas_collect(a, &s);
    if (s.oom) {
        mp__free(s.v);
        return mp__err(MP_ENOMEM, "mp_args: out of memory encoding arguments");
    }
    mp__buf_u32(b, (uint32_t)s.n);
    for (size_t i = 0; i < s.n; i++) {
        mp__buf_u32(b, (uint32_t)*nhandles);
        mp__arena_reduce(s.v[i], b, handles, nhandles);
    }
    mp__free(s.v);
    mp__buf_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const mp__arg *it = &a->items[i];
        mp__buf_u8(b, (uint8_t)it->type);
        switch (it->type) {
        case MP_ARG_INT:
            mp__buf_u64(b, (uint64_t)it->u.i);
            break;
        case MP_ARG_DOUBLE: {
            uint64_t bits;
            memcpy(&bits, &it->u.d, sizeof bits);
            mp__buf_u64(b, bits);
            break;
        }
        case MP_ARG_STR:
        case MP_ARG_BYTES:
            mp__buf_blob(b, it->u.s.p, it->u.s.n);
            break;
        case MP_ARG_OS_HANDLE:
            mp__buf_u32(b, (uint32_t)*nhandles);
            handles[(*nhandles)++] = it->u.h;
            break;
        case MP_ARG_OBJECT: {
            /* type, first handle index, handle count, then the type's own description */
            size_t first = *nhandles;
            mp__buf desc = {0};
            rc = it->u.o.t->reduce(it->u.o.obj, &desc, handles, nhandles);
            mp__buf_str(b, it->u.o.t->name);
            mp__buf_u32(b, (uint32_t)first);
            mp__buf_u32(b, (uint32_t)(*nhandles - first));
            mp__buf_blob(b, desc.data, desc.len);
            if (desc.err && !b->err) b->err = desc.err;
            mp__buf_free(&desc);
            break;
        }
        default:
            break;
        }
        if (rc) return rc;
    }
    return b->err ? mp__err(b->err, "mp_args: out of memory encoding arguments") : 0;
}

/* With close_rest, a failure closes every handle of handles[0..nhandles), also those
 * no item it reached referred to (seen marks the ones the items took or closed). */
static int args_decode(mp__rd *r, const mp_os_handle *handles, size_t nhandles, bool close_rest,
                       mp_args **out) {
    mp_args *a = NULL;
    *out = NULL;
    bool *seen = NULL;
    int rc = 0;
    if (close_rest && nhandles && !(seen = mp__calloc(nhandles, sizeof *seen)))
        rc = mp__err(MP_ENOMEM, "mp_args: out of memory");
    if (!rc) rc = mp_args_new(&a);
    if (rc) {
        for (size_t i = 0; close_rest && i < nhandles; i++) mp__os_handle_close(handles[i]);
        mp__free(seen);
        return rc;
    }
    a->owns_handles = true;
    /* The arenas first: held while the items are rebuilt, so their slots find them. */
    uint32_t na = mp__rd_u32(r);
    mp__arena **arenas = NULL;
    if (r->err || na > nhandles)
        r->err = MP_EPROTO;
    else if (na && !(arenas = mp__calloc(na, sizeof *arenas)))
        rc = mp__err(MP_ENOMEM, "mp_args: out of memory");
    for (uint32_t i = 0; i < na && !rc && !r->err; i++) {
        uint32_t idx = mp__rd_u32(r);
        if (r->err || idx >= nhandles || (seen && seen[idx])) {
            r->err = MP_EPROTO;
            break;
        }
        if (seen) seen[idx] = true;
        bool took;
        rc = mp__arena_rebuild(r, handles[idx], &arenas[i], &took);
        if (rc || !took) mp__os_handle_close(handles[idx]);
    }
    uint32_t n = rc ? 0 : mp__rd_u32(r);
    for (uint32_t i = 0; i < n && !r->err; i++) {
        uint8_t t = mp__rd_u8(r);
        switch (t) {
        case MP_ARG_INT:
            rc = mp_args_add_int(a, (int64_t)mp__rd_u64(r));
            break;
        case MP_ARG_DOUBLE: {
            uint64_t bits = mp__rd_u64(r);
            double d;
            memcpy(&d, &bits, sizeof d);
            rc = mp_args_add_double(a, d);
            break;
        }
        case MP_ARG_STR:
        case MP_ARG_BYTES: {
            size_t len;
            const void *p = mp__rd_blob(r, &len);
            if (!r->err) rc = args_add_mem(a, (mp_arg_type)t, p, len);
            break;
        }
        case MP_ARG_OS_HANDLE: {
            uint32_t idx = mp__rd_u32(r);
            if (r->err || idx >= nhandles) {
                r->err = MP_EPROTO;
                break;
            }
            if (seen) seen[idx] = true;
            mp__arg *it = args_push(a, MP_ARG_OS_HANDLE);
            if (!it) {
                rc = mp__err(MP_ENOMEM, "mp_args: out of memory");
                mp__os_handle_close(handles[idx]);
            } else {
                it->u.h = handles[idx];
            }
            break;
        }
        case MP_ARG_OBJECT: {
            char *name = mp__rd_str(r);
            uint32_t first = mp__rd_u32(r), nh = mp__rd_u32(r);
            size_t dlen;
            const void *desc = mp__rd_blob(r, &dlen);
            const mp__objtype *t = objtype_find(name);
            if (r->err || first > nhandles || nh > nhandles - first) {
                r->err = MP_EPROTO;
            } else if (!t) {
                rc = mp__err(MP_EPROTO, "mp_args: unknown object type '%s'", name ? name : "?");
            } else {
                for (uint32_t k = 0; seen && k < nh; k++) seen[first + k] = true;
                mp__rd dr = {desc, dlen, 0};
                void *obj = NULL;
                mp__arg *it = args_push(a, MP_ARG_OBJECT);
                if (!it)
                    rc = mp__err(MP_ENOMEM, "mp_args: out of memory");
                else if ((rc = t->rebuild(&dr, handles + first, nh, &obj)) == 0) {
                    it->u.o.t = t;
                    it->u.o.obj = obj;
                } else {
                    a->n--; /* the slot stays empty */
                }
                if (rc && !t->closes_on_failure)
                    for (uint32_t k = 0; k < nh; k++) mp__os_handle_close(handles[first + k]);
            }
            mp__free(name);
            break;
        }
        default:
            r->err = MP_EPROTO;
            break;
        }
        if (rc) break;
    }
    if (!rc && r->err) rc = mp__err(MP_EPROTO, "launch: malformed argument list");
    for (uint32_t i = 0; arenas && i < na; i++) mp__arena_drop(arenas[i]);
    mp__free(arenas);
    if (rc) {
        mp_args_free(a); /* closes what it took; the rest was closed where it failed */
        for (size_t i = 0; seen && i < nhandles; i++)
            if (!seen[i]) mp__os_handle_close(handles[i]);
        mp__free(seen);
        return rc;
    }
    mp__free(seen);
    *out = a;
    return 0;
}

int mp__args_decode(mp__rd *r, const mp_os_handle *handles, size_t nhandles, mp_args **out) {
    return args_decode(r, handles, nhandles, false, out);
}

/* Decodes from duplicates of handles[0..n), which stay the caller's. */
static int decode_dups(mp__rd *r, const mp_os_handle *handles, size_t n, mp_args **out) {
    *out = NULL;
    mp_os_handle *d = mp__calloc(n ? n : 1, sizeof *d);
    if (!d) return mp__err(MP_ENOMEM, "mp_args: out of memory");
    int rc = 0;
    size_t k = 0;
    for (; k < n && !rc; k++) rc = mp__os_handle_dup(handles[k], &d[k]);
    if (rc) {
        for (size_t i = 0; i + 1 < k; i++) mp__os_handle_close(d[i]);
    } else {
        rc = args_decode(r, d, n, true, out); /* on failure it closed them all */
    }
    mp__free(d);
    return rc;
}

int mp__args_rebuild_nested(mp__rd *r, const mp_os_handle *handles, size_t nhandles,
                            mp_args **out) {
    return args_decode(r, handles, nhandles, true, out);
}

int mp__args_clone(const mp_args *src, mp_args **out) {
    *out = NULL;
    size_t n = mp__args_handle_count(src);
    mp_os_handle *h = mp__calloc(n ? n : 1, sizeof *h);
    if (!h) return mp__err(MP_ENOMEM, "mp_args: out of memory");
    mp__buf b = {0};
    size_t nh = 0;
    int rc = mp__args_encode(src, &b, h, &nh);
    if (!rc) {
        mp__rd r = {b.data, b.len, 0};
        rc = decode_dups(&r, h, nh, out);
    }
    mp__buf_free(&b);
    mp__free(h);
    return rc;
}

int mp__args_copy(const mp_args *src, mp_args **out) {
    *out = NULL;
    mp_args *a = NULL;
    int rc = mp_args_new(&a);
    for (size_t i = 0; !rc && src && i < src->n; i++) {
        const mp__arg *it = &src->items[i];
        switch (it->type) {
        case MP_ARG_INT:
            rc = mp_args_add_int(a, it->u.i);
            break;
        case MP_ARG_DOUBLE:
            rc = mp_args_add_double(a, it->u.d);
            break;
        case MP_ARG_STR:
        case MP_ARG_BYTES:
            rc = args_add_mem(a, it->type, it->u.s.p, it->u.s.n);
            break;
        case MP_ARG_OS_HANDLE:
            rc = mp_args_add_os_handle(a, it->u.h);
            break;
        case MP_ARG_OBJECT:
            rc = mp__args_add_object(a, it->u.o.t, it->u.o.obj);
            break;
        default:
            rc = mp__err(MP_EINVAL, "mp_args: bad item type");
            break;
        }
    }
    if (rc) {
        mp_args_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int mp__args_split(mp_args *a, size_t from, mp_args **tail) {
    *tail = NULL;
    if (from > a->n) from = a->n;
    mp_args *t = NULL;
    int rc = mp_args_new(&t);
    if (rc) return rc;
    size_t k = a->n - from;
    if (k) {
        t->items = mp__malloc(k * sizeof *t->items);
        if (!t->items) {
            mp__free(t);
            return mp__err(MP_ENOMEM, "mp_args: out of memory");
        }
        memcpy(t->items, a->items + from, k * sizeof *t->items);
        t->n = t->cap = k;
    }
    t->owns_handles = a->owns_handles;
    a->n = from;
    *tail = t;
    return 0;
}

int mp__args_extend(mp_args *a, const mp_args *from) {
    mp_args *copy = NULL;
    int rc = mp__args_copy(from, &copy);
    if (rc) return rc;
    size_t k = copy->n;
    if (a->n + k > a->cap) {
        mp__arg *items = mp__realloc(a->items, (a->n + k) * sizeof *items);
        if (!items) {
            mp_args_free(copy);
            return mp__err(MP_ENOMEM, "mp_args: out of memory");
        }
        a->items = items;
        a->cap = a->n + k;
    }
    if (k) memcpy(a->items + a->n, copy->items, k * sizeof *copy->items);
    a->n += k;
    copy->n = 0; /* moved: the copy's strings and bytes now belong to a */
    mp_args_free(copy);
    return 0;
}
