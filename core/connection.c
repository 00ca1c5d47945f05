/* Connections: CPython's framing over a pipe or socket, Pipe(), passing a connection
 * to a child, wait() over connections and handles, and handles, sockets and connections
 * sent over a connection (CPython's send_handle / recv_handle and its reduction of
 * connections). The OS side is core/os_conn.h. */
#include <stdio.h>
#include <string.h>

#include "connection_internal.h"
#include "os_conn.h"

struct mp_connection {
    mp_os_handle h;  /* reads (writes too unless hw is set); a write-only end's handle */
    mp_os_handle hw; /* a separate write handle (a duplex pair of pipes), else invalid */
    mp_os_handle hs; /* posix duplex pipe: the packet socket its handles travel on, else invalid */
    int kind;
    int xfer; /* how handles travel (XF_*), -1 until first needed */
    bool readable, writable, closed;
    mp__osconn *os;
    uint64_t max_message;
    mp_value_limits vlim; /* for mp_connection_recv; zeros are the defaults */
    bool msgmode;         /* the OS delimits messages (Windows pipes): no length header */
    bool inband;          /* an AF_UNIX stream socket: handles may come on it in-band */
    int ra;               /* MP_READ_AHEAD_*: the mode set (AUTO by default) */
    bool shared;    /* another process (or object) may read it too: AUTO reads no more ahead */
    bool torn;      /* a fork child's copy whose parent held part of a message */
    unsigned forks; /* mp__os_conn_forks as last seen: a new count means a fork */
    unsigned child_forks;
    unsigned char *rbuf; /* read-ahead buffer of READ_AHEAD bytes, made on first use */
    size_t rpos, rend;   /* unread bytes: rbuf[rpos .. rend) */
};

/* Large enough for a burst of small messages in one read, small enough that copying
 * it out of a large message's first read costs nothing measurable. */
#define READ_AHEAD 8192

/* ---- read-ahead and sharing -------------------------------------------------------
 *
 * A receive that may read ahead takes a small message in one read (header and payload
 * together, and whatever follows); without, it reads the header, then exactly the
 * payload, so the pipe is left at a message boundary for whoever reads next. Reading
 * ahead is safe only while this object is the end's only reader, so in the default
 * mode (AUTO) it stops for good, in every process that holds the end, the moment the
 * end may have a second reader:
 *   - passed to a child (mp_args_add_connection) or over a connection
 *     (mp_connection_send_connection): the sender's object stops, the receiver's starts
 *     stopped (conn_rebuild), on every start method, the dummy one included (its child
 *     rebuilds its own object over duplicated handles);
 *   - inherited by a fork (the fork start method, apr, a fork() of the program's own):
 *     both processes see a new fork count (mp__os_conn_forks) at their next call;
 *   - its handle given out (mp_connection_fileno): the caller may poll it with the OS,
 *     duplicate or send it, and a poll would not see bytes held here.
 * An AF_UNIX stream socket never reads ahead in AUTO: a handle sent on it (CPython's
 * send_handle) travels with a byte of the stream, and a plain read would drop it.
 * Bytes already held when an end is passed are not handed over: the pass is refused
 * (MP_ESTATE) until they are received, after the read-ahead stopped, so the retry
 * succeeds. Handing them over could lose them (a start that fails after the launch was
 * encoded has no way back), and a trailing part of a message could be completed only
 * by waiting on the peer. A fork child's inherited copy drops the bytes its parent held
 * (the parent delivers them: nothing is lost or doubled); if they end inside a message,
 * the rest of it is the parent's too, so the copy refuses to receive (MP_ESTATE). */

/* Whether a receive may read ahead now. */
static bool reads_ahead(const mp_connection *c) {
    if (c->msgmode) return false;
    if (c->ra == MP_READ_AHEAD_ON) return true;
    return c->ra == MP_READ_AHEAD_AUTO && !c->shared && !c->inband;
}

/* Whether rbuf[rpos .. rend) holds whole messages only. */
static bool held_whole(const mp_connection *c) {
    size_t p = c->rpos;
    while (p < c->rend) {
        uint64_t size = 0;
        size_t hl = 0;
        mp__err_mute();
        int rc = mp__conn_frame_decode(c->rbuf + p, c->rend - p, &size, &hl);
        mp__err_unmute();
        if (rc || size > c->rend - p - hl) return false;
        p += hl + (size_t)size;
    }
    return true;
}

/* Catches up with forks since the last call: a new count marks the end shared; in a
 * fork child, the bytes the parent held are the parent's. */
static void fork_check(mp_connection *c) {
    unsigned f, ch;
    mp__os_conn_forks(&f, &ch);
    if (f == c->forks) return;
    c->forks = f;
    c->shared = true;
    if (ch == c->child_forks) return;
    c->child_forks = ch;
    if (c->rpos < c->rend && !held_whole(c)) c->torn = true;
    c->rpos = c->rend = 0;
}

/* The checks every receive makes after check_open. */
static int recv_ready(mp_connection *c, const char *fn) {
    fork_check(c);
    if (c->torn)
        return mp__err(MP_ESTATE,
                       "%s: this end was inherited by a fork while its parent held part of a "
                       "message read ahead; the rest of that message is the parent's",
                       fn);
    return 0;
}

/* A pass to another process or object: no more reading ahead here (AUTO), and nothing
 * held that the other would miss. */
static int pass_check(mp_connection *c, const char *fn) {
    fork_check(c);
    c->shared = true;
    if (c->torn)
        return mp__err(MP_ESTATE,
                       "%s: this end was inherited by a fork in the middle of a message its "
                       "parent is reading",
                       fn);
    if (c->rpos < c->rend)
        return mp__err(MP_ESTATE,
                       "%s: the connection holds %zu bytes read ahead that another process "
                       "would miss: receive them first (it reads no more ahead), or set "
                       "MP_READ_AHEAD_OFF before receiving on an end you will pass",
                       fn, c->rend - c->rpos);
    if (mp__osconn_holds_message(c->os))
        return mp__err(MP_ESTATE,
                       "%s: the connection holds a message taken from the OS (an empty "
                       "message a wait consumed) that another process would miss",
                       fn);
    return 0;
}

/* ---- framing ---------------------------------------------------------------- */

size_t mp__conn_frame_encode(uint64_t n, unsigned char hdr[MP__FRAME_MAX_HEADER]) {
    if (n <= 0x7fffffffu) {
        for (int i = 0; i < 4; i++) hdr[i] = (unsigned char)(n >> (24 - 8 * i));
        return 4;
    }
    memset(hdr, 0xff, 4);
    for (int i = 0; i < 8; i++) hdr[4 + i] = (unsigned char)(n >> (56 - 8 * i));
    return 12;
}

