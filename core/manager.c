/* Managers from the client's side (CPython's BaseProxy and dispatch): clients, their
 * leases and connections, proxies (the manager object is in core/manager_ctl.c).
 *
 * Each thread talks to a manager over a connection of its own (CPython's per-thread
 * connection of a proxy), kept in a thread-local record; a record's connections are
 * closed when the thread ends, and a thread's connections to managers no longer used
 * are closed the next time it connects. Public calls (create, incref, decref,
 * shutdown) go over a fresh connection each, as CPython's do, so a C client speaks to
 * a Python manager and a Python client to a C one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_client.h"
#include "os_shm.h"
#include "os_sync.h"
#include "value_internal.h"

#define START_WAIT 120.0

/* This process's id, cached (no system call: it is checked on every method call). */
static int64_t my_pid(void) {
    return (int64_t)mp__os_sync_pid();
} /* a server process has this long to listen (Wine, spawn) */

/* ---- clients: where a manager is and its key ---- */

struct mp__mclient {
    struct mp__mclient *next;
    uint64_t gen;
    int refs; /* under mp__lock */
    char *address;
    unsigned char *key;
    size_t keylen;
    /* This process's lease on a C manager (a connection held open: when it closes, the
     * process ended, and the references it held go); under mu. */
    mp__mutex *mu;
    int64_t lease_pid;
    int lease_kind; /* LEASE_UNKNOWN, LEASE_HELD, LEASE_NONE (a Python manager) */
    char lease[24];
    mp_connection *lease_conn;
};

enum { LEASE_UNKNOWN, LEASE_HELD, LEASE_NONE };

static mp__mclient *g_clients; /* under mp__lock */
static uint64_t g_client_gen;  /* under mp__lock */

mp__mclient *mp__mclient_get(const char *address, const void *key, size_t keylen) {
    mp__lock();
    for (mp__mclient *c = g_clients; c; c = c->next)
        if (strcmp(c->address, address) == 0 && c->keylen == keylen &&
            memcmp(c->key, key, keylen) == 0) {
            c->refs++;
            mp__unlock();
            return c;
        }
    mp__mclient *c = mp__calloc(1, sizeof *c);
    if (c) {
        c->address = mp__strdup(address);
        c->key = mp__malloc(keylen ? keylen : 1);
        if (!c->address || !c->key || mp__os_mutex_new(&c->mu)) {
            mp__free(c->address);
            mp__free(c->key);
            mp__os_mutex_free(c->mu);
            mp__free(c);
            c = NULL;
        } else {
            memcpy(c->key, key, keylen);
            c->keylen = keylen;
            c->gen = ++g_client_gen;
            c->refs = 1;
            c->next = g_clients;
            g_clients = c;
        }
    }
    mp__unlock();
    if (!c) mp__err(MP_ENOMEM, "manager: out of memory");
    return c;
}

static void sweep_own(void);

void mp__mclient_put(mp__mclient *c) {
    if (!c) return;
    mp__lock();
    bool last = --c->refs == 0;
    if (last)
        for (mp__mclient **p = &g_clients; *p; p = &(*p)->next)
            if (*p == c) {
                *p = c->next;
                break;
            }
    mp__unlock();
    if (!last) return;
    sweep_own();
    mp__err_mute();
    mp_connection_free(c->lease_conn);
    mp__err_unmute();
    mp__os_mutex_free(c->mu);
    mp__free(c->address);
    memset(c->key, 0, c->keylen);
    mp__free(c->key);
    mp__free(c);
}

/* ---- this thread's connections ---- */

typedef struct tconn {
    uint64_t gen;
    mp_connection *c;
} tconn;

typedef struct trec {
    struct trec *next;
    int64_t pid;
    tconn *v;
    size_t n, cap;
} trec;

static MP__THREAD_LOCAL trec *tl_rec;
static mp__tls *g_key; /* hands a thread's record to rec_end at its exit */
static trec *g_recs;   /* every thread's record, under mp__lock */

static void rec_close(trec *r, size_t i) {
    mp__err_mute();
    mp_connection_free(r->v[i].c);
    mp__err_unmute();
    r->v[i] = r->v[--r->n];
}

