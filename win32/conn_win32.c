/* The connection OS layer on Windows: uniquely named overlapped message-mode pipes (as
 * CPython's _winapi Pipe: one WriteFile per message, no length header), whole-buffer
 * overlapped I/O, and wait() as CPython does it: a zero-byte overlapped read per pipe,
 * WSAEventSelect per socket, and process HANDLEs, all under one WaitForMultipleObjects. */
#include <winsock2.h>

#include <stdio.h>
#include <string.h>

#include "win32.h"

#include "../core/os_conn.h"

struct mp__osconn {
    HANDLE ev;      /* manual-reset event for this connection's overlapped reads and writes */
    bool message;   /* a message-type pipe read in message mode */
    bool got_empty; /* a wait's zero-byte read consumed an empty message: the next
                       receive returns it (CPython's _got_empty_message) */
};

/* No fork on Windows: an end is shared only by being passed. */
void mp__os_conn_forks(unsigned *forks, unsigned *as_child) {
    *forks = 0;
    *as_child = 0;
}

int mp__osconn_open(mp_os_handle h, int kind, mp__osconn **out) {
    (void)h;
    *out = NULL;
    if (kind == MP__CONN_SOCKET) return 0;
    mp__osconn *s = mp__calloc(1, sizeof *s);
    if (!s) return mp__err(MP_ENOMEM, "connection: out of memory");
    s->ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!s->ev) {
        int rc = mp__os_err("CreateEvent");
        mp__free(s);
        return rc;
    }
    /* The pipe's type says how its peer writes: a message-type pipe (ours, CPython's)
     * is read in message mode; a byte pipe (an anonymous pipe) keeps the header. The
     * read mode belongs to the handle, so it is set here too, for a handle from
     * elsewhere; a write-only end may refuse, and never reads. */
    DWORD flags = 0;
    if (GetNamedPipeInfo(MP__H(h), &flags, NULL, NULL, NULL) && (flags & PIPE_TYPE_MESSAGE)) {
        DWORD mode = PIPE_READMODE_MESSAGE;
        SetNamedPipeHandleState(MP__H(h), &mode, NULL, NULL);
        s->message = true;
    }
    *out = s;
    return 0;
}

bool mp__osconn_message_mode(const mp__osconn *s) { return s && s->message; }

bool mp__osconn_holds_message(const mp__osconn *s) { return s && s->got_empty; }

void mp__osconn_free(mp__osconn *s) {
    if (!s) return;
    CloseHandle(s->ev);
    mp__free(s);
}

int mp__os_conn_close(mp_os_handle h, int kind) {
    if (kind == MP__CONN_SOCKET) {
        if (closesocket((SOCKET)h) != 0)
            return mp__win_err((DWORD)WSAGetLastError(), "closesocket");
        return 0;
    }
    return mp__os_handle_close(h);
}

static volatile LONG g_pipe_counter;

