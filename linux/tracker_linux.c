/* The shared memory tracker's client (overview: tracker_proto_linux.h): the connection of
 * this process to the daemon, its requests and answers, and the blocks it tracks, to
 * register again with a daemon that replaced one that went away. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "linux.h"
#include "tracker_proto_linux.h"

/* Seconds a client waits for an answer: a stopped daemon is an error, not a hang.
 * A variable so a test can make answers late without stopping a shared daemon. */
double mp__shm_tracker_reply_timeout = 10.0;

static socklen_t trk_address(struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    struct stat st;
    if (stat("/dev/shm", &st) != 0) memset(&st, 0, sizeof st);
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "multiproc-tracker-2-%lu-%llx-%llx",
                     (unsigned long)geteuid(), (unsigned long long)st.st_dev,
                     (unsigned long long)st.st_ino);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* A block this process tracks, to register again with a daemon that replaced one
 * that went away. */
typedef struct trk_ent {
    char name[256];
    bool created;
    uint64_t dev, ino;
} trk_ent;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* everything below */
static int g_fd = -1;
static unsigned g_pending; /* answers still owed on g_fd for requests that timed out */
static trk_ent *g_ents;
static size_t g_nents, g_cap;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void trk_atfork_prepare(void) { pthread_mutex_lock(&g_mu); }
static void trk_atfork_parent(void) { pthread_mutex_unlock(&g_mu); }
/* A forked child is a process of its own: it must not speak on its parent's
 * connection, nor keep the parent registered after the parent has gone. */
static void trk_atfork_child(void) {
    if (g_fd >= 0) close(g_fd);
    g_fd = -1;
    g_pending = 0;
    g_nents = 0;
    pthread_mutex_unlock(&g_mu);
}
static void trk_atfork_register(void) {
    pthread_atfork(trk_atfork_prepare, trk_atfork_parent, trk_atfork_child);
}

static trk_ent *trk_ent_find(const char *name) {
    for (size_t i = 0; i < g_nents; i++)
        if (strcmp(g_ents[i].name, name) == 0) return &g_ents[i];
    return NULL;
}

static void trk_ent_add(const trk_msg *m) {
    trk_ent *e = trk_ent_find(m->name);
    if (!e) {
        if (g_nents == g_cap) {
            size_t cap = g_cap ? g_cap * 2 : 16;
            trk_ent *n = realloc(g_ents, cap * sizeof *n);
            if (!n) return; /* only a re-registration after a daemon restart is lost */
            g_ents = n;
            g_cap = cap;
        }
        e = &g_ents[g_nents++];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", m->name);
    }
    if (m->op == OP_CREATED) {
        e->created = true;
        e->dev = m->dev;
        e->ino = m->ino;
    }
}

static void trk_ent_remove(const char *name) {
    trk_ent *e = trk_ent_find(name);
    if (e) *e = g_ents[--g_nents];
}

static int trk_connect(int *out) {
    struct sockaddr_un addr;
    socklen_t alen = trk_address(&addr);
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0) return mp__os_err("shared memory tracker: socket");
        /* A unix connect waits for backlog room up to the send timeout: a stopped
         * daemon is an error, not a hang. */
        double t = mp__shm_tracker_reply_timeout;
        struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
        if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (const struct sockaddr *)&addr, alen) == 0) {
            uid_t u = peer_uid(fd);
            if (u != geteuid()) {
                close(fd);
                return mp__err(MP_EPERM,
                               "shared memory tracker: its socket name is held by uid %ld, "
                               "not by this user: tracking is impossible here (pass untracked)",
                               (long)u);
            }
            *out = fd;
            return 0;
        }
        int e = errno;
        close(fd);
        if (e == EINTR) {
            mp__os_sleep(0.01);
        } else if (e == EAGAIN || e == EWOULDBLOCK || e == EINPROGRESS) {
            return mp__err(MP_ETIMEDOUT, "shared memory tracker: its backlog stayed full");
        } else if (e == ECONNREFUSED || e == ENOENT) {
            int rc = mp__tracker_start(&addr, alen);
            if (rc) return rc;
        } else {
            errno = e;
            return mp__os_err("shared memory tracker: connect");
        }
    }
    return mp__err(MP_EIO, "shared memory tracker: cannot reach or start it");
}

/* One exchange on g_fd, under g_mu: 0 and *status, MP_ETIMEDOUT (the connection stays:
 * the answer is owed and will be skipped), or MP_EPIPE (the daemon has gone). */
static int trk_exchange(const trk_msg *m, int32_t *status) {
    if (send(g_fd, m, sizeof *m, MSG_NOSIGNAL) != (ssize_t)sizeof *m) {
        /* A daemon with full tables answers a new connection and closes it. */
        if (g_pending == 0 &&
            recv(g_fd, status, sizeof *status, MSG_DONTWAIT) == (ssize_t)sizeof *status &&
            *status == TRK_FULL)
            return 0;
        return MP_EPIPE;
    }
    double deadline = mp__os_monotonic() + mp__shm_tracker_reply_timeout;
    for (;;) {
        double left = deadline - mp__os_monotonic();
        int rc = mp__linux_poll_in(g_fd, left > 0 ? left : 0);
        if (rc == MP_ETIMEDOUT) {
            g_pending++;
            return MP_ETIMEDOUT;
        }
        if (rc) return MP_EPIPE;
        ssize_t n;
        while ((n = recv(g_fd, status, sizeof *status, 0)) < 0 && errno == EINTR) {}
        if (n != (ssize_t)sizeof *status) return MP_EPIPE;
        if (g_pending > 0) {
            g_pending--; /* a late answer to an earlier request */
            continue;
        }
        return 0;
    }
}

