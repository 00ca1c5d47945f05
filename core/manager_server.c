/* A manager's server, as CPython's managers.Server: a listener, a thread that accepts,
 * a thread per client connection. A connection's first request is a public call
 * (create, incref, decref, accept_connection...); after accept_connection it carries
 * a proxy's method calls until it closes. Objects live in a table by id with reference
 * counts that proxies hold.
 *
 * Beyond CPython: a connection idle past the idle timeout is closed, the number of
 * connections is bounded (the longest idle one makes room), the handshake of a new
 * connection is bounded in time, a malformed request gets an error reply instead of
 * ending the server, and errors of public calls come back as the exception itself
 * ('#ERROR'), which Python's dispatch raises just as it raises a traceback. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "manager_internal.h"
#include "os_net.h"
#include "os_shm.h"
#include "shared_internal.h"

#define SLICE 0.25         /* how often a waiting thread looks at the stop flag */
#define HANDSHAKE_MAX 10.0 /* seconds a new connection has to authenticate */
#define DEFAULT_MAX_CONNS 1024

typedef struct mobj {
    struct mobj *next; /* hash chain */
    uint64_t key;
    char id[24];
    const mp__mtype *type;
    void *obj;
    int64_t refs;
    int uses;      /* calls running on it: it is freed when the last one ends */
    bool dead;     /* its last reference went while calls ran */
    mp__mutex *mu; /* one call at a time, unless the type is concurrent */
} mobj;

typedef struct mconn {
    struct mconn *next;
    mp__mserver *s;
    mp_connection *c;
    mp__thread *t;
    _Atomic double last; /* monotonic time of the last request (read by the acceptor) */
    atomic_bool busy;    /* in a call */
    atomic_bool evict;
    atomic_bool done;
    atomic_bool lease; /* a lease's connection: never idle, never evicted */
} mconn;

/* A client process's hold on its references (C clients only): the references made
 * under it are dropped when its lease connection closes, when the process ends or is
 * killed. */
typedef struct lease {
    struct lease *next;
    uint64_t id;
    struct held {
        uint64_t key;
        int64_t n;
    } * v;
    size_t n, cap;
} lease;

struct mp__mserver {
    mp__mreg reg;
    bool shm;    /* a SharedMemoryManager's server */
    char **segs; /* the blocks it tracks (shm), under mu */
    size_t nsegs;
    lease *leases;
    uint64_t next_lease;
    mp_listener *l;
    char *address;
    unsigned char *key;
    size_t keylen;
    int max_conns;
    double idle;
    mp__mutex *mu; /* the table, the connections, stop */
    mp__cond *cv;
    mobj **buckets;
    size_t nbuckets, nobjs;
    uint64_t next_id;
    mconn *conns;
    int nconns;
    atomic_bool stop;
};

static MP__THREAD_LOCAL mp__mserver *tl_server;

/* The servers of this process (a dummy backend's, serve_forever's), from new to free,
 * under mp__lock: a shutdown that cannot reach one stops it directly. */
static mp__mserver *g_running[16];

bool mp__mserver_stop_local(const char *address) {
    bool found = false;
    mp__lock();
    for (size_t i = 0; i < sizeof g_running / sizeof g_running[0]; i++) {
        mp__mserver *s = g_running[i];
        if (s && address && strcmp(s->address, address) == 0) {
            mp__os_mutex_lock(s->mu);
            atomic_store(&s->stop, true);
            mp__os_cond_broadcast(s->cv);
            mp__os_mutex_unlock(s->mu);
            found = true;
        }
    }
    mp__unlock();
    return found;
}

static void running(mp__mserver *s, bool on) {
    mp__lock();
    for (size_t i = 0; i < sizeof g_running / sizeof g_running[0]; i++)
        if (on ? !g_running[i] : g_running[i] == s) {
            g_running[i] = on ? s : NULL;
            break;
        }
    mp__unlock();
}

bool mp__mserver_stopping(void) { return tl_server && atomic_load(&tl_server->stop); }

int mp__mwait(mp__cond *c, mp__mutex *m, double deadline) {
    if (mp__mserver_stopping()) return MP_ECLOSED;
    double left = mp__left(deadline);
    if (left <= 0) return MP_ETIMEDOUT;
    mp__os_cond_wait(c, m, left < SLICE ? left : SLICE);
    return mp__mserver_stopping() ? MP_ECLOSED : 0;
}

/* ---- the table ---- */

static mobj *find_locked(mp__mserver *s, const char *id) {
    if (!id || !s->nbuckets) return NULL;
    char *end;
    uint64_t k = strtoull(id, &end, 16);
    if (*end) return NULL;
    for (mobj *o = s->buckets[k & (s->nbuckets - 1)]; o; o = o->next)
        if (o->key == k) return o;
    return NULL;
}

