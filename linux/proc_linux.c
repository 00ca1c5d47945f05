/* Processes on Linux: pidfds for the Unix start methods (core/os_unix.h), a daemon's
 * watch on its parent, and a child's exit (core/os.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/os_unix.h"
#include "linux.h"

int mp__os_pidfd_open(int64_t pid, int *fd) {
    *fd = mp__linux_pidfd_open((pid_t)pid);
    return *fd < 0 ? mp__os_err("pidfd_open") : 0;
}

int mp__os_pidfd_signal(int pidfd, int signo) {
    /* Through the pidfd: never a stranger who got the pid after our child was reaped. */
    if (syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0) == 0 || errno == ESRCH) return 0;
    return mp__os_err("pidfd_send_signal");
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void mp__os_close_fds_except(const int *keep, size_t n) {
    int *k = malloc((n + 1) * sizeof *k);
    if (!k) {
        /* Cannot sort: close one by one around the keepers. */
        for (int fd = 3; fd < 65536; fd++) {
            bool kept = false;
            for (size_t i = 0; i < n; i++) kept |= keep[i] == fd;
            if (!kept) close(fd);
        }
        return;
    }
    memcpy(k, keep, n * sizeof *k);
    qsort(k, n, sizeof *k, cmp_int);
    int from = 3;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < from) continue;
        if (k[i] > from) syscall(SYS_close_range, (unsigned)from, (unsigned)k[i] - 1, 0u);
        from = k[i] + 1;
    }
    syscall(SYS_close_range, (unsigned)from, ~0u, 0u);
    free(k);
}

/* ---- a daemon dies with its parent ---- */

static void *watch_parent(void *arg) {
    int fd = (int)(intptr_t)arg;
    while (mp__linux_poll_in(fd, MP_FOREVER) != 0) {}
    /* The parent is gone: a daemon does not outlive it (nor do its own daemons, which
     * watch us in turn). */
    kill(getpid(), SIGKILL);
    return NULL;
}

int mp__os_die_with_parent(mp_os_handle parent_sentinel) {
    int fd = fcntl((int)parent_sentinel, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) return mp__os_err("dup");
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 * 1024);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
    int e = pthread_create(&t, &a, watch_parent, (void *)(intptr_t)fd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (e) {
        close(fd);
        errno = e;
        return mp__os_err("pthread_create");
    }
    return 0;
}

void mp__os_describe_exit(int exitcode, char *buf, size_t n) {
    if (exitcode >= 0) {
        snprintf(buf, n, "exited with code %d", exitcode);
        return;
    }
    const char *abbrev = sigabbrev_np(-exitcode);
    const char *what = strsignal(-exitcode);
    snprintf(buf, n, "was killed by signal %d (SIG%s: %s)", -exitcode, abbrev ? abbrev : "?",
             what ? what : "unknown");
}

/* ---- a child's exit ---- */

static void (*g_before_exit)(void);

/* Registered last before the target runs, so exit() reaches it after the target's own
 * handlers and before everything this process inherited or registered at startup
 * (a fork child's copy of its parent's list): it ends the process there, with the
 * status exit() was given. */
static void exit_barrier(int status, void *arg) {
    (void)arg;
    if (g_before_exit) g_before_exit();
    fflush(NULL);
    _exit(status);
}

void mp__os_exit_mark(void (*before_exit)(void)) {
    g_before_exit = before_exit;
    on_exit(exit_barrier, NULL);
}

void mp__os_exit_handlers(int code) { exit(code); }
