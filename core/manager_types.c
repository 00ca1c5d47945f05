/* SyncManager's typeids served by a C manager, the containers: dict, list, Namespace,
 * Value, Array, and the Iterator the dict's and list's __iter__ return (the queues and
 * synchronisation types are in core/manager_sync.c). Each is an mp_manager_type like a user's, with
 * Python's method names and arguments (positional or keyword) and Python's exceptions,
 * so that Python's proxies (DictProxy, ListProxy, AutoProxy[Queue]...) work on it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_types.h"
#include "value_internal.h"

static void free_value(void *obj) { mp_value_free(obj); }

static int getvalue_copy(void *obj, mp_value **out) { return mt_ret(obj, out); }

/* Puts a copy of key and val in d; TypeError for an unhashable key. */
static int dict_put(mp_value *d, const mp_value *key, const mp_value *val) {
    mp_value *k = mp_value_copy(key), *v = val ? mp_value_copy(val) : mp_value_none();
    if (!k || !v) {
        mp_value_free(k);
        mp_value_free(v);
        return mt_nomem();
    }
    const mp_value *bad;
    if (!mp__value_hashable(k, &bad)) {
        const char *what = mp_value_type_name(mp_value_get_type(bad)); /* before k goes */
        mp_value_free(k);
        mp_value_free(v);
        return mp_manager_raise(MP_EINVAL, "TypeError", "unhashable type: '%s'", what);
    }
    return mp_value_dict_set(d, k, v) ? mt_nomem() : 0;
}

/* dict.update(other, **kw): other a dict, or pairs. */
static int dict_update(mp_value *d, const mp_value *other, const mp_value *kwds) {
    int rc = 0;
    if (other && mp_value_get_type(other) == MP_VALUE_DICT) {
        for (size_t i = 0; !rc && i < mp_value_len(other); i++)
            rc = dict_put(d, mp_value_dict_key(other, i), mp_value_dict_value(other, i));
    } else if (other && mp_value_get_type(other) != MP_VALUE_NONE) {
        mp_value_type t = mp_value_get_type(other);
        if (t != MP_VALUE_LIST && t != MP_VALUE_TUPLE)
            return mp_manager_raise(MP_EINVAL, "TypeError", "'%s' object is not iterable",
                                    mp_value_type_name(t));
        for (size_t i = 0; !rc && i < mp_value_len(other); i++) {
            const mp_value *p = mp_value_item(other, i);
            mp_value_type pt = mp_value_get_type(p);
            if ((pt != MP_VALUE_TUPLE && pt != MP_VALUE_LIST) || mp_value_len(p) != 2)
                return mp_manager_raise(MP_EINVAL, "ValueError",
                                        "dictionary update sequence element #%zu has the "
                                        "wrong length",
                                        i);
            rc = dict_put(d, mp_value_item(p, 0), mp_value_item(p, 1));
        }
    }
    for (size_t i = 0; !rc && i < mp_value_len(kwds); i++)
        rc = dict_put(d, mp_value_dict_key(kwds, i), mp_value_dict_value(kwds, i));
    return rc;
}

/* ---- dict ---- */

static int dict_create(const mp_value *args, const mp_value *kwds, void **obj) {
    mp_value *d = mp_value_dict_new();
    if (!d) return mt_nomem();
    int rc = dict_update(d, A(0, NULL), kwds);
    if (rc) {
        mp_value_free(d);
        return rc;
    }
    *obj = d;
    return 0;
}

static int key_error(const mp_value *key) {
    size_t n;
    const char *s = mp_value_as_str(key, &n);
    if (s) return mp_manager_raise(MP_ENOENT, "KeyError", "%s", s);
    if (mp_value_get_type(key) == MP_VALUE_INT)
        return mp_manager_raise(MP_ENOENT, "KeyError", "%lld", (long long)mp_value_as_int(key));
    return mp_manager_raise(MP_ENOENT, "KeyError", "%s key",
                            mp_value_type_name(mp_value_get_type(key)));
}

static int d_getitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *k = A(0, NULL);
    int rc = mt_need(k, "__getitem__", "key");
    if (rc) return rc;
    const mp_value *v = mp_value_dict_get(o, k);
    return v ? mt_ret(v, r) : key_error(k);
}

static int d_setitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *k = A(0, NULL), *v = A(1, NULL);
    int rc = mt_need(k, "__setitem__", "key");
    if (!rc) rc = mt_need(v, "__setitem__", "value");
    return rc ? rc : dict_put(o, k, v);
}

