/* shared_state: "Sharing state between processes — shared memory", from Python's
 * multiprocessing documentation.
 *
 *     from multiprocessing import Process, Value, Array
 *
 *     def f(n, a):
 *         n.value = 3.1415927
 *         for i in range(len(a)):
 *             a[i] = -a[i]
 *
 *     if __name__ == '__main__':
 *         num = Value('d', 0.0)
 *         arr = Array('i', range(10))
 *         p = Process(target=f, args=(num, arr))
 *         p.start()
 *         p.join()
 *         print(num.value)   # 3.1415927
 *         print(arr[:])      # [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
 *
 * Usage: shared_state [start-method] */
#include <stdio.h>

#include "multiproc.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "shared_state: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static int f(mp_args *args) {
    mp_shared_array *n = mp_args_shared_array(args, 0);
    mp_shared_array *a = mp_args_shared_array(args, 1);
    if (!n || !a) return 2;
    if (mp_shared_array_set_double(n, 0, 3.1415927) < 0) return 1;
    for (size_t i = 0; i < mp_shared_array_len(a); i++) {
        int64_t x;
        if (mp_shared_array_get_int(a, i, &x) < 0 || mp_shared_array_set_int(a, i, -x) < 0)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_shared_array *num = NULL, *arr = NULL;
    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;
    double zero = 0.0;
    int init[10];
    for (int i = 0; i < 10; i++) init[i] = i;
    if ((rc = mp_shared_value_new(ctx, 'd', &zero, MP_LOCK_NEW, NULL, &num)) < 0 ||
        (rc = mp_shared_array_new(ctx, 'i', 10, init, MP_LOCK_NEW, NULL, &arr)) < 0) {
        fail("Value/Array", rc);
        goto out;
    }
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_shared_array(args, num)) < 0 ||
        (rc = mp_args_add_shared_array(args, arr)) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts opts = {.target = f, .args = args};
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    fflush(stdout);
    if ((rc = mp_process_start(p)) < 0 || (rc = mp_process_join(p, MP_FOREVER)) < 0 ||
        (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("start/join", rc);
        goto out;
    }
    if (code != 0) {
        fprintf(stderr, "shared_state: child exited with %d\n", code);
        rc = MP_ECHILD;
        goto out;
    }
    double v;
    int got[10];
    if ((rc = mp_shared_array_get_double(num, 0, &v)) < 0 ||
        (rc = mp_shared_array_get_slice(arr, 0, 10, got)) < 0) {
        fail("read back", rc);
        goto out;
    }
    printf("%.7f\n[", v);
    for (int i = 0; i < 10; i++) printf("%s%d", i ? ", " : "", got[i]);
    printf("]\n");
out:
    mp_process_free(p);
    mp_args_free(args);
    mp_shared_array_free(num);
    mp_shared_array_free(arr);
    return rc < 0 ? 1 : 0;
}
