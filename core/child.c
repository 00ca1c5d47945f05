/* The child's side of every start method: what runs between the backend delivering a
 * decoded launch with its handles and the end of the child. */
#include "launch.h"
#include "os.h"
#include "process.h"

static void close_handles(mp_os_handle *h, size_t from, size_t n) {
    for (size_t i = from; i < n; i++)
        if (h[i] != MP_INVALID_OS_HANDLE) mp__os_handle_close(h[i]);
}

int mp__child_prepare(mp__launch *l, mp_os_handle *handles, size_t nhandles, mp_args **args) {
    *args = NULL;
    int rc = 0;
    if (nhandles != l->nhandles || nhandles < 1)
        rc = mp__err(MP_EPROTO, "launch: %zu handles arrived, %zu expected", nhandles, l->nhandles);
    if (!rc) rc = mp__launch_resolve(l);
    if (rc) {
        close_handles(handles, 0, nhandles);
        return rc;
    }
    mp__rd r = {l->args_wire, l->args_len, 0};
    rc = mp__args_decode(&r, handles, nhandles, args);
    /* On failure the args closed the handles they referenced; the sentinel is ours. */
    if (rc) close_handles(handles, 0, 1);
    return rc;
}

int mp__child_exec(mp__launch *l, mp_args *args, mp_os_handle parent_sentinel, mp__report_fn report,
                   void *report_ctx) {
    bool thread = l->flags & MP_BACKEND_THREADS;
    mp_process *self = mp__process_child_begin(l, parent_sentinel, thread);
    if (!self) {
        if (report) report(report_ctx, MP_ENOMEM, mp_last_error_message());
        mp_args_free(args);
        mp__os_handle_close(parent_sentinel);
        return 1;
    }
    if (report) report(report_ctx, 0, NULL);
    if (l->daemon && !thread) mp__os_die_with_parent(parent_sentinel);
    /* From here an exit runs the handlers the target registers, then our cleanup, and
     * not the handlers this process inherited (a fork child's copy of its parent's):
     * the same whether the target returns or calls exit itself. */
    if (!thread) mp__os_exit_mark(mp__shutdown);
    mp_target_fn target = (mp_target_fn)l->target_ptr;
    mp_log(MP_LOG_INFO, "child process calling its target");
    int code = target(args);
    mp_log(MP_LOG_INFO, "process exiting with exitcode %d", code);
    mp__process_child_end(self, thread);
    /* A process keeps its arguments to the end, as Python's do: the target's exit
     * handlers may still use them. */
    if (!thread) mp__os_exit_handlers(code);
    mp_args_free(args);
    return code;
}

int mp__child_run(mp__launch *l, mp_os_handle *handles, size_t nhandles, mp__report_fn report,
                  void *report_ctx) {
    mp_args *args;
    int rc = mp__child_prepare(l, handles, nhandles, &args);
    if (rc) {
        if (report) report(report_ctx, rc, mp_last_error_message());
        return 1;
    }
    return mp__child_exec(l, args, handles[0], report, report_ctx);
}
