/* The OS layer for Linux (core/os.h): time, ids, handles, the global lock, threads. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../core/os.h"
#include "linux.h"

static pthread_mutex_t g_lock;
static pthread_once_t g_lock_once = PTHREAD_ONCE_INIT;

static void lock_make(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&g_lock, &a);
    pthread_mutexattr_destroy(&a);
}

/* A fork from another thread must not leave the lock held forever in the child. */
static void atfork_prepare(void) { pthread_mutex_lock(&g_lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&g_lock); }
static void atfork_child(void) { lock_make(); }

static void lock_once(void) {
    lock_make();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void mp__os_global_lock(void) {
    pthread_once(&g_lock_once, lock_once);
    pthread_mutex_lock(&g_lock);
}

void mp__os_global_unlock(void) { pthread_mutex_unlock(&g_lock); }

int mp__os_init(void) {
    pthread_once(&g_lock_once, lock_once);
    return 0;
}

double mp__os_monotonic(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int mp__os_cpu(void) { return sched_getcpu(); /* glibc reads it from rseq: no system call */ }

void mp__os_sleep(double seconds) {
    if (seconds <= 0) return;
    struct timespec t = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

int64_t mp__os_getpid(void) { return (int64_t)getpid(); }
int64_t mp__os_thread_id(void) { return (int64_t)syscall(SYS_gettid); }

int mp__os_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    return n > 0 ? (int)n : 1;
}

int mp__os_process_cpu_count(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int mp__os_random(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return mp__os_err("getrandom");
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Resolved once: a later rename or deletion of the file does not change what we run. */
static char g_self_exe[PATH_MAX];
static pthread_once_t g_self_once = PTHREAD_ONCE_INIT;

static void read_self_exe(void) {
    ssize_t n = readlink("/proc/self/exe", g_self_exe, sizeof g_self_exe - 1);
    g_self_exe[n > 0 ? n : 0] = '\0';
}

const char *mp__os_self_exe(void) {
    pthread_once(&g_self_once, read_self_exe);
    return g_self_exe[0] ? g_self_exe : "/proc/self/exe";
}

int mp__os_err(const char *what) {
    int e = errno;
    int code;
    switch (e) {
    case EINVAL:
        code = MP_EINVAL;
        break;
    case ENOMEM:
        code = MP_ENOMEM;
        break;
    case ETIMEDOUT:
        code = MP_ETIMEDOUT;
        break;
    case ENOENT:
        code = MP_ENOENT;
        break;
    case EEXIST:
        code = MP_EEXIST;
        break;
    case EAGAIN:
        code = MP_EAGAIN;
        break;
    case EPERM:
    case EACCES:
        code = MP_EPERM;
        break;
    case EPIPE:
    case ECONNRESET:
        code = MP_EPIPE;
        break;
    case EBADF:
        code = MP_EBADF;
        break;
    case EINTR:
        code = MP_EINTR;
        break;
    case EIO:
        code = MP_EIO;
        break;
    case ENOTSUP:
        code = MP_ENOTSUP;
        break;
    case ECHILD:
        code = MP_ECHILD;
        break;
    case EOWNERDEAD:
        code = MP_EOWNERDEAD;
        break;
    case EMFILE:
    case ENFILE: {
        /* Say which limit: the process's (ulimit -n) or the system's. */
        struct rlimit rl;
        if (e == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
            return mp__err_os(MP_ELIMIT, e,
                              "%s: out of file descriptors (this process may have %llu open, "
                              "RLIMIT_NOFILE)",
                              what, (unsigned long long)rl.rlim_cur);
        return mp__err_os(MP_ELIMIT, e, "%s: %s", what, strerror(e));
    }
    default:
        code = MP_ESYS;
        break;
    }
    if (code == MP_ESYS) return mp__err_os(code, e, "%s: %s (errno %d)", what, strerror(e), e);
    return mp__err_os(code, e, "%s: %s", what, strerror(e));
}

int mp__os_handle_close(mp_os_handle h) {
    if (h < 0) return mp__err(MP_EBADF, "close: invalid handle");
    /* Linux closes the fd even when close reports EINTR: never retry. */
    if (close((int)h) != 0 && errno != EINTR) return mp__os_err("close");
    return 0;
}

int mp__os_handle_dup(mp_os_handle h, mp_os_handle *out) {
    *out = MP_INVALID_OS_HANDLE;
    int fd = fcntl((int)h, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return mp__os_err("dup");
    *out = fd;
    return 0;
}

int mp__linux_poll_ms(double deadline) {
    if (mp__forever(deadline)) return -1;
    double left = mp__left(deadline);
    return left > INT_MAX / 1000 ? INT_MAX : (int)(left * 1000.0 + 0.999);
}

int mp__linux_poll_in(int fd, double timeout) {
    double deadline = mp__deadline(timeout);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, mp__linux_poll_ms(deadline));
        if (r > 0) return 0;
        if (r == 0) {
            if (mp__left(deadline) == 0) return MP_ETIMEDOUT;
            continue;
        }
        if (errno != EINTR) return mp__os_err("poll");
    }
}

int mp__os_handle_wait(mp_os_handle h, double timeout) {
    return mp__linux_poll_in((int)h, timeout);
}

int mp__os_write_all(mp_os_handle h, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        /* send() where it is a socket, so a closed peer is MP_EPIPE, never SIGPIPE. */
        ssize_t w = send((int)h, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK) w = write((int)h, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mp__os_err("write");
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mp__os_read_all(mp_os_handle h, void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t r = read((int)h, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return mp__os_err("read");
        }
        if (r == 0) return mp__err(MP_EOF, "read: the other end closed");
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int mp__linux_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        /* pidfd_open sets close-on-exec already; say it anyway for older kernels. */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        return fd;
    }
    return -1;
#else
    errno = ENOSYS;
    return -1;
#endif
}

int mp__os_self_sentinel(mp_os_handle *out) {
    *out = MP_INVALID_OS_HANDLE;
    int fd = mp__linux_pidfd_open(getpid());
    if (fd < 0) return mp__os_err("pidfd_open(self)");
    *out = fd;
    return 0;
}

/* Bound at load time: a lazily bound _exit would be looked up again in every child
 * (its parent never calls it), a symbol search across every loaded library. */
static void (*const volatile mp__exit_fn)(int) = _exit;

void mp__os_exit(int code) {
    fflush(NULL);
    mp__exit_fn(code);
    _exit(code); /* not reached */
}

/* ---- mutex and condition variable ---- */

struct mp__mutex {
    pthread_mutex_t m;
};

struct mp__cond {
    pthread_cond_t c;
};

int mp__os_mutex_new(mp__mutex **out) {
    *out = mp__malloc(sizeof **out);
    if (!*out) return mp__err(MP_ENOMEM, "mutex: out of memory");
    /* Adaptive: held for a few instructions by threads on other CPUs, a short spin
     * beats a futex sleep and wake (the pool's handler and its callers meet here). */
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    pthread_mutex_init(&(*out)->m, &a);
    pthread_mutexattr_destroy(&a);
    return 0;
}

void mp__os_mutex_free(mp__mutex *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->m);
    mp__free(m);
}

void mp__os_mutex_lock(mp__mutex *m) { pthread_mutex_lock(&m->m); }
void mp__os_mutex_unlock(mp__mutex *m) { pthread_mutex_unlock(&m->m); }

int mp__os_cond_new(mp__cond **out) {
    *out = mp__malloc(sizeof **out);
    if (!*out) return mp__err(MP_ENOMEM, "condition variable: out of memory");
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC); /* a clock change never stretches a wait */
    pthread_cond_init(&(*out)->c, &a);
    pthread_condattr_destroy(&a);
    return 0;
}

void mp__os_cond_free(mp__cond *c) {
    if (!c) return;
    pthread_cond_destroy(&c->c);
    mp__free(c);
}

int mp__os_cond_wait(mp__cond *c, mp__mutex *m, double timeout) {
    timeout = mp__timeout(timeout);
    if (mp__forever(timeout)) {
        pthread_cond_wait(&c->c, &m->m);
        return 0;
    }
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double end = (double)t.tv_sec + (double)t.tv_nsec * 1e-9 + timeout;
    if (end > 1e15) end = 1e15;
    t.tv_sec = (time_t)end;
    t.tv_nsec = (long)((end - (double)t.tv_sec) * 1e9);
    if (t.tv_nsec >= 1000000000L) t.tv_nsec = 999999999L;
    return pthread_cond_timedwait(&c->c, &m->m, &t) == ETIMEDOUT ? MP_ETIMEDOUT : 0;
}

void mp__os_cond_signal(mp__cond *c) { pthread_cond_signal(&c->c); }
void mp__os_cond_broadcast(mp__cond *c) { pthread_cond_broadcast(&c->c); }

/* ---- thread-local keys ---- */

struct mp__tls {
    pthread_key_t key;
};

int mp__os_tls_new(void (*dtor)(void *), mp__tls **out) {
    *out = mp__malloc(sizeof **out);
    if (!*out) return mp__err(MP_ENOMEM, "tls: out of memory");
    int e = pthread_key_create(&(*out)->key, dtor);
    if (e) {
        mp__free(*out);
        *out = NULL;
        errno = e;
        return mp__os_err("pthread_key_create");
    }
    return 0;
}

int mp__os_tls_set(mp__tls *k, void *v) {
    int e = pthread_setspecific(k->key, v);
    if (e) {
        errno = e;
        return mp__os_err("pthread_setspecific");
    }
    return 0;
}

/* ---- threads (dummy backend) ---- */

struct mp__thread {
    pthread_t tid;
    void (*fn)(void *);
    void *arg;
    int done_r, done_w; /* done_w is closed when fn returns: a pollable sentinel */
    pid_t native;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, finished, joined;
};

static void *thread_main(void *arg) {
    mp__thread *t = arg;
    pthread_mutex_lock(&t->mu);
    t->native = (pid_t)syscall(SYS_gettid);
    t->started = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    t->fn(t->arg);
    pthread_mutex_lock(&t->mu);
    t->finished = true;
    close(t->done_w);
    t->done_w = -1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int mp__os_thread_start(void (*fn)(void *), void *arg, mp__thread **out) {
    *out = NULL;
    mp__thread *t = mp__calloc(1, sizeof *t);
    if (!t) return mp__err(MP_ENOMEM, "thread: out of memory");
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        mp__free(t);
        return mp__os_err("pipe2");
    }
    t->done_r = p[0];
    t->done_w = p[1];
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    int e = pthread_create(&t->tid, NULL, thread_main, t);
    if (e) {
        close(p[0]);
        close(p[1]);
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        mp__free(t);
        errno = e;
        return mp__os_err("pthread_create");
    }
    /* Wait until the thread knows its native id, so pid is valid right after start. */
    pthread_mutex_lock(&t->mu);
    while (!t->started) pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    *out = t;
    return 0;
}

mp_os_handle mp__os_thread_sentinel(const mp__thread *t) { return t->done_r; }

int mp__os_thread_join(mp__thread *t, double timeout) {
    if (t->joined) return 0;
    int rc = mp__linux_poll_in(t->done_r, timeout);
    if (rc) return rc;
    pthread_join(t->tid, NULL);
    t->joined = true;
    return 0;
}

int64_t mp__os_thread_native_id(const mp__thread *t) { return t->native; }

void mp__os_thread_free(mp__thread *t) {
    if (!t) return;
    if (!t->joined) {
        /* Still running: let it finish on its own; it must not touch t afterwards, so
         * it is leaked deliberately (a dummy daemon outliving its handle). */
        pthread_detach(t->tid);
        return;
    }
    close(t->done_r);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    mp__free(t);
}

int mp__os_dlopen(const char *path) {
    if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL))
        return mp__err(MP_ENOENT, "dlopen(%s): %s", path, dlerror());
    return 0;
}
