/* custom_manager: "Customized managers", from Python's multiprocessing documentation:
 * a manager that serves a type of the program's own.
 *
 *     from multiprocessing.managers import BaseManager
 *
 *     class MathsClass:
 *         def add(self, x, y):
 *             return x + y
 *         def mul(self, x, y):
 *             return x * y
 *
 *     class MyManager(BaseManager):
 *         pass
 *
 *     MyManager.register('Maths', MathsClass)
 *
 *     if __name__ == '__main__':
 *         with MyManager() as manager:
 *             maths = manager.Maths()
 *             print(maths.add(4, 3))         # prints 7
 *             print(maths.mul(7, 8))         # prints 56
 *
 * In C the class is a table (mp_manager_type): a constructor, a destructor and the
 * exposed methods, which run in the manager's server process. The methods take their
 * arguments as a tuple of values and return a value; the object itself counts the calls
 * it served, which proxies read with the "calls" method.
 *
 * Usage: custom_manager [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "custom_manager: %s: %s (%s)\n", what, mp_strerror(rc),
            mp_last_error_message());
    return 1;
}

/* A MathsClass object: it lives in the server process. */
typedef struct maths {
    int64_t calls;
} maths;

static int maths_create(const mp_value *args, const mp_value *kwds, void **obj) {
    if (mp_value_len(args) || mp_value_len(kwds))
        return mp_manager_raise(MP_EINVAL, "TypeError", "MathsClass() takes no arguments");
    *obj = calloc(1, sizeof(maths));
    return *obj ? 0 : MP_ENOMEM;
}

static void maths_free(void *obj) { free(obj); }

/* x and y of (x, y), both ints: 0, or a TypeError as Python would raise. */
static int two_ints(const mp_value *args, const char *name, int64_t *x, int64_t *y) {
    if (mp_value_len(args) != 2 || mp_value_get_type(mp_value_item(args, 0)) != MP_VALUE_INT ||
        mp_value_get_type(mp_value_item(args, 1)) != MP_VALUE_INT)
        return mp_manager_raise(MP_EINVAL, "TypeError", "%s() takes two ints", name);
    *x = mp_value_as_int(mp_value_item(args, 0));
    *y = mp_value_as_int(mp_value_item(args, 1));
    return 0;
}

static int maths_add(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    (void)kwds;
    int64_t x, y;
    int rc = two_ints(args, "add", &x, &y);
    if (rc < 0) return rc;
    ((maths *)obj)->calls++;
    *result = mp_value_int(x + y);
    return *result ? 0 : MP_ENOMEM;
}

static int maths_mul(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    (void)kwds;
    int64_t x, y;
    int rc = two_ints(args, "mul", &x, &y);
    if (rc < 0) return rc;
    ((maths *)obj)->calls++;
    *result = mp_value_int(x * y);
    return *result ? 0 : MP_ENOMEM;
}

static int maths_calls(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    (void)args;
    (void)kwds;
    *result = mp_value_int(((maths *)obj)->calls);
    return *result ? 0 : MP_ENOMEM;
}

static const mp_manager_method maths_methods[] = {
    {.name = "add", .fn = maths_add},
    {.name = "mul", .fn = maths_mul},
    {.name = "calls", .fn = maths_calls},
};

/* MyManager.register('Maths', MathsClass) */
static const mp_manager_type maths_type = {
    .type_id = "Maths",
    .create = maths_create,
    .free = maths_free,
    .methods = maths_methods,
    .nmethods = sizeof maths_methods / sizeof maths_methods[0],
};

/* maths.<method>(x, y) through the proxy: 0 and *out, or an error code. */
static int call2(mp_proxy *p, const char *method, int64_t x, int64_t y, int64_t *out) {
    mp_value *args = mp_value_tuple_new(), *r = NULL;
    int rc = MP_ENOMEM;
    if (args && !mp_value_list_append(args, mp_value_int(x)) &&
        !mp_value_list_append(args, mp_value_int(y)))
        rc = mp_proxy_call(p, method, args, NULL, &r);
    if (rc == 0) *out = mp_value_as_int(r);
    mp_value_free(r);
    mp_value_free(args);
    return rc;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_manager *manager = NULL;
    mp_proxy *maths = NULL;
    mp_value *calls = NULL;
    int64_t sum = 0, product = 0;
    mp_manager_opts mo = {.timeout = 30};
    if ((rc = mp_manager_new(ctx, &mo, &manager)) < 0 ||
        (rc = mp_manager_register(manager, &maths_type)) < 0 ||
        (rc = mp_manager_start(manager)) < 0) {
        fail("MyManager()", rc);
        goto out;
    }
    if ((rc = mp_manager_create(manager, "Maths", NULL, NULL, &maths)) < 0) {
        fail("manager.Maths()", rc);
        goto out;
    }
    if ((rc = call2(maths, "add", 4, 3, &sum)) < 0 ||
        (rc = call2(maths, "mul", 7, 8, &product)) < 0) {
        fail("maths.add/mul", rc);
        goto out;
    }
    printf("%lld\n%lld\n", (long long)sum, (long long)product);

    /* A wrong call raises in the server; the proxy reports the exception. */
    rc = mp_proxy_call(maths, "add", NULL, NULL, NULL);
    printf("maths.add() -> %s: %s\n", mp_err_name(rc), mp_last_error_message());
    if (rc != MP_EINVAL) {
        fail("maths.add() was not refused", rc < 0 ? rc : MP_EINVAL);
        rc = MP_EINVAL;
        goto out;
    }
    if ((rc = mp_proxy_call(maths, "calls", NULL, NULL, &calls)) < 0) {
        fail("maths.calls()", rc);
        goto out;
    }
    printf("the server's MathsClass object served %lld calls\n", (long long)mp_value_as_int(calls));
out:
    mp_value_free(calls);
    mp_proxy_free(maths);
    mp_manager_free(manager);
    return rc < 0 || sum != 7 || product != 56 ? 1 : 0;
}