static void rec_end(void *arg) {
    trec *r = arg;
    mp__lock();
    for (trec **p = &g_recs; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
    mp__unlock();
    while (r->n) rec_close(r, 0);
    mp__free(r->v);
    mp__free(r);
    if (tl_rec == r) tl_rec = NULL;
}

static bool gen_live(uint64_t gen) {
    for (mp__mclient *c = g_clients; c; c = c->next)
        if (c->gen == gen) return true;
    return false;
}

/* Closes this thread's connections to managers no longer used. */
static void sweep_own(void) {
    trec *r = tl_rec;
    if (!r) return;
    mp__lock();
    for (size_t i = 0; i < r->n;)
        if (!gen_live(r->v[i].gen))
            rec_close(r, i);
        else
            i++;
    mp__unlock();
}

static trec *rec_get(void) {
    trec *r = tl_rec;
    if (r && r->pid != my_pid()) {
        /* A fork child: the connections are the parent's; only their copies close. */
        while (r->n) rec_close(r, 0);
        r->pid = my_pid();
    }
    if (r) return r;
    r = mp__calloc(1, sizeof *r);
    if (!r) {
        mp__err(MP_ENOMEM, "manager: out of memory");
        return NULL;
    }
    r->pid = my_pid();
    mp__lock();
    int rc = g_key ? 0 : mp__os_tls_new(rec_end, &g_key);
    if (!rc) rc = mp__os_tls_set(g_key, r);
    if (!rc) {
        r->next = g_recs;
        g_recs = r;
    }
    mp__unlock();
    if (rc) {
        mp__free(r);
        return NULL;
    }
    tl_rec = r;
    return r;
}

static double deadline_of(double timeout) {
    return timeout > 0 ? mp__deadline(timeout) : MP_FOREVER;
}

static int connect_to(const mp__mclient *cl, double deadline, mp_connection **out) {
    mp_listener_opts o = {.authkey = cl->key, .authkey_len = cl->keylen};
    int rc = mp_client_connect(cl->address, &o, mp__left(deadline), out);
    if (rc && rc != MP_EAUTH && rc != MP_ETIMEDOUT && rc != MP_ENOMEM)
        return mp__err_wrap(MP_EPIPE, "manager at %s cannot be reached", cl->address);
    return rc ? mp__err_wrap(rc, "manager at %s", cl->address) : 0;
}

/* Sends a pickled request on c and waits for the reply (kind, result) until deadline. */
static int roundtrip(mp_connection *c, const mp__buf *req, double deadline, mp_value **reply) {
    *reply = NULL;
    int rc = mp_connection_send_bytes(c, req->data, req->len);
    /* A quick answer is caught without sleeping; with no limit, the receive waits. */
    bool ready = !rc && (mp__mspin(c, MP__MSPIN) || mp__forever(deadline));
    if (!rc && !ready) rc = mp_connection_poll(c, mp__left(deadline), &ready);
    if (!rc && !ready) rc = mp__err(MP_ETIMEDOUT, "manager: no reply in time");
    void *buf = NULL;
    size_t n = 0;
    if (!rc) rc = mp_connection_recv_bytes(c, 0, &buf, &n);
    if (!rc) {
        rc = mp_value_loads(buf, n, NULL, reply);
        mp_connection_free_bytes(buf);
        if (!rc && (mp_value_get_type(*reply) != MP_VALUE_TUPLE || mp_value_len(*reply) != 2 ||
                    !mp_value_as_str(mp_value_item(*reply, 0), NULL))) {
            mp_value_free(*reply);
            *reply = NULL;
            rc = mp__err(MP_EPROTO, "manager: a reply is (kind, result)");
        }
    }
    if (rc == MP_EOF || rc == MP_ECLOSED) rc = mp__err(MP_EPIPE, "manager: connection lost");
    return rc;
}

/* The text of a Python traceback as an error: the code from its last line's
 * exception, the message that line. */
static int traceback_error(const char *kind, const mp_value *text, const char *what) {
    size_t n = 0;
    const char *s = mp_value_as_str(text, &n);
    if (!s) return mp__err(MP_EREMOTE, "%s: the manager answered %s", what, kind);
    const char *end = s + n;
    while (end > s && (end[-1] == '\n' || end[-1] == ' ')) end--;
    const char *line = end;
    while (line > s && line[-1] != '\n') line--;
    int code = MP_EREMOTE;
    static const struct {
        const char *prefix;
        int code;
    } k[] = {{"KeyError", MP_ENOENT},   {"AttributeError", MP_ENOENT},
             {"IndexError", MP_ENOENT}, {"ValueError", MP_EINVAL},
             {"TypeError", MP_EINVAL},  {"AssertionError", MP_EINVAL}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strncmp(line, k[i].prefix, strlen(k[i].prefix)) == 0) code = k[i].code;
    return mp__err(code, "%s: %s (the manager's traceback: %.*s)", what, kind, (int)(end - line),
                   line);
}

/* The result of a reply: 0 and *result for '#RETURN' (and '#PROXY' when proxy_ok),
 * else the error it carries. *kind_proxy says which. */
static int take_reply(mp_value *reply, const char *what, bool proxy_ok, bool *is_proxy,
                      mp_value **result) {
    const char *kind = mp_value_as_str(mp_value_item(reply, 0), NULL);
    mp_value *res = reply->u.seq.items[1];
    *result = NULL;
    if (is_proxy) *is_proxy = false;
    if (strcmp(kind, "#RETURN") == 0 || (proxy_ok && strcmp(kind, "#PROXY") == 0)) {
        if (is_proxy) *is_proxy = kind[1] == 'P';
        /* Detach the result from the reply tuple (a scalar in a slab is copied). */
        if (res && (res->flags & MP__VF_SLAB)) {
            *result = mp_value_copy(res);
            if (!*result) return mp__err(MP_ENOMEM, "manager: out of memory");
        } else {
            *result = res;
            reply->u.seq.items[1] = mp_value_none();
            if (!reply->u.seq.items[1]) reply->u.seq.n = 1;
        }
        if (mp_value_get_type(*result) == MP_VALUE_NONE) {
            mp_value_free(*result);
            *result = NULL;
        }
        return 0;
    }
    if (strcmp(kind, "#ERROR") == 0) return mp__mexc_error(res, what);
    if (strcmp(kind, "#PROXY") == 0)
        return mp__err(MP_EINVAL, "%s returns a proxy: call it with mp_proxy_call_proxy", what);
    return traceback_error(kind, res, what);
}

/* A public call of the server over a connection of its own (CPython's dispatch). */
int mp__mpublic_call(const mp__mclient *cl, double timeout, const char *method,
                     const mp_value *args, const mp_value *kwds, mp_value **result) {
    if (result) *result = NULL;
    double deadline = deadline_of(timeout);
    mp_connection *c = NULL;
    int rc = connect_to(cl, deadline, &c);
    mp__buf req = {0};
    if (!rc) rc = mp__mwire_request(&req, NULL, method, args, kwds);
    mp_value *reply = NULL, *res = NULL;
    if (!rc) rc = roundtrip(c, &req, deadline, &reply);
    if (!rc) rc = take_reply(reply, method, false, NULL, &res);
    mp__buf_free(&req);
    mp_value_free(reply);
    mp__err_mute();
    mp_connection_free(c);
    mp__err_unmute();
    if (result)
        *result = res;
    else
        mp_value_free(res);
    return rc;
}

/* incref or decref of id; under lease (C managers: "mp_incref" (lease, id)) unless
 * lease is empty. */
static int public_call_id(const mp__mclient *cl, double timeout, const char *method, const char *id,
                          const char *lease) {
    mp_value *args = mp_value_tuple_new();
    if (!args || (lease[0] && mp_value_list_append(args, mp_value_str(lease))) ||
        mp_value_list_append(args, mp_value_str(id))) {
        mp_value_free(args);
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    char name[32];
    snprintf(name, sizeof name, "%s%s", lease[0] ? "mp_" : "", method);
    int rc = mp__mpublic_call(cl, timeout, name, args, NULL, NULL);
    mp_value_free(args);
    return rc;
}

/* This process's lease on cl's manager, taken on first use ("" from a Python manager,
 * which has none, or when the manager cannot be reached: the call that follows says
 * why). The id is copied to lease. */
void mp__mclient_lease(mp__mclient *cl, double timeout, char lease[24]) {
    lease[0] = '\0';
    mp__os_mutex_lock(cl->mu);
    if (cl->lease_kind != LEASE_UNKNOWN && cl->lease_pid != my_pid()) {
        /* A fork child: the lease connection is the parent's; only its copy closes. */
        mp__err_mute();
        mp_connection_free(cl->lease_conn);
        mp__err_unmute();
        cl->lease_conn = NULL;
        cl->lease_kind = LEASE_UNKNOWN;
    }
    if (cl->lease_kind == LEASE_UNKNOWN) {
        double deadline = deadline_of(timeout);
        mp_connection *c = NULL;
        mp__buf req = {0};
        mp_value *reply = NULL;
        mp__err_mute();
        int rc = connect_to(cl, deadline, &c);
        if (!rc) rc = mp__mwire_request(&req, NULL, "mp_lease", NULL, NULL);
        if (!rc) rc = roundtrip(c, &req, deadline, &reply);
        mp__err_unmute();
        const char *kind = rc ? NULL : mp_value_as_str(mp_value_item(reply, 0), NULL);
        const char *id = rc ? NULL : mp_value_as_str(mp_value_item(reply, 1), NULL);
        if (kind && strcmp(kind, "#RETURN") == 0 && id && strlen(id) < sizeof cl->lease) {
            snprintf(cl->lease, sizeof cl->lease, "%s", id);
            cl->lease_conn = c;
            cl->lease_kind = LEASE_HELD;
            c = NULL;
        } else if (kind) {
            cl->lease_kind = LEASE_NONE; /* a Python manager: '#TRACEBACK', unrecognized */
        }
        cl->lease_pid = my_pid();
        mp__buf_free(&req);
        mp_value_free(reply);
        mp__err_mute();
        mp_connection_free(c);
        mp__err_unmute();
    }
    if (cl->lease_kind == LEASE_HELD) memcpy(lease, cl->lease, sizeof cl->lease);
    mp__os_mutex_unlock(cl->mu);
}

/* This thread's connection to cl's manager, made (and accepted) on first use. */
static int thread_conn(mp__mclient *cl, double deadline, mp_connection **out, bool *fresh) {
    trec *r = rec_get();
    if (!r) return MP_ENOMEM;
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].gen == cl->gen) {
            *out = r->v[i].c;
            *fresh = false;
            return 0;
        }
    *fresh = true;
    sweep_own();
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 4;
        tconn *v = mp__realloc(r->v, cap * sizeof *v);
        if (!v) return mp__err(MP_ENOMEM, "manager: out of memory");
        r->v = v;
        r->cap = cap;
    }
    mp_connection *c = NULL;
    int rc = connect_to(cl, deadline, &c);
    mp__buf req = {0};
    mp_value *args = NULL, *reply = NULL, *res = NULL;
    if (!rc) {
        char name[64], lease[24];
        snprintf(name, sizeof name, "Thread-%" PRId64, mp__os_thread_id());
        mp__mclient_lease(cl, mp__left(deadline), lease);
        args = mp_value_tuple_new();
        if (!args || mp_value_list_append(args, mp_value_str(name)) ||
            (lease[0] && mp_value_list_append(args, mp_value_str(lease))))
            rc = mp__err(MP_ENOMEM, "manager: out of memory");
    }
    if (!rc) rc = mp__mwire_request(&req, NULL, "accept_connection", args, NULL);
    if (!rc) rc = roundtrip(c, &req, deadline, &reply);
    if (!rc) rc = take_reply(reply, "accept_connection", false, NULL, &res);
    mp__buf_free(&req);
    mp_value_free(args);
    mp_value_free(reply);
    mp_value_free(res);
    if (rc) {
        mp_connection_free(c);
        return rc;
    }
    mp_connection_set_buffered(c, true); /* a reply in one read */
    mp__lock();
    r->v[r->n++] = (tconn){cl->gen, c};
    mp__unlock();
    *out = c;
    return 0;
}

