/* Listener and Client (CPython's multiprocessing.connection): addresses, families, and
 * the handshake run on the raw handle before it becomes a connection, so a deadline
 * bounds every byte of it and an unauthenticated peer never reaches the connection.
 *
 * A socket listener runs the handshakes of the peers it accepted side by side (the
 * pre-auth set): each peer has a fixed buffer for one handshake message and a deadline;
 * the set has a fixed size, and a new peer that finds it full evicts the oldest. So a
 * peer that never answers costs one slot for a bounded time and delays nobody. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "os_net.h"

/* Defaults of mp_listener_opts' handshake_timeout and max_pending. */
#define DEFAULT_HANDSHAKE_TIMEOUT 10.0
#define DEFAULT_MAX_PENDING 256
/* Connections taken from the backlog per pass, so the peers already in the set keep
 * being served while a flood drains. */
#define ACCEPT_BATCH 64
/* Longest hold of the listener's mutex by one accept, so another thread's accept on
 * the same listener gets its turn and its timeout. */
#define PASS_SLICE 0.05

/* Where a peer in the pre-auth set stands: waiting for its answer to our challenge,
 * for its own challenge, or for its verdict on our reply. */
enum { PA_ANSWER, PA_CHALLENGE, PA_WELCOME };

typedef struct pending {
    mp_os_handle h;
    int kind;
    int state;
    double deadline;
    char *peer;
    size_t got; /* bytes of the current message so far, its 4-byte header included */
    unsigned char hdr[4];
    unsigned char msg[MP__AUTH_MAX_MESSAGE];
    unsigned char challenge[MP__AUTH_CHALLENGE_LEN];
} pending;

struct mp_listener {
    mp_family family;
    mp__os_listener *os;
    char *address;
    char *last_accepted;
    bool auth;
    unsigned char *key;
    size_t keylen;
    double handshake_timeout;
    size_t max_pending;
    mp__mutex *mu;
    /* The pre-auth set, oldest first (made at the first accept), and poll's scratch. */
    pending **set;
    size_t n;
    mp_os_handle *hs;
    bool *ready;
};

/* ---- families and addresses ---------------------------------------------------- */

const char *mp_family_name(mp_family family) {
    switch (family) {
    case MP_AF_DEFAULT:
        return "AF_DEFAULT";
    case MP_AF_INET:
        return "AF_INET";
    case MP_AF_UNIX:
        return "AF_UNIX";
    case MP_AF_PIPE:
        return "AF_PIPE";
    }
    return "?";
}

bool mp_family_supported(mp_family family) {
    return family >= MP_AF_INET && family <= MP_AF_PIPE && mp__os_net_family_supported(family);
}

static mp_family default_family(void) {
    return mp__os_net_family_supported(MP_AF_UNIX) ? MP_AF_UNIX : MP_AF_PIPE;
}

/* "host:port": the last ':' followed by 1-5 digits; "host" may be empty. */
static bool split_inet(const char *a, size_t *hostlen, int *port) {
    const char *colon = strrchr(a, ':');
    if (!colon || strchr(a, '/') || strchr(a, '\\')) return false;
    const char *p = colon + 1;
    size_t nd = strspn(p, "0123456789");
    if (nd == 0 || nd > 5 || p[nd] != '\0') return false;
    long v = strtol(p, NULL, 10);
    if (v > 65535) return false;
    *hostlen = (size_t)(colon - a);
    *port = (int)v;
    return true;
}

mp_family mp_address_family(const char *address) {
    if (!address) return MP_AF_DEFAULT;
    if (address[0] == '\\' && address[1] == '\\') return MP_AF_PIPE;
    size_t hl;
    int port;
    if (split_inet(address, &hl, &port)) return MP_AF_INET;
    return MP_AF_UNIX;
}

static unsigned long g_counter;

int mp_arbitrary_address(mp_family family, char *buf, size_t cap) {
    if (!buf || !cap) return mp__err(MP_EINVAL, "mp_arbitrary_address: no buffer");
    buf[0] = '\0';
    if (family == MP_AF_DEFAULT) family = default_family();
    if (!mp_family_supported(family))
        return mp__err(MP_ENOTSUP, "mp_arbitrary_address: %s is not available here",
                       mp_family_name(family));
    unsigned char rnd[6];
    int rc = mp__os_random(rnd, sizeof rnd);
    if (rc) return rc;
    char hex[2 * sizeof rnd + 1];
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    mp__lock();
    unsigned long n = g_counter++;
    mp__unlock();
    int len;
    if (family == MP_AF_INET)
        len = snprintf(buf, cap, "localhost:0");
    else if (family == MP_AF_UNIX)
        len = snprintf(buf, cap, "%s/mp-sock-%lld-%lu-%s", mp__os_net_temp_dir(),
                       (long long)mp__os_getpid(), n, hex);
    else
        len = snprintf(buf, cap, "\\\\.\\pipe\\mp-%lld-%lu-%s", (long long)mp__os_getpid(), n, hex);
    if (len < 0 || (size_t)len >= cap) {
        buf[0] = '\0';
        return mp__err(MP_ETOOBIG, "mp_arbitrary_address: buffer of %zu bytes is too small", cap);
    }
    return 0;
}

