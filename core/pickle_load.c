/* mp_value_loads: the safe subset of pickle (protocols 0-5) that CPython emits for
 * None, bool, int, float, str, bytes, tuple, list, dict, set, frozenset and objects,
 * Python 2's included (its str, its text opcodes, cPickle's memo from 1). The exact
 * list is in value.h.
 *
 * Safety rules: nothing is ever called; every length is checked against what is left
 * of the input (and the current frame) before anything is read or allocated, and
 * against the limits; the machine is a loop over opcodes with an explicit stack, so
 * depth costs no C stack (only a memo copy recurses, bounded by max_depth).
 *
 * Ownership: every value is on the stack, inside exactly one container, or on the
 * discard list (popped and not kept: a STACK_GLOBAL's strings, a replaced dict value);
 * the memo only borrows. Discarded values live until the end because the memo may
 * still name them, so a GET never sees freed memory. A GET copies: values are trees.
 * A container that a GET copied and that changes afterwards would be shared with
 * itself in Python (a cycle): refused.
 *
 * Amplification: since a GET copies, a few bytes of memo references to memo references
 * would decode to millions of values. So beside the caller's limits, everything made
 * is charged against a bound set by the input's length, always: at most
 * AMP_VALUES_PER_BYTE values per input byte + AMP_VALUES_EXTRA, and AMP_BYTES_PER_BYTE
 * bytes of str/bytes payload and object names per input byte + AMP_BYTES_EXTRA. A
 * pickle without GETs never reaches it: each opcode is at least one byte and makes at
 * most one value (a MARK counts as one), and text decodes to at most twice its length
 * (a Latin-1 byte of UNICODE becomes two bytes of UTF-8). So twice what a plain pickle
 * can make is left for copies, plus a fixed allowance for the shared references
 * CPython writes for ordinary data ([[0] * 100] * 1000 is 101,001 values from 2.2 KB,
 * ['a' * 10000] * 100 1 MB from 10 KB). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle_hook.h"
#include "pickle_ops.h"
#include "value_internal.h"

#define DEFAULT_MAX_SIZE ((size_t)1 << 30)
#define DEFAULT_MAX_ITEMS ((size_t)1 << 22)
#define MAX_LINE 256 /* text arguments: memo indexes, floats, module and global names */
#define AMP_VALUES_PER_BYTE 2
#define AMP_VALUES_EXTRA ((size_t)1 << 17)
#define AMP_BYTES_PER_BYTE 4
#define AMP_BYTES_EXTRA ((size_t)1 << 22)

/* What the last mp_value_loads on this thread charged (core/pickle_hook.h). */
static MP__THREAD_LOCAL size_t t_values, t_bytes;

typedef struct dec {
    const unsigned char *start, *p, *end;
    const unsigned char *frame_end; /* NULL outside a frame */
    size_t pos;                     /* offset of the opcode being run, for messages */
    unsigned char opc;
    unsigned char proto; /* from PROTO; 0 without one */
    mp_value_limits lim;
    size_t items_left, bytes_left; /* the caller's limits */
    size_t amp_values, amp_bytes;  /* the amplification bound, set by the input's length */
    size_t charged_values, charged_bytes;
    mp_value **stack;
    size_t sn, scap;
    size_t *marks; /* stack heights at each MARK */
    size_t mn, mcap;
    mp_value **memo;
    size_t memo_n, memo_cap;
    mp_value *discard;
} dec;

static int bad(dec *d, const char *fmt, ...) MP__PRINTF(2, 3);

/* MP_EPROTO with "pickle: at byte N (opcode 0xNN): <detail>". */
static int bad(dec *d, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mp__err(MP_EPROTO, "pickle: at byte %zu (opcode 0x%02x): %s", d->pos, d->opc, msg);
}

static int too_big(dec *d, const char *what, size_t n, size_t limit) {
    return mp__err(MP_ETOOBIG, "pickle: at byte %zu: %s (%zu) exceeds the limit of %zu", d->pos,
                   what, n, limit);
}

/* Charges values and bytes made (payload: str/bytes, counted by max_size too; other:
 * object names and converted bytes, which only the amplification bound counts). */
static int charge(dec *d, size_t values, size_t payload, size_t other, bool copy) {
    size_t len = (size_t)(d->end - d->start);
    if (values > d->items_left)
        return too_big(d, copy ? "number of values (memo copies count too)" : "number of values",
                       d->lim.max_items - d->items_left + values, d->lim.max_items);
    if (payload > d->bytes_left)
        return too_big(d, "total str/bytes size", d->lim.max_size - d->bytes_left + payload,
                       d->lim.max_size);
    size_t bytes = payload + other;
    if (values > d->amp_values - d->charged_values) {
        size_t bound = AMP_VALUES_PER_BYTE * len + AMP_VALUES_EXTRA;
        return mp__err(MP_ETOOBIG,
                       "pickle: at byte %zu: the decoded value would be more than %zu times the "
                       "message's size: over %zu values from %zu bytes (the bound is %d per byte "
                       "+ %zu; a memo reference copies what it names)",
                       d->pos, bound / len, bound, len, AMP_VALUES_PER_BYTE, AMP_VALUES_EXTRA);
    }
    if (bytes > d->amp_bytes - d->charged_bytes) {
        size_t bound = AMP_BYTES_PER_BYTE * len + AMP_BYTES_EXTRA;
        return mp__err(
            MP_ETOOBIG,
            "pickle: at byte %zu: the decoded value would be more than %zu times the "
            "message's size: over %zu bytes of str, bytes and names from %zu (the bound is %d "
            "per byte + %zu; a memo reference copies what it names)",
            d->pos, bound / len, bound, len, AMP_BYTES_PER_BYTE, AMP_BYTES_EXTRA);
    }
    d->items_left -= values;
    d->bytes_left -= payload;
    d->charged_values += values;
    d->charged_bytes += bytes;
    return 0;
}

/* Bytes readable now: the rest of the frame, or of the input outside frames. */
static size_t avail(dec *d) {
    if (d->frame_end && d->p == d->frame_end) d->frame_end = NULL; /* frame used up */
    return (size_t)((d->frame_end ? d->frame_end : d->end) - d->p);
}