int mp__conn_frame_decode(const unsigned char *p, size_t avail, uint64_t *size, size_t *hdrlen) {
    *size = 0;
    *hdrlen = 4;
    if (avail < 4) return MP_EAGAIN;
    uint32_t u = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (u <= 0x7fffffffu) {
        *size = u;
        return 0;
    }
    if (u != 0xffffffffu)
        return mp__err(MP_EPROTO, "connection: bad message header (length %ld)", (long)(int32_t)u);
    *hdrlen = 12;
    if (avail < 12) return MP_EAGAIN;
    uint64_t n = 0;
    for (int i = 4; i < 12; i++) n = n << 8 | p[i];
    *size = n;
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int conn_make(mp_os_handle h, mp_os_handle hw, mp_os_handle hs, int kind, bool readable,
                     bool writable, mp_connection **out) {
    if (!out) return mp__err(MP_EINVAL, "connection: out is NULL");
    *out = NULL;
    if (h == MP_INVALID_OS_HANDLE) return mp__err(MP_EBADF, "connection: invalid handle");
    if (kind != MP__CONN_SOCKET && kind != MP__CONN_PIPE)
        return mp__err(MP_EINVAL, "connection: unknown handle kind %d", kind);
    if (!readable && !writable)
        return mp__err(MP_EINVAL, "connection: at least one of readable and writable must be true");
    mp_connection *c = mp__calloc(1, sizeof *c);
    if (!c) return mp__err(MP_ENOMEM, "connection: out of memory");
    int rc = mp__osconn_open(h, kind, &c->os);
    if (rc) {
        mp__free(c);
        return rc;
    }
    c->h = h;
    c->hw = hw;
    c->hs = hs;
    c->kind = kind;
    c->xfer = -1;
    c->readable = readable;
    c->writable = writable;
    c->max_message = MP_CONNECTION_DEFAULT_MAX_MESSAGE;
    c->msgmode = mp__osconn_message_mode(c->os);
    c->ra = MP_READ_AHEAD_AUTO;
    c->inband = kind == MP__CONN_SOCKET && mp__os_conn_xfer_mode(h, kind) == MP__XFER_INBAND;
    mp__os_conn_forks(&c->forks, &c->child_forks);
    *out = c;
    return 0;
}

int mp__connection_from_os_handle(mp_os_handle h, int kind, bool readable, bool writable,
                                  mp_connection **out) {
    return conn_make(h, MP_INVALID_OS_HANDLE, MP_INVALID_OS_HANDLE, kind, readable, writable, out);
}

static mp_os_handle write_handle(const mp_connection *c) {
    return c->hw != MP_INVALID_OS_HANDLE ? c->hw : c->h;
}

mp_os_handle mp__connection_handle(const mp_connection *c, int *kind) {
    if (kind) *kind = c ? c->kind : 0;
    return (c && !c->closed) ? c->h : MP_INVALID_OS_HANDLE;
}

int mp_pipe(bool duplex, mp_connection **c1, mp_connection **c2) {
    if (c1) *c1 = NULL;
    if (c2) *c2 = NULL;
    if (!c1 || !c2) return mp__err(MP_EINVAL, "mp_pipe: out is NULL");
    mp_os_handle h[2], hw[2], hs[2] = {MP_INVALID_OS_HANDLE, MP_INVALID_OS_HANDLE};
    int kind = 0;
    int rc = mp__os_conn_pipe(duplex, h, hw, &kind);
    if (rc) return rc;
    /* A duplex pair of pipes carries no handles: a packet socket pair beside it does
     * (send_handle works on every duplex Pipe, as on CPython's socketpair). One-way
     * pipes get none, as CPython's cannot send handles either. */
    if (duplex) rc = mp__os_conn_side_pair(hs);
    mp_connection *a = NULL, *b = NULL;
    if (!rc) rc = conn_make(h[0], hw[0], hs[0], kind, true, duplex, &a);
    if (rc) {
        for (int i = 0; i < 2; i++) {
            mp__os_conn_close(h[i], kind);
            if (hw[i] != MP_INVALID_OS_HANDLE) mp__os_conn_close(hw[i], kind);
            if (hs[i] != MP_INVALID_OS_HANDLE) mp__os_conn_close(hs[i], kind);
        }
        return rc;
    }
    rc = conn_make(h[1], hw[1], hs[1], kind, duplex, true, &b);
    if (rc) {
        mp_connection_free(a);
        mp__os_conn_close(h[1], kind);
        if (hw[1] != MP_INVALID_OS_HANDLE) mp__os_conn_close(hw[1], kind);
        if (hs[1] != MP_INVALID_OS_HANDLE) mp__os_conn_close(hs[1], kind);
        return rc;
    }
    *c1 = a;
    *c2 = b;
    return 0;
}

int mp_connection_close(mp_connection *c) {
    if (!c || c->closed) return 0;
    c->closed = true;
    mp__osconn_free(c->os);
    c->os = NULL;
    mp__free(c->rbuf);
    c->rbuf = NULL;
    c->rpos = c->rend = 0;
    int rc = mp__os_conn_close(c->h, c->kind);
    if (c->hw != MP_INVALID_OS_HANDLE) {
        int rc2 = mp__os_conn_close(c->hw, c->kind);
        if (!rc) rc = rc2;
    }
    if (c->hs != MP_INVALID_OS_HANDLE) {
        int rc2 = mp__os_conn_close(c->hs, c->kind);
        if (!rc) rc = rc2;
    }
    c->h = c->hw = c->hs = MP_INVALID_OS_HANDLE;
    return rc;
}

void mp_connection_free(mp_connection *c) {
    if (!c) return;
    mp_connection_close(c);
    mp__free(c);
}

bool mp_connection_closed(const mp_connection *c) { return !c || c->closed; }
bool mp_connection_readable(const mp_connection *c) { return c && !c->closed && c->readable; }
bool mp_connection_writable(const mp_connection *c) { return c && !c->closed && c->writable; }

static int conn_query(const mp_connection *c, bool *out, bool what, const char *fn) {
    if (out) *out = false;
    if (!c || !out) return mp__err(MP_EINVAL, "%s: NULL argument", fn);
    if (c->closed) return mp__err(MP_ECLOSED, "%s: connection is closed", fn);
    *out = what;
    return 0;
}

int mp_connection_is_readable(const mp_connection *c, bool *out) {
    return conn_query(c, out, c && c->readable, "mp_connection_is_readable");
}

int mp_connection_is_writable(const mp_connection *c, bool *out) {
    return conn_query(c, out, c && c->writable, "mp_connection_is_writable");
}

int mp_connection_fileno(const mp_connection *c, mp_os_handle *out) {
    if (out) *out = MP_INVALID_OS_HANDLE;
    if (!c || !out) return mp__err(MP_EINVAL, "mp_connection_fileno: NULL argument");
    if (c->closed) return mp__err(MP_ECLOSED, "mp_connection_fileno: connection is closed");
    /* The handle may now be polled, duplicated or sent by the caller: read no more ahead.
     * Connections are made by mp__calloc, never const, so the cast is sound; the
     * signature stays const as it was before this side effect existed. */
    ((mp_connection *)c)->shared = true;
    *out = c->h;
    return 0;
}

int mp_connection_set_max_message(mp_connection *c, uint64_t max) {
    if (!c) return mp__err(MP_EINVAL, "mp_connection_set_max_message: connection is NULL");
    c->max_message = max;
    return 0;
}

uint64_t mp_connection_max_message(const mp_connection *c) { return c ? c->max_message : 0; }

int mp_connection_set_value_limits(mp_connection *c, const mp_value_limits *lim) {
    if (!c) return mp__err(MP_EINVAL, "mp_connection_set_value_limits: connection is NULL");
    if (lim) {
        c->vlim = *lim;
    } else {
        memset(&c->vlim, 0, sizeof c->vlim);
    }
    return 0;
}

mp_value_limits mp__connection_value_limits(const mp_connection *c) { return c->vlim; }

static int set_mode(mp_connection *c, int mode, const char *fn) {
    if (!c) return mp__err(MP_EINVAL, "%s: connection is NULL", fn);
    if (c->closed) return mp__err(MP_ECLOSED, "%s: connection is closed", fn);
    if (mode != MP_READ_AHEAD_AUTO && mode != MP_READ_AHEAD_ON && mode != MP_READ_AHEAD_OFF)
        return mp__err(MP_EINVAL, "%s: unknown read-ahead mode %d", fn, mode);
    fork_check(c);
    c->ra = mode; /* bytes already held are still received first */
    return 0;
}

int mp_connection_set_read_ahead(mp_connection *c, mp_read_ahead mode) {
    return set_mode(c, (int)mode, "mp_connection_set_read_ahead");
}

mp_read_ahead mp_connection_read_ahead(const mp_connection *c) {
    return c ? (mp_read_ahead)c->ra : MP_READ_AHEAD_AUTO;
}

int mp_connection_set_buffered(mp_connection *c, bool on) {
    return set_mode(c, on ? MP_READ_AHEAD_ON : MP_READ_AHEAD_OFF, "mp_connection_set_buffered");
}

bool mp_connection_buffered(const mp_connection *c) {
    if (!c || c->closed) return false;
    if (c->ra == MP_READ_AHEAD_AUTO) {
        unsigned f, ch;
        mp__os_conn_forks(&f, &ch);
        if (f != c->forks) return false; /* inherited by a fork: fork_check will say so */
    }
    return reads_ahead(c);
}

void mp_connection_free_bytes(void *p) { mp__free(p); }

static int check_open(const mp_connection *c, bool want_read, const char *fn) {
    if (!c) return mp__err(MP_EINVAL, "%s: connection is NULL", fn);
    if (c->closed) return mp__err(MP_ECLOSED, "%s: connection is closed", fn);
    if (want_read && !c->readable) return mp__err(MP_EPERM, "%s: connection is write-only", fn);
    if (!want_read && !c->writable) return mp__err(MP_EPERM, "%s: connection is read-only", fn);
    return 0;
}

/* ---- sending ---------------------------------------------------------------- */

/* Header and payload go in one gathered write, so a small message costs one system
 * call and a large payload is never copied (the OS layer may copy a small one next to
 * its header: a plain write is cheaper than a two-piece writev). */
static int send_frame(mp_connection *c, const void *buf, size_t len) {
    if (c->msgmode) return mp__os_conn_write_message(write_handle(c), c->kind, c->os, buf, len);
    unsigned char hdr[MP__FRAME_MAX_HEADER];
    mp__iov iov[2] = {{hdr, mp__conn_frame_encode((uint64_t)len, hdr)}, {buf, len}};
    return mp__os_conn_writev(write_handle(c), c->kind, c->os, iov, len ? 2 : 1);
}

int mp_connection_send_bytes(mp_connection *c, const void *buf, size_t len) {
    int rc = check_open(c, false, "mp_connection_send_bytes");
    if (rc) return rc;
    if (!buf && len) return mp__err(MP_EINVAL, "mp_connection_send_bytes: buffer is NULL");
    return send_frame(c, buf, len);
}

int mp_connection_send_bytes_range(mp_connection *c, const void *buf, size_t buflen, int64_t offset,
                                   int64_t size) {
    int rc = check_open(c, false, "mp_connection_send_bytes_range");
    if (rc) return rc;
    if (!buf && buflen) return mp__err(MP_EINVAL, "mp_connection_send_bytes_range: buffer is NULL");
    if (offset < 0) return mp__err(MP_EINVAL, "mp_connection_send_bytes_range: negative offset");
    if ((uint64_t)offset > buflen)
        return mp__err(MP_EINVAL, "mp_connection_send_bytes_range: offset past the buffer");
    if (size < -1) return mp__err(MP_EINVAL, "mp_connection_send_bytes_range: negative size");
    if (size == -1) size = (int64_t)(buflen - (size_t)offset);
    if ((uint64_t)size > buflen - (size_t)offset)
        return mp__err(MP_EINVAL, "mp_connection_send_bytes_range: buffer length < offset + size");
    return send_frame(c, buf ? (const char *)buf + offset : buf, (size_t)size);
}

/* ---- receiving -------------------------------------------------------------- */

/* A failure in the middle of a message leaves the stream unusable: close it. */
static int fatal(mp_connection *c, int rc) {
    mp__err_mute(); /* the failure's own detail is the one to keep */
    mp_connection_close(c);
    mp__err_unmute();
    return rc;
}

/* A message whose length cannot be taken (too long, or a malformed header): where its
 * end lies is unknown, so nothing more can be received. As CPython's
 * _bad_message_length, a duplex end stays usable for sending; a read-only one closes. */
static int bad_length(mp_connection *c, int rc) {
    if (!c->writable) return fatal(c, rc);
    c->readable = false;
    c->rpos = c->rend = 0; /* what was read ahead belongs to the lost message */
    return rc;
}

/* Reads exactly n bytes of the stream (as mp__os_conn_read_exact), taking read-ahead
 * bytes first. A buffered connection reads a short need with one read of up to
 * READ_AHEAD bytes, so a small message costs one system call instead of two (header,
 * then payload); a long need goes straight into buf. */
static int stream_read(mp_connection *c, void *buf, size_t n, size_t *got) {
    unsigned char *p = buf;
    size_t done = c->rend - c->rpos;
    if (done > n) done = n;
    if (done) {
        memcpy(p, c->rbuf + c->rpos, done);
        c->rpos += done;
    }
    *got = done;
    if (done == n) return 0;
    bool ahead = reads_ahead(c);
    if (ahead && n - done < READ_AHEAD && !c->rbuf) c->rbuf = mp__malloc(READ_AHEAD);
    if (!ahead || n - done >= READ_AHEAD || !c->rbuf) {
        size_t k = 0;
        int rc = mp__os_conn_read_exact(c->h, c->kind, c->os, p + done, n - done, &k);
        *got = done + k;
        return rc;
    }
    while (done < n) {
        size_t k = 0;
        int rc = mp__os_conn_read_some(c->h, c->kind, c->os, c->rbuf, READ_AHEAD, &k);
        if (rc) return rc;
        size_t take = k < n - done ? k : n - done;
        memcpy(p + done, c->rbuf, take);
        done += take;
        *got = done;
        c->rpos = take;
        c->rend = k;
    }
    return 0;
}

static int read_exact(mp_connection *c, void *buf, size_t n) {
    size_t got = 0;
    int rc = stream_read(c, buf, n, &got);
    if (rc == MP_EOF && got > 0) {
        mp__err(MP_EOF, "connection: peer closed in the middle of a message");
        return fatal(c, MP_EOF);
    }
    if (rc && rc != MP_EOF) return fatal(c, rc);
    return rc;
}

/* maxlength (0: none) and the connection's maximum, checked before anything is
 * allocated; after an oversized message the end receives no more, as in Python. */
static int check_size(mp_connection *c, size_t maxlength, uint64_t size, const char *fn) {
    if (maxlength && size > maxlength) {
        mp__err(MP_ETOOBIG, "%s: bad message length: %llu bytes > maxlength %llu", fn,
                (unsigned long long)size, (unsigned long long)maxlength);
        return bad_length(c, MP_ETOOBIG);
    }
    if (c->max_message && size > c->max_message) {
        mp__err(MP_ETOOBIG, "%s: message of %llu bytes exceeds the connection's maximum %llu", fn,
                (unsigned long long)size, (unsigned long long)c->max_message);
        return bad_length(c, MP_ETOOBIG);
    }
    if (size > (uint64_t)SIZE_MAX - 1) {
        mp__err(MP_ETOOBIG, "%s: message of %llu bytes does not fit in memory", fn,
                (unsigned long long)size);
        return bad_length(c, MP_ETOOBIG);
    }
    return 0;
}

/* Reads the header: 0 and *size, or an error (the connection closed where fatal).
 * maxlength (0: none) and the connection's maximum are checked before anything is
 * allocated; an oversized message closes the connection as Python does. */
static int recv_header(mp_connection *c, size_t maxlength, uint64_t *size, const char *fn) {
    unsigned char hdr[MP__FRAME_MAX_HEADER];
    size_t hl;
    int rc = read_exact(c, hdr, 4);
    if (rc) return rc;
    rc = mp__conn_frame_decode(hdr, 4, size, &hl);
    if (rc == MP_EAGAIN) {
        rc = read_exact(c, hdr + 4, 8);
        if (rc == MP_EOF) {
            mp__err(MP_EOF, "connection: peer closed in the middle of a message");
            return fatal(c, MP_EOF);
        }
        if (rc) return rc;
        rc = mp__conn_frame_decode(hdr, 12, size, &hl);
    }
    if (rc) return bad_length(c, rc);
    return check_size(c, maxlength, *size, fn);
}

static int recv_body(mp_connection *c, void *buf, size_t n) {
    int rc = read_exact(c, buf, n);
    if (rc == MP_EOF) {
        mp__err(MP_EOF, "connection: peer closed in the middle of a message");
        return fatal(c, MP_EOF);
    }
    return rc;
}

/* Reads a size-byte body (already checked against the limits) into a new buffer. The
 * header is the peer's word, so memory follows the bytes that really arrive: a body
 * above GROW_FROM starts at that size and doubles as it fills, and a peer announcing a
 * gigabyte then sending nothing costs GROW_FROM, not the gigabyte. */
#define GROW_FROM ((size_t)4 << 20)

static int recv_body_alloc(mp_connection *c, uint64_t size, void **out, const char *fn) {
    size_t n = (size_t)size, cap = n < GROW_FROM ? n : GROW_FROM, have = 0;
    unsigned char *p = mp__malloc(cap);
    for (;;) {
        if (!p) {
            mp__err(MP_ENOMEM, "%s: out of memory for %zu bytes", fn, cap);
            return fatal(c, MP_ENOMEM);
        }
        int rc = cap > have ? recv_body(c, p + have, cap - have) : 0;
        if (rc) {
            mp__free(p);
            return rc;
        }
        have = cap;
        if (have == n) break;
        cap = n - have > have ? have * 2 : n;
        unsigned char *q = mp__realloc(p, cap);
        if (!q) mp__free(p);
        p = q;
    }
    *out = p;
    return 0;
}

/* ---- message mode: the OS keeps the boundaries, there is no header ------------ */

/* The first read of a message: its start and how much is left; an error other than a
 * clean end of file closes the connection. */
static int msg_first(mp_connection *c, void *buf, size_t cap, size_t *got, uint64_t *left) {
    static unsigned char none;
    int rc = mp__os_conn_read_message(c->h, c->kind, c->os, buf ? buf : &none, cap, got, left);
    if (rc && rc != MP_EOF) return fatal(c, rc);
    if (!rc && *left > UINT64_MAX - *got) {
        mp__err(MP_EPROTO, "connection: impossible message size");
        return fatal(c, MP_EPROTO);
    }
    return rc;
}

/* Reads the rest of the current message into p[have .. size), or only drains it when
 * p is NULL. The OS told its size; a message that turns out longer or shorter means
 * the boundaries are lost: the connection is closed. */
static int msg_rest(mp_connection *c, unsigned char *p, uint64_t size, uint64_t have) {
    unsigned char scratch[4096];
    while (have < size) {
        uint64_t want = size - have;
        size_t cap = p ? (size_t)want : (want < sizeof scratch ? (size_t)want : sizeof scratch);
        size_t k = 0;
        uint64_t left = 0;
        int rc =
            mp__os_conn_read_message(c->h, c->kind, c->os, p ? p + have : scratch, cap, &k, &left);
        if (rc == MP_EOF) mp__err(MP_EOF, "connection: peer closed in the middle of a message");
        if (rc) return fatal(c, rc);
        have += k;
        if (k == 0 || (have < size) != (left > 0) || (have == size && left)) {
            mp__err(MP_EPROTO, "connection: a message changed size while being read");
            return fatal(c, MP_EPROTO);
        }
    }
    return 0;
}

static int msg_recv_bytes(mp_connection *c, size_t maxlength, void **out, size_t *len) {
    unsigned char first[512];
    size_t got = 0;
    uint64_t left = 0;
    int rc = msg_first(c, first, sizeof first, &got, &left);
    if (rc) return rc;
    uint64_t size = got + left;
    rc = check_size(c, maxlength, size, "mp_connection_recv_bytes");
    if (rc) return rc;
    unsigned char *p = mp__malloc((size_t)size);
    if (!p) {
        mp__err(MP_ENOMEM, "mp_connection_recv_bytes: out of memory for %llu bytes",
                (unsigned long long)size);
        return fatal(c, MP_ENOMEM);
    }
    if (got) memcpy(p, first, got);
    rc = msg_rest(c, p, size, got);
    if (rc) {
        mp__free(p);
        return rc;
    }
    *out = p;
    *len = (size_t)size;
    return 0;
}

/* The first read goes straight into the caller's buffer: a message that fits costs
 * one read and no allocation, as on a stream. */
static int msg_recv_into(mp_connection *c, unsigned char *dst, size_t room, size_t *len,
                         void **whole) {
    const char *fn = "mp_connection_recv_bytes_into";
    size_t got = 0;
    uint64_t left = 0;
    int rc = msg_first(c, dst, room, &got, &left);
    if (rc) return rc;
    uint64_t size = got + left;
    rc = check_size(c, 0, size, fn);
    if (rc) return rc;
    if (!left) {
        *len = got;
        return 0;
    }
    if (whole) {
        unsigned char *p = mp__malloc((size_t)size);
        if (!p) {
            mp__err(MP_ENOMEM, "%s: out of memory for %llu bytes", fn, (unsigned long long)size);
            return fatal(c, MP_ENOMEM);
        }
        if (got) memcpy(p, dst, got);
        rc = msg_rest(c, p, size, got);
        if (rc) {
            mp__free(p);
            return rc;
        }
        *whole = p;
    } else if ((rc = msg_rest(c, NULL, size, got))) {
        return rc;
    }
    *len = (size_t)size;
    return mp__err(MP_ETOOBIG,
                   "%s: message of %llu bytes does not fit in %zu bytes (buffer too "
                   "short)",
                   fn, (unsigned long long)size, room);
}

int mp_connection_recv_bytes(mp_connection *c, size_t maxlength, void **out, size_t *len) {
    if (out) *out = NULL;
    if (len) *len = 0;
    int rc = check_open(c, true, "mp_connection_recv_bytes");
    if (!rc) rc = recv_ready(c, "mp_connection_recv_bytes");
    if (rc) return rc;
    if (!out || !len) return mp__err(MP_EINVAL, "mp_connection_recv_bytes: out is NULL");
    if (c->msgmode) return msg_recv_bytes(c, maxlength, out, len);
    uint64_t size;
    void *p = NULL;
    rc = recv_header(c, maxlength, &size, "mp_connection_recv_bytes");
    if (!rc) rc = recv_body_alloc(c, size, &p, "mp_connection_recv_bytes");
    if (rc) return rc;
    *out = p;
    *len = (size_t)size;
    return 0;
}

int mp_connection_recv_bytes_into(mp_connection *c, void *buf, size_t cap, size_t offset,
                                  size_t *len, void **whole) {
    if (len) *len = 0;
    if (whole) *whole = NULL;
    int rc = check_open(c, true, "mp_connection_recv_bytes_into");
    if (!rc) rc = recv_ready(c, "mp_connection_recv_bytes_into");
    if (rc) return rc;
    if (!len) return mp__err(MP_EINVAL, "mp_connection_recv_bytes_into: len is NULL");
    if (!buf && cap) return mp__err(MP_EINVAL, "mp_connection_recv_bytes_into: buffer is NULL");
    if (offset > cap) return mp__err(MP_EINVAL, "mp_connection_recv_bytes_into: offset too large");
    if (c->msgmode)
        return msg_recv_into(c, buf ? (unsigned char *)buf + offset : NULL, cap - offset, len,
                             whole);
    uint64_t size;
    rc = recv_header(c, 0, &size, "mp_connection_recv_bytes_into");
    if (rc) return rc;
    if (size <= cap - offset) {
        rc = size ? recv_body(c, (char *)buf + offset, (size_t)size) : 0;
        if (!rc) *len = (size_t)size;
        return rc;
    }
    /* BufferTooShort: the message is consumed whole and handed over if asked for;
     * without a taker it is read through the caller's buffer and dropped. */
    if (whole) {
        void *p = NULL;
        rc = recv_body_alloc(c, size, &p, "mp_connection_recv_bytes_into");
        if (rc) return rc;
        *whole = p;
    } else {
        char scratch[4096];
        uint64_t left = size;
        while (left) {
            size_t k = left < sizeof scratch ? (size_t)left : sizeof scratch;
            if ((rc = recv_body(c, scratch, k))) return rc;
            left -= k;
        }
    }
    *len = (size_t)size;
    return mp__err(MP_ETOOBIG,
                   "mp_connection_recv_bytes_into: message of %llu bytes does not "
                   "fit in %zu bytes (buffer too short)",
                   (unsigned long long)size, cap - offset);
}

int mp_connection_poll(mp_connection *c, double timeout, bool *ready) {
    if (ready) *ready = false;
    int rc = check_open(c, true, "mp_connection_poll");
    if (!rc) rc = recv_ready(c, "mp_connection_poll");
    if (rc) return rc;
    if (!ready) return mp__err(MP_EINVAL, "mp_connection_poll: ready is NULL");
    if (c->rpos < c->rend) {
        *ready = true;
        return 0;
    }
    rc = mp__os_conn_poll(c->h, c->kind, c->os, timeout);
    if (rc == MP_ETIMEDOUT) return 0;
    if (rc) return rc;
    *ready = true;
    return 0;
}

/* ---- wait ------------------------------------------------------------------- */

int mp_wait(const mp_waitable *objs, size_t n, double timeout, bool *ready, size_t *nready) {
    if (nready) *nready = 0;
    if ((!objs && n) || (!ready && n)) return mp__err(MP_EINVAL, "mp_wait: NULL argument");
    for (size_t i = 0; i < n; i++) ready[i] = false;
    if (n == 0) {
        if (mp__forever(timeout))
            return mp__err(MP_EINVAL, "mp_wait: nothing to wait for, forever");
        mp__os_sleep(timeout);
        return mp__err(MP_ETIMEDOUT, "mp_wait: nothing to wait for (slept %.3f s)", timeout);
    }
    mp__oswait small[16];
    mp__oswait *items = n <= 16 ? small : mp__calloc(n, sizeof *items);
    if (!items) return mp__err(MP_ENOMEM, "mp_wait: out of memory");
    int rc = 0;
    bool ahead = false; /* a connection holds read-ahead bytes: ready without waiting */
    for (size_t i = 0; i < n && !rc; i++) {
        memset(&items[i], 0, sizeof items[i]);
        switch (objs[i].kind) {
        case MP_WAIT_CONNECTION: {
            mp_connection *c = objs[i].u.conn;
            if (!c)
                rc = mp__err(MP_EINVAL, "mp_wait: connection %zu is NULL", i);
            else if (c->closed)
                rc = mp__err(MP_ECLOSED, "mp_wait: connection %zu is closed", i);
            else if (!c->readable)
                rc = mp__err(MP_EPERM, "mp_wait: connection %zu is write-only", i);
            else if (!(rc = recv_ready(c, "mp_wait")))
                items[i] = (mp__oswait){c->h, MP__W_CONN, c->kind, c->os};
            if (!rc && c->rpos < c->rend) ahead = true;
            break;
        }
        case MP_WAIT_HANDLE:
        case MP_WAIT_SOCKET:
            if (objs[i].u.handle == MP_INVALID_OS_HANDLE)
                rc = mp__err(MP_EBADF, "mp_wait: handle %zu is invalid", i);
            else
                items[i] = (mp__oswait){
                    objs[i].u.handle, objs[i].kind == MP_WAIT_HANDLE ? MP__W_HANDLE : MP__W_SOCKET,
                    0, NULL};
            break;
        default:
            rc = mp__err(MP_EINVAL, "mp_wait: object %zu has an unknown kind", i);
            break;
        }
    }
    if (!rc) rc = mp__os_wait(items, n, ahead ? 0 : timeout, ready);
    if (ahead && rc == MP_ETIMEDOUT) rc = 0;
    for (size_t i = 0; ahead && !rc && i < n; i++)
        if (objs[i].kind == MP_WAIT_CONNECTION && objs[i].u.conn->rpos < objs[i].u.conn->rend)
            ready[i] = true;
    if (items != small) mp__free(items);
    if (rc) {
        for (size_t i = 0; i < n; i++) ready[i] = false;
        if (rc == MP_ETIMEDOUT)
            rc = mp__err(rc, "mp_wait: none of %zu objects was ready within %.3f s", n, timeout);
        return rc;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ready[i];
    if (nready) *nready = k;
    return 0;
}

/* ---- passing a connection to a child ----------------------------------------- */

static size_t conn_handle_count(const void *obj) {
    const mp_connection *c = obj;
    return 1 + (c->hw != MP_INVALID_OS_HANDLE) + (c->hs != MP_INVALID_OS_HANDLE);
}

/* The description: kind and the readable/writable flags, the maximum; the handles
 * (read, then the separate write and side handles when there are) travel through the
 * launch's table, or with a message (mp_connection_send_connection). */
static int conn_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    const mp_connection *c = obj;
    if (c->closed) return mp__err(MP_ECLOSED, "mp_args: a closed connection cannot be passed");
    /* The caller ran pass_check; bytes may have come since (an end with read-ahead
     * forced on, or received on between mp_args_add_connection and the start). */
    if (c->torn || c->rpos < c->rend || mp__osconn_holds_message(c->os))
        return mp__err(MP_ESTATE,
                       "mp_args: a connection holding read-ahead bytes cannot be passed");
    mp__buf_u8(b, (uint8_t)c->kind);
    bool pair = c->hw != MP_INVALID_OS_HANDLE, side = c->hs != MP_INVALID_OS_HANDLE;
    mp__buf_u8(b, (uint8_t)((c->readable ? 1 : 0) | (c->writable ? 2 : 0) | (pair ? 4 : 0) |
                            (side ? 8 : 0)));
    mp__buf_u64(b, c->max_message);
    handles[(*nh)++] = c->h;
    if (pair) handles[(*nh)++] = c->hw;
    if (side) handles[(*nh)++] = c->hs;
    return b->err ? mp__err(b->err, "mp_args: out of memory") : 0;
}

static int conn_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    *out = NULL;
    int kind = mp__rd_u8(r);
    int flags = mp__rd_u8(r);
    uint64_t max = mp__rd_u64(r);
    if (r->err || nh != 1u + ((flags & 4) != 0) + ((flags & 8) != 0) || (flags & ~15))
        return mp__err(MP_EPROTO, "mp_args: malformed connection");
    size_t i = 1;
    mp_os_handle hw = (flags & 4) ? handles[i++] : MP_INVALID_OS_HANDLE;
    mp_os_handle hs = (flags & 8) ? handles[i++] : MP_INVALID_OS_HANDLE;
    mp_connection *c = NULL;
    int rc = conn_make(handles[0], hw, hs, kind, flags & 1, (flags & 2) != 0, &c);
    if (rc) return rc;
    c->max_message = max;
    c->shared = true; /* the sender's object reads the same end */
    *out = c;
    return 0;
}