/* The family to use and, for AF_INET, the split host and port. */
typedef struct parsed {
    mp_family family;
    char host[256];
    int port;
    const char *path;
} parsed;

static int parse_address(const char *address, mp_family family, parsed *p, const char *fn) {
    memset(p, 0, sizeof *p);
    if (family == MP_AF_DEFAULT) family = mp_address_family(address);
    if (family < MP_AF_INET || family > MP_AF_PIPE)
        return mp__err(MP_EINVAL, "%s: unknown family %d", fn, (int)family);
    if (!mp__os_net_family_supported(family))
        return mp__err(MP_ENOTSUP, "%s: family %s is not available on this platform", fn,
                       mp_family_name(family));
    p->family = family;
    if (family == MP_AF_INET) {
        size_t hl;
        if (!split_inet(address, &hl, &p->port))
            return mp__err(MP_EINVAL, "%s: AF_INET address '%s' is not \"host:port\"", fn, address);
        if (hl >= sizeof p->host) return mp__err(MP_EINVAL, "%s: host name too long", fn);
        memcpy(p->host, address, hl);
        p->host[hl] = '\0';
    } else {
        if (!address[0]) return mp__err(MP_EINVAL, "%s: empty address", fn);
        if (family == MP_AF_PIPE && !(address[0] == '\\' && address[1] == '\\'))
            return mp__err(MP_EINVAL, "%s: AF_PIPE address '%s' is not \\\\.\\pipe\\name", fn,
                           address);
        p->path = address;
    }
    return 0;
}

/* The key a listener or client uses: an explicit one, the process's, or none. */
static int take_key(const mp_listener_opts *o, bool *auth, unsigned char **key, size_t *keylen) {
    *auth = !(o && o->no_auth);
    *key = NULL;
    *keylen = 0;
    if (!*auth) return 0;
    const void *src;
    size_t n;
    unsigned char pk[MP_AUTHKEY_LEN];
    if (o && o->authkey) {
        src = o->authkey;
        n = o->authkey_len;
    } else {
        mp_get_authkey(pk);
        src = pk;
        n = sizeof pk;
    }
    *key = mp__malloc(n);
    if (!*key) return mp__err(MP_ENOMEM, "out of memory for the authkey");
    memcpy(*key, src, n);
    *keylen = n;
    return 0;
}

static void drop_key(unsigned char *key, size_t n) {
    if (!key) return;
    /* volatile: the compiler must not drop the wipe of memory about to be freed. */
    volatile unsigned char *v = key;
    for (size_t i = 0; i < n; i++) v[i] = 0;
    mp__free(key);
}

static double deadline_of(double timeout) { return mp__deadline(timeout); }

/* ---- Listener ------------------------------------------------------------------ */

int mp_listener_new(const char *address, const mp_listener_opts *opts, mp_listener **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_listener_new: out is NULL");
    *out = NULL;
    mp_family family = opts ? opts->family : MP_AF_DEFAULT;
    char arb[512];
    if (!address) {
        if (family == MP_AF_DEFAULT) family = default_family();
        int rc = mp_arbitrary_address(family, arb, sizeof arb);
        if (rc) return rc;
        address = arb;
    }
    parsed p;
    int rc = parse_address(address, family, &p, "mp_listener_new");
    if (rc) return rc;
    mp_listener *l = mp__calloc(1, sizeof *l);
    if (!l) return mp__err(MP_ENOMEM, "mp_listener_new: out of memory");
    l->family = p.family;
    rc = take_key(opts, &l->auth, &l->key, &l->keylen);
    if (rc) goto fail;
    l->handshake_timeout =
        opts && opts->handshake_timeout > 0 ? opts->handshake_timeout : DEFAULT_HANDSHAKE_TIMEOUT;
    l->max_pending =
        opts && opts->max_pending > 0 ? (size_t)opts->max_pending : DEFAULT_MAX_PENDING;
    rc = mp__os_mutex_new(&l->mu);
    if (rc) goto fail;
    int backlog = opts && opts->backlog > 0 ? opts->backlog : 1;
    rc = mp__os_net_listen(p.family, p.host, p.port, p.path, backlog, &l->os, &l->address);
    if (rc) goto fail;
    *out = l;
    return 0;
fail:
    drop_key(l->key, l->keylen);
    mp__os_mutex_free(l->mu);
    mp__free(l);
    return rc;
}