static int insert_locked(mp__mserver *s, mobj *o) {
    if (s->nobjs + 1 > s->nbuckets) {
        size_t nb = s->nbuckets ? 2 * s->nbuckets : 64;
        mobj **b = mp__calloc(nb, sizeof *b);
        if (!b) return mp__err(MP_ENOMEM, "manager: out of memory");
        for (size_t i = 0; i < s->nbuckets; i++)
            for (mobj *x = s->buckets[i], *nx; x; x = nx) {
                nx = x->next;
                x->next = b[x->key & (nb - 1)];
                b[x->key & (nb - 1)] = x;
            }
        mp__free(s->buckets);
        s->buckets = b;
        s->nbuckets = nb;
    }
    o->next = s->buckets[o->key & (s->nbuckets - 1)];
    s->buckets[o->key & (s->nbuckets - 1)] = o;
    s->nobjs++;
    return 0;
}

static void unlink_locked(mp__mserver *s, mobj *o) {
    for (mobj **p = &s->buckets[o->key & (s->nbuckets - 1)]; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            s->nobjs--;
            return;
        }
}

static void obj_free(mobj *o) {
    if (!o) return;
    if (o->type->free)
        o->type->free(o->obj);
    else if (!o->type->create)
        mp_value_free(o->obj);
    mp__os_mutex_free(o->mu);
    mp__free(o);
}

/* Takes a use of the object with id (NULL when there is none). */
static mobj *obj_use(mp__mserver *s, const char *id) {
    mp__os_mutex_lock(s->mu);
    mobj *o = find_locked(s, id);
    if (o) o->uses++;
    mp__os_mutex_unlock(s->mu);
    return o;
}

static void obj_unuse(mp__mserver *s, mobj *o) {
    mp__os_mutex_lock(s->mu);
    bool last = --o->uses == 0 && o->dead;
    mp__os_mutex_unlock(s->mu);
    if (last) obj_free(o);
}

static mp_value *exposed_of(const mp__mtype *t) {
    mp_value *e = mp_value_tuple_new();
    for (size_t i = 0; e && i < t->nmethods; i++)
        if (mp_value_list_append(e, mp_value_str(t->methods[i].name))) {
            mp_value_free(e);
            e = NULL;
        }
    return e;
}

static lease *lease_find_locked(mp__mserver *s, uint64_t id) {
    for (lease *l = s->leases; l; l = l->next)
        if (l->id == id) return l;
    return NULL;
}

/* Counts delta references of the object key under lease id (0: none). False when the
 * lease is gone or, for a release, holds no such reference. */
static bool lease_count_locked(mp__mserver *s, uint64_t id, uint64_t key, int64_t delta) {
    if (!id) return true;
    lease *l = lease_find_locked(s, id);
    if (!l) return false;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].key == key) {
            if (l->v[i].n + delta < 0) return false;
            l->v[i].n += delta;
            if (!l->v[i].n) l->v[i] = l->v[--l->n];
            return true;
        }
    if (delta < 0) return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        struct held *v = mp__realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct held){key, delta};
    return true;
}

static uint64_t lease_id_of(const mp_value *v) {
    const char *s = mp_value_as_str(v, NULL);
    if (!s || !*s) return 0;
    char *end;
    uint64_t id = strtoull(s, &end, 16);
    return *end ? 0 : id;
}

/* Makes an object of type_id (from args and kwds, or, taking it, from made: a method's
 * result) with one reference; its id into id. */
static int obj_create(mp__mserver *s, const char *type_id, const mp_value *args,
                      const mp_value *kwds, mp_value *made, uint64_t lid, char id[24]) {
    const mp__mtype *t = mp__mreg_find(&s->reg, type_id);
    if (!t) {
        mp_value_free(made);
        return mp_manager_raise(MP_ENOENT, "KeyError", "%s", type_id ? type_id : "None");
    }
    void *obj = NULL;
    int rc = 0;
    if (made && t->create) {
        mp_value *a = mp_value_tuple_new(), *k = mp_value_dict_new();
        if (!a || !k || mp_value_list_append(a, made)) {
            made = NULL;
            rc = mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
        } else {
            made = NULL;
            rc = t->create(a, k, &obj);
        }
        mp_value_free(a);
        mp_value_free(k);
    } else if (made) {
        obj = made;
        made = NULL;
    } else if (t->create) {
        rc = t->create(args, kwds, &obj);
    } else if (mp_value_len(args) != 1 || mp_value_len(kwds)) {
        rc = mp_manager_raise(MP_EINVAL, "ValueError",
                              "Without callable, must have one non-keyword argument");
    } else {
        obj = mp_value_copy(mp_value_item(args, 0));
        if (!obj) rc = mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
    }
    mp_value_free(made);
    if (rc) return rc;
    mobj *o = mp__calloc(1, sizeof *o);
    if (!o || (!t->concurrent && mp__os_mutex_new(&o->mu))) {
        mp__free(o);
        if (t->free)
            t->free(obj);
        else if (!t->create)
            mp_value_free(obj);
        return mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
    }
    o->type = t;
    o->obj = obj;
    o->refs = 1;
    mp__os_mutex_lock(s->mu);
    o->key = ++s->next_id;
    snprintf(o->id, sizeof o->id, "%" PRIx64, o->key);
    rc = insert_locked(s, o);
    if (!rc && !lease_count_locked(s, lid, o->key, 1)) {
        unlink_locked(s, o);
        rc = MP_ECLOSED;
    }
    mp__os_mutex_unlock(s->mu);
    if (rc) {
        obj_free(o);
        return rc == MP_ECLOSED
                   ? mp_manager_raise(MP_ECLOSED, "KeyError", "lease %" PRIx64 " is gone", lid)
                   : mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
    }
    memcpy(id, o->id, sizeof o->id);
    return 0;
}

