/* multiproc: Python's multiprocessing for C.
 *
 * One API for starting and managing child processes on Linux and Windows, with a
 * start method ("fork", "spawn", "forkserver", "win32", "apr", "dummy") chosen at run
 * time. Conventions: functions return 0 or a negative MP_E* code; the thread-local
 * detail is in mp_last_error_message(); timeouts are double seconds, MP_FOREVER
 * waits forever and a negative timeout does not wait; out-parameters come last and are NULL/0 on failure (handles:
 * MP_INVALID_OS_HANDLE); a NULL object pointer is MP_EINVAL, never a crash. */
#ifndef MULTIPROC_H
#define MULTIPROC_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/export.h"
#include "multiproc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------ */

/* X(name, value, message): the one list behind the enum, mp_strerror, mp_err_name. */
#define MP_ERRNO_MAP(X)                                                        \
    X(EINVAL, -1, "invalid argument")                                          \
    X(ENOMEM, -2, "out of memory")                                             \
    X(ETIMEDOUT, -3, "timed out")                                              \
    X(ENOTSUP, -4, "operation not supported by this start method or platform") \
    X(ESTATE, -5, "object is in the wrong state for this operation")           \
    X(ECLOSED, -6, "object is closed")                                         \
    X(ENOENT, -7, "no such object")                                            \
    X(EEXIST, -8, "object already exists")                                     \
    X(ERESOLVE, -9, "target function cannot be resolved in the child")         \
    X(ECHILD, -10, "child process failed to start")                            \
    X(EAGAIN, -11, "not ready yet")                                            \
    X(EPERM, -12, "operation not permitted")                                   \
    X(EPIPE, -13, "broken pipe")                                               \
    X(EOF, -14, "end of file")                                                 \
    X(EIO, -15, "input/output error")                                          \
    X(EOWNERDEAD, -16, "previous owner died")                                  \
    X(EAUTH, -17, "authentication failed")                                     \
    X(EFULL, -18, "full")                                                      \
    X(EEMPTY, -19, "empty")                                                    \
    X(ETOOBIG, -20, "message too big")                                         \
    X(EPROTO, -21, "protocol error")                                           \
    X(EBADF, -22, "bad handle")                                                \
    X(EINTR, -23, "interrupted")                                               \
    X(ESYS, -24, "operating system error")                                     \
    X(EWORKERDIED, -25, "a pool worker died while running the task")           \
    X(ECANCELED, -26, "canceled")                                              \
    X(EBROKEN, -27, "barrier is broken")                                       \
    X(ESHUTDOWN, -28, "queue is shut down")                                    \
    X(EREMOTE, -29, "the manager's method raised an error")                    \
    X(ELIMIT, -30, "a resource limit was reached (descriptors, handles)")

#define MP__ERR_ENUM(name, value, msg) MP_##name = value,
enum mp_errno { MP_OK = 0, MP_ERRNO_MAP(MP__ERR_ENUM) };
#undef MP__ERR_ENUM

/** Message for an MP_E* code; never NULL ("unknown error" for anything else). */
MP_API const char *mp_strerror(int err);
/** Symbolic name of an MP_E* code ("MP_ETIMEDOUT"); "MP_UNKNOWN" for anything else. */
MP_API const char *mp_err_name(int err);
/** Detail of the last error reported on this thread; "" when none. Valid until the
 *  next call into the library on this thread. */
MP_API const char *mp_last_error_message(void);
/** The operating system's own error number (errno on posix, GetLastError() on
 *  Windows) behind the last error reported on this thread, or 0 when that error did
 *  not come from the OS. Kept also where no MP_E* code says more than MP_ESYS.
 *  @par Errors
 *  None: returns an OS error number, not an MP_E* code. */
MP_API int mp_last_os_error(void);

/** Wait forever: +infinity. A negative timeout (or NaN) means "do not wait", as
 *  Python's join/poll/wait/get/acquire take it. */
