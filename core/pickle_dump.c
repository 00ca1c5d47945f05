/* mp_value_dumps: a value as pickle protocol 5, laid out the way CPython's pickler
 * lays it out (PROTO 5, frames of about 64 KiB cut at value boundaries, large str and
 * bytes outside frames, batches of 1000 for APPENDS/SETITEMS), minus the memo: a tree
 * has nothing to share, and the output stays a pure function of the value. */
#include <string.h>

#include "pickle_ops.h"
#include "value_internal.h"

#define FRAME_TARGET (64 * 1024) /* CPython's _FRAME_SIZE_TARGET */
#define FRAME_MIN 4              /* smaller frames are written without a header */
#define BATCH 1000               /* CPython's _BATCHSIZE */
#define FRAME_HDR 9

typedef struct enc {
    mp__buf b;
    size_t frame; /* offset of the current FRAME opcode, or SIZE_MAX outside a frame */
    int err;      /* first error other than MP_ENOMEM (the buffer keeps that one) */
    bool bare;    /* opcodes only: no frames (a piece of someone else's pickle) */
} enc;

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void end_frame(enc *e) {
    if (e->frame == SIZE_MAX || e->b.err) return;
    size_t body = e->b.len - e->frame - FRAME_HDR;
    if (body < FRAME_MIN) {
        memmove(e->b.data + e->frame, e->b.data + e->frame + FRAME_HDR, body);
        e->b.len -= FRAME_HDR;
    } else {
        put_le(e->b.data + e->frame + 1, body, 8);
    }
    e->frame = SIZE_MAX;
}

/* Every opcode goes into a frame; one is opened lazily after a large blob closed it. */
static void op(enc *e, const void *p, size_t n) {
    if (e->frame == SIZE_MAX && !e->b.err && !e->bare) {
        static const unsigned char hdr[FRAME_HDR] = {OP_FRAME};
        e->frame = e->b.len;
        mp__buf_put(&e->b, hdr, sizeof hdr);
    }
    mp__buf_put(&e->b, p, n);
}

static void op1(enc *e, unsigned char c) { op(e, &c, 1); }

/* CPython commits a frame before saving each value once it reached the target. */
static void maybe_commit(enc *e) {
    if (e->frame != SIZE_MAX && e->b.len - e->frame - FRAME_HDR >= FRAME_TARGET) end_frame(e);
}