static int obj_incref(mp__mserver *s, const char *id, uint64_t lid) {
    mp__os_mutex_lock(s->mu);
    mobj *o = find_locked(s, id);
    bool held = o && lease_count_locked(s, lid, o->key, 1);
    if (held) o->refs++;
    mp__os_mutex_unlock(s->mu);
    if (o && !held)
        return mp_manager_raise(MP_ECLOSED, "KeyError", "lease %" PRIx64 " is gone", lid);
    return o ? 0 : mp_manager_raise(MP_ENOENT, "KeyError", "%s", id ? id : "None");
}

static int obj_decref(mp__mserver *s, const char *id, uint64_t lid) {
    mobj *gone = NULL;
    mp__os_mutex_lock(s->mu);
    mobj *o = find_locked(s, id);
    /* A reference a lease does not hold (given back already at its end) is not
     * released twice. */
    if (o && lid && !lease_count_locked(s, lid, o->key, -1)) o = NULL;
    if (o && --o->refs == 0) {
        unlink_locked(s, o);
        if (o->uses)
            o->dead = true;
        else
            gone = o;
    }
    mp__os_mutex_unlock(s->mu);
    obj_free(gone);
    return o ? 0 : mp_manager_raise(MP_ENOENT, "KeyError", "%s", id ? id : "None");
}

/* ---- replies ---- */

/* Replies are composed into a buffer (what the connection then sends): the request
 * handling is one function of bytes to bytes, which the fuzz harness drives. */
static int send_reply(mp__buf *c, const char *kind, const mp_value *v) {
    c->len = 0;
    c->err = 0;
    int rc = mp__mwire_reply(c, kind, v);
    if (rc) {
        /* The result cannot be pickled (a str that is not UTF-8...): Python's
         * '#UNSERIALIZABLE'. */
        c->len = 0;
        c->err = 0;
        char msg[600];
        snprintf(msg, sizeof msg, "%s", mp_last_error_message());
        mp_value *t = mp_value_str(msg);
        rc = mp__mwire_reply(c, "#UNSERIALIZABLE", t);
        mp_value_free(t);
    }
    return rc;
}

/* An '#ERROR' reply for the failure rc of this thread's last call. */
static int send_error(mp__buf *c, int rc) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", mp_last_error_message());
    mp_value *e = mp__mexc_new(rc, mp__mraise_take(), msg);
    int r = e ? send_reply(c, "#ERROR", e) : send_reply(c, "#TRACEBACK", NULL);
    mp_value_free(e);
    return r;
}

static int send_proxy(mp__mserver *s, mp__buf *c, const char *type_id, const char *id) {
    const mp__mtype *t = mp__mreg_find(&s->reg, type_id);
    mp_value *pair = mp_value_tuple_new();
    if (!pair || mp_value_list_append(pair, exposed_of(t)) ||
        mp_value_list_append(pair, mp__mtoken_new(type_id, s->address, id))) {
        mp_value_free(pair);
        return send_reply(c, "#TRACEBACK", NULL);
    }
    int rc = send_reply(c, "#PROXY", pair);
    mp_value_free(pair);
    return rc;
}

/* A repr for '__repr__' and '__str__' (Python: repr(obj)); a short description. */
static int fallback_repr(const mobj *o, mp_value **out) {
    char buf[160];
    snprintf(buf, sizeof buf, "<%s object, id %s>", o->type->type_id, o->id);
    *out = mp_value_str(buf);
    return *out ? 0 : MP_ENOMEM;
}

