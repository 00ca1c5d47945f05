/* What managers' server and client share: the registry of served types, the pickled
 * requests and replies (CPython's shapes), addresses and tokens as Python writes them,
 * and exceptions both ways. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"
#include "pickle_ops.h"
#include "value_internal.h"

/* ---- the registry ---- */

static void mtype_clear(mp__mtype *t) {
    mp__free(t->type_id);
    for (size_t i = 0; i < t->nmethods; i++) {
        mp__free((char *)t->methods[i].name);
        mp__free((char *)t->methods[i].type_id);
    }
    mp__free(t->methods);
    memset(t, 0, sizeof *t);
}

static bool typeid_ok(const char *s) { return s && s[0] && strlen(s) <= 64; }

int mp__mreg_add(mp__mreg *r, const mp_manager_type *t) {
    if (!t || !typeid_ok(t->type_id))
        return mp__err(MP_EINVAL, "manager type: type_id missing or longer than 64 bytes");
    if (t->nmethods && !t->methods)
        return mp__err(MP_EINVAL, "manager type %s: methods is NULL", t->type_id);
    for (size_t i = 0; i < t->nmethods; i++)
        if (!t->methods[i].name || !t->methods[i].name[0] || !t->methods[i].fn ||
            (t->methods[i].type_id && !typeid_ok(t->methods[i].type_id)))
            return mp__err(MP_EINVAL, "manager type %s: method %zu has no name or function",
                           t->type_id, i);
    if (mp__mreg_find(r, t->type_id))
        return mp__err(MP_EEXIST, "manager: type_id %s is registered already", t->type_id);
    mp__mtype *ts = mp__realloc(r->types, (r->n + 1) * sizeof *ts);
    if (!ts) return mp__err(MP_ENOMEM, "manager: out of memory");
    r->types = ts;
    mp__mtype *m = &ts[r->n];
    memset(m, 0, sizeof *m);
    m->type_id = mp__strdup(t->type_id);
    m->create = t->create;
    m->free = t->free;
    m->getvalue = t->getvalue;
    m->concurrent = t->concurrent;
    m->methods = t->nmethods ? mp__calloc(t->nmethods, sizeof *m->methods) : NULL;
    bool ok = m->type_id && (m->methods || !t->nmethods);
    for (size_t i = 0; ok && i < t->nmethods; i++) {
        m->methods[i].fn = t->methods[i].fn;
        m->methods[i].name = mp__strdup(t->methods[i].name);
        m->methods[i].type_id = t->methods[i].type_id ? mp__strdup(t->methods[i].type_id) : NULL;
        m->nmethods = i + 1;
        ok = m->methods[i].name && (m->methods[i].type_id || !t->methods[i].type_id);
    }
    if (!ok) {
        mtype_clear(m);
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    r->n++;
    return 0;
}

const mp__mtype *mp__mreg_find(const mp__mreg *r, const char *type_id) {
    if (!type_id) return NULL;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->types[i].type_id, type_id) == 0) return &r->types[i];
    return NULL;
}

void mp__mreg_clear(mp__mreg *r) {
    for (size_t i = 0; i < r->n; i++) mtype_clear(&r->types[i]);
    mp__free(r->types);
    r->types = NULL;
    r->n = 0;
}

/* A function by reference (module, offset, build), or a NULL one. */
static int put_fn(mp__buf *b, void *fn) {
    if (!fn) {
        mp__buf_u8(b, 0);
        return 0;
    }
    mp__fnref ref = {0};
    int rc = mp__os_fn_to_ref(fn, &ref);
    if (rc) return rc;
    mp__buf_u8(b, 1);
    mp__buf_str(b, ref.module);
    mp__buf_u64(b, ref.offset);
    mp__buf_str(b, ref.build);
    mp__fnref_clear(&ref);
    return 0;
}

