/* The OS layer for listeners and clients (linux/net_linux.c, win32/net_win32.c):
 * listening sockets and named pipes, connecting, byte I/O bounded by a deadline, HMAC.
 * Also the raw-handle handshake of core/auth.c, shared by core/listener.c and the
 * fuzz driver. Deadlines are absolute mp__os_monotonic() times (mp__deadline);
 * MP_FOREVER means none. */
#ifndef MP_CORE_OS_NET_H
#define MP_CORE_OS_NET_H

#include "os.h"

/* ---- listening and connecting ---- */

/** Whether this build can listen and connect on family (an MP_AF_* value). */
bool mp__os_net_family_supported(int family);
/** The directory for arbitrary AF_UNIX addresses (static; no trailing separator). */
const char *mp__os_net_temp_dir(void);

typedef struct mp__os_listener mp__os_listener;

/** Listens: AF_INET on host:port (host "" is every interface), AF_UNIX on path ("@name"
 *  is abstract), AF_PIPE on the pipe name path. On success *bound is the real address
 *  as the listener reports it (mp__malloc'd: "127.0.0.1:40123", the path, "@name"). */
int mp__os_net_listen(int family, const char *host, int port, const char *path, int backlog,
                      mp__os_listener **out, char **bound);
/** Waits up to timeout (MP_FOREVER: forever) for a connection: 0, *h (blocking, not inheritable),
 *  *kind (MP__CONN_SOCKET / MP__CONN_PIPE), *peer (mp__malloc'd peer address, or NULL
 *  when the family has none). MP_ETIMEDOUT. */
int mp__os_net_accept(mp__os_listener *l, double timeout, mp_os_handle *h, int *kind, char **peer);
/** Closes the listener; removes an AF_UNIX socket file if this process made it. */
void mp__os_net_listener_close(mp__os_listener *l);

/** Connects as for mp__os_net_listen's arguments, giving up at deadline: 0, *h
 *  (blocking, not inheritable) and *kind. */
int mp__os_net_connect(int family, const char *host, int port, const char *path, double deadline,
                       mp_os_handle *h, int *kind);

/** Closes a handle mp__os_net_accept or mp__os_net_connect gave (a SOCKET needs
 *  closesocket on Windows). */
void mp__os_net_close(mp_os_handle h, int kind);

/** Ends the sending direction of a socket: the peer reads end of file, replies still
 *  arrive (shutdown SHUT_WR / SD_SEND). */
int mp__os_net_shutdown_write(mp_os_handle h);

/** Two connected stream sockets (socketpair; loopback TCP on Windows), for tests. */
int mp__os_net_socketpair(mp_os_handle h[2]);

/* ---- byte I/O with a deadline, on a connection handle of kind ---- */

/** Writes all n bytes: 0, MP_EPIPE when the peer is gone, MP_ETIMEDOUT. */
int mp__os_net_write(mp_os_handle h, int kind, const void *buf, size_t n, double deadline);
/** Reads exactly n bytes: 0, MP_EOF when the peer closed first, MP_ETIMEDOUT. */
int mp__os_net_read(mp_os_handle h, int kind, void *buf, size_t n, double deadline);

/** Reads what has arrived, up to n bytes, without waiting: 0 and *got (0 when nothing
 *  has), MP_EOF when the peer closed or reset. Stream sockets only. */
int mp__os_net_read_some(mp_os_handle h, int kind, void *buf, size_t n, size_t *got);
/** Waits until deadline for l to have a connection to accept or one of the n socket
 *  handles h to be readable (or closed): 0 with *l_ready and ready[i] set (all false when
 *  the deadline passed). l must be a socket listener (AF_INET or AF_UNIX); MP_ENOTSUP for
 *  an AF_PIPE one. */
int mp__os_net_poll(mp__os_listener *l, const mp_os_handle *h, size_t n, double deadline,
                    bool *l_ready, bool *ready);

