/* multiproc managers: Python's multiprocessing.managers for C. Included by multiproc.h.
 *
 * A manager is a server process that owns shared objects; other processes (and other
 * machines, over AF_INET) use them through proxies. The protocol is Python's: a C
 * program can use the objects of a Python manager, and a Python program those of a C
 * manager (connection framing, the authkey handshake, requests (ident, method, args,
 * kwds) pickled, replies ('#RETURN', v), ('#ERROR', exception), ('#PROXY', (exposed,
 * token)), ('#TRACEBACK', text); tokens are multiprocessing.managers.Token objects).
 *
 * Objects are values (mp_value) on the wire: arguments go as a tuple and a dict, and a
 * method returns a value. A manager serves Python's SyncManager typeids (below) and the
 * user's own C types (mp_manager_type), which a C or Python client calls by name.
 *
 * Errors: a method that raised in the server returns its code and the server's message
 * (mp_last_error_message: "KeyError: 'x'"): KeyError, IndexError and AttributeError are
 * MP_ENOENT, ValueError and TypeError MP_EINVAL, queue.Empty MP_EEMPTY, queue.Full
 * MP_EFULL, StopIteration MP_EOF, threading.BrokenBarrierError MP_EBROKEN, EOFError (a
 * server shutting down under a blocked call) MP_ECLOSED, TimeoutError MP_ETIMEDOUT,
 * NotImplementedError MP_ENOTSUP, MemoryError MP_ENOMEM, anything else (RuntimeError,
 * and a Python server's traceback) MP_EREMOTE. The client sees the exception, not the
 * code the server's method returned: a method names its exception (mp_manager_raise)
 * or gets the one of its code (MP_ENOENT: KeyError, MP_EINVAL: ValueError, ...; codes
 * without one: RuntimeError). A manager that
 * is gone or unreachable is MP_EPIPE, MP_ENOENT or MP_ETIMEDOUT within the call's
 * timeout (mp_manager_opts.timeout), never a hang.
 *
 * Threads: a proxy may be used from several threads at once; each thread talks to the
 * manager over a connection of its own, as Python's proxies do. */
#ifndef MULTIPROC_MANAGER_H
#define MULTIPROC_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/export.h"
#include "multiproc/listener.h"
#include "multiproc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in multiproc.h as well (C11 allows the repetition): this header stands alone. */
typedef struct mp_args mp_args;
typedef struct mp_context mp_context;

typedef struct mp_manager mp_manager;
typedef struct mp_proxy mp_proxy;

/* ---- the user's types ---------------------------------------------------------- */

/** A method of a served type, run in the manager's process: obj is what create made,
 *  args a tuple and kwds a dict (both borrowed, never NULL). 0 and *result (a new
 *  value; NULL is None), or a negative MP_E* code with a detail (mp_manager_raise to
 *  name the Python exception a Python client sees). Methods of one object run one at a
 *  time unless the type says it is concurrent. */
typedef int (*mp_manager_method_fn)(void *obj, const mp_value *args, const mp_value *kwds,
                                    mp_value **result);

typedef struct mp_manager_method {
    const char *name;        /* what proxies call ("__getitem__", "incr") */
    mp_manager_method_fn fn; /* a function of a loaded module (it travels by reference) */
    /** NULL: the result is returned as a value. A typeid: the result (a value) becomes
     *  a new object of that typeid, and the caller gets a proxy to it (Python's
     *  method_to_typeid). */
    const char *type_id;
} mp_manager_method;

/** A type served by managers (Python's BaseManager.register). Its functions travel to
 *  the server by reference (module + offset), as process targets do, so the table may
 *  be a static const in the program; it must outlive the managers it is registered in.
 *  A method with a result typeid hands its result to that type's create as its one
 *  argument ((result,), {}); to a type without create the result is the object. */
