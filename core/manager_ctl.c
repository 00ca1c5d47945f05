/* The manager object (CPython's BaseManager, SyncManager, SharedMemoryManager): its
 * options and registry, the server process it starts and that process's target, connect,
 * serve_forever, shutdown, and the calls that create objects (core/manager.c has the
 * clients and proxies these stand on). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager_client.h"
#include "manager_types.h"
#include "os_shm.h"

#define START_WAIT 120.0 /* a server process has this long to listen (Wine, spawn) */

/* SyncManager's typeids (core/manager_types.c, core/manager_sync.c). */
static const mp_manager_type *const k_sync_types[] = {
    &mp__mtype_dict,  &mp__mtype_list,      &mp__mtype_iter,      &mp__mtype_namespace,
    &mp__mtype_value, &mp__mtype_array,     &mp__mtype_queue,     &mp__mtype_joinable_queue,
    &mp__mtype_lock,  &mp__mtype_rlock,     &mp__mtype_semaphore, &mp__mtype_bsemaphore,
    &mp__mtype_event, &mp__mtype_condition, &mp__mtype_barrier,
};

int mp__mreg_add_sync(mp__mreg *r) {
    for (size_t i = 0; i < sizeof k_sync_types / sizeof k_sync_types[0]; i++) {
        if (mp__mreg_find(r, k_sync_types[i]->type_id)) continue;
        int rc = mp__mreg_add(r, k_sync_types[i]);
        if (rc) return rc;
    }
    return 0;
}

/* ---- managers ---- */

enum { M_NEW, M_STARTED, M_CONNECTED, M_SERVING, M_DONE };

struct mp_manager {
    mp_context *ctx;
    mp__mreg reg;
    char *address; /* where it listens (after start, connect or serve) */
    char *want;    /* the address asked for */
    mp_family family;
    unsigned char *key;
    size_t keylen;
    int (*initializer)(mp_args *);
    mp_args *initargs;
    int max_conns;
    double idle, timeout;
    mp_process *proc;
    mp__mclient *cl;
    int state;
    bool shm; /* a SharedMemoryManager */
};

