/* start_methods: the documentation's "Contexts and start methods" section.
 *
 *     import multiprocessing as mp
 *
 *     def foo(method):
 *         print('child on', method)
 *
 *     if __name__ == '__main__':
 *         mp.set_start_method('spawn')          # the global default...
 *         ctx = mp.get_context('forkserver')    # ...or a context per use
 *         p = ctx.Process(target=foo, args=('forkserver',))
 *
 * Runs one child on the global start method, then one on every start method this
 * platform offers (mp_get_all_start_methods: fork, spawn, forkserver, apr, dummy on
 * Linux; win32 and dummy on Windows). Each child checks that it was started the way
 * the parent asked for.
 *
 * Usage: start_methods [start-method]   set the global start method first
 *        start_methods --list           print the available methods, one per line */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "multiproc.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "start_methods: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* args: the start method the parent used. Exit code 3 when the child disagrees. */
static int foo(mp_args *args) {
    const char *expected = mp_args_str(args, 0);
    const char *actual = mp_process_start_method(mp_current_process());
    mp_process *parent = mp_parent_process();
    printf("  child on %-10s pid %" PRId64 ", name %s, parent pid %" PRId64 "\n",
           actual ? actual : "?", mp_getpid(), mp_process_name(mp_current_process()),
           parent ? mp_process_pid(parent) : (int64_t)0);
    fflush(stdout);
    if (!expected || !actual || strcmp(expected, actual) != 0) {
        fprintf(stderr, "start_methods: child expected %s, runs on %s\n", expected ? expected : "?",
                actual ? actual : "?");
        return 3;
    }
    return 0;
}

/* Runs foo on ctx (NULL: the global start method) and waits for it. 0 or 1. */
static int run_child(mp_context *ctx) {
    /* Ask the context, not mp_get_start_method: on Windows "spawn" names win32, and
     * the child reports the backend's own name. */
    mp_context *c = ctx ? ctx : mp_get_context(NULL);
    const char *method = c ? mp_context_name(c) : mp_get_start_method(false);
    mp_process_opts opts = {.target = foo};
    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;
    int rc;
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_str(args, method)) < 0) {
        fail("mp_args", rc);
        goto out;
    }
    opts.args = args;
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    fflush(stdout); /* a fork child must not inherit unwritten output */
    if ((rc = mp_process_start(p)) < 0) {
        fail("mp_process_start", rc);
        goto out;
    }
    if ((rc = mp_process_join(p, MP_FOREVER)) < 0) {
        fail("mp_process_join", rc);
        goto out;
    }
    if ((rc = mp_process_exitcode(p, &code)) < 0) {
        fail("mp_process_exitcode", rc);
        goto out;
    }
    printf("%-10s -> %s exited with code %d\n", method, mp_process_name(p), code);
    if (code != 0) rc = MP_ECHILD;
out:
    mp_process_free(p);
    mp_args_free(args);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);

    const char *const *methods = mp_get_all_start_methods();
    if (!methods || !methods[0]) {
        fprintf(stderr, "start_methods: no start method available\n");
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (size_t i = 0; methods[i]; i++) printf("%s\n", methods[i]);
        return 0;
    }
    if (argc > 1 && (rc = mp_set_start_method(argv[1], false)) < 0)
        return fail("mp_set_start_method", rc);

    printf("available start methods:");
    for (size_t i = 0; methods[i]; i++) printf(" %s%s", methods[i], i == 0 ? " (default)" : "");
    printf("\nglobal start method: %s\n", mp_get_start_method(false));

    int failed = run_child(NULL);
    for (size_t i = 0; methods[i]; i++) {
        mp_context *ctx = mp_get_context(methods[i]);
        if (!ctx) {
            failed |= fail(methods[i], MP_EINVAL);
            continue;
        }
        failed |= run_child(ctx);
    }
    return failed;
}
