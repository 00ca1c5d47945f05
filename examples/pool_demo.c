/* pool_demo: the documentation's "Using Pool" example (Doc/includes/mp_pool.py), a
 * tour of every Pool method: apply, apply_async, map, map_async, imap,
 * imap_unordered, starmap, starmap_async, error handling, timeouts, callbacks, close,
 * terminate, and what freeing a busy pool does (Python's "garbage collection").
 *
 *     def calculate(func, args):
 *         result = func(*args)
 *         return '%s says that %s%s = %s' % (
 *             multiprocessing.current_process().name, func.__name__, args, result)
 *     def mul(a, b): time.sleep(0.5*random.random()); return a * b
 *     def plus(a, b): time.sleep(0.5*random.random()); return a + b
 *     def f(x): return 1.0 / (x-5.0)
 *     def pow3(x): return x**3
 *     def noop(x): pass
 *
 *     TASKS = [(mul, (i, 7)) for i in range(10)] + [(plus, (i, 8)) for i in range(10)]
 *     results = [pool.apply_async(calculate, t) for t in TASKS]
 *     imap_it = pool.imap(calculatestar, TASKS)
 *     imap_unordered_it = pool.imap_unordered(calculatestar, TASKS)
 *     ... pool.map(calculatestar, TASKS)
 *     ... pool.map(pow3, range(N)), list(pool.imap(pow3, range(N), chunksize=N//8))
 *     ... pool.apply(f, (5,)) raises ZeroDivisionError, so do map and imap
 *     ... res.get(0.02) and it.next(0.02) until the result comes
 *     ... apply_async(mul, (7, 8), callback=A.append); map_async(pow3, ..., callback=A.extend)
 *     ... close(), join(); terminate(), join(); a pool that is dropped
 *
 * A function cannot travel in a value, so a task names its function: ('mul', (3, 7)),
 * looked up in a table by the worker. The tasks sleep up to 50 ms instead of 500 ms, and
 * the benchmarks map 100,000 items (Python's maps a million Nones with noop), so that
 * the whole tour takes a second or two. starmap, which mp_pool.py does not show, is
 * added.
 *
 * Usage: pool_demo [start-method] */
#include "example_util.h"

#define PROCESSES 4
#define N 100000