static int d_delitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *k = A(0, NULL);
    int rc = mt_need(k, "__delitem__", "key");
    if (rc) return rc;
    mp_value *ok, *ov;
    if (!mp__value_dict_take(o, k, &ok, &ov)) return key_error(k);
    mp_value_free(ok);
    mp_value_free(ov);
    return 0;
}

static int d_contains(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *k = A(0, NULL);
    int rc = mt_need(k, "__contains__", "key");
    return rc ? rc : mt_ret_bool(mp_value_dict_get(o, k) != NULL, r);
}

static int d_len(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return mt_ret_int((int64_t)mp_value_len(o), r);
}

/* keys (0), values (1) or items (2) as a list (Python sends views as lists). */
static int d_view(const mp_value *d, int which, mp_value **r) {
    mp_value *l = mp_value_list_new();
    if (!l) return mt_nomem();
    for (size_t i = 0; i < mp_value_len(d); i++) {
        mp_value *item;
        if (which < 2) {
            item = mp_value_copy(which ? mp_value_dict_value(d, i) : mp_value_dict_key(d, i));
        } else {
            item = mp_value_tuple_new();
            if (item && (mp_value_list_append(item, mp_value_copy(mp_value_dict_key(d, i))) ||
                         mp_value_list_append(item, mp_value_copy(mp_value_dict_value(d, i))))) {
                mp_value_free(item);
                item = NULL;
            }
        }
        if (mp_value_list_append(l, item)) {
            mp_value_free(l);
            return mt_nomem();
        }
    }
    *r = l;
    return 0;
}

static int d_keys(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return d_view(o, 0, r);
}
static int d_values(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return d_view(o, 1, r);
}
static int d_items(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return d_view(o, 2, r);
}

static int d_get(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *k = A(0, "key");
    int rc = mt_need(k, "get", "key");
    if (rc) return rc;
    const mp_value *v = mp_value_dict_get(o, k);
    return mt_ret(v ? v : A(1, "default"), r);
}

static int d_setdefault(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *k = A(0, "key");
    int rc = mt_need(k, "setdefault", "key");
    if (rc) return rc;
    const mp_value *v = mp_value_dict_get(o, k);
    if (!v) {
        rc = dict_put(o, k, A(1, "default"));
        if (rc) return rc;
        v = mp_value_dict_get(o, k);
    }
    return mt_ret(v, r);
}

static int d_pop(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *k = A(0, NULL);
    int rc = mt_need(k, "pop", "key");
    if (rc) return rc;
    mp_value *ok, *ov;
    if (!mp__value_dict_take(o, k, &ok, &ov)) {
        const mp_value *dflt = A(1, NULL);
        return dflt ? mt_ret(dflt, r) : key_error(k);
    }
    mp_value_free(ok);
    *r = ov;
    return 0;
}

static int d_popitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    size_t n = mp_value_len(o);
    if (!n) return mp_manager_raise(MP_ENOENT, "KeyError", "popitem(): dictionary is empty");
    mp_value *t = mp_value_tuple_new();
    if (!t) return mt_nomem();
    mp_value *ok, *ov;
    mp__value_dict_take(o, mp_value_dict_key(o, n - 1), &ok, &ov);
    mp_value_list_append(t, ok); /* a failed append frees the item */
    if (mp_value_list_append(t, ov) || mp_value_len(t) != 2) {
        mp_value_free(t);
        return mt_nomem();
    }
    *r = t;
    return 0;
}

static int d_clear(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    mp_value *d = o;
    while (mp_value_len(d)) {
        mp_value *ok, *ov;
        mp__value_dict_take(d, mp_value_dict_key(d, mp_value_len(d) - 1), &ok, &ov);
        mp_value_free(ok);
        mp_value_free(ov);
    }
    return 0;
}

static int d_copy(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return mt_ret(o, r);
}

static int d_update(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    return dict_update(o, A(0, NULL), kwds);
}

static int d_iter(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    return d_keys(o, args, kwds, r); /* becomes an Iterator (method_to_typeid) */
}

static const mp_manager_method k_dict_methods[] = {
    {"__contains__", d_contains, NULL},
    {"__delitem__", d_delitem, NULL},
    {"__getitem__", d_getitem, NULL},
    {"__iter__", d_iter, "Iterator"},
    {"__len__", d_len, NULL},
    {"__setitem__", d_setitem, NULL},
    {"clear", d_clear, NULL},
    {"copy", d_copy, NULL},
    {"get", d_get, NULL},
    {"items", d_items, NULL},
    {"keys", d_keys, NULL},
    {"pop", d_pop, NULL},
    {"popitem", d_popitem, NULL},
    {"setdefault", d_setdefault, NULL},
    {"update", d_update, NULL},
    {"values", d_values, NULL},
};

