/* newtype: the documentation's "customized managers and proxies" example
 * (Doc/includes/mp_newtype.py): one class served under two typeids that expose
 * different methods, a generator served through its __next__, and a module's
 * functions.
 *
 *     class Foo:
 *         def f(self): print('you called Foo.f()')
 *         def g(self): print('you called Foo.g()')
 *         def _h(self): print('you called Foo._h()')
 *
 *     def baz():
 *         for i in range(10):
 *             yield i*i
 *
 *     class GeneratorProxy(BaseProxy):
 *         _exposed_ = ['__next__']
 *         def __iter__(self): return self
 *         def __next__(self): return self._callmethod('__next__')
 *
 *     def get_operator_module(): return operator
 *
 *     class MyManager(BaseManager): pass
 *     MyManager.register('Foo1', Foo)                          # exposes f and g
 *     MyManager.register('Foo2', Foo, exposed=('g', '_h'))
 *     MyManager.register('baz', baz, proxytype=GeneratorProxy)
 *     MyManager.register('operator', get_operator_module)
 *
 *     manager = MyManager(); manager.start()
 *     f1 = manager.Foo1(); f1.f(); f1.g()             # f1._h is not there
 *     f2 = manager.Foo2(); f2.g(); f2._h()            # f2.f is not there
 *     for i in manager.baz(): print('<%d>' % i, end=' ')
 *     op = manager.operator()
 *     print('op.add(23, 45) =', op.add(23, 45))
 *     print('op.pow(2, 94) =', op.pow(2, 94))
 *     print('op._exposed_ =', op._exposed_)
 *
 * In C a typeid's exposed methods are its method table, so Foo1 and Foo2 are two
 * tables over the same functions. Foo's methods print in the manager's process (whose
 * stdout is this one's). Python's ints have no bound; int64 ends at 2**63 - 1, so the
 * example raises 2 to the 62nd power, and shows that 2 ** 94 is refused.
 *
 * Usage: newtype [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "newtype: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* ---- served in the manager's process ------------------------------------------------- */

/* Foo has no state: its objects are a marker. */
static int foo_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args;
    (void)kwds;
    static char foo;
    *obj = &foo;
    return 0;
}

static void no_free(void *obj) { (void)obj; }

static int say(const char *what, mp_value **result) {
    printf("you called Foo.%s()\n", what);
    fflush(stdout);
    *result = NULL;
    return 0;
}

static int foo_f(void *o, const mp_value *a, const mp_value *k, mp_value **r) {
    (void)o, (void)a, (void)k;
    return say("f", r);
}
static int foo_g(void *o, const mp_value *a, const mp_value *k, mp_value **r) {
    (void)o, (void)a, (void)k;
    return say("g", r);
}
static int foo_h(void *o, const mp_value *a, const mp_value *k, mp_value **r) {
    (void)o, (void)a, (void)k;
    return say("_h", r);
}

static const mp_manager_method foo1_methods[] = {{.name = "f", .fn = foo_f},
                                                 {.name = "g", .fn = foo_g}};
static const mp_manager_method foo2_methods[] = {{.name = "g", .fn = foo_g},
                                                 {.name = "_h", .fn = foo_h}};
static const mp_manager_type foo1_type = {.type_id = "Foo1",
                                          .create = foo_create,
                                          .free = no_free,
                                          .methods = foo1_methods,
                                          .nmethods = 2};
static const mp_manager_type foo2_type = {.type_id = "Foo2",
                                          .create = foo_create,
                                          .free = no_free,
                                          .methods = foo2_methods,
                                          .nmethods = 2};

/* baz(): the generator's state is the next i. */
static int baz_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args;
    (void)kwds;
    *obj = calloc(1, sizeof(int));
    return *obj ? 0 : MP_ENOMEM;
}

static void baz_free(void *obj) { free(obj); }

static int baz_next(void *obj, const mp_value *a, const mp_value *k, mp_value **result) {
    (void)a, (void)k;
    int *i = obj;
    if (*i >= 10) return mp_manager_raise(MP_EOF, "StopIteration", "baz is exhausted");
    *result = mp_value_int((int64_t)*i * *i);
    ++*i;
    return *result ? 0 : MP_ENOMEM;
}

static const mp_manager_method baz_methods[] = {{.name = "__next__", .fn = baz_next}};
static const mp_manager_type baz_type = {.type_id = "baz",
                                         .create = baz_create,
                                         .free = baz_free,
                                         .methods = baz_methods,
                                         .nmethods = 1};

/* operator: add and pow of two ints. */
static int two_ints(const mp_value *args, int64_t *x, int64_t *y) {
    if (mp_value_len(args) != 2 || mp_value_get_type(mp_value_item(args, 0)) != MP_VALUE_INT ||
        mp_value_get_type(mp_value_item(args, 1)) != MP_VALUE_INT)
        return mp_manager_raise(MP_EINVAL, "TypeError", "expected two ints");
    *x = mp_value_as_int(mp_value_item(args, 0));
    *y = mp_value_as_int(mp_value_item(args, 1));
    return 0;
}

static int op_add(void *o, const mp_value *args, const mp_value *k, mp_value **result) {
    (void)o, (void)k;
    int64_t x, y;
    int rc = two_ints(args, &x, &y);
    if (rc < 0) return rc;
    *result = mp_value_int(x + y);
    return *result ? 0 : MP_ENOMEM;
}

