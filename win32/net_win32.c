/* The OS layer for listeners and clients on Windows (core/os_net.h): AF_INET sockets
 * (Winsock), AF_PIPE named pipes (CPython's PipeListener: a queue of pipe instances so
 * one is always listening), deadline-bounded I/O, and HMAC from BCrypt.
 * Plain Win32 (MSVC-compatible). */
#include "win32.h"

#include <winsock2.h>
#include <ws2tcpip.h>

#include <bcrypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/os_net.h"

#ifndef WSA_FLAG_NO_HANDLE_INHERIT
#define WSA_FLAG_NO_HANDLE_INHERIT 0x80
#endif
#ifndef PIPE_REJECT_REMOTE_CLIENTS
#define PIPE_REJECT_REMOTE_CLIENTS 0x00000008
#endif

#define PIPE_BUFSIZE 8192

struct mp__os_listener {
    int family;
    SOCKET s;      /* AF_INET */
    wchar_t *name; /* AF_PIPE */
    HANDLE cur;    /* the instance accept connects next */
    HANDLE spare;  /* made before waiting, so a client always finds an instance */
};

static int wsa_err(int code, const char *what) {
    switch (code) {
    case WSAEADDRINUSE:
        return mp__err_os(MP_EEXIST, code, "%s: address in use (WSA error %d)", what, code);
    case WSAECONNREFUSED:
        return mp__err_os(MP_ENOENT, code, "%s: nobody listens there (WSA error %d)", what, code);
    case WSAECONNRESET:
    case WSAECONNABORTED:
    case WSAESHUTDOWN:
    case WSAENOTCONN:
        return mp__err_os(MP_EPIPE, code, "%s: connection lost (WSA error %d)", what, code);
    case WSAETIMEDOUT:
        return mp__err_os(MP_ETIMEDOUT, code, "%s: timed out (WSA error %d)", what, code);
    case WSAEADDRNOTAVAIL:
    case WSAEINVAL:
        return mp__err_os(MP_EINVAL, code, "%s: invalid address (WSA error %d)", what, code);
    default:
        return mp__win_err((DWORD)code, what);
    }
}

static INIT_ONCE g_wsa_once = INIT_ONCE_STATIC_INIT;
static int g_wsa_rc;

static BOOL CALLBACK wsa_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    WSADATA d;
    int r = WSAStartup(MAKEWORD(2, 2), &d);
    g_wsa_rc = r ? wsa_err(r, "WSAStartup") : 0;
    return TRUE;
}

static int wsa(void) {
    InitOnceExecuteOnce(&g_wsa_once, wsa_init, NULL, NULL);
    return g_wsa_rc;
}

bool mp__os_net_family_supported(int family) {
    return family == MP_AF_INET || family == MP_AF_PIPE;
}

static char g_tmp[MAX_PATH * 3 + 1];

const char *mp__os_net_temp_dir(void) {
    mp__os_global_lock();
    if (!g_tmp[0]) {
        wchar_t w[MAX_PATH + 1];
        DWORD n = GetTempPathW(MAX_PATH + 1, w);
        if (n == 0 || n > MAX_PATH) {
            snprintf(g_tmp, sizeof g_tmp, ".");
        } else {
            while (n > 1 && (w[n - 1] == L'\\' || w[n - 1] == L'/')) w[--n] = 0;
            int len = WideCharToMultiByte(CP_UTF8, 0, w, -1, g_tmp, (int)sizeof g_tmp, NULL, NULL);
            if (len <= 0) snprintf(g_tmp, sizeof g_tmp, ".");
        }
    }
    mp__os_global_unlock();
    return g_tmp;
}

static double left_of(double deadline) { return mp__left(deadline); }