static void conn_free(void *obj) { mp_connection_free(obj); }

const mp__objtype mp__connection_objtype = {
    .name = "connection",
    .handle_count = conn_handle_count,
    .reduce = conn_reduce,
    .rebuild = conn_rebuild,
    .free = conn_free,
};

int mp_args_add_connection(mp_args *a, mp_connection *c) {
    if (!a || !c) return mp__err(MP_EINVAL, "mp_args_add_connection: NULL argument");
    if (c->closed) return mp__err(MP_ECLOSED, "mp_args_add_connection: connection is closed");
    int rc = pass_check(c, "mp_args_add_connection");
    if (rc) return rc;
    return mp__args_add_object(a, &mp__connection_objtype, c);
}

mp_connection *mp_args_connection(const mp_args *a, size_t i) {
    return mp__args_object(a, i, &mp__connection_objtype);
}

/* ---- handles, sockets and connections sent over a connection ------------------------
 *
 * CPython's send_handle / recv_handle, and its reduction of connections and sockets,
 * carried three ways, chosen per connection (both ends of one always agree):
 *   XF_INBAND  an AF_UNIX stream socket (posix): CPython's sendfds on the connection
 *              itself, one byte (the count) carrying the fds, so a Python peer can send
 *              or receive a handle. A connection sends its fds with the byte 0x80|count,
 *              then its description as an envelope message.
 *   XF_SIDE    a duplex mp_pipe (posix): the fds go on its side socket as a record
 *              holding a random token, then an envelope with that token goes through the
 *              pipe, so handles keep their place among the messages and a record left
 *              by a sender killed between its two writes is recognised and dropped.
 *   XF_DUP     Windows: each handle is duplicated into the receiving process (or into
 *              this one, for the receiver to take), its value travels in the envelope.
 * In every case the handle lives in the kernel (or in the receiver) once sent: the
 * sender may close its own or exit at once. */