static int get_fn(mp__rd *rd, void **fn) {
    *fn = NULL;
    if (!mp__rd_u8(rd)) return rd->err;
    mp__fnref ref = {0};
    ref.module = mp__rd_str(rd);
    ref.offset = mp__rd_u64(rd);
    ref.build = mp__rd_str(rd);
    int rc = rd->err ? mp__err(MP_EPROTO, "manager: malformed function reference")
                     : mp__os_ref_to_fn(&ref, fn);
    mp__fnref_clear(&ref);
    return rc;
}

int mp__mreg_encode(const mp__mreg *r, mp__buf *b) {
    mp__buf_u32(b, (uint32_t)r->n);
    for (size_t i = 0; i < r->n; i++) {
        const mp__mtype *t = &r->types[i];
        mp__buf_str(b, t->type_id);
        mp__buf_u8(b, t->concurrent);
        int rc = put_fn(b, (void *)t->create);
        if (!rc) rc = put_fn(b, (void *)t->free);
        if (!rc) rc = put_fn(b, (void *)t->getvalue);
        if (rc) return mp__err_wrap(rc, "manager type %s", t->type_id);
        mp__buf_u32(b, (uint32_t)t->nmethods);
        for (size_t j = 0; j < t->nmethods; j++) {
            mp__buf_str(b, t->methods[j].name);
            mp__buf_str(b, t->methods[j].type_id);
            rc = put_fn(b, (void *)t->methods[j].fn);
            if (rc)
                return mp__err_wrap(rc, "manager type %s, method %s", t->type_id,
                                    t->methods[j].name);
        }
    }
    return b->err ? mp__err(MP_ENOMEM, "manager: out of memory") : 0;
}

int mp__mreg_decode(mp__rd *rd, mp__mreg *r) {
    uint32_t n = mp__rd_u32(rd);
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc && !rd->err; i++) {
        mp_manager_type t = {0};
        mp_manager_method *ms = NULL;
        char *type_id = mp__rd_str(rd);
        t.type_id = type_id;
        t.concurrent = mp__rd_u8(rd) != 0;
        void *f[3];
        for (int k = 0; k < 3 && !rc; k++) rc = get_fn(rd, &f[k]);
        t.create = (int (*)(const mp_value *, const mp_value *, void **))f[0];
        t.free = (void (*)(void *))f[1];
        t.getvalue = (int (*)(void *, mp_value **))f[2];
        uint32_t nm = rc ? 0 : mp__rd_u32(rd);
        if (nm > 4096) rc = mp__err(MP_EPROTO, "manager: malformed registry");
        if (!rc && nm) {
            ms = mp__calloc(nm, sizeof *ms);
            if (!ms) rc = mp__err(MP_ENOMEM, "manager: out of memory");
        }
        for (uint32_t j = 0; j < nm && !rc && !rd->err; j++) {
            ms[j].name = mp__rd_str(rd);
            ms[j].type_id = mp__rd_str(rd);
            void *fn;
            rc = get_fn(rd, &fn);
            ms[j].fn = (mp_manager_method_fn)fn;
        }
        t.methods = ms;
        t.nmethods = nm;
        if (!rc && rd->err) rc = mp__err(MP_EPROTO, "manager: malformed registry");
        if (!rc) rc = mp__mreg_add(r, &t);
        for (uint32_t j = 0; ms && j < nm; j++) {
            mp__free((char *)ms[j].name);
            mp__free((char *)ms[j].type_id);
        }
        mp__free(ms);
        mp__free(type_id);
    }
    if (!rc && rd->err) rc = mp__err(MP_EPROTO, "manager: malformed registry");
    return rc;
}

/* ---- requests and replies ---- */

static void put_str(mp__buf *b, const char *s) {
    size_t n = strlen(s);
    if (n < 256) {
        mp__buf_u8(b, OP_SHORT_BINUNICODE);
        mp__buf_u8(b, (uint8_t)n);
    } else {
        mp__buf_u8(b, OP_BINUNICODE);
        mp__buf_u32(b, (uint32_t)n);
    }
    mp__buf_put(b, s, n);
}