/* select() for one socket until deadline: 0, MP_ETIMEDOUT or an error. */
static int wait_socket(SOCKET s, bool write, double deadline, const char *what) {
    for (;;) {
        fd_set set, eset;
        FD_ZERO(&set);
        FD_ZERO(&eset);
        FD_SET(s, &set);
        FD_SET(s, &eset);
        double left = left_of(deadline);
        /* Slices of at most a second keep the arithmetic safe for long waits. */
        double slice = left > 1.0 ? 1.0 : left;
        struct timeval tv = {(long)slice, (long)((slice - (double)(long)slice) * 1e6)};
        int r = select(0, write ? NULL : &set, write ? &set : NULL, &eset, &tv);
        if (r > 0) return 0;
        if (r == SOCKET_ERROR) return wsa_err(WSAGetLastError(), "select");
        if (mp__left(deadline) == 0) return mp__err(MP_ETIMEDOUT, "%s: timed out", what);
    }
}

static SOCKET new_socket(void) {
    SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
        /* Before Windows 7 SP1 the no-inherit flag is refused: clear it by hand. */
        s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (s != INVALID_SOCKET) SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    }
    return s;
}

static int set_blocking(SOCKET s, bool blocking) {
    u_long nb = blocking ? 0 : 1;
    if (ioctlsocket(s, FIONBIO, &nb) != 0) return wsa_err(WSAGetLastError(), "ioctlsocket");
    return 0;
}

static int resolve_inet(const char *host, int port, bool passive, struct sockaddr_in *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((u_short)port);
    if (!host[0]) {
        sa->sin_addr.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
        return 0;
    }
    if (inet_pton(AF_INET, host, &sa->sin_addr) == 1) return 0;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, NULL, &hints, &res);
    if (r != 0 || !res) return mp__err(MP_ENOENT, "cannot resolve '%s' (error %d)", host, r);
    sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

static char *format_inet(const struct sockaddr_in *in) {
    char ip[INET_ADDRSTRLEN] = "?";
    char buf[64];
    inet_ntop(AF_INET, (void *)&in->sin_addr, ip, sizeof ip);
    snprintf(buf, sizeof buf, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    return mp__strdup(buf);
}

static HANDLE new_pipe_instance(const wchar_t *name, bool first) {
    DWORD open =
        PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0);
    /* Message mode, as CPython's PipeListener: a message is one write, no length header. */
    DWORD mode = PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;
    return CreateNamedPipeW(name, open, mode, PIPE_UNLIMITED_INSTANCES, PIPE_BUFSIZE, PIPE_BUFSIZE,
                            0, NULL);
}

/* ---- listening ---- */