/* Hands the peer's address to last_accepted (NULL stays NULL). */
static void set_last_accepted(mp_listener *l, char *peer) {
    mp__free(l->last_accepted);
    l->last_accepted = peer;
}

/* The serial handshake: AF_PIPE (Windows pipes cannot wait in one poll with sockets). */
static int accept_serial(mp_listener *l, double timeout, mp_connection **out) {
    double deadline = mp__deadline(timeout);
    mp_os_handle h;
    int kind;
    char *peer = NULL;
    int rc = mp__os_net_accept(l->os, timeout, &h, &kind, &peer);
    if (rc) return rc;
    set_last_accepted(l, peer);
    if (l->auth) {
        double hd = mp__deadline(l->handshake_timeout);
        if (hd < deadline) deadline = hd;
        /* CPython's order: the listener challenges first, then answers. */
        rc = mp__auth_deliver(h, kind, l->key, l->keylen, deadline);
        if (!rc) rc = mp__auth_answer(h, kind, l->key, l->keylen, deadline);
        if (rc) goto fail;
    }
    rc = mp__connection_from_os_handle(h, kind, true, true, out);
    if (rc) goto fail;
    return 0;
fail:
    mp__err_mute();
    mp__os_net_close(h, kind);
    mp__err_unmute();
    return rc;
}

/* Takes peer i out of the set; closes it unless keep. */
static void pending_remove(mp_listener *l, size_t i, bool keep) {
    pending *p = l->set[i];
    if (!keep) {
        mp__err_mute();
        mp__os_net_close(p->h, p->kind);
        mp__err_unmute();
        mp__free(p->peer);
    }
    mp__free(p);
    memmove(&l->set[i], &l->set[i + 1], (l->n - i - 1) * sizeof *l->set);
    l->n--;
}

static void pending_clear(mp_listener *l) {
    while (l->n) pending_remove(l, l->n - 1, false);
    mp__free(l->set);
    mp__free(l->hs);
    mp__free(l->ready);
    l->set = NULL;
    l->hs = NULL;
    l->ready = NULL;
}

/* Reads what has arrived of p's current message, never past its end (the bytes after
 * the handshake are the connection's): 0 with *n and *full when it is complete. The
 * length is checked as soon as the header is in, as mp__auth_recv_msg does. */
static int pending_read(pending *p, bool *full, size_t *n) {
    *full = false;
    *n = 0;
    for (;;) {
        size_t len =
            (size_t)p->hdr[0] << 24 | (size_t)p->hdr[1] << 16 | (size_t)p->hdr[2] << 8 | p->hdr[3];
        unsigned char *dst;
        size_t want;
        if (p->got < 4) {
            dst = p->hdr + p->got;
            want = 4 - p->got;
        } else {
            dst = p->msg + (p->got - 4);
            want = 4 + len - p->got;
        }
        if (want == 0) {
            *full = true;
            *n = len;
            p->got = 0;
            memset(p->hdr, 0, sizeof p->hdr);
            return 0;
        }
        size_t got;
        int rc = mp__os_net_read_some(p->h, p->kind, dst, want, &got);
        if (rc == MP_EOF && p->got > 0)
            return mp__err(MP_EAUTH, "authentication: peer closed in the middle of a message");
        if (rc || got == 0) return rc;
        p->got += got;
        if (p->got == 4 && (p->hdr[0] & 0x80))
            return mp__err(MP_EAUTH,
                           "authentication: peer announced a message longer than %d "
                           "bytes before authenticating",
                           MP__AUTH_MAX_MESSAGE);
        if (p->got == 4) {
            len = (size_t)p->hdr[0] << 24 | (size_t)p->hdr[1] << 16 | (size_t)p->hdr[2] << 8 |
                  p->hdr[3];
            if (len > MP__AUTH_MAX_MESSAGE)
                return mp__err(MP_EAUTH,
                               "authentication: peer announced a %lu-byte message, more "
                               "than the %d allowed before authenticating",
                               (unsigned long)len, MP__AUTH_MAX_MESSAGE);
        }
    }
}

