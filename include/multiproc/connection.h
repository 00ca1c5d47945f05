/* multiproc connections: Pipe, Connection, wait, Listener/Client with authkeys,
 * wire-compatible with CPython's multiprocessing.connection. Included by multiproc.h.
 *
 * A message is framed as CPython frames it: a 4-byte big-endian signed length and the
 * payload; above 0x7fffffff bytes, -1 and an 8-byte big-endian length. A message is
 * never torn or interleaved with another sent on the same connection. A connection is
 * meant for one thread at a time (as in Python); several processes may share one end
 * when they serialise their use (a lock). By default an end reads ahead (a small
 * message in one system call) until it may have a second reader, and then never again:
 * see mp_connection_set_read_ahead.
 *
 * posix: the first write on a pipe connection sets SIGPIPE to ignored when it still
 * has the default disposition (as the Python interpreter does at startup), so a gone
 * reader is MP_EPIPE rather than death; a program's own handler or mask is kept.
 * Windows: pipes (mp_pipe, AF_PIPE listeners and clients) are overlapped named pipes in
 * message mode, as CPython's PipeConnection: each message is one WriteFile with no
 * length header, read back whole (the OS keeps the boundaries; a message longer than
 * the first read comes with ERROR_MORE_DATA and the rest is sized by PeekNamedPipe), so
 * a Windows Python peer can use them. A message there is at most 4 GiB - 1 bytes.
 * Sockets (AF_INET) carry the length-prefixed frames on every platform. */
#ifndef MULTIPROC_CONNECTION_H
#define MULTIPROC_CONNECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/export.h"
#include "multiproc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in multiproc.h as well (C11 allows the repetition): this header stands alone. */
typedef struct mp_args mp_args;
typedef intptr_t mp_os_handle;

typedef struct mp_connection mp_connection;

/** Default for mp_connection_set_max_message: the largest message a receive accepts
 *  (1 GiB). Python has no such limit; a larger message is refused (MP_ETOOBIG) rather
 *  than allocated from an untrusted length. Below it, memory for a body follows the
 *  bytes that arrive (4 MiB at first, then doubling), not the header's claim. */
#define MP_CONNECTION_DEFAULT_MAX_MESSAGE ((uint64_t)1 << 30)

/** Python's Pipe(duplex): duplex, both ends read and write; one-way, *c1 only receives
 *  and *c2 only sends. posix: a pipe, and for duplex two pipes (each end reads one and
 *  writes the other: half the latency of Python's socketpair; fileno is the read end)
 *  plus a packet socket pair that carries handles (mp_connection_send_handle);
 *  Windows: an overlapped named pipe, as CPython's. Handles are not inherited by
 *  children unless passed (mp_args_add_connection). Free both with mp_connection_free.
 *  @retval MP_EINVAL  c1 or c2 is NULL.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_pipe(bool duplex, mp_connection **c1, mp_connection **c2);

/** Closes (if open) and frees c. NULL is fine. */
MP_API void mp_connection_free(mp_connection *c);
/** Closes the OS handle; later calls other than close/free/closed give MP_ECLOSED. Safe
 *  on NULL and twice.
 *  @retval MP_ESYS    closing an OS handle failed (the message names the call); c is closed
 *      anyway. Other codes an OS close maps to (MP_EBADF, MP_EIO) likewise. */
MP_API int mp_connection_close(mp_connection *c);
/** True once closed (by mp_connection_close or after a fatal receive error); true for
 *  NULL. */
MP_API bool mp_connection_closed(const mp_connection *c);
/** Whether c receives / sends: false when closed (also when the library closed it
 *  after a fatal receive error) and for NULL. */
MP_API bool mp_connection_readable(const mp_connection *c);
MP_API bool mp_connection_writable(const mp_connection *c);
/** The same queries with an error: 0 and *out, or MP_ECLOSED once c is closed (*out
 *  false); MP_EINVAL for NULL. A duplex end that stopped receiving after a bad message
 *  length is open: readable false, writable true.
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_ECLOSED c is closed. */
MP_API int mp_connection_is_readable(const mp_connection *c, bool *out);
/** As mp_connection_is_readable, for sending.
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_ECLOSED c is closed. */
MP_API int mp_connection_is_writable(const mp_connection *c, bool *out);
/** The OS handle (owned by c) to wait on: the read end (a write-only end's handle);
 *  MP_ECLOSED once closed. Stops c's automatic read-ahead (mp_connection_set_read_ahead):
 *  an OS poll of the handle does not see bytes read ahead.
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_ECLOSED c is closed. */
MP_API int mp_connection_fileno(const mp_connection *c, mp_os_handle *out);

