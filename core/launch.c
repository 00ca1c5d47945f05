/* The launch: everything a child needs to become the process the parent described,
 * encoded once by core and decoded by the child whatever the start method, so every
 * backend runs a target with exactly the same inputs. */
#include <string.h>

#include "os.h"
#include "../backends/backend.h"

static const char launch_magic[4] = {'M', 'P', 'L', '1'};

void mp__fnref_clear(mp__fnref *r) {
    mp__free(r->module);
    mp__free(r->build);
    memset(r, 0, sizeof *r);
}

int mp__launch_encode(const mp_process *p, mp_os_handle parent_sentinel, mp__buf *b,
                      mp_os_handle *handles, size_t *nhandles) {
    mp__fnref ref = {0};
    /* Resolving in the parent catches a target outside every module (a heap or JIT
     * address) before any child exists, on every start method. */
    int rc = mp__os_fn_to_ref((void *)p->target, &ref);
    if (rc) return rc;
    mp_process *self = mp_current_process();
    mp__buf_put(b, launch_magic, sizeof launch_magic);
    mp__buf_str(b, ref.module);
    mp__buf_u64(b, ref.offset);
    mp__buf_str(b, ref.build);
    mp__buf_u64(b, (uint64_t)(uintptr_t)p->target);
    mp__buf_str(b, p->name);
    mp__buf_str(b, p->identity);
    mp__buf_u8(b, p->daemon);
    mp__buf_u64(b, (uint64_t)self->pid);
    mp__buf_str(b, self->name);
    mp__buf_str(b, p->ops->name);
    mp__buf_str(b, mp_get_start_method(true));
    mp__buf_put(b, mp__authkey(), 32);
    *nhandles = 0;
    handles[(*nhandles)++] = parent_sentinel;
    mp__buf_u32(b, (uint32_t)(1 + mp__args_handle_count(p->args)));
    mp__buf args = {0};
    rc = mp__args_encode(p->args, &args, handles, nhandles);
    mp__buf_blob(b, args.data, args.len);
    mp__buf_free(&args);
    mp__fnref_clear(&ref);
    if (rc) return rc;
    if (b->err) return mp__err(b->err, "launch: out of memory encoding the arguments");
    return 0;
}

int mp__launch_decode(const void *payload, size_t len, mp__launch *out) {
    memset(out, 0, sizeof *out);
    mp__rd r = {payload, len, 0};
    const unsigned char *m = r.p;
    if (len < sizeof launch_magic || memcmp(m, launch_magic, sizeof launch_magic) != 0)
        return mp__err(MP_EPROTO, "launch: bad magic (parent and child of different builds?)");
    r.p += sizeof launch_magic;
    r.left -= sizeof launch_magic;
    out->ref.module = mp__rd_str(&r);
    out->ref.offset = mp__rd_u64(&r);
    out->ref.build = mp__rd_str(&r);
    out->target_ptr = (void *)(uintptr_t)mp__rd_u64(&r);
    out->name = mp__rd_str(&r);
    out->identity = mp__rd_str(&r);
    out->daemon = mp__rd_u8(&r) != 0;
    out->parent_pid = (int64_t)mp__rd_u64(&r);
    out->parent_name = mp__rd_str(&r);
    out->start_method = mp__rd_str(&r);
    out->global_method = mp__rd_str(&r);
    if (r.left >= 32 && !r.err) {
        memcpy(out->authkey, r.p, 32);
        r.p += 32;
        r.left -= 32;
    } else {
        r.err = MP_EPROTO;
    }
    out->nhandles = mp__rd_u32(&r);
    out->args_wire = mp__rd_blob(&r, &out->args_len);
    if (r.err || !out->start_method || !out->name) {
        mp__launch_clear(out);
        return mp__err(MP_EPROTO, "launch: malformed payload");
    }
    /* The raw pointer means something only where the child shares our image. */
    const struct mp_backend_ops *ops = mp__backend_find(out->start_method);
    if (!ops || !(ops->flags & MP_BACKEND_SAME_IMAGE)) out->target_ptr = NULL;
    return 0;
}

int mp__launch_resolve(mp__launch *l) {
    if (l->target_ptr) return 0;
    return mp__os_ref_to_fn(&l->ref, &l->target_ptr);
}

void mp__launch_clear(mp__launch *l) {
    mp__fnref_clear(&l->ref);
    mp__free(l->name);
    mp__free(l->identity);
    mp__free(l->parent_name);
    mp__free(l->start_method);
    mp__free(l->global_method);
    memset(l, 0, sizeof *l);
}

static void close_handles(mp_os_handle *h, size_t from, size_t n) {
    for (size_t i = from; i < n; i++)
        if (h[i] != MP_INVALID_OS_HANDLE) mp__os_handle_close(h[i]);
}

int mp__child_run(mp__launch *l, mp_os_handle *handles, size_t nhandles,
                  mp__report_fn report, void *report_ctx) {
    mp_args *args = NULL;
    int rc = 0;
    if (nhandles != l->nhandles || nhandles < 1)
        rc = mp__err(MP_EPROTO, "launch: %zu handles arrived, %zu expected", nhandles, l->nhandles);
    if (!rc) rc = mp__launch_resolve(l);
    if (rc) {
        if (report) report(report_ctx, rc, mp_last_error_message());
        close_handles(handles, 0, nhandles);
        return 1;
    }
    mp__rd r = {l->args_wire, l->args_len, 0};
    rc = mp__args_decode(&r, handles, nhandles, &args);
    if (rc) {
        /* The args closed the handles they referenced; the parent's sentinel is ours. */
        if (report) report(report_ctx, rc, mp_last_error_message());
        close_handles(handles, 0, 1);
        return 1;
    }
    if (report) report(report_ctx, 0, NULL);
    const struct mp_backend_ops *ops = mp__backend_find(l->start_method);
    bool thread = ops && (ops->flags & MP_BACKEND_THREADS);
    mp_process *self = mp__process_child_begin(l, handles[0], thread);
    if (l->daemon && !thread) mp__os_die_with_parent(handles[0]);
    mp_target_fn target = (mp_target_fn)l->target_ptr;
    int code = target(args);
    mp__process_child_end(self, thread);
    if (!thread) mp__shutdown();
    mp_args_free(args);
    return code;
}
