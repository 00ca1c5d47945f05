/* ShareableList in the layout of Python 3.11's multiprocessing/shared_memory.py, so a
 * Python process attaches ours and we attach theirs. For N items, all native-endian:
 *
 *   0               int64  N
 *   8               int64  offsets[N + 1]: item i's slot is [offsets[i], offsets[i+1])
 *                          of the data area; offsets[0] = 0
 *   (N + 2) * 8     data area, offsets[N] bytes: int "q", float "d", bool "xxxxxxx?"
 *                   (the byte at +7), None "xxxxxx?x" (all zero), str/bytes "<k>s"
 *                   (k = 8 * (len / 8 + 1), padded with NULs, which reading strips)
 *   then            N struct formats of 8 bytes each, NUL-padded
 *   then            N signed bytes: how to rebuild the item: 0 number/bool, 1 str
 *                   (UTF-8), 2 bytes, 3 None
 *
 * Slots are fixed at creation: a str or bytes item may be replaced by one that fits
 * its slot, any 8-byte item fits every slot. Python sizes a str slot from its length
 * in characters (3.11); we size it from its UTF-8 length, which is never less, so both
 * read either. Like Python's, the list has no lock. */
#include <stdio.h>
#include <string.h>

#include "shared_internal.h"
#include "value_internal.h"

enum { CODE_PLAIN = 0, CODE_STR = 1, CODE_BYTES = 2, CODE_NONE = 3 };

struct mp_shareable_list {
    mp_shm *shm;
    unsigned char *buf;
    size_t size;
    size_t n;
    int64_t *offsets; /* our copy, checked once at attach (fixed since creation) */
};

static size_t data_start(const mp_shareable_list *l) { return (l->n + 2) * 8; }
static size_t formats_at(const mp_shareable_list *l) {
    return data_start(l) + (size_t)l->offsets[l->n];
}
static size_t codes_at(const mp_shareable_list *l) { return formats_at(l) + l->n * 8; }