const mp_manager_type mp__mtype_dict = {
    .type_id = "dict",
    .create = dict_create,
    .free = free_value,
    .getvalue = getvalue_copy,
    .methods = k_dict_methods,
    .nmethods = NMETH(k_dict_methods),
};

/* ---- list ---- */

static int list_extend(mp_value *l, const mp_value *src) {
    mp_value_type t = mp_value_get_type(src);
    if (t == MP_VALUE_DICT) {
        for (size_t i = 0; i < mp_value_len(src); i++)
            if (mp_value_list_append(l, mp_value_copy(mp_value_dict_key(src, i))))
                return mt_nomem();
        return 0;
    }
    if (t != MP_VALUE_LIST && t != MP_VALUE_TUPLE && t != MP_VALUE_SET && t != MP_VALUE_FROZENSET)
        return mp_manager_raise(MP_EINVAL, "TypeError", "'%s' object is not iterable",
                                mp_value_type_name(t));
    size_t n = mp_value_len(src); /* src may be l itself (l += l) */
    for (size_t i = 0; i < n; i++)
        if (mp_value_list_append(l, mp_value_copy(mp_value_item(src, i)))) return mt_nomem();
    return 0;
}

static int list_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)kwds;
    mp_value *l = mp_value_list_new();
    if (!l) return mt_nomem();
    const mp_value *src = A(0, NULL);
    int rc = src ? list_extend(l, src) : 0;
    if (rc) {
        mp_value_free(l);
        return rc;
    }
    *obj = l;
    return 0;
}

/* An index as Python takes it (negative from the end): 0 and *at, or IndexError. */
static int list_index(const mp_value *l, const mp_value *i, size_t *at) {
    mp_value_type t = mp_value_get_type(i);
    if (t != MP_VALUE_INT && t != MP_VALUE_BOOL)
        return mp_manager_raise(MP_EINVAL, "TypeError",
                                "list indices must be integers or slices, not %s",
                                mp_value_type_name(t));
    int64_t k = mp_value_as_int(i), n = (int64_t)mp_value_len(l);
    if (k < 0) k += n;
    if (k < 0 || k >= n)
        return mp_manager_raise(MP_ENOENT, "IndexError", "list index out of range");
    *at = (size_t)k;
    return 0;
}

/* A slice object's range over n items (Python's slice.indices): 1 when s is a slice. */
static int slice_of(const mp_value *s, size_t n, int64_t *start, int64_t *stop, int64_t *step) {
    const char *mod = mp_value_object_module(s);
    if (!mod || strcmp(mod, "builtins") != 0 || strcmp(mp_value_object_name(s), "slice") != 0)
        return 0;
    const mp_value *a = mp_value_object_args(s);
    const mp_value *b = mp_value_item(a, 0), *e = mp_value_item(a, 1), *st = mp_value_item(a, 2);
    *step = mp_value_get_type(st) == MP_VALUE_INT ? mp_value_as_int(st) : 1;
    if (*step == 0) return -1;
    int64_t len = (int64_t)n;
    int64_t lo = *step > 0 ? 0 : -1, hi = *step > 0 ? len : len - 1;
    int64_t v;
    if (mp_value_get_type(b) == MP_VALUE_INT) {
        v = mp_value_as_int(b);
        v = v < 0 ? (v + len < lo ? lo : v + len) : (v > hi ? hi : v);
    } else {
        v = *step > 0 ? lo : hi;
    }
    *start = v;
    if (mp_value_get_type(e) == MP_VALUE_INT) {
        v = mp_value_as_int(e);
        v = v < 0 ? (v + len < lo ? lo : v + len) : (v > hi ? hi : v);
    } else {
        v = *step > 0 ? hi : lo;
    }
    *stop = v;
    return 1;
}

