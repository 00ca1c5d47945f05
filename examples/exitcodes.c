/* exitcodes: the documentation's Process.terminate example, and where exit codes
 * come from.
 *
 *     >>> p = multiprocessing.Process(target=time.sleep, args=(1000,))
 *     >>> print(p, p.is_alive())
 *     <Process ... initial> False
 *     >>> p.start()
 *     >>> print(p, p.is_alive())
 *     <Process ... started> True
 *     >>> p.terminate()
 *     >>> time.sleep(0.1)
 *     >>> print(p, p.is_alive())
 *     <Process ... stopped exitcode=-SIGTERM> False
 *     >>> p.exitcode == -signal.SIGTERM
 *     True
 *
 * Then the same with kill (-SIGKILL on posix; on Windows kill is terminate), and a target that returns 3, which is
 * what sys.exit(3) is in Python. On "dummy" a process is a thread, which cannot be
 * terminated (MP_ENOTSUP, as multiprocessing.dummy has no terminate); the example
 * shows that and asks the thread to stop instead.
 *
 * Usage: exitcodes [start-method] */
#include "example_util.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

static int fail(const char *what, int rc) {
    fprintf(stderr, "exitcodes: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* For a check of ours that failed, where the library reported nothing. */
static int fail_check(const char *what) {
    fprintf(stderr, "exitcodes: check failed: %s\n", what);
    return 1;
}

/* Only a dummy child (a thread of this process) can see this flag: it is how we stop
 * a "process" that cannot be terminated. Real children are stopped by signals. */
static atomic_bool stop_requested;

/* time.sleep(args[0]) in 10 ms slices, so a dummy child notices stop_requested. */
static int sleeper(mp_args *args) {
    double seconds = mp_args_double(args, 0);
    for (double slept = 0; slept < seconds && !atomic_load(&stop_requested); slept += 0.01)
        ex_sleep_ms(10);
    return 0;
}

/* sys.exit(3) */
static int exit3(mp_args *args) {
    (void)args;
    return 3;
}

/* Prints the process as Python's repr does: its state, then is_alive(). */
static void show(mp_process *p) {
    int code;
    bool alive = mp_process_is_alive(p);
    printf("<Process name='%s' pid=%" PRId64, mp_process_name(p), mp_process_pid(p));
    if (mp_process_exitcode(p, &code) == 0)
        printf(" stopped exitcode=%d>", code);
    else
        printf(" %s>", mp_process_pid(p) ? "started" : "initial");
    printf(" is_alive=%s\n", alive ? "True" : "False");
    fflush(stdout);
}

/* Creates a process running target(args = [seconds]) on ctx. */
static int make(mp_context *ctx, mp_target_fn target, double seconds, mp_process **out) {
    mp_process_opts opts = {.target = target};
    mp_args *args = NULL;
    int rc = mp_args_new(&args);
    if (rc == 0) rc = mp_args_add_double(args, seconds);
    opts.args = args;
    if (rc == 0) rc = mp_process_new(ctx, &opts, out);
    mp_args_free(args); /* mp_process_new copied them */
    return rc;
}

/* Starts a 1000 s sleeper, stops it with stop_fn ("terminate" or "kill") and checks
 * that is_alive and the exit code say what Python's would. Returns 0 or 1. */
static int stop_demo(mp_context *ctx, const char *verb, int (*stop_fn)(mp_process *),
                     int expected) {
    mp_process *p = NULL;
    int code = 0, failed = 0;
    bool stopped_by_flag = false;
    int rc = make(ctx, sleeper, 1000.0, &p);
    if (rc < 0) return fail("mp_process_new", rc);
    printf("-- %s\n", verb);
    show(p);
    if (mp_process_is_alive(p)) failed |= fail_check("is_alive before start");
    fflush(stdout); /* a fork child must not inherit unwritten output */
    atomic_store(&stop_requested, false);
    if ((rc = mp_process_start(p)) < 0) {
        failed |= fail("mp_process_start", rc);
        goto out;
    }
    show(p);
    if (!mp_process_is_alive(p)) failed |= fail_check("is_alive after start");

    rc = stop_fn(p);
    if (rc == MP_ENOTSUP) {
        printf("%s: %s on %s; asking the thread to stop instead\n", verb, mp_strerror(rc),
               mp_process_start_method(p));
        atomic_store(&stop_requested, true);
        stopped_by_flag = true;
    } else if (rc < 0) {
        failed |= fail(verb, rc);
        mp_process_kill(p); /* do not leave a 1000 s sleeper behind */
    }
    /* Python sleeps 0.1 s here and hopes; joining makes the outcome certain. */
    if ((rc = mp_process_join(p, 30.0)) < 0) {
        failed |= fail("mp_process_join", rc);
        atomic_store(&stop_requested, true);
        mp_process_kill(p); /* best effort, as above */
        goto out;
    }
    show(p);
    if (mp_process_is_alive(p)) failed |= fail_check("is_alive after join");
    if ((rc = mp_process_exitcode(p, &code)) < 0) {
        failed |= fail("mp_process_exitcode", rc);
        goto out;
    }
    if (stopped_by_flag) {
        if (code != 0) failed |= fail_check("the stopped thread's exit code is 0");
    } else {
        printf("exitcode == %d: %s\n", expected, code == expected ? "True" : "False");
        if (code != expected) failed |= fail_check("exit code after stopping");
    }
out:
    mp_process_free(p);
    return failed;
}

static int return_demo(mp_context *ctx) {
    mp_process *p = NULL;
    int code = 0, failed = 0;
    int rc = make(ctx, exit3, 0.0, &p);
    if (rc < 0) return fail("mp_process_new", rc);
    printf("-- return 3 (sys.exit(3))\n");
    fflush(stdout);
    if ((rc = mp_process_start(p)) < 0 || (rc = mp_process_join(p, 30.0)) < 0 ||
        (rc = mp_process_exitcode(p, &code)) < 0) {
        failed = fail("start/join/exitcode", rc);
        goto out;
    }
    show(p);
    printf("exitcode == 3: %s\n", code == 3 ? "True" : "False");
    if (code != 3) failed = fail_check("exitcode == 3");
out:
    mp_process_free(p);
    return failed;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);
    printf("start method: %s\n", mp_context_name(ctx));

    int failed = stop_demo(ctx, "terminate", mp_process_terminate, -SIGTERM);
#ifdef _WIN32
    /* Windows has no SIGKILL: as in Python, kill is TerminateProcess too. */
    failed |= stop_demo(ctx, "kill", mp_process_kill, -SIGTERM);
#else
    failed |= stop_demo(ctx, "kill", mp_process_kill, -SIGKILL);
#endif
    failed |= return_demo(ctx);
    return failed;
}