/* One method call on the referent: (ident, method, args, kwds). */
static int serve_call(mp__mserver *s, mp__buf *c, const mp_value *req, uint64_t lid) {
    const char *id = mp_value_as_str(mp_value_item(req, 0), NULL);
    const char *method = mp_value_as_str(mp_value_item(req, 1), NULL);
    const mp_value *args = mp_value_item(req, 2), *kwds = mp_value_item(req, 3);
    mobj *o = obj_use(s, id);
    if (!o) {
        mp_manager_raise(MP_ENOENT, "KeyError", "%s", id ? id : "None");
        return send_error(c, MP_ENOENT);
    }
    const mp_manager_method *m = NULL;
    for (size_t i = 0; i < o->type->nmethods; i++)
        if (strcmp(o->type->methods[i].name, method) == 0) m = &o->type->methods[i];
    mp_value *res = NULL;
    int rc;
    mp__err_clear();
    mp__mraise_take();
    if (m) {
        if (o->mu) mp__os_mutex_lock(o->mu);
        rc = m->fn(o->obj, args, kwds, &res);
        if (o->mu) mp__os_mutex_unlock(o->mu);
        if (rc >= 0) rc = 0;
    } else if (strcmp(method, "#GETVALUE") == 0) {
        if (o->mu) mp__os_mutex_lock(o->mu);
        if (o->type->getvalue)
            rc = o->type->getvalue(o->obj, &res);
        else if (!o->type->create)
            rc = (res = mp_value_copy(o->obj)) || !o->obj ? 0 : MP_ENOMEM;
        else
            rc = mp_manager_raise(MP_ENOTSUP, "NotImplementedError",
                                  "%s objects have no value to copy", o->type->type_id);
        if (o->mu) mp__os_mutex_unlock(o->mu);
    } else if (strcmp(method, "__repr__") == 0 || strcmp(method, "__str__") == 0) {
        rc = fallback_repr(o, &res);
    } else {
        rc = mp_manager_raise(MP_ENOENT, "AttributeError",
                              "method '%s' of %s object is not in exposed", method,
                              o->type->type_id);
    }
    const char *type_id = m ? m->type_id : NULL;
    obj_unuse(s, o);
    if (rc) {
        mp_value_free(res);
        return send_error(c, rc);
    }
    if (type_id) {
        char nid[24];
        rc = obj_create(s, type_id, NULL, NULL, res ? res : mp_value_none(), lid, nid);
        return rc ? send_error(c, rc) : send_proxy(s, c, type_id, nid);
    }
    rc = send_reply(c, "#RETURN", res);
    mp_value_free(res);
    return rc;
}

/* Waits for a request on c: 0 and the decoded value; MP_ETIMEDOUT when the connection
 * stayed idle past its limit; other errors end the connection. */
static int next_request(mconn *mc, double deadline, void **req, size_t *n) {
    mp__mserver *s = mc->s;
    *req = NULL;
    *n = 0;
    /* A client in a loop sends its next request at once: caught without sleeping. */
    bool ready = mp__mspin(mc->c, MP__MSPIN);
    while (!ready) {
        if (atomic_load(&s->stop) || atomic_load(&mc->evict)) return MP_ECLOSED;
        double left = mp__left(deadline);
        if (left <= 0) return MP_ETIMEDOUT;
        int rc = mp_connection_poll(mc->c, left < SLICE ? left : SLICE, &ready);
        if (rc) return rc;
    }
    return mp_connection_recv_bytes(mc->c, 0, req, n);
}

/* A request decoded: (ident, methodname, args, kwds); NULL and an error otherwise. */
static mp_value *decode_request(const void *buf, size_t n) {
    mp_value *req = NULL;
    int rc = mp_value_loads(buf, n, NULL, &req);
    if (!rc && (mp_value_get_type(req) != MP_VALUE_TUPLE || mp_value_len(req) != 4 ||
                mp_value_get_type(mp_value_item(req, 1)) != MP_VALUE_STR ||
                mp_value_get_type(mp_value_item(req, 2)) != MP_VALUE_TUPLE ||
                mp_value_get_type(mp_value_item(req, 3)) != MP_VALUE_DICT)) {
        mp_value_free(req);
        req = NULL;
        mp__err(MP_EPROTO, "manager: a request is (ident, methodname, args, kwds)");
    }
    return req;
}

static int reply_traceback(mp__buf *c) {
    char msg[700];
    snprintf(msg, sizeof msg, "Traceback (most recent call last):\n  (C manager)\n%s\n",
             mp_last_error_message());
    mp_value *t = mp_value_str(msg);
    int rc = send_reply(c, "#TRACEBACK", t);
    mp_value_free(t);
    return rc;
}

static int number_of_objects(mp__mserver *s) {
    mp__os_mutex_lock(s->mu);
    int n = (int)s->nobjs;
    mp__os_mutex_unlock(s->mu);
    return n;
}

