/* The shared memory tracker's daemon (overview: tracker_proto_linux.h): its tables, its
 * loop, and how it starts: a fresh image of the program entered from the constructor
 * below when that is certain to work, else the forked copy. It may run in a fork of a
 * program with other threads, so it uses no malloc and no locks, only system calls and
 * static tables. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
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

#include "linux.h"
#include "tracker_proto_linux.h"

/* Milliseconds the daemon stays without clients, so back-to-back programs share it. */
#define TRK_LINGER_MS 1000

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
    if (unlink_it && b->owned && trk_identity(b->name, &dev, &ino) && dev == b->dev &&
        ino == b->ino) {
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
    case OP_ATTACHED:
        return trk_register(client, m);
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
    default:
        return -1;
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
    /* As CPython's resource tracker: a kill (or Ctrl-C) of one program's process group
     * must not end the daemon every program of the user shares and cost the others
     * their clean-up. It still ends when its last client has left. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
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
                if (send(fd, &status, sizeof status, MSG_NOSIGNAL | MSG_DONTWAIT) ==
                    (ssize_t)sizeof status)
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
 * Anything else there (inherited by another program, forged) is removed and ignored.
 * The constructor is in the same file as mp__tracker_start, the only way to a daemon,
 * so a static link that can start one always carries it. */
#define TRK_ENV "MP__SHM_TRACKER_FD"

static long trk_parse_num(const char **v) {
    long x = -1;
    for (; **v >= '0' && **v <= '9' && x < 100000000; (*v)++)
        x = (x < 0 ? 0 : x * 10) + (**v - '0');
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
    do d[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
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
int mp__tracker_start(const struct sockaddr_un *addr, socklen_t alen) {
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