static int l_getitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *i = A(0, NULL);
    int rc = mt_need(i, "__getitem__", "index");
    if (rc) return rc;
    int64_t b, e, st;
    int sl = slice_of(i, mp_value_len(o), &b, &e, &st);
    if (sl < 0) return mp_manager_raise(MP_EINVAL, "ValueError", "slice step cannot be zero");
    if (sl) {
        mp_value *out = mp_value_list_new();
        if (!out) return mt_nomem();
        for (int64_t k = b; st > 0 ? k < e : k > e; k += st)
            if (mp_value_list_append(out, mp_value_copy(mp_value_item(o, (size_t)k)))) {
                mp_value_free(out);
                return mt_nomem();
            }
        *r = out;
        return 0;
    }
    size_t at;
    rc = list_index(o, i, &at);
    return rc ? rc : mt_ret(mp_value_item(o, at), r);
}

static int l_setitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    mp_value *l = o;
    const mp_value *i = A(0, NULL), *v = A(1, NULL);
    int rc = mt_need(i, "__setitem__", "index");
    if (!rc) rc = mt_need(v, "__setitem__", "value");
    size_t at = 0;
    if (!rc) rc = list_index(l, i, &at);
    if (rc) return rc;
    mp_value *c = mp_value_copy(v);
    if (!c) return mt_nomem();
    mp_value_free(l->u.seq.items[at]);
    l->u.seq.items[at] = c;
    return 0;
}

static void list_remove_at(mp_value *l, size_t at, mp_value **taken) {
    mp_value *old = l->u.seq.items[at];
    memmove(&l->u.seq.items[at], &l->u.seq.items[at + 1],
            (l->u.seq.n - at - 1) * sizeof *l->u.seq.items);
    l->u.seq.n--;
    if (taken)
        *taken = old;
    else
        mp_value_free(old);
}

static int l_delitem(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *i = A(0, NULL);
    size_t at = 0;
    int rc = mt_need(i, "__delitem__", "index");
    if (!rc) rc = list_index(o, i, &at);
    if (!rc) list_remove_at(o, at, NULL);
    return rc;
}

static int l_len(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return mt_ret_int((int64_t)mp_value_len(o), r);
}

static int l_append(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "append", "object");
    if (rc) return rc;
    return mp_value_list_append(o, mp_value_copy(v)) ? mt_nomem() : 0;
}

static int l_extend(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "extend", "iterable");
    return rc ? rc : list_extend(o, v);
}

static int l_insert(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    mp_value *l = o;
    const mp_value *i = A(0, NULL), *v = A(1, NULL);
    int rc = mt_need(i, "insert", "index");
    if (!rc) rc = mt_need(v, "insert", "object");
    if (rc) return rc;
    int64_t n = (int64_t)mp_value_len(l), k = mp_value_as_int(i);
    if (k < 0) k = k + n < 0 ? 0 : k + n;
    if (k > n) k = n;
    if (mp_value_list_append(l, mp_value_copy(v))) return mt_nomem();
    mp_value *last = l->u.seq.items[n];
    memmove(&l->u.seq.items[k + 1], &l->u.seq.items[k], (size_t)(n - k) * sizeof *l->u.seq.items);
    l->u.seq.items[k] = last;
    return 0;
}

static int l_pop(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    mp_value *l = o;
    if (!mp_value_len(l)) return mp_manager_raise(MP_ENOENT, "IndexError", "pop from empty list");
    const mp_value *i = A(0, "index");
    size_t at = mp_value_len(l) - 1;
    int rc = i ? list_index(l, i, &at) : 0;
    if (rc) return rc;
    list_remove_at(l, at, r);
    return 0;
}

static size_t find_item(const mp_value *l, const mp_value *v) {
    for (size_t i = 0; i < mp_value_len(l); i++)
        if (mp_value_equal(mp_value_item(l, i), v)) return i;
    return SIZE_MAX;
}

static int l_remove(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "remove", "value");
    if (rc) return rc;
    size_t at = find_item(o, v);
    if (at == SIZE_MAX)
        return mp_manager_raise(MP_ENOENT, "ValueError", "list.remove(x): x not in list");
    list_remove_at(o, at, NULL);
    return 0;
}

static int l_index(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "index", "value");
    if (rc) return rc;
    size_t at = find_item(o, v);
    return at == SIZE_MAX ? mp_manager_raise(MP_ENOENT, "ValueError", "value is not in list")
                          : mt_ret_int((int64_t)at, r);
}

static int l_count(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "count", "value");
    if (rc) return rc;
    int64_t n = 0;
    for (size_t i = 0; i < mp_value_len(o); i++) n += mp_value_equal(mp_value_item(o, i), v);
    return mt_ret_int(n, r);
}