static mp_value *debug_info(mp__mserver *s) {
    mp__buf b = {0};
    mp__os_mutex_lock(s->mu);
    for (size_t i = 0; i < s->nbuckets; i++)
        for (mobj *o = s->buckets[i]; o; o = o->next) {
            char line[160];
            int n = snprintf(line, sizeof line, "%s  %s:       refcount=%" PRId64 "\n",
                             b.len ? "\n" : "", o->id, o->refs);
            mp__buf_put(&b, line, (size_t)n);
            mp__buf_put(&b, "    ", 4);
            mp__buf_put(&b, o->type->type_id, strlen(o->type->type_id));
        }
    mp__os_mutex_unlock(s->mu);
    mp_value *v = mp_value_strn(b.len ? (const char *)b.data : "", b.len);
    mp__buf_free(&b);
    return v;
}

/* A block a SharedMemoryManager's client made goes now (release) or at shutdown. */
static void segment_unlink(const char *name) {
    mp__err_mute();
    if (mp__os_shm_named_unlink(name) == 0) mp__os_shm_unlinked(name, false);
    mp__err_unmute();
}

/* SharedMemoryServer's track_segment(name), release_segment(name), list_segments(). */
static int segments(mp__mserver *s, const char *fn, const char *name, mp__buf *c) {
    if (fn[0] == 'l') {
        mp_value *l = mp_value_list_new();
        mp__os_mutex_lock(s->mu);
        for (size_t i = 0; l && i < s->nsegs; i++)
            if (mp_value_list_append(l, mp_value_str(s->segs[i]))) {
                mp_value_free(l);
                l = NULL;
            }
        mp__os_mutex_unlock(s->mu);
        if (!l) return mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
        int rc = send_reply(c, "#RETURN", l);
        mp_value_free(l);
        return rc;
    }
    mp__err_mute();
    bool ok = name && mp__shm_check_name(name) == 0;
    mp__err_unmute();
    if (!ok) return mp_manager_raise(MP_EINVAL, "ValueError", "%s: not a block name", fn);
    int rc = 0;
    bool release = fn[0] == 'r', found = false;
    mp__os_mutex_lock(s->mu);
    for (size_t i = 0; i < s->nsegs && !found; i++)
        if (strcmp(s->segs[i], name) == 0) {
            found = true;
            if (release) {
                mp__free(s->segs[i]);
                s->segs[i] = s->segs[--s->nsegs];
            }
        }
    if (!release && !found) {
        char **v = mp__realloc(s->segs, (s->nsegs + 1) * sizeof *v);
        char *copy = mp__strdup(name);
        if (v) s->segs = v;
        if (!v || !copy) {
            mp__free(copy);
            rc = mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
        } else {
            s->segs[s->nsegs++] = copy;
        }
    }
    mp__os_mutex_unlock(s->mu);
    if (release) segment_unlink(name);
    return rc ? rc : send_reply(c, "#RETURN", NULL);
}

/* A new lease: its id (hex) as the reply. */
static int lease_new(mp__mserver *s, mp__buf *c, mp__mconn_state *st) {
    lease *l = mp__calloc(1, sizeof *l);
    if (!l) return send_error(c, mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory"));
    mp__os_mutex_lock(s->mu);
    l->id = ++s->next_lease;
    l->next = s->leases;
    s->leases = l;
    mp__os_mutex_unlock(s->mu);
    char id[24];
    snprintf(id, sizeof id, "%" PRIx64, l->id);
    mp_value *v = mp_value_str(id);
    int rc = send_reply(c, "#RETURN", v);
    mp_value_free(v);
    st->mode = MP__MCONN_LEASE;
    st->lease = l->id;
    return rc;
}

void mp__mserver_lease_end(mp__mserver *s, uint64_t id) {
    mp__os_mutex_lock(s->mu);
    lease *l = NULL;
    for (lease **p = &s->leases; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            l = *p;
            *p = l->next;
            break;
        }
    mp__os_mutex_unlock(s->mu);
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        char key[24];
        snprintf(key, sizeof key, "%" PRIx64, l->v[i].key);
        mp__err_mute();
        for (int64_t k = 0; k < l->v[i].n; k++) obj_decref(s, key, 0);
        mp__err_unmute();
    }
    mp__free(l->v);
    mp__free(l);
}

/* A connection's first request: a public method of the server. accept_connection
 * turns the connection into one for method calls, mp_lease into a client process's
 * lease (st->mode says which). C clients' extensions: mp_lease; mp_create, mp_incref,
 * mp_decref with the lease first; accept_connection with the lease second. */
