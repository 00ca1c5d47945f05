/* The shared memory tracker (posix): one daemon per user unlinks a named block once
 * every process that tracks it has ended without unlinking it, however it ended.
 *
 * - The daemon is outside the program's process tree (double fork + setsid), so
 *   killing the tree (kill -9 of every process) leaves it running to clean up.
 * - It listens on the abstract unix socket "\0multiproc-tracker-1-<uid>" (nothing on
 *   disk; the name goes with the daemon) and serves only its own uid (SO_PEERCRED,
 *   checked on both ends).
 * - Each process keeps one connection (a forked child opens its own) and registers,
 *   waiting for the answer, each block it creates ('C') or attaches ('A'); unlinking
 *   one says 'D'. A connection that closes (exit, crash, kill -9) drops that process's
 *   registrations; a block left with none is unlinked if a tracking process created
 *   it, nobody unlinked it and the name still leads to that block (device + inode).
 *   A block made by an untracked process or by Python is never unlinked here:
 *   attaching it only keeps our record of users.
 * - The daemon exits when it has had no client for a moment (then it holds no block).
 * - The first process that finds no daemon starts one; two starters race on bind,
 *   the loser (EADDRINUSE) just connects to the winner.
 * - The daemon is a fresh image of the program (exec of /proc/self/exe, entered
 *   from a constructor), so it keeps none of the starter's memory. Until the exec it
 *   is a fork of a program that may have other threads, and if the exec fails it
 *   serves from that copy: so it uses no malloc and no locks, only system calls and
 *   static tables. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/os_shm.h"
#include "posix.h"

enum { OP_CREATED = 'C', OP_ATTACHED = 'A', OP_UNTRACK = 'U', OP_UNLINKED = 'D' };

typedef struct trk_msg {
    uint8_t op;
    uint8_t pad[3];
    int32_t pid; /* for whoever reads a trace; the connection is what counts */
    char name[256];
} trk_msg;

_Static_assert(MP__SHM_NAME_MAX < 256, "name must fit the message");

/* Seconds a client waits for an answer: a stopped daemon is an error, not a hang. */
#define TRK_REPLY_TIMEOUT 10.0
/* Milliseconds the daemon stays without clients, so back-to-back programs share it. */
#define TRK_LINGER_MS 1000

static socklen_t trk_address(struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "multiproc-tracker-1-%lu",
                     (unsigned long)getuid());
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static uid_t peer_uid(int fd) {
    struct ucred c;
    socklen_t n = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &n) != 0) return (uid_t)-1;
    return c.uid;
}

/* ======================= the daemon: static tables only ======================= */

enum { TRK_MAX_CLIENTS = 1024, TRK_MAX_BLOCKS = 4096, TRK_MAX_REGS = 16384 };

typedef struct trk_block {
    char name[256];
    int nreg;
    bool used, owned;
    /* The block the creator made: the name may have been unlinked behind our back (by
     * Python, by rm) and taken by another block, which is not ours to unlink. */
    dev_t dev;
    ino_t ino;
} trk_block;

typedef struct trk_reg {
    int client; /* the connection's fd; -1: free */
    int block;
} trk_reg;

static struct pollfd t_pfd[1 + TRK_MAX_CLIENTS]; /* [0]: the listening socket */
static int t_npfd;
static trk_block t_blocks[TRK_MAX_BLOCKS];
static int t_nblocks; /* high-water mark */
static trk_reg t_regs[TRK_MAX_REGS];
static int t_nregs; /* high-water mark */

static int trk_find(const char *name, bool add) {
    int freeslot = -1;
    for (int i = 0; i < t_nblocks; i++) {
        if (!t_blocks[i].used) {
            if (freeslot < 0) freeslot = i;
        } else if (strcmp(t_blocks[i].name, name) == 0) {
            return i;
        }
    }
    if (!add) return -1;
    if (freeslot < 0) {
        if (t_nblocks == TRK_MAX_BLOCKS) return -1;
        freeslot = t_nblocks++;
    }
    trk_block *b = &t_blocks[freeslot];
    memcpy(b->name, name, sizeof b->name);
    b->nreg = 0;
    b->owned = false;
    b->used = true;
    return freeslot;
}

/* The identity of the block named name now; false when there is none. */
static bool trk_identity(const char *name, dev_t *dev, ino_t *ino) {
    char path[258];
    path[0] = '/';
    memcpy(path + 1, name, strlen(name) + 1);
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return false;
    struct stat st;
    bool ok = fstat(fd, &st) == 0;
    close(fd);
    *dev = st.st_dev;
    *ino = st.st_ino;
    return ok;
}

