/* listener_client: the "Listeners and Clients" examples of Python's multiprocessing
 * documentation: a Listener with an authkey sends objects and bytes to a Client.
 *
 *     # the server
 *     from multiprocessing.connection import Listener
 *     from array import array
 *
 *     address = ('localhost', 6000)     # family is deduced to be 'AF_INET'
 *
 *     with Listener(address, authkey=b'secret password') as listener:
 *         with listener.accept() as conn:
 *             print('connection accepted from', listener.last_accepted)
 *             conn.send([2.25, None, 'junk', float])
 *             conn.send_bytes(b'hello')
 *             conn.send_bytes(array('i', [42, 1729]))
 *
 *     # the client
 *     from multiprocessing.connection import Client
 *     from array import array
 *
 *     address = ('localhost', 6000)
 *
 *     with Client(address, authkey=b'secret password') as conn:
 *         print(conn.recv())                  # => [2.25, None, 'junk', float]
 *         print(conn.recv_bytes())            # => 'hello'
 *         arr = array('i', [0, 0, 0, 0, 0])
 *         print(conn.recv_bytes_into(arr))    # => 8
 *         print(arr)                          # => array('i', [42, 1729, 0, 0, 0])
 *
 * The main process is the server, on a port the system picks (port 0); a child process
 * is the client. `float` travels as pickle sends a class: a reference to
 * builtins.float, which C receives as an inert object value. Then a client with the
 * wrong key is refused (AuthenticationError) and the listener stays usable.
 *
 * Usage: listener_client [start-method] */
#include "example_util.h"

static const char authkey[] = "secret password";

static int fail(const char *what, int rc) {
    fprintf(stderr, "listener_client: %s: %s (%s)\n", what, mp_strerror(rc),
            mp_last_error_message());
    return 1;
}

/* The client. args: the address, the key. */
static int client(mp_args *args) {
    const char *address = mp_args_str(args, 0), *key = mp_args_str(args, 1);
    mp_listener_opts o = {.authkey = key, .authkey_len = key ? strlen(key) : 0};
    mp_connection *conn = NULL;
    mp_value *v = NULL;
    void *bytes = NULL;
    size_t len = 0;
    int arr[5] = {0, 0, 0, 0, 0};
    int rc = mp_client_connect(address, &o, 30, &conn);
    if (rc == MP_EAUTH) {
        printf("client with the wrong key: %s (AuthenticationError)\n", mp_err_name(rc));
        fflush(stdout);
        return 0;
    }
    if (rc < 0) return fail("client: connect", rc);
    if ((rc = mp_connection_recv(conn, &v)) < 0) {
        fail("client: recv", rc);
        goto out;
    }
    print_value(v);
    printf("\n");
    if ((rc = mp_connection_recv_bytes(conn, 0, &bytes, &len)) < 0) {
        fail("client: recv_bytes", rc);
        goto out;
    }
    mp_value *b = mp_value_bytes(bytes, len);
    print_value(b);
    printf("\n");
    mp_value_free(b);
    if ((rc = mp_connection_recv_bytes_into(conn, arr, sizeof arr, 0, &len, NULL)) < 0) {
        fail("client: recv_bytes_into", rc);
        goto out;
    }
    printf("%zu\narray('i', [%d, %d, %d, %d, %d])\n", len, arr[0], arr[1], arr[2], arr[3], arr[4]);
out:
    fflush(stdout);
    mp_value_free(v);
    mp_connection_free_bytes(bytes);
    mp_connection_free(conn);
    return rc < 0 ? 1 : 0;
}

/* Starts the client, which will use key: the process, or NULL. */
static mp_process *start_client(mp_context *ctx, const char *address, const char *key) {
    mp_args *args = NULL;
    mp_process *p = NULL;
    int rc;
    if ((rc = mp_args_new(&args)) < 0 || (rc = mp_args_add_str(args, address)) < 0 ||
        (rc = mp_args_add_str(args, key)) < 0) {
        fail("args", rc);
        goto out;
    }
    mp_process_opts opts = {.target = client, .args = args};
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0) {
        fail("mp_process_new", rc);
        goto out;
    }
    fflush(stdout);
    if ((rc = mp_process_start(p)) < 0) {
        fail("mp_process_start", rc);
        mp_process_free(p);
        p = NULL;
    }
out:
    mp_args_free(args);
    return p;
}

/* Joins p (bounded): 0 when it exited with 0. */
static int join_client(mp_process *p) {
    int code = -1, rc;
    if ((rc = mp_process_join(p, 60)) < 0 || (rc = mp_process_exitcode(p, &code)) < 0)
        return fail("join", rc);
    if (code != 0) fprintf(stderr, "listener_client: the client exited with %d\n", code);
    return code != 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_listener *listener = NULL;
    mp_connection *conn = NULL;
    mp_process *p = NULL, *stranger = NULL;
    mp_value *msg = mp_value_list_new();
    int failed = 1;
    mp_value_list_append(msg, mp_value_float(2.25));
    mp_value_list_append(msg, mp_value_none());
    mp_value_list_append(msg, mp_value_str("junk"));
    mp_value_list_append(msg, mp_value_object_new("builtins", "float", NULL));

    mp_listener_opts lo = {.authkey = authkey, .authkey_len = strlen(authkey)};
    if ((rc = mp_listener_new("localhost:0", &lo, &listener)) < 0) {
        fail("Listener", rc);
        goto out;
    }
    const char *address = mp_listener_address(listener);
    printf("listening on %s (%s)\n", address, mp_family_name(mp_listener_family(listener)));
    if (!(p = start_client(ctx, address, authkey))) goto out;
    if ((rc = mp_listener_accept(listener, 30, &conn)) < 0) {
        fail("accept", rc);
        goto out;
    }
    printf("connection accepted from %s\n", mp_listener_last_accepted(listener));
    fflush(stdout); /* before the client prints what it receives */
    int ints[2] = {42, 1729};
    if ((rc = mp_connection_send(conn, msg)) < 0 ||
        (rc = mp_connection_send_bytes(conn, "hello", 5)) < 0 ||
        (rc = mp_connection_send_bytes(conn, ints, sizeof ints)) < 0) {
        fail("send", rc);
        goto out;
    }
    mp_connection_free(conn); /* the with-block's end */
    conn = NULL;
    if (join_client(p)) goto out;

    /* A client with another key: accept reports MP_EAUTH and goes on listening. */
    if (!(stranger = start_client(ctx, address, "guess"))) goto out;
    rc = mp_listener_accept(listener, 30, &conn);
    if (join_client(stranger)) goto out;
    printf("accept of a client with the wrong key: %s\n", mp_err_name(rc));
    if (rc != MP_EAUTH) goto out;
    failed = 0;
out:
    mp_connection_free(conn);
    if (p && mp_process_is_alive(p)) mp_process_join(p, 60);
    if (stranger && mp_process_is_alive(stranger)) mp_process_join(stranger, 60);
    mp_process_free(p);
    mp_process_free(stranger);
    mp_listener_free(listener);
    mp_value_free(msg);
    return failed;
}