/** Whether handles of kind carry OS-delimited messages (Windows pipes, as CPython's
 *  PipeListener/PipeClient make them): then a message is one write, no length header. */
bool mp__os_net_message_mode(int kind);
/** Message mode: writes buf[0..n) as one message (n may be 0). */
int mp__os_net_write_message(mp_os_handle h, int kind, const void *buf, size_t n, double deadline);
/** Message mode: reads one message into buf[0..cap): 0 with *n; MP_ETOOBIG when it is
 *  longer (the rest stays unread), MP_EOF, MP_ETIMEDOUT. */
int mp__os_net_read_message(mp_os_handle h, int kind, void *buf, size_t cap, size_t *n,
                            double deadline);

/* ---- HMAC ---- */

enum { MP__HMAC_MD5 = 1, MP__HMAC_SHA256, MP__HMAC_SHA384, MP__HMAC_SHA3_256, MP__HMAC_SHA3_384 };
#define MP__HMAC_MAX 64

/** HMAC of data under key with alg into out (*outlen bytes, at most MP__HMAC_MAX).
 *  MP_ENOTSUP when this platform lacks the digest. */
int mp__os_hmac(int alg, const void *key, size_t keylen, const void *data, size_t n,
                unsigned char out[MP__HMAC_MAX], size_t *outlen);

/* ---- the handshake over a raw handle (core/auth.c) ---- */

/** Longest handshake message either side accepts (CPython's 256). */
#define MP__AUTH_MAX_MESSAGE 256

/** Sends one CPython-framed message. */
int mp__auth_send_msg(mp_os_handle h, int kind, const void *buf, size_t n, double deadline);
/** Receives one message of at most cap bytes: 0 and *n; MP_EAUTH (nothing more read)
 *  when the peer announces more; MP_EOF, MP_ETIMEDOUT. */
int mp__auth_recv_msg(mp_os_handle h, int kind, void *buf, size_t cap, size_t *n, double deadline);
/** CPython's deliver_challenge / answer_challenge on a raw handle. */
int mp__auth_deliver(mp_os_handle h, int kind, const void *key, size_t keylen, double deadline);
int mp__auth_answer(mp_os_handle h, int kind, const void *key, size_t keylen, double deadline);

/* The same protocol step by step, for a caller doing its own (non-blocking) I/O: the
 * listener's pre-auth set. Messages are the bodies, without the length header. */

/** "#CHALLENGE#{sha256}" and 40 random bytes. */
#define MP__AUTH_CHALLENGE_LEN (11 + 8 + 40)
/** Longest answer to a peer's challenge: "{sha3_384}" and a 64-byte MAC. */
#define MP__AUTH_REPLY_MAX (2 + 8 + MP__HMAC_MAX)
/** Makes the challenge to send (deliver_challenge's first message). */
int mp__auth_make_challenge(unsigned char out[MP__AUTH_CHALLENGE_LEN]);
/** 0 when answer (n bytes) is right for challenge (also a legacy HMAC-MD5 one), else
 *  MP_EAUTH; the caller then sends mp__auth_verdict's message. */
int mp__auth_check_answer(const void *key, size_t keylen,
                          const unsigned char challenge[MP__AUTH_CHALLENGE_LEN],
                          const unsigned char *answer, size_t n);
/** "#WELCOME#" (ok) or "#FAILURE#" (static). */
void mp__auth_verdict(bool ok, const void **msg, size_t *n);
/** The reply to the peer's challenge in (answer_challenge): 0 and reply[0..*rlen);
 *  MP_EAUTH for a malformed challenge, MP_ENOTSUP for a digest this build lacks. */
int mp__auth_make_reply(const void *key, size_t keylen, const unsigned char *in, size_t n,
                        unsigned char reply[MP__AUTH_REPLY_MAX], size_t *rlen);
/** 0 when in is "#WELCOME#", else MP_EAUTH (our reply was rejected). */
int mp__auth_check_welcome(const unsigned char *in, size_t n);

#endif
