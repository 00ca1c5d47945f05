/* pool: "Using a pool of workers", from Python's multiprocessing documentation (the
 * tour of every method is pool_demo; a long map with a progress bar is progress).
 *
 *     from multiprocessing import Pool, TimeoutError
 *     import time
 *     import os
 *
 *     def f(x):
 *         return x*x
 *
 *     if __name__ == '__main__':
 *         with Pool(processes=4) as pool:
 *             print(pool.map(f, range(10)))           # "[0, 1, 4,..., 81]"
 *             for i in pool.imap_unordered(f, range(10)):
 *                 print(i)                            # the same, in any order
 *             res = pool.apply_async(f, (20,))        # runs in *only* one process
 *             print(res.get(timeout=1))               # prints "400"
 *             res = pool.apply_async(os.getpid, ())   # runs in *only* one process
 *             print(res.get(timeout=1))               # the PID of that process
 *             multiple_results = [pool.apply_async(os.getpid, ()) for i in range(4)]
 *             print([res.get(timeout=1) for res in multiple_results])
 *             res = pool.apply_async(time.sleep, (10,))  # one worker sleeps 10 s
 *             try:
 *                 print(res.get(timeout=1))
 *             except TimeoutError:
 *                 print("We lacked patience and got a multiprocessing.TimeoutError")
 *             print("For the moment, the pool remains available for more work")
 *         # exiting the 'with'-block has stopped the pool
 *         print("Now the pool is closed and no longer available")
 *
 * The sleeping task sleeps 3 s here instead of 10: a ThreadPool (the dummy start
 * method) cannot stop a thread, so freeing it waits for the sleep to end.
 *
 * Usage: pool [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "pool: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* map and imap call f with the item; apply with the argument tuple, as f(*args). */
static int f(const mp_value *x, mp_value **result) {
    int64_t v = mp_value_as_int(x);
    *result = mp_value_int(v * v);
    return 0;
}

static int f_args(const mp_value *args, mp_value **result) {
    return f(mp_value_item(args, 0), result);
}

static int getpid_task(const mp_value *args, mp_value **result) {
    (void)args;
    *result = mp_value_int(mp_getpid());
    return 0;
}

static int sleep_task(const mp_value *args, mp_value **result) {
    ex_sleep_ms((unsigned)(mp_value_as_float(mp_value_item(args, 0)) * 1000));
    *result = NULL;
    return 0;
}

static mp_value *range(int n) {
    mp_value *l = mp_value_list_new();
    for (int i = 0; i < n; i++) mp_value_list_append(l, mp_value_int(i));
    return l;
}

static mp_value *args1(mp_value *v) {
    mp_value *t = mp_value_tuple_new();
    mp_value_list_append(t, v);
    return t;
}

static void print_ints(const mp_value *l) {
    printf("[");
    for (size_t i = 0; i < mp_value_len(l); i++)
        printf("%s%lld", i ? ", " : "", (long long)mp_value_as_int(mp_value_item(l, i)));
    printf("]\n");
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_pool *pool;
    mp_pool_opts po = {.processes = 4};
    if ((rc = mp_pool_new(ctx, &po, &pool)) < 0) return fail("mp_pool_new", rc);

    mp_value *ten = range(10), *out = NULL;
    if ((rc = mp_pool_map(pool, f, ten, NULL, &out)) < 0) return fail("map", rc);
    print_ints(out);
    mp_value_free(out);

    mp_imap *it;
    if ((rc = mp_pool_imap_unordered(pool, f, ten, NULL, &it)) < 0)
        return fail("imap_unordered", rc);
    mp_value *item;
    while ((rc = mp_imap_next(it, 10, &item)) == 0) {
        printf("%lld\n", (long long)mp_value_as_int(item));
        mp_value_free(item);
    }
    mp_imap_free(it);
    if (rc != MP_EOF) return fail("imap_next", rc);

    mp_value *a20 = args1(mp_value_int(20)), *none = mp_value_tuple_new();
    mp_async_result *res;
    const mp_value *v;
    if ((rc = mp_pool_apply_async(pool, f_args, a20, NULL, &res)) < 0 ||
        (rc = mp_async_result_get(res, 1, &v)) < 0)
        return fail("apply_async f(20)", rc);
    printf("%lld\n", (long long)mp_value_as_int(v));
    mp_async_result_free(res);

    if ((rc = mp_pool_apply_async(pool, getpid_task, none, NULL, &res)) < 0 ||
        (rc = mp_async_result_get(res, 1, &v)) < 0)
        return fail("apply_async getpid", rc);
    printf("%lld\n", (long long)mp_value_as_int(v));
    mp_async_result_free(res);

    mp_async_result *multiple[4];
    for (int i = 0; i < 4; i++)
        if ((rc = mp_pool_apply_async(pool, getpid_task, none, NULL, &multiple[i])) < 0)
            return fail("apply_async getpid", rc);
    printf("[");
    for (int i = 0; i < 4; i++) {
        if ((rc = mp_async_result_get(multiple[i], 1, &v)) < 0) return fail("get", rc);
        printf("%s%lld", i ? ", " : "", (long long)mp_value_as_int(v));
        mp_async_result_free(multiple[i]);
    }
    printf("]\n");

    mp_value *three = args1(mp_value_float(3.0));
    if ((rc = mp_pool_apply_async(pool, sleep_task, three, NULL, &res)) < 0)
        return fail("apply_async sleep", rc);
    rc = mp_async_result_get(res, 1, &v);
    if (rc == MP_ETIMEDOUT)
        printf("We lacked patience and got a multiprocessing.TimeoutError\n");
    else
        printf("%s\n", mp_strerror(rc));
    mp_async_result_free(res);
    printf("For the moment, the pool remains available for more work\n");

    mp_pool_free(pool); /* Python's with-block: terminate, join */
    printf("Now the pool is closed and no longer available\n");
    mp_value_free(ten);
    mp_value_free(a20);
    mp_value_free(none);
    mp_value_free(three);
    return 0;
}
