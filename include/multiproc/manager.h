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
 *  code.
 *  @par Errors
 *  None: returns code. */
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
 *  started. ctx (NULL: the default) is the start method of its server.
 *  @retval MP_EINVAL  out is NULL, authkey_len without authkey, or a negative timeout,
 *      idle_timeout or max_connections.
 *  @retval MP_ESTATE  ctx is NULL and no start method is registered (mp_init not called).
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out);
/** A manager with SyncManager's typeids registered: "dict", "list", "Namespace",
 *  "Value", "Array", "Queue", "JoinableQueue", "Lock", "RLock", "Semaphore",
 *  "BoundedSemaphore", "Event", "Condition" (its own RLock), "Barrier" (no action), and
 *  the "Iterator" typeid the dict and list iterators return. Not "Pool": a task
 *  function cannot travel in a value.
 *  @par Errors
 *  As mp_manager_new. */
MP_API int mp_sync_manager_new(mp_context *ctx, const mp_manager_opts *opts, mp_manager **out);
/** Registers a type (before start or serve). MP_EEXIST when its typeid is taken,
 *  MP_EINVAL for a malformed table, MP_ERESOLVE when a function is not in a module.
 *  @retval MP_EINVAL  m or type is NULL, or a malformed table (see above).
 *  @retval MP_ESTATE  m was started, connected or served before.
 *  @retval MP_EEXIST  the typeid is taken.
 *  @retval MP_ERESOLVE a function is not a function of a loaded module.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_manager_register(mp_manager *m, const mp_manager_type *type);
/** Starts the server in a new process of the manager's context and waits until it
 *  listens. MP_ECHILD (and the server's reason) when it cannot; MP_ESTATE when started
 *  or connected before.
 *  @retval MP_EINVAL  m is NULL.
 *  @retval MP_ESTATE  started, connected or served before.
 *  @retval MP_ECHILD  the server could not start or listen (its reason in the message; also a
 *      failed initializer, or no answer within the start's wait).
 *  @retval MP_ERESOLVE the initializer or a registered function cannot be resolved.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_manager_start(mp_manager *m);
/** Connects to a running manager at opts.address (C or Python): checks that it answers
 *  and the authkey is right (MP_EAUTH).
 *  @retval MP_EINVAL  m is NULL, or no opts.address was given.
 *  @retval MP_ESTATE  started, connected or served before.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_manager_connect(mp_manager *m);
/** Serves in this process until a client calls shutdown (Python's
 *  get_server().serve_forever()); prints nothing. MP_EEXIST when the address is taken.
 *  @retval MP_EINVAL  m is NULL, or a malformed address.
 *  @retval MP_ESTATE  started, connected or served before.
 *  @retval MP_EEXIST  the address is in use.
 *  @par Other errors
 *  Those of mp_listener_new (MP_ENOTSUP, MP_ENOENT, MP_EPERM, MP_ENOMEM, MP_ELIMIT, MP_ESYS). */
MP_API int mp_manager_serve_forever(mp_manager *m);
/** The address the server listens on (after start, connect or while serving), in the
 *  listener syntax; NULL before. Owned by m. */
MP_API const char *mp_manager_address(const mp_manager *m);
/** Stops a server this manager started (asks it, then terminates it if it does not end
 *  within a second) and joins it. Proxies still held then fail with MP_EPIPE or
 *  MP_ENOENT. MP_ESTATE when not started. A manager that connected asks the server to
 *  shut down.
 *  @retval MP_EINVAL  m is NULL.
 *  @retval MP_ESTATE  not started, connected or serving.
 *  @par Other errors
 *  For a connected manager, what the shutdown call met (MP_EPIPE, MP_ETIMEDOUT, MP_EAUTH...); a
 *  started one always ends (0). */
MP_API int mp_manager_shutdown(mp_manager *m);
/** Shuts down a manager this one started (if it runs) and frees m: the scope helper of
 *  Python's with-block. Proxies made from m stay valid objects until freed. NULL is
 *  fine. */
