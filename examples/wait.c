/* wait: the documentation's multiprocessing.connection.wait example: one process reads
 * the messages of several children at once, whichever has something to say.
 *
 *     from multiprocessing import Process, Pipe, current_process
 *     from multiprocessing.connection import wait
 *
 *     def foo(w):
 *         for i in range(10):
 *             w.send((i, current_process().name))
 *         w.close()
 *
 *     if __name__ == '__main__':
 *         readers = []
 *
 *         for i in range(4):
 *             r, w = Pipe(duplex=False)
 *             readers.append(r)
 *             p = Process(target=foo, args=(w,))
 *             p.start()
 *             # We close the writable end of the pipe now to be sure that
 *             # p is the only process which owns a handle for it.  This
 *             # ensures that when p closes its handle for the writable end,
 *             # wait() will promptly report the readable end as being ready.
 *             w.close()
 *
 *         while readers:
 *             for r in wait(readers):
 *                 try:
 *                     msg = r.recv()
 *                 except EOFError:
 *                     readers.remove(r)
 *                 else:
 *                     print(msg)
 *
 * (Python joins the children at exit; here main joins them.)
 * Usage: wait [start-method] */
#include "example_util.h"

#define NPROC 4

static int fail(const char *what, int rc) {
    fprintf(stderr, "wait: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static int foo(mp_args *args) {
    mp_connection *w = mp_args_connection(args, 0);
    if (!w) return 2;
    for (int i = 0; i < 10; i++) {
        mp_value *msg = mp_value_tuple_new();
        mp_value_list_append(msg, mp_value_int(i));
        mp_value_list_append(msg, mp_value_str(mp_process_name(mp_current_process())));
        int rc = mp_connection_send(w, msg);
        mp_value_free(msg);
        if (rc < 0) return fail("send", rc);
    }
    mp_connection_close(w);
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_connection *readers[NPROC] = {0};
    mp_process *procs[NPROC] = {0};
    int failed = 1, messages = 0;
    size_t open = 0;
    for (int i = 0; i < NPROC; i++) {
        mp_connection *w = NULL;
        mp_args *args = NULL;
        if ((rc = mp_pipe(false, &readers[i], &w)) < 0) {
            fail("Pipe", rc);
            goto out;
        }
        open++;
        if ((rc = mp_args_new(&args)) == 0 && (rc = mp_args_add_connection(args, w)) == 0) {
            mp_process_opts opts = {.target = foo, .args = args};
            if ((rc = mp_process_new(ctx, &opts, &procs[i])) == 0) {
                fflush(stdout);
                rc = mp_process_start(procs[i]);
            }
        }
        mp_args_free(args);
        /* p is now the only owner of the writable end: its close is our end of file. */
        mp_connection_free(w);
        if (rc < 0) {
            fail("start", rc);
            goto out;
        }
    }

    while (open) {
        mp_waitable objs[NPROC];
        int which[NPROC];
        bool ready[NPROC];
        size_t n = 0;
        for (int i = 0; i < NPROC; i++)
            if (readers[i]) {
                which[n] = i;
                objs[n++] = mp_waitable_connection(readers[i]);
            }
        /* Bounded: a child that hangs must not hang the example. */
        if ((rc = mp_wait(objs, n, 60, ready, NULL)) < 0) {
            fail("wait", rc);
            goto out;
        }
        for (size_t k = 0; k < n; k++) {
            if (!ready[k]) continue;
            mp_connection **r = &readers[which[k]];
            mp_value *msg = NULL;
            rc = mp_connection_recv(*r, &msg);
            if (rc == MP_EOF) { /* EOFError: readers.remove(r) */
                mp_connection_free(*r);
                *r = NULL;
                open--;
                continue;
            }
            if (rc < 0) {
                fail("recv", rc);
                goto out;
            }
            print_value(msg);
            printf("\n");
            mp_value_free(msg);
            messages++;
        }
    }
    printf("%d messages from %d processes\n", messages, NPROC);
    failed = messages != 10 * NPROC;
out:
    for (int i = 0; i < NPROC; i++) {
        int code = -1;
        if (procs[i] && (mp_process_join(procs[i], 60) < 0 ||
                         mp_process_exitcode(procs[i], &code) < 0 || code != 0)) {
            fprintf(stderr, "wait: %s ended with %d\n", mp_process_name(procs[i]), code);
            failed = 1;
        }
        mp_process_free(procs[i]);
        mp_connection_free(readers[i]);
    }
    return failed;
}