/* Advances p's handshake with what has arrived (CPython's order: the listener
 * challenges, then answers the peer's challenge): 0 and *done when it succeeded, 0
 * when it waits for more, else the error that ends it. Our messages are a few hundred
 * bytes in all, so they fit in an empty socket buffer: a send never waits, and one
 * that would is a peer to drop. */
static int pending_step(mp_listener *l, pending *p, bool *done) {
    static const char *const k_what[] = {"answering", "challenging", "welcoming"};
    *done = false;
    double now = mp__deadline(0);
    for (;;) {
        bool full;
        size_t n;
        int rc = pending_read(p, &full, &n);
        if (rc == MP_EOF)
            return mp__err(MP_EAUTH, "authentication: peer closed instead of %s", k_what[p->state]);
        if (rc || !full) return rc;
        if (p->state == PA_ANSWER) {
            rc = mp__auth_check_answer(l->key, l->keylen, p->challenge, p->msg, n);
            const void *v;
            size_t vn;
            mp__auth_verdict(rc == 0, &v, &vn);
            if (rc) {
                mp__err_mute();
                mp__auth_send_msg(p->h, p->kind, v, vn, now); /* best effort: we fail anyway */
                mp__err_unmute();
                return MP_EAUTH;
            }
            rc = mp__auth_send_msg(p->h, p->kind, v, vn, now);
            if (rc) return rc;
            p->state = PA_CHALLENGE;
        } else if (p->state == PA_CHALLENGE) {
            unsigned char reply[MP__AUTH_REPLY_MAX];
            size_t rlen;
            rc = mp__auth_make_reply(l->key, l->keylen, p->msg, n, reply, &rlen);
            if (!rc) rc = mp__auth_send_msg(p->h, p->kind, reply, rlen, now);
            if (rc) return rc;
            p->state = PA_WELCOME;
        } else {
            rc = mp__auth_check_welcome(p->msg, n);
            if (!rc) *done = true;
            return rc;
        }
    }
}

/* Takes up to ACCEPT_BATCH waiting peers into the set and challenges them; a full set
 * (or a full descriptor table) drops its oldest peer. */
static int accept_batch(mp_listener *l) {
    for (int k = 0; k < ACCEPT_BATCH; k++) {
        mp_os_handle h;
        int kind;
        char *peer = NULL;
        int rc = mp__os_net_accept(l->os, -1, &h, &kind, &peer);
        if (rc == MP_ETIMEDOUT) return 0;
        if (rc == MP_ELIMIT && l->n) {
            pending_remove(l, 0, false);
            continue;
        }
        if (rc) return rc;
        if (l->n == l->max_pending) pending_remove(l, 0, false);
        pending *p = mp__calloc(1, sizeof *p);
        if (!p) {
            mp__free(peer);
            mp__os_net_close(h, kind);
            return mp__err(MP_ENOMEM, "mp_listener_accept: out of memory");
        }
        p->h = h;
        p->kind = kind;
        p->peer = peer;
        p->state = PA_ANSWER;
        p->deadline = mp__deadline(l->handshake_timeout);
        rc = mp__auth_make_challenge(p->challenge);
        if (rc) {
            mp__free(peer);
            mp__os_net_close(h, kind);
            mp__free(p);
            return rc;
        }
        mp__err_mute();
        rc = mp__auth_send_msg(h, kind, p->challenge, sizeof p->challenge, mp__deadline(0));
        mp__err_unmute();
        if (rc) {
            /* Gone already, or not reading: nothing to tell the caller. */
            mp__free(peer);
            mp__os_net_close(h, kind);
            mp__free(p);
            continue;
        }
        l->set[l->n++] = p;
    }
    return 0;
}

/* The set and poll's scratch, made at the first accept. */
static int pending_alloc(mp_listener *l) {
    l->set = mp__calloc(l->max_pending, sizeof *l->set);
    l->hs = mp__calloc(l->max_pending, sizeof *l->hs);
    l->ready = mp__calloc(l->max_pending, sizeof *l->ready);
    if (l->set && l->hs && l->ready) return 0;
    pending_clear(l);
    return mp__err(MP_ENOMEM, "mp_listener_accept: out of memory");
}

/* One pass over the set, waiting at most until deadline: 0 with *out when a peer
 * finished its handshake, MP_ETIMEDOUT when none did, or the error of the peer that
 * failed (it is closed). */
