/* The shared memory tracker (posix): one daemon per user unlinks a named block once
 * every process that tracks it has ended without unlinking it, however it ended.
 *
 * - The daemon is outside the program's process tree (double fork + setsid), so
 *   killing the tree (kill -9 of every process) leaves it running to clean up.
 * - It listens on the abstract unix socket "\0multiproc-tracker-2-<euid>-<dev>-<ino>"
 *   (nothing on disk; the name goes with the daemon), <dev>/<ino> naming the /dev/shm
 *   its starter sees: containers that share a network namespace but not their mounts
 *   get one daemon per /dev/shm. It serves only its own euid (SO_PEERCRED, checked on
 *   both ends).
 * - Each process keeps one connection (a forked child opens its own) and registers,
 *   waiting for the answer, each block it creates ('C') or attaches ('A'); unlinking
 *   one says 'D'. Each message carries the block's device + inode as the client sees
 *   it. A connection that closes (exit, crash, kill -9) drops that process's
 *   registrations; a block left with none is unlinked if a tracking process created
 *   it, nobody unlinked it and the name, seen by the daemon, still leads to that block
 *   (device + inode, a regular file of the daemon's euid).
 *   A block made by an untracked process or by Python is never unlinked here:
 *   attaching it only keeps our record of users.
 * - The connection is dropped only when the daemon has gone (end of file, an error),
 *   never because an answer is late: closing it would tell the daemon this process
 *   ended. Late answers are counted and skipped. After the daemon has gone, the next
 *   request connects to (or starts) a new one and registers again every block this
 *   process still tracks (a client-side list).
 * - The daemon exits when it has had no client for a moment (then it holds no block).
 * - The first process that finds no daemon starts one; two starters race on bind,
 *   the loser (EADDRINUSE) just connects to the winner.
 * - The daemon is a fresh image of the program (exec of /proc/self/exe, entered from a
 *   constructor) when that is certain to reach the constructor: this code is in the
 *   main program and /proc/self/exe is the file it was mapped from (not a program run
 *   through ld.so, not a library). Otherwise, or if the exec fails, it serves from
 *   the forked copy: so it uses no malloc and no locks, only system calls and static
 *   tables.
 * - A setuid/setgid program never starts nor uses a daemon (its euid is not its
 *   user's): tracked blocks are refused there (MP_EPERM). */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/os_shm.h"
#include "linux.h"

enum { OP_CREATED = 'C', OP_ATTACHED = 'A', OP_UNTRACK = 'U', OP_UNLINKED = 'D' };
/* Answers: 0 done; TRK_FULL its tables are full. */
enum { TRK_FULL = 1 };

typedef struct trk_msg {
    uint8_t op;
    uint8_t pad[3];
    int32_t pid;  /* for whoever reads a trace; the connection is what counts */
    uint64_t dev; /* the block as the client sees it; 0 and 0: unknown */
    uint64_t ino;
    char name[256];
} trk_msg;

_Static_assert(MP__SHM_NAME_MAX < 256, "name must fit the message");

/* Seconds a client waits for an answer: a stopped daemon is an error, not a hang.
 * A variable so a test can make answers late without stopping a shared daemon. */
double mp__shm_tracker_reply_timeout = 10.0;
/* Milliseconds the daemon stays without clients, so back-to-back programs share it. */
#define TRK_LINGER_MS 1000

/* setuid/setgid: the daemon would run with another user's rights for this user. */
static bool trk_secure(void) {
    return getauxval(AT_SECURE) != 0 || getuid() != geteuid() || getgid() != getegid();
}

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

static uid_t peer_uid(int fd) {
    struct ucred c;
    socklen_t n = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &n) != 0) return (uid_t)-1;
    return c.uid;
}

/* The identity of the block named name now (a regular file of ours): false if none. */
static bool trk_identity(const char *name, uint64_t *dev, uint64_t *ino) {
    char path[258];
    path[0] = '/';
    memcpy(path + 1, name, strlen(name) + 1);
    /* O_NONBLOCK: a fifo planted under the name must not block the daemon. */
    int fd = shm_open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) return false;
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid();
    close(fd);
    if (!ok) return false;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return true;
}