static void trk_drop_block(int bi, bool unlink_it) {
    trk_block *b = &t_blocks[bi];
    dev_t dev;
    ino_t ino;
    if (unlink_it && b->owned && trk_identity(b->name, &dev, &ino) && dev == b->dev && ino == b->ino) {
        char path[sizeof b->name + 1];
        path[0] = '/';
        memcpy(path + 1, b->name, sizeof b->name);
        shm_unlink(path);
    }
    for (int i = 0; i < t_nregs; i++)
        if (t_regs[i].client >= 0 && t_regs[i].block == bi) t_regs[i].client = -1;
    b->used = false;
}

static int trk_reg_find(int client, int bi) {
    for (int i = 0; i < t_nregs; i++)
        if (t_regs[i].client == client && t_regs[i].block == bi) return i;
    return -1;
}

static int trk_register(int client, const char *name, bool created) {
    int bi = trk_find(name, true);
    if (bi < 0) return -1;
    /* Called once the block exists: this is the one the creator made. */
    if (created) t_blocks[bi].owned = trk_identity(name, &t_blocks[bi].dev, &t_blocks[bi].ino);
    if (trk_reg_find(client, bi) >= 0) return 0;
    int ri = -1;
    for (int i = 0; i < t_nregs && ri < 0; i++)
        if (t_regs[i].client < 0) ri = i;
    if (ri < 0) {
        if (t_nregs == TRK_MAX_REGS) {
            if (t_blocks[bi].nreg == 0) t_blocks[bi].used = false;
            return -1;
        }
        ri = t_nregs++;
    }
    t_regs[ri].client = client;
    t_regs[ri].block = bi;
    t_blocks[bi].nreg++;
    return 0;
}

static void trk_unregister(int client, int bi, bool unlink_orphan) {
    int ri = trk_reg_find(client, bi);
    if (ri < 0) return;
    t_regs[ri].client = -1;
    if (--t_blocks[bi].nreg == 0) trk_drop_block(bi, unlink_orphan);
}

static void trk_client_gone(int client) {
    for (int i = 0; i < t_nregs; i++)
        if (t_regs[i].client == client) trk_unregister(client, t_regs[i].block, true);
    close(client);
}

static int32_t trk_handle(int client, trk_msg *m) {
    m->name[sizeof m->name - 1] = '\0';
    int bi;
    switch (m->op) {
    case OP_CREATED:
    case OP_ATTACHED: return trk_register(client, m->name, m->op == OP_CREATED);
    case OP_UNTRACK:
        if ((bi = trk_find(m->name, false)) >= 0) trk_unregister(client, bi, false);
        return 0;
    case OP_UNLINKED:
        if ((bi = trk_find(m->name, false)) >= 0) trk_drop_block(bi, false);
        return 0;
    default: return -1;
    }
}

static void trk_accept(int lfd) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return;
    if (peer_uid(fd) != getuid() || t_npfd == 1 + TRK_MAX_CLIENTS) {
        close(fd);
        return;
    }
    t_pfd[t_npfd].fd = fd;
    t_pfd[t_npfd].events = POLLIN;
    t_pfd[t_npfd].revents = 0;
    t_npfd++;
}

static void trk_daemon_main(int lfd) {
    /* Keep nothing of the program: no terminal, no pipes a parent waits on (ctest
     * waits for the end of the test's stdout), no directory kept busy. */
    int keep = lfd;
    if (keep < 3) {
        keep = fcntl(lfd, F_DUPFD_CLOEXEC, 3);
        if (keep < 0) _exit(1);
    }
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u);
    syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u);
    lfd = keep;
    if (chdir("/") != 0) {}
    /* What ps shows instead of the program's name: it is not one of the program's. */
    prctl(PR_SET_NAME, "mp-shm-tracker", 0, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    t_pfd[0].fd = lfd;
    t_pfd[0].events = POLLIN;
    t_npfd = 1;
    for (int i = 0; i < TRK_MAX_REGS; i++) t_regs[i].client = -1;
    for (;;) {
        int r = poll(t_pfd, (nfds_t)t_npfd, t_npfd == 1 ? TRK_LINGER_MS : -1);
        if (r < 0 && errno != EINTR) break;
        if (r == 0 && t_npfd == 1) break; /* nobody for a while: go */
        if (r <= 0) continue;
        for (int i = t_npfd - 1; i >= 1; i--) {
            if (!t_pfd[i].revents) continue;
            int fd = t_pfd[i].fd;
            trk_msg m;
            ssize_t n = (t_pfd[i].revents & POLLIN) ? recv(fd, &m, sizeof m, MSG_DONTWAIT) : 0;
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n == (ssize_t)sizeof m) {
                int32_t status = trk_handle(fd, &m);
                /* Never blocks: a client that does not read its answers is treated as gone. */
                if (send(fd, &status, sizeof status, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof status)
                    continue;
            }
            /* End of file, an error or a malformed message: the process is done. */
            trk_client_gone(fd);
            t_pfd[i] = t_pfd[--t_npfd];
        }
        if (t_pfd[0].revents & POLLIN) trk_accept(lfd);
    }
    /* No clients means no registrations left. Closing releases the name at once. */
    close(lfd);
    _exit(0);
}