static int op_pow(void *o, const mp_value *args, const mp_value *k, mp_value **result) {
    (void)o, (void)k;
    int64_t x, y, r = 1;
    int rc = two_ints(args, &x, &y);
    if (rc < 0) return rc;
    if (y < 0) return mp_manager_raise(MP_EINVAL, "ValueError", "a negative exponent");
    for (int64_t i = 0; i < y; i++) {
        if (x != 0 && (r > INT64_MAX / (x < 0 ? -x : x)))
            return mp_manager_raise(MP_ETOOBIG, "OverflowError", "%lld ** %lld is beyond int64",
                                    (long long)x, (long long)y);
        r *= x;
    }
    *result = mp_value_int(r);
    return *result ? 0 : MP_ENOMEM;
}

static const mp_manager_method op_methods[] = {{.name = "add", .fn = op_add},
                                               {.name = "pow", .fn = op_pow}};
static const mp_manager_type op_type = {.type_id = "operator",
                                        .create = foo_create,
                                        .free = no_free,
                                        .methods = op_methods,
                                        .nmethods = 2};

/* ---- the client -------------------------------------------------------------------- */

/* proxy.method() with no arguments; prints nothing itself. */
static int call0(mp_proxy *p, const char *method, mp_value **result) {
    fflush(stdout); /* our lines before the server's */
    return mp_proxy_call(p, method, NULL, NULL, result);
}

static int call2(mp_proxy *p, const char *method, int64_t x, int64_t y, mp_value **result) {
    mp_value *args = mp_value_tuple_new();
    mp_value_list_append(args, mp_value_int(x));
    mp_value_list_append(args, mp_value_int(y));
    int rc = mp_proxy_call(p, method, args, NULL, result);
    mp_value_free(args);
    return rc;
}

/* print(sorted(p._exposed_)) */
static int print_exposed(const char *what, mp_proxy *p) {
    mp_value *e = NULL;
    int rc = mp_proxy_exposed(p, &e);
    if (rc < 0) return rc;
    printf("%s._exposed_ = ", what);
    print_value(e);
    printf("\n");
    mp_value_free(e);
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_manager *manager = NULL;
    mp_proxy *f1 = NULL, *f2 = NULL, *it = NULL, *op = NULL;
    mp_value *r = NULL;
    int failed = 1;
    mp_manager_opts mo = {.timeout = 30};
    if ((rc = mp_manager_new(ctx, &mo, &manager)) < 0 ||
        (rc = mp_manager_register(manager, &foo1_type)) < 0 ||
        (rc = mp_manager_register(manager, &foo2_type)) < 0 ||
        (rc = mp_manager_register(manager, &baz_type)) < 0 ||
        (rc = mp_manager_register(manager, &op_type)) < 0 || (rc = mp_manager_start(manager)) < 0) {
        fail("MyManager().start()", rc);
        goto out;
    }

    printf("--------------------\n");
    if ((rc = mp_manager_create(manager, "Foo1", NULL, NULL, &f1)) < 0 ||
        (rc = call0(f1, "f", NULL)) < 0 || (rc = call0(f1, "g", NULL)) < 0 ||
        (rc = print_exposed("f1", f1)) < 0) {
        fail("Foo1", rc);
        goto out;
    }
    rc = call0(f1, "_h", NULL);
    printf("f1._h() -> %s\n", mp_err_name(rc));
    if (rc >= 0) goto out;

    printf("--------------------\n");
    if ((rc = mp_manager_create(manager, "Foo2", NULL, NULL, &f2)) < 0 ||
        (rc = call0(f2, "g", NULL)) < 0 || (rc = call0(f2, "_h", NULL)) < 0 ||
        (rc = print_exposed("f2", f2)) < 0) {
        fail("Foo2", rc);
        goto out;
    }
    rc = call0(f2, "f", NULL);
    printf("f2.f() -> %s\n", mp_err_name(rc));
    if (rc >= 0) goto out;

    printf("--------------------\n");
    if ((rc = mp_manager_create(manager, "baz", NULL, NULL, &it)) < 0) {
        fail("baz", rc);
        goto out;
    }
    while ((rc = call0(it, "__next__", &r)) == 0) {
        printf("<%lld> ", (long long)mp_value_as_int(r));
        mp_value_free(r);
        r = NULL;
    }
    printf("\n");
    if (rc != MP_EOF) { /* StopIteration ends the loop */
        fail("next(baz)", rc);
        goto out;
    }

    printf("--------------------\n");
    if ((rc = mp_manager_create(manager, "operator", NULL, NULL, &op)) < 0 ||
        (rc = call2(op, "add", 23, 45, &r)) < 0) {
        fail("op.add", rc);
        goto out;
    }
    printf("op.add(23, 45) = %lld\n", (long long)mp_value_as_int(r));
    mp_value_free(r);
    r = NULL;
    if ((rc = call2(op, "pow", 2, 62, &r)) < 0) {
        fail("op.pow", rc);
        goto out;
    }
    printf("op.pow(2, 62) = %lld\n", (long long)mp_value_as_int(r));
    mp_value_free(r);
    r = NULL;
    rc = call2(op, "pow", 2, 94, &r);
    printf("op.pow(2, 94) -> %s (%s)\n", mp_err_name(rc), mp_last_error_message());
    if (rc >= 0 || print_exposed("op", op) < 0) goto out;
    failed = 0;
out:
    mp_value_free(r);
    mp_proxy_free(f1);
    mp_proxy_free(f2);
    mp_proxy_free(it);
    mp_proxy_free(op);
    mp_manager_free(manager);
    return failed;
}