/* Points at n bytes of argument and consumes them, or reports a truncation. */
static int take(dec *d, uint64_t n, const unsigned char **out) {
    size_t a = avail(d);
    *out = NULL; /* on failure too, so no caller can read an unset pointer */
    if (n > a) {
        if (d->frame_end)
            return bad(d, "needs %llu bytes but its frame ends after %zu", (unsigned long long)n,
                       a);
        return bad(d, "needs %llu bytes but only %zu are left (truncated)", (unsigned long long)n,
                   a);
    }
    *out = d->p;
    d->p += n;
    return 0;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A text argument ending in '\n' (without it) within the frame or input: at most max
 * bytes, and no NUL unless nul. */
static int line_max(dec *d, const char **s, size_t *n, size_t max, bool nul) {
    size_t a = avail(d);
    size_t lim = a <= max ? a : max + 1;
    const unsigned char *nl = memchr(d->p, '\n', lim);
    if (!nl) {
        if (lim == a) return bad(d, "text argument without its newline (truncated)");
        return bad(d, "text argument longer than %zu bytes", max);
    }
    *s = (const char *)d->p;
    *n = (size_t)(nl - d->p);
    if (!nul && memchr(*s, '\0', *n)) return bad(d, "NUL byte in a text argument");
    d->p = nl + 1;
    return 0;
}

/* A short text argument: a memo index, a float, a module or global name. */
static int line(dec *d, const char **s, size_t *n) { return line_max(d, s, n, MAX_LINE, false); }

/* Decimal [+-]digits; *big set (and 0 returned) when it does not fit in int64. With
 * strict, no leading zero before other digits: CPython reads I and L with base 0,
 * where "010" is octal (C unpickler) or an error (Python's), never ten. */
static int parse_dec(dec *d, const char *s, size_t n, bool strict, int64_t *out, bool *big) {
    size_t i = 0;
    bool neg = false;
    *big = false;
    *out = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i == n) return bad(d, "empty decimal number");
    if (strict && s[i] == '0') {
        for (size_t j = i; j < n; j++)
            if (s[j] != '0')
                return bad(d, "decimal number with a leading zero (octal in CPython's reader)");
    }
    uint64_t v = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return bad(d, "bad character in a decimal number");
        unsigned dig = (unsigned)(s[i] - '0');
        if (v > (limit - dig) / 10) *big = true;
        if (!*big) v = v * 10 + dig;
    }
    if (!*big) *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* ---- values and the stack ---- */

static mp_value *make(dec *d, mp_value_type t, int *rc) {
    if ((*rc = charge(d, 1, 0, 0, false))) return NULL;
    mp_value *v = mp__value_alloc(t);
    if (!v) {
        *rc = MP_ENOMEM;
        return NULL;
    }
    if (t >= MP_VALUE_TUPLE) v->height = 1;
    return v;
}

static void discard(dec *d, mp_value *v) {
    if (!v) return;
    v->next = d->discard;
    d->discard = v;
}

static size_t base(const dec *d) { return d->mn ? d->marks[d->mn - 1] : 0; }

/* Pushes v, which the stack owns from now on (discarded on failure). */
static int push(dec *d, mp_value *v) {
    if (d->sn == d->scap) {
        size_t cap = d->scap ? d->scap * 2 : 32;
        mp_value **s = mp__realloc(d->stack, cap * sizeof *s);
        if (!s) {
            discard(d, v);
            return mp__err(MP_ENOMEM, "pickle: out of memory for the stack");
        }
        d->stack = s;
        d->scap = cap;
    }
    d->stack[d->sn++] = v;
    return 0;
}

static int need(dec *d, size_t n, const char *what) {
    if (d->sn - base(d) < n)
        return bad(d, "%s needs %zu value%s on the stack, %zu there", what, n, n == 1 ? "" : "s",
                   d->sn - base(d));
    return 0;
}

static mp_value *pop(dec *d) { return d->stack[--d->sn]; }

static int pop_mark(dec *d, const char *what, size_t *k) {
    if (!d->mn) return bad(d, "%s without a MARK", what);
    *k = d->marks[--d->mn];
    return 0;
}

/* Records that item went into c: nesting is checked here, the only place it grows. */
static int adopt(dec *d, mp_value *c, const mp_value *item) {
    if (item->height + 1 > c->height) c->height = item->height + 1;
    if (c->height > d->lim.max_depth)
        return too_big(d, "nesting depth", c->height, d->lim.max_depth);
    return 0;
}

static int mutable_check(dec *d, const mp_value *c, const char *what) {
    if (c->flags & MP__VF_SHARED)
        return bad(d, "%s changes a %s after a memo reference to it (a cycle): unsupported", what,
                   mp_value_type_name((mp_value_type)c->type));
    return 0;
}

/* Moves stack[k..sn) into seq (a new tuple/list or an existing list). */
static int fill_seq(dec *d, mp_value *seq, size_t k) {
    for (size_t i = k; i < d->sn; i++) {
        int rc = adopt(d, seq, d->stack[i]);
        if (!rc) rc = mp__value_seq_push(seq, d->stack[i]);
        if (rc) {
            /* the rest stay on the stack, which the error path frees */
            memmove(d->stack + k, d->stack + i, (d->sn - i) * sizeof *d->stack);
            d->sn = k + (d->sn - i);
            return rc;
        }
    }
    d->sn = k;
    return 0;
}

/* Python's loads raises TypeError for a key or set item it cannot hash. */
static int hashable(dec *d, const mp_value *key, const char *what) {
    const mp_value *b;
    if (mp__value_hashable(key, &b)) return 0;
    return bad(d, "%s is unhashable in Python (a %s%s)", what,
               mp_value_type_name((mp_value_type)b->type), b == key ? "" : " inside it");
}

static int dict_fill(dec *d, mp_value *dict, size_t k) {
    if ((d->sn - k) % 2) return bad(d, "odd number of values for a dict (%zu)", d->sn - k);
    for (size_t i = k; i < d->sn; i += 2) {
        mp_value *ok, *ov;
        int rc = hashable(d, d->stack[i], "a dict key");
        if (!rc) rc = adopt(d, dict, d->stack[i]);
        if (!rc) rc = adopt(d, dict, d->stack[i + 1]);
        if (!rc) rc = mp__value_dict_put(dict, d->stack[i], d->stack[i + 1], &ok, &ov);
        if (rc) {
            memmove(d->stack + k, d->stack + i, (d->sn - i) * sizeof *d->stack);
            d->sn = k + (d->sn - i);
            return rc;
        }
        discard(d, ok);
        discard(d, ov);
    }
    d->sn = k;
    return 0;
}

/* Moves items[0..n) into a set or frozenset; an item equal to one there already is
 * discarded (Python keeps the first). On failure items[*taken..n) are still the
 * caller's. */
static int set_take(dec *d, mp_value *set, mp_value **items, size_t n, size_t *taken) {
    for (*taken = 0; *taken < n; ++*taken) {
        mp_value *dup, *it = items[*taken];
        int rc = hashable(d, it, "a set item");
        if (!rc) rc = adopt(d, set, it);
        if (!rc) rc = mp__value_set_put(set, it, &dup);
        if (rc) return rc;
        discard(d, dup);
    }
    return 0;
}

