/* forkserver: one single-threaded server process, started like spawn, forks every
 * child. The client talks to it over a private socketpair (nobody else holds an end,
 * so no other process or user can make it fork). A start goes one of two ways:
 *
 * Warm (Android's zygote): the server keeps a few children forked ahead of need
 * (mp_set_forkserver_warm, MP_FORKSERVER_WARM; 2 by default), each waiting on a
 * socketpair of its own. For each it sends the client an offer on the control socket
 * (its pid, by SCM_RIGHTS the client's end of that pair and a pidfd of the child). A
 * start takes one offer and sends the launch and the handles straight to that child:
 * one message to a process that exists already, no fork in the way. The child tells
 * the server it was taken (a byte on a pipe only the two share), and the server forks
 * the next one while this one runs. The pair is the child's status socket.
 *
 * Cold (no offer waiting, or warm children switched off): the request goes to the
 * server with the launch, a status socket and the handles; the server forks.
 *
 * Either way the status socket then carries tagged messages to the client, which make
 * it the child's sentinel:
 *
 *   'E' report            the server could not fork (the socket closes after it)
 *   'S' i64 pid, report   from the child itself: its bootstrap worked or not
 *   'X' i32 exit code     from the server, once it has reaped the child
 *
 * The child writes 'S' before it can end and the server writes 'X' only after, so
 * they never cross. An 'X' before any 'S' on a warm pair means the child died before
 * it took the launch (killed while waiting): the start is made again, cold. If the
 * server dies, the next start brings up a new one.
 *
 * A warm child serves one start. Until it is taken it holds nothing but its pair and
 * its pipe (it closes everything else it got from the server at once), ignores SIGINT
 * like the server, and dies with the server (PR_SET_PDEATHSIG; the server is single
 * threaded, so that is the process); a client that goes away closes its end of the
 * pair, which ends the child too. When the client closes the control socket the
 * server kills and reaps its warm children before it exits. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unix.h"

extern char **environ;

#define FS_MAGIC 0x5346504du       /* "MPFS": a start request */
#define FS_MAGIC_WARM 0x5746504du  /* "MPFW": the warm pool's new size (len) */
#define FS_MAGIC_OFFER 0x4f46504du /* "MPFO": server -> client, a warm child */
#define FS_MAX_FDS 250             /* below the kernel's SCM_MAX_FD */
#define FS_WARM_MAX 16
#define FS_WARM_DEFAULT 2
/* A warm child that dies before it is taken is replaced; this many in a row (no start
 * taken in between) and the server stops replacing them: a crash loop, not bad luck. */
#define FS_WARM_DEATHS_MAX 8
/* What the first receive of a request reads beyond the header, so a usual launch
 * takes one system call. */
#define FS_INLINE 8192

typedef struct fs_req_hdr {
    uint32_t magic;
    uint32_t nfds;
    uint64_t len;
} fs_req_hdr;

typedef struct fs_offer_msg {
    uint32_t magic;
    uint32_t zero;
    int64_t pid;
} fs_offer_msg;

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

/* ---- messages with descriptors ---- */

/* Sends header + payload (len bytes) with fds (none when nfds is 0); what one sendmsg
 * left over goes out plainly, the descriptors having gone with the first byte. */