int mp_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out) {
    if (out) *out = NULL;
    if (!out) return mp__err(MP_EINVAL, "mp_manager_new: out is NULL");
    mp_manager_opts o = opts ? *opts : (mp_manager_opts){0};
    if (o.authkey_len && !o.authkey)
        return mp__err(MP_EINVAL, "mp_manager_new: authkey_len without authkey");
    if (o.timeout < 0 || o.idle_timeout < 0 || o.max_connections < 0)
        return mp__err(MP_EINVAL, "mp_manager_new: negative timeout or limit");
    if (!ctx) {
        int rc = 0;
        ctx = mp_get_context(NULL);
        if (!ctx) rc = MP_ESTATE;
        if (rc) return rc;
    }
    mp_manager *m = mp__calloc(1, sizeof *m);
    if (!m) return mp__err(MP_ENOMEM, "manager: out of memory");
    m->ctx = ctx;
    m->family = o.family;
    m->initializer = o.initializer;
    m->max_conns = o.max_connections;
    m->idle = o.idle_timeout;
    m->timeout = mp__forever(o.timeout) ? 0 : o.timeout;
    const void *key = o.authkey ? o.authkey : mp__authkey();
    m->keylen = o.authkey ? o.authkey_len : MP_AUTHKEY_LEN;
    m->key = mp__malloc(m->keylen ? m->keylen : 1);
    int rc = m->key ? 0 : mp__err(MP_ENOMEM, "manager: out of memory");
    if (!rc) memcpy(m->key, key, m->keylen);
    if (!rc && o.address && !(m->want = mp__strdup(o.address)))
        rc = mp__err(MP_ENOMEM, "manager: out of memory");
    if (!rc && o.initargs) rc = mp__args_copy(o.initargs, &m->initargs);
    if (rc) {
        mp_manager_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int mp_sync_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out) {
    int rc = mp_manager_new(ctx, opts, out);
    if (!rc) rc = mp__mreg_add_sync(&(*out)->reg);
    if (rc && out && *out) {
        mp_manager_free(*out);
        *out = NULL;
    }
    return rc;
}

int mp_manager_register(mp_manager *m, const mp_manager_type *type) {
    if (!m || !type) return mp__err(MP_EINVAL, "mp_manager_register: NULL argument");
    if (m->state != M_NEW)
        return mp__err(MP_ESTATE, "mp_manager_register: register before start or serve");
    /* Functions must travel to the server: check now, not in the child. */
    void *fns[3] = {(void *)type->create, (void *)type->free, (void *)type->getvalue};
    for (size_t i = 0; i < 3 + type->nmethods; i++) {
        void *fn = i < 3 ? fns[i] : (type->methods ? (void *)type->methods[i - 3].fn : NULL);
        if (!fn) continue;
        mp__fnref ref = {0};
        int rc = mp__os_fn_to_ref(fn, &ref);
        mp__fnref_clear(&ref);
        if (rc)
            return mp__err_wrap(rc, "mp_manager_register: type %s",
                                type->type_id ? type->type_id : "?");
    }
    return mp__mreg_add(&m->reg, type);
}

const char *mp_manager_address(const mp_manager *m) { return m ? m->address : NULL; }

static int attach_client(mp_manager *m, const char *address) {
    m->address = mp__strdup(address);
    m->cl = m->address ? mp__mclient_get(address, m->key, m->keylen) : NULL;
    if (!m->cl) {
        mp__free(m->address);
        m->address = NULL;
        return mp__err(MP_ENOMEM, "manager: out of memory");
    }
    return 0;
}

/* The configuration a server process receives. */
static int encode_cfg(const mp_manager *m, mp__buf *b) {
    mp__buf_str(b, m->want);
    mp__buf_u8(b, (uint8_t)m->family);
    mp__buf_blob(b, m->key, m->keylen);
    mp__buf_u32(b, (uint32_t)m->max_conns);
    mp__buf_u64(b, (uint64_t)(m->idle * 1e6));
    mp__buf_u8(b, m->shm);
    mp__buf_u8(b, m->initializer != NULL);
    if (m->initializer) {
        mp__fnref ref = {0};
        int rc = mp__os_fn_to_ref((void *)m->initializer, &ref);
        if (rc) return mp__err_wrap(rc, "manager initializer");
        mp__buf_str(b, ref.module);
        mp__buf_u64(b, ref.offset);
        mp__buf_str(b, ref.build);
        mp__fnref_clear(&ref);
    }
    int rc = mp__mreg_encode(&m->reg, b);
    return rc ? rc : b->err ? mp__err(MP_ENOMEM, "manager: out of memory") : 0;
}

/* Sends the server's state to its parent: ("ok", address) or ("error", code, message). */
static void report(mp_connection *c, int rc, const char *address) {
    mp_value *t = mp_value_tuple_new();
    if (!t) return;
    if (!rc) {
        mp_value_list_append(t, mp_value_str("ok"));
        mp_value_list_append(t, mp_value_str(address));
    } else {
        mp_value_list_append(t, mp_value_str("error"));
        mp_value_list_append(t, mp_value_int(rc));
        mp_value_list_append(t, mp_value_str(mp_last_error_message()));
    }
    mp__err_mute();
    mp_connection_send(c, t);
    mp__err_unmute();
    mp_value_free(t);
}

/* The server process's target: [0] connection to report on, [1] configuration,
 * [2...] the initializer's arguments. */
static int server_main(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    size_t n = 0;
    const void *cfg = mp_args_bytes(a, 1, &n);
    if (!c || !cfg) return 3;
    mp__rd r = {cfg, n, 0};
    mp__mserver_cfg sc = {0};
    mp__mreg reg = {0};
    char *want = mp__rd_str(&r);
    sc.address = want;
    sc.family = (mp_family)mp__rd_u8(&r);
    sc.key = mp__rd_blob(&r, &sc.keylen);
    sc.max_conns = (int)mp__rd_u32(&r);
    sc.idle = (double)mp__rd_u64(&r) / 1e6;
    sc.shm = mp__rd_u8(&r) != 0;
    int rc = 0;
    void *init = NULL;
    if (mp__rd_u8(&r)) {
        mp__fnref ref = {0};
        ref.module = mp__rd_str(&r);
        ref.offset = mp__rd_u64(&r);
        ref.build = mp__rd_str(&r);
        rc = r.err ? mp__err(MP_EPROTO, "manager: malformed configuration")
                   : mp__os_ref_to_fn(&ref, &init);
        mp__fnref_clear(&ref);
    }
    if (!rc) rc = mp__mreg_decode(&r, &reg);
    if (!rc && r.err) rc = mp__err(MP_EPROTO, "manager: malformed configuration");
    if (!rc && init) {
        mp_args *tail = NULL;
        rc = mp__args_split(a, 2, &tail);
        if (!rc) {
            int irc = ((int (*)(mp_args *))init)(tail);
            if (irc)
                rc = mp__err(irc < 0 ? irc : MP_ECHILD, "manager initializer failed (%d)", irc);
        }
        mp_args_free(tail);
    }
    mp__mserver *s = NULL;
    if (!rc)
        rc = mp__mserver_new(&sc, &reg, &s);
    else
        mp__mreg_clear(&reg);
    report(c, rc, s ? mp__mserver_address(s) : NULL);
    mp_connection_close(c);
    mp__free(want);
    if (rc) return 1;
    mp__mserver_run(s);
    mp__mserver_free(s);
    return 0;
}

int mp_manager_start(mp_manager *m) {
    if (!m) return mp__err(MP_EINVAL, "mp_manager_start: manager is NULL");
    if (m->state != M_NEW)
        return mp__err(MP_ESTATE, "mp_manager_start: started or connected before");
    mp_connection *r = NULL, *w = NULL;
    mp_args *a = NULL;
    mp__buf cfg = {0};
    mp_value *rep = NULL;
    int rc = encode_cfg(m, &cfg);
    if (!rc) rc = mp_pipe(false, &r, &w);
    if (!rc) rc = mp_args_new(&a);
    if (!rc) rc = mp_args_add_connection(a, w);
    if (!rc) rc = mp_args_add_bytes(a, cfg.data, cfg.len);
    if (!rc && m->initargs) rc = mp__args_extend(a, m->initargs);
    mp_process_opts po = {.target = server_main, .name = "SyncManager", .args = a, .daemon = true};
    if (!rc) rc = mp_process_new(m->ctx, &po, &m->proc);
    if (!rc) rc = mp_process_start(m->proc);
    mp_args_free(a);
    mp_connection_free(w);
    w = NULL;
    bool ready = false;
    if (!rc) rc = mp_connection_poll(r, START_WAIT, &ready);
    if (!rc && !ready)
        rc = mp__err(MP_ECHILD, "manager: the server did not listen in %.0f s", START_WAIT);
    if (!rc && mp_connection_recv(r, &rep) != 0) {
        int code = 0;
        mp__err_mute();
        mp_process_join(m->proc, 5.0);
        mp_process_exitcode(m->proc, &code);
        mp__err_unmute();
        rc = mp__err(MP_ECHILD,
                     "manager: the server process ended (exit code %d) before it listened", code);
    }
    if (!rc) {
        const char *kind = mp_value_as_str(mp_value_item(rep, 0), NULL);
        const char *addr = mp_value_as_str(mp_value_item(rep, 1), NULL);
        if (kind && strcmp(kind, "ok") == 0 && addr)
            rc = attach_client(m, addr);
        else
            rc = mp__err(MP_ECHILD, "manager: the server could not start: %s",
                         mp_value_as_str(mp_value_item(rep, 2), NULL)
                             ? mp_value_as_str(mp_value_item(rep, 2), NULL)
                             : "no reason given");
    }
    mp_value_free(rep);
    mp_connection_free(r);
    mp__buf_free(&cfg);
    if (rc && m->proc) {
        mp__err_mute();
        if (mp_process_join(m->proc, 1.0) != 0) {
            mp_process_kill(m->proc);
            mp_process_join(m->proc, MP_FOREVER);
        }
        mp__err_unmute();
        mp_process_free(m->proc);
        m->proc = NULL;
    }
    if (!rc) m->state = M_STARTED;
    return rc;
}

int mp_manager_connect(mp_manager *m) {
    if (!m) return mp__err(MP_EINVAL, "mp_manager_connect: manager is NULL");
    if (m->state != M_NEW)
        return mp__err(MP_ESTATE, "mp_manager_connect: started or connected before");
    if (!m->want) return mp__err(MP_EINVAL, "mp_manager_connect: no address given");
    int rc = attach_client(m, m->want);
    if (!rc) rc = mp__mpublic_call(m->cl, m->timeout, "dummy", NULL, NULL, NULL);
    if (rc) {
        mp__mclient_put(m->cl);
        m->cl = NULL;
        mp__free(m->address);
        m->address = NULL;
        return rc;
    }
    m->state = M_CONNECTED;
    return 0;
}

int mp_manager_serve_forever(mp_manager *m) {
    if (!m) return mp__err(MP_EINVAL, "mp_manager_serve_forever: manager is NULL");
    if (m->state != M_NEW) return mp__err(MP_ESTATE, "mp_manager_serve_forever: started before");
    mp__mreg reg = {0};
    int rc = 0;
    for (size_t i = 0; !rc && i < m->reg.n; i++) {
        const mp__mtype *t = &m->reg.types[i];
        mp_manager_type ty = {t->type_id, t->create,   t->free,      t->getvalue,
                              t->methods, t->nmethods, t->concurrent};
        rc = mp__mreg_add(&reg, &ty);
    }
    mp__mserver_cfg sc = {.address = m->want,
                          .family = m->family,
                          .key = m->key,
                          .keylen = m->keylen,
                          .max_conns = m->max_conns,
                          .idle = m->idle,
                          .shm = m->shm};
    mp__mserver *s = NULL;
    if (!rc)
        rc = mp__mserver_new(&sc, &reg, &s);
    else
        mp__mreg_clear(&reg);
    if (!rc) rc = attach_client(m, mp__mserver_address(s));
    if (rc) {
        mp__mserver_free(s);
        return rc;
    }
    m->state = M_SERVING;
    mp__mserver_run(s);
    mp__mserver_free(s);
    m->state = M_DONE;
    return 0;
}

int mp_manager_shutdown(mp_manager *m) {
    if (!m) return mp__err(MP_EINVAL, "mp_manager_shutdown: manager is NULL");
    if (m->state != M_STARTED && m->state != M_CONNECTED && m->state != M_SERVING)
        return mp__err(MP_ESTATE, "mp_manager_shutdown: not started");
    mp_log(MP_LOG_INFO, "sending shutdown message to manager");
    int rc =
        mp__mpublic_call(m->cl, m->timeout > 0 ? m->timeout : 10.0, "shutdown", NULL, NULL, NULL);
    /* Unreachable (its socket file removed, say) but in this process: a thread that no
     * signal ends; it is told directly. */
    if (rc && mp__mserver_stop_local(m->address)) rc = 0;
    if (m->proc) {
        /* As CPython: a second to end, then terminate, then kill. */
        mp__err_mute();
        if (mp_process_join(m->proc, rc ? 0.1 : 5.0) != 0) {
            mp_process_terminate(m->proc);
            if (mp_process_join(m->proc, 2.0) != 0) {
                mp_process_kill(m->proc);
                mp_process_join(m->proc, MP_FOREVER);
            }
        }
        mp__err_unmute();
        mp_process_free(m->proc);
        m->proc = NULL;
        rc = 0;
    }
    if (m->state != M_SERVING) m->state = M_DONE;
    return rc;
}

void mp_manager_free(mp_manager *m) {
    if (!m) return;
    if (m->state == M_STARTED) {
        mp__err_mute();
        mp_manager_shutdown(m);
        mp__err_unmute();
    }
    mp__mclient_put(m->cl);
    mp__mreg_clear(&m->reg);
    mp__free(m->address);
    mp__free(m->want);
    if (m->key) memset(m->key, 0, m->keylen);
    mp__free(m->key);
    mp_args_free(m->initargs);
    mp__free(m);
}

static int ready_client(const mp_manager *m, const char *fn) {
    if (!m) return mp__err(MP_EINVAL, "%s: manager is NULL", fn);
    if (!m->cl || m->state == M_DONE)
        return mp__err(MP_ESTATE, "%s: the manager is not started or connected", fn);
    return 0;
}

int mp_manager_number_of_objects(mp_manager *m, size_t *n) {
    if (n) *n = 0;
    int rc = ready_client(m, "mp_manager_number_of_objects");
    if (!rc && !n) rc = mp__err(MP_EINVAL, "mp_manager_number_of_objects: n is NULL");
    mp_value *v = NULL;
    if (!rc) rc = mp__mpublic_call(m->cl, m->timeout, "number_of_objects", NULL, NULL, &v);
    if (!rc) *n = (size_t)mp_value_as_int(v);
    mp_value_free(v);
    return rc;
}

int mp_manager_create(mp_manager *m, const char *type_id, const mp_value *args,
                      const mp_value *kwds, mp_proxy **out) {
    if (out) *out = NULL;
    int rc = ready_client(m, "mp_manager_create");
    if (!rc && (!type_id || !out)) rc = mp__err(MP_EINVAL, "mp_manager_create: NULL argument");
    if (!rc && args && mp_value_get_type(args) != MP_VALUE_TUPLE)
        rc = mp__err(MP_EINVAL, "mp_manager_create: args must be a tuple");
    if (!rc && kwds && mp_value_get_type(kwds) != MP_VALUE_DICT)
        rc = mp__err(MP_EINVAL, "mp_manager_create: kwds must be a dict");
    if (rc) return rc;
    char lease[24];
    mp__mclient_lease(m->cl, m->timeout, lease);
    mp_value *a = mp_value_tuple_new();
    if (!a || (lease[0] && mp_value_list_append(a, mp_value_str(lease))) ||
        mp_value_list_append(a, mp_value_str(type_id)))
        rc = MP_ENOMEM;
    for (size_t i = 0; !rc && i < mp_value_len(args); i++)
        if (mp_value_list_append(a, mp_value_copy(mp_value_item(args, i)))) rc = MP_ENOMEM;
    mp_value *res = NULL;
    if (rc)
        rc = mp__err(MP_ENOMEM, "manager: out of memory");
    else
        rc = mp__mpublic_call(m->cl, m->timeout, lease[0] ? "mp_create" : "create", a, kwds, &res);
    mp_value_free(a);
    if (rc) return mp__err_wrap(rc, "create %s", type_id);
    const char *id = mp_value_as_str(mp_value_item(res, 0), NULL);
    if (mp_value_get_type(res) != MP_VALUE_TUPLE || !id) {
        mp_value_free(res);
        return mp__err(MP_EPROTO, "manager: create answered something else than (id, exposed)");
    }
    rc = mp__mproxy_new(m->cl, m->timeout, type_id, id, lease, mp_value_copy(mp_value_item(res, 1)),
                        out);
    mp_value_free(res);
    return rc;
}

static int create_with(mp_manager *m, const char *type_id, const mp_value *a, const mp_value *b,
                       mp_proxy **out) {
    if (out) *out = NULL;
    mp_value *args = mp__mtuple_of(a, b, NULL);
    if (!args) return MP_ENOMEM;
    int rc = mp_manager_create(m, type_id, args, NULL, out);
    mp_value_free(args);
    return rc;
}

int mp_manager_dict(mp_manager *m, const mp_value *init, mp_proxy **out) {
    return create_with(m, "dict", init, NULL, out);
}

int mp_manager_list(mp_manager *m, const mp_value *init, mp_proxy **out) {
    return create_with(m, "list", init, NULL, out);
}

int mp_manager_namespace(mp_manager *m, mp_proxy **out) {
    return create_with(m, "Namespace", NULL, NULL, out);
}

int mp_manager_value(mp_manager *m, const char *typecode, const mp_value *v, mp_proxy **out) {
    if (out) *out = NULL;
    if (!typecode || !v) return mp__err(MP_EINVAL, "mp_manager_value: NULL argument");
    if (strlen(typecode) != 1 || !mp_typecode_size(typecode[0]))
        return mp__err(MP_EINVAL, "mp_manager_value: unknown typecode '%s'", typecode);
    mp_value *tc = mp_value_str(typecode);
    int rc = tc ? create_with(m, "Value", tc, v, out) : MP_ENOMEM;
    mp_value_free(tc);
    return rc;
}

int mp_manager_queue(mp_manager *m, int maxsize, bool joinable, mp_proxy **out) {
    mp_value *n = mp_value_int(maxsize);
    int rc = n ? create_with(m, joinable ? "JoinableQueue" : "Queue", n, NULL, out) : MP_ENOMEM;
    mp_value_free(n);
    return rc;
}

int mp_manager_sync(mp_manager *m, const char *type_id, int value, mp_proxy **out) {
    if (out) *out = NULL;
    if (!type_id) return mp__err(MP_EINVAL, "mp_manager_sync: type_id is NULL");
    bool sem = strcmp(type_id, "Semaphore") == 0 || strcmp(type_id, "BoundedSemaphore") == 0;
    if (!sem && strcmp(type_id, "Lock") && strcmp(type_id, "RLock") && strcmp(type_id, "Event"))
        return mp__err(MP_EINVAL, "mp_manager_sync: %s is not Lock, RLock, Event or a semaphore",
                       type_id);
    mp_value *v = sem ? mp_value_int(value) : NULL;
    if (sem && !v) return mp__err(MP_ENOMEM, "manager: out of memory");
    int rc = create_with(m, type_id, v, NULL, out);
    mp_value_free(v);
    return rc;
}

/* ---- SharedMemoryManager ---- */

int mp_shared_memory_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out) {
    int rc = mp_manager_new(ctx, opts, out);
    if (!rc) (*out)->shm = true;
    return rc;
}

