/* managers: "Sharing state between processes — server process", from Python's
 * multiprocessing documentation: a manager's dict and list, changed by a child.
 *
 *     from multiprocessing import Process, Manager
 *
 *     def f(d, l):
 *         d[1] = '1'
 *         d['2'] = 2
 *         d[0.25] = None
 *         l.reverse()
 *
 *     if __name__ == '__main__':
 *         with Manager() as manager:
 *             d = manager.dict()
 *             l = manager.list(range(10))
 *
 *             p = Process(target=f, args=(d, l))
 *             p.start()
 *             p.join()
 *
 *             print(d)      # {1: '1', '2': 2, 0.25: None}
 *             print(l)      # [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
 *
 * The manager's server process is started with the same start method as the child.
 *
 * Usage: managers [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "managers: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* d[key] = val, taking both values. */
static int set_item(mp_proxy *d, mp_value *key, mp_value *val) {
    int rc = key && val ? mp_proxy_setitem(d, key, val) : MP_ENOMEM;
    mp_value_free(key);
    mp_value_free(val);
    return rc;
}

static int f(mp_args *args) {
    mp_proxy *d = mp_args_proxy(args, 0), *l = mp_args_proxy(args, 1);
    if (!d || !l) return 2;
    int rc;
    if ((rc = set_item(d, mp_value_int(1), mp_value_str("1"))) < 0 ||
        (rc = set_item(d, mp_value_str("2"), mp_value_int(2))) < 0 ||
        (rc = set_item(d, mp_value_float(0.25), mp_value_none())) < 0 ||
        (rc = mp_proxy_call(l, "reverse", NULL, NULL, NULL)) < 0)
        return fail("child", rc);
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_manager *manager = NULL;
    mp_proxy *d = NULL, *l = NULL;
    mp_value *range = mp_value_list_new(), *dv = NULL, *lv = NULL;
    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;
    for (int i = 0; i < 10; i++) mp_value_list_append(range, mp_value_int(i));
    /* A bound on every call: a server that died must not hang the example. */
    mp_manager_opts mo = {.timeout = 30};
    if ((rc = mp_sync_manager_new(ctx, &mo, &manager)) < 0 ||
        (rc = mp_manager_start(manager)) < 0) {
        fail("Manager()", rc);
        goto out;
    }
    if ((rc = mp_manager_dict(manager, NULL, &d)) < 0 ||
        (rc = mp_manager_list(manager, range, &l)) < 0) {
        fail("dict/list", rc);
        goto out;
    }
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_proxy(args, d)) < 0 ||
        (rc = mp_args_add_proxy(args, l)) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts opts = {.target = f, .args = args};
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    fflush(stdout);
    if ((rc = mp_process_start(p)) < 0 || (rc = mp_process_join(p, 60)) < 0 ||
        (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("start/join", rc);
        goto out;
    }
    if (code != 0) {
        fprintf(stderr, "managers: child exited with %d\n", code);
        rc = MP_ECHILD;
        goto out;
    }
    if ((rc = mp_proxy_getvalue(d, &dv)) < 0 || (rc = mp_proxy_getvalue(l, &lv)) < 0) {
        fail("getvalue", rc);
        goto out;
    }
    print_value(dv);
    printf("\n");
    print_value(lv);
    printf("\n");
out:
    mp_value_free(dv);
    mp_value_free(lv);
    mp_process_free(p);
    mp_args_free(args);
    mp_proxy_free(d);
    mp_proxy_free(l);
    mp_manager_free(manager); /* the with-block's end: shuts the server down */
    mp_value_free(range);
    return rc < 0 ? 1 : 0;
}
