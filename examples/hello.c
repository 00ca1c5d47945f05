/* hello: the first example of Python's multiprocessing documentation.
 *
 *     from multiprocessing import Process
 *
 *     def f(name):
 *         print('hello', name)
 *
 *     if __name__ == '__main__':
 *         p = Process(target=f, args=('bob',), name='greeter')
 *         p.start()
 *         p.join()
 *
 * Usage: hello [start-method]   (default: the library's default start method) */
#include <stdio.h>
#include <string.h>

#include "multiproc.h"

/* Prints what failed, the code's message and the library's detail; returns 1 so that
 * main can `return fail(...)`. */
static int fail(const char *what, int rc) {
    fprintf(stderr, "hello: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* The target runs in the child. Its return value is the child's exit code, like
 * sys.exit(n) in Python. */
static int f(mp_args *args) {
    const char *name = mp_args_str(args, 0);
    if (!name) return 2; /* wrong arguments: the parent reports a non-zero exit code */
    printf("hello %s (from process \"%s\")\n", name, mp_process_name(mp_current_process()));
    fflush(stdout); /* stdout may be a pipe: write before the child ends */
    return 0;
}

int main(int argc, char **argv) {
    /* First thing: in a spawned child this call runs f and never returns. */
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);

    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_process_opts opts = {.target = f, .name = "greeter"};
    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;
    rc = mp_args_new(&args);
    if (rc < 0) return fail("mp_args_new", rc);
    rc = mp_args_add_str(args, "bob");
    if (rc < 0) {
        fail("mp_args_add_str", rc);
        goto out;
    }

    opts.args = args; /* copied by mp_process_new */
    rc = mp_process_new(ctx, &opts, &p);
    if (rc < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    /* A fork child inherits unwritten stdio buffers; flush so nothing prints twice. */
    fflush(stdout);
    rc = mp_process_start(p);
    if (rc < 0) {
        fail("mp_process_start", rc);
        goto out;
    }
    rc = mp_process_join(p, MP_FOREVER);
    if (rc < 0) {
        fail("mp_process_join", rc);
        goto out;
    }
    rc = mp_process_exitcode(p, &code);
    if (rc < 0) {
        fail("mp_process_exitcode", rc);
        goto out;
    }
    printf("%s (%s) exited with code %d\n", mp_process_name(p), mp_context_name(ctx), code);
    if (code != 0) rc = MP_ECHILD;

out:
    mp_process_free(p);
    mp_args_free(args);
    return rc < 0 ? 1 : 0;
}