#define MP_FOREVER ((double)INFINITY)

/* ---- OS handles -------------------------------------------------------------- */

/** An OS handle as an integer: a file descriptor on posix, a HANDLE on Windows. */
typedef intptr_t mp_os_handle;
#define MP_INVALID_OS_HANDLE ((mp_os_handle)-1)

/* ---- arguments --------------------------------------------------------------- */

/** The argument list a target receives. Values are copied in; a child gets its own
 *  copy (decoded from the wire on every start method, also dummy). */
typedef struct mp_args mp_args;

typedef enum mp_arg_type {
    MP_ARG_NONE = 0, /* also: index out of range */
    MP_ARG_INT,
    MP_ARG_DOUBLE,
    MP_ARG_STR,
    MP_ARG_BYTES,
    MP_ARG_OS_HANDLE,
    MP_ARG_OBJECT /* a library object (connection, lock...): see its module's reader */
} mp_arg_type;

/** New empty argument list; free with mp_args_free.
 *  @retval MP_EINVAL  out is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_new(mp_args **out);
/** Free a list (NULL is fine). OS handles it received as a child's args are closed. */
MP_API void mp_args_free(mp_args *a);
/** Appends a 64-bit integer.
 *  @retval MP_EINVAL  a is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_int(mp_args *a, int64_t v);
/** Appends a double.
 *  @retval MP_EINVAL  a is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_double(mp_args *a, double v);
/** Adds a copy of the NUL-terminated string s.
 *  @retval MP_EINVAL  a or s is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_str(mp_args *a, const char *s);
/** Adds a copy of len bytes (len 0 and buf NULL is an empty value).
 *  @retval MP_EINVAL  a is NULL, or buf is NULL with len > 0.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_bytes(mp_args *a, const void *buf, size_t len);
/** Adds an OS handle to be transferred to the child: the caller keeps h; the child
 *  receives its own handle to the same object (fd passing, inheritance,
 *  DuplicateHandle; a duplicate on dummy), owned by the child's args.
 *  @retval MP_EINVAL  a is NULL, or a is a child's own argument list (it owns its handles).
 *  @retval MP_EBADF   h is MP_INVALID_OS_HANDLE.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_os_handle(mp_args *a, mp_os_handle h);

/** Number of items; 0 for NULL. */
MP_API size_t mp_args_count(const mp_args *a);
/** Type of item i; MP_ARG_NONE for NULL or an index out of range. */
MP_API mp_arg_type mp_args_type(const mp_args *a, size_t i);
/** Typed readers: 0 / 0.0 / NULL / MP_INVALID_OS_HANDLE when i is out of range or the
 *  type differs (check mp_args_type when it matters). Pointers stay valid while a lives. */
MP_API int64_t mp_args_int(const mp_args *a, size_t i);
MP_API double mp_args_double(const mp_args *a, size_t i);
MP_API const char *mp_args_str(const mp_args *a, size_t i);
MP_API const void *mp_args_bytes(const mp_args *a, size_t i, size_t *len);
/** A handle the child received; borrowed: closed with the args when the target returns. */
MP_API mp_os_handle mp_args_os_handle(const mp_args *a, size_t i);
/** The kind of library object at i ("connection", "lock"...), NULL if not an object. */
MP_API const char *mp_args_object_type(const mp_args *a, size_t i);

/* ---- library and start methods ----------------------------------------------- */

/** The linked library's version, "MAJOR.MINOR.PATCH" (its MP_VERSION_STRING); static,
 *  never NULL, safe before mp_init. Differs from MP_VERSION_STRING when the program was
 *  compiled against other headers than the library it runs with. */
MP_API const char *mp_version(void);

/** Call first in main. In a child started by spawn/forkserver/win32/apr this runs the
 *  target and never returns; in the forkserver process it serves and never returns;
 *  otherwise it returns 0 (or an error if the library cannot initialise). argc/argv may
 *  be NULL. Safe to call more than once.
 *  @retval MP_ESYS    the OS layer could not initialise: no random bytes for the authkey
 *      (getrandom, BCryptGenRandom), or (Windows) no path for this executable. */