/* The daemon runs in a fresh image of this program: a forked copy would keep every
 * page of the process that started it (its heap copy-on-write, its shared mappings,
 * blocks that were unlinked since among them) for as long as it runs. The image is
 * /proc/self/exe; when this code lives in a shared library (a program that loads it
 * with dlopen), the library is preloaded into it. Either way its constructor below
 * finds the listening socket's number in the environment and never returns. */
#define TRK_ENV "MP__SHM_TRACKER_FD"

__attribute__((constructor)) static void trk_exec_entry(void) {
    const char *v = getenv(TRK_ENV);
    if (!v) return;
    int fd = 0;
    for (; *v >= '0' && *v <= '9' && fd < 1000000; v++) fd = fd * 10 + (*v - '0');
    trk_daemon_main(fd);
}

/* The environment for the daemon's image, made before forking (no malloc after). */
typedef struct trk_exec {
    char fd_var[32];
    char preload[PATH_MAX + 16];
    char *envp[3];
} trk_exec;

static void trk_exec_prepare(trk_exec *x) {
    memset(x, 0, sizeof *x);
    memcpy(x->fd_var, TRK_ENV "=", strlen(TRK_ENV "="));
    x->envp[0] = x->fd_var;
    Dl_info info;
    /* Ours is the main program when its ELF header is where the program's is. */
    if (dladdr((void *)trk_exec_entry, &info) && info.dli_fname && info.dli_fname[0] &&
        (uintptr_t)getauxval(AT_PHDR) - (uintptr_t)info.dli_fbase >= 4096) {
        snprintf(x->preload, sizeof x->preload, "LD_PRELOAD=%s", info.dli_fname);
        x->envp[1] = x->preload;
    }
}

static void trk_exec_daemon(trk_exec *x, int lfd) {
    /* Standard streams on /dev/null already here: should the image not reach our
     * constructor (a preload refused), the program it runs must not read our input. */
    if (lfd < 3 && (lfd = fcntl(lfd, F_DUPFD_CLOEXEC, 3)) < 0) _exit(1);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
    }
    /* No snprintf after fork: digits by hand behind the prefix prepared before. */
    char digits[12];
    int nd = 0;
    for (unsigned v = (unsigned)lfd; nd == 0 || v; v /= 10) digits[nd++] = (char)('0' + v % 10);
    char *p = x->fd_var + strlen(TRK_ENV "=");
    while (nd) *p++ = digits[--nd];
    *p = '\0';
    if (fcntl(lfd, F_SETFD, 0) == 0) {
        char *argv[] = {(char *)"mp-shm-tracker", NULL};
        execve("/proc/self/exe", argv, x->envp);
    }
    /* No image to run (no /proc?): serve from this copy, at the price above. */
    fcntl(lfd, F_SETFD, FD_CLOEXEC);
    trk_daemon_main(lfd);
}

/* Forks the daemon's parent, which binds and listens before it forks the daemon and
 * exits: once we have reaped it, a daemon listens (ours or one that won the race). */
