/* fork: the child is a copy of this process and runs the target directly. It inherits
 * every fd, as Python's fork method does; the handles in the launch are the parent's
 * own numbers, valid in the copy. When the arguments hold library objects, the child
 * reports on a pipe whether its bootstrap worked (they were rebuilt), so start fails as
 * it does on every method; with values alone nothing can fail there but memory, and
 * start does not wait (a round trip, a fifth of a fork's cost). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "unix.h"

static int fork_start(const mp__start_req *req, mp__started *out) {
    /* Decode before forking: the child then runs no allocator-heavy code of ours before
     * the target, and a malformed launch fails here, in the parent. */
    mp__launch l;
    int rc = mp__launch_decode(req->payload, req->len, &l);
    if (rc) return rc;
    mp_os_handle *hs = mp__calloc(req->nhandles, sizeof *hs);
    int rp[2] = {-1, -1};
    bool report = !req->plain_args;
    if (!hs)
        rc = mp__err(MP_ENOMEM, "fork: out of memory");
    else if (report && pipe2(rp, O_CLOEXEC) != 0)
        rc = mp__os_err("fork: pipe2");
    if (rc) {
        mp__free(hs);
        mp__launch_clear(&l);
        return rc;
    }
    for (size_t i = 0; i < req->nhandles; i++) hs[i] = req->handles[i];
    /* Unflushed stdio would be written twice, by us and by the copy. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        mp__process_after_fork_child();
        if (!report) mp__os_exit(mp__child_run(&l, hs, req->nhandles, NULL, NULL));
        close(rp[0]);
        mp_os_handle chan = rp[1];
        mp__child_run(&l, hs, req->nhandles, mp__report_to_handle, &chan);
        mp__os_exit(1); /* only a failed bootstrap comes back */
    }
    int fork_errno = errno;
    if (report) close(rp[1]);
    mp__free(hs);
    mp__launch_clear(&l);
    if (pid < 0) {
        if (report) close(rp[0]);
        errno = fork_errno;
        return mp__os_err("fork");
    }
    mp__started st;
    rc = mp__unix_child_adopt(pid, &st);
    if (!rc && report) rc = mp__unix_child_await(&st, rp[0], "fork");
    if (report) close(rp[0]);
    if (!rc) *out = st;
    return rc;
}

const struct mp_backend_ops mp__backend_fork = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "fork",
    .flags = MP_BACKEND_SAME_IMAGE,
    .start = fork_start,
    .wait = mp__unix_child_wait,
    .signal = mp__unix_child_signal,
    .release = mp__unix_child_release,
};
