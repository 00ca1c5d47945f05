/* shared_memory: the SharedMemory and ShareableList examples of Python's
 * multiprocessing.shared_memory documentation. The documentation attaches the second
 * handle in the same interpreter; here a child process attaches by name, as another
 * program would.
 *
 *     shm_a = shared_memory.SharedMemory(create=True, size=10)
 *     shm_a.buf[:4] = bytearray([22, 33, 44, 55])
 *     shm_b = shared_memory.SharedMemory(shm_a.name)        # the child
 *     array.array('b', shm_b.buf[:5])    # array('b', [22, 33, 44, 55, 0])
 *     shm_b.buf[:5] = b'howdy'
 *     bytes(shm_a.buf[:5])               # b'howdy'
 *     shm_b.close(); shm_a.close(); shm_a.unlink()
 *
 *     a = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
 *     a[2] = -78.5                       # the child, attached by name
 *     a[2] = 'dry ice'                   # changing the type is supported as well
 *     a[2] = 'larger than previously allocated storage space'   # ValueError
 *     a[2], len(a), a.index(42), a.count(b'howdy'), a.count(b'HoWdY')
 *                                        # 'dry ice', 7, 6, 0, 1
 *     a.shm.close(); a.shm.unlink()
 *
 * Usage: shared_memory [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "shared_memory: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* The child's part: attach both blocks by name, read and write them. */
static int child(mp_args *args) {
    mp_shm_opts o = {.name = mp_args_str(args, 0)};
    mp_shm *shm_b = NULL;
    int rc = mp_shm_open(&o, &shm_b);
    if (rc < 0) return fail("child: attach", rc);
    const signed char *b = mp_shm_buf(shm_b);
    printf("child sees array('b', [%d, %d, %d, %d, %d])\n", b[0], b[1], b[2], b[3], b[4]);
    fflush(stdout);
    memcpy(mp_shm_buf(shm_b), "howdy", 5);
    mp_shm_free(shm_b); /* close */

    mp_shareable_list *a = NULL;
    if ((rc = mp_shareable_list_attach(mp_args_str(args, 1), &a)) < 0)
        return fail("child: attach the list", rc);
    mp_value *v1 = mp_value_float(-78.5), *v2 = mp_value_str("dry ice"),
             *v3 = mp_value_str("larger than previously allocated storage space");
    int failed = 0;
    if ((rc = mp_shareable_list_set(a, 2, v1)) < 0 || (rc = mp_shareable_list_set(a, 2, v2)) < 0)
        failed = fail("child: set", rc);
    else if ((rc = mp_shareable_list_set(a, 2, v3)) != MP_ETOOBIG) /* Python: ValueError */
        failed = fail("child: a str longer than its slot was not refused", rc < 0 ? rc : MP_EINVAL);
    mp_value_free(v1);
    mp_value_free(v2);
    mp_value_free(v3);
    mp_shareable_list_free(a);
    return failed;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_shm *shm_a = NULL;
    mp_shareable_list *a = NULL;
    mp_value *items = mp_value_list_new(), *got = NULL, *probe = NULL;
    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;

    mp_shm_opts o = {.create = true, .size = 10};
    if ((rc = mp_shm_open(&o, &shm_a)) < 0) {
        fail("create", rc);
        goto out;
    }
    memcpy(mp_shm_buf(shm_a), (unsigned char[]){22, 33, 44, 55}, 4);

    mp_value_list_append(items, mp_value_str("howdy"));
    mp_value_list_append(items, mp_value_bytes("HoWdY", 5));
    mp_value_list_append(items, mp_value_float(-273.154));
    mp_value_list_append(items, mp_value_int(100));
    mp_value_list_append(items, mp_value_none());
    mp_value_list_append(items, mp_value_bool(true));
    mp_value_list_append(items, mp_value_int(42));
    if ((rc = mp_shareable_list_new(items, NULL, &a)) < 0) {
        fail("ShareableList", rc);
        goto out;
    }

    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_str(args, mp_shm_name(shm_a))) < 0 ||
        (rc = mp_args_add_str(args, mp_shm_name(mp_shareable_list_shm(a)))) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts opts = {.target = child, .args = args};
    fflush(stdout);
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0 || (rc = mp_process_start(p)) < 0 ||
        (rc = mp_process_join(p, MP_FOREVER)) < 0 || (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("child", rc);
        goto out;
    }
    if (code != 0) {
        fprintf(stderr, "shared_memory: child exited with %d\n", code);
        rc = MP_ECHILD;
        goto out;
    }
    printf("parent reads b'%.5s'\n", (const char *)mp_shm_buf(shm_a));

    size_t idx = 0, n_lower = 0, n_upper = 0;
    if ((rc = mp_shareable_list_get(a, 2, &got)) < 0) {
        fail("get", rc);
        goto out;
    }
    probe = mp_value_int(42);
    if ((rc = mp_shareable_list_index(a, probe, &idx)) < 0) {
        fail("index", rc);
        goto out;
    }
    mp_value_free(probe);
    probe = mp_value_bytes("howdy", 5);
    if ((rc = mp_shareable_list_count(a, probe, &n_lower)) < 0) {
        fail("count", rc);
        goto out;
    }
    mp_value_free(probe);
    probe = mp_value_bytes("HoWdY", 5);
    if ((rc = mp_shareable_list_count(a, probe, &n_upper)) < 0) {
        fail("count", rc);
        goto out;
    }
    printf("a[2] = ");
    print_value(got);
    printf(", len %zu, index(42) %zu, count(b'howdy') %zu, count(b'HoWdY') %zu\n",
           mp_shareable_list_len(a), idx, n_lower, n_upper);

out:
    /* close and unlink, as the documentation does: nothing stays in /dev/shm */
    if (a) {
        mp_shm_unlink(mp_shareable_list_shm(a));
        mp_shareable_list_free(a);
    }
    if (shm_a) {
        mp_shm_unlink(shm_a);
        mp_shm_free(shm_a);
    }
    mp_value_free(items);
    mp_value_free(got);
    mp_value_free(probe);
    mp_process_free(p);
    mp_args_free(args);
    return rc < 0 ? 1 : 0;
}
