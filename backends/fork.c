/* fork: the child is a copy of this process and runs the target directly. It inherits
 * every fd, as Python's fork method does; the handles in the launch are the parent's
 * own numbers, valid in the copy. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "../core/os.h"
#include "../posix/posix.h"

static int fork_start(mp_process *p, const mp__start_req *req) {
    /* Decode before forking: the child then runs no allocator-heavy code of ours before
     * the target, and a malformed launch fails here, in the parent. */
    mp__launch l;
    int rc = mp__launch_decode(req->payload, req->len, &l);
    if (rc) return rc;
    mp_os_handle *hs = mp__calloc(req->nhandles, sizeof *hs);
    if (!hs) {
        mp__launch_clear(&l);
        return mp__err(MP_ENOMEM, "fork: out of memory");
    }
    for (size_t i = 0; i < req->nhandles; i++) hs[i] = req->handles[i];
    /* Unflushed stdio would be written twice, by us and by the copy. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        mp__process_after_fork_child();
        mp__os_exit(mp__child_run(&l, hs, req->nhandles, NULL, NULL));
    }
    mp__free(hs);
    mp__launch_clear(&l);
    if (pid < 0) return mp__os_err("fork");
    return mp__posix_child_adopt(p, pid);
}

const struct mp_backend_ops mp__backend_fork = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "fork",
    .flags = MP_BACKEND_SAME_IMAGE,
    .start = fork_start,
    .wait = mp__posix_child_wait,
    .signal = mp__posix_child_signal,
    .release = mp__posix_child_release,
};
