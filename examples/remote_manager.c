/* remote_manager: "Using a remote manager", from Python's multiprocessing
 * documentation: a manager serves one queue over TCP, and clients that know its address
 * and authkey use it.
 *
 *     # the server
 *     from multiprocessing.managers import BaseManager
 *     from queue import Queue
 *     queue = Queue()
 *     class QueueManager(BaseManager): pass
 *     QueueManager.register('get_queue', callable=lambda:queue)
 *     m = QueueManager(address=('', 50000), authkey=b'abracadabra')
 *     s = m.get_server()
 *     s.serve_forever()
 *
 *     # one client
 *     class QueueManager(BaseManager): pass
 *     QueueManager.register('get_queue')
 *     m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
 *     m.connect()
 *     queue = m.get_queue()
 *     queue.put('hello')
 *
 *     # another client
 *     ...
 *     queue = m.get_queue()
 *     queue.get()            # 'hello'
 *
 * Here one program plays every part: the manager's server runs in a process of the
 * start method (the "remote machine"), listening on 127.0.0.1 with a port the system
 * picks; a child process is the first client, the main process the second. A Python
 * client could connect as well: get_queue's methods are named as queue.Queue's.
 *
 * Usage: remote_manager [start-method] */
#include "example_util.h"

static const char authkey[] = "abracadabra";

static int fail(const char *what, int rc) {
    fprintf(stderr, "remote_manager: %s: %s (%s)\n", what, mp_strerror(rc),
            mp_last_error_message());
    return 1;
}

/* ---- the server's side --------------------------------------------------------- */

/* queue = Queue(): the server's one queue, made by the manager's initializer in the
 * server process. */
static mp_queue *the_queue;

static int make_queue(mp_args *initargs) {
    (void)initargs;
    return mp_queue_new(NULL, 0, &the_queue) < 0 ? 1 : 0;
}

/* callable=lambda: queue: every get_queue() is the same queue. */
static int get_queue_create(const mp_value *args, const mp_value *kwds, void **obj) {
    (void)args;
    (void)kwds;
    if (!the_queue) return mp_manager_raise(MP_ESTATE, "RuntimeError", "no queue");
    *obj = the_queue;
    return 0;
}

static void get_queue_free(void *obj) { (void)obj; /* the queue outlives its proxies */ }

/* put(item, block=True, timeout=None): the queue is unbounded, so it never waits. */
static int queue_put(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    (void)kwds;
    (void)result;
    if (mp_value_len(args) < 1) return mp_manager_raise(MP_EINVAL, "TypeError", "put(item)");
    return mp_queue_put(obj, mp_value_item(args, 0), MP_FOREVER);
}

/* Argument i, or kwds[name], or NULL. */
static const mp_value *arg(const mp_value *args, const mp_value *kwds, size_t i, const char *name) {
    if (mp_value_len(args) > i) return mp_value_item(args, i);
    return mp_value_dict_get_str(kwds, name);
}

/* get(block=True, timeout=None): queue.Empty when nothing came in time. */
static int queue_get(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    const mp_value *block = arg(args, kwds, 0, "block"), *timeout = arg(args, kwds, 1, "timeout");
    double t = MP_FOREVER;
    if (block && !mp_value_as_bool(block))
        t = -1; /* don't wait */
    else if (timeout && mp_value_get_type(timeout) != MP_VALUE_NONE)
        t = mp_value_as_float(timeout);
    int rc = mp_queue_get(obj, result, t);
    if (rc == MP_EEMPTY || rc == MP_ETIMEDOUT)
        return mp_manager_raise(MP_EEMPTY, "queue.Empty", "nothing in the queue");
    return rc;
}

static int queue_qsize(void *obj, const mp_value *args, const mp_value *kwds, mp_value **result) {
    (void)args;
    (void)kwds;
    size_t n;
    int rc = mp_queue_qsize(obj, &n);
    if (rc < 0) return rc;
    *result = mp_value_int((int64_t)n);
    return *result ? 0 : MP_ENOMEM;
}

static const mp_manager_method queue_methods[] = {
    {.name = "put", .fn = queue_put},
    {.name = "get", .fn = queue_get},
    {.name = "qsize", .fn = queue_qsize},
};