/** The largest message a receive accepts (0: no limit); default
 *  MP_CONNECTION_DEFAULT_MAX_MESSAGE.
 *  @retval MP_EINVAL  c is NULL. */
MP_API int mp_connection_set_max_message(mp_connection *c, uint64_t max);
/** The largest message a receive accepts (0: no limit); 0 for NULL. */
MP_API uint64_t mp_connection_max_message(const mp_connection *c);
/** The limits mp_connection_recv decodes with on this object (copied; NULL: back to the
 *  defaults), for a peer not trusted: fewer values, bytes or nesting, and
 *  refuse_objects to refuse GLOBAL/STACK_GLOBAL. A zero max_size stays the message
 *  limit (mp_connection_set_max_message). Only this object: a copy sent to another
 *  process decodes with the defaults. Set it before receiving, not during a receive in
 *  another thread. Whatever the limits, decoding never makes more than a small multiple
 *  of the message's size (mp_value_loads).
 *  @retval MP_EINVAL  c is NULL. */
MP_API int mp_connection_set_value_limits(mp_connection *c, const mp_value_limits *lim);

/** Read-ahead: a receive may read up to 8 KiB ahead, so a small message costs one read
 *  system call instead of two (header, then exactly the payload). Bytes read ahead
 *  belong to this object: another reader of the same end would miss them, or get part
 *  of a message. So in the default mode, AUTO, an end reads ahead only while this
 *  object is its only reader, and stops for good (in both processes) once it may have
 *  another: when passed to a child (mp_args_add_connection, any start method, dummy
 *  included), sent over a connection (mp_connection_send_connection), inherited by a
 *  fork (the fork start method, or a fork() of the program's own), or when its handle
 *  is taken (mp_connection_fileno: the caller may poll or pass it). The copy a child or
 *  receiver gets starts without read-ahead. An AF_UNIX socket connection does not read
 *  ahead in AUTO (a handle sent on it would be dropped). ON reads ahead whatever
 *  happens: for an end whose receiving side is known to have one reader (a child
 *  whose parent freed its copy may turn it on). OFF never reads ahead. Bytes held when
 *  an end is passed are not handed over: the pass is MP_ESTATE until they are
 *  received (the read-ahead has stopped by then, so a retry succeeds). A fork child's
 *  copy leaves the bytes its parent held to the parent; when they end inside a
 *  message, the copy's receives are MP_ESTATE (the rest of it is the parent's).
 *  Changing the mode keeps held bytes: they are received first. Windows pipes read one
 *  whole message per call and never read ahead. MP_EINVAL for another mode,
 *  MP_ECLOSED. */
typedef enum mp_read_ahead {
    MP_READ_AHEAD_AUTO = 0, /* default: until the end may have another reader */
    MP_READ_AHEAD_ON = 1,   /* always: the caller vouches for a single reader */
    MP_READ_AHEAD_OFF = 2   /* never: header, then payload */
} mp_read_ahead;
/** Sets c's read-ahead mode (see mp_read_ahead above).
 *  @retval MP_EINVAL  c is NULL, or mode is not an mp_read_ahead.
 *  @retval MP_ECLOSED c is closed. */
MP_API int mp_connection_set_read_ahead(mp_connection *c, mp_read_ahead mode);
/** The mode set on c (MP_READ_AHEAD_AUTO for NULL). */
MP_API mp_read_ahead mp_connection_read_ahead(const mp_connection *c);
/** Shorthand: on is MP_READ_AHEAD_ON, off MP_READ_AHEAD_OFF.
 *  @retval MP_EINVAL  c is NULL.
 *  @retval MP_ECLOSED c is closed. */
MP_API int mp_connection_set_buffered(mp_connection *c, bool on);
/** Whether a receive on c may read ahead now (the mode, and for AUTO whether the end is
 *  still unshared); false for NULL, a closed c and Windows pipes. */
