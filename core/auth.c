/* CPython's connection authentication (multiprocessing.connection, 3.12+ with the
 * legacy HMAC-MD5 form of <= 3.11), and the process authkey.
 *
 * One engine runs the protocol over a small message transport, so the same code
 * serves a raw handle with a deadline (listeners and clients, before a connection
 * object exists) and a connection (the public deliver/answer functions). Every
 * message before authentication is received into a fixed 256-byte buffer: a peer can
 * make us read no more than that, whatever length it announces. */
#include <stdio.h>
#include <string.h>

#include "connection_internal.h"
#include "os_net.h"

static const char k_challenge[] = "#CHALLENGE#";
static const char k_welcome[] = "#WELCOME#";
static const char k_failure[] = "#FAILURE#";
#define LIT_LEN(s) (sizeof(s) - 1)

/* Random bytes after "{sha256}" (CPython's MESSAGE_LENGTH; must exceed 20). */
#define CHALLENGE_RANDOM 40
/* Legacy (<= 3.11) challenge and HMAC-MD5 answer lengths: no {digest} prefix. */
#define LEGACY_CHALLENGE_LEN 20
#define LEGACY_ANSWER_LEN 16
/* Longest digest name in CPython's allowed set ("sha3_384"). */
#define MAX_DIGEST_NAME 8

/* ---- the process authkey ------------------------------------------------------ */

int mp_get_authkey(unsigned char out[MP_AUTHKEY_LEN]) {
    if (!out) return mp__err(MP_EINVAL, "mp_get_authkey: out is NULL");
    mp__lock();
    memcpy(out, mp__authkey(), MP_AUTHKEY_LEN);
    mp__unlock();
    return 0;
}

int mp_set_authkey(const unsigned char key[MP_AUTHKEY_LEN]) {
    if (!key) return mp__err(MP_EINVAL, "mp_set_authkey: key is NULL");
    mp__lock();
    mp__set_authkey(key);
    mp__unlock();
    return 0;
}

/* ---- digests ------------------------------------------------------------------ */

static const struct {
    const char *name;
    int alg;
} k_digests[] = {
    {"md5", MP__HMAC_MD5},           {"sha256", MP__HMAC_SHA256},     {"sha384", MP__HMAC_SHA384},
    {"sha3_256", MP__HMAC_SHA3_256}, {"sha3_384", MP__HMAC_SHA3_384},
};

static int digest_by_name(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < sizeof k_digests / sizeof k_digests[0]; i++)
        if (strlen(k_digests[i].name) == n && memcmp(k_digests[i].name, p, n) == 0)
            return k_digests[i].alg;
    return 0;
}

/* Splits a challenge or an answer into its digest and payload as CPython does: the
 * legacy lengths (20 and 16) mean HMAC-MD5 without a prefix (*prefixed false);
 * otherwise "{name}" must lead and name an allowed digest. 0 or MP_EAUTH. */
static int split_digest(const unsigned char *m, size_t n, int *alg, bool *prefixed,
                        size_t *payload_off) {
    *prefixed = false;
    *payload_off = 0;
    if (n == LEGACY_CHALLENGE_LEN || n == LEGACY_ANSWER_LEN) {
        *alg = MP__HMAC_MD5;
        return 0;
    }
    if (n > 0 && m[0] == '{') {
        size_t lim = n < MAX_DIGEST_NAME + 2 ? n : MAX_DIGEST_NAME + 2;
        for (size_t i = 1; i < lim; i++) {
            if (m[i] != '}') continue;
            int a = digest_by_name(m + 1, i - 1);
            if (!a) break;
            *alg = a;
            *prefixed = true;
            *payload_off = i + 1;
            return 0;
        }
    }
    return mp__err(MP_EAUTH,
                   "authentication: unsupported message length (%zu bytes), missing "
                   "{digest} prefix or unsupported digest",
                   n);
}

static int hmac(int alg, const void *key, size_t keylen, const void *m, size_t n,
                unsigned char out[MP__HMAC_MAX], size_t *outlen) {
    int rc = mp__os_hmac(alg, key, keylen, m, n, out, outlen);
    if (rc == MP_ENOTSUP) return mp__err_wrap(MP_EAUTH, "authentication");
    return rc;
}