static int fs_send(int sock, const fs_req_hdr *h, const void *payload, size_t len, const int *fds,
                   size_t nfds) {
    size_t cl = nfds ? CMSG_SPACE(nfds * sizeof(int)) : 0;
    char *cbuf = cl ? mp__calloc(1, cl) : NULL;
    if (cl && !cbuf) return mp__err(MP_ENOMEM, "forkserver: out of memory");
    /* Header and launch in one call: one wake-up of the reader, not two. */
    struct iovec iov[2] = {{(void *)h, sizeof *h}, {(void *)payload, len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (cl) {
        m.msg_control = cbuf;
        m.msg_controllen = cl;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t w;
    while ((w = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    mp__free(cbuf);
    if (w < 0) return mp__os_err("forkserver: sendmsg");
    size_t sent = (size_t)w;
    if (sent < sizeof *h) {
        int rc = mp__os_write_all(sock, (const char *)h + sent, sizeof *h - sent);
        if (rc) return rc;
        sent = sizeof *h;
    }
    sent -= sizeof *h;
    return mp__os_write_all(sock, (const char *)payload + sent, len - sent);
}

/* A message as the server or a warm child receives it: the header, the payload (read
 * with the header, when only_one and it fits FS_INLINE) and up to FS_MAX_FDS
 * descriptors (close-on-exec). 0, or -1 when the peer is gone or sent something that
 * is not a request (every descriptor that came is closed then). */
typedef struct fs_request {
    fs_req_hdr h;
    void *payload; /* h.len bytes, owned */
    int fds[FS_MAX_FDS];
    size_t nfds;
} fs_request;

static int fs_recv_request(int sock, fs_request *q, bool only_one) {
    char inl[FS_INLINE];
    char cbuf[CMSG_SPACE(FS_MAX_FDS * sizeof(int))];
    struct iovec iov[2] = {{&q->h, sizeof q->h}, {inl, sizeof inl}};
    /* Past the header only where nothing can follow this message (a warm child's pair):
     * on the control socket a read may run on into the next one, a receive stopping
     * only after a message that carries descriptors. */
    struct msghdr m = {.msg_iov = iov,
                       .msg_iovlen = only_one ? 2 : 1,
                       .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    q->payload = NULL;
    q->nfds = 0;
    ssize_t r;
    while ((r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
    if (r <= 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (q->nfds < FS_MAX_FDS)
                q->fds[q->nfds++] = fd;
            else
                close(fd);
        }
    }
    size_t got = (size_t)r;
    if (got < sizeof q->h && mp__os_read_all(sock, (char *)&q->h + got, sizeof q->h - got) != 0)
        goto bad;
    got = got < sizeof q->h ? 0 : got - sizeof q->h;
    /* Only our own processes hold the other end; anything else is a bug: end cleanly. */
    if (q->h.magic == FS_MAGIC_WARM && q->nfds == 0 && got == 0) return 0;
    if (q->h.magic != FS_MAGIC || q->h.nfds != q->nfds || q->nfds < 1 ||
        q->h.len > ((uint64_t)1 << 40) || got > q->h.len)
        goto bad;
    q->payload = mp__malloc(q->h.len ? (size_t)q->h.len : 1);
    if (!q->payload) goto bad;
    memcpy(q->payload, inl, got);
    if (got < q->h.len &&
        mp__os_read_all(sock, (char *)q->payload + got, (size_t)q->h.len - got) != 0)
        goto bad;
    return 0;
bad:
    mp__free(q->payload);
    q->payload = NULL;
    for (size_t i = 0; i < q->nfds; i++) close(q->fds[i]);
    q->nfds = 0;
    return -1;
}

/* ---- client ---- */

static pthread_mutex_t fs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t fs_once = PTHREAD_ONCE_INIT;
static int fs_ctl = -1;   /* our end of the control socket */
static pid_t fs_pid = -1; /* the server */
static int fs_pidfd = -1;
static int fs_warm = -1; /* the pool size; -1 until read from MP_FORKSERVER_WARM */

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
static int fs_warm_locked(void) {
    if (fs_warm < 0) {
        const char *env = getenv("MP_FORKSERVER_WARM");
        char *end = NULL;
        long v = env && *env ? strtol(env, &end, 10) : -1;
        fs_warm = (end && !*end && v >= 0 && v <= FS_WARM_MAX) ? (int)v : FS_WARM_DEFAULT;
    }
    return fs_warm;
}

/* A server found gone (killed, crashed): its pid, for the record the next one logs. */
static pid_t fs_lost_pid = -1;

/* Under fs_mu. */
static void fs_stop_locked(double grace) {
    /* Closing our end drops the offers still queued on it, and their children with them. */
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

/* Under fs_mu: the server was found gone. */
static void fs_lost_locked(void) {
    if (fs_pid > 0) fs_lost_pid = fs_pid;
    fs_stop_locked(0);
}

static int fs_start_server_locked(const char *exe) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return mp__os_err("forkserver: socketpair");
    pthread_mutex_lock(&pre_mu);
    size_t npre = 0;
    while (g_preload && g_preload[npre]) npre++;
    char **argv = mp__calloc(npre + 6, sizeof *argv);
    for (size_t i = 0; argv && i < npre; i++) argv[5 + i] = g_preload[i];
    pthread_mutex_unlock(&pre_mu);
    int tmp = fcntl(sv[1], F_DUPFD_CLOEXEC, 4);
    int rc = 0;
    if (!argv || tmp < 0) {
        rc = argv ? mp__os_err("forkserver: dup") : mp__err(MP_ENOMEM, "forkserver: out of memory");
        goto done;
    }
    char warm[16];
    snprintf(warm, sizeof warm, "%d", fs_warm_locked());
    argv[0] = (char *)exe;
    argv[1] = "--mp-child";
    argv[2] = "forkserver";
    argv[3] = "3";
    argv[4] = warm;
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
    if (fs_lost_pid > 0)
        mp_log(MP_LOG_WARNING, "the forkserver (pid %lld) has gone; a new one (pid %lld) starts",
               (long long)fs_lost_pid, (long long)pid);
    else
        mp_log(MP_LOG_DEBUG, "forkserver started (pid %lld)", (long long)pid);
    fs_lost_pid = -1;
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

/* A warm child offered by the server. */
typedef struct fs_offer {
    pid_t pid;
    int chan;  /* our end of its pair: where the launch goes, then its status socket */
    int pidfd; /* opened by the server, its parent: always that very process */
} fs_offer;

/* Under fs_mu: takes the next offer queued on the control socket. 1 and *o, 0 when
 * none is waiting, -1 when the server is gone or spoke out of turn. */
static int fs_take_offer_locked(fs_offer *o) {
    fs_offer_msg msg;
    char cbuf[CMSG_SPACE(2 * sizeof(int))];
    struct iovec iov = {&msg, sizeof msg};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t r;
    while ((r = recvmsg(fs_ctl, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    int fds[2], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); r > 0 && c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (nfds < 2)
                fds[nfds++] = fd;
            else
                close(fd);
        }
    }
    /* The server sends each offer in one message of its own, so a short one is a
     * broken server (or descriptors the kernel dropped: MSG_CTRUNC). */
    if (r != (ssize_t)sizeof msg || msg.magic != FS_MAGIC_OFFER || nfds != 2 ||
        (m.msg_flags & MSG_CTRUNC)) {
        for (int i = 0; i < nfds; i++) close(fds[i]);
        return -1;
    }
    o->pid = (pid_t)msg.pid;
    o->chan = fds[0];
    o->pidfd = fds[1];
    return 1;
}

/* Under fs_mu: closes the offers queued now (warm children switched off). */
static void fs_drop_offers_locked(void) {
    fs_offer o;
    while (fs_ctl >= 0 && fs_take_offer_locked(&o) == 1) {
        close(o.chan);
        close(o.pidfd);
    }
}

int mp_set_forkserver_warm(int n) {
    if (n < 0 || n > FS_WARM_MAX)
        return mp__err(MP_EINVAL, "mp_set_forkserver_warm: %d is not in 0..%d", n, FS_WARM_MAX);
    pthread_mutex_lock(&fs_mu);
    fs_warm = n;
    if (fs_ctl >= 0) {
        /* A server gone by now is found by the next start; nothing to report here. */
        fs_req_hdr h = {FS_MAGIC_WARM, 0, (uint64_t)n};
        mp__err_mute();
        (void)fs_send(fs_ctl, &h, NULL, 0, NULL, 0);
        mp__err_unmute();
        if (n == 0) fs_drop_offers_locked();
    }
    pthread_mutex_unlock(&fs_mu);
    return 0;
}

typedef struct fs_child {
    pid_t pid;
    int status; /* our end of the status socket: the sentinel */
    int pidfd;  /* to signal the very process, not a reused pid; -1 if it was gone */
} fs_child;

/* What reading the first answer found. */
enum { FS_ANS_STARTED, FS_ANS_ENDED, FS_ANS_GONE };

/* Reads the first message on the status socket (see the top of the file) and sets
 *what. The fixed part in one read that cannot run past this message: an 'S' is
 * exactly that long, and nothing follows an 'E' or an 'X'. */
static int fs_read_answer(int status, int64_t *pid, int *what) {
    unsigned char buf[1 + 8 + MP__REPORT_HEADER];
    size_t have = 0, need = sizeof buf;
    *what = FS_ANS_GONE;
    while (have < need) {
        ssize_t r = read(status, buf + have, need - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (have == 0) {
            if (buf[0] == 'X')
                need = 5;
            else if (buf[0] == 'E')
                need = 1 + MP__REPORT_HEADER;
            else if (buf[0] != 'S')
                return mp__err(MP_EPROTO, "forkserver: unexpected answer %#x", buf[0]);
        }
        have += (size_t)r;
    }
    if (have == 0) return mp__err(MP_ECHILD, "forkserver: the server ended before answering");
    if (buf[0] == 'X') {
        *what = FS_ANS_ENDED;
        int32_t code = 255;
        if (have >= 5) memcpy(&code, buf + 1, sizeof code);
        return mp__err(MP_ECHILD,
                       "forkserver: the child ended (exit code %d) before it could start",
                       (int)code);
    }
    if (buf[0] == 'S') *what = FS_ANS_STARTED;
    if (have < need) return mp__err(MP_ECHILD, "forkserver: the child ended before it could start");
    const unsigned char *rep = buf + 1;
    if (buf[0] == 'S') {
        memcpy(pid, buf + 1, sizeof *pid);
        rep += 8;
    }
    int code;
    size_t n;
    int rc = mp__report_header(rep, &code, &n);
    if (rc) return rc;
    if (code == 0) return 0;
    /* An 'E' read with its header may have brought part of its message. */
    char msg[MP__REPORT_MSG_MAX];
    size_t extra = have - need;
    if (extra > n) extra = n;
    memcpy(msg, buf + need, extra);
    if (n > extra && mp__os_read_all(status, msg + extra, n - extra) != 0) n = extra;
    return mp__report_error(code, msg, n, "forkserver");
}

/* What a failed attempt says about the next one. */
enum { FS_NO_RETRY, FS_RETRY, FS_RETRY_COLD };

/* A start through a warm child; on failure its descriptors are closed. */
static int fs_start_warm(const mp__start_req *req, fs_offer *o, fs_child *c, int *retry) {
    int *fds = mp__calloc(req->nhandles ? req->nhandles : 1, sizeof *fds);
    if (!fds) {
        close(o->chan);
        close(o->pidfd);
        return mp__err(MP_ENOMEM, "forkserver: out of memory");
    }
    for (size_t i = 0; i < req->nhandles; i++) fds[i] = (int)req->handles[i];
    fs_req_hdr h = {FS_MAGIC, (uint32_t)req->nhandles, req->len};
    int rc = fs_send(o->chan, &h, req->payload, req->len, fds, req->nhandles);
    mp__free(fds);
    int64_t pid = -1;
    int what = FS_ANS_GONE;
    if (!rc) rc = fs_read_answer(o->chan, &pid, &what);
    if (!rc && pid != o->pid)
        rc = mp__err(MP_EPROTO, "forkserver: child %lld answered for %lld", (long long)pid,
                     (long long)o->pid);
    if (rc) {
        /* Not taken (it died waiting, the server killed it or is gone): nothing of the
         * target ran, so the start is made again, cold, which also finds out whether the
         * server lives; a bootstrap that failed ('S') is the answer. */
        if (what != FS_ANS_STARTED) *retry = FS_RETRY_COLD;
        close(o->chan);
        close(o->pidfd);
        return rc;
    }
    c->pid = o->pid;
    c->status = o->chan;
    c->pidfd = o->pidfd;
    return 0;
}

/* One attempt; *retry says whether another may do better (the server was found dead:
 * a new one; a warm child died before it was taken: a cold start). */
static int fs_try_start(const mp__start_req *req, bool cold, mp__started *out, int *retry) {
    *retry = FS_NO_RETRY;
    size_t nfds = 1 + req->nhandles;
    if (nfds > FS_MAX_FDS)
        return mp__err(MP_EINVAL, "forkserver: too many handles (%zu)", req->nhandles);
    fs_child *c = mp__calloc(1, sizeof *c);
    if (!c) return mp__err(MP_ENOMEM, "forkserver: out of memory");
    int st[2] = {-1, -1};
    fs_offer o;
    int got = 0;
    pthread_mutex_lock(&fs_mu);
    int rc = 0;
    if (fs_ctl < 0) rc = fs_start_server_locked(req->executable);
    if (!rc && !cold && fs_warm_locked() > 0) {
        got = fs_take_offer_locked(&o);
        if (got < 0) {
            /* The server went away (EOF): a new one serves this start. */
            fs_lost_locked();
            got = 0;
            rc = fs_start_server_locked(req->executable);
        }
    } else if (!rc && fs_warm_locked() == 0) {
        fs_drop_offers_locked(); /* sent before the server heard of the 0 */
    }
    if (!rc && !got) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) != 0) {
            rc = mp__os_err("forkserver: socketpair");
        } else {
            int *fds = mp__calloc(nfds, sizeof *fds);
            if (!fds) {
                rc = mp__err(MP_ENOMEM, "forkserver: out of memory");
            } else {
                fds[0] = st[1];
                for (size_t i = 0; i < req->nhandles; i++) fds[1 + i] = (int)req->handles[i];
                fs_req_hdr h = {FS_MAGIC, (uint32_t)nfds, req->len};
                rc = fs_send(fs_ctl, &h, req->payload, req->len, fds, nfds);
                mp__free(fds);
                if (rc) {
                    fs_lost_locked();
                    *retry = FS_RETRY;
                    rc = mp__err_wrap(MP_ECHILD, "forkserver: cannot reach the server");
                }
            }
        }
    }
    pthread_mutex_unlock(&fs_mu);
    if (st[1] >= 0) close(st[1]);
    if (!rc && got) rc = fs_start_warm(req, &o, c, retry);
    if (!rc && !got) {
        int64_t pid = -1;
        int what;
        rc = fs_read_answer(st[0], &pid, &what);
        if (rc && what == FS_ANS_GONE) *retry = FS_RETRY;
        if (!rc) {
            c->pid = (pid_t)pid;
            c->status = st[0];
            st[0] = -1;
            mp__err_mute();
            if (mp__os_pidfd_open(pid, &c->pidfd) != 0) c->pidfd = -1; /* ended already */
            mp__err_unmute();
        }
    }
    if (st[0] >= 0) close(st[0]);
    if (rc) {
        mp__free(c);
        if (*retry == FS_RETRY) {
            /* The server is gone (maybe still exiting, its pidfd not ready yet): drop it
             * so the retry starts a fresh one. */
            pthread_mutex_lock(&fs_mu);
            fs_lost_locked();
            pthread_mutex_unlock(&fs_mu);
        }
        return rc;
    }
    out->pid = c->pid;
    out->sentinel = c->status;
    out->state = c;
    return 0;
}

static int fs_start(const mp__start_req *req, mp__started *out) {
    pthread_once(&fs_once, fs_register_atfork);
    bool cold = false;
    int rc = 0, retry = FS_NO_RETRY;
    /* At most: a dead warm child, then a dead server, then the start. */
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = fs_try_start(req, cold, out, &retry);
        if (!rc || retry == FS_NO_RETRY) break;
        if (retry == FS_RETRY_COLD) cold = true;
    }
    return rc;
}

static int fs_wait(void *state, double timeout, int *exitcode) {
    fs_child *c = state;
    int rc = mp__os_handle_wait(c->status, timeout);
    if (rc) return rc;
    unsigned char buf[5];
    int32_t code = 255;
    /* The server gone before the child: the code is lost; Python reports 255 too. */
    mp__err_mute();
    size_t have = 0;
    while (have < sizeof buf) {
        ssize_t r = read(c->status, buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r;
    }
    if (have == sizeof buf && buf[0] == 'X') memcpy(&code, buf + 1, sizeof code);
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

typedef struct srv_warm {
    pid_t pid;
    int note; /* the child says 'T' when it is taken (we answer 'A'), EOF when it is gone */
} srv_warm;

typedef struct srv {
    int ctl, sfd;
    pid_t self;
    srv_child *kids; /* every child not reaped yet, warm ones too */
    size_t n, cap;
    srv_warm warm[FS_WARM_MAX]; /* the children waiting to be taken */
    size_t nwarm;
    int want;   /* the pool size asked for */
    int deaths; /* warm children that died untaken since one was last taken */
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

/* What the child's report hook needs. */
typedef struct child_rep {
    int status;
    int note; /* a warm child's line to the server; -1 when forked cold */
} child_rep;

/* The child's report hook: 'S' with its pid, then it lets go of the status socket. A
 * warm child first waits for the server's 'A' to its 'T': a server killed before it
 * heard of the start would never report this child's end, so the child ends without a
 * word (nothing of the target ran) and the client starts it again, cold. */
static void child_report(void *ctx, int rc, const char *msg) {
    child_rep *r = ctx;
    if (r->note >= 0) {
        char a = 0;
        ssize_t n;
        while ((n = read(r->note, &a, 1)) < 0 && errno == EINTR) {}
        if (n != 1 || a != 'A') _exit(0);
        /* Taken and known: from here it runs on if the server dies, as a cold child. */
        prctl(PR_SET_PDEATHSIG, 0);
        close(r->note);
        r->note = -1;
    }
    int64_t pid = getpid();
    send_report(r->status, 'S', &pid, rc, msg);
    close(r->status);
    r->status = -1;
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

/* Room for one more child first: a child we could not track would leave its client
 * waiting. */
static int srv_room(srv *s) {
    if (s->n < s->cap) return 0;
    size_t cap = s->cap ? s->cap * 2 : 16;
    srv_child *k = mp__realloc(s->kids, cap * sizeof *k);
    if (!k) return mp__err(MP_ENOMEM, "forkserver: out of memory");
    s->kids = k;
    s->cap = cap;
    return 0;
}

/* In a child of the server: what a started child must not keep of the server's. */
static void child_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
}

/* Runs the launch in this child (forked cold or taken warm); never returns. fds[0] is
 * the status socket, the launch's handles follow. Takes l and the descriptors. */
static void child_go(mp__launch *l, int *fds, size_t nfds, int note) {
    mp_os_handle hs[FS_MAX_FDS];
    child_rep rep = {fds[0], note};
    for (size_t i = 1; i < nfds; i++) hs[i - 1] = fds[i];
    mp__child_run(l, hs, nfds - 1, child_report, &rep);
    mp__os_exit(1); /* only a failed bootstrap comes back */
}

/* Stack for a start's bootstrap, touched ahead. noinline: the frame must lie below
 * warm_main's, where the bootstrap's will. */
static __attribute__((noinline)) void warm_touch_stack(void) {
    volatile char page[16 * 1024];
    for (size_t i = 0; i < sizeof page; i += 1024) page[i] = 0;
}

/* What a fresh fork would pay in page faults during the start (copies of the pages
 * the bootstrap writes, the code it runs for the first time), paid while waiting:
 * the steps of a start that are the same for every target, done once on a target of
 * our own. */
static void warm_prefault(void) {
    warm_touch_stack();
    mp__fnref ref = {0};
    void *fn = NULL;
    mp__err_mute();
    if (mp__os_fn_to_ref((void *)warm_prefault, &ref) == 0) (void)mp__os_ref_to_fn(&ref, &fn);
    mp__err_unmute();
    mp__fnref_clear(&ref);
    void *p = mp__malloc(4096);
    if (p) memset(p, 0, 4096);
    mp__free(p);
    unsigned char key[32];
    memcpy(key, mp__authkey(), sizeof key);
    mp__set_authkey(key);
}

/* A warm child: waits for its one launch on chan (its status socket too). */
static void warm_main(int chan, int note, pid_t server) {
    /* Dies with the server (the only thread there, so the process). Checked after
     * asking, in case the server died first. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != server) _exit(0);
    int keep[2] = {chan, note};
    mp__os_close_fds_except(keep, 2);
    mp__process_after_fork_child();
    /* Taken already (the pool was empty): the faults come anyway, no need to ask. */
    struct pollfd pf = {.fd = chan, .events = POLLIN};
    if (poll(&pf, 1, 0) == 0) warm_prefault();
    fs_request q;
    if (fs_recv_request(chan, &q, true) != 0 || q.h.magic != FS_MAGIC) _exit(0);
    /* Taken: the server answers (child_report waits for it) and forks the next one,
     * while this one starts. */
    if (send(note, "T", 1, MSG_NOSIGNAL) != 1) _exit(0);
    child_signals();
    mp__launch l;
    int64_t pid = getpid();
    int rc = mp__launch_decode(q.payload, (size_t)q.h.len, &l);
    if (rc) {
        for (size_t i = 0; i < q.nfds; i++) close(q.fds[i]);
        send_report(chan, 'S', &pid, rc, mp_last_error_message());
        _exit(1);
    }
    int fds[FS_MAX_FDS + 1];
    fds[0] = chan;
    memcpy(fds + 1, q.fds, q.nfds * sizeof(int));
    child_go(&l, fds, q.nfds + 1, note);
}

/* Forks one warm child and offers it to the client. false when the client cannot be
 * told (it is gone: the loop ends on its EOF). */
static bool srv_warm_one(srv *s) {
    int pair[2], note[2];
    if (srv_room(s) != 0) return true;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return true;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, note) != 0) {
        close(pair[0]);
        close(pair[1]);
        return true;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(note[0]);
        close(pair[0]);
        warm_main(pair[1], note[1], s->self);
    }
    close(note[1]);
    int pidfd = -1;
    mp__err_mute();
    if (pid > 0 && mp__os_pidfd_open(pid, &pidfd) != 0) pidfd = -1;
    mp__err_unmute();
    if (pid < 0 || pidfd < 0) {
        if (pid > 0) {
            kill(pid, SIGKILL); /* reaped as any child */
            s->kids[s->n++] = (srv_child){pid, pair[1]};
        } else {
            close(pair[1]);
        }
        close(pair[0]);
        close(note[0]);
        s->deaths++;
        return true;
    }
    s->kids[s->n++] = (srv_child){pid, pair[1]};
    s->warm[s->nwarm++] = (srv_warm){pid, note[0]};
    fs_offer_msg msg = {FS_MAGIC_OFFER, 0, pid};
    int fds[2] = {pair[0], pidfd};
    char cbuf[CMSG_SPACE(2 * sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {&msg, sizeof msg};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t w;
    while ((w = sendmsg(s->ctl, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    int e = errno;
    close(pair[0]);
    close(pidfd);
    if (w == (ssize_t)sizeof msg) return true;
    /* Its end of the pair is closed now, so a child nobody was told of ends on EOF. A
     * client that is gone ends the server; anything else (too many descriptors in
     * flight) costs only this child. */
    s->nwarm--;
    close(note[0]);
    s->deaths++;
    return w >= 0 || (e != EPIPE && e != ECONNRESET);
}

/* Forgets warm child i (taken or gone); a death before it was taken counts. */
static void srv_warm_drop(srv *s, size_t i, bool taken) {
    close(s->warm[i].note);
    s->warm[i] = s->warm[--s->nwarm];
    if (taken)
        s->deaths = 0;
    else
        s->deaths++;
}

static void srv_warm_note(srv *s, size_t i) {
    char t = 0;
    ssize_t r;
    while ((r = read(s->warm[i].note, &t, 1)) < 0 && errno == EINTR) {}
    bool taken = r == 1 && t == 'T';
    if (taken) (void)!send(s->warm[i].note, "A", 1, MSG_NOSIGNAL);
    srv_warm_drop(s, i, taken);
}

/* A cold start: fork now. */
static void srv_cold(srv *s, fs_request *q) {
    int status = q->fds[0];
    mp__launch l;
    int rc = mp__launch_decode(q->payload, (size_t)q->h.len, &l);
    /* Resolve here, once: every child forked from us shares our layout. */
    if (!rc) rc = mp__launch_resolve(&l);
    if (!rc) rc = srv_room(s);
    if (rc) {
        srv_reply_error(status, rc, mp_last_error_message());
        if (l.name) mp__launch_clear(&l);
        goto drop;
    }
    pid_t pid = fork();
    if (pid == 0) {
        child_signals();
        mp__os_close_fds_except(q->fds, q->nfds);
        mp__process_after_fork_child();
        child_go(&l, q->fds, q->nfds, -1);
    }
    mp__launch_clear(&l);
    if (pid < 0) {
        srv_reply_error(status, mp__os_err("fork"), mp_last_error_message());
        goto drop;
    }
    s->kids[s->n++] = (srv_child){pid, status};
    for (size_t i = 1; i < q->nfds; i++) close(q->fds[i]);
    return;
drop:
    for (size_t i = 0; i < q->nfds; i++) close(q->fds[i]);
}

/* Receives one message from the client; false when the client is gone. */
static bool srv_request(srv *s) {
    fs_request q;
    if (fs_recv_request(s->ctl, &q, false) != 0) return false;
    if (q.h.magic == FS_MAGIC_WARM) {
        s->want = q.h.len > FS_WARM_MAX ? FS_WARM_MAX : (int)q.h.len;
        /* Fewer asked for: the extra children go now (reaped as any child). */
        while ((int)s->nwarm > s->want) {
            kill(s->warm[s->nwarm - 1].pid, SIGKILL);
            close(s->warm[s->nwarm - 1].note);
            s->nwarm--;
        }
        s->deaths = 0;
        return true;
    }
    srv_cold(s, &q);
    mp__free(q.payload);
    return true;
}

/* argv: exe --mp-child forkserver <ctl fd> <warm children> [preload...] */
static int fs_child_main(int argc, char **argv) {
    if (argc < 5) return mp__err(MP_EINVAL, "forkserver: bad command line");
    srv s = {.ctl = atoi(argv[3]), .self = getpid()};
    s.want = atoi(argv[4]);
    if (s.want < 0 || s.want > FS_WARM_MAX) s.want = FS_WARM_DEFAULT;
    fcntl(s.ctl, F_SETFD, FD_CLOEXEC);
    /* Ctrl-C reaches the whole process group: the server is not the one to stop. */
    signal(SIGINT, SIG_IGN);
    for (int i = 5; i < argc; i++)
        if (mp__os_dlopen(argv[i]) != 0)
            fprintf(stderr, "multiproc forkserver: preload: %s\n", mp_last_error_message());
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    s.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sfd < 0) return mp__os_err("forkserver: signalfd");
    if (mp__os_write_all(s.ctl, "R", 1) != 0) mp__os_exit(0);
    bool up = true;
    while (up) {
        /* Reaping and serving come first; the pool is refilled when nothing waits. */
        struct pollfd pf[2 + FS_WARM_MAX];
        pf[0] = (struct pollfd){.fd = s.ctl, .events = POLLIN};
        pf[1] = (struct pollfd){.fd = s.sfd, .events = POLLIN};
        for (size_t i = 0; i < s.nwarm; i++)
            pf[2 + i] = (struct pollfd){.fd = s.warm[i].note, .events = POLLIN};
        size_t nw = s.nwarm;
        bool refill = (int)s.nwarm < s.want && s.deaths < FS_WARM_DEATHS_MAX;
        int r = poll(pf, 2 + nw, refill ? 0 : -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (r == 0) {
            up = srv_warm_one(&s);
            continue;
        }
        if (pf[1].revents) srv_reap(&s);
        for (size_t i = nw; i-- > 0;)
            if (pf[2 + i].revents) srv_warm_note(&s, i);
        if (pf[0].revents && !srv_request(&s)) break;
    }
    /* The client is gone. Started children run on (their status sockets close with
     * us); the warm ones go with us, reaped so none outlives the server. */
    for (size_t i = 0; i < s.nwarm; i++) kill(s.warm[i].pid, SIGKILL);
    for (size_t i = 0; i < s.nwarm; i++)
        while (waitpid(s.warm[i].pid, NULL, 0) < 0 && errno == EINTR) {}
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
