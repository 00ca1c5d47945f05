/* shared_memory_manager: the SharedMemoryManager examples of Python's
 * multiprocessing.shared_memory documentation: a manager process that unlinks the
 * blocks made through it when it shuts down.
 *
 *     from multiprocessing.managers import SharedMemoryManager
 *     smm = SharedMemoryManager()
 *     smm.start()  # Start the process that manages the shared memory blocks
 *     sl = smm.ShareableList(range(4))
 *     sl                       # ShareableList([0, 1, 2, 3], name='psm_6572_7512')
 *     raw_shm = smm.SharedMemory(size=128)
 *     another_sl = smm.ShareableList('alpha')
 *     another_sl               # ShareableList(['a', 'l', 'p', 'h', 'a'], name='psm_...')
 *     smm.shutdown()  # Calls unlink() on sl, raw_shm, and another_sl
 *
 *     with SharedMemoryManager() as smm:
 *         sl = smm.ShareableList(range(2000))
 *         # Divide the work among two processes, storing partial results in sl
 *         p1 = Process(target=do_work, args=(sl, 0, 1000))
 *         p2 = Process(target=do_work, args=(sl, 1000, 2000))
 *         p1.start()
 *         p2.start()  # A multiprocessing.Pool might be more efficient
 *         p1.join()
 *         p2.join()   # Wait for all work to complete in both processes
 *         total_result = sum(sl)  # Consolidate the partial results now in sl
 *
 * The documentation leaves do_work open; here it squares its part of the list. A
 * ShareableList travels to a process by name, as Python pickles it. After the
 * shutdown the example checks that no block is left.
 *
 * Usage: shared_memory_manager [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "shared_memory_manager: %s: %s (%s)\n", what, mp_strerror(rc),
            mp_last_error_message());
    return 1;
}

/* repr(sl) */
static int print_list(mp_shareable_list *l) {
    printf("ShareableList([");
    for (size_t i = 0; i < mp_shareable_list_len(l); i++) {
        mp_value *v = NULL;
        int rc = mp_shareable_list_get(l, i, &v);
        if (rc < 0) return rc;
        printf("%s", i ? ", " : "");
        print_value(v);
        mp_value_free(v);
    }
    printf("], name='%s')\n", mp_shm_name(mp_shareable_list_shm(l)));
    return 0;
}

/* do_work(sl, start, end): sl[i] = sl[i] ** 2. args: the list's name, start, end. */
static int do_work(mp_args *args) {
    mp_shareable_list *sl = NULL;
    int rc = mp_shareable_list_attach(mp_args_str(args, 0), &sl);
    if (rc < 0) return fail("do_work: attach", rc);
    for (int64_t i = mp_args_int(args, 1); rc == 0 && i < mp_args_int(args, 2); i++) {
        mp_value *v = NULL, *sq = NULL;
        if ((rc = mp_shareable_list_get(sl, (size_t)i, &v)) == 0) {
            sq = mp_value_int(mp_value_as_int(v) * mp_value_as_int(v));
            rc = mp_shareable_list_set(sl, (size_t)i, sq);
        }
        mp_value_free(v);
        mp_value_free(sq);
    }
    if (rc < 0) fail("do_work", rc);
    mp_shareable_list_free(sl);
    return rc < 0 ? 1 : 0;
}

/* Whether a block of that name still exists (Windows: while a handle is open). */
static bool exists(const char *name) {
    mp_shm_opts o = {.name = name, .untracked = true};
    mp_shm *s = NULL;
    if (mp_shm_open(&o, &s) < 0) return false;
    mp_shm_free(s);
    return true;
}

/* Copies a ShareableList's name into buf (it outlives the list). */
static void name_of(mp_shareable_list *l, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", mp_shm_name(mp_shareable_list_shm(l)));
}

