/* Helpers shared by the posix OS layer and the posix backends. */
#ifndef MP_POSIX_POSIX_H
#define MP_POSIX_POSIX_H

#include <sys/types.h>

#include "../backends/backend.h"

/** poll() for readability: 0, MP_ETIMEDOUT (no message), or an error. */
int mp__posix_poll_in(int fd, double timeout);
/** pidfd_open with close-on-exec; -1 and errno on failure. */
int mp__posix_pidfd_open(pid_t pid);
/** Python's exitcode from a wait status: the exit status, or -signal. */
int mp__posix_exitcode(int status);
/** write/read the whole buffer, retrying on EINTR; MP_EPIPE / MP_EOF on a closed peer. */
int mp__posix_write_all(int fd, const void *buf, size_t n);
int mp__posix_read_all(int fd, void *buf, size_t n);
/** Closes every fd >= 3 except those in keep. */
void mp__posix_close_fds_except(const int *keep, size_t n);

/** A child we are the parent of (fork, spawn, apr): its pid and pidfd. */
typedef struct mp__posix_child {
    pid_t pid;
    int pidfd;
} mp__posix_child;

/** Sets p->bk/pid/sentinel for a new child pid. Kills and reaps it on failure. */
int mp__posix_child_adopt(mp_process *p, pid_t pid);
int mp__posix_child_wait(mp_process *p, double timeout);
int mp__posix_child_signal(mp_process *p, int sig);
void mp__posix_child_release(mp_process *p);
int mp__posix_signo(int sig);

/** The bootstrap report on an exec'd child's channel: i32 rc, u32 len, message. */
void mp__posix_report(void *chan_fd_ptr, int rc, const char *msg);
/** Reads a report; a closed channel is MP_ECHILD. */
int mp__posix_read_report(int fd, const char *who);
/** Sends a payload: u64 length + bytes. */
int mp__posix_send_payload(int fd, const void *payload, size_t len);
/** Parent side of spawn/apr once the child exists: adopt pid, send the payload on
 *  chan, read the report; on failure the child is killed and reaped. */
int mp__posix_child_handshake(mp_process *p, pid_t pid, int chan, const mp__start_req *req,
                              const char *who);
/** Child side of spawn/apr: reads the payload on chan, runs the child, exits. */
int mp__posix_exec_child(int chan, int *handles, size_t nhandles);

#endif
