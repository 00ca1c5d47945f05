/* dummy: the reference backend. A "process" is a thread of this process, which runs
 * the very same bootstrap as a real child (the launch is decoded, the target resolved,
 * current_process() answers with the child's own object), so a program behaves the
 * same here as on any other start method, while a debugger or ThreadSanitizer sees
 * everything in one address space.
 *
 * What a thread cannot do: be terminated or killed (MP_ENOTSUP, as Python's threads),
 * or survive a crash of the target (that ends the whole program). */
#include <string.h>

#include "../core/os.h"
#include "../backends/backend.h"

typedef struct dummy_child {
    mp__thread *thread;
    mp__launch launch;
    void *payload;            /* the launch points into it */
    mp_os_handle *handles;
    size_t nhandles;
    int code;
} dummy_child;

static void dummy_main(void *arg) {
    dummy_child *c = arg;
    /* The handles now belong to the child's bootstrap, like a real child's. */
    c->code = mp__child_run(&c->launch, c->handles, c->nhandles, NULL, NULL);
}

static void dummy_free(dummy_child *c) {
    mp__launch_clear(&c->launch);
    mp__free(c->payload);
    mp__free(c->handles);
    mp__free(c);
}

static int dummy_start(mp_process *p, const mp__start_req *req) {
    dummy_child *c = mp__calloc(1, sizeof *c);
    int rc = 0;
    if (!c) return mp__err(MP_ENOMEM, "dummy: out of memory");
    c->payload = mp__malloc(req->len);
    c->handles = mp__calloc(req->nhandles ? req->nhandles : 1, sizeof *c->handles);
    if (!c->payload || !c->handles) {
        rc = mp__err(MP_ENOMEM, "dummy: out of memory");
        goto fail;
    }
    memcpy(c->payload, req->payload, req->len);
    /* The child gets its own duplicates, so closing them never touches the parent's. */
    for (; c->nhandles < req->nhandles; c->nhandles++) {
        rc = mp__os_handle_dup(req->handles[c->nhandles], &c->handles[c->nhandles]);
        if (rc) goto fail;
    }
    rc = mp__launch_decode(c->payload, req->len, &c->launch);
    if (!rc) rc = mp__launch_resolve(&c->launch);
    if (!rc) rc = mp__os_thread_start(dummy_main, c, &c->thread);
    if (rc) goto fail;
    p->bk = c;
    p->pid = mp__os_thread_native_id(c->thread);
    p->sentinel = mp__os_thread_sentinel(c->thread);
    return 0;
fail:
    for (size_t i = 0; i < c->nhandles; i++) mp__os_handle_close(c->handles[i]);
    dummy_free(c);
    return rc;
}

static int dummy_wait(mp_process *p, double timeout) {
    dummy_child *c = p->bk;
    int rc = mp__os_thread_join(c->thread, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(MP_ETIMEDOUT, "join: timed out after %.3f s", timeout);
    if (rc) return rc;
    p->exitcode = c->code;
    return 0;
}

static void dummy_release(mp_process *p) {
    dummy_child *c = p->bk;
    if (!c) return;
    if (mp__os_thread_join(c->thread, 0) != 0) {
        /* Still running (a daemon at exit, or freed by its owner): it keeps c. */
        mp__os_thread_free(c->thread);
    } else {
        mp__os_thread_free(c->thread);
        dummy_free(c);
    }
    p->bk = NULL;
    p->sentinel = MP_INVALID_OS_HANDLE;
}

const struct mp_backend_ops mp__backend_dummy = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "dummy",
    .flags = MP_BACKEND_THREADS | MP_BACKEND_SAME_IMAGE,
    .start = dummy_start,
    .wait = dummy_wait,
    .signal = NULL,
    .release = dummy_release,
};