int mp__os_conn_pipe(bool duplex, mp_os_handle h[2], mp_os_handle hw[2], int *kind) {
    h[0] = h[1] = hw[0] = hw[1] = MP_INVALID_OS_HANDLE;
    *kind = MP__CONN_PIPE;
    unsigned char rnd[8];
    int rc = mp__os_random(rnd, sizeof rnd);
    if (rc) return rc;
    wchar_t name[128];
    _snwprintf(name, sizeof name / sizeof name[0],
               L"\\\\.\\pipe\\multiproc-%lu-%ld-%02x%02x%02x%02x%02x%02x%02x%02x",
               (unsigned long)GetCurrentProcessId(), (long)InterlockedIncrement(&g_pipe_counter),
               rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    name[sizeof name / sizeof name[0] - 1] = 0;
    /* End 0 is the server (reads; writes too when duplex), end 1 the client. */
    DWORD open_mode = (duplex ? PIPE_ACCESS_DUPLEX : PIPE_ACCESS_INBOUND) |
                      FILE_FLAG_FIRST_PIPE_INSTANCE | FILE_FLAG_OVERLAPPED;
    const DWORD bufsize = 64 * 1024;
    HANDLE srv =
        CreateNamedPipeW(name, open_mode, PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT, 1,
                         duplex ? bufsize : 0, bufsize, 0, NULL);
    if (srv == INVALID_HANDLE_VALUE) return mp__os_err("CreateNamedPipe");
    DWORD access = duplex ? (GENERIC_READ | GENERIC_WRITE) : (GENERIC_WRITE | FILE_READ_ATTRIBUTES);
    HANDLE cli = CreateFileW(name, access, 0, NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED, NULL);
    if (cli == INVALID_HANDLE_VALUE) {
        rc = mp__os_err("CreateFile(pipe)");
        CloseHandle(srv);
        return rc;
    }
    DWORD mode = PIPE_READMODE_MESSAGE;
    if (!SetNamedPipeHandleState(cli, &mode, NULL, NULL)) {
        rc = mp__os_err("SetNamedPipeHandleState");
        goto fail;
    }
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ov.hEvent) {
        rc = mp__os_err("CreateEvent");
        goto fail;
    }
    if (!ConnectNamedPipe(srv, &ov)) {
        DWORD e = GetLastError(), n;
        if (e == ERROR_IO_PENDING) {
            if (!GetOverlappedResult(srv, &ov, &n, TRUE))
                e = GetLastError();
            else
                e = ERROR_PIPE_CONNECTED;
        }
        if (e != ERROR_PIPE_CONNECTED) {
            CloseHandle(ov.hEvent);
            rc = mp__win_err(e, "ConnectNamedPipe");
            goto fail;
        }
    }
    CloseHandle(ov.hEvent);
    h[0] = MP__OSH(srv);
    h[1] = MP__OSH(cli);
    return 0;
fail:
    CloseHandle(cli);
    CloseHandle(srv);
    return rc;
}

/* ---- whole-buffer I/O --------------------------------------------------------- */

static int pipe_err(DWORD e, const char *what, bool reading) {
    if (e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED)
        return reading ? mp__err(MP_EOF, "connection: end of file")
                       : mp__err(MP_EPIPE, "connection: send: the peer has closed the connection");
    return mp__win_err(e, what);
}

/* One overlapped (or, for a handle opened without FILE_FLAG_OVERLAPPED, synchronous)
 * ReadFile/WriteFile, waited for: the Windows error (0 on success; ERROR_MORE_DATA
 * when a message-mode read got the start of a longer message), bytes moved in *done. */
static DWORD pipe_io_e(HANDLE h, mp__osconn *s, void *buf, DWORD n, DWORD *done, bool reading) {
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    *done = 0;
    HANDLE ev = s ? s->ev : CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ev) return GetLastError();
    ResetEvent(ev);
    ov.hEvent = ev;
    BOOL ok = reading ? ReadFile(h, buf, n, NULL, &ov) : WriteFile(h, buf, n, NULL, &ov);
    DWORD e = ok ? 0 : GetLastError();
    /* Completed, pending or completed with more data: the result comes from the same call. */
    if (ok || e == ERROR_IO_PENDING || e == ERROR_MORE_DATA)
        e = GetOverlappedResult(h, &ov, done, TRUE) ? 0 : GetLastError();
    if (!s) CloseHandle(ev);
    return e;
}

static int pipe_io(HANDLE h, mp__osconn *s, void *buf, DWORD n, DWORD *done, bool reading) {
    DWORD e = pipe_io_e(h, s, buf, n, done, reading);
    return e ? pipe_err(e, reading ? "ReadFile" : "WriteFile", reading) : 0;
}

static int sock_err(const char *what, bool reading) {
    int e = WSAGetLastError();
    if (e == WSAECONNRESET || e == WSAECONNABORTED || e == WSAESHUTDOWN)
        return reading ? mp__err(MP_EOF, "connection: reset by peer")
                       : mp__err(MP_EPIPE, "connection: send: the peer has closed the connection");
    return mp__win_err((DWORD)e, what);
}

static int write_all(mp_os_handle h, int kind, mp__osconn *s, const char *p, size_t n) {
    while (n) {
        DWORD chunk = n > ((DWORD)1 << 30) ? ((DWORD)1 << 30) : (DWORD)n, done = 0;
        if (kind == MP__CONN_SOCKET) {
            int w = send((SOCKET)h, p, (int)chunk, 0);
            if (w == SOCKET_ERROR) return sock_err("send", false);
            done = (DWORD)w;
        } else {
            int rc = pipe_io(MP__H(h), s, (void *)p, chunk, &done, false);
            if (rc) return rc;
        }
        p += done;
        n -= done;
    }
    return 0;
}

