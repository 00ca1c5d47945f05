/* The OS layer: one implementation per build (linux/ or win32/), plain functions. The
 * layer includes only core/os*.h (and its own headers); the more specific parts are
 * os_conn.h, os_net.h, os_sync.h, os_shm.h, os_queue.h, and for one kind of start
 * method os_unix.h / os_win32.h. */
#ifndef MP_CORE_OS_H
#define MP_CORE_OS_H

#include "internal.h"

/** Called once from mp_init / first use. */
int mp__os_init(void);

double mp__os_monotonic(void);
/** The CPU the calling thread runs on now (a hint: it may move), or -1. */
int mp__os_cpu(void);
/** The deadline of a timeout (mp__timeout's rules): MP_FOREVER for none. */
static inline double mp__deadline(double timeout) {
    return mp__forever(timeout) ? MP_FOREVER : mp__os_monotonic() + mp__timeout(timeout);
}
/** Seconds left until deadline: >= 0, or MP_FOREVER. */
static inline double mp__left(double deadline) {
    if (mp__forever(deadline)) return MP_FOREVER;
    double left = deadline - mp__os_monotonic();
    return left > 0 ? left : 0.0;
}
void mp__os_sleep(double seconds);
int64_t mp__os_getpid(void);
int64_t mp__os_thread_id(void);
int mp__os_cpu_count(void);
int mp__os_process_cpu_count(void);
int mp__os_random(void *buf, size_t n);
/** Path of this executable (static storage). */
const char *mp__os_self_exe(void);

/** Translates the current errno / GetLastError into an MP_E* code with a message
 *  "what: strerror" and records it. */
int mp__os_err(const char *what);

/** What a connection's handle is (connections, listeners). */
enum mp__conn_kind {
    MP__CONN_SOCKET = 1, /* a socket (socketpair, AF_INET, AF_UNIX; a SOCKET on Windows) */
    MP__CONN_PIPE = 2,   /* a pipe end (posix pipe; a named pipe HANDLE on Windows) */
};

int mp__os_handle_close(mp_os_handle h);
/** A non-inheritable duplicate. */
int mp__os_handle_dup(mp_os_handle h, mp_os_handle *out);
/** Waits until h is readable (fd) / signalled (HANDLE): 0, or MP_ETIMEDOUT, which is
 *  not recorded (the caller says what timed out). */
int mp__os_handle_wait(mp_os_handle h, double timeout);
/** A handle on this process that becomes ready when it ends (pidfd / process HANDLE). */
int mp__os_self_sentinel(mp_os_handle *out);

/** Process-wide recursive lock (fork-safe: held across fork by an atfork handler). */
void mp__os_global_lock(void);
void mp__os_global_unlock(void);

/** Function identity. */
int mp__os_fn_to_ref(void *fn, mp__fnref *out);
int mp__os_ref_to_fn(const mp__fnref *ref, void **out);

/** Says how a process with Python's exit code ended, for messages: "exited with code
 *  3", "was killed by signal 11 (SIGSEGV)", "ended with exception 0xc0000005 (access
 *  violation)". */
void mp__os_describe_exit(int exitcode, char *buf, size_t n);

/** Flush stdio and end the process now with code (no atexit handlers). */
void mp__os_exit(int code);
/** In a child about to run its target: from now on an exit runs the atexit handlers
 *  registered after this call, then before_exit, and ends the process there, without
 *  the handlers registered before (Linux: all of them are skipped, so a fork child
 *  never runs its parent's; Windows: the process's own run too, as a new process's do). */
void mp__os_exit_mark(void (*before_exit)(void));
/** Ends the child with code through exit(), so the handlers mp__os_exit_mark admits run. */
void mp__os_exit_handlers(int code);

/** Writes all n bytes to a blocking pipe, socket or file handle (retrying on EINTR):
 *  0, MP_EPIPE when the reader is gone, or another error. */
int mp__os_write_all(mp_os_handle h, const void *buf, size_t n);
/** Reads exactly n bytes from a blocking handle: 0, MP_EOF when it ended first. */
int mp__os_read_all(mp_os_handle h, void *buf, size_t n);

/** An in-process mutex and condition variable (pools, their results). */
typedef struct mp__mutex mp__mutex;
typedef struct mp__cond mp__cond;
int mp__os_mutex_new(mp__mutex **out);
void mp__os_mutex_free(mp__mutex *m); /* NULL is fine */
void mp__os_mutex_lock(mp__mutex *m);
void mp__os_mutex_unlock(mp__mutex *m);
int mp__os_cond_new(mp__cond **out);
void mp__os_cond_free(mp__cond *c); /* NULL is fine */
/** With m held: waits until signalled or timeout passes: 0 (perhaps spuriously: the
 *  caller looks again), MP_ETIMEDOUT (not recorded). */
int mp__os_cond_wait(mp__cond *c, mp__mutex *m, double timeout);
void mp__os_cond_signal(mp__cond *c);
void mp__os_cond_broadcast(mp__cond *c);

/** A thread-local key: each thread sets its own value; at a thread's exit a value that
 *  is not NULL is handed to dtor (posix: a pthread key; Windows: a fiber-local slot). */
typedef struct mp__tls mp__tls;
int mp__os_tls_new(void (*dtor)(void *), mp__tls **out);
int mp__os_tls_set(mp__tls *k, void *v);

/** Threads, for the dummy backend and the pool's result handler. */
typedef struct mp__thread mp__thread;
int mp__os_thread_start(void (*fn)(void *), void *arg, mp__thread **out);
/** Ready when the thread function has returned. Owned by the thread object. */
mp_os_handle mp__os_thread_sentinel(const mp__thread *t);
/** 0 once the thread ended (and was joined), MP_ETIMEDOUT. */
int mp__os_thread_join(mp__thread *t, double timeout);
/** Native id of the thread (valid once started). */
int64_t mp__os_thread_native_id(const mp__thread *t);
/** Frees a joined thread, or detaches a running one. */
void mp__os_thread_free(mp__thread *t);

/** In a daemonic child: make sure this process dies when the parent does, even by
 *  SIGKILL (posix: a watcher thread on the parent's sentinel; Windows: a no-op, the
 *  parent's kill-on-close Job object does it). */
int mp__os_die_with_parent(mp_os_handle parent_sentinel);

/** Loads a shared library by path (forkserver preload). */
int mp__os_dlopen(const char *path);

#endif
