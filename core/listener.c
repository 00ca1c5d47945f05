/* Listener and Client (CPython's multiprocessing.connection): addresses, families, and
 * the handshake run on the raw handle before it becomes a connection, so a deadline
 * bounds every byte of it and an unauthenticated peer never reaches the connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "os_net.h"

struct mp_listener {
    mp_family family;
    mp__os_listener *os;
    char *address;
    char *last_accepted;
    bool auth;
    unsigned char *key;
    size_t keylen;
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
    int backlog = opts && opts->backlog > 0 ? opts->backlog : 1;
    rc = mp__os_net_listen(p.family, p.host, p.port, p.path, backlog, &l->os, &l->address);
    if (rc) goto fail;
    *out = l;
    return 0;
fail:
    drop_key(l->key, l->keylen);
    mp__free(l);
    return rc;
}

int mp_listener_accept(mp_listener *l, double timeout, mp_connection **out) {
    if (out) *out = NULL;
    if (!l || !out) return mp__err(MP_EINVAL, "mp_listener_accept: NULL argument");
    if (!l->os) return mp__err(MP_ECLOSED, "mp_listener_accept: listener is closed");
    double deadline = deadline_of(timeout);
    mp_os_handle h;
    int kind;
    char *peer = NULL;
    int rc = mp__os_net_accept(l->os, timeout, &h, &kind, &peer);
    if (rc) return rc;
    mp__free(l->last_accepted);
    l->last_accepted = peer;
    if (l->auth) {
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

const char *mp_listener_address(const mp_listener *l) { return l ? l->address : NULL; }
const char *mp_listener_last_accepted(const mp_listener *l) { return l ? l->last_accepted : NULL; }
mp_family mp_listener_family(const mp_listener *l) { return l ? l->family : MP_AF_DEFAULT; }

int mp_listener_close(mp_listener *l) {
    if (!l || !l->os) return 0;
    mp__os_net_listener_close(l->os);
    l->os = NULL;
    return 0;
}

void mp_listener_free(mp_listener *l) {
    if (!l) return;
    mp_listener_close(l);
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
