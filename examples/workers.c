/* workers: the documentation's example "how to use queues to feed tasks to a collection
 * of worker processes and collect the results" (Doc/includes/mp_workers.py).
 *
 *     def worker(input, output):
 *         for func, args in iter(input.get, 'STOP'):
 *             result = calculate(func, args)
 *             output.put(result)
 *
 *     def calculate(func, args):
 *         result = func(*args)
 *         return '%s says that %s%s = %s' % \
 *             (current_process().name, func.__name__, args, result)
 *
 *     def mul(a, b):
 *         time.sleep(0.5*random.random())
 *         return a * b
 *
 *     def plus(a, b):
 *         time.sleep(0.5*random.random())
 *         return a + b
 *
 *     def test():
 *         NUMBER_OF_PROCESSES = 4
 *         TASKS1 = [(mul, (i, 7)) for i in range(20)]
 *         TASKS2 = [(plus, (i, 8)) for i in range(10)]
 *         task_queue = Queue()
 *         done_queue = Queue()
 *         for task in TASKS1:
 *             task_queue.put(task)
 *         for i in range(NUMBER_OF_PROCESSES):
 *             Process(target=worker, args=(task_queue, done_queue)).start()
 *         print('Unordered results:')
 *         for i in range(len(TASKS1)):
 *             print('\t', done_queue.get())
 *         for task in TASKS2:
 *             task_queue.put(task)
 *         for i in range(len(TASKS2)):
 *             print('\t', done_queue.get())
 *         for i in range(NUMBER_OF_PROCESSES):
 *             task_queue.put('STOP')
 *
 * A function cannot travel in a queue, so a task names its function: ('mul', (3, 7)),
 * and the worker looks the name up in a table. The tasks sleep up to 100 ms instead of
 * 500 ms, so the example stays short.
 *
 * Usage: workers [start-method] */
#include "example_util.h"

#define NUMBER_OF_PROCESSES 4

