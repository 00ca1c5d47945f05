/* queues: "Exchanging objects between processes" with a Queue, from Python's
 * multiprocessing documentation.
 *
 *     from multiprocessing import Process, Queue
 *
 *     def f(q):
 *         q.put([42, None, 'hello'])
 *
 *     if __name__ == '__main__':
 *         q = Queue()
 *         p = Process(target=f, args=(q,))
 *         p.start()
 *         print(q.get())    # prints "[42, None, 'hello']"
 *         p.join()
 *
 * Usage: queues [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "queues: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static int f(mp_args *args) {
    mp_queue *q = mp_args_queue(args, 0);
    mp_value *msg = mp_value_list_new();
    if (!q || !msg) return 2;
    mp_value_list_append(msg, mp_value_int(42));
    mp_value_list_append(msg, mp_value_none());
    mp_value_list_append(msg, mp_value_str("hello"));
    int rc = mp_queue_put(q, msg, MP_FOREVER);
    mp_value_free(msg);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_queue *q = NULL;
    mp_args *args = NULL;
    mp_process *p = NULL;
    mp_value *got = NULL;
    int code = -1;
    if ((rc = mp_queue_new(ctx, 0, &q)) < 0) {
        fail("mp_queue_new", rc);
        goto out;
    }
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_queue(args, q)) < 0) {
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
    /* A bounded wait: a child that failed before putting must not hang the example. */
    if ((rc = mp_queue_get(q, &got, 30.0)) < 0) {
        fail("mp_queue_get", rc);
        goto out;
    }
    print_value(got);
    printf("\n");
    if ((rc = mp_process_join(p, MP_FOREVER)) < 0 || (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("join", rc);
        goto out;
    }
    if (code != 0) {
        fprintf(stderr, "queues: child exited with %d\n", code);
        rc = MP_ECHILD;
    }
out:
    mp_value_free(got);
    mp_process_free(p);
    mp_args_free(args);
    mp_queue_free(q);
    return rc < 0 ? 1 : 0;
}