static void trk_disconnect(void) {
    if (g_fd >= 0) close(g_fd);
    g_fd = -1;
    g_pending = 0;
}

/* Under g_mu, connected afresh: registers every block this process tracks. */
static int trk_reregister(void) {
    for (size_t i = 0; i < g_nents; i++) {
        trk_msg m;
        memset(&m, 0, sizeof m);
        m.op = g_ents[i].created ? OP_CREATED : OP_ATTACHED;
        m.pid = (int32_t)getpid();
        m.dev = g_ents[i].dev;
        m.ino = g_ents[i].ino;
        snprintf(m.name, sizeof m.name, "%s", g_ents[i].name);
        int32_t status = 0;
        int rc = trk_exchange(&m, &status);
        if (rc == MP_EPIPE) return rc;
        /* Timed out: owed and skipped later; full: nothing better to do. */
    }
    return 0;
}

/* The identity of the block as this process sees it (0 and 0 when it cannot tell). */
static void trk_client_identity(trk_msg *m) {
    char path[258];
    path[0] = '/';
    memcpy(path + 1, m->name, strlen(m->name) + 1);
    int fd = shm_open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        m->dev = (uint64_t)st.st_dev;
        m->ino = (uint64_t)st.st_ino;
    }
    close(fd);
}

/* One request, under g_mu. The connection is made without g_mu: starting a daemon
 * forks, and the fork handlers take g_mu. */
static int trk_request_locked(trk_msg *m, bool may_start) {
    int rc = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (g_fd < 0) {
            if (!may_start) return 0;
            int fd = -1;
            pthread_mutex_unlock(&g_mu);
            rc = trk_connect(&fd);
            pthread_mutex_lock(&g_mu);
            if (rc) return rc;
            if (g_fd >= 0) {
                close(fd);
            } else {
                g_fd = fd;
                g_pending = 0;
                if (trk_reregister() != 0) {
                    trk_disconnect();
                    continue;
                }
            }
        }
        int32_t status = 0;
        rc = trk_exchange(m, &status);
        if (rc == MP_EPIPE) {
            /* The daemon has gone (killed, or it was just leaving): the next try
             * finds or starts a live one and tells it what we track. A name it never
             * knew needs no 'U' or 'D'. */
            trk_disconnect();
            if (m->op == OP_UNLINKED || m->op == OP_UNTRACK) return 0;
            continue;
        }
        if (rc == MP_ETIMEDOUT) {
            /* The daemon will act on it when it gets to it. */
            if (m->op == OP_CREATED || m->op == OP_ATTACHED) trk_ent_add(m);
            return mp__err(rc, "shared memory tracker: no answer within %.3g s",
                           mp__shm_tracker_reply_timeout);
        }
        if (status != 0) {
            if (g_nents == 0 && g_pending == 0) trk_disconnect();
            return mp__err(MP_EFULL, "shared memory tracker: its tables are full");
        }
        if (m->op == OP_CREATED || m->op == OP_ATTACHED) trk_ent_add(m);
        return 0;
    }
    return mp__err(MP_EIO, "shared memory tracker: the connection keeps failing");
}

static int trk_request(int op, const char *name, bool may_start) {
    pthread_once(&g_once, trk_atfork_register);
    trk_msg m;
    memset(&m, 0, sizeof m);
    m.op = (uint8_t)op;
    m.pid = (int32_t)getpid();
    snprintf(m.name, sizeof m.name, "%s", name);
    if (op == OP_CREATED || op == OP_ATTACHED) trk_client_identity(&m);
    /* No cancellation point may act inside: g_mu must never be left held, nor a
     * request half sent. */
    int oldstate;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &oldstate);
    pthread_mutex_lock(&g_mu);
    if (op == OP_UNLINKED || op == OP_UNTRACK) {
        trk_ent *e = trk_ent_find(name);
        if (e && op == OP_UNLINKED && e->created) {
            m.dev = e->dev;
            m.ino = e->ino;
        }
        trk_ent_remove(name);
    }
    int rc = trk_request_locked(&m, may_start);
    pthread_mutex_unlock(&g_mu);
    pthread_setcancelstate(oldstate, NULL);
    return rc;
}

int mp__os_shm_track(const char *name, bool created) {
    if (trk_secure())
        return mp__err(MP_EPERM,
                       "shared memory: a setuid/setgid program cannot track blocks (the "
                       "tracker would act with its privileges): pass untracked and unlink "
                       "the block yourself");
    return trk_request(created ? OP_CREATED : OP_ATTACHED, name, true);
}

void mp__os_shm_untrack(const char *name) {
    if (!trk_secure()) trk_request(OP_UNTRACK, name, false);
}

void mp__os_shm_unlinked(const char *name, bool tracked) {
    if (trk_secure()) return;
    int rc = trk_request(OP_UNLINKED, name, tracked);
    (void)rc; /* the name is gone either way; a stale record costs an ENOENT later */
}

void mp__os_shm_each_left(void (*fn)(void *ctx, const char *name), void *ctx) {
    pthread_mutex_lock(&g_mu);
    size_t n = 0;
    for (size_t i = 0; i < g_nents; i++) n += g_ents[i].created;
    /* A copy: fn runs without the lock (it may log, and a log hook may do anything). */
    char(*names)[sizeof g_ents[0].name] = n ? malloc(n * sizeof *names) : NULL;
    size_t k = 0;
    for (size_t i = 0; names && i < g_nents; i++)
        if (g_ents[i].created) memcpy(names[k++], g_ents[i].name, sizeof names[0]);
    pthread_mutex_unlock(&g_mu);
    for (size_t i = 0; i < k; i++) fn(ctx, names[i]);
    free(names);
}