/* The first example: three blocks, unlinked by shutdown. */
static int first(mp_context *ctx) {
    mp_manager *smm = NULL;
    mp_shareable_list *sl = NULL, *another_sl = NULL;
    mp_shm *raw_shm = NULL;
    mp_value *four = mp_value_list_new(), *alpha = mp_value_list_new(), *segments = NULL;
    char names[3][256] = {{0}};
    int rc;
    for (int i = 0; i < 4; i++) mp_value_list_append(four, mp_value_int(i));
    for (const char *c = "alpha"; *c; c++) mp_value_list_append(alpha, mp_value_strn(c, 1));
    mp_manager_opts mo = {.timeout = 30};
    if ((rc = mp_shared_memory_manager_new(ctx, &mo, &smm)) < 0 ||
        (rc = mp_manager_start(smm)) < 0) {
        fail("SharedMemoryManager().start()", rc);
        goto out;
    }
    if ((rc = mp_manager_shareable_list(smm, four, &sl)) < 0 ||
        (rc = mp_manager_shared_memory(smm, 128, &raw_shm)) < 0 ||
        (rc = mp_manager_shareable_list(smm, alpha, &another_sl)) < 0) {
        fail("smm.ShareableList / smm.SharedMemory", rc);
        goto out;
    }
    if ((rc = print_list(sl)) < 0 || (rc = print_list(another_sl)) < 0) {
        fail("print", rc);
        goto out;
    }
    name_of(sl, names[0], sizeof names[0]);
    snprintf(names[1], sizeof names[1], "%s", mp_shm_name(raw_shm));
    name_of(another_sl, names[2], sizeof names[2]);
    if ((rc = mp_manager_list_segments(smm, &segments)) < 0) {
        fail("list_segments", rc);
        goto out;
    }
    printf("the manager tracks %zu blocks\n", mp_value_len(segments));
    if ((rc = mp_manager_shutdown(smm)) < 0) {
        fail("smm.shutdown()", rc);
        goto out;
    }
out:
    mp_shareable_list_free(sl);
    mp_shareable_list_free(another_sl);
    mp_shm_free(raw_shm);
    if (rc == 0) {
        int left = 0;
        for (int i = 0; i < 3; i++) left += exists(names[i]);
        printf("after smm.shutdown(): %d of the 3 blocks left\n", left);
        if (left) rc = MP_EEXIST;
    }
    mp_manager_free(smm);
    mp_value_free(four);
    mp_value_free(alpha);
    mp_value_free(segments);
    return rc;
}

/* Starts do_work(sl, start, end) in a new process. */
static int start_work(mp_context *ctx, const char *name, int64_t start, int64_t end,
                      mp_process **out) {
    mp_args *args = NULL;
    int rc;
    if ((rc = mp_args_new(&args)) == 0 && (rc = mp_args_add_str(args, name)) == 0 &&
        (rc = mp_args_add_int(args, start)) == 0 && (rc = mp_args_add_int(args, end)) == 0) {
        mp_process_opts opts = {.target = do_work, .args = args};
        if ((rc = mp_process_new(ctx, &opts, out)) == 0) {
            fflush(stdout);
            rc = mp_process_start(*out);
        }
    }
    mp_args_free(args);
    return rc;
}

/* The second example: two processes fill one list, the parent sums it. */
static int second(mp_context *ctx) {
    mp_manager *smm = NULL;
    mp_shareable_list *sl = NULL;
    mp_process *p1 = NULL, *p2 = NULL;
    mp_value *items = mp_value_list_new();
    char name[256] = "";
    int rc, c1 = -1, c2 = -1;
    for (int i = 0; i < 2000; i++) mp_value_list_append(items, mp_value_int(i));
    mp_manager_opts mo = {.timeout = 30};
    if ((rc = mp_shared_memory_manager_new(ctx, &mo, &smm)) < 0 ||
        (rc = mp_manager_start(smm)) < 0 || (rc = mp_manager_shareable_list(smm, items, &sl)) < 0) {
        fail("with SharedMemoryManager() as smm: smm.ShareableList(range(2000))", rc);
        goto out;
    }
    name_of(sl, name, sizeof name);
    if ((rc = start_work(ctx, name, 0, 1000, &p1)) < 0 ||
        (rc = start_work(ctx, name, 1000, 2000, &p2)) < 0 || (rc = mp_process_join(p1, 60)) < 0 ||
        (rc = mp_process_join(p2, 60)) < 0 || (rc = mp_process_exitcode(p1, &c1)) < 0 ||
        (rc = mp_process_exitcode(p2, &c2)) < 0) {
        fail("the workers", rc);
        goto out;
    }
    if (c1 != 0 || c2 != 0) {
        fprintf(stderr, "shared_memory_manager: the workers exited with %d and %d\n", c1, c2);
        rc = MP_ECHILD;
        goto out;
    }
    int64_t total_result = 0;
    for (size_t i = 0; i < mp_shareable_list_len(sl); i++) {
        mp_value *v = NULL;
        if ((rc = mp_shareable_list_get(sl, i, &v)) < 0) break;
        total_result += mp_value_as_int(v);
        mp_value_free(v);
    }
    if (rc < 0) {
        fail("sum(sl)", rc);
        goto out;
    }
    printf("total_result = sum(sl) = %lld\n", (long long)total_result);
    if (total_result != (int64_t)1999 * 2000 * 3999 / 6) rc = MP_EINVAL;
out:
    /* The with-block's end: the manager unlinks the list. */
    if (p1 && mp_process_is_alive(p1)) mp_process_join(p1, 60);
    if (p2 && mp_process_is_alive(p2)) mp_process_join(p2, 60);
    mp_process_free(p1);
    mp_process_free(p2);
    mp_manager_free(smm);
    mp_shareable_list_free(sl);
    if (name[0] && exists(name)) {
        fprintf(stderr, "shared_memory_manager: %s is still there\n", name);
        if (rc == 0) rc = MP_EEXIST;
    }
    mp_value_free(items);
    return rc;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);
    if (first(ctx) < 0) return 1;
    printf("\n");
    return second(ctx) < 0 ? 1 : 0;
}