MP_API int mp_init(int *argc, char ***argv);

/** A start method's context: static, never freed. */
typedef struct mp_context mp_context;

/** The context for a start method ("fork", "spawn", "forkserver", "win32", "apr",
 *  "dummy"), or for the current default when name is NULL. NULL with an error message
 *  when the name is unknown or not available on this platform. On Windows "spawn"
 *  names the win32 method.
 *  @return NULL when the name is unknown (MP_EINVAL in the message), or when no start method is
 *      registered yet (mp_init not called). */
MP_API mp_context *mp_get_context(const char *name);
/** The start method a context runs ("forkserver"...).
 *  @return NULL when ctx is NULL. */
MP_API const char *mp_context_name(const mp_context *ctx);
/** The start methods available here, the platform's default first (MP_START_METHOD
 *  does not reorder them), NULL-terminated, static. */
MP_API const char *const *mp_get_all_start_methods(void);
/** The global start method; fixes it to the default when not set yet unless
 *  allow_none, in which case NULL is returned while unset. */
MP_API const char *mp_get_start_method(bool allow_none);
/** Sets the global start method (NULL with force unsets it; NULL without force is
 *  MP_EINVAL). MP_ESTATE when already set and !force; MP_EINVAL for an unknown name.
 *  Env MP_START_METHOD sets the default. A child follows its parent's start method.
 *  @retval MP_EINVAL  name is NULL without force, or no start method has that name.
 *  @retval MP_ESTATE  already set and !force, or no start method is registered (mp_init not
 *      called). */
MP_API int mp_set_start_method(const char *name, bool force);

/** Program that spawn/forkserver/apr/win32 children run instead of this executable
 *  (it must call mp_init and contain or load the targets). NULL restores the default.
 *  @retval MP_ENOMEM  out of memory copying path. */
MP_API int mp_set_executable(const char *path);
/** Shared libraries the forkserver loads once at start, so children begin warm
 *  (Python's set_forkserver_preload). Takes effect when the server next starts.
 *  @retval MP_EINVAL  libs is NULL with n > 0, or an entry is NULL.
 *  @retval MP_ENOMEM  out of memory copying the list (Linux). */
MP_API int mp_set_forkserver_preload(const char *const *libs, size_t n);
/** How many children the forkserver keeps forked ahead of need, so a start is one
 *  message to a child that exists already (0..16; 0: fork at each start). Default 2,
 *  or env MP_FORKSERVER_WARM. Takes effect at once; MP_EINVAL out of range. A hint
 *  where there is no forkserver (Windows).
 *  @retval MP_EINVAL  n is not in 0..16. */
MP_API int mp_set_forkserver_warm(int n);

/** Number of CPUs in the system.
 *  @par Errors
 *  None: at least 1 (1 when the OS cannot tell). */
MP_API int mp_cpu_count(void);
/** Number of CPUs this process may run on (affinity mask), as os.process_cpu_count.
 *  @par Errors
 *  None: at least 1; the system's count when the affinity cannot be read. */
MP_API int mp_process_cpu_count(void);
/** This process's id. */
MP_API int64_t mp_getpid(void);

/* ---- processes --------------------------------------------------------------- */

typedef struct mp_process mp_process;

/** A target: receives its argument list (never NULL: empty when none was given),
 *  returns the child's exit code (keep it in 0..255: posix truncates to 8 bits). A real
 *  child exits with it; a dummy "process" (a thread) reports it. */
typedef int (*mp_target_fn)(mp_args *args);

typedef struct mp_process_opts {
    mp_target_fn target; /* required; a function of a loaded module */
    const char *name;    /* NULL: "Process-N" ("Process-N:M" in a child) */
    const mp_args *args; /* copied; NULL means no arguments */
    bool daemon;         /* terminated when the parent exits, killed if it dies */
} mp_process_opts;