int mp__mwire_request(mp__buf *b, const char *ident, const char *method, const mp_value *args,
                      const mp_value *kwds) {
    mp__buf_u8(b, OP_PROTO);
    mp__buf_u8(b, 5);
    mp__buf_u8(b, OP_MARK);
    if (ident)
        put_str(b, ident);
    else
        mp__buf_u8(b, OP_NONE);
    put_str(b, method);
    int rc = 0;
    if (args)
        rc = mp__pickle_dump_item(args, b);
    else
        mp__buf_u8(b, OP_EMPTY_TUPLE);
    if (!rc && kwds)
        rc = mp__pickle_dump_item(kwds, b);
    else if (!rc)
        mp__buf_u8(b, OP_EMPTY_DICT);
    mp__buf_u8(b, OP_TUPLE);
    mp__buf_u8(b, OP_STOP);
    if (!rc && b->err) rc = mp__err(MP_ENOMEM, "manager: out of memory");
    return rc;
}

int mp__mwire_reply(mp__buf *b, const char *kind, const mp_value *v) {
    mp__buf_u8(b, OP_PROTO);
    mp__buf_u8(b, 5);
    put_str(b, kind);
    int rc = 0;
    if (v)
        rc = mp__pickle_dump_item(v, b);
    else
        mp__buf_u8(b, OP_NONE);
    mp__buf_u8(b, OP_TUPLE2);
    mp__buf_u8(b, OP_STOP);
    if (!rc && b->err) rc = mp__err(MP_ENOMEM, "manager: out of memory");
    return rc;
}

/* ---- addresses and tokens ---- */

mp_value *mp__maddr_to_py(const char *addr) {
    if (!addr) return mp_value_none();
    if (mp_address_family(addr) == MP_AF_INET) {
        const char *colon = strrchr(addr, ':');
        mp_value *t = mp_value_tuple_new();
        if (!t) return NULL;
        if (mp_value_list_append(t, mp_value_strn(addr, (size_t)(colon - addr))) ||
            mp_value_list_append(t, mp_value_int(strtol(colon + 1, NULL, 10)))) {
            mp_value_free(t);
            return NULL;
        }
        return t;
    }
    if (addr[0] == '@') {
        /* Linux's abstract namespace: Python spells it with a leading NUL. */
        size_t n = strlen(addr);
        char *s = mp__malloc(n + 1);
        if (!s) return NULL;
        s[0] = '\0';
        memcpy(s + 1, addr + 1, n);
        mp_value *v = mp_value_strn(s, n);
        mp__free(s);
        return v;
    }
    return mp_value_str(addr);
}

char *mp__maddr_from_py(const mp_value *v) {
    char buf[320];
    switch (mp_value_get_type(v)) {
    case MP_VALUE_TUPLE: {
        size_t hn;
        const char *h = mp_value_as_str(mp_value_item(v, 0), &hn);
        const mp_value *port = mp_value_item(v, 1);
        if (mp_value_len(v) != 2 || !h || hn > 255 || mp_value_get_type(port) != MP_VALUE_INT)
            break;
        snprintf(buf, sizeof buf, "%s:%" PRId64, h, mp_value_as_int(port));
        return mp__strdup(buf);
    }
    case MP_VALUE_STR:
    case MP_VALUE_BYTES: {
        size_t n;
        const char *s = mp_value_get_type(v) == MP_VALUE_STR ? mp_value_as_str(v, &n)
                                                             : mp_value_as_bytes(v, &n);
        if (!n || n > 300) break;
        char *out = mp__malloc(n + 1);
        if (!out) return NULL;
        memcpy(out, s, n);
        out[n] = '\0';
        if (out[0] == '\0') out[0] = '@';
        if (strlen(out) != n) {
            mp__free(out);
            break;
        }
        return out;
    }
    default:
        break;
    }
    mp__err(MP_EPROTO, "manager: an address that is neither (host, port) nor a path");
    return NULL;
}

