/* pipes: "Exchanging objects between processes" with a Pipe, from Python's
 * multiprocessing documentation.
 *
 *     from multiprocessing import Process, Pipe
 *
 *     def f(conn):
 *         conn.send([42, None, 'hello'])
 *         conn.close()
 *
 *     if __name__ == '__main__':
 *         parent_conn, child_conn = Pipe()
 *         p = Process(target=f, args=(child_conn,))
 *         p.start()
 *         print(parent_conn.recv())   # prints "[42, None, 'hello']"
 *         p.join()
 *
 * Usage: pipes [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "pipes: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static int f(mp_args *args) {
    mp_connection *conn = mp_args_connection(args, 0);
    mp_value *msg = mp_value_list_new();
    if (!conn || !msg) return 2;
    mp_value_list_append(msg, mp_value_int(42));
    mp_value_list_append(msg, mp_value_none());
    mp_value_list_append(msg, mp_value_str("hello"));
    int rc = mp_connection_send(conn, msg);
    mp_value_free(msg);
    mp_connection_close(conn);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_connection *parent_conn = NULL, *child_conn = NULL;
    mp_args *args = NULL;
    mp_process *p = NULL;
    mp_value *got = NULL;
    int code = -1;
    if ((rc = mp_pipe(true, &parent_conn, &child_conn)) < 0) {
        fail("mp_pipe", rc);
        goto out;
    }
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_connection(args, child_conn)) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts opts = {.target = f, .args = args};
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    fflush(stdout);
    if ((rc = mp_process_start(p)) < 0) {
        fail("mp_process_start", rc);
        goto out;
    }
    /* The parent's copy of the child's end is not needed any more. */
    mp_connection_close(child_conn);
    if ((rc = mp_connection_recv(parent_conn, &got)) < 0) {
        fail("mp_connection_recv", rc);
        goto out;
    }
    print_value(got);
    printf("\n");
    if ((rc = mp_process_join(p, MP_FOREVER)) < 0 || (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("join", rc);
        goto out;
    }
    if (code != 0) {
        fprintf(stderr, "pipes: child exited with %d\n", code);
        rc = MP_ECHILD;
    }
out:
    mp_value_free(got);
    mp_process_free(p);
    mp_args_free(args);
    mp_connection_free(parent_conn);
    mp_connection_free(child_conn);
    return rc < 0 ? 1 : 0;
}