static int l_contains(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "__contains__", "value");
    return rc ? rc : mt_ret_bool(find_item(o, v) != SIZE_MAX, r);
}

static int l_reverse(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    mp_value *l = o;
    for (size_t i = 0, n = l->u.seq.n; i < n / 2; i++) {
        mp_value *t = l->u.seq.items[i];
        l->u.seq.items[i] = l->u.seq.items[n - 1 - i];
        l->u.seq.items[n - 1 - i] = t;
    }
    return 0;
}

static int l_reversed(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    int rc = mt_ret(o, r);
    return rc ? rc : l_reverse(*r, args, kwds, NULL);
}

/* Python's < for what sort can order: numbers, str, bytes; else 2 (TypeError). */
static int cmp_values(const mp_value *a, const mp_value *b) {
    mp_value_type ta = mp_value_get_type(a), tb = mp_value_get_type(b);
    bool na = ta == MP_VALUE_INT || ta == MP_VALUE_FLOAT || ta == MP_VALUE_BOOL;
    bool nb = tb == MP_VALUE_INT || tb == MP_VALUE_FLOAT || tb == MP_VALUE_BOOL;
    if (na && nb) {
        if (ta != MP_VALUE_FLOAT && tb != MP_VALUE_FLOAT) {
            int64_t x = mp_value_as_int(a), y = mp_value_as_int(b);
            return x < y ? -1 : x > y;
        }
        double x = mp_value_as_float(a), y = mp_value_as_float(b);
        return x < y ? -1 : x > y;
    }
    if (ta == tb && (ta == MP_VALUE_STR || ta == MP_VALUE_BYTES)) {
        size_t la, lb;
        const void *pa =
            ta == MP_VALUE_STR ? (const void *)mp_value_as_str(a, &la) : mp_value_as_bytes(a, &la);
        const void *pb =
            tb == MP_VALUE_STR ? (const void *)mp_value_as_str(b, &lb) : mp_value_as_bytes(b, &lb);
        int c = memcmp(pa, pb, la < lb ? la : lb);
        return c ? (c < 0 ? -1 : 1) : (la < lb ? -1 : la > lb);
    }
    return 2;
}

static int l_sort(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    mp_value *l = o;
    const mp_value *rev = A(1, "reverse");
    if (A(0, "key") && mp_value_get_type(A(0, "key")) != MP_VALUE_NONE)
        return mp_manager_raise(MP_ENOTSUP, "TypeError", "sort: a key function cannot travel");
    bool desc = rev && mp_value_as_bool(rev);
    size_t n = l->u.seq.n;
    /* Insertion sort, stable as Python's; the ordering is checked first. */
    for (size_t i = 1; i < n; i++)
        if (cmp_values(l->u.seq.items[i - 1], l->u.seq.items[i]) == 2)
            return mp_manager_raise(MP_EINVAL, "TypeError",
                                    "'<' not supported between instances of '%s' and '%s'",
                                    mp_value_type_name(mp_value_get_type(l->u.seq.items[i - 1])),
                                    mp_value_type_name(mp_value_get_type(l->u.seq.items[i])));
    for (size_t i = 1; i < n; i++) {
        mp_value *x = l->u.seq.items[i];
        size_t j = i;
        while (j > 0) {
            int c = cmp_values(l->u.seq.items[j - 1], x);
            if (c == 2)
                return mp_manager_raise(MP_EINVAL, "TypeError", "'<' not supported between these");
            if (desc ? c >= 0 : c <= 0) break;
            l->u.seq.items[j] = l->u.seq.items[j - 1];
            j--;
        }
        l->u.seq.items[j] = x;
    }
    return 0;
}

static int l_add(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "__add__", "other");
    if (rc) return rc;
    if (mp_value_get_type(v) != MP_VALUE_LIST)
        return mp_manager_raise(MP_EINVAL, "TypeError", "can only concatenate list to list");
    rc = mt_ret(o, r);
    if (!rc) rc = list_extend(*r, v);
    if (rc) {
        mp_value_free(*r);
        *r = NULL;
    }
    return rc;
}

static int repeat(mp_value *l, const mp_value *times) {
    if (mp_value_get_type(times) != MP_VALUE_INT)
        return mp_manager_raise(MP_EINVAL, "TypeError", "can't multiply sequence by non-int");
    int64_t k = mp_value_as_int(times);
    size_t n = mp_value_len(l);
    if (k <= 0) {
        while (mp_value_len(l)) list_remove_at(l, mp_value_len(l) - 1, NULL);
        return 0;
    }
    if (n && (uint64_t)k > (1u << 20) / n) return mt_nomem();
    for (int64_t t = 1; t < k; t++)
        for (size_t i = 0; i < n; i++)
            if (mp_value_list_append(l, mp_value_copy(mp_value_item(l, i)))) return mt_nomem();
    return 0;
}

