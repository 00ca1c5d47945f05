/* forkserver: one single-threaded server process, started like spawn, forks every
 * child. The client talks to it over a private socketpair (nobody else holds an end,
 * so no other process or user can make it fork); each request carries the launch and,
 * by SCM_RIGHTS, a status socket plus the handles to transfer. The status socket then
 * carries tagged messages to the client, which make it the child's sentinel:
 *
 *   'E' report            the server could not fork (the socket closes after it)
 *   'S' i64 pid, report   from the child itself: its bootstrap worked or not
 *   'X' i32 exit code     from the server, once it has reaped the child
 *
 * The child writes 'S' before it can end and the server writes 'X' only after, so
 * they never cross. If the server dies, the next start brings up a new one. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "unix.h"

extern char **environ;

#define FS_MAGIC 0x5346504du /* "MPFS" */
#define FS_MAX_FDS 250       /* below the kernel's SCM_MAX_FD */

typedef struct fs_req_hdr {
    uint32_t magic;
    uint32_t nfds;
    uint64_t len;
} fs_req_hdr;

/* ---- the preload list (Python's set_forkserver_preload) ---- */

static pthread_mutex_t pre_mu = PTHREAD_MUTEX_INITIALIZER;
static char **g_preload;

int mp_set_forkserver_preload(const char *const *libs, size_t n) {
    if (n && !libs) return mp__err(MP_EINVAL, "mp_set_forkserver_preload: libs is NULL");
    char **list = mp__calloc(n + 1, sizeof *list);
    if (!list) return mp__err(MP_ENOMEM, "mp_set_forkserver_preload: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!libs[i] || !(list[i] = mp__strdup(libs[i]))) {
            for (size_t j = 0; j < i; j++) mp__free(list[j]);
            mp__free(list);
            return mp__err(libs[i] ? MP_ENOMEM : MP_EINVAL,
                           "mp_set_forkserver_preload: bad entry %zu", i);
        }
    }
    pthread_mutex_lock(&pre_mu);
    char **old = g_preload;
    g_preload = list;
    pthread_mutex_unlock(&pre_mu);
    for (size_t i = 0; old && old[i]; i++) mp__free(old[i]);
    mp__free(old);
    return 0;
}

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
static void fs_register_atfork(void) {
    pthread_atfork(fs_atfork_prepare, fs_atfork_parent, fs_atfork_child);
}

/* Under fs_mu. */
static void fs_stop_locked(double grace) {
    if (fs_ctl >= 0) close(fs_ctl);
    fs_ctl = -1;
    if (fs_pid > 0) {
        /* EOF on the control socket makes it exit; do not wait forever on a stuck one. */
        if (fs_pidfd < 0 || mp__os_handle_wait(fs_pidfd, grace) != 0) kill(fs_pid, SIGKILL);
        while (waitpid(fs_pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    if (fs_pidfd >= 0) close(fs_pidfd);
    fs_pidfd = -1;
    fs_pid = -1;
}

static int fs_start_server_locked(const char *exe) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return mp__os_err("forkserver: socketpair");
    pthread_mutex_lock(&pre_mu);
    size_t npre = 0;
    while (g_preload && g_preload[npre]) npre++;
    char **argv = mp__calloc(npre + 5, sizeof *argv);
    for (size_t i = 0; argv && i < npre; i++) argv[4 + i] = g_preload[i];
    pthread_mutex_unlock(&pre_mu);
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
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, tmp, 3);
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
    const char *path = strcmp(exe, mp__os_self_exe()) == 0 ? "/proc/self/exe" : exe;
    pid_t pid;
    int e = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) {
        rc = mp__err_os(MP_ECHILD, e, "forkserver: cannot run %s: %s", exe, strerror(e));
        goto done;
    }
    /* Only the server may hold its end now, or its death would never read as EOF. */
    close(tmp);
    tmp = -1;
    close(sv[1]);
    sv[1] = -1;
    fs_pid = pid;
    mp__err_mute();
    if (mp__os_pidfd_open(pid, &fs_pidfd) != 0) fs_pidfd = -1;
    mp__err_unmute();
    fs_ctl = sv[0];
    sv[0] = -1;
    /* The server says it is ready once its preloads are in. */
    char ok;
    if (mp__os_read_all(fs_ctl, &ok, 1) != 0 || ok != 'R') {
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
    if (nfds > FS_MAX_FDS)
        return mp__err(MP_EINVAL, "forkserver: too many handles (%zu)", req->nhandles);
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
        int rc = mp__os_write_all(fs_ctl, (char *)&h + sent, sizeof h - sent);
        if (rc) return rc;
        sent = sizeof h;
    }
    sent -= sizeof h;
    return mp__os_write_all(fs_ctl, (const char *)req->payload + sent, req->len - sent);
}

