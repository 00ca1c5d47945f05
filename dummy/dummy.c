/* dummy: the reference backend. A "process" is a thread of this process, which runs
 * the very same bootstrap as a real child (the launch is decoded, the target resolved,
 * the arguments rebuilt, current_process() answers with the child's own object), so a
 * program behaves the same here as on any other start method, while a debugger or
 * ThreadSanitizer sees everything in one address space.
 *
 * The bootstrap's first half (mp__child_prepare) runs here, in the parent's thread, so
 * a child that cannot start fails mp_process_start as on every method; the thread runs
 * the rest (mp__child_exec) and the target.
 *
 * What a thread cannot do: be terminated or killed (MP_ENOTSUP, as Python's threads),
 * or survive a crash of the target (that ends the whole program). */
#include <string.h>

#include "../core/backend.h"
#include "../core/os.h"

typedef struct dummy_child {
    mp__thread *thread;
    mp__launch launch;
    void *payload;         /* the launch points into it */
    mp_args *args;         /* rebuilt, handed to the thread */
    mp_os_handle sentinel; /* the parent's, the child's own duplicate */
    int code;
} dummy_child;

static void dummy_main(void *arg) {
    dummy_child *c = arg;
    c->code = mp__child_exec(&c->launch, c->args, c->sentinel, NULL, NULL);
}

static void dummy_free(dummy_child *c) {
    mp__launch_clear(&c->launch);
    mp__free(c->payload);
    mp__free(c);
}

static int dummy_start(const mp__start_req *req, mp__started *out) {
    dummy_child *c = mp__calloc(1, sizeof *c);
    mp_os_handle *hs = mp__calloc(req->nhandles ? req->nhandles : 1, sizeof *hs);
    size_t ndup = 0;
    int rc = 0;
    if (!c || !hs || !(c->payload = mp__malloc(req->len))) {
        rc = mp__err(MP_ENOMEM, "dummy: out of memory");
        goto fail;
    }
    memcpy(c->payload, req->payload, req->len);
    /* The child gets its own duplicates, so closing them never touches the parent's. */
    for (; ndup < req->nhandles; ndup++) {
        rc = mp__os_handle_dup(req->handles[ndup], &hs[ndup]);
        if (rc) goto fail;
    }
    rc = mp__launch_decode(c->payload, req->len, &c->launch);
    if (rc) goto fail;
    rc = mp__child_prepare(&c->launch, hs, ndup, &c->args);
    ndup = 0; /* prepare took them, or closed them */
    if (rc) goto fail;
    c->sentinel = hs[0];
    rc = mp__os_thread_start(dummy_main, c, &c->thread);
    if (rc) {
        mp_args_free(c->args);
        mp__os_handle_close(c->sentinel);
        goto fail;
    }
    mp__free(hs);
    out->pid = mp__os_thread_native_id(c->thread);
    out->sentinel = mp__os_thread_sentinel(c->thread);
    out->state = c;
    return 0;
fail:
    for (size_t i = 0; i < ndup; i++) mp__os_handle_close(hs[i]);
    mp__free(hs);
    if (c) dummy_free(c);
    return rc;
}

static int dummy_wait(void *state, double timeout, int *exitcode) {
    dummy_child *c = state;
    int rc = mp__os_thread_join(c->thread, timeout);
    if (rc) return rc;
    *exitcode = c->code;
    return 0;
}

static void dummy_release(void *state) {
    dummy_child *c = state;
    if (!c) return;
    if (mp__os_thread_join(c->thread, 0) != 0) {
        /* Still running (a daemon at exit, or freed by its owner): it keeps c. */
        mp__os_thread_free(c->thread);
    } else {
        mp__os_thread_free(c->thread);
        dummy_free(c);
    }
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