MP_API bool mp_connection_buffered(const mp_connection *c);

/** Sends len bytes of buf as one message (len 0 sends an empty message; buf may then
 *  be NULL). MP_EPIPE when the peer is gone, MP_EPERM on a read-only end.
 *  @retval MP_EINVAL  c is NULL, or buf is NULL with len > 0.
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a read-only end.
 *  @retval MP_EPIPE   the peer is gone.
 *  @retval MP_ETOOBIG the message is longer than a Windows pipe carries (4 GiB - 1).
 *  @retval MP_ESYS    the OS refused the write (the message names the call); other OS errors map
 *      to their MP_E* code (MP_EIO...). */
MP_API int mp_connection_send_bytes(mp_connection *c, const void *buf, size_t len);
/** Python's send_bytes(buf, offset, size): sends buf[offset .. offset+size) of a
 *  buffer of buflen bytes; size -1 means up to the end (Python's None). A negative
 *  offset, another negative size, an offset past buflen or a range past buflen are
 *  MP_EINVAL, as Python's ValueError.
 *  @retval MP_EINVAL  c is NULL, buf is NULL with buflen > 0, or the range is bad (see above).
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a read-only end.
 *  @retval MP_EPIPE   the peer is gone.
 *  @retval MP_ETOOBIG the message is longer than a Windows pipe carries (4 GiB - 1).
 *  @retval MP_ESYS    the OS refused the write (the message names the call). */
MP_API int mp_connection_send_bytes_range(mp_connection *c, const void *buf, size_t buflen,
                                          int64_t offset, int64_t size);
/** Receives one message into a new buffer of exactly its size (free it with
 *  mp_connection_free_bytes; an empty message gives a non-NULL buffer and *len 0).
 *  maxlength 0 means no limit but the connection's maximum. A longer message is
 *  MP_ETOOBIG and, as in Python (OSError "bad message length"), the end then receives
 *  no more: the rest of that message cannot be skipped safely. A duplex end can still
 *  send (later receives are MP_EPERM); a read-only end is closed. MP_EOF when the peer
 *  closed; MP_EPROTO for a malformed header (handled as a bad length).
 *  Blocks: use mp_connection_poll first to bound the wait.
 *  @retval MP_EINVAL  c, out or len is NULL.
 *  @retval MP_ECLOSED c is closed (also by an earlier fatal receive error).
 *  @retval MP_EPERM   c is a write-only end, or stopped receiving after a bad message length.
 *  @retval MP_ESTATE  c is a fork child's copy whose parent holds the rest of a message.
 *  @retval MP_EOF     the peer closed (in the middle of a message: c is then closed).
 *  @retval MP_ETOOBIG the message is longer than maxlength or the connection's maximum.
 *  @retval MP_EPROTO  a malformed header, or a message that changed size while read.
 *  @retval MP_ENOMEM  out of memory for the message (c is closed).
 *  @retval MP_EPIPE   the connection was reset.
 *  @retval MP_ESYS    the OS refused the read (the message names the call); c is closed. */
MP_API int mp_connection_recv_bytes(mp_connection *c, size_t maxlength, void **out, size_t *len);
/** Receives one message into buf[offset .. cap): 0 and *len = its size. When it does
 *  not fit (Python's BufferTooShort): MP_ETOOBIG, *len = its size, and the whole
 *  message in *whole (a new buffer, mp_connection_free_bytes) when whole is not NULL;
 *  the message is consumed either way and the connection stays usable. offset > cap
 *  is MP_EINVAL. Nothing is allocated when the message fits.
 *  @retval MP_ETOOBIG the message does not fit (*len is its size; see above), or is longer than
 *      the connection's maximum (the end then receives no more).
 *  @retval MP_EINVAL  c or len is NULL, buf is NULL with cap > 0, or offset > cap.
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a write-only end, or stopped receiving after a bad message length.
 *  @retval MP_ESTATE  c is a fork child's copy whose parent holds the rest of a message.
 *  @retval MP_EOF     the peer closed.
 *  @retval MP_EPROTO  a malformed header.
 *  @retval MP_ENOMEM  out of memory for *whole (c is closed).
 *  @retval MP_EPIPE   the connection was reset.
 *  @retval MP_ESYS    the OS refused the read (the message names the call); c is closed. */