/* Reads the child's first word on the status socket (see the top of the file). */
static int fs_read_answer(int status, int64_t *pid, bool *server_gone) {
    unsigned char tag;
    *server_gone = false;
    if (mp__os_read_all(status, &tag, 1) != 0) {
        *server_gone = true;
        return mp__err(MP_ECHILD, "forkserver: the server ended before answering");
    }
    if (tag == 'X') {
        int32_t code = 255;
        mp__os_read_all(status, &code, sizeof code);
        return mp__err(MP_ECHILD,
                       "forkserver: the child ended (exit code %d) before it could start",
                       (int)code);
    }
    if (tag == 'S' && mp__os_read_all(status, pid, sizeof *pid) != 0)
        return mp__err(MP_ECHILD, "forkserver: the child ended before it could start");
    if (tag != 'S' && tag != 'E')
        return mp__err(MP_EPROTO, "forkserver: unexpected answer %#x", tag);
    return mp__report_recv(status, "forkserver");
}

/* One attempt; *retry says the server was found dead and a new one may do better. */
static int fs_try_start(const mp__start_req *req, mp__started *out, bool *retry) {
    *retry = false;
    int st[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) != 0)
        return mp__os_err("forkserver: socketpair");
    pthread_mutex_lock(&fs_mu);
    int rc = 0;
    if (fs_ctl >= 0 && fs_pidfd >= 0 && mp__os_handle_wait(fs_pidfd, 0) == 0)
        fs_stop_locked(0); /* it died */
    if (fs_ctl < 0) rc = fs_start_server_locked(req->executable);
    if (!rc) {
        rc = fs_send_request(req, st[1]);
        if (rc) {
            fs_stop_locked(0);
            *retry = true;
            rc = mp__err_wrap(MP_ECHILD, "forkserver: cannot reach the server");
        }
    }
    pthread_mutex_unlock(&fs_mu);
    close(st[1]);
    if (rc) {
        close(st[0]);
        return rc;
    }
    int64_t pid = -1;
    bool gone = false;
    fs_child *c = mp__calloc(1, sizeof *c);
    rc = c ? fs_read_answer(st[0], &pid, &gone) : mp__err(MP_ENOMEM, "forkserver: out of memory");
    if (rc) {
        mp__free(c);
        close(st[0]);
        if (gone) {
            /* The server is gone (maybe still exiting, its pidfd not ready yet): drop it
             * so the retry starts a fresh one. */
            pthread_mutex_lock(&fs_mu);
            fs_stop_locked(0);
            pthread_mutex_unlock(&fs_mu);
            *retry = true;
        }
        return rc;
    }
    c->pid = (pid_t)pid;
    c->status = st[0];
    mp__err_mute();
    if (mp__os_pidfd_open(pid, &c->pidfd) != 0) c->pidfd = -1; /* ended already */
    mp__err_unmute();
    out->pid = pid;
    out->sentinel = st[0];
    out->state = c;
    return 0;
}

static int fs_start(const mp__start_req *req, mp__started *out) {
    pthread_once(&fs_once, fs_register_atfork);
    bool retry;
    int rc = fs_try_start(req, out, &retry);
    if (rc && retry) rc = fs_try_start(req, out, &retry);
    return rc;
}

static int fs_wait(void *state, double timeout, int *exitcode) {
    fs_child *c = state;
    int rc = mp__os_handle_wait(c->status, timeout);
    if (rc) return rc;
    unsigned char tag = 0;
    int32_t code = 255;
    /* The server gone before the child: the code is lost; Python reports 255 too. */
    mp__err_mute();
    if (mp__os_read_all(c->status, &tag, 1) != 0 || tag != 'X' ||
        mp__os_read_all(c->status, &code, sizeof code) != 0)
        code = 255;
    mp__err_unmute();
    /* The socket is the sentinel and must stay readable now that 'X' is read, also
     * before the server closes its end: a shut down receive side polls readable. */
    shutdown(c->status, SHUT_RD);
    *exitcode = code;
    return 0;
}