/* ======================= the daemon: static tables only ======================= */

enum { TRK_MAX_CLIENTS = 1024, TRK_MAX_BLOCKS = 4096, TRK_MAX_REGS = 16384 };

typedef struct trk_block {
    char name[256];
    int nreg;
    bool used, owned;
    /* The block the creator made: the name may have been unlinked behind our back (by
     * Python, by rm) and taken by another block, which is not ours to unlink. */
    uint64_t dev, ino;
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

static void trk_drop_block(int bi, bool unlink_it) {
    trk_block *b = &t_blocks[bi];
    uint64_t dev, ino;
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

static int trk_register(int client, const trk_msg *m) {
    int bi = trk_find(m->name, true);
    if (bi < 0) return TRK_FULL;
    if (m->op == OP_CREATED) {
        /* Ours to unlink only if the daemon's view of the name is the block the
         * creator made (another mount namespace has another /dev/shm). */
        trk_block *b = &t_blocks[bi];
        uint64_t dev, ino;
        b->owned = (m->dev || m->ino) && trk_identity(m->name, &dev, &ino) && dev == m->dev &&
                   ino == m->ino;
        b->dev = m->dev;
        b->ino = m->ino;
    }
    if (trk_reg_find(client, bi) >= 0) return 0;
    int ri = -1;
    for (int i = 0; i < t_nregs && ri < 0; i++)
        if (t_regs[i].client < 0) ri = i;
    if (ri < 0) {
        if (t_nregs == TRK_MAX_REGS) {
            if (t_blocks[bi].nreg == 0) t_blocks[bi].used = false;
            return TRK_FULL;
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
    case OP_ATTACHED: return trk_register(client, m);
    case OP_UNTRACK:
        if ((bi = trk_find(m->name, false)) >= 0) trk_unregister(client, bi, false);
        return 0;
    case OP_UNLINKED:
        /* A late 'D' for an older block of that name must not drop a newer one. */
        if ((bi = trk_find(m->name, false)) >= 0 &&
            (!(m->dev || m->ino) || !t_blocks[bi].owned ||
             (t_blocks[bi].dev == m->dev && t_blocks[bi].ino == m->ino)))
            trk_drop_block(bi, false);
        return 0;
    default: return -1;
    }
}

/* false: accept failed for want of descriptors; stop polling the listener until a
 * client leaves (it would stay readable: a busy loop). */
static bool trk_accept(int lfd) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return !(errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM);
    if (peer_uid(fd) != geteuid()) {
        close(fd);
        return true;
    }
    if (t_npfd == 1 + TRK_MAX_CLIENTS) {
        /* Say why before closing: the client reports MP_EFULL, not a broken link. */
        int32_t full = TRK_FULL;
        send(fd, &full, sizeof full, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        return true;
    }
    t_pfd[t_npfd].fd = fd;
    t_pfd[t_npfd].events = POLLIN;
    t_pfd[t_npfd].revents = 0;
    t_npfd++;
    return true;
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
    /* A connection per process: as many descriptors as we are allowed. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

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
            t_pfd[0].events = POLLIN; /* a descriptor is free again */
        }
        if ((t_pfd[0].revents & POLLIN) && !trk_accept(lfd)) t_pfd[0].events = 0;
    }
    /* No clients means no registrations left. Closing releases the name at once. */
    close(lfd);
    _exit(0);
}

/* The daemon runs in a fresh image of this program when it can: a forked copy would
 * keep every page of the process that started it (its heap copy-on-write, its shared
 * mappings, blocks that were unlinked since among them) for as long as it runs. The
 * image's constructor below finds "<pid>:<fd>" in the environment (pid: the process
 * that exec'd, which the image still is; fd: the listening socket) and never returns.
 * Anything else there (inherited by another program, forged) is removed and ignored. */
#define TRK_ENV "MP__SHM_TRACKER_FD"

static long trk_parse_num(const char **v) {
    long x = -1;
    for (; **v >= '0' && **v <= '9' && x < 100000000; (*v)++) x = (x < 0 ? 0 : x * 10) + (**v - '0');
    return x;
}

__attribute__((constructor)) static void trk_exec_entry(void) {
    const char *v = getenv(TRK_ENV);
    if (!v) return;
    long pid = trk_parse_num(&v);
    long fd = *v == ':' ? (v++, trk_parse_num(&v)) : -1;
    bool whole = *v == '\0';
    unsetenv(TRK_ENV);
    if (!whole || pid != (long)getpid() || fd < 0 || fd > INT_MAX || trk_secure()) return;
    int on = 0, dom = 0;
    socklen_t n = sizeof on, dn = sizeof dom;
    if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &n) != 0 || !on ||
        getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &dom, &dn) != 0 || dom != AF_UNIX)
        return;
    trk_daemon_main((int)fd);
}

