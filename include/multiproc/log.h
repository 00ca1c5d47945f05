/* multiproc logging and finalizers: Python's multiprocessing.util (get_logger,
 * log_to_stderr, Finalize) for C. Included by multiproc.h.
 *
 * Logging is off by default, as in Python: nothing is written until
 * mp_log_to_stderr() or mp_log_set_hook() says where records go. A record carries its
 * level and the name of the process that made it; on stderr it reads
 * "[INFO/Process-1] message", Python's format, written with one call so the lines of
 * several processes never mix. The library logs its own lifecycle at Python's levels:
 * a child calling its target and exiting (INFO), the main process shutting down and
 * joining or terminating its children (INFO), pool workers added (DEBUG) and replaced
 * after a death (WARNING), a manager serving, told to shut down and exiting (INFO), a
 * forkserver found gone and replaced (WARNING), and at a process's exit each shared
 * memory block it created and left for the tracker to unlink (WARNING). Children
 * inherit the level and whether records go to stderr on every start method (a hook is
 * a function of this process: a fork or dummy child keeps it, others do not).
 *
 * Finalizers are Python's util.Finalize: a function and its argument, run once, either
 * when the program asks (mp_finalize_run) or at exit: those with an exit priority of 0
 * or more before the children are joined, the others (negative) after, higher
 * priorities first and, within one priority, the most recent first. A child starts
 * with no finalizer (a fork child drops its parent's) and runs its own when it ends. */
#ifndef MULTIPROC_LOG_H
#define MULTIPROC_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- logging ---------------------------------------------------------------------- */

/** Levels: Python's logging levels, with multiprocessing's SUBDEBUG and SUBWARNING. */
enum {
    MP_LOG_NOTSET = 0,
    MP_LOG_SUBDEBUG = 5,
    MP_LOG_DEBUG = 10,
    MP_LOG_INFO = 20,
    MP_LOG_SUBWARNING = 25,
    MP_LOG_WARNING = 30,
    MP_LOG_ERROR = 40,
    MP_LOG_CRITICAL = 50
};

/** Where records go besides stderr: called with the record's level, the name of the
 *  process (or dummy child) that made it and the message, in the thread that logged. */
typedef void (*mp_log_hook)(void *ctx, int level, const char *process_name, const char *message);

/** Python's log_to_stderr(level): records go to stderr from now on; level (> 0) sets
 *  the level too, MP_LOG_NOTSET keeps it. */
MP_API void mp_log_to_stderr(int level);
/** Stops writing records to stderr (the hook, if any, still gets them). */
MP_API void mp_log_stop_stderr(void);
/** Whether records go to stderr. */
MP_API bool mp_log_to_stderr_enabled(void);
/** Sets the level: records below it are dropped. MP_LOG_NOTSET means Python's default
 *  effective level, WARNING. MP_EINVAL for a negative level.
 *  @retval MP_EINVAL  level is negative. */
MP_API int mp_log_set_level(int level);
/** The effective level (WARNING while it is NOTSET, as Python's getEffectiveLevel).
 *  @par Errors
 *  None: returns a level, never an MP_E* code. */
MP_API int mp_log_get_level(void);
/** Routes records to hook(ctx, ...) as well (NULL: no hook). */
MP_API void mp_log_set_hook(mp_log_hook hook, void *ctx);
/** Python's util.debug/info/...: logs a printf-style message at level.
 *  Nothing is logged when fmt is NULL. */
MP_API void mp_log(int level, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** mp_log with a va_list; nothing is logged when fmt is NULL. */
MP_API void mp_log_v(int level, const char *fmt, va_list ap);
/** Whether a record at level would go anywhere (to skip building a costly message). */
MP_API bool mp_log_enabled(int level);
/** The level's name ("INFO", "SUBWARNING"), or "Level <n>" for others (a static buffer
 *  per thread). */
MP_API const char *mp_log_level_name(int level);

/* ---- finalizers ------------------------------------------------------------------- */

typedef struct mp_finalizer mp_finalizer;
typedef void (*mp_finalize_fn)(void *arg);

/** Not run at exit (Python's exitpriority=None): only by mp_finalize_run. */
#define MP_FINALIZE_NOT_AT_EXIT (-2147483647 - 1) /* INT_MIN */

/** Registers fn(arg), run once: by mp_finalize_run, or at exit according to
 *  exitpriority (see the top of this header). *out (optional) is a handle for
 *  mp_finalize_run and mp_finalize_cancel, valid until one of them is called or the
 *  process exits. MP_EINVAL for a NULL fn, MP_ENOMEM.
 *  @retval MP_EINVAL  fn is NULL.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_finalize_new(mp_finalize_fn fn, void *arg, int exitpriority, mp_finalizer **out);
/** Runs f's function now, unless it ran already, and lets f go. NULL is fine. */
MP_API void mp_finalize_run(mp_finalizer *f);
/** Lets f go without running it (Python's cancel()). NULL is fine. */
MP_API void mp_finalize_cancel(mp_finalizer *f);
/** Runs the finalizers registered for exit whose priority is at least minpriority
 *  (MP_FINALIZE_NOT_AT_EXIT: all of them), in exit order: Python's _run_finalizers.
 *  Exit does this by itself; a program calls it to run them earlier. */
MP_API void mp_finalize_run_all(int minpriority);

#ifdef __cplusplus
}
#endif

#endif