static int fs_signal(void *state, int sig) {
    fs_child *c = state;
    int signo = mp__unix_signo(sig);
    if (!signo) return mp__err(MP_EINVAL, "signal: unknown signal %d", sig);
    if (c->pidfd < 0) return 0;
    return mp__os_pidfd_signal(c->pidfd, signo);
}

static void fs_release(void *state) {
    fs_child *c = state;
    if (!c) return;
    close(c->status);
    if (c->pidfd >= 0) close(c->pidfd);
    mp__free(c);
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

/* A tagged report, in one write so the client never sees half of one. */
static void send_report(int fd, unsigned char tag, const int64_t *pid, int rc, const char *msg) {
    unsigned char buf[1 + 8 + MP__REPORT_MAX];
    size_t n = 0;
    buf[n++] = tag;
    if (pid) {
        memcpy(buf + n, pid, sizeof *pid);
        n += sizeof *pid;
    }
    n += mp__report_encode(rc, msg, buf + n);
    mp__err_mute();
    mp__os_write_all(fd, buf, n);
    mp__err_unmute();
}

/* The server could not fork: 'E'. */
static void srv_reply_error(int fd, int rc, const char *msg) {
    send_report(fd, 'E', NULL, rc, msg);
}

/* The child's report hook: 'S' with its pid, then it lets go of the status socket. */
static void child_report(void *ctx, int rc, const char *msg) {
    int *fd = ctx;
    int64_t pid = getpid();
    send_report(*fd, 'S', &pid, rc, msg);
    close(*fd);
    *fd = -1;
}

static void srv_reap(srv *s) {
    struct signalfd_siginfo si;
    while (read(s->sfd, &si, sizeof si) > 0) {}
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < s->n; i++) {
            if (s->kids[i].pid != pid) continue;
            unsigned char buf[5] = {'X'};
            int32_t code = mp__unix_exitcode(status);
            memcpy(buf + 1, &code, sizeof code);
            mp__err_mute();
            mp__os_write_all(s->kids[i].status, buf, sizeof buf);
            mp__err_unmute();
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
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t r;
    while ((r = recvmsg(s->ctl, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
    if (r <= 0) return false;
    int fds[FS_MAX_FDS];
    size_t nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < FS_MAX_FDS; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if ((size_t)r < sizeof h && mp__os_read_all(s->ctl, (char *)&h + r, sizeof h - (size_t)r) != 0)
        return false;
    /* Only our parent holds the other end; a bad request is a bug, so end cleanly. */
    if (h.magic != FS_MAGIC || h.nfds != nfds || nfds < 1 || h.len > ((uint64_t)1 << 40))
        return false;
    void *payload = mp__malloc((size_t)h.len);
    if (!payload || mp__os_read_all(s->ctl, payload, (size_t)h.len) != 0) {
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
    if (s->n == s->cap) {
        /* Room first: a child we could not track would leave its client waiting. */
        size_t cap = s->cap ? s->cap * 2 : 16;
        srv_child *k = mp__realloc(s->kids, cap * sizeof *k);
        if (!k) {
            srv_reply_error(status, MP_ENOMEM, "forkserver: out of memory");
            mp__launch_clear(&l);
            goto drop;
        }
        s->kids = k;
        s->cap = cap;
    }
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        fds[0] = status;
        mp__os_close_fds_except(fds, nfds);
        mp__process_after_fork_child();
        mp_os_handle hs[FS_MAX_FDS];
        for (size_t i = 1; i < nfds; i++) hs[i - 1] = fds[i];
        mp__child_run(&l, hs, nfds - 1, child_report, &status);
        mp__os_exit(1); /* only a failed bootstrap comes back */
    }
    mp__launch_clear(&l);
    if (pid < 0) {
        srv_reply_error(status, mp__os_err("fork"), mp_last_error_message());
        goto drop;
    }
    s->kids[s->n++] = (srv_child){pid, status};
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
        if (mp__os_dlopen(argv[i]) != 0)
            fprintf(stderr, "multiproc forkserver: preload: %s\n", mp_last_error_message());
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    s.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sfd < 0) return mp__os_err("forkserver: signalfd");
    if (mp__os_write_all(s.ctl, "R", 1) != 0) mp__os_exit(0);
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