int mp__os_conn_writev(mp_os_handle h, int kind, mp__osconn *s, const mp__iov *iov, int cnt) {
    /* No gathered write for pipes: a small message is copied into one buffer so it
     * still goes in one call (and one TCP segment); a large one goes in two. */
    size_t total = 0;
    for (int i = 0; i < cnt; i++) total += iov[i].n;
    char small[8192];
    if (total <= sizeof small) {
        size_t k = 0;
        for (int i = 0; i < cnt; i++) {
            if (iov[i].n) memcpy(small + k, iov[i].p, iov[i].n);
            k += iov[i].n;
        }
        return write_all(h, kind, s, small, total);
    }
    for (int i = 0; i < cnt; i++) {
        int rc = write_all(h, kind, s, iov[i].p, iov[i].n);
        if (rc) return rc;
    }
    return 0;
}

int mp__os_conn_read_exact(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t n,
                           size_t *got) {
    char *p = buf;
    size_t done = 0;
    *got = 0;
    while (done < n) {
        size_t left = n - done;
        DWORD chunk = left > ((DWORD)1 << 30) ? ((DWORD)1 << 30) : (DWORD)left, k = 0;
        int rc = 0;
        if (kind == MP__CONN_SOCKET) {
            int r = recv((SOCKET)h, p + done, (int)chunk, 0);
            if (r == SOCKET_ERROR)
                rc = sock_err("recv", true);
            else if (r == 0)
                rc = mp__err(MP_EOF, "connection: end of file");
            else
                k = (DWORD)r;
        } else {
            rc = pipe_io(MP__H(h), s, p + done, chunk, &k, true);
            if (!rc && k == 0) continue; /* a zero-length write on the other side */
        }
        if (rc) {
            *got = done;
            return rc;
        }
        done += k;
    }
    *got = done;
    return 0;
}

int mp__os_conn_read_some(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t cap,
                          size_t *got) {
    *got = 0;
    DWORD chunk = cap > ((DWORD)1 << 30) ? ((DWORD)1 << 30) : (DWORD)cap, k = 0;
    for (;;) {
        if (kind == MP__CONN_SOCKET) {
            int r = recv((SOCKET)h, buf, (int)chunk, 0);
            if (r == SOCKET_ERROR) return sock_err("recv", true);
            if (r == 0) return mp__err(MP_EOF, "connection: end of file");
            *got = (size_t)r;
            return 0;
        }
        int rc = pipe_io(MP__H(h), s, buf, chunk, &k, true);
        if (rc) return rc;
        if (k) {
            *got = k;
            return 0;
        }
    }
}

/* ---- message mode ------------------------------------------------------------------ */

int mp__os_conn_write_message(mp_os_handle h, int kind, mp__osconn *s, const void *buf, size_t n) {
    (void)kind;
    static char none;
    if (!s || !s->message) return mp__err(MP_ENOTSUP, "connection: not a message-mode pipe");
    if (n > MAXDWORD)
        return mp__err(MP_ETOOBIG,
                       "connection: a pipe message on Windows is at most 4 GiB - 1 "
                       "bytes (%llu given)",
                       (unsigned long long)n);
    /* One WriteFile is one message, whatever the pipe's buffer size: a longer one waits
     * until the reader has taken it. */
    DWORD done = 0;
    int rc = pipe_io(MP__H(h), s, n ? (void *)buf : &none, (DWORD)n, &done, false);
    if (!rc && done != n)
        rc = mp__err(MP_EPROTO, "connection: WriteFile took %lu of a %llu-byte message",
                     (unsigned long)done, (unsigned long long)n);
    return rc;
}