static void serve_public(mp__mserver *s, mp__buf *c, const mp_value *req, mp__mconn_state *st) {
    const char *fn = mp_value_as_str(mp_value_item(req, 1), NULL);
    const mp_value *args = mp_value_item(req, 2), *kwds = mp_value_item(req, 3);
    uint64_t lid = 0;
    mp_value *shifted = NULL;
    if (strncmp(fn, "mp_", 3) == 0 && strcmp(fn, "mp_lease") != 0) {
        /* The lease first, then the call's own arguments. */
        lid = lease_id_of(mp_value_item(args, 0));
        shifted = mp_value_tuple_new();
        for (size_t i = 1; shifted && i < mp_value_len(args); i++)
            if (mp_value_list_append(shifted, mp_value_copy(mp_value_item(args, i)))) {
                mp_value_free(shifted);
                shifted = NULL;
            }
        if (!shifted || !lid) {
            mp_value_free(shifted);
            send_error(c, mp_manager_raise(MP_EINVAL, "TypeError", "%s: a lease comes first", fn));
            return;
        }
        args = shifted;
        fn += 3;
    }
    const char *a0 = mp_value_as_str(mp_value_item(args, 0), NULL);
    mp__err_clear();
    mp__mraise_take();
    st->mode = MP__MCONN_DONE;
    if (strcmp(fn, "accept_connection") == 0) {
        if (send_reply(c, "#RETURN", NULL) == 0) {
            st->mode = MP__MCONN_CALLS;
            st->lease = lease_id_of(mp_value_item(args, 1));
        }
    } else if (strcmp(fn, "mp_lease") == 0) {
        lease_new(s, c, st);
    } else if (strcmp(fn, "create") == 0) {
        if (!a0) {
            mp_manager_raise(MP_EINVAL, "TypeError", "create: type_id must be a str");
            send_error(c, MP_EINVAL);
            mp_value_free(shifted);
            return;
        }
        mp_value *rest = mp_value_tuple_new();
        for (size_t i = 1; rest && i < mp_value_len(args); i++)
            if (mp_value_list_append(rest, mp_value_copy(mp_value_item(args, i)))) {
                mp_value_free(rest);
                rest = NULL;
            }
        char id[24];
        int rc = rest ? obj_create(s, a0, rest, kwds, NULL, lid, id)
                      : mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
        mp_value_free(rest);
        if (rc) {
            send_error(c, rc);
            mp_value_free(shifted);
            return;
        }
        mp_value *pair = mp_value_tuple_new();
        if (!pair || mp_value_list_append(pair, mp_value_str(id)) ||
            mp_value_list_append(pair, exposed_of(mp__mreg_find(&s->reg, a0)))) {
            mp_value_free(pair);
            obj_decref(s, id, lid);
            send_reply(c, "#TRACEBACK", NULL);
            mp_value_free(shifted);
            return;
        }
        send_reply(c, "#RETURN", pair);
        mp_value_free(pair);
    } else if (strcmp(fn, "incref") == 0 || strcmp(fn, "decref") == 0) {
        int rc = fn[0] == 'i' ? obj_incref(s, a0, lid) : obj_decref(s, a0, lid);
        if (rc)
            send_error(c, rc);
        else
            send_reply(c, "#RETURN", NULL);
    } else if (strcmp(fn, "shutdown") == 0) {
        mp_log(MP_LOG_INFO, "manager received shutdown message");
        send_reply(c, "#RETURN", NULL);
        mp__os_mutex_lock(s->mu);
        atomic_store(&s->stop, true);
        mp__os_cond_broadcast(s->cv);
        mp__os_mutex_unlock(s->mu);
    } else if (s->shm && (strcmp(fn, "track_segment") == 0 || strcmp(fn, "release_segment") == 0 ||
                          strcmp(fn, "list_segments") == 0)) {
        int rc = segments(s, fn, a0, c);
        if (rc) send_error(c, rc);
    } else if (strcmp(fn, "dummy") == 0) {
        send_reply(c, "#RETURN", NULL);
    } else if (strcmp(fn, "number_of_objects") == 0) {
        mp_value *n = mp_value_int(number_of_objects(s));
        send_reply(c, "#RETURN", n);
        mp_value_free(n);
    } else if (strcmp(fn, "debug_info") == 0) {
        mp_value *v = debug_info(s);
        send_reply(c, "#RETURN", v);
        mp_value_free(v);
    } else if (strcmp(fn, "get_methods") == 0) {
        char *type_id = NULL, *addr = NULL, *id = NULL;
        mobj *o = NULL;
        if (!mp__mtoken_parse(mp_value_item(args, 0), &type_id, &addr, &id)) o = obj_use(s, id);
        mp_value *e = o ? exposed_of(o->type) : NULL;
        if (o) obj_unuse(s, o);
        if (e)
            send_reply(c, "#RETURN", e);
        else
            send_error(c, mp_manager_raise(MP_ENOENT, "KeyError", "%s", id ? id : "no token"));
        mp_value_free(e);
        mp__free(type_id);
        mp__free(addr);
        mp__free(id);
    } else {
        mp_manager_raise(MP_EINVAL, "AssertionError", "'%s' unrecognized", fn);
        send_error(c, MP_EINVAL);
    }
    mp_value_free(shifted);
}

