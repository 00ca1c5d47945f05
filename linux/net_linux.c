/* The OS layer for listeners and clients on posix (core/os_net.h): AF_INET and AF_UNIX
 * sockets, deadline-bounded I/O, and HMAC from OpenSSL's libcrypto. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../core/os_net.h"
#include "linux.h"

struct mp__os_listener {
    int fd;
    int family;
    char *unlink_path; /* a socket file to remove at close */
    pid_t creator;     /* ... only by the process that made it, not a forked child */
};

static int net_err(const char *what) {
    int e = errno;
    switch (e) {
    case EADDRINUSE:
        return mp__err_os(MP_EEXIST, e, "%s: %s", what, strerror(e));
    case ECONNREFUSED:
        return mp__err_os(MP_ENOENT, e, "%s: nobody listens there (%s)", what, strerror(e));
    case EADDRNOTAVAIL:
        return mp__err_os(MP_EINVAL, e, "%s: %s", what, strerror(e));
    case ENOTCONN:
    case ECONNABORTED:
        return mp__err_os(MP_EPIPE, e, "%s: %s", what, strerror(e));
    default:
        return mp__os_err(what);
    }
}

bool mp__os_net_family_supported(int family) {
    return family == MP_AF_INET || family == MP_AF_UNIX;
}

static char g_tmp[PATH_MAX];

const char *mp__os_net_temp_dir(void) {
    mp__os_global_lock();
    if (!g_tmp[0]) {
        const char *t = getenv("TMPDIR");
        struct stat st;
        if (!t || !t[0] || strlen(t) >= sizeof g_tmp || stat(t, &st) != 0 || !S_ISDIR(st.st_mode))
            t = "/tmp";
        snprintf(g_tmp, sizeof g_tmp, "%s", t);
        size_t n = strlen(g_tmp);
        while (n > 1 && g_tmp[n - 1] == '/') g_tmp[--n] = '\0';
    }
    mp__os_global_unlock();
    return g_tmp;
}

/* Waits for events on fd until deadline: 0, MP_ETIMEDOUT or an error. */
static int wait_fd(int fd, short events, double deadline, const char *what) {
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, mp__linux_poll_ms(deadline));
        if (r > 0) return 0;
        if (r == 0) {
            if (mp__left(deadline) == 0) return mp__err(MP_ETIMEDOUT, "%s: timed out", what);
            continue;
        }
        if (errno != EINTR) return net_err("poll");
    }
}

static int set_nonblock(int fd, bool on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
        return net_err("fcntl(O_NONBLOCK)");
    return 0;
}

/* ---- addresses ---- */

static int resolve_inet(const char *host, int port, bool passive, struct sockaddr_in *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!host[0]) {
        sa->sin_addr.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
        return 0;
    }
    if (inet_pton(AF_INET, host, &sa->sin_addr) == 1) return 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, NULL, &hints, &res);
    if (r != 0 || !res) return mp__err(MP_ENOENT, "cannot resolve '%s': %s", host, gai_strerror(r));
    sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