enum { XF_NONE = 0, XF_INBAND, XF_SIDE, XF_DUP };
enum { WHAT_HANDLE = 1, WHAT_SOCKET = 2, WHAT_CONNECTION = 3 };

/* Starts with NUL: neither a pickle (0x80) nor likely text. */
static const unsigned char ENV_MAGIC[8] = {0, 'm', 'p', 'x', 'f', 'e', 'r', 1};
/* Envelopes are small (a connection's description and, on Windows, up to three
 * WSAPROTOCOL_INFOW); anything longer is a message, not an envelope. */
#define ENV_MAX 4096
#define INBAND_CONN 0x80

static const char *what_name(int what) {
    return what == WHAT_HANDLE ? "a handle" : what == WHAT_SOCKET ? "a socket" : "a connection";
}

static int xfer_mode(mp_connection *c) {
    if (c->xfer < 0) {
        if (c->hs != MP_INVALID_OS_HANDLE)
            c->xfer = XF_SIDE;
        else
            switch (mp__os_conn_xfer_mode(c->h, c->kind)) {
            case MP__XFER_INBAND:
                c->xfer = XF_INBAND;
                break;
            case MP__XFER_DUP:
                c->xfer = XF_DUP;
                break;
            default:
                c->xfer = XF_NONE;
                break;
            }
    }
    return c->xfer;
}