/* Closes this thread's connection to cl (after a failure: the next call reconnects). */
static void thread_conn_drop(const mp__mclient *cl) {
    trec *r = tl_rec;
    if (!r) return;
    mp__lock();
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].gen == cl->gen) {
            rec_close(r, i);
            break;
        }
    mp__unlock();
}

/* ---- proxies ---- */

struct mp_proxy {
    mp__mclient *cl;
    char *type_id, *id;
    mp_value *exposed;
    double timeout;
    struct mp_proxy *prev, *next; /* the live proxies, under mp__lock */
    int64_t pid;                  /* the process whose reference it holds */
    bool released;                /* its reference was given back at exit */
    char lease[24];               /* the lease its reference is under ("": none) */
};

static mp_proxy *g_proxies; /* under mp__lock */

/* At a process's exit, the references its proxies hold go back (CPython's proxy
 * finalizers): a child that ends without freeing its proxies does not keep the objects
 * alive. A fork child's copies of its parent's proxies hold no reference. */
static void release_all(void) {
    int64_t me = my_pid();
    for (;;) {
        mp_proxy *p = NULL;
        mp__lock();
        for (mp_proxy *q = g_proxies; q; q = q->next)
            if (!q->released && q->pid == me && !q->lease[0]) {
                q->released = true;
                p = q;
                break;
            }
        mp__unlock();
        if (!p) break;
        mp__err_mute();
        public_call_id(p->cl, 2.0, "decref", p->id, "");
        mp__err_unmute();
    }
}

