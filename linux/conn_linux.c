/* The connection OS layer on posix: socketpair / pipe2, gathered writes, exact reads,
 * poll(). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../core/os_conn.h"
#include "linux.h"

/* Forks seen by this process (as the parent or as the child) and forks that made it
 * (as the child): a connection compares them with what it saw last, so an end inherited
 * by a fork stops reading ahead in both processes (core/connection.c). Counted from the
 * first connection on; a fork before it leaves no connection to inherit. */
static _Atomic unsigned g_forks, g_child_forks;
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

static void forks_parent(void) { g_forks++; }
static void forks_child(void) {
    g_forks++;
    g_child_forks++;
}
static void forks_register(void) { pthread_atfork(NULL, forks_parent, forks_child); }

void mp__os_conn_forks(unsigned *forks, unsigned *as_child) {
    *forks = g_forks;
    *as_child = g_child_forks;
}

int mp__osconn_open(mp_os_handle h, int kind, mp__osconn **out) {
    (void)h;
    (void)kind;
    *out = NULL;
    pthread_once(&g_fork_once, forks_register);
    return 0;
}

void mp__osconn_free(mp__osconn *s) { (void)s; }

/* Pipes and sockets here are byte streams: messages carry CPython's length header. */
bool mp__osconn_message_mode(const mp__osconn *s) {
    (void)s;
    return false;
}

bool mp__osconn_holds_message(const mp__osconn *s) {
    (void)s;
    return false;
}

int mp__os_conn_write_message(mp_os_handle h, int kind, mp__osconn *s, const void *buf, size_t n) {
    (void)h, (void)kind, (void)s, (void)buf, (void)n;
    return mp__err(MP_ENOTSUP, "connection: no message-mode handles on posix");
}

/* After a read of fd that gave r <= 0: 1 to read again (interrupted, or nothing there
 * yet: it waited until there is), else the error (MP_EOF at the end or on a reset). */
static int read_failed(int fd, ssize_t r, const char *what) {
    if (r == 0) return mp__err(MP_EOF, "connection: end of file");
    if (errno == EINTR) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        poll(&pf, 1, -1);
        return 1;
    }
    if (errno == ECONNRESET) return mp__err(MP_EOF, "connection: reset by peer");
    return mp__os_err(what);
}

int mp__os_conn_read_message(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t cap,
                             size_t *got, uint64_t *left) {
    (void)h, (void)kind, (void)s, (void)buf, (void)cap;
    *got = 0;
    *left = 0;
    return mp__err(MP_ENOTSUP, "connection: no message-mode handles on posix");
}

int mp__os_conn_pipe(bool duplex, mp_os_handle h[2], mp_os_handle hw[2], int *kind) {
    int a[2], b[2];
    h[0] = h[1] = hw[0] = hw[1] = MP_INVALID_OS_HANDLE;
    *kind = MP__CONN_PIPE;
    if (pipe2(a, O_CLOEXEC) != 0) return mp__os_err("pipe2");
    if (!duplex) {
        h[0] = a[0];
        h[1] = a[1];
        return 0;
    }
    /* Duplex: two pipes, each end reads one and writes the other. Python uses a
     * socketpair; a pipe wakes its reader about twice as fast, and the wire is the same. */
    if (pipe2(b, O_CLOEXEC) != 0) {
        int rc = mp__os_err("pipe2");
        close(a[0]);
        close(a[1]);
        return rc;
    }
    h[0] = b[0];
    hw[0] = a[1];
    h[1] = a[0];
    hw[1] = b[1];
    return 0;
}

int mp__os_conn_close(mp_os_handle h, int kind) {
    (void)kind;
    return mp__os_handle_close(h);
}

/* One write call; sockets say MSG_NOSIGNAL. Returns bytes written or -1/errno. */
static ssize_t write_once(int fd, int kind, struct iovec *iov, int cnt) {
    if (kind == MP__CONN_SOCKET) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)cnt;
        return sendmsg(fd, &m, MSG_NOSIGNAL);
    }
    return cnt == 1 ? write(fd, iov->iov_base, iov->iov_len) : writev(fd, iov, cnt);
}