static int xfer_unsupported(const mp_connection *c, const char *fn) {
    if (c->kind == MP__CONN_SOCKET)
        return mp__err(MP_ENOTSUP,
                       "%s: only an AF_UNIX socket connection can carry handles "
                       "(SCM_RIGHTS)",
                       fn);
    if (!(c->readable && c->writable))
        return mp__err(MP_ENOTSUP,
                       "%s: a one-way pipe cannot carry handles (as CPython's "
                       "Pipe(duplex=False)); use a duplex pipe",
                       fn);
    return mp__err(MP_ENOTSUP,
                   "%s: this pipe connection has no channel for handles (only "
                   "mp_pipe's duplex pipes have one)",
                   fn);
}

static void close_all(mp_os_handle *hs, size_t n, int kind) {
    mp__err_mute();
    for (size_t i = 0; i < n; i++)
        if (hs[i] != MP_INVALID_OS_HANDLE) mp__os_conn_close(hs[i], kind);
    mp__err_unmute();
}

static void env_head(mp__buf *b, int what, size_t n, const unsigned char token[8], int64_t dest,
                     const mp__buf *desc) {
    static const unsigned char zero[8];
    mp__buf_put(b, ENV_MAGIC, sizeof ENV_MAGIC);
    mp__buf_u8(b, (uint8_t)what);
    mp__buf_u8(b, (uint8_t)n);
    mp__buf_put(b, token ? token : zero, 8);
    mp__buf_u64(b, (uint64_t)mp__os_getpid());
    mp__buf_u64(b, (uint64_t)dest);
    mp__buf_blob(b, desc ? desc->data : NULL, desc ? desc->len : 0);
}