/* A proxy that owns one server reference to (type_id, id); on failure the reference is
 * given back. exposed is taken. */
int mp__mproxy_new(mp__mclient *cl, double timeout, const char *type_id, const char *id,
                   const char *lease, mp_value *exposed, mp_proxy **out) {
    *out = NULL;
    mp_proxy *p = mp__calloc(1, sizeof *p);
    if (p) {
        p->type_id = mp__strdup(type_id);
        p->id = mp__strdup(id);
    }
    if (!p || !p->type_id || !p->id) {
        if (p) {
            mp__free(p->type_id);
            mp__free(p->id);
            mp__free(p);
        }
        mp_value_free(exposed);
        mp__err_mute();
        public_call_id(cl, timeout, "decref", id, lease);
        mp__err_unmute();
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    mp__exit_hook_add(release_all);
    p->pid = my_pid();
    mp__lock();
    cl->refs++;
    p->next = g_proxies;
    if (g_proxies) g_proxies->prev = p;
    g_proxies = p;
    mp__unlock();
    p->cl = cl;
    snprintf(p->lease, sizeof p->lease, "%s", lease);
    p->exposed = exposed ? exposed : mp_value_tuple_new();
    p->timeout = timeout;
    *out = p;
    return 0;
}

void mp_proxy_free(mp_proxy *p) {
    if (!p) return;
    mp__lock();
    if (p->prev)
        p->prev->next = p->next;
    else
        g_proxies = p->next;
    if (p->next) p->next->prev = p->prev;
    bool owned = !p->released && p->pid == my_pid();
    mp__unlock();
    mp__err_mute();
    if (owned) public_call_id(p->cl, p->timeout > 0 ? p->timeout : 30.0, "decref", p->id, p->lease);
    mp__err_unmute();
    mp__mclient_put(p->cl);
    mp__free(p->type_id);
    mp__free(p->id);
    mp_value_free(p->exposed);
    mp__free(p);
}

const char *mp_proxy_typeid(const mp_proxy *p) { return p ? p->type_id : NULL; }
const char *mp_proxy_id(const mp_proxy *p) { return p ? p->id : NULL; }

int mp_proxy_exposed(const mp_proxy *p, mp_value **out) {
    if (out) *out = NULL;
    if (!p || !out) return mp__err(MP_EINVAL, "mp_proxy_exposed: NULL argument");
    *out = mp_value_copy(p->exposed);
    return *out ? 0 : mp__err(MP_ENOMEM, "manager: out of memory");
}

/* A proxy for a '#PROXY' answer (exposed, token): it takes the reference the server
 * made for it. */
static int proxy_from_answer(mp_proxy *via, mp_value *ans, mp_proxy **out) {
    mp_value *tok = mp_value_item(ans, 1);
    char *type_id = NULL, *addr = NULL, *id = NULL;
    if (mp_value_get_type(ans) != MP_VALUE_TUPLE || mp_value_len(ans) != 2)
        return mp__err(MP_EPROTO, "manager: a '#PROXY' answer is (exposed, token)");
    int rc = mp__mtoken_parse(tok, &type_id, &addr, &id);
    if (!rc) {
        mp_value *exposed = mp_value_copy(mp_value_item(ans, 0));
        /* The token's address is the server's own view; ours reached it (as CPython). */
        /* The reference is under the lease this thread's connection was accepted with. */
        char lease[24];
        mp__mclient_lease(via->cl, via->timeout, lease);
        rc = mp__mproxy_new(via->cl, via->timeout, type_id, id, lease, exposed, out);
    }
    mp__free(type_id);
    mp__free(addr);
    mp__free(id);
    return rc;
}

static int call(mp_proxy *p, const char *method, const mp_value *args, const mp_value *kwds,
                bool proxy_ok, bool *is_proxy, mp_value **result) {
    double deadline = deadline_of(p->timeout);
    mp__buf req = {0};
    int rc = mp__mwire_request(&req, p->id, method, args, kwds);
    mp_value *reply = NULL;
    for (int attempt = 0; !rc; attempt++) {
        mp_connection *c = NULL;
        bool fresh = false;
        rc = thread_conn(p->cl, deadline, &c, &fresh);
        if (rc) break;
        rc = roundtrip(c, &req, deadline, &reply);
        if (!rc) break;
        /* A lost connection or a reply that may still come: the next call reconnects. */
        thread_conn_drop(p->cl);
        /* A kept connection the server closed while it was idle (idle timeout, room for
         * others): it read nothing from it, so the call is sent again, once. */
        if (rc != MP_EPIPE || fresh || attempt) break;
        rc = 0;
    }
    mp__buf_free(&req);
    if (!rc) rc = take_reply(reply, method, proxy_ok, is_proxy, result);
    mp_value_free(reply);
    return rc;
}

static int check_call(const mp_proxy *p, const char *method, const mp_value *args,
                      const mp_value *kwds, const char *fn) {
    if (!p || !method) return mp__err(MP_EINVAL, "%s: NULL argument", fn);
    if (args && mp_value_get_type(args) != MP_VALUE_TUPLE)
        return mp__err(MP_EINVAL, "%s: args must be a tuple", fn);
    if (kwds && mp_value_get_type(kwds) != MP_VALUE_DICT)
        return mp__err(MP_EINVAL, "%s: kwds must be a dict", fn);
    return 0;
}

int mp_proxy_call(mp_proxy *p, const char *method, const mp_value *args, const mp_value *kwds,
                  mp_value **result) {
    if (result) *result = NULL;
    int rc = check_call(p, method, args, kwds, "mp_proxy_call");
    if (rc) return rc;
    mp_value *res = NULL;
    bool is_proxy = false;
    rc = call(p, method, args, kwds, true, &is_proxy, &res);
    if (!rc && is_proxy) {
        /* Take the reference the server made, then give it back. */
        mp_proxy *tmp = NULL;
        if (!proxy_from_answer(p, res, &tmp)) mp_proxy_free(tmp);
        mp_value_free(res);
        return mp__err(MP_EINVAL, "%s returns a proxy: call it with mp_proxy_call_proxy", method);
    }
    if (rc) return rc;
    if (result)
        *result = res;
    else
        mp_value_free(res);
    return 0;
}

int mp_proxy_call_proxy(mp_proxy *p, const char *method, const mp_value *args, const mp_value *kwds,
                        mp_proxy **out) {
    if (out) *out = NULL;
    int rc = check_call(p, method, args, kwds, "mp_proxy_call_proxy");
    if (!rc && !out) rc = mp__err(MP_EINVAL, "mp_proxy_call_proxy: out is NULL");
    if (rc) return rc;
    mp_value *res = NULL;
    bool is_proxy = false;
    rc = call(p, method, args, kwds, true, &is_proxy, &res);
    if (rc) return rc;
    if (is_proxy)
        rc = proxy_from_answer(p, res, out);
    else if (mp_value_is_proxy(res))
        rc = mp_proxy_from_value(res, p->cl->key, p->cl->keylen, out);
    else
        rc = mp__err(MP_EINVAL, "%s returned a %s, not a proxy", method,
                     mp_value_type_name(mp_value_get_type(res)));
    mp_value_free(res);
    return rc;
}

int mp_proxy_getvalue(mp_proxy *p, mp_value **out) {
    if (out) *out = NULL;
    if (!out) return mp__err(MP_EINVAL, "mp_proxy_getvalue: out is NULL");
    return mp_proxy_call(p, "#GETVALUE", NULL, NULL, out);
}

/* ---- proxies as values: CPython's pickled proxy ---- */

static const struct {
    const char *type_id, *cls;
} k_proxy_cls[] = {
    {"dict", "DictProxy"},
    {"list", "ListProxy"},
    {"Namespace", "NamespaceProxy"},
    {"Value", "ValueProxy"},
    {"Iterator", "IteratorProxy"},
    {"Lock", "AcquirerProxy"},
    {"RLock", "AcquirerProxy"},
    {"Semaphore", "AcquirerProxy"},
    {"BoundedSemaphore", "AcquirerProxy"},
    {"Event", "EventProxy"},
};

int mp_proxy_to_value(const mp_proxy *p, mp_value **out) {
    if (out) *out = NULL;
    if (!p || !out) return mp__err(MP_EINVAL, "mp_proxy_to_value: NULL argument");
    const char *cls = "AutoProxy";
    for (size_t i = 0; i < sizeof k_proxy_cls / sizeof k_proxy_cls[0]; i++)
        if (strcmp(k_proxy_cls[i].type_id, p->type_id) == 0) cls = k_proxy_cls[i].cls;
    mp_value *kw = mp_value_dict_new();
    mp_value *args = mp_value_tuple_new();
    bool ok = kw && args;
    if (ok && strcmp(cls, "AutoProxy") == 0)
        ok = !mp_value_dict_set_str(kw, "exposed", mp_value_copy(p->exposed));
    ok = ok &&
         !mp_value_list_append(args, mp_value_object_new("multiprocessing.managers", cls, NULL));
    ok = ok && !mp_value_list_append(args, mp__mtoken_new(p->type_id, p->cl->address, p->id));
    ok = ok && !mp_value_list_append(args, mp_value_str("pickle"));
    if (ok) {
        ok = !mp_value_list_append(args, kw);
        kw = NULL;
    }
    if (!ok) {
        mp_value_free(kw);
        mp_value_free(args);
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    *out = mp_value_object_new("multiprocessing.managers", "RebuildProxy", args);
    return *out ? 0 : mp__err(MP_ENOMEM, "manager: out of memory");
}

bool mp_value_is_proxy(const mp_value *v) {
    const char *mod = mp_value_object_module(v);
    const mp_value *a = mp_value_object_args(v);
    return mod && strcmp(mod, "multiprocessing.managers") == 0 &&
           strcmp(mp_value_object_name(v), "RebuildProxy") == 0 && mp_value_len(a) == 4 &&
           mp_value_object_name(mp_value_item(a, 1)) &&
           strcmp(mp_value_object_name(mp_value_item(a, 1)), "Token") == 0;
}

/* A proxy with a reference of its own to (type_id, id) at address: incref, as CPython's
 * proxies do when unpickled. */
static int proxy_attach(const char *address, const void *key, size_t keylen, double timeout,
                        const char *type_id, const char *id, mp_value *exposed, mp_proxy **out) {
    mp__mclient *cl = mp__mclient_get(address, key, keylen);
    if (!cl) {
        mp_value_free(exposed);
        return MP_ENOMEM;
    }
    char lease[24];
    mp__mclient_lease(cl, timeout > 0 ? timeout : 30.0, lease);
    int rc = public_call_id(cl, timeout > 0 ? timeout : 30.0, "incref", id, lease);
    if (!rc)
        rc = mp__mproxy_new(cl, timeout, type_id, id, lease, exposed, out);
    else
        mp_value_free(exposed);
    mp__mclient_put(cl);
    return rc;
}

int mp_proxy_from_value(const mp_value *v, const void *authkey, size_t authkey_len,
                        mp_proxy **out) {
    if (out) *out = NULL;
    if (!v || !out) return mp__err(MP_EINVAL, "mp_proxy_from_value: NULL argument");
    if (!mp_value_is_proxy(v)) return mp__err(MP_EINVAL, "mp_proxy_from_value: not a proxy");
    const mp_value *a = mp_value_object_args(v);
    char *type_id, *addr, *id;
    int rc = mp__mtoken_parse(mp_value_item(a, 1), &type_id, &addr, &id);
    if (rc) return rc;
    const mp_value *ex = mp_value_dict_get_str(mp_value_item(a, 3), "exposed");
    if (!authkey) {
        authkey = mp__authkey();
        authkey_len = MP_AUTHKEY_LEN;
    }
    rc = proxy_attach(addr, authkey, authkey_len, 0, type_id, id, ex ? mp_value_copy(ex) : NULL,
                      out);
    mp__free(type_id);
    mp__free(addr);
    mp__free(id);
    return rc;
}

/* ---- proxies in a process's arguments ---- */

static size_t proxy_handle_count(const void *obj) {
    (void)obj;
    return 0;
}

static int proxy_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    (void)handles, (void)nh;
    const mp_proxy *p = obj;
    mp__buf_str(b, p->cl->address);
    mp__buf_blob(b, p->cl->key, p->cl->keylen);
    mp__buf_str(b, p->type_id);
    mp__buf_str(b, p->id);
    mp__buf_u64(b, (uint64_t)(p->timeout * 1e6));
    void *ex = NULL;
    size_t exn = 0;
    int rc = mp_value_dumps(p->exposed, &ex, &exn);
    if (!rc) mp__buf_blob(b, ex, exn);
    mp_value_buf_free(ex);
    return rc ? rc : b->err ? mp__err(MP_ENOMEM, "manager: out of memory") : 0;
}

static int proxy_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    (void)handles, (void)nh;
    char *addr = mp__rd_str(r);
    size_t keylen = 0, exn = 0;
    const void *key = mp__rd_blob(r, &keylen);
    char *type_id = mp__rd_str(r), *id = mp__rd_str(r);
    double timeout = (double)mp__rd_u64(r) / 1e6;
    const void *ex = mp__rd_blob(r, &exn);
    mp_value *exposed = NULL;
    int rc = r->err || !addr || !type_id || !id ? mp__err(MP_EPROTO, "proxy: malformed description")
                                                : mp_value_loads(ex, exn, NULL, &exposed);
    mp_proxy *p = NULL;
    if (!rc) {
        rc = proxy_attach(addr, key, keylen, timeout, type_id, id, exposed, &p);
        if (rc) rc = mp__err_wrap(rc, "a proxy to %s %s in the arguments", type_id, id);
    }
    mp__free(addr);
    mp__free(type_id);
    mp__free(id);
    *out = p;
    return rc;
}