int mp__os_conn_read_message(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t cap,
                             size_t *got, uint64_t *left) {
    (void)kind;
    *got = 0;
    *left = 0;
    if (!s || !s->message) return mp__err(MP_ENOTSUP, "connection: not a message-mode pipe");
    if (s->got_empty) {
        s->got_empty = false;
        return 0;
    }
    DWORD k = 0, chunk = cap > MAXDWORD ? MAXDWORD : (DWORD)cap;
    DWORD e = pipe_io_e(MP__H(h), s, buf, chunk, &k, true);
    *got = k;
    if (!e) return 0;
    if (e != ERROR_MORE_DATA) return pipe_err(e, "ReadFile", true);
    DWORD rest = 0;
    if (!PeekNamedPipe(MP__H(h), NULL, 0, NULL, NULL, &rest)) return mp__os_err("PeekNamedPipe");
    if (!rest)
        return mp__err(MP_EPROTO, "connection: ReadFile said more data, PeekNamedPipe none left");
    *left = rest;
    return 0;
}

/* ---- readiness ------------------------------------------------------------------ */

/* 1 ready (data or end of file), 0 not yet, < 0 error. */
static int pipe_ready_now(HANDLE h) {
    DWORD avail = 0;
    if (!PeekNamedPipe(h, NULL, 0, NULL, &avail, NULL)) {
        DWORD e = GetLastError();
        if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_NO_DATA) return 1;
        return mp__win_err(e, "PeekNamedPipe");
    }
    return avail > 0;
}

static int socket_ready_now(SOCKET s) {
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(s, &rd);
    struct timeval tv = {0, 0};
    int r = select(0, &rd, NULL, NULL, &tv);
    if (r == SOCKET_ERROR) return sock_err("select", true);
    return r > 0;
}

int mp__os_conn_poll(mp_os_handle h, int kind, mp__osconn *s, double timeout) {
    mp__oswait it = {h, MP__W_CONN, kind, s};
    bool ready = false;
    return mp__os_wait(&it, 1, timeout, &ready);
}

/* What one item of a wait set up, to be undone afterwards. */
typedef struct wslot {
    HANDLE ev;     /* event we created (zero-byte read or WSAEventSelect), or NULL */
    bool pending;  /* a zero-byte read is in flight */
    bool selected; /* WSAEventSelect is active */
    OVERLAPPED ov;
} wslot;

static int check_now(const mp__oswait *it, bool *ready) {
    int r;
    if (it->what == MP__W_HANDLE) {
        DWORD w = WaitForSingleObject(MP__H(it->h), 0);
        if (w == WAIT_FAILED) return mp__os_err("WaitForSingleObject");
        r = (w == WAIT_OBJECT_0 || w == WAIT_ABANDONED);
    } else if (it->what == MP__W_SOCKET || it->kind == MP__CONN_SOCKET) {
        r = socket_ready_now((SOCKET)it->h);
    } else {
        r = (it->s && it->s->got_empty) ? 1 : pipe_ready_now(MP__H(it->h));
    }
    if (r < 0) return r;
    *ready = r > 0;
    return 0;
}