typedef struct mp_manager_type {
    const char *type_id; /* the typeid, "Counter": at most 64 bytes (typeid is a C++ keyword) */
    /** Makes an object from the create call's arguments (a tuple and a dict): 0 and
     *  *obj, or a negative MP_E* code. NULL: the object is a copy of the one argument,
     *  an mp_value * that the methods receive as obj and the library frees (Python's
     *  callable=None). */
    int (*create)(const mp_value *args, const mp_value *kwds, void **obj);
    /** Frees an object create made, when no proxy refers to it any more. */
    void (*free)(void *obj);
    /** The object as a value (Python's _getvalue and repr); NULL: unsupported. */
    int (*getvalue)(void *obj, mp_value **out);
    const mp_manager_method *methods; /* the exposed methods */
    size_t nmethods;
    /** Methods may run on several threads at once: they lock what they share, and may
     *  block (a queue's get). Otherwise the manager runs one method of an object at a
     *  time. */
    bool concurrent;
} mp_manager_type;

/** In a method: records code and a printf-style detail, and the Python exception a
 *  Python client raises ("KeyError", "queue.Empty"; NULL: chosen from code); returns
 *  code. */
MP_API int mp_manager_raise(int code, const char *exception, const char *fmt, ...)
#if defined(__GNUC__) && !defined(__MINGW32__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- managers -------------------------------------------------------------------- */

/** Options; all-zero (or NULL) means Python's defaults. */
typedef struct mp_manager_opts {
    /** Where the server listens (listener address syntax: "host:port", a path, "@name",
     *  a pipe name); NULL: a fresh address of family (AF_UNIX on posix, AF_PIPE on
     *  Windows). For mp_manager_connect: the manager to reach (required). */
    const char *address;
    mp_family family;
    const void *authkey; /* NULL: the process's authkey */
    size_t authkey_len;
    /** Run in the server process before it serves (Python's start(initializer,
     *  initargs)); non-zero fails the start with MP_ECHILD. */
    int (*initializer)(mp_args *initargs);
    const mp_args *initargs;
    /** Server side: the most client connections served at once (0: 1024). Past it the
     *  longest idle connection is closed to make room. */
    int max_connections;
    /** Server side: a connection idle this long is closed (0: never; the handshake of a
     *  new connection is always bounded, by 10 s or this). */
    double idle_timeout;
    /** Client side: the bound of every call and connect (0: MP_FOREVER, as Python). */
    double timeout;
} mp_manager_opts;

/** A manager with no types registered (Python's BaseManager(address, authkey)); not
 *  started. ctx (NULL: the default) is the start method of its server. */
MP_API int mp_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out);
/** A manager with SyncManager's typeids registered: "dict", "list", "Namespace",
 *  "Value", "Array", "Queue", "JoinableQueue", "Lock", "RLock", "Semaphore",
 *  "BoundedSemaphore", "Event", "Condition" (its own RLock), "Barrier" (no action), and
 *  the "Iterator" typeid the dict and list iterators return. Not "Pool": a task
 *  function cannot travel in a value. */
MP_API int mp_sync_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out);
/** Registers a type (before start or serve). MP_EEXIST when its typeid is taken,
 *  MP_EINVAL for a malformed table, MP_ERESOLVE when a function is not in a module. */
MP_API int mp_manager_register(mp_manager *m, const mp_manager_type *type);
/** Starts the server in a new process of the manager's context and waits until it
 *  listens. MP_ECHILD (and the server's reason) when it cannot; MP_ESTATE when started
 *  or connected before. */
MP_API int mp_manager_start(mp_manager *m);
/** Connects to a running manager at opts.address (C or Python): checks that it answers
 *  and the authkey is right (MP_EAUTH). */
MP_API int mp_manager_connect(mp_manager *m);
/** Serves in this process until a client calls shutdown (Python's
 *  get_server().serve_forever()); prints nothing. MP_EEXIST when the address is taken. */
MP_API int mp_manager_serve_forever(mp_manager *m);
/** The address the server listens on (after start, connect or while serving), in the
 *  listener syntax; NULL before. Owned by m. */
