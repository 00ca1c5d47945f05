/* multiproc listeners and clients: Listener/Client over AF_INET, AF_UNIX and AF_PIPE,
 * with CPython's authkey handshake. Included by multiproc.h.
 *
 * Addresses are strings (CPython's forms, spelled for C):
 *   AF_INET   "host:port"      IPv4 or a name resolving to it; port 0 picks a free one
 *   AF_UNIX   "/path/to/sock"  a socket file, removed when the listener closes
 *             "@name"          Linux abstract namespace (CPython's "\0name": a C string
 *                              cannot start with NUL, so '@' stands for it, as in ss(8))
 *   AF_PIPE   "\\.\pipe\name"  a Windows named pipe (Windows only)
 * The family is deduced from the address when not given (CPython's address_type):
 * a leading "\\" is AF_PIPE, "host:port" with a numeric port and no '/' is AF_INET,
 * anything else AF_UNIX (AF_UNIX is not available on Windows, as in CPython).
 *
 * Authentication is CPython's (3.12+) challenge/response: the listener challenges
 * with "#CHALLENGE#{sha256}" + 40 random bytes, the client answers "{sha256}" +
 * HMAC-SHA256(key, challenge), "#WELCOME#" or "#FAILURE#" follows; then the client
 * challenges the listener the same way. Python <= 3.11 peers (a 20-byte challenge
 * without the {digest} prefix, answered with a bare HMAC-MD5) are accepted too.
 * Before a peer is authenticated nothing it sends can make us allocate or read more
 * than a 256-byte handshake message. */
#ifndef MULTIPROC_LISTENER_H
#define MULTIPROC_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "multiproc/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_connection mp_connection;

typedef enum mp_family {
    MP_AF_DEFAULT =
        0, /* deduce from the address; without one: AF_UNIX (posix), AF_PIPE (Windows) */
    MP_AF_INET = 1,
    MP_AF_UNIX = 2,
    MP_AF_PIPE = 3
} mp_family;

/** Length of the process authkey. */
#define MP_AUTHKEY_LEN 32

/** The family an address names (CPython's address_type); MP_AF_DEFAULT for NULL. */
MP_API mp_family mp_address_family(const char *address);
/** "AF_INET", "AF_UNIX", "AF_PIPE" ("AF_DEFAULT" for MP_AF_DEFAULT, "?" otherwise). */
MP_API const char *mp_family_name(mp_family family);
/** Whether this platform can listen and connect on family. */
MP_API bool mp_family_supported(mp_family family);
/** Writes a fresh address for family to buf (CPython's arbitrary_address): "localhost:0",
 *  a new socket path in the temporary directory, or a new pipe name. MP_ETOOBIG when cap
 *  is too small, MP_ENOTSUP when the family is not available here.
 *  @retval MP_EINVAL  buf is NULL or cap is 0.
 *  @retval MP_ENOTSUP family is not available here.
 *  @retval MP_ETOOBIG cap is too small (buf is then "").
 *  @retval MP_ESYS    no random bytes from the OS. */
MP_API int mp_arbitrary_address(mp_family family, char *buf, size_t cap);

/** The process's authkey (CPython's current_process().authkey): 32 random bytes made at
 *  start, inherited by children on every start method. Copies it to out.
 *  @retval MP_EINVAL  out is NULL. */
MP_API int mp_get_authkey(unsigned char out[MP_AUTHKEY_LEN]);
/** Replaces the process's authkey (children started later inherit it).
 *  @retval MP_EINVAL  key is NULL. */
MP_API int mp_set_authkey(const unsigned char key[MP_AUTHKEY_LEN]);

/** Options for a listener or a client; a NULL options pointer, or a zeroed struct,
 *  means: family from the address, backlog 1, the process's authkey, a 10 s handshake
 *  timeout and 256 pending handshakes. */
typedef struct mp_listener_opts {
    mp_family family;    /* MP_AF_DEFAULT: from the address */
    int backlog;         /* listen() backlog; <= 0: 1 (CPython's default). Listeners only */
    const void *authkey; /* NULL: the process's authkey (mp_get_authkey) */
    size_t authkey_len;  /* length of authkey (0 with a non-NULL authkey: an empty key) */
    bool no_auth;        /* no handshake at all (CPython's authkey=None) */
    /** Listeners only: seconds an accepted peer has to finish the handshake, counted
     *  from its accept (MP_FOREVER: no limit); <= 0: 10. A peer past it is closed. */
    double handshake_timeout;
    /** Listeners only: how many accepted peers may be in the middle of the handshake at
     *  once; a new one that finds them all there closes the oldest. Bounds the
     *  descriptors and memory (a few hundred bytes each) that unauthenticated peers can
     *  hold. <= 0: 256. */
    int max_pending;
} mp_listener_opts;

/** A listening socket or named pipe (CPython's multiprocessing.connection.Listener). */
typedef struct mp_listener mp_listener;