int mp__os_wait(const mp__oswait *items, size_t n, double timeout, bool *ready) {
    if (n > MAXIMUM_WAIT_OBJECTS)
        return mp__err(MP_ENOTSUP, "wait: at most %d objects on Windows", MAXIMUM_WAIT_OBJECTS);
    size_t nready = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = check_now(&items[i], &ready[i]);
        if (rc) return rc;
        nready += ready[i];
    }
    /* Even with timeout 0 the zero-byte reads below run: only they see an empty
     * message (PeekNamedPipe counts no bytes for it). */
    if (nready) return 0;

    wslot slots[MAXIMUM_WAIT_OBJECTS];
    HANDLE hs[MAXIMUM_WAIT_OBJECTS];
    memset(slots, 0, sizeof slots);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const mp__oswait *it = &items[i];
        wslot *sl = &slots[i];
        if (it->what == MP__W_HANDLE) {
            hs[i] = MP__H(it->h);
            continue;
        }
        sl->ev = CreateEventW(NULL, TRUE, FALSE, NULL);
        if (!sl->ev) {
            rc = mp__os_err("CreateEvent");
            break;
        }
        hs[i] = sl->ev;
        if (it->what == MP__W_SOCKET || it->kind == MP__CONN_SOCKET) {
            if (WSAEventSelect((SOCKET)it->h, sl->ev, FD_READ | FD_ACCEPT | FD_CLOSE) != 0)
                rc = sock_err("WSAEventSelect", true);
            else
                sl->selected = true;
            continue;
        }
        /* CPython's way: a zero-byte overlapped read completes when data arrives. In
         * message mode it completes with ERROR_MORE_DATA for a message, and with
         * success for an empty one, which it consumes: remembered in got_empty. */
        sl->ov.hEvent = sl->ev;
        if (ReadFile(MP__H(it->h), NULL, 0, NULL, &sl->ov)) {
            if (it->s && it->s->message) it->s->got_empty = true;
            SetEvent(sl->ev);
        } else {
            DWORD e = GetLastError();
            if (e == ERROR_IO_PENDING)
                sl->pending = true;
            else if (e == ERROR_BROKEN_PIPE || e == ERROR_MORE_DATA ||
                     e == ERROR_PIPE_NOT_CONNECTED)
                SetEvent(sl->ev);
            else
                rc = mp__win_err(e, "ReadFile(0)");
        }
    }
    if (!rc) {
        double deadline = mp__deadline(timeout);
        for (;;) {
            DWORD ms = mp__win_timeout_ms(mp__left(deadline));
            DWORD w = WaitForMultipleObjects((DWORD)n, hs, FALSE, ms);
            if (w == WAIT_FAILED) {
                rc = mp__os_err("WaitForMultipleObjects");
                break;
            }
            if (w < WAIT_OBJECT_0 + n || (w >= WAIT_ABANDONED_0 && w < WAIT_ABANDONED_0 + n)) break;
            if (mp__left(deadline) == 0) {
                rc = MP_ETIMEDOUT;
                break;
            }
        }
    }
    /* Undo, then look at every object again: more than one may be ready. */
    for (size_t i = 0; i < n; i++) {
        wslot *sl = &slots[i];
        if (sl->pending) {
            DWORD k;
            CancelIoEx(MP__H(items[i].h), &sl->ov);
            if (GetOverlappedResult(MP__H(items[i].h), &sl->ov, &k, TRUE) && items[i].s &&
                items[i].s->message)
                items[i].s->got_empty = true;
        }
        if (sl->selected) {
            u_long blocking = 0;
            WSAEventSelect((SOCKET)items[i].h, NULL, 0);
            ioctlsocket((SOCKET)items[i].h, FIONBIO, &blocking);
        }
        if (sl->ev) CloseHandle(sl->ev);
    }
    if (rc && rc != MP_ETIMEDOUT) return rc;
    nready = 0;
    for (size_t i = 0; i < n; i++) {
        int rc2 = check_now(&items[i], &ready[i]);
        if (rc2) return rc2;
        nready += ready[i];
    }
    return nready ? 0 : MP_ETIMEDOUT;
}

/* ---- handles over a connection: DuplicateHandle / WSADuplicateSocket -------------- */

int mp__os_conn_xfer_mode(mp_os_handle h, int kind) {
    (void)h, (void)kind;
    return MP__XFER_DUP;
}

/* Handles travel by duplication into the receiver: no carrier needed. */
int mp__os_conn_side_pair(mp_os_handle s[2]) {
    s[0] = s[1] = MP_INVALID_OS_HANDLE;
    return 0;
}

int mp__os_conn_send_fds(mp_os_handle s, const void *data, size_t len, const mp_os_handle *fds,
                         size_t n) {
    (void)s, (void)data, (void)len, (void)fds, (void)n;
    return mp__err(MP_ENOTSUP, "send handles: no SCM_RIGHTS on Windows");
}

int mp__os_conn_recv_fds(mp_os_handle s, bool wait, void *data, size_t cap, size_t *len,
                         mp_os_handle *fds, size_t max, size_t *n) {
    (void)s, (void)wait, (void)data, (void)cap, (void)fds, (void)max;
    *len = 0;
    *n = 0;
    return mp__err(MP_ENOTSUP, "receive handles: no SCM_RIGHTS on Windows");
}

int mp__os_conn_peek_fds(mp_os_handle s, unsigned char *byte, bool *has) {
    (void)s;
    *byte = 0;
    *has = false;
    return mp__err(MP_ENOTSUP, "receive handles: no SCM_RIGHTS on Windows");
}