int mp__os_net_listen(int family, const char *host, int port, const char *path, int backlog,
                      mp__os_listener **out, char **bound) {
    *out = NULL;
    *bound = NULL;
    if (family != MP_AF_INET && family != MP_AF_PIPE)
        return mp__err(MP_ENOTSUP, "listen: family not available on Windows");
    mp__os_listener *l = mp__calloc(1, sizeof *l);
    if (!l) return mp__err(MP_ENOMEM, "listen: out of memory");
    l->family = family;
    l->s = INVALID_SOCKET;
    l->cur = l->spare = INVALID_HANDLE_VALUE;
    int rc;
    if (family == MP_AF_PIPE) {
        l->name = mp__win_to_wide(path);
        if (!l->name) {
            rc = MP_EINVAL;
            goto fail;
        }
        /* FILE_FLAG_FIRST_PIPE_INSTANCE refuses a name in use on Windows, but Wine
         * ignores it: ask first whether any instance answers to the name. */
        if (WaitNamedPipeW(l->name, 1) || GetLastError() == ERROR_SEM_TIMEOUT) {
            rc = mp__err(MP_EEXIST, "listen: pipe %s already exists", path);
            goto fail;
        }
        l->cur = new_pipe_instance(l->name, true);
        if (l->cur == INVALID_HANDLE_VALUE) {
            DWORD e = GetLastError();
            rc = e == ERROR_ACCESS_DENIED
                     ? mp__err(MP_EEXIST, "listen: pipe %s already exists", path)
                     : mp__win_err(e, "CreateNamedPipe");
            goto fail;
        }
        *bound = mp__strdup(path);
    } else {
        struct sockaddr_in sa;
        rc = wsa();
        if (!rc) rc = resolve_inet(host, port, true, &sa);
        if (rc) goto fail;
        l->s = new_socket();
        if (l->s == INVALID_SOCKET) {
            rc = wsa_err(WSAGetLastError(), "socket");
            goto fail;
        }
        /* No SO_REUSEADDR: on Windows it would let another socket steal the port
         * (CPython leaves it off too). Non-blocking so accept never blocks after select. */
        if (bind(l->s, (struct sockaddr *)&sa, sizeof sa) != 0) {
            rc = wsa_err(WSAGetLastError(), "bind");
            goto fail;
        }
        if (listen(l->s, backlog) != 0) {
            rc = wsa_err(WSAGetLastError(), "listen");
            goto fail;
        }
        rc = set_blocking(l->s, false);
        if (rc) goto fail;
        struct sockaddr_in got;
        int gl = sizeof got;
        if (getsockname(l->s, (struct sockaddr *)&got, &gl) != 0) {
            rc = wsa_err(WSAGetLastError(), "getsockname");
            goto fail;
        }
        *bound = format_inet(&got);
    }
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

static int accept_socket(mp__os_listener *l, double deadline, mp_os_handle *h, char **peer) {
    for (;;) {
        int rc = wait_socket(l->s, false, deadline, "accept");
        if (rc) return rc;
        struct sockaddr_in sa;
        int len = sizeof sa;
        SOCKET s = accept(l->s, (struct sockaddr *)&sa, &len);
        if (s == INVALID_SOCKET) {
            int e = WSAGetLastError();
            if (e == WSAEWOULDBLOCK || e == WSAECONNRESET || e == WSAEINTR) continue;
            return wsa_err(e, "accept");
        }
        /* The accepted socket inherits the listener's non-blocking mode. */
        SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
        rc = set_blocking(s, true);
        if (!rc) {
            BOOL one = TRUE;
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
            *peer = format_inet(&sa);
            if (!*peer) rc = mp__err(MP_ENOMEM, "accept: out of memory");
        }
        if (rc) {
            closesocket(s);
            return rc;
        }
        *h = (mp_os_handle)s;
        return 0;
    }
}

static int accept_pipe(mp__os_listener *l, double timeout, mp_os_handle *h) {
    if (l->spare == INVALID_HANDLE_VALUE) {
        l->spare = new_pipe_instance(l->name, false);
        if (l->spare == INVALID_HANDLE_VALUE) return mp__os_err("CreateNamedPipe");
    }
    if (l->cur == INVALID_HANDLE_VALUE) {
        l->cur = l->spare;
        l->spare = INVALID_HANDLE_VALUE;
        return accept_pipe(l, timeout, h);
    }
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ov.hEvent) return mp__os_err("CreateEvent");
    int rc = 0;
    bool connected = false;
    if (ConnectNamedPipe(l->cur, &ov)) {
        connected = true;
    } else {
        DWORD e = GetLastError();
        /* PIPE_CONNECTED: a client came before we asked. NO_DATA: it came and already
         * left; CPython hands that connection out too (reads then see the end). */
        if (e == ERROR_PIPE_CONNECTED || e == ERROR_NO_DATA) {
            connected = true;
        } else if (e == ERROR_IO_PENDING) {
            DWORD w = WaitForSingleObject(ov.hEvent, mp__win_timeout_ms(timeout));
            DWORD n;
            if (w != WAIT_OBJECT_0) CancelIoEx(l->cur, &ov);
            /* After a cancel the connection may still have won the race. */
            if (GetOverlappedResult(l->cur, &ov, &n, TRUE))
                connected = true;
            else if (w == WAIT_TIMEOUT)
                rc = mp__err(MP_ETIMEDOUT, "accept: timed out after %.3f s", timeout);
            else
                rc = mp__os_err("ConnectNamedPipe");
        } else {
            rc = mp__win_err(e, "ConnectNamedPipe");
        }
    }
    CloseHandle(ov.hEvent);
    if (!connected) return rc;
    *h = (mp_os_handle)l->cur;
    l->cur = l->spare;
    l->spare = INVALID_HANDLE_VALUE;
    return 0;
}