static int trk_start(const struct sockaddr_un *addr, socklen_t alen) {
    trk_exec x;
    trk_exec_prepare(&x);
    pid_t p = fork();
    if (p < 0) return mp__os_err("shared memory tracker: fork");
    if (p == 0) {
        setsid();
        int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (lfd < 0) _exit(1);
        if (bind(lfd, (const struct sockaddr *)addr, alen) != 0) _exit(errno == EADDRINUSE ? 0 : 1);
        if (listen(lfd, 128) != 0) _exit(1);
        pid_t d = fork();
        if (d == 0) trk_exec_daemon(&x, lfd);
        _exit(d < 0 ? 1 : 0);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    return 0;
}

/* ======================= the client side ======================= */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* g_fd and its exchanges */
static int g_fd = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void trk_atfork_prepare(void) { pthread_mutex_lock(&g_mu); }
static void trk_atfork_parent(void) { pthread_mutex_unlock(&g_mu); }
/* A forked child is a process of its own: it must not speak on its parent's
 * connection, nor keep the parent registered after the parent has gone. */
static void trk_atfork_child(void) {
    if (g_fd >= 0) close(g_fd);
    g_fd = -1;
    pthread_mutex_unlock(&g_mu);
}
static void trk_atfork_register(void) {
    pthread_atfork(trk_atfork_prepare, trk_atfork_parent, trk_atfork_child);
}

static int trk_connect(int *out) {
    struct sockaddr_un addr;
    socklen_t alen = trk_address(&addr);
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0) return mp__os_err("shared memory tracker: socket");
        if (connect(fd, (const struct sockaddr *)&addr, alen) == 0) {
            uid_t u = peer_uid(fd);
            if (u != getuid()) {
                close(fd);
                return mp__err(MP_EPERM, "shared memory tracker: its socket belongs to uid %ld",
                               (long)u);
            }
            *out = fd;
            return 0;
        }
        int e = errno;
        close(fd);
        if (e == EAGAIN || e == EINTR) {
            mp__os_sleep(0.01); /* backlog full */
        } else if (e == ECONNREFUSED || e == ENOENT) {
            int rc = trk_start(&addr, alen);
            if (rc) return rc;
        } else {
            errno = e;
            return mp__os_err("shared memory tracker: connect");
        }
    }
    return mp__err(MP_EIO, "shared memory tracker: cannot reach or start it");
}

/* One exchange on fd, under g_mu: 0 and *status, or an error (the connection is bad). */
static int trk_exchange(int fd, const trk_msg *m, int32_t *status) {
    if (send(fd, m, sizeof *m, MSG_NOSIGNAL) != (ssize_t)sizeof *m) return MP_EPIPE;
    int rc = mp__posix_poll_in(fd, TRK_REPLY_TIMEOUT);
    if (rc) return rc;
    ssize_t n;
    while ((n = recv(fd, status, sizeof *status, 0)) < 0 && errno == EINTR) {}
    return n == (ssize_t)sizeof *status ? 0 : MP_EPIPE;
}

static int trk_request(int op, const char *name, bool may_start) {
    pthread_once(&g_once, trk_atfork_register);
    trk_msg m;
    memset(&m, 0, sizeof m);
    m.op = (uint8_t)op;
    m.pid = (int32_t)getpid();
    snprintf(m.name, sizeof m.name, "%s", name);
    int rc = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        pthread_mutex_lock(&g_mu);
        bool have = g_fd >= 0;
        pthread_mutex_unlock(&g_mu);
        if (!have) {
            if (!may_start) return 0;
            /* Not under g_mu: starting forks, and fork's handlers take g_mu. */
            int fd = -1;
            if ((rc = trk_connect(&fd)) != 0) return rc;
            pthread_mutex_lock(&g_mu);
            if (g_fd < 0)
                g_fd = fd;
            else
                close(fd);
            pthread_mutex_unlock(&g_mu);
        }
        int32_t status = 0;
        pthread_mutex_lock(&g_mu);
        rc = g_fd < 0 ? MP_EPIPE : trk_exchange(g_fd, &m, &status);
        if (rc && g_fd >= 0) {
            /* A daemon that was just leaving, or one that was killed: the next try
             * finds or starts a live one. */
            close(g_fd);
            g_fd = -1;
        }
        pthread_mutex_unlock(&g_mu);
        if (rc == MP_ETIMEDOUT)
            return mp__err(rc, "shared memory tracker: no answer within %.0f s", TRK_REPLY_TIMEOUT);
        if (rc) continue;
        if (status != 0)
            return mp__err(MP_EFULL, "shared memory tracker: its tables are full");
        return 0;
    }
    return mp__err(MP_EIO, "shared memory tracker: the connection keeps failing");
}

int mp__os_shm_track(const char *name, bool created) {
    return trk_request(created ? OP_CREATED : OP_ATTACHED, name, true);
}

void mp__os_shm_untrack(const char *name) { trk_request(OP_UNTRACK, name, false); }

void mp__os_shm_unlinked(const char *name, bool tracked) {
    int rc = trk_request(OP_UNLINKED, name, tracked);
    (void)rc; /* the name is gone either way; a stale record costs an ENOENT later */
}