static void save_int(enc *e, int64_t v) {
    unsigned char o[10];
    if (v >= 0 && v < 256) {
        o[0] = OP_BININT1;
        o[1] = (unsigned char)v;
        op(e, o, 2);
    } else if (v >= 0 && v < 65536) {
        o[0] = OP_BININT2;
        put_le(o + 1, (uint64_t)v, 2);
        op(e, o, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        o[0] = OP_BININT;
        put_le(o + 1, (uint64_t)v, 4);
        op(e, o, 5);
    } else {
        /* LONG1: the fewest little-endian two's complement bytes that sign-extend to v */
        int n = 5;
        while (n < 8) {
            int64_t lo = (int64_t)((uint64_t)v << (64 - 8 * n)) >> (64 - 8 * n);
            if (lo == v) break;
            n++;
        }
        o[0] = OP_LONG1;
        o[1] = (unsigned char)n;
        put_le(o + 2, (uint64_t)v, n);
        op(e, o, 2 + (size_t)n);
    }
}

static void save_blob(enc *e, bool str, const char *p, size_t n) {
    unsigned char o[9];
    size_t hl;
    if (n <= 0xff) {
        o[0] = str ? OP_SHORT_BINUNICODE : OP_SHORT_BINBYTES;
        o[1] = (unsigned char)n;
        hl = 2;
    } else if ((uint64_t)n > 0xffffffffu) {
        o[0] = str ? OP_BINUNICODE8 : OP_BINBYTES8;
        put_le(o + 1, n, 8);
        hl = 9;
    } else {
        o[0] = str ? OP_BINUNICODE : OP_BINBYTES;
        put_le(o + 1, n, 4);
        hl = 5;
    }
    if (n >= FRAME_TARGET) {
        /* as CPython: a large payload goes out unframed, so readers can read it in place */
        end_frame(e);
        mp__buf_put(&e->b, o, hl);
        mp__buf_put(&e->b, p, n);
        return;
    }
    op(e, o, hl);
    op(e, p, n);
}

/* key: v is a dict key or set item, or inside one; Python must be able to hash it. */
static void save(enc *e, const mp_value *v, unsigned level, bool key);

static void save_items(enc *e, mp_value *const *items, size_t n, unsigned level, bool key) {
    for (size_t i = 0; i < n && !e->err; i++) save(e, items[i], level, key);
}

/* Items appended to the list (or object) just saved, in CPython's batches. */
static void save_appends(enc *e, const mp_value *list, unsigned level) {
    size_t n = list ? list->u.seq.n : 0;
    for (size_t i = 0; i < n && !e->err; i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        if (k == 1) {
            save(e, list->u.seq.items[i], level, false);
            op1(e, OP_APPEND);
        } else {
            op1(e, OP_MARK);
            save_items(e, list->u.seq.items + i, k, level, false);
            op1(e, OP_APPENDS);
        }
    }
}

static void save_pairs(enc *e, mp_value *const *kv, size_t k, unsigned level) {
    for (size_t i = 0; i < k && !e->err; i++) {
        save(e, kv[2 * i], level, true);
        save(e, kv[2 * i + 1], level, false);
    }
}

static void save_setitems(enc *e, const mp_value *dict, unsigned level) {
    size_t n = dict ? dict->u.d.n : 0;
    for (size_t i = 0; i < n && !e->err; i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        if (k != 1) op1(e, OP_MARK);
        save_pairs(e, dict->u.d.kv + 2 * i, k, level);
        op1(e, k == 1 ? OP_SETITEM : OP_SETITEMS);
    }
}

/* A set's items in batches, as CPython's save_set (ADDITEMS has no one-item form). */
static void save_additems(enc *e, const mp_value *set, unsigned level) {
    size_t n = set->u.d.n;
    for (size_t i = 0; i < n && !e->err; i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        op1(e, OP_MARK);
        save_items(e, set->u.d.kv + i, k, level, true);
        op1(e, OP_ADDITEMS);
    }
}

static void save(enc *e, const mp_value *v, unsigned level, bool key) {
    if (e->err || e->b.err) return;
    if (!v) {
        e->err = mp__err(MP_EINVAL, "mp_value_dumps: NULL value inside a container");
        return;
    }
    if (key && (v->type == MP_VALUE_LIST || v->type == MP_VALUE_DICT || v->type == MP_VALUE_SET)) {
        /* Python could not load it (TypeError: unhashable type) */
        e->err = mp__err(MP_EINVAL,
                         "mp_value_dumps: a %s as a dict key or set item (or inside "
                         "one): unhashable in Python",
                         mp_value_type_name((mp_value_type)v->type));
        return;
    }
    maybe_commit(e);
    bool container = v->type >= MP_VALUE_TUPLE;
    if (container && level >= MP_VALUE_MAX_DEPTH) {
        e->err =
            mp__err(MP_EINVAL, "mp_value_dumps: value nested deeper than %d", MP_VALUE_MAX_DEPTH);
        return;
    }
    switch (v->type) {
    case MP_VALUE_NONE:
        op1(e, OP_NONE);
        break;
    case MP_VALUE_BOOL:
        op1(e, v->u.b ? OP_NEWTRUE : OP_NEWFALSE);
        break;
    case MP_VALUE_INT:
        save_int(e, v->u.i);
        break;
    case MP_VALUE_FLOAT: {
        unsigned char o[9] = {OP_BINFLOAT};
        uint64_t bits;
        memcpy(&bits, &v->u.f, 8);
        for (int i = 0; i < 8; i++) o[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
        op(e, o, 9);
        break;
    }
    case MP_VALUE_STR:
        if (!mp__utf8_valid(v->u.s.p, v->u.s.n)) {
            e->err = mp__err(MP_EINVAL, "mp_value_dumps: a str of %zu bytes is not valid UTF-8",
                             v->u.s.n);
            return;
        }
        save_blob(e, true, v->u.s.p, v->u.s.n);
        break;
    case MP_VALUE_BYTES:
        save_blob(e, false, v->u.s.p, v->u.s.n);
        break;
    case MP_VALUE_TUPLE: {
        size_t n = v->u.seq.n;
        if (n == 0) {
            op1(e, OP_EMPTY_TUPLE);
        } else if (n <= 3) {
            save_items(e, v->u.seq.items, n, level + 1, key);
            op1(e, (unsigned char)(OP_TUPLE1 + n - 1));
        } else {
            op1(e, OP_MARK);
            save_items(e, v->u.seq.items, n, level + 1, key);
            op1(e, OP_TUPLE);
        }
        break;
    }
    case MP_VALUE_LIST:
        op1(e, OP_EMPTY_LIST);
        save_appends(e, v, level + 1);
        break;
    case MP_VALUE_DICT:
        op1(e, OP_EMPTY_DICT);
        save_setitems(e, v, level + 1);
        break;
    case MP_VALUE_SET:
        op1(e, OP_EMPTY_SET);
        save_additems(e, v, level + 1);
        break;
    case MP_VALUE_FROZENSET:
        op1(e, OP_MARK);
        save_items(e, v->u.d.kv, v->u.d.n, level + 1, true);
        op1(e, OP_FROZENSET);
        break;
    case MP_VALUE_OBJECT: {
        const char *name = mp__obj_name(v);
        if (v->u.o.args && v->u.o.args->type != MP_VALUE_TUPLE) {
            e->err =
                mp__err(MP_EINVAL, "mp_value_dumps: object %s.%s has args of type %s, not a tuple",
                        v->u.o.module, name, mp_value_type_name((mp_value_type)v->u.o.args->type));
            return;
        }
        if ((v->u.o.state || v->u.o.items || v->u.o.ditems) && !v->u.o.args) {
            e->err =
                mp__err(MP_EINVAL, "mp_value_dumps: object %s.%s has a state or items but no args",
                        v->u.o.module, name);
            return;
        }
        save_blob(e, true, v->u.o.module, strlen(v->u.o.module));
        save_blob(e, true, name, strlen(name));
        op1(e, OP_STACK_GLOBAL);
        if (v->u.o.args) {
            save(e, v->u.o.args, level + 1, false);
            op1(e, v->u.o.newobj ? OP_NEWOBJ : OP_REDUCE);
        }
        save_appends(e, v->u.o.items, level + 1);
        save_setitems(e, v->u.o.ditems, level + 1);
        if (v->u.o.state) {
            save(e, v->u.o.state, level + 1, false);
            op1(e, OP_BUILD);
        }
        break;
    }
    default:
        e->err = mp__err(MP_EINVAL, "mp_value_dumps: corrupt value (type %d)", v->type);
        break;
    }
}

int mp_value_dumps(const mp_value *v, void **buf, size_t *len) {
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!v || !buf || !len) return mp__err(MP_EINVAL, "mp_value_dumps: NULL argument");
    enc e = {.frame = SIZE_MAX};
    static const unsigned char proto[2] = {OP_PROTO, 5};
    mp__buf_put(&e.b, proto, 2);
    save(&e, v, 0, false);
    op1(&e, OP_STOP);
    end_frame(&e);
    int rc = e.err ? e.err : e.b.err;
    if (rc) {
        if (rc == MP_ENOMEM) mp__err(MP_ENOMEM, "mp_value_dumps: out of memory");
        mp__buf_free(&e.b);
        return rc;
    }
    *buf = e.b.data;
    *len = e.b.len;
    return 0;
}

void mp_value_buf_free(void *buf) { mp__free(buf); }

int mp__pickle_dump_item(const mp_value *v, mp__buf *b) {
    enc e = {.b = *b, .frame = SIZE_MAX, .bare = true};
    save(&e, v, 0, false);
    *b = e.b;
    int rc = e.err ? e.err : e.b.err;
    if (rc == MP_ENOMEM) mp__err(MP_ENOMEM, "mp_value_dumps: out of memory");
    return rc;
}