/** Creates a process object (not started) on ctx (NULL: default context).
 *  @retval MP_EINVAL  out, opts or opts->target is NULL.
 *  @retval MP_ESTATE  ctx is NULL and no start method is registered (mp_init not called).
 *  @retval MP_ENOMEM  out of memory (also copying opts->args). */
MP_API int mp_process_new(mp_context *ctx, const mp_process_opts *opts, mp_process **out);
/** Starts the child. MP_ESTATE if started before; MP_ERESOLVE when the target cannot
 *  be resolved in a child; MP_ECHILD when the child could not be started.
 *  @retval MP_EINVAL   p is NULL.
 *  @retval MP_ECLOSED  p was closed.
 *  @retval MP_ESTATE   started before; p is the current or parent process object; or the caller is
 *      a daemonic process (it may not have children).
 *  @retval MP_ERESOLVE the target is not a function of a loaded module, or the child cannot find
 *      it.
 *  @retval MP_ECHILD   the child ended or failed before it could run the target (the message says
 *      why).
 *  @retval MP_ENOMEM   out of memory.
 *  @retval MP_ELIMIT   out of descriptors or handles.
 *  @retval MP_ESYS     the OS refused (the message names the call); other OS errors map to their
 *      MP_E* code (MP_EPERM, MP_EPIPE...), and a forkserver that answered wrongly is
 *      MP_EPROTO. */
MP_API int mp_process_start(mp_process *p);
/** Waits for the child to end: 0, MP_ETIMEDOUT, or MP_ESTATE if never started.
 *  @retval MP_ETIMEDOUT the child is still running after timeout.
 *  @retval MP_EINVAL    p is NULL.
 *  @retval MP_ECLOSED   p was closed.
 *  @retval MP_ESTATE    p was never started, or p is the current process (it cannot join itself).
 *  @retval MP_ESYS      waiting failed in the OS (the message names the call). */
MP_API int mp_process_join(mp_process *p, double timeout);
/** True between a successful start and the child's end; false once closed (and for
 *  NULL).
 *  @return false for NULL, a closed or an unstarted process. */
MP_API bool mp_process_is_alive(mp_process *p);
/** mp_process_is_alive with an error: 0 and *alive, or MP_ECLOSED after
 *  mp_process_close (Python's is_alive raises ValueError there).
 *  @retval MP_EINVAL  p or alive is NULL.
 *  @retval MP_ECLOSED p was closed. */
MP_API int mp_process_alive(mp_process *p, bool *alive);
/** The exit code once the child ended: target's return value, -N for death by signal N
 *  (posix), -15 after terminate or kill on Windows (Python's mapping), the NTSTATUS as
 *  an int after a crash on Windows (e.g. (int)0xC0000005). MP_EAGAIN while not started
 *  or running; MP_ECLOSED once closed.
 *  @retval MP_EAGAIN  not started yet (also the current and parent process objects), or still
 *      running.
 *  @retval MP_EINVAL  p or code is NULL.
 *  @retval MP_ECLOSED p was closed. */
MP_API int mp_process_exitcode(mp_process *p, int *code);
/** Process id (native thread id on dummy); 0 before start and once closed.
 *  @return 0 also for NULL. */
MP_API int64_t mp_process_pid(const mp_process *p);
/** mp_process_pid with an error: 0 and *pid (0 before start, as Python's None), or
 *  MP_ECLOSED after mp_process_close (Python's pid raises ValueError there).
 *  @retval MP_EINVAL  p or pid is NULL.
 *  @retval MP_ECLOSED p was closed. */
MP_API int mp_process_get_pid(const mp_process *p, int64_t *pid);
/** A handle that becomes ready (readable fd / signalled HANDLE) when the child ends.
 *  Owned by p. MP_ESTATE before start.
 *  @retval MP_EINVAL  p or out is NULL.
 *  @retval MP_ECLOSED p was closed.
 *  @retval MP_ESTATE  not started, or a process object without a sentinel (the current process). */
