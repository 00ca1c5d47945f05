/* What the Unix start methods (fork, spawn, forkserver, apr) share: Python's exit code
 * and signal numbers, a child we are the parent of (pidfd + waitpid), and the channel
 * an exec'd child reads its launch from and reports on. */
#ifndef MP_BACKENDS_UNIX_H
#define MP_BACKENDS_UNIX_H

#include <sys/types.h>

#include "../core/backend.h"
#include "../core/os_unix.h"

/** Python's exitcode from a wait status: the exit status, or -signal. */
int mp__unix_exitcode(int status);
/** MP__SIG_* as a signal number; 0 for an unknown one. */
int mp__unix_signo(int sig);

/** A child we are the parent of: the state behind mp__started for fork, spawn, apr. */
typedef struct mp__unix_child {
    pid_t pid;
    int pidfd; /* the sentinel */
    bool reaped;
} mp__unix_child;

/** Takes on a new child pid: *out gets its pid, pidfd and state. On failure the child
 *  is killed and reaped. */
int mp__unix_child_adopt(pid_t pid, mp__started *out);
/** Waits for the child to report on chan (the report's error, or MP_ECHILD when it
 *  ended first); on failure kills, reaps and frees it. chan is left open. */
int mp__unix_child_await(mp__started *st, int chan, const char *who);
int mp__unix_child_wait(void *state, double timeout, int *exitcode);
int mp__unix_child_signal(void *state, int sig);
void mp__unix_child_release(void *state);

/** Parent side of spawn/apr, once the child exists: adopts pid, sends the payload on
 *  chan and awaits the report. On failure the child is killed and reaped. */
int mp__unix_exec_handshake(pid_t pid, int chan, const mp__start_req *req, const char *who,
                            mp__started *out);
/** Child side of spawn/apr: reads the payload on chan, runs the child; returns only
 *  when the launch could not even be read. */
int mp__unix_exec_child(int chan, int *handles, size_t nhandles);

#endif
