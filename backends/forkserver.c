/* forkserver: one single-threaded server process, started like spawn, forks every
 * child. The client talks to it over a private socketpair (nobody else holds an end,
 * so no other process or user can make it fork); each request carries the launch and,
 * by SCM_RIGHTS, a status socket plus the handles to transfer. The server answers on
 * the status socket with the child's pid, and later with its exit code, which makes
 * that socket the child's sentinel. If the server dies, the next start brings up a new
 * one. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/os.h"
#include "../posix/posix.h"

extern char **environ;

#define FS_MAGIC 0x5346504du /* "MPFS" */
#define FS_MAX_FDS 250       /* below the kernel's SCM_MAX_FD */

typedef struct fs_req_hdr {
    uint32_t magic;
    uint32_t nfds;
    uint64_t len;
} fs_req_hdr;

/* ---- client ---- */

static pthread_mutex_t fs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fs_once = PTHREAD_ONCE_INIT;
static int fs_ctl = -1;   /* our end of the control socket */
static pid_t fs_pid = -1; /* the server */
static int fs_pidfd = -1;

/* A forked child is not the server's client: it must not keep the server alive nor
 * be able to talk to it. */
static void fs_atfork_child(void) {
    pthread_mutex_init(&fs_mu, NULL);
    if (fs_ctl >= 0) close(fs_ctl);
    if (fs_pidfd >= 0) close(fs_pidfd);
    fs_ctl = fs_pidfd = -1;
    fs_pid = -1;
}
static void fs_atfork_prepare(void) { pthread_mutex_lock(&fs_mu); }
static void fs_atfork_parent(void) { pthread_mutex_unlock(&fs_mu); }
static void fs_register_atfork(void) { pthread_atfork(fs_atfork_prepare, fs_atfork_parent, fs_atfork_child); }

/* Under fs_mu. */
static void fs_stop_locked(double grace) {
    if (fs_ctl >= 0) close(fs_ctl);
    fs_ctl = -1;
    if (fs_pid > 0) {
        /* EOF on the control socket makes it exit; do not wait forever on a stuck one. */
        if (fs_pidfd < 0 || mp__posix_poll_in(fs_pidfd, grace) != 0) kill(fs_pid, SIGKILL);
        while (waitpid(fs_pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    if (fs_pidfd >= 0) close(fs_pidfd);
    fs_pidfd = -1;
    fs_pid = -1;
}

static int fs_start_server_locked(const char *exe) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return mp__os_err("forkserver: socketpair");
    const char *const *pre = mp__forkserver_preload();
    size_t npre = 0;
    while (pre[npre]) npre++;
    char **argv = mp__calloc(npre + 5, sizeof *argv);
    int tmp = fcntl(sv[1], F_DUPFD_CLOEXEC, 4);
    int rc = 0;
    if (!argv || tmp < 0) {
        rc = argv ? mp__os_err("forkserver: dup") : mp__err(MP_ENOMEM, "forkserver: out of memory");
        goto done;
    }
    argv[0] = (char *)exe;
    argv[1] = "--mp-child";
    argv[2] = "forkserver";
    argv[3] = "3";
    for (size_t i = 0; i < npre; i++) argv[4 + i] = (char *)pre[i];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, tmp, 3);
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
    const char *path = strcmp(exe, mp__os_self_exe()) == 0 ? "/proc/self/exe" : exe;
    pid_t pid;
    int e = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        rc = mp__err(MP_ECHILD, "forkserver: cannot run %s: %s", exe, strerror(e));
        goto done;
    }
    /* Only the server may hold its end now, or its death would never read as EOF. */
    close(tmp);
    tmp = -1;
    close(sv[1]);
    sv[1] = -1;
    fs_pid = pid;
    fs_pidfd = mp__posix_pidfd_open(pid);
    fs_ctl = sv[0];
    sv[0] = -1;
    /* The server says it is ready once its preloads are in. */
    char ok;
    if (mp__posix_read_all(fs_ctl, &ok, 1) != 0 || ok != 'R') {
        fs_stop_locked(0);
        rc = mp__err(MP_ECHILD, "forkserver: the server did not start");
    }
done:
    if (tmp >= 0) close(tmp);
    if (sv[0] >= 0) close(sv[0]);
    if (sv[1] >= 0) close(sv[1]);
    mp__free(argv);
    return rc;
}