/* Asks the server to track block name; on failure the block is unlinked. */
static int track(mp_manager *m, const char *name) {
    mp_value *args = mp_value_tuple_new();
    int rc = !args || mp_value_list_append(args, mp_value_str(name))
                 ? mp__err(MP_ENOMEM, "manager: out of memory")
                 : mp__mpublic_call(m->cl, m->timeout, "track_segment", args, NULL, NULL);
    mp_value_free(args);
    if (rc) {
        mp__err_mute();
        if (mp__os_shm_named_unlink(name) == 0) mp__os_shm_unlinked(name, true);
        mp__err_unmute();
    }
    return rc;
}

int mp_manager_shared_memory(mp_manager *m, size_t size, mp_shm **out) {
    if (out) *out = NULL;
    int rc = ready_client(m, "mp_manager_shared_memory");
    if (!rc && !out) rc = mp__err(MP_EINVAL, "mp_manager_shared_memory: out is NULL");
    if (rc) return rc;
    mp_shm_opts o = {.create = true, .size = size};
    mp_shm *shm = NULL;
    rc = mp_shm_open(&o, &shm);
    if (!rc) rc = track(m, mp_shm_name(shm));
    if (rc) {
        mp_shm_free(shm);
        return rc;
    }
    *out = shm;
    return 0;
}