/* Moves stack[k..sn) into a set or frozenset. */
static int fill_set(dec *d, mp_value *set, size_t k) {
    if (k == d->sn) return 0; /* the stack may never have been allocated */
    size_t taken;
    int rc = set_take(d, set, d->stack + k, d->sn - k, &taken);
    /* on failure the rest stay on the stack, which the error path frees */
    if (k + taken < d->sn)
        memmove(d->stack + k, d->stack + k + taken, (d->sn - k - taken) * sizeof *d->stack);
    d->sn -= taken;
    return rc;
}

/* APPEND(S), ADDITEMS, SETITEM(S): stack[k..] go into stack[k - 1], a list, set or
 * dict as the opcode says, or an object made by REDUCE/NEWOBJ (its list/dict items,
 * as CPython's pickler writes them for list and dict subclasses). */
static int add_items(dec *d, const char *what, size_t k) {
    bool dict = what[0] == 'S', set = what[0] == 'A' && what[1] == 'D';
    mp_value_type want = dict ? MP_VALUE_DICT : set ? MP_VALUE_SET : MP_VALUE_LIST;
    mp_value *c = d->stack[k - 1], *into = c;
    if (c->type == MP_VALUE_OBJECT && c->u.o.args && !set) {
        if (k == d->sn) return 0;
        mp_value **slot = dict ? &c->u.o.ditems : &c->u.o.items;
        int rc = mutable_check(d, c, what);
        if (rc) return rc;
        if (!*slot && !(*slot = make(d, want, &rc))) return rc;
        into = *slot;
    } else if (c->type != want) {
        return bad(d, "%s to a %s", what, mp_value_type_name((mp_value_type)c->type));
    }
    if (k < d->sn) {
        int rc = mutable_check(d, c, what);
        if (!rc)
            rc = dict ? dict_fill(d, into, k) : set ? fill_set(d, into, k) : fill_seq(d, into, k);
        if (rc) return rc;
    }
    if (into->height > c->height) c->height = into->height;
    return 0;
}

/* ---- scalars ---- */

static int push_int(dec *d, int64_t i) {
    int rc;
    mp_value *v = make(d, MP_VALUE_INT, &rc);
    if (!v) return rc;
    v->u.i = i;
    return push(d, v);
}

/* A str or bytes value of n decoded bytes: within max_str, and within what is left of
 * max_size for all of them. */
static int blob_fits(dec *d, mp_value_type t, uint64_t n) {
    const char *what = t == MP_VALUE_STR ? "str length" : "bytes length";
    if (n > d->lim.max_str)
        return too_big(d, what, (size_t)(n > SIZE_MAX ? SIZE_MAX : n), d->lim.max_str);
    if (n > d->bytes_left) return too_big(d, "total str/bytes size", (size_t)n, d->lim.max_size);
    return 0;
}

/* Pushes a new str/bytes value, a copy of the n bytes at p (blob_fits checked). */
static int push_bytes(dec *d, mp_value_type t, const void *p, size_t n) {
    int rc = charge(d, 0, n, 0, false);
    if (rc) return rc;
    mp_value *v = make(d, t, &rc);
    if (!v) return rc;
    v->u.s.p = mp__malloc(n + 1);
    if (!v->u.s.p) {
        mp__value_node_free(v);
        return mp__err(MP_ENOMEM, "pickle: out of memory for %zu bytes", n);
    }
    if (n) memcpy(v->u.s.p, p, n);
    v->u.s.p[n] = '\0';
    v->u.s.n = n;
    return push(d, v);
}

static int push_blob(dec *d, mp_value_type t, uint64_t n) {
    int rc = blob_fits(d, t, n);
    if (rc) return rc;
    const unsigned char *p;
    if ((rc = take(d, n, &p))) return rc;
    if (t == MP_VALUE_STR && !mp__utf8_valid((const char *)p, (size_t)n))
        return bad(d, "str of %llu bytes is not valid UTF-8", (unsigned long long)n);
    return push_bytes(d, t, p, (size_t)n);
}

/* LONG1/LONG4 payload: little-endian two's complement, empty meaning 0. */
static int push_long(dec *d, uint64_t n) {
    const unsigned char *p;
    int rc = take(d, n, &p);
    if (rc) return rc;
    if (n > 8) {
        /* wider is fine when the extra bytes only repeat the sign */
        unsigned char fill = (p[n - 1] & 0x80) ? 0xff : 0x00;
        for (uint64_t i = 8; i < n; i++)
            if (p[i] != fill || ((p[7] & 0x80) != (fill & 0x80)))
                return mp__err(MP_ETOOBIG,
                               "pickle: at byte %zu: int of %llu bytes does not fit in 64 bits",
                               d->pos, (unsigned long long)n);
        n = 8;
    }
    uint64_t u = le(p, (int)n);
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
    return push_int(d, (int64_t)u);
}

/* ---- protocol 0 and 1 text, Python 2 strings ---- */

/* I and L: decimal, at any length (a longer one is only too big); L may end in 'L'. */
static int push_text_int(dec *d, bool is_long) {
    const char *s;
    size_t n;
    int64_t iv;
    bool big;
    int rc = line_max(d, &s, &n, SIZE_MAX, false);
    if (rc) return rc;
    if (!is_long && n == 2 && (memcmp(s, "00", 2) == 0 || memcmp(s, "01", 2) == 0)) {
        /* protocols 0 and 1 write True and False so */
        mp_value *v = make(d, MP_VALUE_BOOL, &rc);
        if (!v) return rc;
        v->u.b = s[1] == '1';
        return push(d, v);
    }
    if (is_long && n > 0 && s[n - 1] == 'L') n--;
    if ((rc = parse_dec(d, s, n, true, &iv, &big))) return rc;
    if (big)
        return mp__err(MP_ETOOBIG, "pickle: at byte %zu: int %.*s%s does not fit in 64 bits",
                       d->pos, n > 40 ? 40 : (int)n, s, n > 40 ? "..." : "");
    return push_int(d, iv);
}

static bool ascii_eq_nocase(const char *s, size_t n, const char *lit) {
    if (strlen(lit) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        if (c != lit[i]) return false;
    }
    return true;
}

/* F: a float's repr (Python 3) or %.17g / str (Python 2), as CPython's unpickler reads
 * it (PyOS_string_to_double): [+-] then digits with an optional '.' and exponent, or
 * inf/infinity/nan in any case; no spaces or underscores; a value beyond the float
 * range is an error (OverflowError there). The conversion is strtod's, given the
 * digits without their '.' and the exponent adjusted, so no locale's decimal point
 * can change it. */
