/* locks: "Synchronization between processes", from Python's multiprocessing
 * documentation: a lock keeps the children's lines from mixing.
 *
 *     from multiprocessing import Process, Lock
 *
 *     def f(l, i):
 *         l.acquire()
 *         try:
 *             print('hello world', i)
 *         finally:
 *             l.release()
 *
 *     if __name__ == '__main__':
 *         lock = Lock()
 *         for num in range(10):
 *             Process(target=f, args=(lock, num)).start()
 *
 * (Python joins the children at exit; here main joins them explicitly.)
 * Usage: locks [start-method] */
#include <stdio.h>

#include "multiproc.h"

#define NPROC 10

static int fail(const char *what, int rc) {
    fprintf(stderr, "locks: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static int f(mp_args *args) {
    mp_lock *l = mp_args_lock(args, 0);
    if (!l) return 2;
    int rc = mp_lock_acquire(l, MP_FOREVER);
    if (rc < 0 && rc != MP_EOWNERDEAD) return 1;
    printf("hello world %lld\n", (long long)mp_args_int(args, 1));
    fflush(stdout);
    return mp_lock_release(l) < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_lock *lock = NULL;
    mp_process *procs[NPROC] = {0};
    int failed = 0;
    if ((rc = mp_lock_new(ctx, &lock)) < 0) return fail("mp_lock_new", rc);
    fflush(stdout);
    for (int num = 0; num < NPROC; num++) {
        mp_args *args = NULL;
        if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_lock(args, lock)) < 0 ||
            (rc = mp_args_add_int(args, num)) < 0) {
            mp_args_free(args);
            failed = fail("args", rc);
            break;
        }
        mp_process_opts opts = {.target = f, .args = args};
        rc = mp_process_new(ctx, &opts, &procs[num]);
        mp_args_free(args); /* copied by mp_process_new */
        if (rc < 0 || (rc = mp_process_start(procs[num])) < 0) {
            failed = fail("start", rc);
            break;
        }
    }
    for (int num = 0; num < NPROC; num++) {
        int code = -1;
        if (!procs[num]) continue;
        if (mp_process_join(procs[num], MP_FOREVER) == 0 &&
            mp_process_exitcode(procs[num], &code) == 0 && code != 0) {
            fprintf(stderr, "locks: child %d exited with %d\n", num, code);
            failed = 1;
        }
        mp_process_free(procs[num]);
    }
    mp_lock_free(lock);
    return failed;
}