typedef struct env {
    int what;
    size_t n;
    unsigned char token[8];
    int64_t src, dest;
    const unsigned char *desc;
    size_t desclen;
    mp__rd rest; /* the exports (XF_DUP) */
} env;

static bool env_parse(const unsigned char *p, size_t len, env *e) {
    memset(e, 0, sizeof *e);
    if (len < sizeof ENV_MAGIC || memcmp(p, ENV_MAGIC, sizeof ENV_MAGIC) != 0) return false;
    mp__rd r = {p + sizeof ENV_MAGIC, len - sizeof ENV_MAGIC, 0};
    e->what = mp__rd_u8(&r);
    e->n = mp__rd_u8(&r);
    for (int i = 0; i < 8; i++) e->token[i] = mp__rd_u8(&r);
    e->src = (int64_t)mp__rd_u64(&r);
    e->dest = (int64_t)mp__rd_u64(&r);
    e->desc = mp__rd_blob(&r, &e->desclen);
    e->rest = r;
    return !r.err && e->what >= WHAT_HANDLE && e->what <= WHAT_CONNECTION && e->n >= 1 &&
           e->n <= MP__XFER_MAX;
}

/* Whether the handles of a transfer are sockets (Windows shares those differently). */
static bool env_sockets(int what, const unsigned char *desc, size_t desclen) {
    return what == WHAT_SOCKET ||
           (what == WHAT_CONNECTION && desclen > 0 && desc[0] == MP__CONN_SOCKET);
}