static int push_text_float(dec *d) {
    const char *s;
    size_t n;
    int rc = line(d, &s, &n);
    if (rc) return rc;
    size_t i = 0;
    bool neg = n > 0 && s[0] == '-';
    if (n > 0 && (s[0] == '-' || s[0] == '+')) i++;
    double f;
    if (ascii_eq_nocase(s + i, n - i, "inf") || ascii_eq_nocase(s + i, n - i, "infinity")) {
        f = neg ? -INFINITY : INFINITY;
    } else if (ascii_eq_nocase(s + i, n - i, "nan")) {
        f = neg ? -NAN : NAN;
    } else {
        /* buf: sign and digits (no '.'); exp: the exponent, less the fraction's digits */
        char buf[MAX_LINE + 32];
        size_t o = 0, digits = 0, j = i;
        long exp = 0;
        if (neg) buf[o++] = '-';
        for (; j < n && s[j] >= '0' && s[j] <= '9'; j++, digits++) buf[o++] = s[j];
        if (j < n && s[j] == '.')
            for (j++; j < n && s[j] >= '0' && s[j] <= '9'; j++, digits++, exp--) buf[o++] = s[j];
        if (digits && j < n && (s[j] == 'e' || s[j] == 'E')) {
            bool eneg = false;
            long e = 0;
            size_t start = ++j;
            if (j < n && (s[j] == '+' || s[j] == '-')) eneg = s[j] == '-', start = ++j;
            /* capped: past it, 256 digits give 0 or overflow whatever the rest says */
            for (; j < n && s[j] >= '0' && s[j] <= '9'; j++)
                if (e < 100000) e = e * 10 + (s[j] - '0');
            if (j == start) digits = 0;
            exp += eneg ? -e : e;
        }
        if (!digits || j != n) return bad(d, "FLOAT argument '%.*s' is not a number", (int)n, s);
        snprintf(buf + o, sizeof buf - o, "e%ld", exp);
        char *end;
        errno = 0;
        f = strtod(buf, &end);
        if (*end) return bad(d, "FLOAT argument '%.*s' is not a number", (int)n, s);
        if (errno == ERANGE && fabs(f) >= 1.0)
            return bad(d, "FLOAT argument '%.*s' is beyond the float range", (int)n, s);
    }
    mp_value *v = make(d, MP_VALUE_FLOAT, &rc);
    if (!v) return rc;
    v->u.f = f;
    return push(d, v);
}

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Writes code point cp as UTF-8 (surrogates too, as "surrogatepass") at out, or only
 * counts it when out is NULL; returns the byte count. */
static size_t put_utf8(char *out, uint32_t cp) {
    unsigned char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    if (out) memcpy(out, b, k);
    return k;
}

/* CPython's raw-unicode-escape decoder: a byte is the code point of that value (Latin-1),
 * except \uXXXX and \UXXXXXXXX (exactly 4 and 8 hex digits, at most U+10FFFF); a
 * backslash before anything else stands for itself, and so does that character. Into
 * out as UTF-8, or (out NULL) only measured into *len. */
static int raw_unicode_escape(dec *d, const unsigned char *s, size_t n, char *out, size_t *len) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i++];
        if (c != '\\' || i == n) {
            o += put_utf8(out ? out + o : NULL, c);
            continue;
        }
        c = s[i++];
        int count = c == 'u' ? 4 : c == 'U' ? 8 : 0;
        if (!count) {
            o += put_utf8(out ? out + o : NULL, '\\');
            o += put_utf8(out ? out + o : NULL, c);
            continue;
        }
        uint32_t cp = 0;
        for (int k = 0; k < count; k++, i++) {
            int h = i < n ? hex_digit(s[i]) : -1;
            if (h < 0) return bad(d, "UNICODE argument: truncated or bad \\%c escape", c);
            cp = (cp << 4) | (uint32_t)h;
        }
        if (cp > 0x10FFFF)
            return bad(d, "UNICODE argument: \\U%08x is beyond U+10FFFF", (unsigned)cp);
        o += put_utf8(out ? out + o : NULL, cp);
    }
    *len = o;
    return 0;
}

/* V: a str in raw-unicode-escape up to its newline (Python 3 escapes '\\', '\n', '\r',
 * NUL and ^Z as \uXXXX; Python 2 only '\\' and '\n', so raw NULs are fine). */
static int push_text_unicode(dec *d) {
    const char *s;
    size_t n, len;
    int rc = line_max(d, &s, &n, SIZE_MAX, true);
    if (rc || (rc = raw_unicode_escape(d, (const unsigned char *)s, n, NULL, &len))) return rc;
    if ((rc = blob_fits(d, MP_VALUE_STR, len))) return rc;
    char *buf = mp__malloc(len + 1);
    if (!buf) return mp__err(MP_ENOMEM, "pickle: out of memory for %zu bytes", len);
    raw_unicode_escape(d, (const unsigned char *)s, n, buf, &len);
    rc = push_bytes(d, MP_VALUE_STR, buf, len);
    mp__free(buf);
    return rc;
}

/* CPython's escape_decode (PyBytes_DecodeEscape) of a STRING argument: \\ \' \" \a
 * \b \f \n \r \t \v, octal of 1-3 digits (taken modulo 256), \xHH with exactly two
 * hex digits; a backslash before anything else stands for itself, a trailing one is an
 * error. Into out, or (out NULL) only measured into *len. */
static int escape_decode(dec *d, const unsigned char *s, size_t n, unsigned char *out,
                         size_t *len) {
    static const char simple[] = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i++], v;
        if (c != '\\') {
            v = c;
        } else if (i == n) {
            return bad(d, "STRING argument ends in a lone backslash");
        } else {
            c = s[i++];
            const char *m = c ? strchr(simple, c) : NULL;
            if (m && (size_t)(m - simple) % 2 == 0) {
                v = (unsigned char)m[1];
            } else if (c >= '0' && c <= '7') {
                unsigned x = (unsigned)(c - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++)
                    x = x * 8 + (unsigned)(s[i++] - '0');
                v = (unsigned char)x;
            } else if (c == 'x') {
                int h1 = i < n ? hex_digit(s[i]) : -1, h2 = i + 1 < n ? hex_digit(s[i + 1]) : -1;
                if (h1 < 0 || h2 < 0) return bad(d, "STRING argument: bad \\x escape");
                v = (unsigned char)(h1 * 16 + h2);
                i += 2;
            } else {
                if (out) out[o] = '\\';
                o++;
                i--; /* the character after it is read again, as itself */
                continue;
            }
        }
        if (out) out[o] = v;
        o++;
    }
    *len = o;
    return 0;
}

/* S (protocol 0), and T/U (protocols 1-2): a Python 2 str, which Python 3's loads turns
 * into a str with its default encoding, ASCII, so other bytes are an error, as there. */