typedef struct fs_child {
    pid_t pid;
    int status; /* our end of the status socket: the sentinel */
    int pidfd;  /* to signal the very process, not a reused pid; -1 if it was gone */
} fs_child;

static int fs_send_request(const mp__start_req *req, int status_end) {
    size_t nfds = 1 + req->nhandles;
    if (nfds > FS_MAX_FDS) return mp__err(MP_EINVAL, "forkserver: too many handles (%zu)", req->nhandles);
    fs_req_hdr h = {FS_MAGIC, (uint32_t)nfds, req->len};
    size_t cl = CMSG_SPACE(nfds * sizeof(int));
    char *cbuf = mp__calloc(1, cl);
    if (!cbuf) return mp__err(MP_ENOMEM, "forkserver: out of memory");
    /* Header and launch in one call: one wake-up of the server, not two. */
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)req->payload, req->len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = cbuf, .msg_controllen = cl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    int *fds = (int *)CMSG_DATA(c);
    fds[0] = status_end;
    for (size_t i = 0; i < req->nhandles; i++) fds[1 + i] = (int)req->handles[i];
    ssize_t w;
    while ((w = sendmsg(fs_ctl, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    mp__free(cbuf);
    if (w < 0) return mp__os_err("forkserver: sendmsg");
    size_t sent = (size_t)w;
    if (sent < sizeof h) {
        int rc = mp__posix_write_all(fs_ctl, (char *)&h + sent, sizeof h - sent);
        if (rc) return rc;
        sent = sizeof h;
    }
    sent -= sizeof h;
    return mp__posix_write_all(fs_ctl, (const char *)req->payload + sent, req->len - sent);
}

/* One attempt; *retry says the server was found dead and a new one may do better. */
static int fs_try_start(mp_process *p, const mp__start_req *req, bool *retry) {
    *retry = false;
    int st[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) != 0) return mp__os_err("forkserver: socketpair");
    pthread_mutex_lock(&fs_mu);
    int rc = 0;
    if (fs_ctl >= 0 && fs_pidfd >= 0 && mp__posix_poll_in(fs_pidfd, 0) == 0) fs_stop_locked(0); /* it died */
    if (fs_ctl < 0) rc = fs_start_server_locked(req->executable);
    if (!rc) {
        rc = fs_send_request(req, st[1]);
        if (rc) {
            fs_stop_locked(0);
            *retry = true;
            char why[300];
            snprintf(why, sizeof why, "%s", mp_last_error_message());
            rc = mp__err(MP_ECHILD, "forkserver: cannot reach the server: %s", why);
        }
    }
    pthread_mutex_unlock(&fs_mu);
    close(st[1]);
    if (rc) {
        close(st[0]);
        return rc;
    }
    int32_t r;
    if (mp__posix_read_all(st[0], &r, sizeof r) != 0) {
        /* The server is gone (maybe still exiting, its pidfd not ready yet): drop it so
         * the retry starts a fresh one. */
        close(st[0]);
        pthread_mutex_lock(&fs_mu);
        fs_stop_locked(0);
        pthread_mutex_unlock(&fs_mu);
        *retry = true;
        return mp__err(MP_ECHILD, "forkserver: the server ended before answering");
    }
    if (r != 0) {
        uint32_t n = 0;
        char msg[400] = "";
        if (mp__posix_read_all(st[0], &n, sizeof n) == 0) {
            size_t take = n < sizeof msg - 1 ? n : sizeof msg - 1;
            if (mp__posix_read_all(st[0], msg, take) != 0) take = 0;
            msg[take] = '\0';
        }
        close(st[0]);
        if (strcmp(mp_err_name(r), "MP_UNKNOWN") == 0) r = MP_ECHILD;
        return mp__err(r, "forkserver: %s", msg[0] ? msg : mp_strerror(r));
    }
    int64_t pid;
    fs_child *c = mp__calloc(1, sizeof *c);
    if (mp__posix_read_all(st[0], &pid, sizeof pid) != 0 || !c) {
        mp__free(c);
        close(st[0]);
        return mp__err(MP_ECHILD, "forkserver: no pid from the server");
    }
    c->pid = (pid_t)pid;
    c->status = st[0];
    c->pidfd = mp__posix_pidfd_open(c->pid);
    p->bk = c;
    p->pid = pid;
    p->sentinel = st[0];
    return 0;
}

static int fs_start(mp_process *p, const mp__start_req *req) {
    pthread_once(&fs_once, fs_register_atfork);
    bool retry;
    int rc = fs_try_start(p, req, &retry);
    if (rc && retry) rc = fs_try_start(p, req, &retry);
    return rc;
}

static int fs_wait(mp_process *p, double timeout) {
    fs_child *c = p->bk;
    int rc = mp__posix_poll_in(c->status, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(MP_ETIMEDOUT, "join: timed out after %.3f s", timeout);
    if (rc) return rc;
    int32_t code;
    /* The server gone before the child: the code is lost; Python reports 255 too. */
    p->exitcode = mp__posix_read_all(c->status, &code, sizeof code) == 0 ? code : 255;
    return 0;
}

static int fs_signal(mp_process *p, int sig) {
    fs_child *c = p->bk;
    int signo = mp__posix_signo(sig);
    if (!signo) return mp__err(MP_EINVAL, "signal: unknown signal %d", sig);
    if (c->pidfd < 0) return 0;
    if (syscall(SYS_pidfd_send_signal, c->pidfd, signo, NULL, 0) == 0 || errno == ESRCH) return 0;
    return mp__os_err("pidfd_send_signal");
}

static void fs_release(mp_process *p) {
    fs_child *c = p->bk;
    if (!c) return;
    close(c->status);
    if (c->pidfd >= 0) close(c->pidfd);
    mp__free(c);
    p->bk = NULL;
    p->sentinel = MP_INVALID_OS_HANDLE;
}

static void fs_shutdown(void) {
    pthread_mutex_lock(&fs_mu);
    fs_stop_locked(5.0);
    pthread_mutex_unlock(&fs_mu);
}

/* ---- server ---- */

typedef struct srv_child {
    pid_t pid;
    int status;
} srv_child;

typedef struct srv {
    int ctl, sfd;
    srv_child *kids;
    size_t n, cap;
} srv;

static void srv_reply_error(int fd, int rc, const char *msg) {
    int32_t r = rc;
    uint32_t n = (uint32_t)strlen(msg);
    if (mp__posix_write_all(fd, &r, sizeof r) == 0 && mp__posix_write_all(fd, &n, sizeof n) == 0)
        mp__posix_write_all(fd, msg, n);
}

static void srv_reap(srv *s) {
    struct signalfd_siginfo si;
    while (read(s->sfd, &si, sizeof si) > 0) {}
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < s->n; i++) {
            if (s->kids[i].pid != pid) continue;
            int32_t code = mp__posix_exitcode(status);
            mp__posix_write_all(s->kids[i].status, &code, sizeof code);
            close(s->kids[i].status);
            s->kids[i] = s->kids[--s->n];
            break;
        }
    }
}

