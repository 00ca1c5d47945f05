/* The shared memory tracker (Linux): one daemon per user unlinks a named block once
 * every process that tracks it has ended without unlinking it, however it ended.
 * Its two halves share what is here: linux/tracker_linux.c is the client (every
 * tracking process), linux/tracker_daemon_linux.c the daemon and how it starts.
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
 * - The daemon exits when it has had no client for a moment (then it holds no block),
 *   and only then: it ignores SIGTERM, SIGINT and SIGHUP (CPython's tracker ignores
 *   the first two), so a kill of one program's process group leaves it serving the
 *   others.
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
#ifndef MP_LINUX_TRACKER_PROTO_LINUX_H
#define MP_LINUX_TRACKER_PROTO_LINUX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "../core/os_shm.h"

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

/* setuid/setgid: the daemon would run with another user's rights for this user. */
static inline bool trk_secure(void) {
    return getauxval(AT_SECURE) != 0 || getuid() != geteuid() || getgid() != getegid();
}

static inline uid_t peer_uid(int fd) {
    struct ucred c;
    socklen_t n = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &n) != 0) return (uid_t)-1;
    return c.uid;
}

/** Starts a daemon listening on addr (tracker_daemon_linux.c): 0 once one listens,
 *  ours or one that won the race to bind. */
int mp__tracker_start(const struct sockaddr_un *addr, socklen_t alen);

#endif