/* ---- sending ---- */

static int xfer_send(mp_connection *c, int what, const mp_os_handle *hs, size_t n,
                     const mp__buf *desc, int64_t dest_pid, const char *fn) {
    int rc = check_open(c, false, fn);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (hs[i] == MP_INVALID_OS_HANDLE) return mp__err(MP_EBADF, "%s: invalid handle", fn);
    int mode = xfer_mode(c);
    mp__buf b = {0};
    switch (mode) {
    case XF_INBAND: {
        /* CPython's sendfds: one byte, the count; a connection's fds say 0x80|count and
         * its description follows (CPython cannot take those in any case). */
        unsigned char byte = (unsigned char)(what == WHAT_CONNECTION ? INBAND_CONN | n : n);
        rc = mp__os_conn_send_fds(c->h, &byte, 1, hs, n);
        if (rc || what != WHAT_CONNECTION) break;
        env_head(&b, what, n, NULL, dest_pid, desc);
        rc = b.err ? mp__err(b.err, "%s: out of memory", fn) : send_frame(c, b.data, b.len);
        break;
    }
    case XF_SIDE: {
        unsigned char token[8];
        rc = mp__os_random(token, sizeof token);
        if (!rc) rc = mp__os_conn_send_fds(c->hs, token, sizeof token, hs, n);
        if (rc) break;
        env_head(&b, what, n, token, dest_pid, desc);
        rc = b.err ? mp__err(b.err, "%s: out of memory", fn) : send_frame(c, b.data, b.len);
        break;
    }
    case XF_DUP: {
        bool sock = env_sockets(what, desc ? desc->data : NULL, desc ? desc->len : 0);
        env_head(&b, what, n, NULL, dest_pid, desc);
        size_t start = b.len, done = 0;
        for (; done < n && !rc; done++) rc = mp__os_handle_export(hs[done], sock, dest_pid, &b);
        if (rc) done--;
        if (!rc && b.err) rc = mp__err(b.err, "%s: out of memory", fn);
        if (!rc) rc = send_frame(c, b.data, b.len);
        if (rc && !b.err) {
            /* Nobody will take what was exported: close it where it went. */
            mp__rd r = {b.data + start, b.len - start, 0};
            for (size_t i = 0; i < done; i++)
                mp__os_handle_discard(&r, sock, mp__os_getpid(), dest_pid);
        }
        break;
    }
    default:
        rc = xfer_unsupported(c, fn);
        break;
    }
    mp__buf_free(&b);
    return rc;
}

int mp_connection_send_handle(mp_connection *c, mp_os_handle h, int64_t dest_pid) {
    return xfer_send(c, WHAT_HANDLE, &h, 1, NULL, dest_pid, "mp_connection_send_handle");
}

int mp_connection_send_socket(mp_connection *c, mp_os_handle s, int64_t dest_pid) {
    return xfer_send(c, WHAT_SOCKET, &s, 1, NULL, dest_pid, "mp_connection_send_socket");
}

int mp_connection_send_connection(mp_connection *c, mp_connection *obj, int64_t dest_pid) {
    const char *fn = "mp_connection_send_connection";
    if (!obj) return mp__err(MP_EINVAL, "%s: the connection to send is NULL", fn);
    if (obj->closed) return mp__err(MP_ECLOSED, "%s: the connection to send is closed", fn);
    int rc = pass_check(obj, fn);
    if (rc) return rc;
    mp__buf desc = {0};
    mp_os_handle hs[MP__XFER_MAX];
    size_t n = 0;
    rc = conn_reduce(obj, &desc, hs, &n);
    if (!rc) rc = xfer_send(c, WHAT_CONNECTION, hs, n, &desc, dest_pid, fn);
    mp__buf_free(&desc);
    return rc;
}

/* ---- receiving ---- */

/* Waits until something can be read: 0, or MP_ETIMEDOUT recorded for fn. */
static int xfer_wait(mp_connection *c, double timeout, const char *fn) {
    if (c->rpos < c->rend) return 0;
    int rc = mp__os_conn_poll(c->h, c->kind, c->os, timeout);
    if (rc == MP_ETIMEDOUT)
        return mp__err(MP_ETIMEDOUT, "%s: nothing arrived within the timeout", fn);
    return rc;
}

/* Receives the next message into buf[0..ENV_MAX): 0 and *len; a longer one is consumed
 * and dropped (MP_EPROTO: it cannot be an envelope). */
static int recv_small(mp_connection *c, unsigned char *buf, size_t *len, int what, const char *fn) {
    /* A maximum set below an envelope's size is meant for messages, not for these. */
    uint64_t max = c->max_message;
    if (max && max < ENV_MAX) c->max_message = ENV_MAX;
    int rc = mp_connection_recv_bytes_into(c, buf, ENV_MAX, 0, len, NULL);
    c->max_message = max;
    if (rc == MP_ETOOBIG)
        return mp__err(MP_EPROTO, "%s: expected %s, got a message of %zu bytes (dropped)", fn,
                       what_name(what), *len);
    return rc;
}

/* XF_SIDE: the side record of the envelope with token. Records before it with another
 * token were left by a send that failed or was killed between its two writes: dropped. */
static int side_take(mp_connection *c, const env *e, mp_os_handle *hs, const char *fn) {
    for (;;) {
        unsigned char tok[8];
        size_t tl = 0, k = 0;
        mp_os_handle got[MP__XFER_MAX];
        int rc = mp__os_conn_recv_fds(c->hs, false, tok, sizeof tok, &tl, got, MP__XFER_MAX, &k);
        if (rc == MP_EAGAIN)
            return mp__err(MP_EPROTO, "%s: the handles of this message never came", fn);
        if (rc) return rc;
        bool mine = tl == sizeof tok && memcmp(tok, e->token, sizeof tok) == 0;
        if (mine && k == e->n) {
            memcpy(hs, got, k * sizeof *got);
            return 0;
        }
        close_all(got, k, MP__CONN_PIPE);
        if (mine) return mp__err(MP_EPROTO, "%s: %zu handles came for %zu", fn, k, e->n);
    }
}