MP_API void mp_manager_free(mp_manager *m);
/** The number of objects the server holds (Python's _number_of_objects).
 *  @retval MP_EINVAL  m or n is NULL.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_manager_number_of_objects(mp_manager *m, size_t *n);

/** Creates an object of typeid in the server with args (a tuple; NULL: ()) and kwds (a
 *  dict; NULL: {}), and a proxy to it. MP_ENOENT for an unknown typeid; the
 *  constructor's error otherwise.
 *  @retval MP_EINVAL  m, type_id or out is NULL, args is not a tuple or kwds not a dict.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_ENOENT  an unknown typeid.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_create(mp_manager *m, const char *type_id, const mp_value *args,
                             const mp_value *kwds, mp_proxy **out);
/** Shorthands for SyncManager's typeids. init, where given, is copied: the dict's or
 *  list's first contents (NULL: empty).
 *  @retval MP_EINVAL  m or out is NULL, or init is not a dict or list of pairs the server takes.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_dict(mp_manager *m, const mp_value *init, mp_proxy **out);
/** A managed list (Python's SyncManager.list), a copy of init.
 *  @retval MP_EINVAL  m or out is NULL, or init is not a sequence the server takes.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_list(mp_manager *m, const mp_value *init, mp_proxy **out);
/** A managed Namespace.
 *  @retval MP_EINVAL  m or out is NULL.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_namespace(mp_manager *m, mp_proxy **out);
/** A Value of typecode ("i", "d", "c"...: checked as Python's array does) holding v.
 *  @retval MP_EINVAL  m, typecode, v or out is NULL, or an unknown typecode.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_value(mp_manager *m, const char *typecode, const mp_value *v, mp_proxy **out);
/** A Queue (maxsize 0: unbounded), or a JoinableQueue when joinable.
 *  @retval MP_EINVAL  m or out is NULL.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_queue(mp_manager *m, int maxsize, bool joinable, mp_proxy **out);
/** "Lock", "RLock", "Event", "Semaphore" or "BoundedSemaphore" (value: the
 *  semaphore's start value; ignored otherwise).
 *  @retval MP_EINVAL  m, type_id or out is NULL, or type_id is none of those.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the constructor's error in the server, as the code of its exception (MP_EINVAL for
 *  a bad argument, MP_EREMOTE...). */
MP_API int mp_manager_sync(mp_manager *m, const char *type_id, int value, mp_proxy **out);

/* ---- SharedMemoryManager ------------------------------------------------------- */

typedef struct mp_shm mp_shm;
typedef struct mp_shareable_list mp_shareable_list;

/** Python's SharedMemoryManager: a manager whose server tracks the shared memory
 *  blocks its clients make through it, and unlinks them when it shuts down, also when
 *  the client that made one died (-9). No typeids (register the program's own).
 *  @par Errors
 *  As mp_manager_new. */
MP_API int mp_shared_memory_manager_new(mp_context *ctx, const mp_manager_opts *opts,
                                        mp_manager **out);
/** A new block of size bytes (Python's smm.SharedMemory(size)), tracked by the server.
 *  Free with mp_shm_free; the server unlinks it.
 *  @retval MP_EINVAL  m or out is NULL, or size is 0.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  Those of mp_shm_open (MP_ENOMEM, MP_ELIMIT, MP_EPERM, MP_ESYS...); the server's error when it
 *  cannot track the block (which is then unlinked). */
MP_API int mp_manager_shared_memory(mp_manager *m, size_t size, mp_shm **out);
/** A new ShareableList of items (smm.ShareableList(sequence)), tracked by the server.
 *  @retval MP_EINVAL  m or out is NULL, or items is not a list or tuple (see
 *      mp_shareable_list_new).
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  Those of mp_shareable_list_new (MP_ENOTSUP, MP_ETOOBIG, MP_ENOMEM, MP_ESYS...); the server's
 *  error when it cannot track the block. */
MP_API int mp_manager_shareable_list(mp_manager *m, const mp_value *items, mp_shareable_list **out);
/** The names of the blocks the server tracks: a list of str (new).
 *  @retval MP_EINVAL  m or out is NULL.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_manager_list_segments(mp_manager *m, mp_value **out);
/** Unlinks a tracked block now and stops tracking it.
 *  @retval MP_EINVAL  m or name is NULL.
 *  @retval MP_ESTATE  m is not started, connected or serving (or was shut down).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_manager_release_segment(mp_manager *m, const char *name);

/* ---- proxies ---------------------------------------------------------------------- */

/** Calls method on the referent (Python's _callmethod) with args (a tuple; NULL: ())
 *  and kwds (a dict; NULL: {}); 0 and *result (a new value, NULL for None; result may
 *  be NULL to drop it). A method that returns a proxy (method_to_typeid) is called with
 *  mp_proxy_call_proxy: here it is MP_EINVAL.
 *  @retval MP_EINVAL  p or method is NULL, args is not a tuple or kwds not a dict, or the method
 *      returns a proxy.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_call(mp_proxy *p, const char *method, const mp_value *args,
                         const mp_value *kwds, mp_value **result);
/** Calls a method that returns a proxy: a `#PROXY` answer, or a value that is a proxy
 *  (a proxy stored in a managed dict: reached with p's authkey). MP_EINVAL when the
 *  answer is a plain value.
 *  @retval MP_EINVAL  p, method or out is NULL, args is not a tuple or kwds not a dict, or the
 *      answer is a plain value.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_call_proxy(mp_proxy *p, const char *method, const mp_value *args,
                               const mp_value *kwds, mp_proxy **out);
/** A copy of the referent's value (Python's _getvalue).
 *  @retval MP_EINVAL  p or out is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_getvalue(mp_proxy *p, mp_value **out);
/** The referent's typeid ("dict"); owned by p.
 *  @return NULL for NULL. */
MP_API const char *mp_proxy_typeid(const mp_proxy *p);
/** The referent's id in its manager (a hex string); owned by p.
 *  @return NULL for NULL. */
MP_API const char *mp_proxy_id(const mp_proxy *p);
/** The methods the referent exposes: a tuple of str (new).
 *  @retval MP_EINVAL  p or out is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_proxy_exposed(const mp_proxy *p, mp_value **out);
/** Releases the proxy's reference (the object goes when no proxy in any process refers
 *  to it) and frees p. NULL is fine. */
