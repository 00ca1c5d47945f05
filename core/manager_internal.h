/* Managers inside the library: the registry of served types, the server, the wire
 * forms shared by server and client (core/manager_wire.c), the builtin SyncManager
 * types (core/manager_types.c). */
#ifndef MP_CORE_MANAGER_INTERNAL_H
#define MP_CORE_MANAGER_INTERNAL_H

#include "internal.h"
#include "os.h"

/* ---- served types (core/manager_wire.c) ---- */

/** A type as a registry keeps it: copies of the names, the user's functions. */
typedef struct mp__mtype {
    char *type_id;
    int (*create)(const mp_value *args, const mp_value *kwds, void **obj);
    void (*free)(void *obj);
    int (*getvalue)(void *obj, mp_value **out);
    mp_manager_method *methods; /* names and typeids are copies */
    size_t nmethods;
    bool concurrent;
} mp__mtype;

typedef struct mp__mreg {
    mp__mtype *types;
    size_t n;
} mp__mreg;

/** Adds a copy of t; MP_EEXIST for a type_id there already, MP_EINVAL for a bad table. */
int mp__mreg_add(mp__mreg *r, const mp_manager_type *t);
const mp__mtype *mp__mreg_find(const mp__mreg *r, const char *type_id);
void mp__mreg_clear(mp__mreg *r);
/** The registry for a server in another process: names, and functions by reference. */
int mp__mreg_encode(const mp__mreg *r, mp__buf *b);
int mp__mreg_decode(mp__rd *rd, mp__mreg *r);

/** In a method of a builtin type: whether the server is stopping (a blocked method
 *  returns then). */
bool mp__mserver_stopping(void);
/** Sleeps on c (with m held) for at most timeout, in slices that notice a stopping
 *  server: 0 (woken, or a slice passed: look again), MP_ETIMEDOUT, MP_ECLOSED. */
int mp__mwait(mp__cond *c, mp__mutex *m, double deadline);

/* ---- the wire (core/manager_wire.c) ---- */

/** A pickled request (ident, method, args, kwds) into b: ident NULL is None; args NULL
 *  is (), kwds NULL is {}. */
int mp__mwire_request(mp__buf *b, const char *ident, const char *method, const mp_value *args,
                      const mp_value *kwds);
/** A pickled reply (kind, v) into b. */
int mp__mwire_reply(mp__buf *b, const char *kind, const mp_value *v);
/** Our address syntax as Python's address value ("h:p" -> (h, p), "@n" -> "\0n"). */
mp_value *mp__maddr_to_py(const char *addr);
/** Python's address value in our syntax (new string), or NULL (MP_EPROTO recorded). */
char *mp__maddr_from_py(const mp_value *v);
/** multiprocessing.managers.Token(type_id, address, id). */
mp_value *mp__mtoken_new(const char *type_id, const char *addr, const char *id);
/** The parts of a Token value (new strings); MP_EPROTO when it is not one. */
int mp__mtoken_parse(const mp_value *tok, char **type_id, char **addr, char **id);
/** An exception value for a method's failure: the class named by exc ("KeyError",
 *  "queue.Empty") or chosen from code, with msg as its argument. */
mp_value *mp__mexc_new(int code, const char *exc, const char *msg);
/** Records an error for a '#ERROR' exception value (code from its class). */
int mp__mexc_error(const mp_value *exc, const char *method);
/** The exception class mp_manager_raise named in this thread, taken (NULL if none). */
const char *mp__mraise_take(void);
/** How long a client waits for an answer, and a server for the next request, by
 *  polling before it sleeps: a round trip whose peer answers within it costs no wakeup
 *  (the two context switches of a sleep are most of a round trip's time). */
#define MP__MSPIN 50e-6
/** Polls c without sleeping for at most budget seconds (not at all on one CPU): true
 *  when it is readable (or failed: the read that follows says why). */
bool mp__mspin(mp_connection *c, double budget);
/** Arguments by position or keyword: args[i], else kwds[name], else NULL (borrowed). */
const mp_value *mp__marg(const mp_value *args, const mp_value *kwds, size_t i, const char *name);
/** Python's block/timeout pair as a deadline: MP_FOREVER, or an absolute time (block
 *  false: now). MP_EINVAL for a negative timeout (Python's ValueError). */
int mp__mdeadline(const mp_value *block, const mp_value *timeout, double *deadline);

/* ---- the server (core/manager_server.c) ---- */

typedef struct mp__mserver mp__mserver;

typedef struct mp__mserver_cfg {
    const char *address; /* NULL: a fresh one of family */
    mp_family family;
    const void *key; /* the authkey (never NULL) */
    size_t keylen;
    int max_conns;
    double idle;
    bool shm; /* a SharedMemoryManager's: tracks blocks, unlinks them at shutdown */
} mp__mserver_cfg;

/** Listens; the registry is the server's from here on (even on failure). */
int mp__mserver_new(const mp__mserver_cfg *cfg, mp__mreg *reg, mp__mserver **out);
const char *mp__mserver_address(const mp__mserver *s);
/** Serves until a client asks for shutdown; then stops every connection and frees the
 *  objects. */
int mp__mserver_run(mp__mserver *s);
void mp__mserver_free(mp__mserver *s);
/** Stops the server at address if it runs in this process (a thread: the dummy
 *  backend, serve_forever); false when none does. */
bool mp__mserver_stop_local(const char *address);
/** For the fuzz harness: this thread's calls behave as on a stopping server (a method
 *  that would block returns at once). */
void mp__mserver_fuzz_mode(mp__mserver *s);
/** What a connection carries: its first request (a public call), then method calls
 *  (after accept_connection) or nothing (a lease), or it is done. */
enum { MP__MCONN_FIRST, MP__MCONN_CALLS, MP__MCONN_LEASE, MP__MCONN_DONE };
typedef struct mp__mconn_state {
    int mode;
    uint64_t lease; /* the client process's lease (C clients), 0: none */
} mp__mconn_state;
/** Answers one request (pickled bytes) of a connection in state st into out (empty:
 *  no reply), and moves st on. Never fails on what the bytes say (a malformed request
 *  gets a '#TRACEBACK' reply); an error is MP_ENOMEM. */
int mp__mserver_request(mp__mserver *s, const void *buf, size_t n, mp__mconn_state *st,
                        mp__buf *out);
/** A lease's connection ended: the references it holds go. */
void mp__mserver_lease_end(mp__mserver *s, uint64_t id);

/** The type of library objects a proxy travels as in process arguments (manager.c). */
extern const mp__objtype mp__objtype_proxy;

#endif
