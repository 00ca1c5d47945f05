/* spawn: posix_spawn of the same executable, which re-enters through mp_init. The child
 * gets exactly stdio, its bootstrap channel (fd 3) and the transferred handles (fds 4..),
 * placed by dup2 file actions; everything else is closed by closefrom before exec. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unix.h"

extern char **environ;

static int spawn_start(const mp__start_req *req, mp__started *out) {
    int sv[2] = {-1, -1};
    size_t n = req->nhandles;
    int first_free = 4 + (int)n;
    int *tmp = mp__calloc(n + 1, sizeof *tmp);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_ok = false, attr_ok = false;
    int rc = 0;
    pid_t pid = -1;
    if (!tmp) return mp__err(MP_ENOMEM, "spawn: out of memory");
    for (size_t i = 0; i <= n; i++) tmp[i] = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = mp__os_err("spawn: socketpair");
        goto done;
    }
    /* Sources are first copied above the target range, so no dup2 overwrites a source. */
    tmp[0] = fcntl(sv[1], F_DUPFD_CLOEXEC, first_free);
    for (size_t i = 0; i < n && tmp[0] >= 0; i++) {
        tmp[i + 1] = fcntl((int)req->handles[i], F_DUPFD_CLOEXEC, first_free);
        if (tmp[i + 1] < 0) break;
    }
    for (size_t i = 0; i <= n; i++) {
        if (tmp[i] < 0) {
            rc = mp__os_err(i ? "spawn: handle to transfer" : "spawn: dup");
            goto done;
        }
    }
    posix_spawn_file_actions_init(&fa);
    fa_ok = true;
    for (size_t i = 0; i <= n; i++) posix_spawn_file_actions_adddup2(&fa, tmp[i], 3 + (int)i);
    posix_spawn_file_actions_addclosefrom_np(&fa, first_free);
    posix_spawnattr_init(&attr);
    attr_ok = true;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

    char nbuf[32];
    snprintf(nbuf, sizeof nbuf, "%zu", n);
    /* Our own image by /proc/self/exe: a rebuilt file on disk cannot slip in. */
    const char *path =
        strcmp(req->executable, mp__os_self_exe()) == 0 ? "/proc/self/exe" : req->executable;
    char *argv[] = {(char *)req->executable, "--mp-child", "spawn", "3", nbuf, NULL};
    int e = posix_spawn(&pid, path, &fa, &attr, argv, environ);
    if (e) {
        rc = mp__err_os(MP_ECHILD, e, "spawn: cannot run %s: %s", req->executable, strerror(e));
        pid = -1;
        goto done;
    }
    /* Every copy of the child's channel end must go, or a child that dies before it
     * reports would leave us waiting for an EOF that never comes. */
    close(sv[1]);
    sv[1] = -1;
    for (size_t i = 0; i <= n; i++) {
        close(tmp[i]);
        tmp[i] = -1;
    }
    rc = mp__unix_exec_handshake(pid, sv[0], req, "spawn", out);
done:
    if (fa_ok) posix_spawn_file_actions_destroy(&fa);
    if (attr_ok) posix_spawnattr_destroy(&attr);
    for (size_t i = 0; i <= n; i++)
        if (tmp[i] >= 0) close(tmp[i]);
    mp__free(tmp);
    if (sv[0] >= 0) close(sv[0]);
    if (sv[1] >= 0) close(sv[1]);
    return rc;
}

/* argv: exe --mp-child spawn <chan fd> <number of handles> */
static int spawn_child_main(int argc, char **argv) {
    if (argc < 5) return mp__err(MP_EINVAL, "spawn child: bad command line");
    int chan = atoi(argv[3]);
    size_t n = (size_t)strtoul(argv[4], NULL, 10);
    int *hs = mp__calloc(n ? n : 1, sizeof *hs);
    if (!hs) return mp__err(MP_ENOMEM, "spawn child: out of memory");
    for (size_t i = 0; i < n; i++) hs[i] = chan + 1 + (int)i;
    return mp__unix_exec_child(chan, hs, n);
}

const struct mp_backend_ops mp__backend_spawn = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "spawn",
    .flags = 0,
    .start = spawn_start,
    .wait = mp__unix_child_wait,
    .signal = mp__unix_child_signal,
    .release = mp__unix_child_release,
    .child_main = spawn_child_main,
};
