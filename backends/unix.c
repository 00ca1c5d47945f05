/* What the Unix start methods share: a child we are the parent of (pidfd + waitpid),
 * and the bootstrap channel of exec'd children (spawn, apr). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unix.h"

int mp__unix_exitcode(int status) {
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 255;
}

int mp__unix_signo(int sig) {
    switch (sig) {
    case MP__SIG_TERM:
        return SIGTERM;
    case MP__SIG_KILL:
        return SIGKILL;
    case MP__SIG_INT:
        return SIGINT;
    default:
        return 0;
    }
}

static void kill_and_reap(pid_t pid) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

int mp__unix_child_adopt(pid_t pid, mp__started *out) {
    mp__unix_child *c = mp__calloc(1, sizeof *c);
    int fd = -1;
    int rc = c ? mp__os_pidfd_open(pid, &fd) : mp__err(MP_ENOMEM, "start: out of memory");
    if (rc) {
        mp__free(c);
        kill_and_reap(pid);
        return rc;
    }
    c->pid = pid;
    c->pidfd = fd;
    out->pid = pid;
    out->sentinel = fd;
    out->state = c;
    return 0;
}

int mp__unix_child_await(mp__started *st, int chan, const char *who) {
    mp__unix_child *c = st->state;
    /* The channel first: a report written just before the child ended still counts.
     * The pidfd too: a copy of the child's end that leaked into another fork child
     * (from another thread) must not keep us waiting for an EOF. */
    struct pollfd pf[2] = {{.fd = chan, .events = POLLIN}, {.fd = c->pidfd, .events = POLLIN}};
    int rc;
    for (;;) {
        int r = poll(pf, 2, -1);
        if (r > 0) break;
        if (r < 0 && errno != EINTR) {
            rc = mp__os_err("start: poll");
            goto fail;
        }
    }
    if (pf[0].revents) {
        rc = mp__report_recv(chan, who);
        if (!rc) return 0;
    } else {
        rc = mp__err(MP_ECHILD, "%s: the child ended before it could start", who);
    }
fail:
    mp__err_mute();
    mp__unix_child_signal(c, MP__SIG_KILL);
    mp__err_unmute();
    c->reaped = true;
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {}
    mp__unix_child_release(c);
    st->state = NULL;
    return rc;
}

int mp__unix_child_wait(void *state, double timeout, int *exitcode) {
    mp__unix_child *c = state;
    int rc = mp__os_handle_wait(c->pidfd, timeout);
    if (rc) return rc;
    int status = 0;
    pid_t r;
    while ((r = waitpid(c->pid, &status, 0)) < 0 && errno == EINTR) {}
    c->reaped = true;
    /* ECHILD: someone else reaped it (SIGCHLD ignored); the code is lost. */
    *exitcode = r == c->pid ? mp__unix_exitcode(status) : 255;
    return 0;
}

int mp__unix_child_signal(void *state, int sig) {
    mp__unix_child *c = state;
    int signo = mp__unix_signo(sig);
    if (!signo) return mp__err(MP_EINVAL, "signal: unknown signal %d", sig);
    if (c->reaped) return 0;
    return mp__os_pidfd_signal(c->pidfd, signo);
}

void mp__unix_child_release(void *state) {
    mp__unix_child *c = state;
    if (!c) return;
    if (!c->reaped && mp__os_handle_wait(c->pidfd, 0) == 0) {
        /* Ended but not joined: reap it now so no zombie stays. */
        while (waitpid(c->pid, NULL, WNOHANG) < 0 && errno == EINTR) {}
    }
    close(c->pidfd);
    mp__free(c);
}

/* ---- the exec'd child's channel: u64 length + launch in, a report out ---- */

int mp__unix_exec_handshake(pid_t pid, int chan, const mp__start_req *req, const char *who,
                            mp__started *out) {
    mp__started st;
    int rc = mp__unix_child_adopt(pid, &st);
    if (rc) return rc;
    uint64_t n = req->len;
    /* A child that died early breaks the channel; its missing report says so. */
    mp__err_mute();
    if (mp__os_write_all(chan, &n, sizeof n) == 0) mp__os_write_all(chan, req->payload, req->len);
    mp__err_unmute();
    rc = mp__unix_child_await(&st, chan, who);
    if (!rc) *out = st;
    return rc;
}

int mp__unix_exec_child(int chan, int *handles, size_t nhandles) {
    /* What arrived came without close-on-exec; the child's own children must not get it. */
    fcntl(chan, F_SETFD, FD_CLOEXEC);
    for (size_t i = 0; i < nhandles; i++) fcntl(handles[i], F_SETFD, FD_CLOEXEC);
    mp_os_handle report = chan;
    uint64_t len;
    void *payload = NULL;
    mp_os_handle *hs = NULL;
    mp__launch l;
    int rc = mp__os_read_all(chan, &len, sizeof len);
    if (!rc && len > ((uint64_t)1 << 40))
        rc = mp__err(MP_EPROTO, "child: a %llu-byte launch", (unsigned long long)len);
    if (!rc && !(payload = mp__malloc((size_t)len)))
        rc = mp__err(MP_ENOMEM, "child: out of memory for a %llu-byte launch",
                     (unsigned long long)len);
    if (!rc) rc = mp__os_read_all(chan, payload, (size_t)len);
    if (!rc) rc = mp__launch_decode(payload, (size_t)len, &l);
    if (!rc && !(hs = mp__calloc(nhandles ? nhandles : 1, sizeof *hs)))
        rc = mp__err(MP_ENOMEM, "child: out of memory");
    if (rc) {
        mp__report_send(&report, rc, mp_last_error_message());
        mp__os_exit(1);
    }
    for (size_t i = 0; i < nhandles; i++) hs[i] = handles[i];
    mp__child_run(&l, hs, nhandles, mp__report_to_handle, &report);
    /* Only a failed bootstrap comes back: it has reported already. */
    mp__os_exit(1);
    return 0;
}