static int fail(const char *what, int rc) {
    fprintf(stderr, "workers: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* random.random() for this process: a small generator seeded with the pid (a dummy
 * "process" is a thread, with an id of its own). */
static double random01(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static _Thread_local uint64_t rng;

static int64_t mul(int64_t a, int64_t b) {
    ex_sleep_ms((unsigned)(100 * random01(&rng)));
    return a * b;
}

static int64_t plus(int64_t a, int64_t b) {
    ex_sleep_ms((unsigned)(100 * random01(&rng)));
    return a + b;
}

static const struct {
    const char *name;
    int64_t (*fn)(int64_t, int64_t);
} functions[] = {{"mul", mul}, {"plus", plus}};

/* calculate(func, args): the line a worker reports, or NULL for a malformed task. */
static mp_value *calculate(const mp_value *task) {
    const char *name = mp_value_as_str(mp_value_item(task, 0), NULL);
    const mp_value *args = mp_value_item(task, 1);
    if (!name || mp_value_len(args) != 2) return NULL;
    int64_t a = mp_value_as_int(mp_value_item(args, 0)),
            b = mp_value_as_int(mp_value_item(args, 1));
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
        if (strcmp(functions[i].name, name) != 0) continue;
        char line[160];
        snprintf(line, sizeof line, "%s says that %s(%lld, %lld) = %lld",
                 mp_process_name(mp_current_process()), name, (long long)a, (long long)b,
                 (long long)functions[i].fn(a, b));
        return mp_value_str(line);
    }
    return NULL;
}

/* for func, args in iter(input.get, 'STOP'): output.put(calculate(func, args)) */
static int worker(mp_args *args) {
    mp_queue *input = mp_args_queue(args, 0), *output = mp_args_queue(args, 1);
    if (!input || !output) return 2;
    rng = (uint64_t)mp_getpid() * 2654435761u + 1;
    for (;;) {
        mp_value *task = NULL;
        int rc = mp_queue_get(input, &task, 60);
        if (rc < 0) return fail("worker: get", rc);
        const char *s = mp_value_as_str(task, NULL);
        if (s && !strcmp(s, "STOP")) {
            mp_value_free(task);
            return 0;
        }
        mp_value *result = calculate(task);
        mp_value_free(task);
        if (!result) return fail("worker: a malformed task", MP_EINVAL);
        rc = mp_queue_put(output, result, 60);
        mp_value_free(result);
        if (rc < 0) return fail("worker: put", rc);
    }
}

/* task_queue.put((name, (i, k))) */
static int put_task(mp_queue *q, const char *name, int64_t i, int64_t k) {
    mp_value *task = mp_value_tuple_new(), *args = mp_value_tuple_new();
    mp_value_list_append(args, mp_value_int(i));
    mp_value_list_append(args, mp_value_int(k));
    mp_value_list_append(task, mp_value_str(name));
    int rc = mp_value_list_append(task, args);
    if (rc == 0) rc = mp_queue_put(q, task, 60);
    mp_value_free(task);
    return rc;
}

/* print('\t', done_queue.get()), n times. */
static int print_results(mp_queue *done, int n) {
    for (int i = 0; i < n; i++) {
        mp_value *line = NULL;
        int rc = mp_queue_get(done, &line, 60);
        if (rc < 0) return rc;
        printf("\t %s\n", mp_value_as_str(line, NULL));
        mp_value_free(line);
    }
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_queue *task_queue = NULL, *done_queue = NULL;
    mp_args *args = NULL;
    mp_process *procs[NUMBER_OF_PROCESSES] = {0};
    int started = 0, failed = 1;
    if ((rc = mp_queue_new(ctx, 0, &task_queue)) < 0 ||
        (rc = mp_queue_new(ctx, 0, &done_queue)) < 0) {
        fail("Queue", rc);
        goto out;
    }
    for (int i = 0; i < 20; i++)
        if ((rc = put_task(task_queue, "mul", i, 7)) < 0) {
            fail("put", rc);
            goto out;
        }
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_queue(args, task_queue)) < 0 ||
        (rc = mp_args_add_queue(args, done_queue)) < 0) {
        fail("args", rc);
        goto out;
    }
    fflush(stdout);
    for (int i = 0; i < NUMBER_OF_PROCESSES; i++) {
        mp_process_opts opts = {.target = worker, .args = args};
        if ((rc = mp_process_new(ctx, &opts, &procs[i])) < 0 ||
            (rc = mp_process_start(procs[i])) < 0) {
            fail("start a worker", rc);
            goto out;
        }
        started++;
    }
    printf("Unordered results:\n");
    if ((rc = print_results(done_queue, 20)) < 0) {
        fail("get", rc);
        goto out;
    }
    for (int i = 0; i < 10; i++)
        if ((rc = put_task(task_queue, "plus", i, 8)) < 0) {
            fail("put", rc);
            goto out;
        }
    if ((rc = print_results(done_queue, 10)) < 0) {
        fail("get", rc);
        goto out;
    }
    failed = 0;
out:
    /* Tell the workers to stop (also after a failure, so that none is left waiting). */
    for (int i = 0; i < started; i++) {
        mp_value *stop = mp_value_str("STOP");
        mp_queue_put(task_queue, stop, 60);
        mp_value_free(stop);
    }
    for (int i = 0; i < started; i++) {
        int code = -1;
        if (mp_process_join(procs[i], 60) < 0 || mp_process_exitcode(procs[i], &code) < 0 ||
            code != 0) {
            fprintf(stderr, "workers: %s ended with %d\n", mp_process_name(procs[i]), code);
            failed = 1;
        }
    }
    if (!failed) printf("%d workers stopped\n", NUMBER_OF_PROCESSES);
    for (int i = 0; i < NUMBER_OF_PROCESSES; i++) mp_process_free(procs[i]);
    mp_args_free(args);
    mp_queue_free(task_queue);
    mp_queue_free(done_queue);
    return failed;
}