static int make_unix(const char *path, struct sockaddr_un *sa, socklen_t *len) {
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (path[0] == '@') {
        /* Abstract: a NUL, then the name; the length says where it ends. */
        if (n > sizeof sa->sun_path) return mp__err(MP_EINVAL, "abstract socket name too long");
        memcpy(sa->sun_path + 1, path + 1, n - 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
    }
    if (n >= sizeof sa->sun_path)
        return mp__err(MP_EINVAL, "socket path of %zu bytes is too long (the limit is %zu)", n,
                       sizeof sa->sun_path - 1);
    memcpy(sa->sun_path, path, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* A sockaddr as the listener reports it (mp__malloc'd). */
static char *format_addr(const struct sockaddr_storage *ss, socklen_t len) {
    char buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 2];
    buf[0] = '\0';
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(buf, sizeof buf, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? (size_t)len - off : 0;
        if (n > sizeof un->sun_path) n = sizeof un->sun_path;
        if (n > 0 && un->sun_path[0] == '\0') {
            buf[0] = '@';
            memcpy(buf + 1, un->sun_path + 1, n - 1);
            buf[n] = '\0';
        } else {
            memcpy(buf, un->sun_path, n);
            buf[n] = '\0';
            buf[strnlen(buf, n)] = '\0';
        }
    }
    return mp__strdup(buf);
}

/* ---- listening ---- */

int mp__os_net_listen(int family, const char *host, int port, const char *path, int backlog,
                      mp__os_listener **out, char **bound) {
    *out = NULL;
    *bound = NULL;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc;
    if (family == MP_AF_INET) {
        rc = resolve_inet(host, port, true, (struct sockaddr_in *)&ss);
        len = sizeof(struct sockaddr_in);
    } else if (family == MP_AF_UNIX) {
        rc = make_unix(path, (struct sockaddr_un *)&ss, &len);
    } else {
        rc = mp__err(MP_ENOTSUP, "listen: family not available on this platform");
    }
    if (rc) return rc;
    mp__os_listener *l = mp__calloc(1, sizeof *l);
    if (!l) return mp__err(MP_ENOMEM, "listen: out of memory");
    l->family = family;
    /* Non-blocking: another thread may take a connection between poll and accept. */
    l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l->fd < 0) {
        rc = net_err("socket");
        goto fail;
    }
    if (family == MP_AF_INET) {
        /* As CPython on posix: a restarted server can rebind at once. */
        int one = 1;
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(l->fd, (struct sockaddr *)&ss, len) != 0) {
        char what[300];
        snprintf(what, sizeof what, "bind(%s%s%s)", family == MP_AF_INET ? host : path,
                 family == MP_AF_INET ? ":" : "", family == MP_AF_INET ? "port" : "");
        rc = net_err(what);
        goto fail;
    }
    if (family == MP_AF_UNIX && path[0] != '@') {
        l->unlink_path = mp__strdup(path);
        l->creator = getpid();
    }
    if (listen(l->fd, backlog) != 0) {
        rc = net_err("listen");
        goto fail;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    if (getsockname(l->fd, (struct sockaddr *)&got, &gl) != 0) {
        rc = net_err("getsockname");
        goto fail;
    }
    /* A path is reported as given (getsockname would too, bar truncation). */
    *bound = family == MP_AF_UNIX ? mp__strdup(path) : format_addr(&got, gl);
    if (!*bound) {
        rc = mp__err(MP_ENOMEM, "listen: out of memory");
        goto fail;
    }
    *out = l;
    return 0;
fail:
    mp__os_net_listener_close(l);
    return rc;
}

int mp__os_net_accept(mp__os_listener *l, double timeout, mp_os_handle *h, int *kind, char **peer) {
    *h = MP_INVALID_OS_HANDLE;
    *peer = NULL;
    double deadline = mp__deadline(timeout);
    for (;;) {
        int rc = wait_fd(l->fd, POLLIN, deadline, "accept");
        if (rc) return rc;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        memset(&ss, 0, sizeof ss);
        /* The new socket is blocking (Linux does not inherit O_NONBLOCK on accept). */
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                continue;
            return net_err("accept");
        }
        if (l->family == MP_AF_INET) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        *peer = format_addr(&ss, len);
        if (!*peer) {
            close(fd);
            return mp__err(MP_ENOMEM, "accept: out of memory");
        }
        *h = fd;
        *kind = MP__CONN_SOCKET;
        return 0;
    }
}

void mp__os_net_listener_close(mp__os_listener *l) {
    if (!l) return;
    if (l->fd >= 0) close(l->fd);
    if (l->unlink_path && l->creator == getpid()) unlink(l->unlink_path);
    mp__free(l->unlink_path);
    mp__free(l);
}

/* ---- connecting ---- */

int mp__os_net_connect(int family, const char *host, int port, const char *path, double deadline,
                       mp_os_handle *h, int *kind) {
    *h = MP_INVALID_OS_HANDLE;
    struct sockaddr_storage ss;
    socklen_t len;
    int rc;
    if (family == MP_AF_INET) {
        rc = resolve_inet(host, port, false, (struct sockaddr_in *)&ss);
        len = sizeof(struct sockaddr_in);
    } else if (family == MP_AF_UNIX) {
        rc = make_unix(path, (struct sockaddr_un *)&ss, &len);
    } else {
        rc = mp__err(MP_ENOTSUP, "connect: family not available on this platform");
    }
    if (rc) return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return net_err("socket");
    for (;;) {
        if (connect(fd, (struct sockaddr *)&ss, len) == 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            /* A unix listener's backlog is full: a blocking connect would wait. */
            if (mp__left(deadline) == 0) {
                rc = mp__err(MP_ETIMEDOUT, "connect: timed out (the listener's backlog is full)");
                goto fail;
            }
            mp__os_sleep(0.005);
            continue;
        }
        if (errno != EINPROGRESS) {
            rc = net_err("connect");
            goto fail;
        }
        rc = wait_fd(fd, POLLOUT, deadline, "connect");
        if (rc) goto fail;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            errno = err;
            rc = net_err("connect");
            goto fail;
        }
        break;
    }
    rc = set_nonblock(fd, false);
    if (rc) goto fail;
    if (family == MP_AF_INET) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    *h = fd;
    *kind = MP__CONN_SOCKET;
    return 0;
fail:
    close(fd);
    return rc;
}

void mp__os_net_close(mp_os_handle h, int kind) {
    (void)kind;
    if (h >= 0) close((int)h);
}

int mp__os_net_shutdown_write(mp_os_handle h) {
    if (shutdown((int)h, SHUT_WR) != 0) return net_err("shutdown");
    return 0;
}

int mp__os_net_socketpair(mp_os_handle h[2]) {
    int sv[2];
    h[0] = h[1] = MP_INVALID_OS_HANDLE;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return net_err("socketpair");
    h[0] = sv[0];
    h[1] = sv[1];
    return 0;
}

/* ---- I/O ---- */

int mp__os_net_write(mp_os_handle h, int kind, const void *buf, size_t n, double deadline) {
    const char *p = buf;
    while (n) {
        ssize_t w = kind == MP__CONN_SOCKET ? send((int)h, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                                            : write((int)h, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd((int)h, POLLOUT, deadline, "send");
            if (rc) return rc;
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return mp__err(MP_EPIPE, "send: the peer is gone");
        return net_err("send");
    }
    return 0;
}

int mp__os_net_read(mp_os_handle h, int kind, void *buf, size_t n, double deadline) {
    char *p = buf;
    while (n) {
        int rc = wait_fd((int)h, POLLIN, deadline, "recv");
        if (rc) return rc;
        ssize_t r = kind == MP__CONN_SOCKET ? recv((int)h, p, n, MSG_DONTWAIT) : read((int)h, p, n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0) return mp__err(MP_EOF, "recv: the peer closed the connection");
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == ECONNRESET) return mp__err(MP_EOF, "recv: connection reset by the peer");
        return net_err("recv");
    }
    return 0;
}

int mp__os_net_read_some(mp_os_handle h, int kind, void *buf, size_t n, size_t *got) {
    *got = 0;
    for (;;) {
        ssize_t r =
            kind == MP__CONN_SOCKET ? recv((int)h, buf, n, MSG_DONTWAIT) : read((int)h, buf, n);
        if (r > 0) {
            *got = (size_t)r;
            return 0;
        }
        if (r == 0) return mp__err(MP_EOF, "recv: the peer closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == ECONNRESET) return mp__err(MP_EOF, "recv: connection reset by the peer");
        return net_err("recv");
    }
}

int mp__os_net_poll(mp__os_listener *l, const mp_os_handle *h, size_t n, double deadline,
                    bool *l_ready, bool *ready) {
    *l_ready = false;
    for (size_t i = 0; i < n; i++) ready[i] = false;
    struct pollfd *p = mp__malloc((n + 1) * sizeof *p);
    if (!p) return mp__err(MP_ENOMEM, "poll: out of memory");
    p[0] = (struct pollfd){.fd = l->fd, .events = POLLIN};
    for (size_t i = 0; i < n; i++) p[i + 1] = (struct pollfd){.fd = (int)h[i], .events = POLLIN};
    int rc = 0;
    for (;;) {
        int r = poll(p, (nfds_t)(n + 1), mp__linux_poll_ms(deadline));
        if (r > 0) break;
        if (r == 0) {
            if (mp__left(deadline) == 0) goto done;
            continue;
        }
        if (errno != EINTR) {
            rc = net_err("poll");
            goto done;
        }
    }
    *l_ready = p[0].revents != 0;
    for (size_t i = 0; i < n; i++) ready[i] = p[i + 1].revents != 0;
done:
    mp__free(p);
    return rc;
}

/* ---- HMAC ---- */

int mp__os_hmac(int alg, const void *key, size_t keylen, const void *data, size_t n,
                unsigned char out[MP__HMAC_MAX], size_t *outlen) {
    *outlen = 0;
    const EVP_MD *md = NULL;
    switch (alg) {
    case MP__HMAC_MD5:
        md = EVP_md5();
        break;
    case MP__HMAC_SHA256:
        md = EVP_sha256();
        break;
    case MP__HMAC_SHA384:
        md = EVP_sha384();
        break;
    case MP__HMAC_SHA3_256:
        md = EVP_sha3_256();
        break;
    case MP__HMAC_SHA3_384:
        md = EVP_sha3_384();
        break;
    }
    if (!md) return mp__err(MP_ENOTSUP, "HMAC: unknown digest %d", alg);
    if (keylen > INT_MAX) return mp__err(MP_EINVAL, "HMAC: key too long");
    /* OpenSSL wants a non-NULL key even when it is empty. */
    static const unsigned char empty;
    unsigned int len = 0;
    if (!HMAC(md, key && keylen ? key : &empty, (int)keylen, data ? data : &empty, n, out, &len))
        return mp__err(MP_ENOTSUP, "HMAC: digest %d is not available (FIPS mode?)", alg);
    *outlen = len;
    return 0;
}

/* Sockets are byte streams: handshake messages carry the length header. */
bool mp__os_net_message_mode(int kind) {
    (void)kind;
    return false;
}

int mp__os_net_write_message(mp_os_handle h, int kind, const void *buf, size_t n, double deadline) {
    (void)h, (void)kind, (void)buf, (void)n, (void)deadline;
    return mp__err(MP_ENOTSUP, "write: no message-mode handles on posix");
}

int mp__os_net_read_message(mp_os_handle h, int kind, void *buf, size_t cap, size_t *n,
                            double deadline) {
    (void)h, (void)kind, (void)buf, (void)cap, (void)deadline;
    *n = 0;
    return mp__err(MP_ENOTSUP, "read: no message-mode handles on posix");
}
