/* What the posix backends share: a child we are the parent of (pidfd + waitpid), the
 * bootstrap channel of exec'd children, and the daemon's watch on its parent. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/os.h"
#include "posix.h"

int mp__posix_exitcode(int status) {
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 255;
}

int mp__posix_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK) w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mp__os_err("write");
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mp__posix_read_all(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return mp__os_err("read");
        }
        if (r == 0) return mp__err(MP_EOF, "read: peer closed");
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void mp__posix_close_fds_except(const int *keep, size_t n) {
    int *k = malloc((n + 1) * sizeof *k);
    if (!k) {
        /* Cannot sort: close one by one around the keepers. */
        for (int fd = 3; fd < 65536; fd++) {
            bool kept = false;
            for (size_t i = 0; i < n; i++) kept |= keep[i] == fd;
            if (!kept) close(fd);
        }
        return;
    }
    memcpy(k, keep, n * sizeof *k);
    qsort(k, n, sizeof *k, cmp_int);
    int from = 3;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < from) continue;
        if (k[i] > from) syscall(SYS_close_range, (unsigned)from, (unsigned)k[i] - 1, 0u);
        from = k[i] + 1;
    }
    syscall(SYS_close_range, (unsigned)from, ~0u, 0u);
    free(k);
}

int mp__posix_child_adopt(mp_process *p, pid_t pid) {
    mp__posix_child *c = mp__calloc(1, sizeof *c);
    int fd = mp__posix_pidfd_open(pid);
    if (!c || fd < 0) {
        int rc = c ? mp__os_err("pidfd_open") : mp__err(MP_ENOMEM, "start: out of memory");
        mp__free(c);
        if (fd >= 0) close(fd);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        return rc;
    }
    c->pid = pid;
    c->pidfd = fd;
    p->bk = c;
    p->pid = pid;
    p->sentinel = fd;
    return 0;
}

int mp__posix_child_wait(mp_process *p, double timeout) {
    mp__posix_child *c = p->bk;
    int rc = mp__posix_poll_in(c->pidfd, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(MP_ETIMEDOUT, "join: timed out after %.3f s", timeout);
    if (rc) return rc;
    int status = 0;
    pid_t r;
    while ((r = waitpid(c->pid, &status, 0)) < 0 && errno == EINTR) {}
    /* ECHILD: someone else reaped it (SIGCHLD ignored); the code is lost. */
    p->exitcode = r == c->pid ? mp__posix_exitcode(status) : 255;
    return 0;
}

int mp__posix_signo(int sig) {
    switch (sig) {
    case MP__SIG_TERM: return SIGTERM;
    case MP__SIG_KILL: return SIGKILL;
    case MP__SIG_INT: return SIGINT;
    default: return 0;
    }
}

int mp__posix_child_signal(mp_process *p, int sig) {
    mp__posix_child *c = p->bk;
    int signo = mp__posix_signo(sig);
    if (!signo) return mp__err(MP_EINVAL, "signal: unknown signal %d", sig);
    /* Through the pidfd: never a stranger who got the pid after our child was reaped. */
    if (syscall(SYS_pidfd_send_signal, c->pidfd, signo, NULL, 0) == 0) return 0;
    if (errno == ESRCH) return 0;
    if (errno == ENOSYS && kill(c->pid, signo) == 0) return 0;
    return mp__os_err("pidfd_send_signal");
}

void mp__posix_child_release(mp_process *p) {
    mp__posix_child *c = p->bk;
    if (!c) return;
    if (p->state == MP__P_STARTED && mp__posix_poll_in(c->pidfd, 0) == 0) {
        /* Ended but not joined: reap it now so no zombie stays. */
        while (waitpid(c->pid, NULL, WNOHANG) < 0 && errno == EINTR) {}
    }
    close(c->pidfd);
    mp__free(c);
    p->bk = NULL;
    p->sentinel = MP_INVALID_OS_HANDLE;
}

/* ---- the exec'd child's channel ---- */

void mp__posix_report(void *chan_fd_ptr, int rc, const char *msg) {
    int fd = *(int *)chan_fd_ptr;
    size_t n = msg ? strlen(msg) : 0;
    unsigned char h[8];
    uint32_t urc = (uint32_t)rc, un = (uint32_t)n;
    memcpy(h, &urc, 4);
    memcpy(h + 4, &un, 4);
    if (mp__posix_write_all(fd, h, 8) == 0 && n) mp__posix_write_all(fd, msg, n);
    close(fd);
    *(int *)chan_fd_ptr = -1;
}

int mp__posix_read_report(int fd, const char *who) {
    unsigned char h[8];
    if (mp__posix_read_all(fd, h, 8) != 0)
        return mp__err(MP_ECHILD, "%s: the child ended before it could start", who);
    int32_t rc;
    uint32_t n;
    memcpy(&rc, h, 4);
    memcpy(&n, h + 4, 4);
    if (rc == 0) return 0;
    char msg[400] = "";
    size_t take = n < sizeof msg - 1 ? n : sizeof msg - 1;
    if (mp__posix_read_all(fd, msg, take) != 0) msg[0] = '\0';
    msg[take] = '\0';
    if (rc > 0 || strcmp(mp_err_name(rc), "MP_UNKNOWN") == 0) rc = MP_ECHILD;
    return mp__err(rc, "%s: child could not start: %s", who, msg[0] ? msg : mp_strerror(rc));
}

int mp__posix_send_payload(int fd, const void *payload, size_t len) {
    uint64_t n = len;
    int rc = mp__posix_write_all(fd, &n, sizeof n);
    if (!rc) rc = mp__posix_write_all(fd, payload, len);
    return rc;
}

int mp__posix_child_handshake(mp_process *p, pid_t pid, int chan, const mp__start_req *req,
                              const char *who) {
    int rc = mp__posix_child_adopt(p, pid);
    if (rc) return rc;
    rc = mp__posix_send_payload(chan, req->payload, req->len);
    int rep = mp__posix_read_report(chan, who);
    if (rep) rc = rep;
    if (!rc) return 0;
    /* The child never ran the target: reap it so no zombie stays behind. */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mp_last_error_message());
    mp__posix_child_signal(p, MP__SIG_KILL);
    mp__posix_child_wait(p, MP_FOREVER);
    mp__posix_child_release(p);
    return mp__err(rc, "%s", msg);
}