enum { EXP_HANDLE = 1, EXP_SOCKET = 2 };

/* The process a pid names, as a process id: this one for its own id or the id of one of
 * its threads (a dummy child's "pid"), else the pid itself; 0 when it cannot be one. */
static DWORD target_pid(int64_t pid) {
    DWORD self = GetCurrentProcessId();
    if (pid <= 0 || pid > (int64_t)MAXDWORD) return 0;
    if ((DWORD)pid == self) return self;
    HANDLE t = OpenThread(THREAD_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (t) {
        DWORD owner = GetProcessIdOfThread(t);
        CloseHandle(t);
        if (owner == self) return self;
    }
    return (DWORD)pid;
}

/* *out: a handle on process pid for DuplicateHandle (the pseudo handle for this one). */
static int open_for_dup(DWORD pid, const char *what, HANDLE *out) {
    *out = NULL;
    if (pid == GetCurrentProcessId()) {
        *out = GetCurrentProcess();
        return 0;
    }
    *out = pid ? OpenProcess(PROCESS_DUP_HANDLE, FALSE, pid) : NULL;
    if (*out) return 0;
    DWORD e = pid ? GetLastError() : ERROR_INVALID_PARAMETER;
    if (e == ERROR_INVALID_PARAMETER)
        return mp__err_os(MP_ENOENT, (int)e, "%s: no process %lu", what, (unsigned long)pid);
    return mp__win_err(e, what);
}

static void close_proc(HANDLE p) {
    if (p && p != GetCurrentProcess()) CloseHandle(p);
}

static INIT_ONCE g_wsa_once = INIT_ONCE_STATIC_INIT;
static int g_wsa_rc;

static BOOL CALLBACK wsa_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once, (void)param, (void)ctx;
    WSADATA d;
    int r = WSAStartup(MAKEWORD(2, 2), &d);
    g_wsa_rc = r ? mp__win_err((DWORD)r, "WSAStartup") : 0;
    return TRUE;
}

/* A process that receives a socket may never have used one. */
static int wsa(void) {
    InitOnceExecuteOnce(&g_wsa_once, wsa_init, NULL, NULL);
    return g_wsa_rc;
}

int mp__os_handle_export(mp_os_handle h, bool sock, int64_t dest_pid, mp__buf *b) {
    if (sock) {
        if (!dest_pid)
            return mp__err(MP_EINVAL, "send socket: Windows shares a socket with one process "
                                      "(WSADuplicateSocket): give the receiver's pid");
        DWORD pid = target_pid(dest_pid);
        if (!pid) return mp__err(MP_EINVAL, "send socket: bad pid %lld", (long long)dest_pid);
        int rc = wsa();
        if (rc) return rc;
        WSAPROTOCOL_INFOW info;
        memset(&info, 0, sizeof info);
        if (WSADuplicateSocketW((SOCKET)h, pid, &info) != 0) {
            int e = WSAGetLastError();
            if (e == WSAENOTSOCK)
                return mp__err_os(MP_EBADF, e, "send socket: not a socket (WSA error %d)", e);
            return mp__win_err((DWORD)e, "WSADuplicateSocket");
        }
        mp__buf_u8(b, EXP_SOCKET);
        mp__buf_blob(b, &info, sizeof info);
        return 0;
    }
    /* Into the receiver, or (pid unknown) into this process for the receiver to take
     * out later, as CPython's DupHandle. */
    DWORD holder = dest_pid ? target_pid(dest_pid) : GetCurrentProcessId();
    if (!holder) return mp__err(MP_EINVAL, "send handle: bad pid %lld", (long long)dest_pid);
    HANDLE proc;
    int rc = open_for_dup(holder, "send handle: OpenProcess", &proc);
    if (rc) return rc;
    HANDLE dup = NULL;
    BOOL ok =
        DuplicateHandle(GetCurrentProcess(), MP__H(h), proc, &dup, 0, FALSE, DUPLICATE_SAME_ACCESS);
    DWORD e = ok ? 0 : GetLastError();
    close_proc(proc);
    if (!ok) {
        if (e == ERROR_INVALID_HANDLE)
            return mp__err_os(MP_EBADF, (int)e, "send handle: not an open handle");
        return mp__win_err(e, "send handle: DuplicateHandle");
    }
    mp__buf_u8(b, EXP_HANDLE);
    mp__buf_u64(b, (uint64_t)(uintptr_t)dup);
    return 0;
}