static int writev_all(int fd, int kind, struct iovec *iov, int cnt) {
    while (cnt > 0) {
        ssize_t w = write_once(fd, kind, iov, cnt);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* A non-blocking handle from elsewhere: wait until it drains. */
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                poll(&p, 1, -1);
                continue;
            }
            return errno == EPIPE || errno == ECONNRESET
                       ? mp__err(MP_EPIPE, "connection: send: the "
                                           "peer has closed the connection")
                       : mp__os_err("connection: send");
        }
        size_t k = (size_t)w;
        while (cnt > 0 && k >= iov->iov_len) {
            k -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= k;
        }
    }
    return 0;
}

/* A write to a pipe whose reader is gone raises SIGPIPE, which kills a C program by
 * default. Python ignores SIGPIPE for the whole program; we do the same the first time
 * a connection writes, when the disposition is still the default (a program that
 * installed a handler or ignores it keeps its choice). Blocking the signal around each
 * write instead costs three system calls per message, a quarter of a round trip. */
static pthread_once_t g_sigpipe_once = PTHREAD_ONCE_INIT;

static void sigpipe_ignore(void) {
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
        !(sa.sa_flags & SA_SIGINFO)) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

int mp__os_conn_writev(mp_os_handle h, int kind, mp__osconn *s, const mp__iov *in, int cnt) {
    (void)s;
    struct iovec iov[4];
    int k = 0;
    for (int i = 0; i < cnt && k < 4; i++)
        if (in[i].n) iov[k++] = (struct iovec){(void *)in[i].p, in[i].n};
    if (kind != MP__CONN_SOCKET) {
        pthread_once(&g_sigpipe_once, sigpipe_ignore);
#ifdef F_SETPIPE_SZ
        /* A pipe that carries large messages grows to 1 MiB (the unprivileged maximum)
         * so a message crosses in a few wake-ups rather than sixteen 64 KiB ones; a
         * failure (the per-user pipe quota) just keeps the smaller size. */
        size_t total = 0;
        for (int i = 0; i < k; i++) total += iov[i].iov_len;
        if (total >= ((size_t)128 << 10)) {
            int sz = fcntl((int)h, F_GETPIPE_SZ);
            if (sz > 0 && sz < (1 << 20)) fcntl((int)h, F_SETPIPE_SZ, 1 << 20);
        }
#endif
    }
    /* A small message goes out as one plain write of a copy: cheaper for the kernel
     * than a gathered write of two pieces. */
    size_t small = 0;
    for (int i = 0; i < k; i++) small += iov[i].iov_len;
    if (k > 1 && small <= 512) {
        char buf[512];
        size_t at = 0;
        for (int i = 0; i < k; i++) {
            memcpy(buf + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        struct iovec one = {buf, small};
        return writev_all((int)h, kind, &one, 1);
    }
    return writev_all((int)h, kind, iov, k);
}

int mp__os_conn_read_exact(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t n,
                           size_t *got) {
    (void)kind;
    (void)s;
    char *p = buf;
    size_t done = 0;
    *got = 0;
    while (done < n) {
        size_t want = n - done;
        if (want > (size_t)SSIZE_MAX) want = (size_t)SSIZE_MAX;
        ssize_t r = read((int)h, p + done, want);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        int e = read_failed((int)h, r, "connection: recv");
        if (e != 1) {
            *got = done;
            return e;
        }
    }
    *got = done;
    return 0;
}

int mp__os_conn_read_some(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t cap,
                          size_t *got) {
    (void)kind;
    (void)s;
    *got = 0;
    if (cap > (size_t)SSIZE_MAX) cap = (size_t)SSIZE_MAX;
    for (;;) {
        ssize_t r = read((int)h, buf, cap);
        if (r > 0) {
            *got = (size_t)r;
            return 0;
        }
        int e = read_failed((int)h, r, "connection: recv");
        if (e != 1) return e;
    }
}

static int poll_loop(struct pollfd *p, size_t n, double timeout) {
    double deadline = mp__deadline(timeout);
    for (;;) {
        int r = poll(p, (nfds_t)n, mp__linux_poll_ms(deadline));
        if (r > 0) return 0;
        if (r == 0) {
            if (mp__left(deadline) == 0) return MP_ETIMEDOUT;
            continue;
        }
        if (errno != EINTR) return mp__os_err("poll");
    }
}

int mp__os_conn_poll(mp_os_handle h, int kind, mp__osconn *s, double timeout) {
    (void)kind;
    (void)s;
    struct pollfd p = {.fd = (int)h, .events = POLLIN};
    int rc = poll_loop(&p, 1, timeout);
    if (rc == 0 && (p.revents & POLLNVAL)) return mp__err(MP_EBADF, "poll: invalid handle");
    return rc;
}

int mp__os_wait(const mp__oswait *items, size_t n, double timeout, bool *ready) {
    struct pollfd small[16];
    struct pollfd *p = n <= 16 ? small : calloc(n, sizeof *p);
    if (!p) return mp__err(MP_ENOMEM, "wait: out of memory");
    for (size_t i = 0; i < n; i++) p[i] = (struct pollfd){.fd = (int)items[i].h, .events = POLLIN};
    int rc = poll_loop(p, n, timeout);
    for (size_t i = 0; !rc && i < n; i++) {
        if (p[i].revents & POLLNVAL)
            rc = mp__err(MP_EBADF, "wait: object %zu is not a valid handle", i);
        ready[i] = p[i].revents != 0;
    }
    if (p != small) free(p);
    return rc;
}

/* ---- handles over a connection: SCM_RIGHTS ------------------------------------- */

int mp__os_conn_xfer_mode(mp_os_handle h, int kind) {
    if (kind != MP__CONN_SOCKET) return MP__XFER_NONE;
    int v = 0;
    socklen_t n = sizeof v;
    if (getsockopt((int)h, SOL_SOCKET, SO_DOMAIN, &v, &n) != 0 || v != AF_UNIX)
        return MP__XFER_NONE;
    n = sizeof v;
    if (getsockopt((int)h, SOL_SOCKET, SO_TYPE, &v, &n) != 0 || v != SOCK_STREAM)
        return MP__XFER_NONE;
    return MP__XFER_INBAND;
}

/* Packet sockets: one sendmsg is one record, so a record and its fds never merge with
 * the next one. */
int mp__os_conn_side_pair(mp_os_handle s[2]) {
    int sv[2];
    s[0] = s[1] = MP_INVALID_OS_HANDLE;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return mp__os_err("socketpair");
    s[0] = sv[0];
    s[1] = sv[1];
    return 0;
}

int mp__os_conn_send_fds(mp_os_handle s, const void *data, size_t len, const mp_os_handle *fds,
                         size_t n) {
    if (n == 0 || n > MP__XFER_MAX || len == 0)
        return mp__err(MP_EINVAL, "send handles: %zu handles, %zu bytes", n, len);
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * MP__XFER_MAX)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)data, len};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    for (size_t i = 0; i < n; i++) {
        int fd = (int)fds[i];
        if (fds[i] < 0 || fds[i] > INT_MAX)
            return mp__err(MP_EBADF, "send handles: invalid handle");
        memcpy(CMSG_DATA(c) + i * sizeof fd, &fd, sizeof fd);
    }
    for (;;) {
        ssize_t w = sendmsg((int)s, &m, MSG_NOSIGNAL);
        if (w >= 0) {
            /* A stream socket takes all of a 1-byte message or nothing; a packet one
             * the whole record. */
            if ((size_t)w != len) return mp__err(MP_EPROTO, "send handles: short send");
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd p = {.fd = (int)s, .events = POLLOUT};
            poll(&p, 1, -1);
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
            return mp__err(MP_EPIPE, "send handles: the peer has closed the connection");
        if (errno == EBADF) {
            /* Which one: the socket or a handle being sent. */
            if (fcntl((int)s, F_GETFD) < 0)
                return mp__err(MP_EBADF, "send handles: the connection's "
                                         "handle is not open");
            return mp__err(MP_EBADF, "send handles: a handle to send is not an open descriptor");
        }
        return mp__os_err("send handles: sendmsg");
    }
}

