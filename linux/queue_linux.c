/* A queue's spill channel on Linux (core/os_queue.h): memfd blocks whose fds travel as
 * SCM_RIGHTS over a SOCK_SEQPACKET socketpair. fd[0] carries items to consumers (they
 * read fd[1]); fd[1] carries used blocks back to producers (they read fd[0]). Every
 * holder keeps both ends, so a block in flight outlives its producer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/os_queue.h"
#include "linux.h"

/* The largest file this process may make (ulimit -f): a memfd beyond it would be
 * SIGXFSZ, which kills, rather than an error. */
static uint64_t fsize_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
    return (uint64_t)rl.rlim_cur;
}

/* Recycled blocks waiting in the channel, at most: each pins its memory until a
 * producer takes it or the queue goes. */
enum { FREE_MAX = 2 };
/* Blocks are made in whole steps, so that a recycled block fits items of similar size. */
#define BLOCK_STEP ((uint64_t)1 << 20)

/* Mappings kept per side and per queue object, by inode: a mapping keeps its memfd
 * (hence its inode number) alive, so a match is the same block. A recycled block is
 * then copied with memcpy through a mapping that exists already: no fault, no page
 * table work, about half the CPU of pwrite/pread. A block seen for the first time is
 * written with pwrite (it allocates the pages without zeroing them first, where a
 * mapping would fault and zero each one) and read through a new mapping. */
enum { CACHE_N = 3 };

typedef struct map_ent {
    dev_t dev;
    ino_t ino;
    void *base;
    size_t size;
    uint64_t used; /* LRU tick; 0: empty */
} map_ent;

typedef struct map_cache {
    map_ent e[CACHE_N];
    uint64_t tick;
} map_cache;

struct mp__qspill {
    int fd[2];
    _Atomic uint32_t *free_count;
    int put_fd;             /* the block between take and cancel */
    unsigned char *put_map; /* its mapping, or NULL: pwrite */
    int get_fd;             /* the block between recv and done */
    unsigned char *get_map;
    map_cache put_c, get_c;
};

typedef struct wire_msg {
    uint64_t seq;
    uint64_t size;
} wire_msg;

size_t mp__os_qspill_handle_count(void) { return 2; }

static mp__qspill *spill_alloc(_Atomic uint32_t *free_count) {
    mp__qspill *s = mp__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->free_count = free_count;
    s->put_fd = s->get_fd = -1;
    return s;
}

int mp__os_qspill_new(uint32_t creator_pid, _Atomic uint32_t *free_count, mp__qspill **out) {
    (void)creator_pid;
    *out = NULL;
    mp__qspill *s = spill_alloc(free_count);
    if (!s) return mp__err(MP_ENOMEM, "queue: out of memory");
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, s->fd) != 0) {
        int rc = mp__os_err("queue: socketpair");
        mp__free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void mp__os_qspill_reduce(const mp__qspill *s, mp_os_handle *handles, size_t *nh) {
    handles[(*nh)++] = s->fd[0];
    handles[(*nh)++] = s->fd[1];
}

int mp__os_qspill_rebuild(uint32_t creator_pid, _Atomic uint32_t *free_count,
                          const mp_os_handle *handles, mp__qspill **out) {
    (void)creator_pid;
    *out = NULL;
    mp__qspill *s = spill_alloc(free_count);
    if (!s) return mp__err(MP_ENOMEM, "queue: out of memory");
    s->fd[0] = (int)handles[0];
    s->fd[1] = (int)handles[1];
    /* O_NONBLOCK belongs to the open file, shared with the creator: already set. */
    *out = s;
    return 0;
}

static void cache_clear(map_cache *c) {
    for (int i = 0; i < CACHE_N; i++)
        if (c->e[i].used) munmap(c->e[i].base, c->e[i].size);
    memset(c, 0, sizeof *c);
}

/* The mapping of block fd from the cache, or a new one (populated: the pages exist);
 * NULL when mapping fails (the caller falls back to pwrite/pread). */
static unsigned char *cache_map(map_cache *c, int fd, bool populate) {
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) return NULL;
    c->tick++;
    map_ent *victim = &c->e[0];
    for (int i = 0; i < CACHE_N; i++) {
        map_ent *e = &c->e[i];
        if (e->used && e->dev == st.st_dev && e->ino == st.st_ino &&
            e->size == (size_t)st.st_size) {
            e->used = c->tick;
            return e->base;
        }
        if (e->used < victim->used) victim = e;
    }
    int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED) return NULL;
    if (victim->used) munmap(victim->base, victim->size);
    victim->dev = st.st_dev;
    victim->ino = st.st_ino;
    victim->base = p;
    victim->size = (size_t)st.st_size;
    victim->used = c->tick;
    return p;
}

