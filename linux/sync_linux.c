/* OS primitives for the synchronisation objects on Linux: memfd blocks, shared
 * futexes, pidfd liveness. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../core/os_sync.h"
#include "linux.h"

int mp__os_shm_create(size_t size, mp_os_handle *h, void **base) {
    *h = MP_INVALID_OS_HANDLE;
    *base = NULL;
    /* A memfd has no name in any file system: the block goes with its last fd and
     * mapping, so a crash leaves nothing behind (nothing in /dev/shm). */
    int fd = memfd_create("multiproc-sync", MFD_CLOEXEC);
    if (fd < 0) return mp__os_err("memfd_create");
    if (ftruncate(fd, (off_t)size) != 0) {
        int rc = mp__os_err("ftruncate");
        close(fd);
        return rc;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int rc = mp__os_err("mmap");
        close(fd);
        return rc;
    }
    *h = fd;
    *base = p;
    return 0;
}

int mp__os_shm_map(mp_os_handle h, size_t size, void **base) {
    *base = NULL;
    struct stat st;
    if (fstat((int)h, &st) != 0) return mp__os_err("fstat");
    /* Touching a mapping past the end of the file would be SIGBUS, not an error. */
    if (st.st_size < 0 || (size_t)st.st_size < size)
        return mp__err(MP_EPROTO, "shared block: %lld bytes, expected %zu", (long long)st.st_size,
                       size);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)h, 0);
    if (p == MAP_FAILED) return mp__os_err("mmap");
    *base = p;
    return 0;
}

void mp__os_shm_unmap(void *base, size_t size) {
    if (base) munmap(base, size);
}

void mp__os_futex_init(mp__futex *f, uint64_t key) { f->key = key; }

int mp__os_futex_wait(mp__futex *f, uint32_t expect, double timeout) {
    struct timespec ts, *tp = NULL;
    timeout = mp__timeout(timeout);
    if (!mp__forever(timeout)) {
        ts.tv_sec = (time_t)timeout;
        ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    /* Counted before the kernel compares the word, so that a waker that changes the
     * word first and then finds no sleeper means the kernel will see the change. */
    atomic_fetch_add(&f->waiters, 1);
    /* A shared (not FUTEX_PRIVATE) futex: keyed by the page, so it works across
     * processes and across several mappings of the block. */
    long r = syscall(SYS_futex, (uint32_t *)&f->val, FUTEX_WAIT, expect, tp, NULL, 0);
    int e = errno;
    atomic_fetch_sub(&f->waiters, 1);
    if (r == 0) return 0;
    if (e == EAGAIN) return MP_EAGAIN;
    if (e == ETIMEDOUT) return MP_ETIMEDOUT;
    return 0; /* EINTR: a spurious wakeup */
}

void mp__os_futex_wake(mp__futex *f, int n) {
    if (atomic_load(&f->waiters) == 0) return;
    syscall(SYS_futex, (uint32_t *)&f->val, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* getpid and gettid are system calls; a lock's fast path must not make one. The cache
 * is per thread, and a forked child (which has only the forking thread) drops it. */
static _Thread_local uint32_t t_pid;
static _Thread_local uint64_t t_tid;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void sync_atfork_child(void) {
    t_pid = 0;
    t_tid = 0;
    mp__sync_forget_ids();
}

static void sync_atfork_register(void) { pthread_atfork(NULL, NULL, sync_atfork_child); }

static void sync_ids_fill(void) {
    pthread_once(&g_atfork_once, sync_atfork_register);
    t_tid = (uint64_t)syscall(SYS_gettid);
    t_pid = (uint32_t)getpid();
}

uint32_t mp__os_sync_pid(void) {
    if (__builtin_expect(t_pid == 0, 0)) sync_ids_fill();
    return t_pid;
}

uint64_t mp__os_sync_tid(void) {
    if (__builtin_expect(t_pid == 0, 0)) sync_ids_fill();
    return t_tid;
}

int mp__os_proc_watch(uint32_t pid, mp_os_handle *out) {
    *out = MP_INVALID_OS_HANDLE;
    int fd = mp__linux_pidfd_open((pid_t)pid);
    if (fd >= 0) {
        *out = fd;
        return 0;
    }
    if (errno == ESRCH) return MP_ENOENT;
    /* No pidfd (old kernel): nothing to hold, fall back to kill(pid, 0) each time. */
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return MP_ENOENT;
    *out = -2 - (mp_os_handle)pid; /* encodes the pid; see mp__os_proc_watch_gone */
    return 0;
}

bool mp__os_proc_watch_gone(mp_os_handle h) {
    if (h <= -2) return kill((pid_t)(-2 - h), 0) != 0 && errno == ESRCH;
    /* A pidfd is readable once the process has ended, reaped or not: a killed holder
     * that its parent has not joined yet (a zombie) counts as gone. */
    struct pollfd p = {.fd = (int)h, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

void mp__os_proc_watch_close(mp_os_handle h) {
    if (h >= 0) close((int)h);
}