static int l_mul(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "__mul__", "n");
    if (!rc) rc = mt_ret(o, r);
    if (!rc) rc = repeat(*r, v);
    if (rc && *r) {
        mp_value_free(*r);
        *r = NULL;
    }
    return rc;
}

static int l_imul(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const mp_value *v = A(0, NULL);
    int rc = mt_need(v, "__imul__", "n");
    return rc ? rc : repeat(o, v);
}

static int l_iter(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return mt_ret(o, r);
}

static const mp_manager_method k_list_methods[] = {
    {"__add__", l_add, NULL},
    {"__contains__", l_contains, NULL},
    {"__delitem__", l_delitem, NULL},
    {"__getitem__", l_getitem, NULL},
    {"__imul__", l_imul, NULL},
    {"__iter__", l_iter, "Iterator"},
    {"__len__", l_len, NULL},
    {"__mul__", l_mul, NULL},
    {"__reversed__", l_reversed, NULL},
    {"__rmul__", l_mul, NULL},
    {"__setitem__", l_setitem, NULL},
    {"append", l_append, NULL},
    {"count", l_count, NULL},
    {"extend", l_extend, NULL},
    {"index", l_index, NULL},
    {"insert", l_insert, NULL},
    {"pop", l_pop, NULL},
    {"remove", l_remove, NULL},
    {"reverse", l_reverse, NULL},
    {"sort", l_sort, NULL},
};

const mp_manager_type mp__mtype_list = {
    .type_id = "list",
    .create = list_create,
    .free = free_value,
    .getvalue = getvalue_copy,
    .methods = k_list_methods,
    .nmethods = NMETH(k_list_methods),
};

/* ---- Iterator: what __iter__ returns, over a snapshot ---- */

typedef struct iter_obj {
    mp_value *items;
    size_t pos;
} iter_obj;

static int iter_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)kwds;
    iter_obj *it = mp__calloc(1, sizeof *it);
    if (!it) return mt_nomem();
    const mp_value *src = A(0, NULL);
    it->items = src ? mp_value_copy(src) : mp_value_list_new();
    if (!it->items) {
        mp__free(it);
        return mt_nomem();
    }
    *obj = it;
    return 0;
}

static void iter_free(void *o) {
    iter_obj *it = o;
    mp_value_free(it->items);
    mp__free(it);
}

static int it_next(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    iter_obj *it = o;
    if (it->pos >= mp_value_len(it->items)) return mp_manager_raise(MP_EOF, "StopIteration", NULL);
    return mt_ret(mp_value_item(it->items, it->pos++), r);
}

static int it_close(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds, (void)r;
    iter_obj *it = o;
    it->pos = mp_value_len(it->items);
    return 0;
}

static const mp_manager_method k_iter_methods[] = {
    {"__next__", it_next, NULL},
    {"send", it_next, NULL},
    {"close", it_close, NULL},
};

const mp_manager_type mp__mtype_iter = {
    .type_id = "Iterator",
    .create = iter_create,
    .free = iter_free,
    .methods = k_iter_methods,
    .nmethods = NMETH(k_iter_methods),
};

/* ---- Namespace: attributes in a dict ---- */

static int ns_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args;
    return dict_create(NULL, kwds, obj);
}

static int ns_get(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    const char *name;
    int rc = mt_attr_name(A(0, NULL), "__getattribute__", &name);
    if (rc) return rc;
    const mp_value *v = mp_value_dict_get_str(o, name);
    return v ? mt_ret(v, r)
             : mp_manager_raise(MP_ENOENT, "AttributeError",
                                "'Namespace' object has no attribute '%s'", name);
}

static int ns_set(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const char *name;
    int rc = mt_attr_name(A(0, NULL), "__setattr__", &name);
    if (!rc) rc = mt_need(A(1, NULL), "__setattr__", "value");
    return rc ? rc : dict_put(o, A(0, NULL), A(1, NULL));
}