/* QueueManager.register('get_queue', callable=lambda: queue). concurrent: a get may
 * block while another client puts. */
static const mp_manager_type get_queue_type = {
    .type_id = "get_queue",
    .create = get_queue_create,
    .free = get_queue_free,
    .methods = queue_methods,
    .nmethods = sizeof queue_methods / sizeof queue_methods[0],
    .concurrent = true,
};

/* ---- a client ---------------------------------------------------------------------- */

/* A client that knows only the address and the key (QueueManager.register('get_queue')
 * needs nothing in C: create names the typeid). 0 and a connected manager. */
static int connect_to(const char *address, mp_manager **out) {
    mp_manager_opts o = {
        .address = address, .authkey = authkey, .authkey_len = strlen(authkey), .timeout = 30};
    int rc = mp_manager_new(NULL, &o, out);
    if (rc == 0 && (rc = mp_manager_connect(*out)) < 0) {
        mp_manager_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The first client, in a child process: puts 'hello'. args: the address. */
static int client(mp_args *args) {
    mp_manager *m = NULL;
    mp_proxy *queue = NULL;
    mp_value *hello = mp_value_str("hello");
    int rc;
    if ((rc = connect_to(mp_args_str(args, 0), &m)) < 0)
        fail("client: connect", rc);
    else if ((rc = mp_manager_create(m, "get_queue", NULL, NULL, &queue)) < 0)
        fail("client: get_queue()", rc);
    else if ((rc = mp_proxy_put(queue, hello, 30)) < 0)
        fail("client: put", rc);
    else
        printf("client (%s) put 'hello'\n", mp_process_name(mp_current_process()));
    fflush(stdout);
    mp_value_free(hello);
    mp_proxy_free(queue);
    mp_manager_free(m); /* a connected manager: the server goes on */
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_manager *server = NULL, *m = NULL;
    mp_proxy *queue = NULL;
    mp_args *args = NULL;
    mp_process *p = NULL;
    mp_value *got = NULL;
    int code = -1;
    /* Port 0: the system picks a free port, which mp_manager_address then tells. */
    mp_manager_opts so = {.address = "127.0.0.1:0",
                          .authkey = authkey,
                          .authkey_len = strlen(authkey),
                          .initializer = make_queue,
                          .timeout = 30};
    if ((rc = mp_manager_new(ctx, &so, &server)) < 0 ||
        (rc = mp_manager_register(server, &get_queue_type)) < 0 ||
        (rc = mp_manager_start(server)) < 0) {
        fail("the server", rc);
        goto out;
    }
    const char *address = mp_manager_address(server);
    printf("manager serving at %s (%s)\n", address, mp_family_name(mp_address_family(address)));

    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_str(args, address)) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts opts = {.target = client, .args = args};
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
        fprintf(stderr, "remote_manager: the client exited with %d\n", code);
        rc = MP_ECHILD;
        goto out;
    }

    /* The second client: another connection by address and key. */
    if ((rc = connect_to(address, &m)) < 0 ||
        (rc = mp_manager_create(m, "get_queue", NULL, NULL, &queue)) < 0 ||
        (rc = mp_proxy_get_item(queue, 30, &got)) < 0) {
        fail("the second client", rc);
        goto out;
    }
    printf("queue.get() -> ");
    print_value(got);
    printf("\n");

    /* A wrong key is refused: Python's AuthenticationError. */
    mp_manager *stranger = NULL;
    mp_manager_opts wrong = {
        .address = address, .authkey = "sesame", .authkey_len = 6, .timeout = 30};
    if ((rc = mp_manager_new(NULL, &wrong, &stranger)) == 0) rc = mp_manager_connect(stranger);
    mp_manager_free(stranger);
    printf("a client with the wrong authkey: %s\n", mp_err_name(rc));
    rc = rc == MP_EAUTH ? 0 : MP_EINVAL;
out:
    mp_value_free(got);
    mp_proxy_free(queue);
    mp_manager_free(m);
    mp_process_free(p);
    mp_args_free(args);
    mp_manager_free(server);  /* shuts the server down */
    mp_queue_free(the_queue); /* set here only when the server was a thread (dummy) */
    return rc < 0 ? 1 : 0;
}