MP_API const char *mp_manager_address(const mp_manager *m);
/** Stops a server this manager started (asks it, then terminates it if it does not end
 *  within a second) and joins it. Proxies still held then fail with MP_EPIPE or
 *  MP_ENOENT. MP_ESTATE when not started. A manager that connected asks the server to
 *  shut down. */
MP_API int mp_manager_shutdown(mp_manager *m);
/** Shuts down a manager this one started (if it runs) and frees m: the scope helper of
 *  Python's with-block. Proxies made from m stay valid objects until freed. NULL is
 *  fine. */
MP_API void mp_manager_free(mp_manager *m);
/** The number of objects the server holds (Python's _number_of_objects). */
MP_API int mp_manager_number_of_objects(mp_manager *m, size_t *n);

/** Creates an object of typeid in the server with args (a tuple; NULL: ()) and kwds (a
 *  dict; NULL: {}), and a proxy to it. MP_ENOENT for an unknown typeid; the
 *  constructor's error otherwise. */
MP_API int mp_manager_create(mp_manager *m, const char *type_id, const mp_value *args,
                             const mp_value *kwds, mp_proxy **out);
/** Shorthands for SyncManager's typeids. init, where given, is copied: the dict's or
 *  list's first contents (NULL: empty). */
MP_API int mp_manager_dict(mp_manager *m, const mp_value *init, mp_proxy **out);
MP_API int mp_manager_list(mp_manager *m, const mp_value *init, mp_proxy **out);
MP_API int mp_manager_namespace(mp_manager *m, mp_proxy **out);
/** A Value of typecode ("i", "d", "c"...: checked as Python's array does) holding v. */
MP_API int mp_manager_value(mp_manager *m, const char *typecode, const mp_value *v, mp_proxy **out);
/** A Queue (maxsize 0: unbounded), or a JoinableQueue when joinable. */
MP_API int mp_manager_queue(mp_manager *m, int maxsize, bool joinable, mp_proxy **out);
/** "Lock", "RLock", "Event", "Semaphore" or "BoundedSemaphore" (value: the
 *  semaphore's start value; ignored otherwise). */
MP_API int mp_manager_sync(mp_manager *m, const char *type_id, int value, mp_proxy **out);

/* ---- SharedMemoryManager ------------------------------------------------------- */

typedef struct mp_shm mp_shm;
typedef struct mp_shareable_list mp_shareable_list;

/** Python's SharedMemoryManager: a manager whose server tracks the shared memory
 *  blocks its clients make through it, and unlinks them when it shuts down, also when
 *  the client that made one died (-9). No typeids (register the program's own). */
MP_API int mp_shared_memory_manager_new(mp_context *ctx, const mp_manager_opts *opts,
                                        mp_manager **out);
/** A new block of size bytes (Python's smm.SharedMemory(size)), tracked by the server.
 *  Free with mp_shm_free; the server unlinks it. */
MP_API int mp_manager_shared_memory(mp_manager *m, size_t size, mp_shm **out);
/** A new ShareableList of items (smm.ShareableList(sequence)), tracked by the server. */
MP_API int mp_manager_shareable_list(mp_manager *m, const mp_value *items, mp_shareable_list **out);
/** The names of the blocks the server tracks: a list of str (new). */
MP_API int mp_manager_list_segments(mp_manager *m, mp_value **out);
/** Unlinks a tracked block now and stops tracking it. */
MP_API int mp_manager_release_segment(mp_manager *m, const char *name);

/* ---- proxies ---------------------------------------------------------------------- */

/** Calls method on the referent (Python's _callmethod) with args (a tuple; NULL: ())
 *  and kwds (a dict; NULL: {}); 0 and *result (a new value, NULL for None; result may
 *  be NULL to drop it). A method that returns a proxy (method_to_typeid) is called with
 *  mp_proxy_call_proxy: here it is MP_EINVAL. */
MP_API int mp_proxy_call(mp_proxy *p, const char *method, const mp_value *args,
                         const mp_value *kwds, mp_value **result);