static int fail(const char *what, int rc) {
    fprintf(stderr, "pool_demo: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* ---- functions used by the tasks (they run in the workers) ---------------------- */

static _Thread_local uint64_t rng;

/* random.random() of this worker: a small generator seeded with the pid (or thread id). */
static double random01(void) {
    if (!rng) rng = (uint64_t)mp_getpid() * 2654435761u + 1;
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int64_t mul(int64_t a, int64_t b) {
    ex_sleep_ms((unsigned)(50 * random01()));
    return a * b;
}

static int64_t plus(int64_t a, int64_t b) {
    ex_sleep_ms((unsigned)(50 * random01()));
    return a + b;
}

static const struct {
    const char *name;
    int64_t (*fn)(int64_t, int64_t);
} functions[] = {{"mul", mul}, {"plus", plus}};

/* calculate(func, args) and calculatestar((func, args)) alike: apply passes the
 * argument tuple (func, args), map and imap the item, which is the same pair. */
static int calculate(const mp_value *task, mp_value **result) {
    const char *name = mp_value_as_str(mp_value_item(task, 0), NULL);
    const mp_value *args = mp_value_item(task, 1);
    if (!name || mp_value_len(args) != 2) return mp_task_error(MP_EINVAL, "TypeError: a task");
    int64_t a = mp_value_as_int(mp_value_item(args, 0)),
            b = mp_value_as_int(mp_value_item(args, 1));
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
        if (strcmp(functions[i].name, name) != 0) continue;
        char line[160];
        snprintf(line, sizeof line, "%s says that %s(%lld, %lld) = %lld",
                 mp_process_name(mp_current_process()), name, (long long)a, (long long)b,
                 (long long)functions[i].fn(a, b));
        *result = mp_value_str(line);
        return *result ? 0 : MP_ENOMEM;
    }
    return mp_task_error(MP_ENOENT, "NameError: name '%s' is not defined", name);
}

/* mul(a, b) as a task of its own: apply and starmap pass (a, b). */
static int mul_task(const mp_value *args, mp_value **result) {
    *result = mp_value_int(
        mul(mp_value_as_int(mp_value_item(args, 0)), mp_value_as_int(mp_value_item(args, 1))));
    return *result ? 0 : MP_ENOMEM;
}

static int f(const mp_value *x, mp_value **result) {
    double d = (double)mp_value_as_int(x) - 5.0;
    if (d == 0) return mp_task_error(MP_EINVAL, "ZeroDivisionError: float division by zero");
    *result = mp_value_float(1.0 / d);
    return *result ? 0 : MP_ENOMEM;
}

static int f_args(const mp_value *args, mp_value **result) {
    return f(mp_value_item(args, 0), result);
}

static int pow3(const mp_value *x, mp_value **result) {
    int64_t v = mp_value_as_int(x);
    *result = mp_value_int(v * v * v);
    return *result ? 0 : MP_ENOMEM;
}

static int pow3_args(const mp_value *args, mp_value **result) {
    return pow3(mp_value_item(args, 0), result);
}

static int noop(const mp_value *x, mp_value **result) {
    (void)x;
    *result = NULL; /* None */
    return 0;
}

/* time.sleep(args[0]) */
static int sleep_task(const mp_value *args, mp_value **result) {
    ex_sleep_ms((unsigned)(mp_value_as_float(mp_value_item(args, 0)) * 1000));
    *result = NULL;
    return 0;
}

/* ---- helpers of the main process ---------------------------------------------------- */

static mp_value *range(int64_t n) {
    mp_value *l = mp_value_list_new();
    for (int64_t i = 0; l && i < n; i++)
        if (mp_value_list_append(l, mp_value_int(i))) {
            mp_value_free(l);
            return NULL;
        }
    return l;
}

/* A tuple of a and b (taken). */
static mp_value *pair(mp_value *a, mp_value *b) {
    mp_value *t = mp_value_tuple_new();
    mp_value_list_append(t, a);
    mp_value_list_append(t, b);
    return t;
}

static mp_value *tuple1(mp_value *a) {
    mp_value *t = mp_value_tuple_new();
    mp_value_list_append(t, a);
    return t;
}

/* TASKS = [(mul, (i, 7)) for i in range(10)] + [(plus, (i, 8)) for i in range(10)] */
static mp_value *make_tasks(void) {
    mp_value *tasks = mp_value_list_new();
    for (int i = 0; i < 10; i++)
        mp_value_list_append(tasks,
                             pair(mp_value_str("mul"), pair(mp_value_int(i), mp_value_int(7))));
    for (int i = 0; i < 10; i++)
        mp_value_list_append(tasks,
                             pair(mp_value_str("plus"), pair(mp_value_int(i), mp_value_int(8))));
    return tasks;
}

/* list(it): every result of an imap, or the first error. */
static int drain(mp_imap *it, mp_value **out) {
    mp_value *l = mp_value_list_new(), *item = NULL;
    int rc;
    while ((rc = mp_imap_next(it, 60, &item)) == 0)
        if (mp_value_list_append(l, item ? item : mp_value_none()) < 0) rc = MP_ENOMEM;
    mp_imap_free(it);
    if (rc != MP_EOF) {
        mp_value_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* The callbacks' list A: callbacks run on the pool's result thread, one at a time. */
static void append_cb(void *ctx, const mp_value *result) {
    mp_value_list_append(ctx, mp_value_copy(result));
}

static void extend_cb(void *ctx, const mp_value *result) {
    for (size_t i = 0; i < mp_value_len(result); i++)
        mp_value_list_append(ctx, mp_value_copy(mp_value_item(result, i)));
}

/* Whether the call failed the way Python's ZeroDivisionError would. */
static bool zero_division(int rc) {
    return rc == MP_EINVAL && strstr(mp_last_error_message(), "ZeroDivisionError");
}

/* 100 sleeps of 0.1 s on a pool of two, then stop it: with terminate (and join), or by
 * freeing the pool. Every result not done fails with MP_ECLOSED, none hangs. */
static int stop_busy_pool(mp_context *ctx, bool by_terminate) {
    mp_pool *pool = NULL;
    mp_pool_opts po = {.processes = 2};
    mp_value *two = tuple1(mp_value_int(2)), *delta = tuple1(mp_value_float(0.1)), *r = NULL;
    mp_async_result *results[100] = {0};
    int rc, closed = 0, done = 0;
    if ((rc = mp_pool_new(ctx, &po, &pool)) < 0) goto out;
    if ((rc = mp_pool_apply(pool, pow3_args, two, &r)) < 0) goto out; /* ignore = ... */
    for (int i = 0; i < 100; i++)
        if ((rc = mp_pool_apply_async(pool, sleep_task, delta, NULL, &results[i])) < 0) goto out;
    if (by_terminate) {
        if ((rc = mp_pool_terminate(pool)) < 0 || (rc = mp_pool_join(pool, 60)) < 0) goto out;
    } else {
        mp_pool_free(pool); /* Python: results = pool = None */
        pool = NULL;
    }
    for (int i = 0; i < 100; i++) {
        const mp_value *v;
        int got = mp_async_result_get(results[i], 60, &v);
        if (got == MP_ECLOSED)
            closed++;
        else if (got == 0)
            done++;
        else
            rc = got;
    }
    printf("\t%d sleeps done, %d failed with MP_ECLOSED\n", done, closed);
out:
    for (int i = 0; i < 100; i++) mp_async_result_free(results[i]);
    mp_pool_free(pool);
    mp_value_free(two);
    mp_value_free(delta);
    mp_value_free(r);
    return rc;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    printf("cpu_count() = %d\n\n", mp_cpu_count());
    printf("Creating pool with %d processes (%s)\n\n", PROCESSES, mp_context_name(ctx));
    mp_pool *pool = NULL;
    mp_pool_opts po = {.processes = PROCESSES};
    if ((rc = mp_pool_new(ctx, &po, &pool)) < 0) return fail("Pool", rc);

    mp_value *tasks = make_tasks(), *list = NULL, *a = NULL, *b = NULL, *c = NULL;
    mp_value *ten = range(10), *n_items = range(N), *nones = mp_value_list_new();
    mp_value *five = tuple1(mp_value_int(5)), *seven_eight = pair(mp_value_int(7), mp_value_int(8));
    mp_value *half = tuple1(mp_value_float(0.2)), *callbacks = mp_value_list_new();
    mp_async_result *results[20] = {0}, *res = NULL;
    mp_imap *imap_it = NULL, *imap_unordered_it = NULL, *it = NULL;
    const mp_value *v;
    size_t ntasks = mp_value_len(tasks);
    int failed = 1;
    for (int i = 0; i < N; i++) mp_value_list_append(nones, mp_value_none());

    /* ---- the tests ---- */
    for (size_t i = 0; i < ntasks; i++)
        if ((rc = mp_pool_apply_async(pool, calculate, mp_value_item(tasks, i), NULL,
                                      &results[i])) < 0) {
            fail("apply_async", rc);
            goto out;
        }
    if ((rc = mp_pool_imap(pool, calculate, tasks, NULL, &imap_it)) < 0 ||
        (rc = mp_pool_imap_unordered(pool, calculate, tasks, NULL, &imap_unordered_it)) < 0) {
        fail("imap", rc);
        goto out;
    }
    printf("Ordered results using pool.apply_async():\n");
    for (size_t i = 0; i < ntasks; i++) {
        if ((rc = mp_async_result_get(results[i], 60, &v)) < 0) {
            fail("get", rc);
            goto out;
        }
        printf("\t %s\n", mp_value_as_str(v, NULL));
    }
    printf("\nOrdered results using pool.imap():\n");
    rc = drain(imap_it, &list);
    imap_it = NULL;
    if (rc < 0) {
        fail("imap", rc);
        goto out;
    }
    for (size_t i = 0; i < mp_value_len(list); i++)
        printf("\t %s\n", mp_value_as_str(mp_value_item(list, i), NULL));
    mp_value_free(list);
    printf("\nUnordered results using pool.imap_unordered():\n");
    rc = drain(imap_unordered_it, &list);
    imap_unordered_it = NULL;
    if (rc < 0) {
        fail("imap_unordered", rc);
        goto out;
    }
    for (size_t i = 0; i < mp_value_len(list); i++)
        printf("\t %s\n", mp_value_as_str(mp_value_item(list, i), NULL));
    mp_value_free(list);
    printf("\nOrdered results using pool.map() --- will block till complete:\n");
    if ((rc = mp_pool_map(pool, calculate, tasks, NULL, &list)) < 0) {
        fail("map", rc);
        goto out;
    }
    for (size_t i = 0; i < mp_value_len(list); i++)
        printf("\t %s\n", mp_value_as_str(mp_value_item(list, i), NULL));
    mp_value_free(list);
    list = NULL;

    /* ---- simple benchmarks (the times are printed, not checked) ---- */
    printf("\ndef pow3(x): return x**3\n");
    double t = ex_now();
    a = mp_value_list_new();
    for (int i = 0; i < N; i++) {
        mp_value *r = NULL;
        pow3(mp_value_item(n_items, i), &r);
        mp_value_list_append(a, r);
    }
    printf("\tmap(pow3, range(%d)):\n\t\t%.4f seconds\n", N, ex_now() - t);
    t = ex_now();
    if ((rc = mp_pool_map(pool, pow3, n_items, NULL, &b)) < 0) {
        fail("map pow3", rc);
        goto out;
    }
    printf("\tpool.map(pow3, range(%d)):\n\t\t%.4f seconds\n", N, ex_now() - t);
    t = ex_now();
    mp_call_opts eighth = {.chunksize = N / 8};
    if ((rc = mp_pool_imap(pool, pow3, n_items, &eighth, &it)) < 0 || (rc = drain(it, &c)) < 0) {
        it = NULL;
        fail("imap pow3", rc);
        goto out;
    }
    it = NULL;
    printf("\tlist(pool.imap(pow3, range(%d), chunksize=%d)):\n\t\t%.4f seconds\n", N, N / 8,
           ex_now() - t);
    if (!mp_value_equal(a, b) || !mp_value_equal(b, c)) {
        fprintf(stderr, "pool_demo: A == B == C is false\n");
        goto out;
    }
    mp_value_free(a);
    mp_value_free(b);
    mp_value_free(c);
    a = b = c = NULL;

    printf("\ndef noop(x): pass\nL = [None] * %d\n", N);
    t = ex_now();
    a = mp_value_list_new();
    for (int i = 0; i < N; i++) mp_value_list_append(a, mp_value_none());
    printf("\tmap(noop, L):\n\t\t%.4f seconds\n", ex_now() - t);
    t = ex_now();
    if ((rc = mp_pool_map(pool, noop, nones, NULL, &b)) < 0) {
        fail("map noop", rc);
        goto out;
    }
    printf("\tpool.map(noop, L):\n\t\t%.4f seconds\n", ex_now() - t);
    t = ex_now();
    if ((rc = mp_pool_imap(pool, noop, nones, &eighth, &it)) < 0 || (rc = drain(it, &c)) < 0) {
        it = NULL;
        fail("imap noop", rc);
        goto out;
    }
    it = NULL;
    printf("\tlist(pool.imap(noop, L, chunksize=%d)):\n\t\t%.4f seconds\n", N / 8, ex_now() - t);
    if (!mp_value_equal(a, b) || !mp_value_equal(b, c)) {
        fprintf(stderr, "pool_demo: A == B == C is false for noop\n");
        goto out;
    }

    /* ---- error handling ---- */
    printf("\nTesting error handling:\n");
    /* Python's imap sends one item per task by default: a failed task fails its items. */
    mp_call_opts one = {.chunksize = 1};
    mp_value *r = NULL;
    rc = mp_pool_apply(pool, f_args, five, &r);
    mp_value_free(r);
    if (!zero_division(rc)) {
        fail("apply(f, (5,)): expected ZeroDivisionError", rc < 0 ? rc : MP_EINVAL);
        goto out;
    }
    printf("\tGot ZeroDivisionError as expected from pool.apply()\n");
    rc = mp_pool_map(pool, f, ten, NULL, &list);
    if (!zero_division(rc)) {
        fail("map(f, range(10)): expected ZeroDivisionError", rc < 0 ? rc : MP_EINVAL);
        goto out;
    }
    printf("\tGot ZeroDivisionError as expected from pool.map()\n");
    if ((rc = mp_pool_imap(pool, f, ten, &one, &it)) < 0) {
        fail("imap", rc);
        goto out;
    }
    rc = drain(it, &list);
    it = NULL;
    if (!zero_division(rc)) {
        fail("list(imap(f, range(10))): expected ZeroDivisionError", rc < 0 ? rc : MP_EINVAL);
        goto out;
    }
    printf("\tGot ZeroDivisionError as expected from list(pool.imap())\n");
    if ((rc = mp_pool_imap(pool, f, ten, &one, &it)) < 0) {
        fail("imap", rc);
        goto out;
    }
    int i = 0;
    for (;; i++) {
        mp_value *x = NULL;
        rc = mp_imap_next(it, 60, &x);
        mp_value_free(x);
        if (rc == MP_EOF) break;
        if ((i == 5) != zero_division(rc)) {
            fail("IMapIterator.next(): the error is not at item 5 alone", rc < 0 ? rc : MP_EINVAL);
            goto out;
        }
    }
    mp_imap_free(it);
    it = NULL;
    if (i != 10) {
        fprintf(stderr, "pool_demo: the iteration stopped at %d\n", i);
        goto out;
    }
    printf("\tGot ZeroDivisionError as expected from IMapIterator.next()\n\n");

    /* ---- timeouts ---- */
    printf("Testing ApplyResult.get() with timeout:");
    if ((rc = mp_pool_apply_async(pool, calculate, mp_value_item(tasks, 0), NULL, &res)) < 0) {
        fail("apply_async", rc);
        goto out;
    }
    for (;;) {
        fflush(stdout);
        rc = mp_async_result_get(res, 0.02, &v);
        if (rc == 0) {
            printf("\n\t%s", mp_value_as_str(v, NULL));
            break;
        }
        if (rc != MP_ETIMEDOUT) {
            fail("get", rc);
            goto out;
        }
        printf(".");
    }
    mp_async_result_free(res);
    res = NULL;
    printf("\n\n");
    printf("Testing IMapIterator.next() with timeout:");
    if ((rc = mp_pool_imap(pool, calculate, tasks, &one, &it)) < 0) {
        fail("imap", rc);
        goto out;
    }
    for (;;) {
        fflush(stdout);
        mp_value *x = NULL;
        rc = mp_imap_next(it, 0.02, &x);
        if (rc == MP_EOF) break;
        if (rc == 0)
            printf("\n\t%s", mp_value_as_str(x, NULL));
        else if (rc == MP_ETIMEDOUT)
            printf(".");
        mp_value_free(x);
        if (rc < 0 && rc != MP_ETIMEDOUT) {
            fail("next", rc);
            goto out;
        }
    }
    mp_imap_free(it);
    it = NULL;
    printf("\n\n");

    /* ---- callbacks ---- */
    printf("Testing callback:\n");
    mp_call_opts append = {.callback = append_cb, .ctx = callbacks};
    mp_call_opts extend = {.callback = extend_cb, .ctx = callbacks};
    if ((rc = mp_pool_apply_async(pool, mul_task, seven_eight, &append, &res)) < 0 ||
        (rc = mp_async_result_wait(res, 60)) < 0) {
        fail("apply_async with a callback", rc);
        goto out;
    }
    mp_async_result_free(res);
    if ((rc = mp_pool_map_async(pool, pow3, ten, &extend, &res)) < 0 ||
        (rc = mp_async_result_wait(res, 60)) < 0) {
        fail("map_async with a callback", rc);
        goto out;
    }
    mp_async_result_free(res);
    res = NULL;
    static const int64_t expected[] = {56, 0, 1, 8, 27, 64, 125, 216, 343, 512, 729};
    bool same = mp_value_len(callbacks) == 11;
    for (size_t k = 0; same && k < 11; k++)
        same = mp_value_as_int(mp_value_item(callbacks, k)) == expected[k];
    if (!same) {
        printf("\t*** callbacks failed\n\t\t");
        print_value(callbacks);
        printf("\n");
        goto out;
    }
    printf("\tcallbacks succeeded\n\n");

    /* ---- starmap (not in mp_pool.py) ---- */
    printf("Testing starmap():\n");
    mp_value *pairs = mp_value_list_new();
    mp_value_list_append(pairs, pair(mp_value_int(1), mp_value_int(2)));
    mp_value_list_append(pairs, pair(mp_value_int(3), mp_value_int(4)));
    mp_value_free(list);
    list = NULL;
    rc = mp_pool_starmap(pool, mul_task, pairs, NULL, &list);
    if (rc == 0) rc = mp_pool_starmap_async(pool, mul_task, pairs, NULL, &res);
    mp_value_free(pairs);
    if (rc == 0) rc = mp_async_result_get(res, 60, &v);
    if (rc < 0) {
        fail("starmap", rc);
        goto out;
    }
    printf("\tpool.starmap(mul, [(1, 2), (3, 4)]) = ");
    print_value(list);
    printf("\n\tpool.starmap_async(...).get() = ");
    print_value(v);
    bool ok = false;
    if (mp_async_result_successful(res, &ok) < 0 || !ok || !mp_value_equal(list, v)) {
        fprintf(stderr, "pool_demo: starmap and starmap_async disagree\n");
        goto out;
    }
    mp_async_result_free(res);
    res = NULL;
    printf("\n\n");

    /* ---- close ---- */
    printf("Testing close():\n");
    if ((rc = mp_pool_apply_async(pool, sleep_task, half, NULL, &res)) < 0 ||
        (rc = mp_pool_close(pool)) < 0 || (rc = mp_pool_join(pool, 60)) < 0 ||
        (rc = mp_async_result_get(res, 0, &v)) < 0) {
        fail("close", rc);
        goto out;
    }
    if (v) {
        fprintf(stderr, "pool_demo: time.sleep returned something\n");
        goto out;
    }
    printf("\tclose() succeeded\n\n");

    /* ---- terminate, and a busy pool freed ---- */
    printf("Testing terminate():\n");
    if ((rc = stop_busy_pool(ctx, true)) < 0) {
        fail("terminate", rc);
        goto out;
    }
    printf("\tterminate() succeeded\n\n");
    printf("Testing garbage collection (mp_pool_free of a busy pool):\n");
    if ((rc = stop_busy_pool(ctx, false)) < 0) {
        fail("mp_pool_free", rc);
        goto out;
    }
    printf("\tgarbage collection succeeded\n");
    failed = 0;
out:
    for (size_t k = 0; k < 20; k++) mp_async_result_free(results[k]);
    mp_async_result_free(res);
    mp_imap_free(imap_it);
    mp_imap_free(imap_unordered_it);
    mp_imap_free(it);
    mp_pool_free(pool);
    mp_value_free(tasks);
    mp_value_free(list);
    mp_value_free(a);
    mp_value_free(b);
    mp_value_free(c);
    mp_value_free(ten);
    mp_value_free(n_items);
    mp_value_free(nones);
    mp_value_free(five);
    mp_value_free(seven_eight);
    mp_value_free(half);
    mp_value_free(callbacks);
    return failed;
}