static void put_i64(unsigned char *p, int64_t v) { memcpy(p, &v, 8); }
static int64_t get_i64(const unsigned char *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The slot an item needs and its format; MP_ENOTSUP for a kind the list cannot hold. */
static int item_format(const mp_value *v, char fmt[9], size_t *slot, int *code, const char *fn) {
    size_t len = 0;
    switch (mp_value_get_type(v)) {
    case MP_VALUE_INT:
        strcpy(fmt, "q"), *code = CODE_PLAIN, *slot = 8;
        return 0;
    case MP_VALUE_FLOAT:
        strcpy(fmt, "d"), *code = CODE_PLAIN, *slot = 8;
        return 0;
    case MP_VALUE_BOOL:
        strcpy(fmt, "xxxxxxx?"), *code = CODE_PLAIN, *slot = 8;
        return 0;
    case MP_VALUE_NONE:
        strcpy(fmt, "xxxxxx?x"), *code = CODE_NONE, *slot = 8;
        return 0;
    case MP_VALUE_STR: {
        const char *s = mp_value_as_str(v, &len);
        /* Python encodes with its strict codec: what it cannot decode never goes in */
        if (!mp__utf8_valid_strict(s, len))
            return mp__err(MP_EINVAL,
                           "%s: a str of %zu bytes that is not UTF-8 (Python could not read it)",
                           fn, len);
        *code = CODE_STR;
        break;
    }
    case MP_VALUE_BYTES:
        mp_value_as_bytes(v, &len);
        *code = CODE_BYTES;
        break;
    default:
        return mp__err(MP_ENOTSUP, "%s: a shareable list cannot hold a %s", fn,
                       mp_value_type_name(mp_value_get_type(v)));
    }
    /* The format must fit its 8 bytes: 7 digits and the 's'. */
    if (len >= 9999990) return mp__err(MP_ETOOBIG, "%s: item of %zu bytes too long", fn, len);
    *slot = 8 * (len / 8 + 1);
    snprintf(fmt, 9, "%zus", *slot);
    return 0;
}

/* Writes item i's bytes (the slot is known to fit) and its format and code. */
static void write_item(mp_shareable_list *l, size_t i, const mp_value *v, const char *fmt,
                       int code) {
    unsigned char *p = l->buf + data_start(l) + (size_t)l->offsets[i];
    size_t len = 0;
    const void *src = NULL;
    switch (mp_value_get_type(v)) {
    case MP_VALUE_INT:
        put_i64(p, mp_value_as_int(v));
        break;
    case MP_VALUE_FLOAT: {
        double d = mp_value_as_float(v);
        memcpy(p, &d, 8);
        break;
    }
    case MP_VALUE_BOOL:
        memset(p, 0, 7);
        p[7] = mp_value_as_bool(v);
        break;
    case MP_VALUE_NONE:
        memset(p, 0, 8);
        break;
    default: {
        src =
            code == CODE_STR ? (const void *)mp_value_as_str(v, &len) : mp_value_as_bytes(v, &len);
        size_t k = 0;
        sscanf(fmt, "%zu", &k);
        memcpy(p, src, len);
        memset(p + len, 0, k - len);
        break;
    }
    }
    unsigned char *f = l->buf + formats_at(l) + i * 8;
    memset(f, 0, 8);
    memcpy(f, fmt, strlen(fmt));
    l->buf[codes_at(l) + i] = (unsigned char)(signed char)code;
}

static int list_wrap(mp_shm *shm, mp_shareable_list **out) {
    mp_shareable_list *l = mp__calloc(1, sizeof *l);
    if (!l) return mp__err(MP_ENOMEM, "shareable list: out of memory");
    l->shm = shm;
    l->buf = mp_shm_buf(shm);
    l->size = mp_shm_size(shm);
    *out = l;
    return 0;
}

int mp_shareable_list_new(const mp_value *items, const char *name, mp_shareable_list **out) {
    static const char fn[] = "mp_shareable_list_new";
    if (!out) return mp__err(MP_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    mp_value_type t = mp_value_get_type(items);
    if (!items || (t != MP_VALUE_LIST && t != MP_VALUE_TUPLE))
        return mp__err(MP_EINVAL, "%s: items must be a list or tuple", fn);
    size_t n = mp_value_len(items);
    if (n > ((size_t)1 << 40)) return mp__err(MP_ETOOBIG, "%s: too many items", fn);
    int64_t *offsets = mp__calloc(n + 1, sizeof *offsets);
    if (!offsets) return mp__err(MP_ENOMEM, "%s: out of memory", fn);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char fmt[9];
        size_t slot;
        int code;
        rc = item_format(mp_value_item(items, i), fmt, &slot, &code, fn);
        if (!rc) offsets[i + 1] = offsets[i] + (int64_t)slot;
    }
    mp_shm *shm = NULL;
    if (!rc) {
        mp_shm_opts o = {.name = name, .create = true};
        o.size = 8 + 8 * (n + 1) + (size_t)offsets[n] + 8 * n + n;
        rc = mp_shm_open(&o, &shm);
    }
    mp_shareable_list *l = NULL;
    if (!rc && (rc = list_wrap(shm, &l)) != 0) {
        mp_shm_unlink(shm);
        mp_shm_free(shm);
    }
    if (rc) {
        mp__free(offsets);
        return rc;
    }
    l->n = n;
    l->offsets = offsets;
    put_i64(l->buf, (int64_t)n);
    for (size_t i = 0; i <= n; i++) put_i64(l->buf + 8 + 8 * i, offsets[i]);
    for (size_t i = 0; i < n; i++) {
        const mp_value *v = mp_value_item(items, i);
        char fmt[9];
        size_t slot;
        int code;
        item_format(v, fmt, &slot, &code, fn);
        write_item(l, i, v, fmt, code);
    }
    *out = l;
    return 0;
}

int mp_shareable_list_attach(const char *name, mp_shareable_list **out) {
    static const char fn[] = "mp_shareable_list_attach";
    if (!out) return mp__err(MP_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (!name) return mp__err(MP_EINVAL, "%s: name is NULL", fn);
    mp_shm_opts o = {.name = name};
    mp_shm *shm;
    int rc = mp_shm_open(&o, &shm);
    if (rc) return rc;
    mp_shareable_list *l = NULL;
    if ((rc = list_wrap(shm, &l)) != 0) {
        mp_shm_free(shm);
        return rc;
    }
    /* Everything we later index by is checked here against the mapping's size. */
    int64_t n = l->size >= 16 ? get_i64(l->buf) : -1;
    if (n < 0 || (uint64_t)n > (l->size / 8) - 2) goto bad;
    l->n = (size_t)n;
    if (!(l->offsets = mp__calloc(l->n + 1, sizeof *l->offsets))) {
        mp_shareable_list_free(l);
        return mp__err(MP_ENOMEM, "%s: out of memory", fn);
    }
    for (size_t i = 0; i <= l->n; i++) {
        l->offsets[i] = get_i64(l->buf + 8 + 8 * i);
        if (l->offsets[i] < (i ? l->offsets[i - 1] : 0) || (i == 0 && l->offsets[0] != 0)) goto bad;
    }
    if ((uint64_t)l->offsets[l->n] > l->size || codes_at(l) + l->n > l->size) goto bad;
    *out = l;
    return 0;
bad:
    mp_shareable_list_free(l);
    return mp__err(MP_EPROTO, "%s: block '%s' does not hold a shareable list", fn, name);
}

size_t mp_shareable_list_len(const mp_shareable_list *l) { return l ? l->n : 0; }

static int check(const mp_shareable_list *l, size_t i, const char *fn) {
    if (!l) return mp__err(MP_EINVAL, "%s: list is NULL", fn);
    if (!mp_shm_buf(l->shm)) return mp__err(MP_ECLOSED, "%s: the list's block is closed", fn);
    if (i >= l->n)
        return mp__err(MP_EINVAL, "%s: index %zu out of range (length %zu)", fn, i, l->n);
    return 0;
}

/* Item i's format string (NUL-terminated) and code, as stored now. */
static void read_meta(const mp_shareable_list *l, size_t i, char fmt[9], int *code) {
    memcpy(fmt, l->buf + formats_at(l) + i * 8, 8);
    fmt[8] = '\0';
    *code = (signed char)l->buf[codes_at(l) + i];
}

int mp_shareable_list_get(mp_shareable_list *l, size_t i, mp_value **out) {
    static const char fn[] = "mp_shareable_list_get";
    if (!out) return mp__err(MP_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    int rc = check(l, i, fn);
    if (rc) return rc;
    char fmt[9];
    int code;
    read_meta(l, i, fmt, &code);
    const unsigned char *p = l->buf + data_start(l) + (size_t)l->offsets[i];
    size_t room = formats_at(l) - (data_start(l) + (size_t)l->offsets[i]);
    mp_value *v = NULL;
    size_t k = 0;
    char s = 0;
    if (code == CODE_NONE) {
        v = mp_value_none();
    } else if ((code == CODE_STR || code == CODE_BYTES) && sscanf(fmt, "%zu%c", &k, &s) == 2 &&
               s == 's' && k <= room) {
        while (k > 0 && p[k - 1] == 0) k--; /* Python's rstrip(b'\0') */
        v = code == CODE_STR ? mp_value_strn((const char *)p, k) : mp_value_bytes(p, k);
        /* checked in our copy: another process may write the slot meanwhile */
        const char *got = mp_value_as_str(v, &k);
        if (got && !mp__utf8_valid_strict(got, k)) {
            mp_value_free(v);
            return mp__err(MP_EPROTO,
                           "%s: item %zu is a str slot of %zu bytes that is not UTF-8 "
                           "(Python raises UnicodeDecodeError)",
                           fn, i, k);
        }
    } else if (code == CODE_PLAIN && room >= 8 && !strcmp(fmt, "q")) {
        v = mp_value_int(get_i64(p));
    } else if (code == CODE_PLAIN && room >= 8 && !strcmp(fmt, "d")) {
        double d;
        memcpy(&d, p, 8);
        v = mp_value_float(d);
    } else if (code == CODE_PLAIN && room >= 8 && !strcmp(fmt, "xxxxxxx?")) {
        v = mp_value_bool(p[7] != 0);
    } else {
        return mp__err(MP_EPROTO, "%s: item %zu has format '%s' and code %d, which we cannot read",
                       fn, i, fmt, code);
    }
    if (!v) return mp__err(MP_ENOMEM, "%s: out of memory", fn);
    *out = v;
    return 0;
}

int mp_shareable_list_set(mp_shareable_list *l, size_t i, const mp_value *v) {
    static const char fn[] = "mp_shareable_list_set";
    int rc = check(l, i, fn);
    if (rc) return rc;
    if (!v) return mp__err(MP_EINVAL, "%s: value is NULL", fn);
    char fmt[9];
    size_t slot;
    int code;
    if ((rc = item_format(v, fmt, &slot, &code, fn)) != 0) return rc;
    size_t have = (size_t)(l->offsets[i + 1] - l->offsets[i]);
    if (code == CODE_STR || code == CODE_BYTES) {
        size_t len = mp_value_len(v);
        if (len > have)
            return mp__err(MP_ETOOBIG, "%s: %zu bytes do not fit item %zu's slot of %zu", fn, len,
                           i, have);
        /* Python keeps a str/bytes slot's format, else one as big as the slot. */
        char cur[9];
        int curcode;
        read_meta(l, i, cur, &curcode);
        size_t k = 0;
        char s = 0;
        if (sscanf(cur, "%zu%c", &k, &s) == 2 && s == 's' && k >= len && k <= have)
            memcpy(fmt, cur, 9);
        else /* a format holds at most 7 digits: a bigger slot (a foreign block) says less */
            snprintf(fmt, 9, "%zus", have < 9999999 ? have : (size_t)9999999);
    } else if (have < 8) {
        return mp__err(MP_ETOOBIG, "%s: item %zu's slot holds %zu bytes", fn, i, have);
    }
    write_item(l, i, v, fmt, code);
    return 0;
}

/* Python's ==: numbers (bool, int, float) compare by value, across kinds. */
static bool py_equal(const mp_value *a, const mp_value *b) {
    mp_value_type ta = mp_value_get_type(a), tb = mp_value_get_type(b);
    bool na = ta == MP_VALUE_BOOL || ta == MP_VALUE_INT || ta == MP_VALUE_FLOAT;
    bool nb = tb == MP_VALUE_BOOL || tb == MP_VALUE_INT || tb == MP_VALUE_FLOAT;
    if (na && nb) {
        if (ta != MP_VALUE_FLOAT && tb != MP_VALUE_FLOAT)
            return mp_value_as_int(a) == mp_value_as_int(b);
        if (ta == MP_VALUE_FLOAT && tb == MP_VALUE_FLOAT)
            return mp_value_as_float(a) == mp_value_as_float(b);
        double f = mp_value_as_float(ta == MP_VALUE_FLOAT ? a : b);
        int64_t n = mp_value_as_int(ta == MP_VALUE_FLOAT ? b : a);
        /* exact, as Python: 2**63 - 1 differs from 9.223372036854775807e18 */
        if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) return false;
        return (double)(int64_t)f == f && (int64_t)f == n;
    }
    if (ta != tb) return false;
    return mp_value_equal(a, b);
}

static int scan(mp_shareable_list *l, const mp_value *v, bool first, size_t *found,
                const char *fn) {
    if (!l) return mp__err(MP_EINVAL, "%s: list is NULL", fn);
    if (!v) return mp__err(MP_EINVAL, "%s: value is NULL", fn);
    size_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
        mp_value *e;
        int rc = mp_shareable_list_get(l, i, &e);
        if (rc) return rc;
        bool eq = py_equal(e, v);
        mp_value_free(e);
        if (!eq) continue;
        if (first) {
            *found = i;
            return 0;
        }
        count++;
    }
    if (first) return mp__err(MP_ENOENT, "%s: value not in the list", fn);
    *found = count;
    return 0;
}

int mp_shareable_list_count(mp_shareable_list *l, const mp_value *v, size_t *n) {
    if (!n) return mp__err(MP_EINVAL, "mp_shareable_list_count: n is NULL");
    *n = 0;
    return scan(l, v, false, n, "mp_shareable_list_count");
}

int mp_shareable_list_index(mp_shareable_list *l, const mp_value *v, size_t *i) {
    if (!i) return mp__err(MP_EINVAL, "mp_shareable_list_index: i is NULL");
    *i = 0;
    return scan(l, v, true, i, "mp_shareable_list_index");
}

mp_shm *mp_shareable_list_shm(const mp_shareable_list *l) { return l ? l->shm : NULL; }

void mp_shareable_list_free(mp_shareable_list *l) {
    if (!l) return;
    mp_shm_free(l->shm);
    mp__free(l->offsets);
    mp__free(l);
}