/* Constant time, so the comparison does not tell an attacker how much of a MAC fit. */
static bool same_bytes(const unsigned char *a, const unsigned char *b, size_t n) {
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* ---- the transport the engine runs over ---------------------------------------- */

typedef struct authio {
    int (*send)(struct authio *io, const void *buf, size_t n);
    /* One message of at most cap bytes into buf; a longer one is MP_EAUTH. */
    int (*recv)(struct authio *io, void *buf, size_t cap, size_t *n);
    mp_os_handle h;
    int kind;
    double deadline;
    mp_connection *conn;
} authio;

int mp__auth_send_msg(mp_os_handle h, int kind, const void *buf, size_t n, double deadline) {
    /* Handshake messages are small: the 4-byte header is always enough. One write, so
     * Nagle cannot delay the pair (CPython concatenates too). */
    unsigned char frame[4 + MP__AUTH_MAX_MESSAGE];
    if (n > MP__AUTH_MAX_MESSAGE) return mp__err(MP_EINVAL, "authentication: message too long");
    if (mp__os_net_message_mode(kind)) return mp__os_net_write_message(h, kind, buf, n, deadline);
    frame[0] = (unsigned char)(n >> 24);
    frame[1] = (unsigned char)(n >> 16);
    frame[2] = (unsigned char)(n >> 8);
    frame[3] = (unsigned char)n;
    if (n) memcpy(frame + 4, buf, n);
    return mp__os_net_write(h, kind, frame, 4 + n, deadline);
}

int mp__auth_recv_msg(mp_os_handle h, int kind, void *buf, size_t cap, size_t *n, double deadline) {
    unsigned char hdr[4];
    *n = 0;
    if (mp__os_net_message_mode(kind)) {
        /* The pipe keeps the boundary: a longer message is refused unread. */
        int rc = mp__os_net_read_message(h, kind, buf, cap, n, deadline);
        if (rc == MP_ETOOBIG)
            return mp__err(MP_EAUTH,
                           "authentication: peer sent a message longer than the %zu "
                           "bytes allowed before authenticating",
                           cap);
        return rc;
    }
    int rc = mp__os_net_read(h, kind, hdr, 4, deadline);
    if (rc) return rc;
    /* A negative length (-1 announces an 8-byte one) can only be longer than cap:
     * refuse without reading further. */
    if (hdr[0] & 0x80)
        return mp__err(MP_EAUTH,
                       "authentication: peer announced a message longer than %zu "
                       "bytes before authenticating",
                       cap);
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > cap)
        return mp__err(MP_EAUTH,
                       "authentication: peer announced a %lu-byte message, more "
                       "than the %zu allowed before authenticating",
                       (unsigned long)len, cap);
    rc = len ? mp__os_net_read(h, kind, buf, len, deadline) : 0;
    if (rc == MP_EOF)
        return mp__err(MP_EOF, "authentication: peer closed in the middle of a message");
    if (rc) return rc;
    *n = len;
    return 0;
}

static int raw_send(authio *io, const void *buf, size_t n) {
    return mp__auth_send_msg(io->h, io->kind, buf, n, io->deadline);
}

static int raw_recv(authio *io, void *buf, size_t cap, size_t *n) {
    return mp__auth_recv_msg(io->h, io->kind, buf, cap, n, io->deadline);
}

static int conn_send(authio *io, const void *buf, size_t n) {
    return mp_connection_send_bytes(io->conn, buf, n);
}

static int conn_recv(authio *io, void *buf, size_t cap, size_t *n) {
    void *p;
    size_t len;
    *n = 0;
    int rc = mp_connection_recv_bytes(io->conn, cap, &p, &len);
    if (rc == MP_ETOOBIG) return mp__err_wrap(MP_EAUTH, "authentication");
    if (rc) return rc;
    memcpy(buf, p, len);
    mp_connection_free_bytes(p);
    *n = len;
    return 0;
}

/* ---- the protocol ------------------------------------------------------------- */

static int check_key(const void *key, size_t keylen, const char *fn) {
    if (!key && keylen) return mp__err(MP_EINVAL, "%s: key is NULL", fn);
    return 0;
}

/* The protocol's steps, shared by the blocking engine below and the listener's
 * non-blocking pre-auth set (core/listener.c). */

int mp__auth_make_challenge(unsigned char out[MP__AUTH_CHALLENGE_LEN]) {
    /* "#CHALLENGE#" then the message: "{sha256}" and 40 random bytes. */
    memcpy(out, k_challenge, LIT_LEN(k_challenge));
    memcpy(out + LIT_LEN(k_challenge), "{sha256}", 8);
    return mp__os_random(out + LIT_LEN(k_challenge) + 8, CHALLENGE_RANDOM);
}

int mp__auth_check_answer(const void *key, size_t keylen,
                          const unsigned char challenge[MP__AUTH_CHALLENGE_LEN],
                          const unsigned char *answer, size_t n) {
    /* The answer names its digest (a legacy client gives a bare 16-byte HMAC-MD5 of
     * the whole message, prefix included); the MAC covers the prefix, so naming a
     * weaker digest than ours cannot match. */
    const unsigned char *msg = challenge + LIT_LEN(k_challenge);
    size_t msglen = MP__AUTH_CHALLENGE_LEN - LIT_LEN(k_challenge);
    int alg;
    bool prefixed;
    size_t off;
    int rc = split_digest(answer, n, &alg, &prefixed, &off);
    if (!rc) {
        unsigned char mac[MP__HMAC_MAX];
        size_t maclen;
        rc = hmac(alg, key, keylen, msg, msglen, mac, &maclen);
        if (!rc && (n - off != maclen || !same_bytes(mac, answer + off, maclen)))
            rc = mp__err(MP_EAUTH, "authentication: digest received was wrong");
    }
    return rc ? MP_EAUTH : 0;
}