MP_API void mp_proxy_free(mp_proxy *p);

/** The proxy as a value, to store in another managed object or send anywhere values
 *  go: Python's pickled proxy (multiprocessing.managers.RebuildProxy), which a Python
 *  program unpickles into its proxy. It holds no reference of its own: the object
 *  lives while some proxy does.
 *  @retval MP_EINVAL  p or out is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_proxy_to_value(const mp_proxy *p, mp_value **out);
/** Whether v is a pickled proxy (what mp_proxy_to_value makes, or Python sends).
 *  @return false for NULL. */
MP_API bool mp_value_is_proxy(const mp_value *v);
/** A new proxy from a pickled one (a reference of its own). authkey: NULL for the
 *  process's authkey.
 *  @retval MP_EINVAL  v or out is NULL, or v is not a pickled proxy.
 *  @retval MP_EPROTO  a malformed token, or a malformed answer from the manager.
 *  @retval MP_ENOENT  the object is gone from its manager.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer to the new reference within 30 s.
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_from_value(const mp_value *v, const void *authkey, size_t authkey_len,
                               mp_proxy **out);
/** Adds p to a process's arguments: the child gets a proxy of its own (mp_args_proxy),
 *  with its own reference.
 *  @retval MP_EINVAL  a or p is NULL, or a is a child's own argument list.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_proxy(mp_args *a, mp_proxy *p);
/** The proxy at i (owned by the argument list), or NULL. */
MP_API mp_proxy *mp_args_proxy(const mp_args *a, size_t i);

/* ---- shorthands for the common methods (each one mp_proxy_call) ------------------ */

/** d[key] = val (a dict or list; val copied).
 *  @retval MP_EINVAL  p, key or val is NULL.
 *  @retval MP_ENOENT  a list index out of range (IndexError).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_setitem(mp_proxy *p, const mp_value *key, const mp_value *val);
/** d[key]: MP_ENOENT when absent.
 *  @retval MP_EINVAL  p, key or out is NULL.
 *  @retval MP_ENOENT  no such key or index.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_getitem(mp_proxy *p, const mp_value *key, mp_value **out);
/** del d[key].
 *  @retval MP_EINVAL  p or key is NULL.
 *  @retval MP_ENOENT  no such key or index.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_delitem(mp_proxy *p, const mp_value *key);
/** len(d).
 *  @retval MP_EINVAL  p or n is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_len(mp_proxy *p, size_t *n);
/** A list's append.
 *  @retval MP_EINVAL  p or v is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_append(mp_proxy *p, const mp_value *v);
/** A Namespace's attribute: get (MP_ENOENT when absent) and set.
 *  @retval MP_EINVAL  p, name or out is NULL.
 *  @retval MP_ENOENT  no such attribute.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_getattr(mp_proxy *p, const char *name, mp_value **out);
/** Sets a Namespace's attribute.
 *  @retval MP_EINVAL  p, name or v is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_setattr(mp_proxy *p, const char *name, const mp_value *v);
/** A Value's get and set.
 *  @retval MP_EINVAL  p or out is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_get(mp_proxy *p, mp_value **out);
/** A Value's set.
 *  @retval MP_EINVAL  p or v is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_set(mp_proxy *p, const mp_value *v);
/** A Queue's put and get, with Python's block/timeout: timeout 0 or negative tries once,
 *  MP_FOREVER waits; MP_EFULL / MP_EEMPTY as Python's Full / Empty.
 *  @retval MP_EINVAL  p or v is NULL.
 *  @retval MP_EFULL   the queue stayed full for timeout (queue.Full).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_put(mp_proxy *p, const mp_value *v, double timeout);
/** A Queue's get (see mp_proxy_put).
 *  @retval MP_EINVAL  p or out is NULL.
 *  @retval MP_EEMPTY  nothing came within timeout (queue.Empty).
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_get_item(mp_proxy *p, double timeout, mp_value **out);
/** Lock, RLock, Semaphore: acquire (timeout as put; *acquired, never NULL, false when
 *  it ran out) and release.
 *  @retval MP_EINVAL  p or acquired is NULL.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_acquire(mp_proxy *p, double timeout, bool *acquired);
/** Releases a Lock, RLock or Semaphore (see mp_proxy_acquire).
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_EREMOTE not held (the server's RuntimeError), among others.
 *  @retval MP_EPIPE   the manager is gone or cannot be reached.
 *  @retval MP_ETIMEDOUT no answer within the manager's timeout (mp_manager_opts.timeout).
 *  @retval MP_EAUTH   the manager refused the authkey.
 *  @retval MP_EPROTO  a malformed answer.
 *  @par Other errors
 *  MP_ENOMEM; the code of the exception the server raised (see the top of this header:
 *  MP_ENOENT, MP_EINVAL, MP_EREMOTE...). */
MP_API int mp_proxy_release(mp_proxy *p);

#ifdef __cplusplus
}
#endif
#endif