static int push_py2_str(dec *d, const unsigned char *p, size_t n, bool escaped) {
    size_t len = n;
    int rc = escaped ? escape_decode(d, p, n, NULL, &len) : 0;
    if (rc || (rc = blob_fits(d, MP_VALUE_STR, len))) return rc;
    unsigned char *buf = NULL;
    if (escaped) {
        if (!(buf = mp__malloc(len + 1)))
            return mp__err(MP_ENOMEM, "pickle: out of memory for %zu bytes", len);
        escape_decode(d, p, n, buf, &len);
        p = buf;
    }
    for (size_t i = 0; i < len && !rc; i++)
        if (p[i] >= 0x80)
            rc = bad(d,
                     "Python 2 str with a non-ASCII byte (0x%02x): Python 3 refuses it too, "
                     "unless given an encoding",
                     p[i]);
    if (!rc) rc = push_bytes(d, MP_VALUE_STR, p, len);
    mp__free(buf);
    return rc;
}

static int push_text_string(dec *d) {
    const char *s;
    size_t n;
    int rc = line_max(d, &s, &n, SIZE_MAX, true);
    if (rc) return rc;
    if (n < 2 || s[0] != s[n - 1] || (s[0] != '\'' && s[0] != '"'))
        return bad(d, "the STRING argument must be quoted");
    return push_py2_str(d, (const unsigned char *)s + 1, n - 2, true);
}

/* ---- globals and objects ---- */

static mp_value *make_object(dec *d, const char *mod, size_t mn, const char *name, size_t nn,
                             int *rc) {
    if ((*rc = charge(d, 1, 0, mn + nn + 2, false))) return NULL;
    mp_value *v = mp__value_object(mod, mn, name, nn);
    if (!v) {
        *rc = MP_ENOMEM;
        return NULL;
    }
    v->height = 1;
    return v;
}

static bool is_builtin(const char *module) {
    return strcmp(module, "builtins") == 0 || strcmp(module, "__builtin__") == 0;
}

/* Globals that protocols 0-3 use to rebuild plain data; decoded, never called. */
static bool known_global(const char *module, const char *name) {
    if (strcmp(module, "_codecs") == 0) return strcmp(name, "encode") == 0;
    return is_builtin(module) && (strcmp(name, "bytes") == 0 || strcmp(name, "bytearray") == 0 ||
                                  strcmp(name, "set") == 0 || strcmp(name, "frozenset") == 0);
}

/* Python 3 names for the Python 2 modules that protocols 0-2 name (CPython's
 * fix_imports, for the modules plain data and exceptions use). */
static const char *py3_module(const char *mod, size_t mn, size_t *n3) {
    static const char *const map[][2] = {
        {"__builtin__", "builtins"}, {"exceptions", "builtins"}, {"copy_reg", "copyreg"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strlen(map[i][0]) == mn && memcmp(mod, map[i][0], mn) == 0) {
            *n3 = strlen(map[i][1]);
            return map[i][1];
        }
    }
    *n3 = mn;
    return mod;
}

static int push_global(dec *d, const char *mod, size_t mn, const char *name, size_t nn) {
    if (!mp__utf8_valid(mod, mn) || !mp__utf8_valid(name, nn) || memchr(mod, 0, mn) ||
        memchr(name, 0, nn))
        return bad(d, "global name is not clean UTF-8");
    if (d->proto < 3) {
        static const char *const names[][2] = {
            {"long", "int"}, {"unicode", "str"}, {"basestring", "str"}, {"xrange", "range"}};
        if (mn == 11 && memcmp(mod, "__builtin__", 11) == 0) {
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                if (strlen(names[i][0]) == nn && memcmp(name, names[i][0], nn) == 0) {
                    name = names[i][1];
                    nn = strlen(name);
                    break;
                }
            }
        }
        mod = py3_module(mod, mn, &mn);
    }
    int rc;
    mp_value *v = make_object(d, mod, mn, name, nn, &rc);
    if (!v) return rc;
    if (d->lim.refuse_objects && !known_global(v->u.o.module, mp__obj_name(v))) {
        rc = bad(d, "global %s.%s refused (objects are disabled by the limits)", v->u.o.module,
                 mp__obj_name(v));
        mp_value_free(v);
        return rc;
    }
    return push(d, v);
}

/* Latin-1 text (code points <= U+00FF) as bytes: how protocols 0-2 carry bytes. */
static int latin1_bytes(dec *d, const mp_value *s, mp_value **out) {
    int rc = charge(d, 0, 0, s->u.s.n, false);
    if (rc) return rc;
    mp_value *b = make(d, MP_VALUE_BYTES, &rc);
    if (!b) return rc;
    b->u.s.p = mp__malloc(s->u.s.n + 1);
    if (!b->u.s.p) {
        mp__free(b);
        return mp__err(MP_ENOMEM, "pickle: out of memory");
    }
    const unsigned char *p = (const unsigned char *)s->u.s.p;
    size_t n = 0;
    for (size_t i = 0; i < s->u.s.n; i++) {
        if (p[i] < 0x80) {
            b->u.s.p[n++] = (char)p[i];
        } else if ((p[i] == 0xC2 || p[i] == 0xC3) && i + 1 < s->u.s.n) {
            b->u.s.p[n++] = (char)(((p[i] & 0x03) << 6) | (p[i + 1] & 0x3F));
            i++;
        } else {
            mp_value_free(b);
            return bad(d, "_codecs.encode(..., 'latin1') of a character above U+00FF");
        }
    }
    b->u.s.p[n] = '\0';
    b->u.s.n = n;
    *out = b;
    return 0;
}

/* The known constructors applied to args: *out is the data value, or NULL when the
 * call is not one of them (then it stays an inert object). */