/** Calls a method that returns a proxy: a `#PROXY` answer, or a value that is a proxy
 *  (a proxy stored in a managed dict: reached with p's authkey). MP_EINVAL when the
 *  answer is a plain value. */
MP_API int mp_proxy_call_proxy(mp_proxy *p, const char *method, const mp_value *args,
                               const mp_value *kwds, mp_proxy **out);
/** A copy of the referent's value (Python's _getvalue). */
MP_API int mp_proxy_getvalue(mp_proxy *p, mp_value **out);
/** The referent's typeid ("dict"); owned by p. */
MP_API const char *mp_proxy_typeid(const mp_proxy *p);
/** The referent's id in its manager (a hex string); owned by p. */
MP_API const char *mp_proxy_id(const mp_proxy *p);
/** The methods the referent exposes: a tuple of str (new). */
MP_API int mp_proxy_exposed(const mp_proxy *p, mp_value **out);
/** Releases the proxy's reference (the object goes when no proxy in any process refers
 *  to it) and frees p. NULL is fine. */
MP_API void mp_proxy_free(mp_proxy *p);

/** The proxy as a value, to store in another managed object or send anywhere values
 *  go: Python's pickled proxy (multiprocessing.managers.RebuildProxy), which a Python
 *  program unpickles into its proxy. It holds no reference of its own: the object
 *  lives while some proxy does. */
MP_API int mp_proxy_to_value(const mp_proxy *p, mp_value **out);
/** Whether v is a pickled proxy (what mp_proxy_to_value makes, or Python sends). */
MP_API bool mp_value_is_proxy(const mp_value *v);
/** A new proxy from a pickled one (a reference of its own). authkey: NULL for the
 *  process's authkey. */
MP_API int mp_proxy_from_value(const mp_value *v, const void *authkey, size_t authkey_len,
                               mp_proxy **out);
/** Adds p to a process's arguments: the child gets a proxy of its own (mp_args_proxy),
 *  with its own reference. */
MP_API int mp_args_add_proxy(mp_args *a, mp_proxy *p);
/** The proxy at i (owned by the argument list), or NULL. */
MP_API mp_proxy *mp_args_proxy(const mp_args *a, size_t i);

/* ---- shorthands for the common methods (each one mp_proxy_call) ------------------ */

/** d[key] = val (a dict or list; val copied). */
MP_API int mp_proxy_setitem(mp_proxy *p, const mp_value *key, const mp_value *val);
/** d[key]: MP_ENOENT when absent. */
MP_API int mp_proxy_getitem(mp_proxy *p, const mp_value *key, mp_value **out);
/** del d[key]. */
MP_API int mp_proxy_delitem(mp_proxy *p, const mp_value *key);
/** len(d). */
MP_API int mp_proxy_len(mp_proxy *p, size_t *n);
/** A list's append. */
MP_API int mp_proxy_append(mp_proxy *p, const mp_value *v);
/** A Namespace's attribute: get (MP_ENOENT when absent) and set. */
MP_API int mp_proxy_getattr(mp_proxy *p, const char *name, mp_value **out);
MP_API int mp_proxy_setattr(mp_proxy *p, const char *name, const mp_value *v);
/** A Value's get and set. */
MP_API int mp_proxy_get(mp_proxy *p, mp_value **out);
MP_API int mp_proxy_set(mp_proxy *p, const mp_value *v);
/** A Queue's put and get, with Python's block/timeout: timeout 0 or negative tries once,
 *  MP_FOREVER waits; MP_EFULL / MP_EEMPTY as Python's Full / Empty. */
MP_API int mp_proxy_put(mp_proxy *p, const mp_value *v, double timeout);
MP_API int mp_proxy_get_item(mp_proxy *p, double timeout, mp_value **out);
/** Lock, RLock, Semaphore: acquire (timeout as put; *acquired, never NULL, false when
 *  it ran out) and release. */
MP_API int mp_proxy_acquire(mp_proxy *p, double timeout, bool *acquired);
MP_API int mp_proxy_release(mp_proxy *p);

#ifdef __cplusplus
}
#endif
#endif