int mp_manager_shareable_list(mp_manager *m, const mp_value *items, mp_shareable_list **out) {
    if (out) *out = NULL;
    int rc = ready_client(m, "mp_manager_shareable_list");
    if (!rc && !out) rc = mp__err(MP_EINVAL, "mp_manager_shareable_list: out is NULL");
    if (rc) return rc;
    mp_shareable_list *l = NULL;
    rc = mp_shareable_list_new(items, NULL, &l);
    if (!rc) rc = track(m, mp_shm_name(mp_shareable_list_shm(l)));
    if (rc) {
        mp_shareable_list_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int mp_manager_list_segments(mp_manager *m, mp_value **out) {
    if (out) *out = NULL;
    int rc = ready_client(m, "mp_manager_list_segments");
    if (!rc && !out) rc = mp__err(MP_EINVAL, "mp_manager_list_segments: out is NULL");
    return rc ? rc : mp__mpublic_call(m->cl, m->timeout, "list_segments", NULL, NULL, out);
}

int mp_manager_release_segment(mp_manager *m, const char *name) {
    int rc = ready_client(m, "mp_manager_release_segment");
    if (!rc && !name) rc = mp__err(MP_EINVAL, "mp_manager_release_segment: name is NULL");
    if (rc) return rc;
    mp_value *args = mp_value_tuple_new();
    rc = !args || mp_value_list_append(args, mp_value_str(name))
             ? mp__err(MP_ENOMEM, "manager: out of memory")
             : mp__mpublic_call(m->cl, m->timeout, "release_segment", args, NULL, NULL);
    mp_value_free(args);
    return rc;
}