MP_API int mp_process_sentinel(const mp_process *p, mp_os_handle *out);
/** SIGTERM / TerminateProcess. MP_ENOTSUP on dummy. No-op once ended.
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_ECLOSED p was closed.
 *  @retval MP_ESTATE  not started.
 *  @retval MP_ENOTSUP dummy, or p is the current or parent process object.
 *  @retval MP_ESYS    the OS refused the signal (the message names the call). */
MP_API int mp_process_terminate(mp_process *p);
/** SIGKILL / TerminateProcess. MP_ENOTSUP on dummy.
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_ECLOSED p was closed.
 *  @retval MP_ESTATE  not started.
 *  @retval MP_ENOTSUP dummy, or p is the current or parent process object.
 *  @retval MP_ESYS    the OS refused the signal (the message names the call). */
MP_API int mp_process_kill(mp_process *p);
/** SIGINT (Python 3.14 interrupt). MP_ENOTSUP on dummy and Windows.
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_ECLOSED p was closed.
 *  @retval MP_ESTATE  not started.
 *  @retval MP_ENOTSUP dummy, Windows, or p is the current or parent process object.
 *  @retval MP_ESYS    the OS refused the signal (the message names the call). */
MP_API int mp_process_interrupt(mp_process *p);
/** Releases the OS resources; MP_ESTATE while the child runs. Later calls on p other
 *  than close/free/name give MP_ECLOSED.
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_ESTATE  the child still runs, or p is the current or parent process object. */
MP_API int mp_process_close(mp_process *p);
/** Frees p (NULL is fine). A running child is left to run; the library still reaps it
 *  and, for a daemon, terminates it at exit. */
MP_API void mp_process_free(mp_process *p);

/** The process's name; NULL for NULL. */
MP_API const char *mp_process_name(const mp_process *p);
/** Renames the process (a copy of name is kept).
 *  @retval MP_EINVAL  p or name is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_process_set_name(mp_process *p, const char *name);
/** The daemon flag; false for NULL. */
MP_API bool mp_process_daemon(const mp_process *p);
/** MP_ESTATE once started.
 *  @retval MP_EINVAL  p is NULL.
 *  @retval MP_ECLOSED p was closed.
 *  @retval MP_ESTATE  started, or p is the current or parent process object. */
MP_API int mp_process_set_daemon(mp_process *p, bool daemon);
/** The start method the process runs on.
 *  @return NULL when p is NULL. */
MP_API const char *mp_process_start_method(const mp_process *p);

/** The process object for the caller ("MainProcess" in the main program, the child's
 *  own in a child, the thread's in a dummy child). Owned by the library.
 *  @return NULL only when out of memory creating the object. */
MP_API mp_process *mp_current_process(void);
/** The parent, in a child (pid, name, a sentinel that is ready when the parent ended);
 *  NULL in the main process. In a dummy child: the creating process object's name and
 *  pid, with a sentinel that is ready only when the whole program ends. Owned by the
 *  library. */
MP_API mp_process *mp_parent_process(void);
/** Children of this process still alive; joins finished ones as a side effect (also
 *  those the caller already freed: they are listed while alive, and the pointer stays
 *  valid until they are reaped). Writes up to cap pointers and the number alive to *n.
 *  @retval MP_EINVAL  n is NULL, or list is NULL with cap > 0.
 *  @retval MP_ENOMEM  out of memory creating the current process object. */
MP_API int mp_active_children(mp_process **list, size_t cap, size_t *n);

#ifdef __cplusplus
}
#endif

#include "multiproc/value.h"
#include "multiproc/connection.h"
#include "multiproc/listener.h"
#include "multiproc/sync.h"
#include "multiproc/queue.h"
#include "multiproc/shared.h"
#include "multiproc/pool.h"
#include "multiproc/manager.h"
#include "multiproc/log.h"

#endif