static void proxy_objfree(void *obj) { mp_proxy_free(obj); }

const mp__objtype mp__objtype_proxy = {
    .name = "proxy",
    .handle_count = proxy_handle_count,
    .reduce = proxy_reduce,
    .rebuild = proxy_rebuild,
    .free = proxy_objfree,
};

int mp_args_add_proxy(mp_args *a, mp_proxy *p) {
    if (!a || !p) return mp__err(MP_EINVAL, "mp_args_add_proxy: NULL argument");
    return mp__args_add_object(a, &mp__objtype_proxy, p);
}

mp_proxy *mp_args_proxy(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__objtype_proxy);
}

/* ---- shorthands ---- */

/* args built from up to three values (copied; NULL ends the list). */
mp_value *mp__mtuple_of(const mp_value *a, const mp_value *b, const mp_value *c) {
    mp_value *t = mp_value_tuple_new();
    const mp_value *in[3] = {a, b, c};
    for (int i = 0; t && i < 3 && in[i]; i++)
        if (mp_value_list_append(t, mp_value_copy(in[i]))) {
            mp_value_free(t);
            t = NULL;
        }
    if (!t) mp__err(MP_ENOMEM, "manager: out of memory");
    return t;
}

static int call_with(mp_proxy *p, const char *method, const mp_value *a, const mp_value *b,
                     const mp_value *c, mp_value **out) {
    if (!p) return mp__err(MP_EINVAL, "%s: proxy is NULL", method);
    mp_value *args = mp__mtuple_of(a, b, c);
    if (!args) return MP_ENOMEM;
    int rc = mp_proxy_call(p, method, args, NULL, out);
    mp_value_free(args);
    return rc;
}

