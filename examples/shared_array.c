/* shared_array: the NumPy example of Python's multiprocessing.shared_memory
 * documentation: an array of numbers backed by a shared memory block, changed by
 * another process that attaches the block by name. In C the "ndarray" is a plain
 * int64_t pointer into the block; the second shell is a child process.
 *
 *     a = np.array([1, 1, 2, 3, 5, 8])          # start with an existing array
 *     shm = shared_memory.SharedMemory(create=True, size=a.nbytes)
 *     b = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
 *     b[:] = a[:]                               # copy the data into shared memory
 *
 *     # in another process on the same machine
 *     existing_shm = shared_memory.SharedMemory(name=shm.name)
 *     c = np.ndarray((6,), dtype=np.int64, buffer=existing_shm.buf)
 *     c[-1] = 888
 *     existing_shm.close()
 *
 *     b                                         # array([  1,   1,   2,   3,   5, 888])
 *     shm.close()
 *     shm.unlink()                              # free the block at the very end
 *
 * Usage: shared_array [start-method] */
#include <stdint.h>

#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "shared_array: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static void print_array(const char *label, const int64_t *v, size_t n) {
    printf("%s array([", label);
    for (size_t i = 0; i < n; i++) printf("%s%lld", i ? ", " : "", (long long)v[i]);
    printf("])\n");
    fflush(stdout);
}

/* The other process: attach by name, see the numbers, change the last one. */
static int other(mp_args *args) {
    mp_shm_opts o = {.name = mp_args_str(args, 0)};
    size_t n = (size_t)mp_args_int(args, 1);
    mp_shm *existing = NULL;
    int rc = mp_shm_open(&o, &existing);
    if (rc < 0) return fail("attach", rc);
    int64_t *c = mp_shm_buf(existing);
    print_array("c =", c, n);
    c[n - 1] = 888;
    print_array("c =", c, n);
    mp_shm_free(existing); /* existing_shm.close() */
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    const int64_t a[] = {1, 1, 2, 3, 5, 8};
    const size_t n = sizeof a / sizeof a[0];
    mp_shm_opts o = {.create = true, .size = sizeof a};
    mp_shm *shm = NULL;
    if ((rc = mp_shm_open(&o, &shm)) < 0) return fail("SharedMemory(create=True)", rc);
    int64_t *b = mp_shm_buf(shm);
    memcpy(b, a, sizeof a); /* b[:] = a[:] */
    print_array("b =", b, n);

    mp_args *args = NULL;
    mp_process *p = NULL;
    int code = -1;
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_str(args, mp_shm_name(shm))) < 0 ||
        (rc = mp_args_add_int(args, (int64_t)n)) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts po = {.target = other, .args = args};
    fflush(stdout);
    if ((rc = mp_process_new(ctx, &po, &p)) < 0 || (rc = mp_process_start(p)) < 0 ||
        (rc = mp_process_join(p, 60)) < 0 || (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("the other process", rc);
        goto out;
    }
    if (code != 0) {
        rc = MP_ECHILD;
        goto out;
    }
    print_array("b =", b, n); /* b reflects the change */
out:
    mp_process_free(p);
    mp_args_free(args);
    mp_shm_unlink(shm); /* shm.close(); shm.unlink() */
    mp_shm_free(shm);
    return rc < 0 ? 1 : 0;
}