/** Binds and listens on address (NULL: mp_arbitrary_address of the family). Errors:
 *  MP_EINVAL for a malformed address, MP_ENOTSUP for a family this platform lacks,
 *  MP_EEXIST when the address is in use. Free with mp_listener_free.
 *  @retval MP_EINVAL  out is NULL; a malformed address (not "host:port" for AF_INET, empty, a
 *      socket path too long, an AF_PIPE name not starting with two backslashes), or an unknown
 *      family.
 *  @retval MP_ENOTSUP the family is not available on this platform.
 *  @retval MP_EEXIST  the address is in use.
 *  @retval MP_ENOENT  the host name cannot be resolved, or the socket's directory does not
 *      exist.
 *  @retval MP_EPERM   no permission to bind there.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_listener_new(const char *address, const mp_listener_opts *opts, mp_listener **out);
/** Waits up to timeout (MP_FOREVER: no limit) for a client that finishes the handshake
 *  (unless no_auth): the listener challenges first, then answers the client's challenge.
 *  On AF_INET and AF_UNIX the handshakes of all accepted clients run side by side, with
 *  non-blocking I/O: a client that does not answer delays no other; it keeps its place
 *  across calls until its handshake_timeout, or until max_pending newer clients push it
 *  out (see mp_listener_opts). On AF_PIPE (Windows) one client is authenticated at a
 *  time, within both timeouts. 0 and a new connection (the caller's; free with
 *  mp_connection_free); MP_ETIMEDOUT; MP_EAUTH when a client failed the handshake (its
 *  connection is closed, the listener stays usable: call accept again); MP_ECLOSED
 *  after close. Threads may accept on one listener at once (each in turn serves the
 *  pending handshakes).
 *  @retval MP_ETIMEDOUT no client finished its handshake within timeout.
 *  @retval MP_EAUTH   the client failed the handshake, or closed during it (the listener stays
 *      usable).
 *  @retval MP_EINVAL  l or out is NULL.
 *  @retval MP_ECLOSED l is closed.
 *  @retval MP_EPIPE   the client went away during the handshake.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_listener_accept(mp_listener *l, double timeout, mp_connection **out);
/** The bound address ("127.0.0.1:40123" with the real port, the path, "@name", the pipe
 *  name); owned by l, valid until it is freed. NULL for NULL. */
MP_API const char *mp_listener_address(const mp_listener *l);
/** The peer address of the last accepted connection ("127.0.0.1:51234"; "" for an unnamed
 *  AF_UNIX client); NULL before the first accept and on AF_PIPE (CPython's None). Owned
 *  by l, valid until the next accept. */
MP_API const char *mp_listener_last_accepted(const mp_listener *l);
/** The listener's family.
 *  @return MP_AF_DEFAULT for NULL. */
MP_API mp_family mp_listener_family(const mp_listener *l);
/** Stops listening and removes an AF_UNIX socket file (only in the process that made
 *  it, never in a forked child). Safe on NULL and twice.
 *  @par Errors
 *  None: always 0. */
MP_API int mp_listener_close(mp_listener *l);
/** Closes (if open) and frees l. NULL is fine. */
MP_API void mp_listener_free(mp_listener *l);

/** Connects to a listener at address (CPython's Client), waiting up to timeout for the
 *  connection and the handshake (MP_FOREVER: no limit), and authenticates: the client
 *  answers the listener's challenge, then challenges it. opts as for mp_listener_new
 *  (backlog ignored). 0 and the connection (the caller's); MP_ENOENT / MP_EPIPE when
 *  nobody listens there, MP_EAUTH when the handshake failed, MP_ETIMEDOUT.
 *  @retval MP_ETIMEDOUT no connection or handshake within timeout (also a full backlog).
 *  @retval MP_ENOENT  nobody listens there (refused, or no such path or pipe), or the host
 *      cannot be resolved.
 *  @retval MP_EPIPE   the connection was reset or aborted.
 *  @retval MP_EAUTH   the handshake failed (wrong authkey, or the listener closed during it).
 *  @retval MP_EINVAL  address or out is NULL, a malformed address or an unknown family.
 *  @retval MP_ENOTSUP the family is not available on this platform, or the listener asked for a
 *      digest this build lacks.
 *  @retval MP_ENOMEM  out of memory.
 *  @retval MP_ELIMIT  out of descriptors or handles.
 *  @retval MP_ESYS    the OS refused (the message names the call). */
MP_API int mp_client_connect(const char *address, const mp_listener_opts *opts, double timeout,
                             mp_connection **out);

/** Challenges the peer on c (CPython's deliver_challenge): sends a {sha256} challenge,
 *  checks the answer (also a legacy HMAC-MD5 one) and sends `#WELCOME#` or `#FAILURE#`.
 *  MP_EAUTH when the peer failed. Blocks until the peer answers.
 *  @retval MP_EAUTH   the peer's answer was wrong or malformed, or it closed instead of
 *      answering.
 *  @retval MP_EINVAL  c is NULL, or key is NULL with keylen > 0.
 *  @par Other errors
 *  Those of mp_connection_send_bytes and mp_connection_recv_bytes on c (MP_ECLOSED, MP_EPERM,
 *  MP_EPIPE, MP_ESYS...). */
MP_API int mp_deliver_challenge(mp_connection *c, const void *key, size_t keylen);
/** Answers the peer's challenge on c (CPython's answer_challenge): MP_EAUTH when the
 *  challenge is malformed or the peer rejected our answer. Blocks.
 *  @retval MP_EAUTH   the challenge is malformed, our answer was rejected (wrong authkey?), or
 *      the peer closed.
 *  @retval MP_EINVAL  c is NULL, or key is NULL with keylen > 0.
 *  @retval MP_ENOTSUP the peer asked for a digest this build lacks.
 *  @par Other errors
 *  Those of mp_connection_send_bytes and mp_connection_recv_bytes on c (MP_ECLOSED, MP_EPERM,
 *  MP_EPIPE, MP_ESYS...). */
MP_API int mp_answer_challenge(mp_connection *c, const void *key, size_t keylen);

#ifdef __cplusplus
}
#endif
#endif