mp_value *mp__mtoken_new(const char *type_id, const char *addr, const char *id) {
    mp_value *tok = mp__value_object("multiprocessing.managers", 24, "Token", 5);
    mp_value *args = mp_value_tuple_new();
    mp_value *state = mp_value_tuple_new();
    if (!tok || !args || !state) goto fail;
    tok->u.o.args = args;
    tok->u.o.newobj = true;
    args = NULL;
    if (mp_value_list_append(state, mp_value_str(type_id)) ||
        mp_value_list_append(state, mp__maddr_to_py(addr)) ||
        mp_value_list_append(state, mp_value_str(id)))
        goto fail;
    if (mp_value_object_set_state(tok, state)) {
        state = NULL;
        goto fail;
    }
    return tok;
fail:
    mp_value_free(tok);
    mp_value_free(args);
    mp_value_free(state);
    mp__err(MP_ENOMEM, "manager: out of memory");
    return NULL;
}

int mp__mtoken_parse(const mp_value *tok, char **type_id, char **addr, char **id) {
    *type_id = *addr = *id = NULL;
    const mp_value *st = mp_value_object_state(tok);
    const char *mod = mp_value_object_module(tok), *name = mp_value_object_name(tok);
    if (!mod || strcmp(mod, "multiprocessing.managers") != 0 || strcmp(name, "Token") != 0 ||
        mp_value_get_type(st) != MP_VALUE_TUPLE || mp_value_len(st) != 3)
        return mp__err(MP_EPROTO, "manager: expected a Token");
    const char *t = mp_value_as_str(mp_value_item(st, 0), NULL);
    const char *i = mp_value_as_str(mp_value_item(st, 2), NULL);
    if (!t || !i) return mp__err(MP_EPROTO, "manager: a Token without type_id or id");
    *type_id = mp__strdup(t);
    *id = mp__strdup(i);
    *addr = mp__maddr_from_py(mp_value_item(st, 1));
    if (!*type_id || !*id || !*addr) {
        int rc = *addr ? mp__err(MP_ENOMEM, "manager: out of memory") : MP_EPROTO;
        mp__free(*type_id);
        mp__free(*id);
        mp__free(*addr);
        *type_id = *addr = *id = NULL;
        return rc;
    }
    return 0;
}

/* ---- exceptions ---- */

static MP__THREAD_LOCAL char tl_raise[80];

int mp_manager_raise(int code, const char *exception, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    if (fmt)
        vsnprintf(msg, sizeof msg, fmt, ap);
    else
        msg[0] = '\0';
    va_end(ap);
    if (code >= 0) code = MP_EREMOTE;
    mp__err(code, "%s", msg);
    snprintf(tl_raise, sizeof tl_raise, "%s", exception ? exception : "");
    return code;
}

const char *mp__mraise_take(void) {
    static MP__THREAD_LOCAL char taken[80];
    if (!tl_raise[0]) return NULL;
    memcpy(taken, tl_raise, sizeof taken);
    tl_raise[0] = '\0';
    return taken;
}

static const struct {
    const char *module, *name;
    int code;
} k_exc[] = {
    {"builtins", "KeyError", MP_ENOENT},
    {"builtins", "IndexError", MP_ENOENT},
    {"builtins", "AttributeError", MP_ENOENT},
    {"builtins", "ValueError", MP_EINVAL},
    {"builtins", "TypeError", MP_EINVAL},
    {"_queue", "Empty", MP_EEMPTY},
    {"queue", "Full", MP_EFULL},
    {"builtins", "TimeoutError", MP_ETIMEDOUT},
    {"builtins", "NotImplementedError", MP_ENOTSUP},
    {"builtins", "MemoryError", MP_ENOMEM},
    {"builtins", "StopIteration", MP_EOF},
    {"threading", "BrokenBarrierError", MP_EBROKEN},
    {"builtins", "EOFError", MP_ECLOSED},
    {"builtins", "RuntimeError", MP_EREMOTE},
};