static int ns_del(void *o, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    const char *name;
    int rc = mt_attr_name(A(0, NULL), "__delattr__", &name);
    if (rc) return rc;
    mp_value *ok, *ov;
    if (!mp__value_dict_take(o, A(0, NULL), &ok, &ov))
        return mp_manager_raise(MP_ENOENT, "AttributeError", "%s", name);
    mp_value_free(ok);
    mp_value_free(ov);
    return 0;
}

/* As Python pickles a Namespace: NEWOBJ of the class, then its __dict__ as state. */
static int ns_getvalue(void *o, mp_value **out) {
    mp_value *v = mp__value_object("multiprocessing.managers", 24, "Namespace", 9);
    mp_value *args = mp_value_tuple_new(), *st = mp_value_copy(o);
    if (!v || !args || !st) {
        mp_value_free(v);
        mp_value_free(args);
        mp_value_free(st);
        return mt_nomem();
    }
    v->u.o.args = args;
    v->u.o.newobj = true;
    mp_value_object_set_state(v, st);
    *out = v;
    return 0;
}

static const mp_manager_method k_ns_methods[] = {
    {"__getattribute__", ns_get, NULL},
    {"__setattr__", ns_set, NULL},
    {"__delattr__", ns_del, NULL},
};

const mp_manager_type mp__mtype_namespace = {
    .type_id = "Namespace",
    .create = ns_create,
    .free = free_value,
    .getvalue = ns_getvalue,
    .methods = k_ns_methods,
    .nmethods = NMETH(k_ns_methods),
};

/* ---- Value: a typecode and a value (Python's managers.Value checks neither) ---- */

typedef struct value_obj {
    mp_value *typecode;
    mp_value *v;
} value_obj;

static int val_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *tc = A(0, "typecode"), *v = A(1, "value");
    int rc = mt_need(tc, "Value", "typecode");
    if (!rc) rc = mt_need(v, "Value", "value");
    if (rc) return rc;
    value_obj *o = mp__calloc(1, sizeof *o);
    if (!o) return mt_nomem();
    o->typecode = mp_value_copy(tc);
    o->v = mp_value_copy(v);
    if (!o->typecode || !o->v) {
        mp_value_free(o->typecode);
        mp_value_free(o->v);
        mp__free(o);
        return mt_nomem();
    }
    *obj = o;
    return 0;
}

static void val_free(void *p) {
    value_obj *o = p;
    mp_value_free(o->typecode);
    mp_value_free(o->v);
    mp__free(o);
}

static int val_get(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)args, (void)kwds;
    return mt_ret(((value_obj *)p)->v, r);
}

static int val_set(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    (void)r;
    value_obj *o = p;
    const mp_value *v = A(0, "value");
    int rc = mt_need(v, "set", "value");
    if (rc) return rc;
    mp_value *c = mp_value_copy(v);
    if (!c) return mt_nomem();
    mp_value_free(o->v);
    o->v = c;
    return 0;
}

/* As Python pickles a managers.Value: NEWOBJ, then {'_typecode': tc, '_value': v}. */
static int val_getvalue(void *p, mp_value **out) {
    value_obj *o = p;
    mp_value *v = mp__value_object("multiprocessing.managers", 24, "Value", 5);
    mp_value *args = mp_value_tuple_new(), *st = mp_value_dict_new();
    if (!v || !args || !st || mp_value_dict_set_str(st, "_typecode", mp_value_copy(o->typecode)) ||
        mp_value_dict_set_str(st, "_value", mp_value_copy(o->v))) {
        mp_value_free(v);
        mp_value_free(args);
        mp_value_free(st);
        return mt_nomem();
    }
    v->u.o.args = args;
    v->u.o.newobj = true;
    mp_value_object_set_state(v, st);
    *out = v;
    return 0;
}

static const mp_manager_method k_val_methods[] = {
    {"get", val_get, NULL},
    {"set", val_set, NULL},
};

const mp_manager_type mp__mtype_value = {
    .type_id = "Value",
    .create = val_create,
    .free = val_free,
    .getvalue = val_getvalue,
    .methods = k_val_methods,
    .nmethods = NMETH(k_val_methods),
};

/* ---- Array: a typecode and a list of its items (Python's array.array) ---- */

typedef struct array_obj {
    char typecode[2];
    mp_value *items; /* a list */
} array_obj;

/* An item as the typecode takes it (a copy): ints for integer codes, floats (ints
 * too) for 'f' and 'd', a one-character str for 'u'. */
