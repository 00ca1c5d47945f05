/* info: the documentation's "show the individual process IDs involved" example.
 *
 *     def info(title):
 *         print(title)
 *         print('module name:', __name__)
 *         print('parent process:', os.getppid())
 *         print('process id:', os.getpid())
 *
 *     def f(name):
 *         info('function f')
 *         print('hello', name)
 *
 *     if __name__ == '__main__':
 *         info('main line')
 *         p = Process(target=f, args=('bob',))
 *         p.start()
 *         p.join()
 *
 * C has no module name, so info() prints what identifies a process here instead: the
 * start method, the process name, the parent (as the library sees it) and the pid.
 *
 * Usage: info [start-method]   (sets the global start method, like
 *                                multiprocessing.set_start_method) */
#include <inttypes.h>
#include <stdio.h>

#include "multiproc.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "info: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static void info(const char *title) {
    mp_process *parent = mp_parent_process();
    printf("%s\n", title);
    printf("  start method:   %s\n", mp_get_start_method(false));
    printf("  process name:   %s\n", mp_process_name(mp_current_process()));
    if (parent)
        printf("  parent process: %" PRId64 " (%s)\n", mp_process_pid(parent),
               mp_process_name(parent));
    else
        printf("  parent process: none, this is the main process\n");
    printf("  process id:     %" PRId64 "\n", mp_getpid());
    fflush(stdout); /* keep the parent's and the child's lines in order on a pipe */
}

/* args: the name to greet, and the main process's pid so the child can check that
 * the library reports the right parent (a dummy child is a thread: same pid). */
static int f(mp_args *args) {
    const char *name = mp_args_str(args, 0);
    info("function f");
    printf("hello %s\n", name ? name : "(no name given)");
    fflush(stdout);
    mp_process *parent = mp_parent_process();
    if (!parent || mp_process_pid(parent) != mp_args_int(args, 1)) {
        fprintf(stderr, "info: the child does not see the main process as its parent\n");
        return 3;
    }
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    if (argc > 1 && (rc = mp_set_start_method(argv[1], false)) < 0)
        return fail("mp_set_start_method", rc);

    info("main line");

    mp_process_opts opts = {.target = f};
    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_str(args, "bob")) < 0 ||
        (rc = mp_args_add_int(args, mp_getpid())) < 0) {
        fail("mp_args", rc);
        goto out;
    }
    opts.args = args;
    /* NULL context: the global start method set above (or the default). */
    if ((rc = mp_process_new(NULL, &opts, &p)) < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    fflush(stdout);
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
    printf("%s ran on %s and exited with code %d\n", mp_process_name(p), mp_process_start_method(p),
           code);
    if (code != 0) rc = MP_ECHILD;

out:
    mp_process_free(p);
    mp_args_free(args);
    return rc < 0 ? 1 : 0;
}