int mp__os_conn_recv_fds(mp_os_handle s, bool wait, void *data, size_t cap, size_t *len,
                         mp_os_handle *fds, size_t max, size_t *n) {
    *len = 0;
    *n = 0;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * MP__XFER_MAX)];
    } ctl;
    if (max > MP__XFER_MAX) max = MP__XFER_MAX;
    struct iovec iov = {data, cap};
    struct msghdr m;
    ssize_t r;
    for (;;) {
        memset(&m, 0, sizeof m);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        r = recvmsg((int)s, &m, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
        if (r >= 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait) return MP_EAGAIN;
            struct pollfd p = {.fd = (int)s, .events = POLLIN};
            poll(&p, 1, -1);
            continue;
        }
        if (errno == ECONNRESET) return mp__err(MP_EOF, "receive handles: reset by peer");
        return mp__os_err("receive handles: recvmsg");
    }
    /* Take every fd that came, whatever else is wrong, so none leaks. */
    int got[64];
    size_t ngot = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && ngot < sizeof got / sizeof got[0]; i++)
            memcpy(&got[ngot++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (r == 0 && ngot == 0) return mp__err(MP_EOF, "receive handles: end of file");
    if ((m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || ngot > max) {
        for (size_t i = 0; i < ngot; i++) close(got[i]);
        return mp__err(MP_EPROTO, "receive handles: %s",
                       (m.msg_flags & MSG_TRUNC) ? "message cut short"
                                                 : "more handles than expected");
    }
    for (size_t i = 0; i < ngot; i++) fds[i] = got[i];
    *n = ngot;
    *len = (size_t)r;
    return 0;
}

int mp__os_conn_peek_fds(mp_os_handle s, unsigned char *byte, bool *has) {
    *has = false;
    *byte = 0;
    unsigned char b = 0;
    struct iovec iov = {&b, 1};
    for (;;) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        /* Without room for control data, fds attached to the byte show as MSG_CTRUNC
         * (the kernel drops only the peeked copies; the message keeps its own). */
        ssize_t r = recvmsg((int)s, &m, MSG_PEEK);
        if (r > 0) {
            *has = (m.msg_flags & MSG_CTRUNC) != 0;
            *byte = b;
            return 0;
        }
        int e = read_failed((int)s, r, "connection: recvmsg(MSG_PEEK)");
        if (e != 1) return e;
    }
}

/* Handles travel by SCM_RIGHTS here: there is nothing to export. */
int mp__os_handle_export(mp_os_handle h, bool sock, int64_t dest_pid, mp__buf *b) {
    (void)h, (void)sock, (void)dest_pid, (void)b;
    return mp__err(MP_ENOTSUP, "handle export: posix sends descriptors with SCM_RIGHTS");
}

int mp__os_handle_import(mp__rd *r, bool sock, int64_t src_pid, int64_t dest_pid,
                         mp_os_handle *out) {
    (void)r, (void)sock, (void)src_pid, (void)dest_pid;
    *out = MP_INVALID_OS_HANDLE;
    return mp__err(MP_ENOTSUP, "handle import: posix receives descriptors with SCM_RIGHTS");
}

void mp__os_handle_discard(mp__rd *r, bool sock, int64_t src_pid, int64_t dest_pid) {
    (void)r, (void)sock, (void)src_pid, (void)dest_pid;
}