/* XF_DUP: this process's handles from the envelope's exports. */
static int dup_take(const env *e, bool sock, mp_os_handle *hs, const char *fn) {
    mp__rd r = e->rest;
    size_t i = 0;
    int rc = 0;
    for (; i < e->n && !rc; i++) rc = mp__os_handle_import(&r, sock, e->src, e->dest, &hs[i]);
    if (!rc) return 0;
    i--;
    close_all(hs, i, sock ? MP__CONN_SOCKET : MP__CONN_PIPE);
    mp__err_mute();
    for (size_t k = i + 1; k < e->n; k++) mp__os_handle_discard(&r, sock, e->src, e->dest);
    mp__err_unmute();
    return mp__err_wrap(rc, "%s", fn);
}

/* Receives one transfer of what: its handles (this process's, *n of them) and, for a
 * connection, its description (desc[0..*desclen), desc has ENV_MAX bytes). Anything
 * else that comes first is consumed and dropped, its handles closed: MP_EPROTO. */
static int xfer_recv(mp_connection *c, int what, double timeout, mp_os_handle *hs, size_t *n,
                     unsigned char *desc, size_t *desclen, const char *fn) {
    *n = 0;
    *desclen = 0;
    int rc = check_open(c, true, fn);
    if (rc) return rc;
    int mode = xfer_mode(c);
    if (mode == XF_NONE) return xfer_unsupported(c, fn);
    rc = recv_ready(c, fn);
    if (rc) return rc;
    if (mode == XF_INBAND && reads_ahead(c))
        return mp__err(MP_ESTATE,
                       "%s: an AF_UNIX connection with read-ahead forced on cannot "
                       "receive handles (a read-ahead would drop them)",
                       fn);
    rc = xfer_wait(c, timeout, fn);
    if (rc) return rc;
    unsigned char *buf = mp__malloc(ENV_MAX);
    if (!buf) return mp__err(MP_ENOMEM, "%s: out of memory", fn);
    size_t len = 0;
    env e;
    memset(&e, 0, sizeof e);
    mp_os_handle got[MP__XFER_MAX];
    size_t ngot = 0;
    bool sock = false;
    if (mode == XF_INBAND) {
        unsigned char byte = 0;
        bool has = false;
        rc = mp__os_conn_peek_fds(c->h, &byte, &has);
        if (rc) goto out;
        if (!has) {
            rc = recv_small(c, buf, &len, what, fn);
            if (!rc)
                rc = mp__err(MP_EPROTO, "%s: expected %s, got a message (dropped)", fn,
                             what_name(what));
            goto out;
        }
        unsigned char b1 = 0;
        size_t l1 = 0;
        rc = mp__os_conn_recv_fds(c->h, true, &b1, 1, &l1, got, MP__XFER_MAX, &ngot);
        if (rc) goto out;
        bool conn = (b1 & INBAND_CONN) != 0;
        if ((size_t)(b1 & ~INBAND_CONN) != ngot) {
            rc = mp__err(MP_EPROTO, "%s: %zu handles came, the message says %u", fn, ngot,
                         (unsigned)(b1 & ~INBAND_CONN));
            goto out;
        }
        if (conn) {
            rc = recv_small(c, buf, &len, what, fn);
            if (rc) goto out;
            if (!env_parse(buf, len, &e) || e.what != WHAT_CONNECTION || e.n != ngot) {
                rc = mp__err(MP_EPROTO, "%s: a malformed connection description", fn);
                goto out;
            }
            sock = env_sockets(e.what, e.desc, e.desclen);
        }
        if ((what == WHAT_CONNECTION) != conn) {
            rc = mp__err(MP_EPROTO, "%s: expected %s, got %s (closed)", fn, what_name(what),
                         conn ? "a connection" : "a handle");
            goto out;
        }
    } else {
        rc = recv_small(c, buf, &len, what, fn);
        if (rc) goto out;
        if (!env_parse(buf, len, &e)) {
            rc =
                mp__err(MP_EPROTO, "%s: expected %s, got a message (dropped)", fn, what_name(what));
            goto out;
        }
        sock = env_sockets(e.what, e.desc, e.desclen);
        rc = mode == XF_SIDE ? side_take(c, &e, got, fn) : dup_take(&e, sock, got, fn);
        if (rc) goto out;
        ngot = e.n;
        if (e.what != what) {
            rc = mp__err(MP_EPROTO, "%s: expected %s, got %s (closed)", fn, what_name(what),
                         what_name(e.what));
            goto out;
        }
    }
    if (what == WHAT_CONNECTION) {
        if (e.desclen > ENV_MAX) {
            rc = mp__err(MP_EPROTO, "%s: a malformed connection description", fn);
            goto out;
        }
        memcpy(desc, e.desc, e.desclen);
        *desclen = e.desclen;
    }
    memcpy(hs, got, ngot * sizeof *got);
    *n = ngot;
out:
    if (rc) close_all(got, ngot, sock ? MP__CONN_SOCKET : MP__CONN_PIPE);
    mp__free(buf);
    return rc;
}

static int recv_one(mp_connection *c, int what, double timeout, mp_os_handle *out, const char *fn) {
    if (out) *out = MP_INVALID_OS_HANDLE;
    if (!out) return mp__err(MP_EINVAL, "%s: out is NULL", fn);
    mp_os_handle hs[MP__XFER_MAX];
    size_t n = 0, dl = 0;
    int rc = xfer_recv(c, what, timeout, hs, &n, NULL, &dl, fn);
    if (rc) return rc;
    if (n != 1) {
        close_all(hs, n, what == WHAT_SOCKET ? MP__CONN_SOCKET : MP__CONN_PIPE);
        return mp__err(MP_EPROTO, "%s: %zu handles came for one", fn, n);
    }
    *out = hs[0];
    return 0;
}

int mp_connection_recv_handle(mp_connection *c, double timeout, mp_os_handle *out) {
    return recv_one(c, WHAT_HANDLE, timeout, out, "mp_connection_recv_handle");
}

int mp_connection_recv_socket(mp_connection *c, double timeout, mp_os_handle *out) {
    return recv_one(c, WHAT_SOCKET, timeout, out, "mp_connection_recv_socket");
}

int mp_connection_recv_connection(mp_connection *c, double timeout, mp_connection **out) {
    const char *fn = "mp_connection_recv_connection";
    if (out) *out = NULL;
    if (!out) return mp__err(MP_EINVAL, "%s: out is NULL", fn);
    mp_os_handle hs[MP__XFER_MAX];
    size_t n = 0, dl = 0;
    unsigned char *desc = mp__malloc(ENV_MAX);
    if (!desc) return mp__err(MP_ENOMEM, "%s: out of memory", fn);
    int rc = xfer_recv(c, WHAT_CONNECTION, timeout, hs, &n, desc, &dl, fn);
    if (!rc) {
        mp__rd r = {desc, dl, 0};
        void *obj = NULL;
        rc = conn_rebuild(&r, hs, n, &obj);
        if (rc) {
            close_all(hs, n, dl && desc[0] == MP__CONN_SOCKET ? MP__CONN_SOCKET : MP__CONN_PIPE);
            rc = mp__err_wrap(rc, "%s", fn);
        } else {
            *out = obj;
        }
    }
    mp__free(desc);
    return rc;
}