mp_value *mp__mexc_new(int code, const char *exc, const char *msg) {
    const char *mod = "builtins", *name = "RuntimeError";
    char buf[80];
    if (exc && exc[0]) {
        snprintf(buf, sizeof buf, "%s", exc);
        char *dot = strrchr(buf, '.');
        if (dot) {
            *dot = '\0';
            mod = strcmp(buf, "queue") == 0 && strcmp(dot + 1, "Empty") == 0 ? "_queue" : buf;
            name = dot + 1;
        } else {
            name = buf;
            for (size_t i = 0; i < sizeof k_exc / sizeof k_exc[0]; i++)
                if (strcmp(k_exc[i].name, buf) == 0) mod = k_exc[i].module;
        }
    } else {
        for (size_t i = 0; i < sizeof k_exc / sizeof k_exc[0]; i++)
            if (k_exc[i].code == code) {
                mod = k_exc[i].module;
                name = k_exc[i].name;
                break;
            }
    }
    mp_value *args = mp_value_tuple_new();
    if (args && msg && msg[0] && mp_value_list_append(args, mp_value_str(msg))) {
        mp_value_free(args);
        return NULL;
    }
    return args ? mp_value_object_new(mod, name, args) : NULL;
}

int mp__mexc_error(const mp_value *exc, const char *method) {
    const char *name = mp_value_object_name(exc);
    if (!name)
        return mp__err(MP_EREMOTE, "%s: the manager raised %s", method,
                       mp_value_type_name(mp_value_get_type(exc)));
    int code = MP_EREMOTE;
    for (size_t i = 0; i < sizeof k_exc / sizeof k_exc[0]; i++)
        if (strcmp(k_exc[i].name, name) == 0) code = k_exc[i].code;
    const mp_value *a0 = mp_value_item(mp_value_object_args(exc), 0);
    size_t n;
    const char *s = mp_value_as_str(a0, &n);
    if (!s) return mp__err(code, "%s: %s", method, name);
    if (strcmp(name, "KeyError") == 0) return mp__err(code, "%s: KeyError: '%s'", method, s);
    return mp__err(code, "%s: %s: %s", method, name, s);
}

/* ---- waiting for an answer ---- */

/* Adaptive, per thread: a look that came up empty makes the thread skip the next 1, 3,
 * 7... (up to 63) looks, and one that found the answer makes it look every time again.
 * On a quiet machine answers come within the budget and every call looks; on a loaded
 * one (the peer waits for a CPU) they do not, and looking would only take the CPU the
 * peer needs. */
static MP__THREAD_LOCAL unsigned t_spin_skip, t_spin_fails;

bool mp__mspin(mp_connection *c, double budget) {
    static atomic_int cpus; /* 0: not known yet (threads may all ask: same answer) */
    int n = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (!n) atomic_store_explicit(&cpus, n = mp_cpu_count(), memory_order_relaxed);
    if (n < 2) return false; /* the peer needs this CPU to answer */
    if (t_spin_skip) {
        t_spin_skip--;
        return false;
    }
    double end = mp__os_monotonic() + budget;
    do {
        bool ready = false;
        if (mp_connection_poll(c, 0, &ready) != 0 || ready) {
            t_spin_fails = 0; /* an error counts as an answer: the read says it */
            return true;
        }
    } while (mp__os_monotonic() < end);
    if (t_spin_fails < 6) t_spin_fails++;
    t_spin_skip = (1u << t_spin_fails) - 1;
    return false;
}

/* ---- arguments ---- */

const mp_value *mp__marg(const mp_value *args, const mp_value *kwds, size_t i, const char *name) {
    if (i < mp_value_len(args)) return mp_value_item(args, i);
    return name ? mp_value_dict_get_str(kwds, name) : NULL;
}

int mp__mdeadline(const mp_value *block, const mp_value *timeout, double *deadline) {
    bool b = block ? mp_value_as_bool(block) : true;
    if (!b) {
        *deadline = mp__os_monotonic();
        return 0;
    }
    if (!timeout || mp_value_get_type(timeout) == MP_VALUE_NONE) {
        *deadline = MP_FOREVER;
        return 0;
    }
    double t = mp_value_as_float(timeout);
    if (t < 0)
        return mp_manager_raise(MP_EINVAL, "ValueError", "'timeout' must be a non-negative number");
    *deadline = mp__deadline(t);
    return 0;
}