MP_API int mp_connection_recv_bytes_into(mp_connection *c, void *buf, size_t cap, size_t offset,
                                         size_t *len, void **whole);
/** Frees a buffer returned by the receive functions (NULL is fine). */
MP_API void mp_connection_free_bytes(void *p);

/** Sends a value, encoded with mp_value_dumps (CPython's pickle subset).
 *  @retval MP_EINVAL  c or v is NULL, or v cannot be encoded (see mp_value_dumps).
 *  @retval MP_ENOMEM  out of memory encoding v.
 *  @par Other errors
 *  Otherwise the errors of mp_connection_send_bytes (MP_ECLOSED, MP_EPERM, MP_EPIPE,
 *  MP_ESYS...). */
MP_API int mp_connection_send(mp_connection *c, const mp_value *v);
/** Receives a value (free with mp_value_free), decoded with the limits of
 *  mp_connection_set_value_limits. Decoding errors leave the connection usable (the
 *  message was consumed whole).
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_EPROTO  the message is not a value this codec decodes (see mp_value_loads), or
 *      holds an object while the limits refuse objects; the connection stays usable.
 *  @retval MP_ETOOBIG the message, or the value it decodes to, is beyond the limits (also the
 *      amplification bound of mp_value_loads); the connection stays usable.
 *  @par Other errors
 *  Otherwise the errors of mp_connection_recv_bytes (MP_EOF, MP_ECLOSED, MP_ETOOBIG,
 *  MP_ENOMEM...). */
MP_API int mp_connection_recv(mp_connection *c, mp_value **out);

/** Whether a message (or end of file) can be read, waiting up to timeout seconds (0:
 *  just look, MP_FOREVER: until then). 0 with *ready; MP_ECLOSED, MP_EPERM on a
 *  write-only end.
 *  @retval MP_EINVAL  c or ready is NULL.
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a write-only end.
 *  @retval MP_ESTATE  c is a fork child's copy whose parent holds the rest of a message.
 *  @retval MP_ESYS    the OS wait failed (the message names the call). */
MP_API int mp_connection_poll(mp_connection *c, double timeout, bool *ready);

/** A connection passed to a child: it receives its own connection to the same pipe
 *  (c must stay open until the process has started), which starts without read-ahead;
 *  c reads ahead no more unless forced on (mp_connection_set_read_ahead). MP_ESTATE
 *  while c holds data read from the OS for its next receive (read-ahead; on Windows an
 *  empty message that a wait consumed): the child would never see it.
 *  @retval MP_EINVAL  a or c is NULL, or a is a child's own argument list.
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_ESTATE  c holds read-ahead data (see above), or is a fork child's torn copy.
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_args_add_connection(mp_args *a, mp_connection *c);
/** In a child, the connection at i (NULL if i is not a connection): borrowed, owned
 *  by the child's args (freed when the target returns). */
MP_API mp_connection *mp_args_connection(const mp_args *a, size_t i);

/* ---- handles, sockets and connections sent over a connection ----
 * CPython's reduction.send_handle / recv_handle and its pickling of connections and
 * sockets. The receiver gets its own working duplicate, which is its to close; the
 * sender's stays the sender's. Once sent, the duplicate lives in the kernel (posix
 * SCM_RIGHTS) or in the receiving process (Windows DuplicateHandle), so the sender may
 * close its own or exit at once. Which connections carry handles: posix, an AF_UNIX
 * socket connection (in-band, CPython's wire: a Python peer can send or receive one) and
 * a duplex mp_pipe (a packet socket beside its two pipes carries them); a one-way pipe
 * (as in CPython) and an AF_INET connection cannot (MP_ENOTSUP). Windows: every
 * connection; each handle is duplicated into the receiving process, dest_pid. A
 * receive returns the next thing sent on the connection: when that is not what was
 * asked for (a message, or a handle where a connection was expected), it is consumed
 * and dropped, its handles closed, and the call is MP_EPROTO (on posix AF_UNIX sockets,
 * CPython's wire does not say whether an fd is a socket: there recv_handle and
 * recv_socket take either). Senders sharing one end must take turns (a lock), as for
 * messages. dest_pid: the receiving process's id (mp_process_pid of a child,
 * mp_parent_process's pid, or mp_getpid() for a dummy child, a thread of this process);
 * ignored on posix. On Windows 0 means unknown: the handle then waits in this process
 * until the receiver takes it (CPython's DupHandle with pid None), so the sender must
 * still run then; a socket needs the real pid (WSADuplicateSocket). A handle sent but
 * never received is closed with the connection's last end on posix; on Windows it
 * stays open in the process it was duplicated into until that process ends. */