int mp__os_net_accept(mp__os_listener *l, double timeout, mp_os_handle *h, int *kind, char **peer) {
    *h = MP_INVALID_OS_HANDLE;
    *peer = NULL;
    if (l->family == MP_AF_PIPE) {
        *kind = MP__CONN_PIPE;
        return accept_pipe(l, timeout, h);
    }
    *kind = MP__CONN_SOCKET;
    return accept_socket(l, mp__deadline(timeout), h, peer);
}

void mp__os_net_listener_close(mp__os_listener *l) {
    if (!l) return;
    if (l->s != INVALID_SOCKET) closesocket(l->s);
    if (l->cur != INVALID_HANDLE_VALUE) CloseHandle(l->cur);
    if (l->spare != INVALID_HANDLE_VALUE) CloseHandle(l->spare);
    mp__free(l->name);
    mp__free(l);
}

/* ---- connecting ---- */

static int connect_pipe(const char *path, double deadline, mp_os_handle *h) {
    wchar_t *name = mp__win_to_wide(path);
    if (!name) return MP_EINVAL;
    int rc = 0;
    for (;;) {
        HANDLE p = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                               FILE_FLAG_OVERLAPPED, NULL);
        if (p != INVALID_HANDLE_VALUE) {
            DWORD mode = PIPE_READMODE_MESSAGE; /* a client starts in byte mode */
            if (!SetNamedPipeHandleState(p, &mode, NULL, NULL)) {
                rc = mp__os_err("SetNamedPipeHandleState");
                CloseHandle(p);
                break;
            }
            *h = (mp_os_handle)p;
            break;
        }
        DWORD e = GetLastError();
        if (e != ERROR_PIPE_BUSY) {
            rc = e == ERROR_FILE_NOT_FOUND
                     ? mp__err(MP_ENOENT, "connect: no pipe %s (nobody listens there)", path)
                     : mp__win_err(e, "CreateFile(pipe)");
            break;
        }
        /* Every instance is taken: wait for one, in slices so the deadline holds. */
        double left = left_of(deadline);
        if (left == 0) {
            rc = mp__err(MP_ETIMEDOUT, "connect: timed out waiting for pipe %s", path);
            break;
        }
        WaitNamedPipeW(name, left > 1.0 ? 1000 : mp__win_timeout_ms(left));
    }
    mp__free(name);
    return rc;
}

static int connect_socket(const char *host, int port, double deadline, mp_os_handle *h) {
    struct sockaddr_in sa;
    int rc = wsa();
    if (!rc) rc = resolve_inet(host, port, false, &sa);
    if (rc) return rc;
    SOCKET s = new_socket();
    if (s == INVALID_SOCKET) return wsa_err(WSAGetLastError(), "socket");
    rc = set_blocking(s, false);
    if (rc) goto fail;
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = WSAGetLastError();
        if (e != WSAEWOULDBLOCK) {
            rc = wsa_err(e, "connect");
            goto fail;
        }
        rc = wait_socket(s, true, deadline, "connect");
        if (rc) goto fail;
        int err = 0;
        int el = sizeof err;
        getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &el);
        if (err) {
            rc = wsa_err(err, "connect");
            goto fail;
        }
    }
    rc = set_blocking(s, true);
    if (rc) goto fail;
    BOOL one = TRUE;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    *h = (mp_os_handle)s;
    return 0;
fail:
    closesocket(s);
    return rc;
}

int mp__os_net_connect(int family, const char *host, int port, const char *path, double deadline,
                       mp_os_handle *h, int *kind) {
    *h = MP_INVALID_OS_HANDLE;
    if (family == MP_AF_PIPE) {
        *kind = MP__CONN_PIPE;
        return connect_pipe(path, deadline, h);
    }
    if (family != MP_AF_INET)
        return mp__err(MP_ENOTSUP, "connect: family not available on Windows");
    *kind = MP__CONN_SOCKET;
    return connect_socket(host, port, deadline, h);
}