int mp_proxy_setitem(mp_proxy *p, const mp_value *key, const mp_value *val) {
    if (!key || !val) return mp__err(MP_EINVAL, "mp_proxy_setitem: NULL argument");
    return call_with(p, "__setitem__", key, val, NULL, NULL);
}

int mp_proxy_getitem(mp_proxy *p, const mp_value *key, mp_value **out) {
    if (out) *out = NULL;
    if (!key || !out) return mp__err(MP_EINVAL, "mp_proxy_getitem: NULL argument");
    return call_with(p, "__getitem__", key, NULL, NULL, out);
}

int mp_proxy_delitem(mp_proxy *p, const mp_value *key) {
    if (!key) return mp__err(MP_EINVAL, "mp_proxy_delitem: NULL argument");
    return call_with(p, "__delitem__", key, NULL, NULL, NULL);
}

int mp_proxy_len(mp_proxy *p, size_t *n) {
    if (n) *n = 0;
    if (!n) return mp__err(MP_EINVAL, "mp_proxy_len: NULL argument");
    mp_value *v = NULL;
    int rc = call_with(p, "__len__", NULL, NULL, NULL, &v);
    if (!rc) *n = (size_t)mp_value_as_int(v);
    mp_value_free(v);
    return rc;
}

int mp_proxy_append(mp_proxy *p, const mp_value *v) {
    if (!v) return mp__err(MP_EINVAL, "mp_proxy_append: NULL argument");
    return call_with(p, "append", v, NULL, NULL, NULL);
}