int mp__mserver_request(mp__mserver *s, const void *buf, size_t n, mp__mconn_state *st,
                        mp__buf *out) {
    out->len = 0;
    mp_value *req = decode_request(buf, n);
    if (!req) {
        if (st->mode == MP__MCONN_FIRST) st->mode = MP__MCONN_DONE;
        return reply_traceback(out);
    }
    int rc = 0;
    if (st->mode == MP__MCONN_FIRST)
        serve_public(s, out, req, st);
    else if (st->mode == MP__MCONN_CALLS)
        rc = serve_call(s, out, req, st->lease);
    mp_value_free(req);
    return rc;
}

/* Reads a request, answers it; until the connection ends, idles out or the server
 * stops. The first request is a public call; accept_connection turns the connection
 * into one for method calls. */
static void serve_conn(mconn *mc, double deadline) {
    mp__mserver *s = mc->s;
    mp__buf out = {0};
    mp__mconn_state st = {MP__MCONN_FIRST, 0};
    for (;;) {
        void *buf = NULL;
        size_t n = 0;
        if (next_request(mc, deadline, &buf, &n)) break;
        atomic_store(&mc->busy, true);
        int rc = mp__mserver_request(s, buf, n, &st, &out);
        mp_connection_free_bytes(buf);
        if (!rc && out.len) rc = mp_connection_send_bytes(mc->c, out.data, out.len);
        atomic_store(&mc->busy, false);
        atomic_store(&mc->last, mp__os_monotonic());
        if (rc || st.mode == MP__MCONN_DONE) break;
        if (st.mode == MP__MCONN_LEASE) {
            /* A lease lasts as long as its connection: no idle limit, never evicted;
             * whatever the client sends on it is ignored. */
            atomic_store(&mc->lease, true);
            deadline = MP_FOREVER;
        } else {
            deadline = s->idle > 0 ? atomic_load(&mc->last) + s->idle : MP_FOREVER;
        }
    }
    if (st.mode == MP__MCONN_LEASE) mp__mserver_lease_end(s, st.lease);
    mp__buf_free(&out);
}

static void conn_main(void *arg) {
    mconn *mc = arg;
    mp__mserver *s = mc->s;
    tl_server = s;
    int kind;
    mp_os_handle h = mp__connection_handle(mc->c, &kind);
    double hs = s->idle > 0 && s->idle < HANDSHAKE_MAX ? s->idle : HANDSHAKE_MAX;
    double deadline = mp__deadline(hs);
    mp__err_mute();
    /* CPython's order: the server challenges first, then answers. */
    int rc = mp__auth_deliver(h, kind, s->key, s->keylen, deadline);
    if (!rc) rc = mp__auth_answer(h, kind, s->key, s->keylen, deadline);
    mp__err_unmute();
    if (!rc) serve_conn(mc, deadline);
    mp_connection_close(mc->c);
    tl_server = NULL;
    atomic_store(&mc->done, true);
}

/* Joins and frees the connections whose threads ended (all of them when all). */
static void reap(mp__mserver *s, bool all) {
    mconn *done = NULL;
    mp__os_mutex_lock(s->mu);
    for (mconn **p = &s->conns; *p;) {
        mconn *mc = *p;
        if (all || atomic_load(&mc->done)) {
            *p = mc->next;
            mc->next = done;
            done = mc;
            s->nconns--;
        } else {
            p = &mc->next;
        }
    }
    mp__os_mutex_unlock(s->mu);
    while (done) {
        mconn *mc = done;
        done = mc->next;
        if (mp__os_thread_join(mc->t, all ? 5.0 : MP_FOREVER) != 0) {
            /* A method that blocks for good (a user type's): the thread is left to the
             * process's exit, with what it uses. */
            mp__os_thread_free(mc->t);
            continue;
        }
        mp__os_thread_free(mc->t);
        mp_connection_free(mc->c);
        mp__free(mc);
    }
}

/* At the connection limit: asks the longest idle connection to close. */
static void make_room(mp__mserver *s) {
    mp__os_mutex_lock(s->mu);
    mconn *oldest = NULL;
    int live = 0;
    for (mconn *mc = s->conns; mc; mc = mc->next) {
        if (atomic_load(&mc->done) || atomic_load(&mc->evict) || atomic_load(&mc->lease)) continue;
        live++;
        if (!atomic_load(&mc->busy) &&
            (!oldest || atomic_load(&mc->last) < atomic_load(&oldest->last)))
            oldest = mc;
    }
    if (live >= s->max_conns && oldest) atomic_store(&oldest->evict, true);
    mp__os_mutex_unlock(s->mu);
}