int mp__posix_exec_child(int chan, int *handles, size_t nhandles) {
    /* What arrived came without close-on-exec; the child's own children must not get it. */
    fcntl(chan, F_SETFD, FD_CLOEXEC);
    for (size_t i = 0; i < nhandles; i++) fcntl(handles[i], F_SETFD, FD_CLOEXEC);
    uint64_t len;
    int rc = mp__posix_read_all(chan, &len, sizeof len);
    if (rc) return rc;
    void *payload = mp__malloc((size_t)len);
    if (!payload) return mp__err(MP_ENOMEM, "child: out of memory for a %llu-byte launch", (unsigned long long)len);
    rc = mp__posix_read_all(chan, payload, (size_t)len);
    mp__launch l;
    if (!rc) rc = mp__launch_decode(payload, (size_t)len, &l);
    if (rc) {
        mp__posix_report(&chan, rc, mp_last_error_message());
        mp__os_exit(1);
    }
    mp_os_handle *hs = mp__calloc(nhandles ? nhandles : 1, sizeof *hs);
    if (!hs) return mp__err(MP_ENOMEM, "child: out of memory");
    for (size_t i = 0; i < nhandles; i++) hs[i] = handles[i];
    int code = mp__child_run(&l, hs, nhandles, mp__posix_report, &chan);
    mp__os_exit(code);
    return 0;
}

/* ---- a daemon dies with its parent ---- */

static void *watch_parent(void *arg) {
    int fd = (int)(intptr_t)arg;
    while (mp__posix_poll_in(fd, MP_FOREVER) != 0) {}
    /* The parent is gone: a daemon does not outlive it (nor do its own daemons, which
     * watch us in turn). */
    kill(getpid(), SIGKILL);
    return NULL;
}

int mp__os_die_with_parent(mp_os_handle parent_sentinel) {
    int fd = fcntl((int)parent_sentinel, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return mp__os_err("dup");
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
    int e = pthread_create(&t, &a, watch_parent, (void *)(intptr_t)fd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (e) {
        close(fd);
        errno = e;
        return mp__os_err("pthread_create");
    }
    return 0;
}