int mp_proxy_getattr(mp_proxy *p, const char *name, mp_value **out) {
    if (out) *out = NULL;
    if (!name || !out) return mp__err(MP_EINVAL, "mp_proxy_getattr: NULL argument");
    mp_value *n = mp_value_str(name);
    int rc = n ? call_with(p, "__getattribute__", n, NULL, NULL, out) : MP_ENOMEM;
    mp_value_free(n);
    return rc;
}

int mp_proxy_setattr(mp_proxy *p, const char *name, const mp_value *v) {
    if (!name || !v) return mp__err(MP_EINVAL, "mp_proxy_setattr: NULL argument");
    mp_value *n = mp_value_str(name);
    int rc = n ? call_with(p, "__setattr__", n, v, NULL, NULL) : MP_ENOMEM;
    mp_value_free(n);
    return rc;
}

int mp_proxy_get(mp_proxy *p, mp_value **out) {
    if (out) *out = NULL;
    if (!out) return mp__err(MP_EINVAL, "mp_proxy_get: NULL argument");
    return call_with(p, "get", NULL, NULL, NULL, out);
}

int mp_proxy_set(mp_proxy *p, const mp_value *v) {
    if (!v) return mp__err(MP_EINVAL, "mp_proxy_set: NULL argument");
    return call_with(p, "set", v, NULL, NULL, NULL);
}