void mp__os_qspill_free(mp__qspill *s) {
    if (!s) return;
    cache_clear(&s->put_c);
    cache_clear(&s->get_c);
    if (s->put_fd >= 0) close(s->put_fd);
    if (s->get_fd >= 0) close(s->get_fd);
    close(s->fd[0]);
    close(s->fd[1]);
    mp__free(s);
}

/* The size of block fd, which must hold need bytes. */
static int block_check(int fd, uint64_t need) {
    struct stat st;
    if (fstat(fd, &st) != 0) return mp__os_err("queue: fstat");
    if (st.st_size < 0 || (uint64_t)st.st_size < need)
        return mp__err(MP_EPROTO, "queue: a spill block has %lld bytes, the item %llu",
                       (long long)st.st_size, (unsigned long long)need);
    return 0;
}

/* Receives one message and its fd (-1 when it carried none). */
static int recv_block(int sock, wire_msg *m, int *fd) {
    *fd = -1;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    /* Receiving takes the message even when no descriptor is free for its fd (the
     * kernel then drops the fd and sets MSG_CTRUNC): make sure one is free first, so an
     * item is not lost to a full descriptor table. */
    int spare = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (spare < 0) return mp__os_err("queue: no free descriptor to receive a big item");
    close(spare);
    ssize_t n;
    do n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? MP_EAGAIN : mp__os_err("queue: recvmsg");
    if (mh.msg_flags & MSG_CTRUNC)
        return mp__err(MP_ESYS, "queue: a big item's block was lost: no descriptor was free "
                                "to receive it");
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(fd, CMSG_DATA(c), sizeof(int));
    if (n != (ssize_t)sizeof *m) return MP_EPROTO;
    return 0;
}

static int send_block(int sock, const wire_msg *m, int fd) {
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? MP_EAGAIN : -1;
    return 0;
}

int mp__os_qspill_take(mp__qspill *s, uint64_t size) {
    if (s->put_fd >= 0) mp__os_qspill_cancel(s);
    int fd = -1;
    /* A recycled block first: its pages exist, and are likely mapped here already. */
    if (atomic_load_explicit(s->free_count, memory_order_relaxed) > 0) {
        wire_msg m;
        int rc = recv_block(s->fd[0], &m, &fd);
        if (rc != MP_EAGAIN) atomic_fetch_sub(s->free_count, 1);
        if (rc == 0 && fd >= 0 && m.size < size) {
            close(fd);
            fd = -1;
        } else if (rc != 0 && fd >= 0) {
            close(fd);
            fd = -1;
        }
    }
    bool recycled = fd >= 0;
    if (fd < 0) {
        uint64_t want = (size + BLOCK_STEP - 1) / BLOCK_STEP * BLOCK_STEP;
        if (want > (uint64_t)INT64_MAX || want > SIZE_MAX)
            return mp__err(MP_ENOMEM, "queue: an item of %llu bytes", (unsigned long long)size);
        if (want > fsize_limit())
            return mp__err(MP_ENOMEM,
                           "queue: an item of %llu bytes is over the file size limit "
                           "(ulimit -f) a shared block may have",
                           (unsigned long long)size);
        fd = memfd_create("multiproc-queue", MFD_CLOEXEC);
        if (fd < 0) return mp__os_err("queue: memfd_create");
        if (ftruncate(fd, (off_t)want) != 0) {
            int rc = mp__os_err("queue: ftruncate");
            close(fd);
            return rc;
        }
    }
    s->put_fd = fd;
    s->put_map = recycled ? cache_map(&s->put_c, fd, true) : NULL;
    return 0;
}