/** Python's send_handle(conn, h, dest_pid): sends a duplicate of the OS handle h (posix
 *  an fd of any kind, Windows a HANDLE, not a SOCKET) for process dest_pid; h stays the
 *  caller's. MP_EBADF for an invalid or closed h, MP_ENOTSUP where c cannot carry handles,
 *  MP_EPERM on a read-only end, MP_ECLOSED, MP_EPIPE when the peer is gone.
 *  @retval MP_EINVAL  c is NULL.
 *  @retval MP_EBADF   h is MP_INVALID_OS_HANDLE or not open.
 *  @retval MP_ENOTSUP c cannot carry handles (a one-way pipe, an AF_INET connection).
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a read-only end.
 *  @retval MP_EPIPE   the peer is gone.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ESYS    the OS refused (the message names the call; Windows: DuplicateHandle). */
MP_API int mp_connection_send_handle(mp_connection *c, mp_os_handle h, int64_t dest_pid);
/** Python's recv_handle(conn): waits up to timeout (MP_FOREVER: until it comes) for a
 *  handle sent with mp_connection_send_handle and stores in *out this process's own
 *  duplicate, the caller's to close (close / CloseHandle). MP_ETIMEDOUT (nothing taken),
 *  MP_EPROTO when something else came (dropped), MP_EOF when the peer closed, MP_ESTATE
 *  on an AF_UNIX connection with read-ahead forced on (its read-ahead could drop a
 *  handle; the default mode does not read ahead there). On failure *out is MP_INVALID_OS_HANDLE.
 *  @retval MP_ETIMEDOUT nothing came within timeout.
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a write-only end.
 *  @retval MP_ENOTSUP c cannot carry handles.
 *  @retval MP_ESTATE  an AF_UNIX connection with read-ahead forced on, or a fork child's torn
 *      copy.
 *  @retval MP_EPROTO  something else came (dropped), or its handles did not.
 *  @retval MP_EOF     the peer closed.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_connection_recv_handle(mp_connection *c, double timeout, mp_os_handle *out);
/** Sends a duplicate of the socket s (Python's socket pickling): posix as
 *  mp_connection_send_handle; Windows WSADuplicateSocket for dest_pid, which must be
 *  given (MP_EINVAL for 0). s stays the caller's. Errors as mp_connection_send_handle.
 *  @retval MP_EINVAL  c is NULL, or (Windows) dest_pid is 0.
 *  @retval MP_EBADF   s is MP_INVALID_OS_HANDLE or not open.
 *  @retval MP_ENOTSUP c cannot carry handles.
 *  @retval MP_ECLOSED c is closed.
 *  @retval MP_EPERM   c is a read-only end.
 *  @retval MP_EPIPE   the peer is gone.
 *  @retval MP_ESYS    the OS refused (the message names the call; Windows: WSADuplicateSocket). */
MP_API int mp_connection_send_socket(mp_connection *c, mp_os_handle s, int64_t dest_pid);
/** Receives a socket sent with mp_connection_send_socket (as mp_connection_recv_handle):
 *  *out is this process's socket, the caller's to close (close / closesocket).
 *  @retval MP_ETIMEDOUT nothing came within timeout.
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_EPROTO  something else came (dropped).
 *  @par Other errors
 *  Otherwise as mp_connection_recv_handle (MP_ECLOSED, MP_EPERM, MP_ENOTSUP, MP_ESTATE, MP_EOF,
 *  MP_ELIMIT, MP_ESYS...). */