static void accept_main(void *arg) {
    mp__mserver *s = arg;
    while (!atomic_load(&s->stop)) {
        mp_connection *c = NULL;
        mp__err_mute();
        int rc = mp_listener_accept(s->l, SLICE, &c);
        mp__err_unmute();
        reap(s, false);
        if (rc) {
            if (rc != MP_ETIMEDOUT && !atomic_load(&s->stop)) mp__os_sleep(0.01);
            continue;
        }
        make_room(s);
        mconn *mc = mp__calloc(1, sizeof *mc);
        if (!mc) {
            mp_connection_free(c);
            continue;
        }
        mc->s = s;
        mc->c = c;
        mp_connection_set_buffered(c, true); /* a request in one read */
        atomic_store(&mc->last, mp__os_monotonic());
        mp__os_mutex_lock(s->mu);
        mc->next = s->conns;
        s->conns = mc;
        s->nconns++;
        rc = mp__os_thread_start(conn_main, mc, &mc->t);
        if (rc) {
            s->conns = mc->next;
            s->nconns--;
        }
        mp__os_mutex_unlock(s->mu);
        if (rc) {
            mp_connection_free(c);
            mp__free(mc);
        }
    }
}

/* ---- the server ---- */

int mp__mserver_new(const mp__mserver_cfg *cfg, mp__mreg *reg, mp__mserver **out) {
    *out = NULL;
    mp__mserver *s = mp__calloc(1, sizeof *s);
    if (!s) {
        mp__mreg_clear(reg);
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    s->reg = *reg;
    memset(reg, 0, sizeof *reg);
    s->max_conns = cfg->max_conns > 0 ? cfg->max_conns : DEFAULT_MAX_CONNS;
    s->shm = cfg->shm;
    s->idle = cfg->idle > 0 ? cfg->idle : 0;
    s->keylen = cfg->keylen;
    s->key = mp__malloc(cfg->keylen ? cfg->keylen : 1);
    int rc = 0;
    if (!s->key || mp__os_mutex_new(&s->mu) || mp__os_cond_new(&s->cv))
        rc = mp__err(MP_ENOMEM, "manager: out of memory");
    if (!rc) {
        memcpy(s->key, cfg->key, cfg->keylen);
        /* Authentication happens in the connection's own thread, bounded in time, so
         * one slow client cannot hold the others up. */
        mp_listener_opts lo = {.family = cfg->family, .backlog = 16, .no_auth = true};
        rc = mp_listener_new(cfg->address, &lo, &s->l);
    }
    if (!rc) {
        s->address = mp__strdup(mp_listener_address(s->l));
        if (!s->address) rc = mp__err(MP_ENOMEM, "manager: out of memory");
    }
    if (rc) {
        mp__mserver_free(s);
        return rc;
    }
    /* Known from here, not from run: a shutdown may come before run starts. */
    running(s, true);
    *out = s;
    return 0;
}

const char *mp__mserver_address(const mp__mserver *s) { return s ? s->address : NULL; }

void mp__mserver_fuzz_mode(mp__mserver *s) {
    atomic_store(&s->stop, true);
    tl_server = s;
}

int mp__mserver_run(mp__mserver *s) {
    mp__thread *acceptor = NULL;
    int rc = mp__os_thread_start(accept_main, s, &acceptor);
    if (rc) return rc;
    mp_log(MP_LOG_INFO, "manager serving at '%s'", s->address ? s->address : "?");
    mp__os_mutex_lock(s->mu);
    while (!atomic_load(&s->stop)) mp__os_cond_wait(s->cv, s->mu, 1.0);
    mp__os_mutex_unlock(s->mu);
    mp__os_thread_join(acceptor, MP_FOREVER);
    mp__os_thread_free(acceptor);
    mp_listener_close(s->l);
    reap(s, true);
    /* A SharedMemoryManager unlinks what its clients made, dead or alive. */
    mp__os_mutex_lock(s->mu);
    for (size_t i = 0; i < s->nsegs; i++) {
        segment_unlink(s->segs[i]);
        mp__free(s->segs[i]);
    }
    s->nsegs = 0;
    mp__os_mutex_unlock(s->mu);
    mp_log(MP_LOG_INFO, "manager exiting");
    return 0;
}

void mp__mserver_free(mp__mserver *s) {
    if (!s) return;
    running(s, false);
    atomic_store(&s->stop, true);
    reap(s, true);
    for (size_t i = 0; i < s->nbuckets; i++)
        for (mobj *o = s->buckets[i], *nx; o; o = nx) {
            nx = o->next;
            if (!o->uses) obj_free(o); /* one still in use belongs to a stuck thread */
        }
    mp__free(s->buckets);
    for (size_t i = 0; i < s->nsegs; i++) mp__free(s->segs[i]);
    mp__free(s->segs);
    mp_listener_free(s->l);
    mp__free(s->address);
    if (s->key) memset(s->key, 0, s->keylen);
    mp__free(s->key);
    mp__os_cond_free(s->cv);
    mp__os_mutex_free(s->mu);
    mp__mreg_clear(&s->reg);
    mp__free(s);
}