int mp__os_handle_import(mp__rd *r, bool sock, int64_t src_pid, int64_t dest_pid,
                         mp_os_handle *out) {
    *out = MP_INVALID_OS_HANDLE;
    DWORD self = GetCurrentProcessId();
    int tag = mp__rd_u8(r);
    if (sock) {
        size_t n = 0;
        const void *p = mp__rd_blob(r, &n);
        if (r->err || tag != EXP_SOCKET || n != sizeof(WSAPROTOCOL_INFOW))
            return mp__err(MP_EPROTO, "receive socket: malformed");
        if (target_pid(dest_pid) != self)
            return mp__err(MP_EPROTO,
                           "receive socket: it was shared with process %lld, not "
                           "this one",
                           (long long)dest_pid);
        int rc = wsa();
        if (rc) return rc;
        WSAPROTOCOL_INFOW info;
        memcpy(&info, p, sizeof info);
        SOCKET s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                              WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (s == INVALID_SOCKET) {
            s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                           WSA_FLAG_OVERLAPPED);
            if (s != INVALID_SOCKET) SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
        }
        if (s == INVALID_SOCKET) return mp__win_err((DWORD)WSAGetLastError(), "WSASocket(shared)");
        *out = (mp_os_handle)s;
        return 0;
    }
    uint64_t v = mp__rd_u64(r);
    if (r->err || tag != EXP_HANDLE) return mp__err(MP_EPROTO, "receive handle: malformed");
    if (dest_pid) {
        if (target_pid(dest_pid) != self)
            return mp__err(MP_EPROTO,
                           "receive handle: it was sent to process %lld, not this "
                           "one",
                           (long long)dest_pid);
        *out = (mp_os_handle)(uintptr_t)v;
        return 0;
    }
    /* Sent without a pid: it waits in the sender, which we take it from. */
    DWORD src = target_pid(src_pid);
    if (src == self) {
        *out = (mp_os_handle)(uintptr_t)v;
        return 0;
    }
    HANDLE proc;
    int rc = open_for_dup(src,
                          "receive handle: the sender (which keeps a handle sent without "
                          "a pid until taken) is gone: OpenProcess",
                          &proc);
    if (rc) return rc;
    HANDLE h = NULL;
    BOOL ok = DuplicateHandle(proc, (HANDLE)(uintptr_t)v, GetCurrentProcess(), &h, 0, FALSE,
                              DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE);
    DWORD e = ok ? 0 : GetLastError();
    close_proc(proc);
    if (!ok) return mp__win_err(e, "receive handle: DuplicateHandle from the sender");
    *out = MP__OSH(h);
    return 0;
}

void mp__os_handle_discard(mp__rd *r, bool sock, int64_t src_pid, int64_t dest_pid) {
    mp__err_mute();
    if (sock) {
        /* Only its receiver can claim a shared socket, and so close it. */
        mp_os_handle s = MP_INVALID_OS_HANDLE;
        if (target_pid(dest_pid) == GetCurrentProcessId() &&
            mp__os_handle_import(r, true, src_pid, dest_pid, &s) == 0)
            closesocket((SOCKET)s);
        else if (target_pid(dest_pid) != GetCurrentProcessId()) {
            size_t n;
            mp__rd_u8(r);
            mp__rd_blob(r, &n);
        }
        mp__err_unmute();
        return;
    }
    int tag = mp__rd_u8(r);
    uint64_t v = mp__rd_u64(r);
    if (!r->err && tag == EXP_HANDLE) {
        DWORD holder = target_pid(dest_pid ? dest_pid : src_pid);
        HANDLE proc = NULL;
        open_for_dup(holder, "discard", &proc);
        if (proc == GetCurrentProcess())
            CloseHandle((HANDLE)(uintptr_t)v);
        else if (proc)
            DuplicateHandle(proc, (HANDLE)(uintptr_t)v, NULL, NULL, 0, FALSE,
                            DUPLICATE_CLOSE_SOURCE);
        close_proc(proc);
    }
    mp__err_unmute();
}