int mp__auth_make_reply(const void *key, size_t keylen, const unsigned char *in, size_t n,
                        unsigned char reply[MP__AUTH_REPLY_MAX], size_t *rlen) {
    *rlen = 0;
    if (n < LIT_LEN(k_challenge) || memcmp(in, k_challenge, LIT_LEN(k_challenge)) != 0)
        return mp__err(MP_EAUTH, "authentication: protocol error, expected a challenge "
                                 "(is the peer authenticating with an authkey?)");
    const unsigned char *msg = in + LIT_LEN(k_challenge);
    size_t msglen = n - LIT_LEN(k_challenge);
    if (msglen < LEGACY_CHALLENGE_LEN)
        return mp__err(MP_EAUTH, "authentication: challenge too short: %zu bytes", msglen);
    int alg;
    bool prefixed;
    size_t off;
    int rc = split_digest(msg, msglen, &alg, &prefixed, &off);
    if (rc) return rc;
    /* The reply: "{name}" + HMAC-name of the whole message; legacy: the bare MD5. */
    size_t len = 0;
    if (prefixed) {
        memcpy(reply, msg, off);
        len = off;
    }
    size_t maclen;
    rc = hmac(alg, key, keylen, msg, msglen, reply + len, &maclen);
    if (rc) return rc;
    *rlen = len + maclen;
    return 0;
}

int mp__auth_check_welcome(const unsigned char *in, size_t n) {
    if (n != LIT_LEN(k_welcome) || memcmp(in, k_welcome, n) != 0)
        return mp__err(MP_EAUTH, "authentication: digest sent was rejected (wrong authkey?)");
    return 0;
}

void mp__auth_verdict(bool ok, const void **msg, size_t *n) {
    *msg = ok ? k_welcome : k_failure;
    *n = ok ? LIT_LEN(k_welcome) : LIT_LEN(k_failure);
}

static int deliver(authio *io, const void *key, size_t keylen) {
    unsigned char out[MP__AUTH_CHALLENGE_LEN];
    int rc = mp__auth_make_challenge(out);
    if (!rc) rc = io->send(io, out, sizeof out);
    if (rc) return rc;

    unsigned char answer[MP__AUTH_MAX_MESSAGE];
    size_t n;
    rc = io->recv(io, answer, sizeof answer, &n);
    if (rc == MP_EOF) return mp__err(MP_EAUTH, "authentication: peer closed instead of answering");
    if (rc) return rc;
    if (mp__auth_check_answer(key, keylen, out, answer, n)) {
        mp__err_mute();
        io->send(io, k_failure, LIT_LEN(k_failure)); /* best effort: we fail anyway */
        mp__err_unmute();
        return MP_EAUTH;
    }
    return io->send(io, k_welcome, LIT_LEN(k_welcome));
}

static int answer(authio *io, const void *key, size_t keylen) {
    unsigned char in[MP__AUTH_MAX_MESSAGE];
    size_t n;
    int rc = io->recv(io, in, sizeof in, &n);
    if (rc == MP_EOF)
        return mp__err(MP_EAUTH, "authentication: peer closed instead of challenging");
    if (rc) return rc;
    unsigned char reply[MP__AUTH_REPLY_MAX];
    size_t rlen;
    rc = mp__auth_make_reply(key, keylen, in, n, reply, &rlen);
    if (rc) return rc;
    rc = io->send(io, reply, rlen);
    if (rc) return rc;

    rc = io->recv(io, in, sizeof in, &n);
    if (rc == MP_EOF) return mp__err(MP_EAUTH, "authentication: peer closed instead of welcoming");
    if (rc) return rc;
    return mp__auth_check_welcome(in, n);
}

int mp__auth_deliver(mp_os_handle h, int kind, const void *key, size_t keylen, double deadline) {
    int rc = check_key(key, keylen, "deliver_challenge");
    if (rc) return rc;
    authio io = {.send = raw_send, .recv = raw_recv, .h = h, .kind = kind, .deadline = deadline};
    return deliver(&io, key, keylen);
}

int mp__auth_answer(mp_os_handle h, int kind, const void *key, size_t keylen, double deadline) {
    int rc = check_key(key, keylen, "answer_challenge");
    if (rc) return rc;
    authio io = {.send = raw_send, .recv = raw_recv, .h = h, .kind = kind, .deadline = deadline};
    return answer(&io, key, keylen);
}

int mp_deliver_challenge(mp_connection *c, const void *key, size_t keylen) {
    if (!c) return mp__err(MP_EINVAL, "mp_deliver_challenge: connection is NULL");
    int rc = check_key(key, keylen, "mp_deliver_challenge");
    if (rc) return rc;
    authio io = {.send = conn_send, .recv = conn_recv, .conn = c};
    return deliver(&io, key, keylen);
}

int mp_answer_challenge(mp_connection *c, const void *key, size_t keylen) {
    if (!c) return mp__err(MP_EINVAL, "mp_answer_challenge: connection is NULL");
    int rc = check_key(key, keylen, "mp_answer_challenge");
    if (rc) return rc;
    authio io = {.send = conn_send, .recv = conn_recv, .conn = c};
    return answer(&io, key, keylen);
}