MP_API int mp_connection_recv_socket(mp_connection *c, double timeout, mp_os_handle *out);
/** Sends the connection obj (a pipe end, a Listener/Client connection; Python's
 *  pickling of a Connection): the receiver gets its own connection to the same pipe or
 *  socket, with obj's readable/writable flags and maximum message size. obj stays the
 *  caller's and open; it reads ahead no more unless forced on, and the receiver's copy
 *  starts without read-ahead. MP_ECLOSED when obj is closed, MP_ESTATE while it holds
 *  read-ahead bytes, MP_EINVAL on Windows for a socket connection without dest_pid; else as
 *  mp_connection_send_handle.
 *  @retval MP_EINVAL  c or obj is NULL, or (Windows) a socket connection without dest_pid.
 *  @retval MP_ECLOSED c or obj is closed.
 *  @retval MP_ESTATE  obj holds read-ahead bytes, or is a fork child's torn copy.
 *  @retval MP_ENOTSUP c cannot carry handles.
 *  @retval MP_EPERM   c is a read-only end.
 *  @retval MP_EPIPE   the peer is gone.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_connection_send_connection(mp_connection *c, mp_connection *obj, int64_t dest_pid);
/** Receives a connection sent with mp_connection_send_connection, waiting up to timeout:
 *  *out is a new connection, the caller's (mp_connection_free). Errors as
 *  mp_connection_recv_handle; on failure *out is NULL.
 *  @retval MP_ETIMEDOUT nothing came within timeout.
 *  @retval MP_EINVAL  c or out is NULL.
 *  @retval MP_EPROTO  something else came (dropped), or a malformed description.
 *  @retval MP_ENOMEM  out of memory.
 *  @par Other errors
 *  Otherwise as mp_connection_recv_handle (MP_ECLOSED, MP_EPERM, MP_ENOTSUP, MP_ESTATE, MP_EOF,
 *  MP_ELIMIT, MP_ESYS...). */
MP_API int mp_connection_recv_connection(mp_connection *c, double timeout, mp_connection **out);

/* ---- waiting on many objects: multiprocessing.connection.wait ---- */

typedef enum mp_waitable_kind {
    MP_WAIT_CONNECTION = 1, /* ready when a message or end of file can be read */
    MP_WAIT_HANDLE = 2,     /* a process sentinel or other waitable: posix a readable fd,
                               Windows a signalled HANDLE */
    MP_WAIT_SOCKET = 3      /* a raw socket: readable (posix: same as a handle) */
} mp_waitable_kind;

typedef struct mp_waitable {
    mp_waitable_kind kind;
    union {
        mp_connection *conn;
        mp_os_handle handle;
    } u;
} mp_waitable;

static inline mp_waitable mp_waitable_connection(mp_connection *c) {
    mp_waitable w;
    w.kind = MP_WAIT_CONNECTION;
    w.u.conn = c;
    return w;
}
static inline mp_waitable mp_waitable_handle(mp_os_handle h) {
    mp_waitable w;
    w.kind = MP_WAIT_HANDLE;
    w.u.handle = h;
    return w;
}
static inline mp_waitable mp_waitable_socket(mp_os_handle h) {
    mp_waitable w;
    w.kind = MP_WAIT_SOCKET;
    w.u.handle = h;
    return w;
}

/** Waits until at least one of objs[0..n) is ready or timeout passes (Python's wait):
 *  0 and ready[i] set for each ready object (ready must have n entries; *nready, if
 *  not NULL, counts them); MP_ETIMEDOUT with every ready[i] false. A closed
 *  connection is MP_ECLOSED. n == 0 sleeps out the timeout (MP_EINVAL when forever).
 *  @retval MP_ETIMEDOUT nothing was ready within timeout (also n == 0 after sleeping).
 *  @retval MP_EINVAL  objs or ready is NULL with n > 0, a NULL connection, an unknown kind, or n
 *      == 0 with MP_FOREVER.
 *  @retval MP_ECLOSED a connection is closed.
 *  @retval MP_EPERM   a connection is a write-only end.
 *  @retval MP_EBADF   a handle is MP_INVALID_OS_HANDLE (or not open: the OS says so).
 *  @retval MP_ESTATE  a connection is a fork child's torn copy.
 *  @retval MP_ENOMEM  out of memory (more than 16 objects).
 *  @retval MP_ESYS    the OS wait failed (the message names the call). */
MP_API int mp_wait(const mp_waitable *objs, size_t n, double timeout, bool *ready, size_t *nready);

#ifdef __cplusplus
}
#endif
#endif