static int known_call(dec *d, const mp_value *g, mp_value *args, mp_value **out) {
    *out = NULL;
    const char *m = g->u.o.module, *n = mp__obj_name(g);
    size_t na = args->u.seq.n;
    mp_value *a0 = na ? args->u.seq.items[0] : NULL, *enc = na == 2 ? args->u.seq.items[1] : NULL;
    /* (text, 'latin1'): protocols 0-2 of Python 3 spell bytes _codecs.encode(...), and
     * Python 2 a bytearray bytearray(u'...', 'latin-1') */
    bool latin1 = a0 && a0->type == MP_VALUE_STR && enc && enc->type == MP_VALUE_STR &&
                  (strcmp(enc->u.s.p, "latin1") == 0 || strcmp(enc->u.s.p, "latin-1") == 0);
    if (strcmp(m, "_codecs") == 0 && strcmp(n, "encode") == 0) {
        if (latin1) return latin1_bytes(d, a0, out);
    } else if (is_builtin(m) && (strcmp(n, "bytes") == 0 || strcmp(n, "bytearray") == 0)) {
        if (latin1) return latin1_bytes(d, a0, out);
        if (na == 0) {
            int rc;
            mp_value *b = make(d, MP_VALUE_BYTES, &rc);
            if (!b) return rc;
            if (!(b->u.s.p = mp__calloc(1, 1))) {
                mp__free(b);
                return mp__err(MP_ENOMEM, "pickle: out of memory");
            }
            *out = b;
            return 0;
        }
        if (na == 1 && a0->type == MP_VALUE_BYTES) {
            args->u.seq.n = 0; /* the bytes move out of the args tuple */
            args->flags |= MP__VF_MOVED;
            *out = a0;
            return 0;
        }
    } else if (is_builtin(m) && (strcmp(n, "set") == 0 || strcmp(n, "frozenset") == 0) &&
               (na == 0 ||
                (na == 1 && (a0->type == MP_VALUE_LIST || a0->type == MP_VALUE_TUPLE)))) {
        /* set(iterable): protocols 0-3 give a list */
        int rc;
        mp_value *set = make(d, n[0] == 's' ? MP_VALUE_SET : MP_VALUE_FROZENSET, &rc);
        if (!set) return rc;
        if (na == 1) {
            /* The items move into the set. The list may be in the memo: a GET of it
             * (which CPython never writes) is refused rather than seen empty. */
            size_t taken;
            rc = set_take(d, set, a0->u.seq.items, a0->u.seq.n, &taken);
            /* what was not taken stays in the list, freed with the args */
            if (taken < a0->u.seq.n)
                memmove(a0->u.seq.items, a0->u.seq.items + taken,
                        (a0->u.seq.n - taken) * sizeof *a0->u.seq.items);
            a0->u.seq.n -= taken;
            a0->flags |= MP__VF_MOVED;
            args->flags |= MP__VF_MOVED;
            if (rc) {
                mp_value_free(set);
                return rc;
            }
        }
        *out = set;
        return 0;
    }
    if (d->lim.refuse_objects) return bad(d, "call of %s.%s refused (objects are disabled)", m, n);
    return 0;
}

/* REDUCE / NEWOBJ: callable and args tuple on the stack. */
static int reduce(dec *d, bool newobj) {
    int rc = need(d, 2, newobj ? "NEWOBJ" : "REDUCE");
    if (rc) return rc;
    mp_value *args = d->stack[d->sn - 1], *g = d->stack[d->sn - 2];
    if (args->type != MP_VALUE_TUPLE)
        return bad(d, "arguments are a %s, not a tuple",
                   mp_value_type_name((mp_value_type)args->type));
    if (g->type != MP_VALUE_OBJECT || g->u.o.args || g->u.o.state)
        return bad(d, "the callable is a %s, not a global: unsupported",
                   g->type == MP_VALUE_OBJECT ? "call result"
                                              : mp_value_type_name((mp_value_type)g->type));
    mp_value *res = NULL;
    if (!newobj) {
        rc = known_call(d, g, args, &res);
        if (rc) return rc;
    } else if (d->lim.refuse_objects) {
        return bad(d, "NEWOBJ of %s.%s refused (objects are disabled)", g->u.o.module,
                   mp__obj_name(g));
    }
    d->sn -= 2;
    if (res) {
        discard(d, args);
        discard(d, g);
        return push(d, res);
    }
    /* a new node: the global itself may be named by the memo and used again */
    const char *name = mp__obj_name(g);
    res = make_object(d, g->u.o.module, strlen(g->u.o.module), name, strlen(name), &rc);
    discard(d, g);
    if (!res) {
        discard(d, args);
        return rc;
    }
    res->u.o.newobj = newobj;
    res->u.o.args = args;
    res->height = args->height + 1;
    if (res->height > d->lim.max_depth) {
        rc = too_big(d, "nesting depth", res->height, d->lim.max_depth);
        mp_value_free(res);
        return rc;
    }
    return push(d, res);
}

/* ---- memo ---- */

static int memo_put(dec *d, uint64_t idx) {
    if (d->sn == base(d)) return bad(d, "memo store with an empty stack");
    /* CPython numbers the memo densely, Python 2's cPickle from 1 (so index 0 stays
     * empty); a sparser index would only waste memory */
    if (idx > d->memo_n + (d->memo_n == 0))
        return bad(d, "memo index %llu skips ahead (next is %zu)", (unsigned long long)idx,
                   d->memo_n);
    while (idx >= d->memo_n) {
        if (d->memo_n == d->memo_cap) {
            size_t cap = d->memo_cap ? d->memo_cap * 2 : 32;
            mp_value **m = mp__realloc(d->memo, cap * sizeof *m);
            if (!m) return mp__err(MP_ENOMEM, "pickle: out of memory for the memo");
            d->memo = m;
            d->memo_cap = cap;
        }
        d->memo[d->memo_n++] = NULL;
    }
    d->memo[idx] = d->stack[d->sn - 1];
    return 0;
}

static int memo_get(dec *d, uint64_t idx) {
    if (idx >= d->memo_n || !d->memo[idx])
        return bad(d, "memo index %llu was never stored", (unsigned long long)idx);
    mp_value *src = d->memo[idx];
    if (src->flags & MP__VF_MOVED)
        return bad(d,
                   "memo index %llu names the arguments of a bytes/set constructor, which "
                   "became its result: unsupported",
                   (unsigned long long)idx);
    /* measured and charged before anything is made: a refused copy costs no memory */
    size_t values = 0, payload = 0, names = 0;
    mp__value_measure(src, &values, &payload, &names);
    int rc = charge(d, values, payload, names, true);
    if (rc) return rc;
    mp_value *c = mp_value_copy(src);
    if (!c) return mp__err(MP_ENOMEM, "pickle: out of memory copying a memo reference");
    src->flags |= MP__VF_SHARED;
    return push(d, c);
}

/* ---- the machine ---- */

