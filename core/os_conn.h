/* The OS layer for connections (linux/conn_linux.c, win32/conn_win32.c): pipes,
 * blocking whole-buffer I/O on a pipe or socket, readiness and the multi-object wait. */
#ifndef MP_CORE_OS_CONN_H
#define MP_CORE_OS_CONN_H

#include "os.h"

/** OS-private per-connection state (Windows: an event for overlapped I/O; posix: none,
 *  always NULL). */
typedef struct mp__osconn mp__osconn;

/** Makes the state for handle h of kind (MP__CONN_*); *out may be NULL on success. */
int mp__osconn_open(mp_os_handle h, int kind, mp__osconn **out);
/** Frees the state (not the handle); NULL is fine. */
void mp__osconn_free(mp__osconn *s);
/** Whether the OS delimits this handle's messages (Windows message-mode pipes, as
 *  CPython makes them): then a message is one write without the length header and is
 *  read with mp__os_conn_read_message. Decided by mp__osconn_open; NULL is false. */
bool mp__osconn_message_mode(const mp__osconn *s);
/** Whether the state holds a message taken from the OS for the next receive (Windows:
 *  an empty message a wait consumed), which another process given the handle would miss. */
bool mp__osconn_holds_message(const mp__osconn *s);

/** How many forks this process has seen, as the parent or as the child (*forks), and
 *  how many of them made it, as the child (*as_child); posix counts them with an atfork
 *  handler installed by the first mp__osconn_open, Windows has no fork (0 and 0). A
 *  connection that sees a new count was inherited by a fork (core/connection.c). */
void mp__os_conn_forks(unsigned *forks, unsigned *as_child);

/** A new pipe, not inheritable: duplex (both ends read and write) or one-way (end 0
 *  reads, end 1 writes). End i is h[i], plus hw[i] when it writes through a separate
 *  handle (posix builds a duplex pipe from two pipes: a pipe's round trip is about half
 *  a socketpair's), else MP_INVALID_OS_HANDLE; *kind says what they are (MP__CONN_*). */
int mp__os_conn_pipe(bool duplex, mp_os_handle h[2], mp_os_handle hw[2], int *kind);

/** Closes a connection's handle (a socket needs closesocket on Windows). */
int mp__os_conn_close(mp_os_handle h, int kind);

/** A piece of a gathered write. */
typedef struct mp__iov {
    const void *p;
    size_t n;
} mp__iov;

/** Writes all of iov[0..cnt) in order, as few system calls as possible (one for small
 *  messages): 0, MP_EPIPE when the peer is gone, or another error. */
int mp__os_conn_writev(mp_os_handle h, int kind, mp__osconn *s, const mp__iov *iov, int cnt);
/** Reads exactly n bytes into buf: 0; MP_EOF when the peer closed before the first
 *  byte (*got = 0) or in the middle (*got < n); another error. */
int mp__os_conn_read_exact(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t n,
                           size_t *got);
/** One read of at most cap bytes (cap > 0): 0 with 1 <= *got <= cap, MP_EOF when the
 *  peer closed, another error. What it returns beyond the caller's need is read ahead. */
int mp__os_conn_read_some(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t cap,
                          size_t *got);

/** Message mode only: writes buf[0..n) as one message (n may be 0). */
int mp__os_conn_write_message(mp_os_handle h, int kind, mp__osconn *s, const void *buf, size_t n);
/** Message mode only: reads the next message, or the rest of the current one, into
 *  buf[0..cap): *got bytes, and *left the bytes of that message still unread (0: it
 *  is complete). MP_EOF when the peer closed before a message. */
int mp__os_conn_read_message(mp_os_handle h, int kind, mp__osconn *s, void *buf, size_t cap,
                             size_t *got, uint64_t *left);

/** Whether a read would not block (data, end of file, or an error pending), waiting
 *  up to timeout (0: just look, MP_FOREVER: forever): 0 ready, MP_ETIMEDOUT, or an error. */
int mp__os_conn_poll(mp_os_handle h, int kind, mp__osconn *s, double timeout);