/* The environment for the daemon's image, made before forking (no malloc after). */
typedef struct trk_exec {
    bool can_exec;
    char fd_var[64];
    char *envp[2];
} trk_exec;

/* The device and inode of the file the mapping at addr comes from (/proc/self/maps). */
static bool trk_mapped_from(uintptr_t addr, unsigned *maj, unsigned *min, unsigned long *ino) {
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return false;
    char line[PATH_MAX + 128];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, in;
        unsigned ma, mi;
        char perm[8];
        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perm, &off, &ma, &mi, &in) == 7 &&
            addr >= lo && addr < hi) {
            *maj = ma;
            *min = mi;
            *ino = in;
            found = in != 0;
        }
    }
    fclose(f);
    return found;
}

static void trk_exec_prepare(trk_exec *x) {
    memset(x, 0, sizeof *x);
    x->envp[0] = x->fd_var;
    Dl_info info;
    /* Only when the image certainly runs our constructor: we are the main program
     * (our ELF header is where the program's is) and /proc/self/exe is our file, not
     * ld.so running the program. A library would need LD_PRELOAD, which can fail
     * (path with ':' or ' ', relative path, deleted file) and then the user's main()
     * would run as the daemon. */
    if (!dladdr((void *)trk_exec_entry, &info) ||
        (uintptr_t)getauxval(AT_PHDR) - (uintptr_t)info.dli_fbase >= 4096)
        return;
    unsigned ma, mi;
    unsigned long ino;
    struct stat st;
    if (!trk_mapped_from((uintptr_t)trk_exec_entry, &ma, &mi, &ino) ||
        stat("/proc/self/exe", &st) != 0 || major(st.st_dev) != ma || minor(st.st_dev) != mi ||
        (unsigned long)st.st_ino != ino)
        return;
    x->can_exec = true;
}

/* No snprintf after fork: digits by hand. */
static char *trk_put_num(char *p, unsigned long v) {
    char d[24];
    int n = 0;
    do d[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    while (n) *p++ = d[--n];
    return p;
}

static void trk_exec_daemon(trk_exec *x, int lfd) {
    if (x->can_exec) {
        /* The image gets the listener as fd 3 and nothing else of ours but
         * /dev/null as its standard streams. */
        if (lfd != 3) {
            if (dup2(lfd, 3) != 3) _exit(1);
            close(lfd);
            lfd = 3;
        }
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        syscall(SYS_close_range, 4u, ~0u, 0u);
        char *p = x->fd_var;
        memcpy(p, TRK_ENV "=", strlen(TRK_ENV "="));
        p = trk_put_num(p + strlen(TRK_ENV "="), (unsigned long)getpid());
        *p++ = ':';
        p = trk_put_num(p, (unsigned long)lfd);
        *p = '\0';
        if (fcntl(lfd, F_SETFD, 0) == 0) {
            char *argv[] = {(char *)"mp-shm-tracker", NULL};
            execve("/proc/self/exe", argv, x->envp);
        }
        fcntl(lfd, F_SETFD, FD_CLOEXEC);
    }
    /* No image to run: serve from this copy, at the price above. */
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
            int rc = trk_start(&addr, alen);
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