static int step(dec *d, bool *stop) {
    const unsigned char *a;
    const char *s, *s2;
    size_t n, n2, k = 0;
    int64_t iv;
    bool big;
    int rc;
    mp_value *v, *c, *x;

    d->pos = (size_t)(d->p - d->start);
    d->opc = 0;
    if ((rc = take(d, 1, &a))) return rc;
    d->opc = a[0];
    switch (a[0]) {
    case OP_PROTO:
        if ((rc = take(d, 1, &a))) return rc;
        if (a[0] > 5) return bad(d, "unsupported protocol %u", a[0]);
        d->proto = a[0];
        return 0;
    case OP_FRAME: {
        if ((rc = take(d, 8, &a))) return rc;
        uint64_t fl = le(a, 8);
        if (d->frame_end && d->p != d->frame_end)
            return bad(d, "a new frame starts before the current one ends");
        if (fl > (uint64_t)(d->end - d->p))
            return bad(d, "frame of %llu bytes but only %zu are left (truncated)",
                       (unsigned long long)fl, (size_t)(d->end - d->p));
        d->frame_end = fl ? d->p + fl : NULL;
        return 0;
    }
    case OP_STOP:
        if (d->mn) return bad(d, "STOP with %zu unclosed MARK%s", d->mn, d->mn == 1 ? "" : "s");
        if (d->sn != 1) return bad(d, "STOP with %zu values on the stack, not 1", d->sn);
        *stop = true;
        return 0;
    case OP_NONE:
        if (!(v = make(d, MP_VALUE_NONE, &rc))) return rc;
        return push(d, v);
    case OP_NEWTRUE:
    case OP_NEWFALSE:
        if (!(v = make(d, MP_VALUE_BOOL, &rc))) return rc;
        v->u.b = a[0] == OP_NEWTRUE;
        return push(d, v);
    case OP_INT:
    case OP_LONG:
        return push_text_int(d, a[0] == OP_LONG);
    case OP_FLOAT:
        return push_text_float(d);
    case OP_UNICODE:
        return push_text_unicode(d);
    case OP_STRING:
        return push_text_string(d);
    case OP_SHORT_BINSTRING:
        if ((rc = take(d, 1, &a))) return rc;
        n = a[0];
        if ((rc = take(d, n, &a))) return rc;
        return push_py2_str(d, a, n, false);
    case OP_BINSTRING: {
        if ((rc = take(d, 4, &a))) return rc;
        int32_t ln = (int32_t)(uint32_t)le(a, 4);
        if (ln < 0) return bad(d, "negative BINSTRING length %d", (int)ln);
        if ((rc = take(d, (uint64_t)ln, &a))) return rc;
        return push_py2_str(d, a, (size_t)ln, false);
    }
    case OP_BININT:
        if ((rc = take(d, 4, &a))) return rc;
        return push_int(d, (int32_t)(uint32_t)le(a, 4));
    case OP_BININT1:
        if ((rc = take(d, 1, &a))) return rc;
        return push_int(d, a[0]);
    case OP_BININT2:
        if ((rc = take(d, 2, &a))) return rc;
        return push_int(d, (int64_t)le(a, 2));
    case OP_LONG1:
        if ((rc = take(d, 1, &a))) return rc;
        return push_long(d, a[0]);
    case OP_LONG4: {
        if ((rc = take(d, 4, &a))) return rc;
        int32_t ln = (int32_t)(uint32_t)le(a, 4);
        if (ln < 0) return bad(d, "negative LONG4 length %d", (int)ln);
        return push_long(d, (uint64_t)ln);
    }
    case OP_BINFLOAT: {
        if ((rc = take(d, 8, &a))) return rc;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | a[i];
        if (!(v = make(d, MP_VALUE_FLOAT, &rc))) return rc;
        memcpy(&v->u.f, &bits, 8);
        return push(d, v);
    }
    case OP_SHORT_BINUNICODE:
    case OP_SHORT_BINBYTES:
        if ((rc = take(d, 1, &a))) return rc;
        return push_blob(d, d->opc == OP_SHORT_BINBYTES ? MP_VALUE_BYTES : MP_VALUE_STR, a[0]);
    case OP_BINUNICODE:
    case OP_BINBYTES:
        if ((rc = take(d, 4, &a))) return rc;
        return push_blob(d, d->opc == OP_BINBYTES ? MP_VALUE_BYTES : MP_VALUE_STR, le(a, 4));
    case OP_BINUNICODE8:
    case OP_BINBYTES8:
    case OP_BYTEARRAY8:
        if ((rc = take(d, 8, &a))) return rc;
        return push_blob(d, d->opc == OP_BINUNICODE8 ? MP_VALUE_STR : MP_VALUE_BYTES, le(a, 8));
    case OP_EMPTY_TUPLE:
    case OP_EMPTY_LIST:
    case OP_EMPTY_DICT:
    case OP_EMPTY_SET:
        if (!(v = make(d,
                       a[0] == OP_EMPTY_TUPLE  ? MP_VALUE_TUPLE
                       : a[0] == OP_EMPTY_DICT ? MP_VALUE_DICT
                       : a[0] == OP_EMPTY_SET  ? MP_VALUE_SET
                                               : MP_VALUE_LIST,
                       &rc)))
            return rc;
        return push(d, v);
    case OP_TUPLE1:
    case OP_TUPLE2:
    case OP_TUPLE3:
        n = (size_t)(a[0] - OP_TUPLE1 + 1);
        if ((rc = need(d, n, "TUPLEn"))) return rc;
        if (!(v = make(d, MP_VALUE_TUPLE, &rc))) return rc;
        if ((rc = fill_seq(d, v, d->sn - n))) {
            mp_value_free(v);
            return rc;
        }
        return push(d, v);
    case OP_MARK:
        if ((rc = charge(d, 1, 0, 0, false))) return rc;
        if (d->mn == d->mcap) {
            size_t cap = d->mcap ? d->mcap * 2 : 16;
            size_t *m = mp__realloc(d->marks, cap * sizeof *m);
            if (!m) return mp__err(MP_ENOMEM, "pickle: out of memory for marks");
            d->marks = m;
            d->mcap = cap;
        }
        d->marks[d->mn++] = d->sn;
        return 0;
    case OP_TUPLE:
    case OP_LIST:
    case OP_FROZENSET:
        if ((rc = pop_mark(d, "TUPLE/LIST/FROZENSET", &k))) return rc;
        if (!(v = make(d,
                       a[0] == OP_TUPLE  ? MP_VALUE_TUPLE
                       : a[0] == OP_LIST ? MP_VALUE_LIST
                                         : MP_VALUE_FROZENSET,
                       &rc)))
            return rc;
        if ((rc = a[0] == OP_FROZENSET ? fill_set(d, v, k) : fill_seq(d, v, k))) {
            mp_value_free(v);
            return rc;
        }
        return push(d, v);
    case OP_DICT:
        if ((rc = pop_mark(d, "DICT", &k))) return rc;
        if (!(v = make(d, MP_VALUE_DICT, &rc))) return rc;
        if ((rc = dict_fill(d, v, k))) {
            mp_value_free(v);
            return rc;
        }
        return push(d, v);
    case OP_APPEND:
        if ((rc = need(d, 2, "APPEND"))) return rc;
        return add_items(d, "APPEND", d->sn - 1);
    case OP_SETITEM:
        if ((rc = need(d, 3, "SETITEM"))) return rc;
        return add_items(d, "SETITEM", d->sn - 2);
    case OP_APPENDS:
    case OP_ADDITEMS:
    case OP_SETITEMS: {
        const char *what = a[0] == OP_APPENDS    ? "APPENDS"
                           : a[0] == OP_ADDITEMS ? "ADDITEMS"
                                                 : "SETITEMS";
        if ((rc = pop_mark(d, what, &k))) return rc;
        if (k == base(d)) return bad(d, "%s with nothing below its MARK", what);
        return add_items(d, what, k);
    }
    case OP_MEMOIZE:
        return memo_put(d, d->memo_n);
    case OP_BINPUT:
    case OP_BINGET:
        if ((rc = take(d, 1, &a))) return rc;
        return d->opc == OP_BINPUT ? memo_put(d, a[0]) : memo_get(d, a[0]);
    case OP_LONG_BINPUT:
    case OP_LONG_BINGET:
        if ((rc = take(d, 4, &a))) return rc;
        return d->opc == OP_LONG_BINPUT ? memo_put(d, le(a, 4)) : memo_get(d, le(a, 4));
    case OP_PUT:
    case OP_GET:
        if ((rc = line(d, &s, &n)) || (rc = parse_dec(d, s, n, false, &iv, &big))) return rc;
        if (big || iv < 0) return bad(d, "bad memo index %.*s", (int)n, s);
        return d->opc == OP_PUT ? memo_put(d, (uint64_t)iv) : memo_get(d, (uint64_t)iv);
    case OP_GLOBAL:
        if ((rc = line(d, &s, &n)) || (rc = line(d, &s2, &n2))) return rc;
        return push_global(d, s, n, s2, n2);
    case OP_STACK_GLOBAL:
        if ((rc = need(d, 2, "STACK_GLOBAL"))) return rc;
        v = d->stack[d->sn - 2];
        x = d->stack[d->sn - 1];
        if (v->type != MP_VALUE_STR || x->type != MP_VALUE_STR)
            return bad(d, "STACK_GLOBAL of a %s and a %s, not two str",
                       mp_value_type_name((mp_value_type)v->type),
                       mp_value_type_name((mp_value_type)x->type));
        d->sn -= 2;
        discard(d, v);
        discard(d, x);
        return push_global(d, v->u.s.p, v->u.s.n, x->u.s.p, x->u.s.n);
    case OP_REDUCE:
    case OP_NEWOBJ:
        return reduce(d, a[0] == OP_NEWOBJ);
    case OP_BUILD:
        if ((rc = need(d, 2, "BUILD"))) return rc;
        c = d->stack[d->sn - 2];
        if (c->type != MP_VALUE_OBJECT || !c->u.o.args)
            return bad(d, "BUILD on a %s: only objects made by REDUCE/NEWOBJ take a state",
                       c->type == MP_VALUE_OBJECT ? "bare global"
                                                  : mp_value_type_name((mp_value_type)c->type));
        if (c->u.o.state) return bad(d, "second BUILD on the same object: unsupported");
        if ((rc = mutable_check(d, c, "BUILD"))) return rc;
        x = d->stack[d->sn - 1];
        if ((rc = adopt(d, c, x))) return rc;
        c->u.o.state = pop(d);
        return 0;
    case OP_POP:
    case OP_POP_MARK:
    case OP_DUP:
        return bad(d, "POP/POP_MARK/DUP are not supported (CPython emits them only for cycles)");
    case OP_PERSID:
    case OP_BINPERSID:
    case OP_EXT1:
    case OP_EXT2:
    case OP_EXT4:
    case OP_INST:
    case OP_OBJ:
    case OP_NEWOBJ_EX:
    case OP_NEXT_BUFFER:
    case OP_READONLY_BUFFER:
        return bad(d, "opcode not supported (persistent ids, extensions, INST/OBJ, NEWOBJ_EX, "
                      "out-of-band buffers)");
    default:
        return bad(d, "unknown opcode");
    }
}