void mp__os_net_close(mp_os_handle h, int kind) {
    if (h == MP_INVALID_OS_HANDLE) return;
    if (kind == MP__CONN_SOCKET)
        closesocket((SOCKET)h);
    else
        CloseHandle((HANDLE)h);
}

int mp__os_net_shutdown_write(mp_os_handle h) {
    if (shutdown((SOCKET)h, SD_SEND) != 0) return wsa_err(WSAGetLastError(), "shutdown");
    return 0;
}

int mp__os_net_socketpair(mp_os_handle h[2]) {
    h[0] = h[1] = MP_INVALID_OS_HANDLE;
    mp__os_listener *l;
    char *bound;
    int rc = mp__os_net_listen(MP_AF_INET, "127.0.0.1", 0, NULL, 1, &l, &bound);
    if (rc) return rc;
    const char *colon = strrchr(bound, ':');
    int port = colon ? atoi(colon + 1) : 0;
    int kind;
    char *peer = NULL;
    double deadline = mp__os_monotonic() + 30.0;
    rc = mp__os_net_connect(MP_AF_INET, "127.0.0.1", port, NULL, deadline, &h[0], &kind);
    if (!rc) rc = mp__os_net_accept(l, 30.0, &h[1], &kind, &peer);
    if (rc && h[0] != MP_INVALID_OS_HANDLE) {
        closesocket((SOCKET)h[0]);
        h[0] = MP_INVALID_OS_HANDLE;
    }
    mp__free(peer);
    mp__free(bound);
    mp__os_net_listener_close(l);
    return rc;
}

/* ---- I/O ---- */

/* One overlapped ReadFile/WriteFile on a pipe, bounded by deadline: bytes moved in *n.
 * A message-mode read that got only the start of a message sets *more when more is
 * not NULL (else the rest just comes with the next read). */
static int pipe_io(HANDLE p, bool write, void *buf, DWORD len, double deadline, DWORD *n,
                   bool *more) {
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ov.hEvent) return mp__os_err("CreateEvent");
    *n = 0;
    BOOL ok = write ? WriteFile(p, buf, len, NULL, &ov) : ReadFile(p, buf, len, NULL, &ov);
    DWORD e = ok ? 0 : GetLastError();
    int rc = 0;
    if (more) *more = false;
    if (ok || e == ERROR_IO_PENDING || e == ERROR_MORE_DATA) {
        if (!ok && e == ERROR_IO_PENDING) {
            DWORD w = WaitForSingleObject(ov.hEvent, mp__win_timeout_ms(left_of(deadline)));
            if (w != WAIT_OBJECT_0) CancelIoEx(p, &ov);
        }
        if (GetOverlappedResult(p, &ov, n, TRUE)) {
            e = 0;
        } else {
            e = GetLastError();
            if (e == ERROR_OPERATION_ABORTED)
                rc = mp__err(MP_ETIMEDOUT, "%s: timed out", write ? "WriteFile" : "ReadFile");
        }
    }
    if (!rc && e) {
        if (e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED)
            rc = write ? mp__err(MP_EPIPE, "WriteFile: the peer is gone")
                       : mp__err(MP_EOF, "ReadFile: the peer closed the pipe");
        else if (e == ERROR_MORE_DATA) {
            if (more) *more = true;
        } else
            rc = mp__win_err(e, write ? "WriteFile" : "ReadFile");
    }
    CloseHandle(ov.hEvent);
    return rc;
}

