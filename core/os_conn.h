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
    int what;        /* MP__W_CONN (h is a connection of kind), MP__W_HANDLE, MP__W_SOCKET */
    int kind;        /* for MP__W_CONN */
    mp__osconn *s;   /* for MP__W_CONN */
} mp__oswait;

enum { MP__W_CONN = 1, MP__W_HANDLE = 2, MP__W_SOCKET = 3 };

/** Waits until at least one item is ready (connections and sockets: readable or at
 *  end of file; handles: signalled / readable fd), up to timeout; sets ready[i] for
 *  every ready item. 0 when some are ready, MP_ETIMEDOUT, or an error. */
int mp__os_wait(const mp__oswait *items, size_t n, double timeout, bool *ready);

#endif