int mp_value_loads(const void *buf, size_t len, const mp_value_limits *lim, mp_value **out) {
    if (out) *out = NULL;
    if (!out || (!buf && len)) return mp__err(MP_EINVAL, "mp_value_loads: NULL argument");
    dec d = {0};
    if (lim) d.lim = *lim;
    if (!d.lim.max_size) d.lim.max_size = DEFAULT_MAX_SIZE;
    if (!d.lim.max_depth || d.lim.max_depth > MP_VALUE_MAX_DEPTH)
        d.lim.max_depth = MP_VALUE_MAX_DEPTH;
    if (!d.lim.max_items) d.lim.max_items = DEFAULT_MAX_ITEMS;
    if (!d.lim.max_str || d.lim.max_str > d.lim.max_size) d.lim.max_str = d.lim.max_size;
    if (len > d.lim.max_size)
        return mp__err(MP_ETOOBIG, "pickle: %zu bytes exceed the limit of %zu", len,
                       d.lim.max_size);
    if (len == 0) return mp__err(MP_EPROTO, "pickle: empty input");
    d.start = d.p = buf;
    d.end = d.p + len;
    d.items_left = d.lim.max_items;
    d.bytes_left = d.lim.max_size;
    d.amp_values = len > (SIZE_MAX - AMP_VALUES_EXTRA) / AMP_VALUES_PER_BYTE
                       ? SIZE_MAX
                       : AMP_VALUES_PER_BYTE * len + AMP_VALUES_EXTRA;
    d.amp_bytes = len > (SIZE_MAX - AMP_BYTES_EXTRA) / AMP_BYTES_PER_BYTE
                      ? SIZE_MAX
                      : AMP_BYTES_PER_BYTE * len + AMP_BYTES_EXTRA;

    int rc = 0;
    bool stop = false;
    while (!rc && !stop) rc = step(&d, &stop);
    if (!rc && d.p != d.end) {
        d.pos = (size_t)(d.p - d.start);
        rc = mp__err(MP_EPROTO, "pickle: %zu bytes after STOP", (size_t)(d.end - d.p));
    }
    if (!rc) {
        *out = d.stack[0];
        d.sn = 0;
    }
    for (size_t i = 0; i < d.sn; i++) mp_value_free(d.stack[i]);
    while (d.discard) {
        mp_value *v = d.discard;
        d.discard = v->next;
        mp_value_free(v);
    }
    mp__free(d.stack);
    mp__free(d.marks);
    mp__free(d.memo);
    t_values = d.charged_values;
    t_bytes = d.charged_bytes;
    return rc;
}

void mp__pickle_last_cost(size_t *values, size_t *bytes) {
    if (values) *values = t_values;
    if (bytes) *bytes = t_bytes;
}