static int array_item(const char *tc, const mp_value *v, mp_value **out) {
    mp_value_type t = mp_value_get_type(v);
    *out = NULL;
    if (tc[0] == 'f' || tc[0] == 'd') {
        if (t != MP_VALUE_FLOAT && t != MP_VALUE_INT && t != MP_VALUE_BOOL)
            return mp_manager_raise(MP_EINVAL, "TypeError", "must be real number, not %s",
                                    mp_value_type_name(t));
        *out = mp_value_float(mp_value_as_float(v));
    } else if (tc[0] == 'u' || tc[0] == 'w') {
        if (t != MP_VALUE_STR)
            return mp_manager_raise(MP_EINVAL, "TypeError", "array item must be unicode character");
        *out = mp_value_copy(v);
    } else {
        if (t != MP_VALUE_INT && t != MP_VALUE_BOOL)
            return mp_manager_raise(MP_EINVAL, "TypeError", "an integer is required (got type %s)",
                                    mp_value_type_name(t));
        *out = mp_value_int(mp_value_as_int(v));
    }
    return *out ? 0 : mt_nomem();
}

static void array_free(void *p) {
    array_obj *a = p;
    mp_value_free(a->items);
    mp__free(a);
}

static int array_create(const mp_value *args, const mp_value *kwds, void **obj) {
    const mp_value *tc = A(0, "typecode"), *seq = A(1, "sequence");
    size_t n;
    const char *code = mp_value_as_str(tc, &n);
    if (!code || n != 1 || !strchr("bBuwhHiIlLqQfd", code[0]))
        return mp_manager_raise(
            MP_EINVAL, "ValueError",
            "bad typecode (must be b, B, u, w, h, H, i, I, l, L, q, Q, f or d)");
    array_obj *a = mp__calloc(1, sizeof *a);
    if (!a || !(a->items = mp_value_list_new())) {
        mp__free(a);
        return mt_nomem();
    }
    a->typecode[0] = code[0];
    int rc = 0;
    mp_value_type st = mp_value_get_type(seq);
    if (seq && st != MP_VALUE_LIST && st != MP_VALUE_TUPLE && st != MP_VALUE_NONE)
        rc = mp_manager_raise(MP_EINVAL, "TypeError", "cannot use a %s to initialize an array",
                              mp_value_type_name(st));
    for (size_t i = 0; !rc && seq && i < mp_value_len(seq); i++) {
        mp_value *item;
        rc = array_item(a->typecode, mp_value_item(seq, i), &item);
        if (!rc && mp_value_list_append(a->items, item)) rc = mt_nomem();
    }
    if (rc) {
        array_free(a);
        return rc;
    }
    *obj = a;
    return 0;
}

static int array_len(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    return l_len(((array_obj *)p)->items, args, kwds, r);
}

static int array_getitem(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    return l_getitem(((array_obj *)p)->items, args, kwds, r);
}

static int array_setitem(void *p, const mp_value *args, const mp_value *kwds, mp_value **r) {
    array_obj *a = p;
    const mp_value *i = A(0, NULL), *v = A(1, NULL);
    int rc = mt_need(i, "__setitem__", "index");
    if (!rc) rc = mt_need(v, "__setitem__", "value");
    mp_value *item = NULL;
    if (!rc) rc = array_item(a->typecode, v, &item);
    if (rc) return rc;
    mp_value *a2 = mp_value_tuple_new();
    if (!a2 || mp_value_list_append(a2, mp_value_copy(i)) || mp_value_list_append(a2, item)) {
        mp_value_free(a2);
        return mt_nomem();
    }
    rc = l_setitem(a->items, a2, kwds, r);
    mp_value_free(a2);
    return rc;
}

/* As array.array(typecode, items) would be made again in Python. */
static int array_getvalue(void *p, mp_value **out) {
    array_obj *a = p;
    mp_value *args = mp_value_tuple_new();
    if (!args || mp_value_list_append(args, mp_value_str(a->typecode)) ||
        mp_value_list_append(args, mp_value_copy(a->items))) {
        mp_value_free(args);
        return mt_nomem();
    }
    *out = mp_value_object_new("array", "array", args);
    return *out ? 0 : mt_nomem();
}

static const mp_manager_method k_array_methods[] = {
    {"__len__", array_len, NULL},
    {"__getitem__", array_getitem, NULL},
    {"__setitem__", array_setitem, NULL},
};

const mp_manager_type mp__mtype_array = {
    .type_id = "Array",
    .create = array_create,
    .free = array_free,
    .getvalue = array_getvalue,
    .methods = k_array_methods,
    .nmethods = NMETH(k_array_methods),
};