/* Python's (block, timeout) for a timeout in our convention. */
static int block_timeout(double timeout, mp_value **block, mp_value **tmo) {
    bool forever = mp__forever(timeout);
    *block = mp_value_bool(timeout > 0);
    *tmo = forever || timeout <= 0 ? mp_value_none() : mp_value_float(timeout);
    if (!*block || !*tmo) {
        mp_value_free(*block);
        mp_value_free(*tmo);
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    return 0;
}

/* The proxy's own timeout must outlast a blocking call's: the call gets its timeout
 * plus the proxy's. */
static int call_blocking(mp_proxy *p, const char *method, const mp_value *a, double timeout,
                         mp_value **out) {
    mp_value *block, *tmo;
    int rc = block_timeout(timeout, &block, &tmo);
    if (rc) return rc;
    double saved = p->timeout;
    mp_proxy q = *p;
    if (saved > 0) q.timeout = mp__forever(timeout) ? 0 : saved + (timeout > 0 ? timeout : 0);
    rc = a ? call_with(&q, method, a, block, tmo, out)
           : call_with(&q, method, block, tmo, NULL, out);
    mp_value_free(block);
    mp_value_free(tmo);
    return rc;
}

int mp_proxy_put(mp_proxy *p, const mp_value *v, double timeout) {
    if (!p || !v) return mp__err(MP_EINVAL, "mp_proxy_put: NULL argument");
    return call_blocking(p, "put", v, timeout, NULL);
}

int mp_proxy_get_item(mp_proxy *p, double timeout, mp_value **out) {
    if (out) *out = NULL;
    if (!p || !out) return mp__err(MP_EINVAL, "mp_proxy_get_item: NULL argument");
    return call_blocking(p, "get", NULL, timeout, out);
}

int mp_proxy_acquire(mp_proxy *p, double timeout, bool *acquired) {
    if (acquired) *acquired = false;
    if (!p || !acquired) return mp__err(MP_EINVAL, "mp_proxy_acquire: NULL argument");
    /* As Python's AcquirerProxy: (blocking,) or (True, timeout): Lock.acquire takes no
     * None timeout, and no timeout at all when not blocking. */
    bool forever = mp__forever(timeout), block = timeout > 0;
    mp_value *b = mp_value_bool(block);
    mp_value *t = block && !forever ? mp_value_float(timeout) : NULL;
    if (!b || (block && !forever && !t)) {
        mp_value_free(b);
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    mp_proxy q = *p;
    if (p->timeout > 0) q.timeout = forever ? 0 : p->timeout + (block ? timeout : 0);
    mp_value *v = NULL;
    int rc = call_with(&q, "acquire", b, t, NULL, &v);
    if (!rc) *acquired = mp_value_as_bool(v);
    mp_value_free(v);
    mp_value_free(b);
    mp_value_free(t);
    return rc;
}

int mp_proxy_release(mp_proxy *p) { return call_with(p, "release", NULL, NULL, NULL, NULL); }