int mp__os_net_write(mp_os_handle h, int kind, const void *buf, size_t n, double deadline) {
    const char *p = buf;
    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        if (kind == MP__CONN_PIPE) {
            DWORD got;
            int rc = pipe_io((HANDLE)h, true, (void *)p, (DWORD)chunk, deadline, &got, NULL);
            if (rc) return rc;
            p += got;
            n -= got;
            continue;
        }
        int rc = wait_socket((SOCKET)h, true, deadline, "send");
        if (rc) return rc;
        int w = send((SOCKET)h, p, chunk, 0);
        if (w == SOCKET_ERROR) {
            int e = WSAGetLastError();
            if (e == WSAEWOULDBLOCK || e == WSAEINTR) continue;
            return e == WSAECONNRESET || e == WSAECONNABORTED || e == WSAESHUTDOWN
                       ? mp__err(MP_EPIPE, "send: the peer is gone")
                       : wsa_err(e, "send");
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mp__os_net_read(mp_os_handle h, int kind, void *buf, size_t n, double deadline) {
    char *p = buf;
    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        if (kind == MP__CONN_PIPE) {
            DWORD got;
            int rc = pipe_io((HANDLE)h, false, p, (DWORD)chunk, deadline, &got, NULL);
            if (rc) return rc;
            p += got;
            n -= got;
            continue;
        }
        int rc = wait_socket((SOCKET)h, false, deadline, "recv");
        if (rc) return rc;
        int r = recv((SOCKET)h, p, chunk, 0);
        if (r == 0) return mp__err(MP_EOF, "recv: the peer closed the connection");
        if (r == SOCKET_ERROR) {
            int e = WSAGetLastError();
            if (e == WSAEWOULDBLOCK || e == WSAEINTR) continue;
            return e == WSAECONNRESET || e == WSAECONNABORTED
                       ? mp__err(MP_EOF, "recv: connection reset by the peer")
                       : wsa_err(e, "recv");
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int mp__os_net_read_some(mp_os_handle h, int kind, void *buf, size_t n, size_t *got) {
    *got = 0;
    if (kind != MP__CONN_SOCKET) return mp__err(MP_ENOTSUP, "recv: not a socket");
    /* The socket is blocking: recv only when select says it will not wait. */
    fd_set set;
    FD_ZERO(&set);
    FD_SET((SOCKET)h, &set);
    struct timeval tv = {0, 0};
    int r = select(0, &set, NULL, NULL, &tv);
    if (r == SOCKET_ERROR) return wsa_err(WSAGetLastError(), "select");
    if (r == 0) return 0;
    int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
    r = recv((SOCKET)h, buf, chunk, 0);
    if (r == 0) return mp__err(MP_EOF, "recv: the peer closed the connection");
    if (r == SOCKET_ERROR) {
        int e = WSAGetLastError();
        if (e == WSAEWOULDBLOCK || e == WSAEINTR) return 0;
        return e == WSAECONNRESET || e == WSAECONNABORTED
                   ? mp__err(MP_EOF, "recv: connection reset by the peer")
                   : wsa_err(e, "recv");
    }
    *got = (size_t)r;
    return 0;
}

int mp__os_net_poll(mp__os_listener *l, const mp_os_handle *h, size_t n, double deadline,
                    bool *l_ready, bool *ready) {
    *l_ready = false;
    for (size_t i = 0; i < n; i++) ready[i] = false;
    if (l->family == MP_AF_PIPE) return mp__err(MP_ENOTSUP, "poll: a pipe listener");
    WSAPOLLFD *p = mp__malloc((n + 1) * sizeof *p);
    if (!p) return mp__err(MP_ENOMEM, "WSAPoll: out of memory");
    memset(p, 0, (n + 1) * sizeof *p);
    p[0].fd = l->s;
    p[0].events = POLLRDNORM;
    for (size_t i = 0; i < n; i++) {
        p[i + 1].fd = (SOCKET)h[i];
        p[i + 1].events = POLLRDNORM;
    }
    int rc = 0;
    for (;;) {
        /* Slices of at most a second keep the arithmetic safe for long waits. */
        double left = left_of(deadline);
        int ms = left > 1.0 ? 1000 : (int)(left * 1000.0 + 0.999);
        int r = WSAPoll(p, (ULONG)(n + 1), ms);
        if (r > 0) break;
        if (r == SOCKET_ERROR) {
            rc = wsa_err(WSAGetLastError(), "WSAPoll");
            goto done;
        }
        if (mp__left(deadline) == 0) goto done;
    }
    *l_ready = p[0].revents != 0;
    for (size_t i = 0; i < n; i++) ready[i] = p[i + 1].revents != 0;
done:
    mp__free(p);
    return rc;
}

bool mp__os_net_message_mode(int kind) { return kind == MP__CONN_PIPE; }

int mp__os_net_write_message(mp_os_handle h, int kind, const void *buf, size_t n, double deadline) {
    static char none;
    if (kind != MP__CONN_PIPE) return mp__err(MP_ENOTSUP, "WriteFile: not a message-mode pipe");
    if (n > (1u << 30)) return mp__err(MP_ETOOBIG, "WriteFile: message too long");
    DWORD got = 0;
    int rc = pipe_io((HANDLE)h, true, n ? (void *)buf : &none, (DWORD)n, deadline, &got, NULL);
    if (!rc && got != n) rc = mp__err(MP_EPROTO, "WriteFile: message written in part");
    return rc;
}

int mp__os_net_read_message(mp_os_handle h, int kind, void *buf, size_t cap, size_t *n,
                            double deadline) {
    static char none;
    *n = 0;
    if (kind != MP__CONN_PIPE) return mp__err(MP_ENOTSUP, "ReadFile: not a message-mode pipe");
    if (cap > (1u << 30)) cap = 1u << 30;
    DWORD got = 0;
    bool more = false;
    int rc = pipe_io((HANDLE)h, false, cap ? buf : &none, (DWORD)cap, deadline, &got, &more);
    if (rc) return rc;
    *n = got;
    /* The rest stays unread: the caller gives up on this peer. */
    if (more) return mp__err(MP_ETOOBIG, "ReadFile: message longer than %zu bytes", cap);
    return 0;
}

/* ---- HMAC ---- */

int mp__os_hmac(int alg, const void *key, size_t keylen, const void *data, size_t n,
                unsigned char out[MP__HMAC_MAX], size_t *outlen) {
    *outlen = 0;
    LPCWSTR name = NULL;
    ULONG len = 0;
    switch (alg) {
    case MP__HMAC_MD5:
        name = BCRYPT_MD5_ALGORITHM;
        len = 16;
        break;
    case MP__HMAC_SHA256:
        name = BCRYPT_SHA256_ALGORITHM;
        len = 32;
        break;
    case MP__HMAC_SHA384:
        name = BCRYPT_SHA384_ALGORITHM;
        len = 48;
        break;
    default:
        return mp__err(MP_ENOTSUP, "HMAC: digest %d is not available on Windows", alg);
    }
    if (keylen > 0xffffffffu || n > 0xffffffffu) return mp__err(MP_EINVAL, "HMAC: input too long");
    static unsigned char empty;
    BCRYPT_ALG_HANDLE a = NULL;
    BCRYPT_HASH_HANDLE hh = NULL;
    NTSTATUS st = BCryptOpenAlgorithmProvider(&a, name, NULL, BCRYPT_ALG_HANDLE_HMAC_FLAG);
    if (st >= 0)
        st = BCryptCreateHash(a, &hh, NULL, 0, (PUCHAR)(key && keylen ? key : &empty),
                              (ULONG)keylen, 0);
    if (st >= 0 && n) st = BCryptHashData(hh, (PUCHAR)data, (ULONG)n, 0);
    if (st >= 0) st = BCryptFinishHash(hh, out, len, 0);
    if (hh) BCryptDestroyHash(hh);
    if (a) BCryptCloseAlgorithmProvider(a, 0);
    if (st < 0) return mp__err(MP_ENOTSUP, "HMAC: BCrypt failed (status 0x%lx)", (unsigned long)st);
    *outlen = len;
    return 0;
}