/* Receives one request; false when the client is gone. */
static bool srv_request(srv *s) {
    fs_req_hdr h;
    char cbuf[CMSG_SPACE(FS_MAX_FDS * sizeof(int))];
    struct iovec iov = {&h, sizeof h};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t r;
    while ((r = recvmsg(s->ctl, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
    if (r <= 0) return false;
    int fds[FS_MAX_FDS];
    size_t nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < FS_MAX_FDS; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if ((size_t)r < sizeof h && mp__posix_read_all(s->ctl, (char *)&h + r, sizeof h - (size_t)r) != 0) return false;
    /* Only our parent holds the other end; a bad request is a bug, so end cleanly. */
    if (h.magic != FS_MAGIC || h.nfds != nfds || nfds < 1 || h.len > ((uint64_t)1 << 40)) return false;
    void *payload = mp__malloc((size_t)h.len);
    if (!payload || mp__posix_read_all(s->ctl, payload, (size_t)h.len) != 0) {
        mp__free(payload);
        return false;
    }
    int status = fds[0];
    mp__launch l;
    int rc = mp__launch_decode(payload, (size_t)h.len, &l);
    /* Resolve here, once: every child forked from us shares our layout. */
    if (!rc) rc = mp__launch_resolve(&l);
    if (rc) {
        srv_reply_error(status, rc, mp_last_error_message());
        if (l.name) mp__launch_clear(&l);
        goto drop;
    }
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        mp__posix_close_fds_except(fds + 1, nfds - 1);
        mp__process_after_fork_child();
        mp_os_handle hs[FS_MAX_FDS];
        for (size_t i = 1; i < nfds; i++) hs[i - 1] = fds[i];
        mp__os_exit(mp__child_run(&l, hs, nfds - 1, NULL, NULL));
    }
    mp__launch_clear(&l);
    if (pid < 0) {
        srv_reply_error(status, mp__os_err("fork"), mp_last_error_message());
        goto drop;
    }
    int32_t ok = 0;
    int64_t p64 = pid;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        srv_child *k = mp__realloc(s->kids, cap * sizeof *k);
        if (!k) {
            /* Cannot track it: the client sees EOF as the end (code 255). */
            close(status);
            goto keep_going;
        }
        s->kids = k;
        s->cap = cap;
    }
    mp__posix_write_all(status, &ok, sizeof ok);
    mp__posix_write_all(status, &p64, sizeof p64);
    s->kids[s->n++] = (srv_child){pid, status};
keep_going:
    for (size_t i = 1; i < nfds; i++) close(fds[i]);
    mp__free(payload);
    return true;
drop:
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
    mp__free(payload);
    return true;
}

/* argv: exe --mp-child forkserver <ctl fd> [preload...] */
static int fs_child_main(int argc, char **argv) {
    if (argc < 4) return mp__err(MP_EINVAL, "forkserver: bad command line");
    srv s = {.ctl = atoi(argv[3])};
    fcntl(s.ctl, F_SETFD, FD_CLOEXEC);
    /* Ctrl-C reaches the whole process group: the server is not the one to stop. */
    signal(SIGINT, SIG_IGN);
    for (int i = 4; i < argc; i++)
        if (mp__os_dlopen(argv[i]) != 0) fprintf(stderr, "multiproc forkserver: preload: %s\n", mp_last_error_message());
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    s.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sfd < 0) return mp__os_err("forkserver: signalfd");
    if (mp__posix_write_all(s.ctl, "R", 1) != 0) mp__os_exit(0);
    for (;;) {
        struct pollfd pf[2] = {{.fd = s.ctl, .events = POLLIN}, {.fd = s.sfd, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pf[1].revents) srv_reap(&s);
        if (pf[0].revents && !srv_request(&s)) break;
    }
    /* The client is gone. Children run on; their status sockets close with us. */
    mp__os_exit(0);
    return 0;
}

const struct mp_backend_ops mp__backend_forkserver = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "forkserver",
    .flags = 0,
    .start = fs_start,
    .wait = fs_wait,
    .signal = fs_signal,
    .release = fs_release,
    .child_main = fs_child_main,
    .shutdown = fs_shutdown,
};