/** One object of a multi-object wait. */
typedef struct mp__oswait {
    mp_os_handle h;
    int what;      /* MP__W_CONN (h is a connection of kind), MP__W_HANDLE, MP__W_SOCKET */
    int kind;      /* for MP__W_CONN */
    mp__osconn *s; /* for MP__W_CONN */
} mp__oswait;

enum { MP__W_CONN = 1, MP__W_HANDLE = 2, MP__W_SOCKET = 3 };

/** Waits until at least one item is ready (connections and sockets: readable or at
 *  end of file; handles: signalled / readable fd), up to timeout; sets ready[i] for
 *  every ready item. 0 when some are ready, MP_ETIMEDOUT, or an error. */
int mp__os_wait(const mp__oswait *items, size_t n, double timeout, bool *ready);

/* ---- handles sent over a connection (send_handle, connections over connections) ----
 * posix: SCM_RIGHTS, either in-band on an AF_UNIX socket connection (CPython's sendfds:
 * one byte, the count mod 256, carrying the fds) or on the side socket of a duplex
 * mp_pipe; Windows: the handle is duplicated into the receiving process and its value
 * travels in a message. */

/** At most this many handles travel in one transfer (a connection has up to 3). */
#define MP__XFER_MAX 4

/** How handles travel over connection handle h of kind. */
enum { MP__XFER_NONE = 0, MP__XFER_INBAND = 1, MP__XFER_DUP = 2 };
/** MP__XFER_INBAND (posix: an AF_UNIX stream socket, SCM_RIGHTS on h itself),
 *  MP__XFER_DUP (Windows: any handle) or MP__XFER_NONE (posix: a pipe, an AF_INET
 *  socket). Records nothing. */
int mp__os_conn_xfer_mode(mp_os_handle h, int kind);

/** A connected pair of packet sockets, not inheritable, that carry the handles of a
 *  duplex pipe whose data goes through pipes (posix); where handles need no carrier
 *  (Windows) 0 with both MP_INVALID_OS_HANDLE. */
int mp__os_conn_side_pair(mp_os_handle s[2]);

/** Sends data[0..len) (len >= 1) with the handles fds[0..n) attached (SCM_RIGHTS) as one
 *  message on the AF_UNIX socket s; the handles stay the caller's. MP_EPIPE when the
 *  peer is gone, MP_EBADF for a bad handle; MP_ENOTSUP where handles do not travel
 *  this way (Windows). */
int mp__os_conn_send_fds(mp_os_handle s, const void *data, size_t len, const mp_os_handle *fds,
                         size_t n);
/** Receives one message (at most cap bytes) and the handles attached to it on socket s:
 *  0 with *len >= 1 and *n handles (close-on-exec, the caller's), at most max; more
 *  than max, or a cut message, are closed and MP_EPROTO. MP_EOF when the peer closed;
 *  with wait false MP_EAGAIN (not recorded) when nothing is there yet. */
int mp__os_conn_recv_fds(mp_os_handle s, bool wait, void *data, size_t cap, size_t *len,
                         mp_os_handle *fds, size_t max, size_t *n);
/** The next byte on the stream socket s and whether handles come with it, taking
 *  nothing (waits for a byte): 0 with *byte and *has; MP_EOF when the peer closed. */
int mp__os_conn_peek_fds(mp_os_handle s, unsigned char *byte, bool *has);

/** Windows: makes h (a socket when sock) usable by process dest_pid (0: by whoever
 *  takes it from this process, which must still run then) and appends to b what the
 *  receiver needs (mp__os_handle_import). h stays the caller's. A socket needs
 *  dest_pid (MP_EINVAL without). MP_ENOTSUP on posix. */
int mp__os_handle_export(mp_os_handle h, bool sock, int64_t dest_pid, mp__buf *b);
/** Reads one export from r, sent by src_pid for dest_pid (0: take it from src_pid):
 *  0 and *out, this process's own handle (a socket when sock). */
int mp__os_handle_import(mp__rd *r, bool sock, int64_t src_pid, int64_t dest_pid,
                         mp_os_handle *out);
/** Reads one export from r and closes it wherever it lives (best effort, records
 *  nothing): for the sender after a failed send and a receiver that refuses it. */
void mp__os_handle_discard(mp__rd *r, bool sock, int64_t src_pid, int64_t dest_pid);

#endif