int mp__os_qspill_write(mp__qspill *s, uint64_t off, const void *buf, size_t len) {
    if (s->put_map) {
        memcpy(s->put_map + off, buf, len);
        return 0;
    }
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(s->put_fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return mp__os_err("queue: writing a spill block");
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int mp__os_qspill_read(mp__qspill *s, uint64_t off, void *dst, size_t len) {
    if (s->get_map) {
        memcpy(dst, s->get_map + off, len);
        return 0;
    }
    char *p = dst;
    while (len > 0) {
        ssize_t n = pread(s->get_fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return mp__os_err("queue: reading a spill block");
        if (n == 0) return mp__err(MP_EPROTO, "queue: a spill block ends early");
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

void mp__os_qspill_cancel(mp__qspill *s) {
    if (s->put_fd >= 0) close(s->put_fd);
    s->put_fd = -1;
    s->put_map = NULL;
}

int mp__os_qspill_send(mp__qspill *s, uint64_t seq, uint64_t size, uint64_t rec[2],
                       double timeout) {
    rec[0] = rec[1] = 0;
    wire_msg m = {.seq = seq, .size = size};
    double deadline = mp__deadline(timeout);
    int rc;
    for (;;) {
        rc = send_block(s->fd[0], &m, s->put_fd);
        if (rc != MP_EAGAIN) break;
        /* The socket's buffer is full of items nobody took yet. */
        if (mp__left(deadline) == 0) {
            rc = MP_EFULL;
            break;
        }
        struct pollfd p = {.fd = s->fd[0], .events = POLLOUT};
        int ms = mp__linux_poll_ms(deadline);
        poll(&p, 1, ms < 0 || ms > 100 ? 100 : ms);
    }
    if (rc < 0 && rc != MP_EFULL) rc = mp__os_err("queue: sendmsg");
    if (rc) mp__os_qspill_cancel(s);
    /* else the block travels in the socket; put_fd stays, for writing the item. */
    return rc;
}

int mp__os_qspill_recv(mp__qspill *s, uint64_t seq, uint64_t size, const uint64_t rec[2]) {
    (void)rec;
    if (s->get_fd >= 0) mp__os_qspill_done(s, false);
    for (;;) {
        wire_msg m;
        ssize_t n;
        /* A look without taking: the next block may belong to a later item. */
        do n = recv(s->fd[1], &m, sizeof m, MSG_PEEK | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return MP_ENOENT;
        if (n < 0) return mp__os_err("queue: recv");
        if (n == (ssize_t)sizeof m && m.seq > seq) return MP_ENOENT;
        int fd;
        int rc = recv_block(s->fd[1], &m, &fd);
        if (rc == MP_EAGAIN) return MP_ENOENT;
        if (rc == 0 && m.seq == seq && fd >= 0) {
            rc = block_check(fd, size);
            if (rc) {
                close(fd);
                return rc;
            }
            s->get_fd = fd;
            /* Not populated: the putter may not have written the pages yet. */
            s->get_map = cache_map(&s->get_c, fd, false);
            return 0;
        }
        /* Left by a putter that died before its item showed, or malformed: dropped. */
        if (fd >= 0) close(fd);
        if (rc < 0 && rc != MP_EPROTO) return rc;
    }
}

void mp__os_qspill_done(mp__qspill *s, bool recycle) {
    int fd = s->get_fd;
    if (fd < 0) return;
    s->get_fd = -1;
    s->get_map = NULL;
    if (recycle && atomic_fetch_add(s->free_count, 1) < FREE_MAX) {
        struct stat st;
        wire_msg m = {.seq = 0, .size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0};
        if (send_block(s->fd[1], &m, fd) != 0) atomic_fetch_sub(s->free_count, 1);
    } else if (recycle) {
        atomic_fetch_sub(s->free_count, 1);
    }
    close(fd);
}

/* ---- the overflow arena: a sparse memfd; only pages written cost memory ---- */

#define ARENA_SIZE ((uint64_t)8 << 30)
/* Smallest arena a low ulimit -f may shrink it to (core needs at least the ring). */
#define ARENA_MIN ((uint64_t)16 << 20)

int mp__os_qarena_new(uint64_t *size, mp_os_handle *h) {
    *h = MP_INVALID_OS_HANDLE;
    uint64_t want = ARENA_SIZE, limit = fsize_limit();
    while (want > limit && want > ARENA_MIN) want /= 2;
    if (want > limit)
        return mp__err(MP_ENOMEM, "queue: the file size limit (ulimit -f) leaves no room for "
                                  "the overflow area");
    int fd = memfd_create("multiproc-queue-arena", MFD_CLOEXEC);
    if (fd < 0) return mp__os_err("queue: memfd_create");
    if (ftruncate(fd, (off_t)want) != 0) {
        int rc = mp__os_err("queue: ftruncate");
        close(fd);
        return rc;
    }
    *size = want;
    *h = fd;
    return 0;
}

int mp__os_qarena_map(mp_os_handle h, uint64_t size, void **base) {
    *base = NULL;
    struct stat st;
    if (fstat((int)h, &st) != 0) return mp__os_err("queue: fstat");
    if (st.st_size < 0 || (uint64_t)st.st_size < size || size > SIZE_MAX)
        return mp__err(MP_EPROTO, "queue: the arena has %lld bytes, expected %llu",
                       (long long)st.st_size, (unsigned long long)size);
    /* MAP_NORESERVE: address space only; pages come as the arena fills. */
    void *p =
        mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, (int)h, 0);
    if (p == MAP_FAILED) return mp__os_err("queue: mmap");
    *base = p;
    return 0;
}

void mp__os_qarena_unmap(void *base, uint64_t size) {
    if (base) munmap(base, (size_t)size);
}

void mp__os_qarena_discard(mp_os_handle h, void *base, uint64_t off, uint64_t len) {
    (void)base;
    uint64_t page = 4096;
    uint64_t from = (off + page - 1) & ~(page - 1), to = (off + len) & ~(page - 1);
    if (to > from)
        fallocate((int)h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                  (off_t)(to - from));
}