static int accept_pass(mp_listener *l, double deadline, mp_connection **out) {
    while (l->n && mp__left(l->set[0]->deadline) == 0) pending_remove(l, 0, false);
    /* Peers join in order with the same timeout: the oldest expires first. */
    double wait = deadline;
    if (l->n && l->set[0]->deadline < wait) wait = l->set[0]->deadline;
    for (size_t i = 0; i < l->n; i++) l->hs[i] = l->set[i]->h;
    bool l_ready;
    size_t n = l->n;
    int rc = mp__os_net_poll(l->os, l->hs, n, wait, &l_ready, l->ready);
    if (rc) return rc;
    /* Backwards, so removing peer i leaves the flags of those before it in place. */
    for (size_t i = n; i-- > 0;) {
        if (!l->ready[i]) continue;
        pending *p = l->set[i];
        bool done;
        rc = pending_step(l, p, &done);
        if (done) {
            rc = mp__connection_from_os_handle(p->h, p->kind, true, true, out);
            if (rc) {
                pending_remove(l, i, false);
                return rc;
            }
            set_last_accepted(l, p->peer);
            pending_remove(l, i, true);
            return 0;
        }
        if (rc) {
            set_last_accepted(l, p->peer);
            p->peer = NULL;
            pending_remove(l, i, false);
            return rc;
        }
    }
    if (l_ready) {
        rc = accept_batch(l);
        if (rc) return rc;
    }
    return MP_ETIMEDOUT;
}

int mp_listener_accept(mp_listener *l, double timeout, mp_connection **out) {
    if (out) *out = NULL;
    if (!l || !out) return mp__err(MP_EINVAL, "mp_listener_accept: NULL argument");
    if (!l->os) return mp__err(MP_ECLOSED, "mp_listener_accept: listener is closed");
    if (!l->auth || l->family == MP_AF_PIPE) return accept_serial(l, timeout, out);
    double deadline = mp__deadline(timeout);
    for (;;) {
        double slice = mp__deadline(PASS_SLICE);
        mp__os_mutex_lock(l->mu);
        /* Another thread may have closed l while this one waited for the mutex. */
        int rc = l->os ? 0 : mp__err(MP_ECLOSED, "mp_listener_accept: listener is closed");
        if (!rc && !l->set) rc = pending_alloc(l);
        if (!rc) rc = accept_pass(l, slice < deadline ? slice : deadline, out);
        mp__os_mutex_unlock(l->mu);
        if (rc != MP_ETIMEDOUT) return rc;
        if (mp__left(deadline) == 0)
            return mp__err(MP_ETIMEDOUT, "mp_listener_accept: no client finished its handshake "
                                         "in time");
    }
}

const char *mp_listener_address(const mp_listener *l) { return l ? l->address : NULL; }
const char *mp_listener_last_accepted(const mp_listener *l) { return l ? l->last_accepted : NULL; }
mp_family mp_listener_family(const mp_listener *l) { return l ? l->family : MP_AF_DEFAULT; }

int mp_listener_close(mp_listener *l) {
    if (!l || !l->os) return 0;
    mp__os_mutex_lock(l->mu);
    pending_clear(l);
    mp__os_net_listener_close(l->os);
    l->os = NULL;
    mp__os_mutex_unlock(l->mu);
    return 0;
}

void mp_listener_free(mp_listener *l) {
    if (!l) return;
    mp_listener_close(l);
    mp__os_mutex_free(l->mu);
    drop_key(l->key, l->keylen);
    mp__free(l->address);
    mp__free(l->last_accepted);
    mp__free(l);
}

/* ---- Client -------------------------------------------------------------------- */

int mp_client_connect(const char *address, const mp_listener_opts *opts, double timeout,
                      mp_connection **out) {
    if (out) *out = NULL;
    if (!address || !out) return mp__err(MP_EINVAL, "mp_client_connect: NULL argument");
    double deadline = deadline_of(timeout);
    parsed p;
    int rc = parse_address(address, opts ? opts->family : MP_AF_DEFAULT, &p, "mp_client_connect");
    if (rc) return rc;
    bool auth;
    unsigned char *key;
    size_t keylen;
    rc = take_key(opts, &auth, &key, &keylen);
    if (rc) return rc;
    mp_os_handle h;
    int kind;
    rc = mp__os_net_connect(p.family, p.host, p.port, p.path, deadline, &h, &kind);
    if (rc) goto done;
    if (auth) {
        /* CPython's order: the client answers first, then challenges. */
        rc = mp__auth_answer(h, kind, key, keylen, deadline);
        if (!rc) rc = mp__auth_deliver(h, kind, key, keylen, deadline);
    }
    if (!rc) rc = mp__connection_from_os_handle(h, kind, true, true, out);
    if (rc) {
        mp__err_mute();
        mp__os_net_close(h, kind);
        mp__err_unmute();
    }
done:
    drop_key(key, keylen);
    return rc;
}
