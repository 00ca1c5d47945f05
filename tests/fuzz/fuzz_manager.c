/* Fuzz harness for a manager server's request handling (core/manager_server.c): the
 * input is one request as a hostile or broken client might send it after the
 * handshake, answered by the function a connection thread calls.
 *
 * Input: byte 0 bit 0 says whether it is a connection's first request (a public call:
 * create, incref, decref, accept_connection, and C clients' mp_lease, mp_create...) or a
 * method call on an object (bit 1: under lease 1, which may or may not exist); the rest
 * is the pickled request. The server serves SyncManager's types, with seven objects
 * made first (ids 1 to 7: dict, list, Namespace, Value, Queue, Lock, Event), and is
 * made anew every 256 inputs. It is marked as stopping, so that a method that would
 * block (a get on an empty queue) returns at once.
 *
 * Oracles, besides the sanitizers: the handler never fails on what the bytes say
 * (only MP_ENOMEM), and its reply is a pickle of (kind, result) with kind one of
 * Python's '#RETURN', '#ERROR', '#PROXY', '#TRACEBACK', '#UNSERIALIZABLE'.
 *
 * Built two ways, as fuzz_frame.c: with libFuzzer (-DMP_FUZZ=ON, clang), or standalone
 * (default): fuzz_manager [--seconds S] [--seed N] [--max-iters N] DIR|FILE...  */
#include <multiproc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/manager_types.h"

#define MAX_INPUT 8192

static mp__mserver *g_server;
static unsigned long long g_inputs, g_replies[5];
static const char *const k_kinds[] = {"#RETURN", "#ERROR", "#PROXY", "#TRACEBACK",
                                      "#UNSERIALIZABLE"};

static void die(const char *what, int rc) {
    fprintf(stderr, "fuzz_manager: FINDING: %s: %s (%s)\n", what, mp_err_name(rc),
            mp_last_error_message());
    abort();
}

/* Checks a reply: (kind, result) with a kind Python knows; returns the kind's index. */
static int check_reply(const mp__buf *out) {
    mp_value *r = NULL;
    int rc = mp_value_loads(out->data, out->len, NULL, &r);
    if (rc) die("a reply that does not decode", rc);
    const char *kind = mp_value_as_str(mp_value_item(r, 0), NULL);
    if (mp_value_get_type(r) != MP_VALUE_TUPLE || mp_value_len(r) != 2 || !kind)
        die("a reply that is not (kind, result)", 0);
    int k = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(kind, k_kinds[i]) == 0) k = i;
    if (k < 0) die("a reply of an unknown kind", 0);
    mp_value_free(r);
    return k;
}

static void server_make(void) {
    static const char *const types[] = {"dict",  "list", "Namespace", "Value",
                                        "Queue", "Lock", "Event"};
    unsigned char key[4] = {1, 2, 3, 4};
    mp__mreg reg = {0};
    int rc = mp__mreg_add_sync(&reg);
    mp__mserver_cfg cfg = {.key = key, .keylen = sizeof key};
    if (!rc) rc = mp__mserver_new(&cfg, &reg, &g_server);
    if (rc) die("cannot make the server", rc);
    mp__mserver_fuzz_mode(g_server);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        mp_value *args = mp_value_tuple_new();
        mp_value_list_append(args, mp_value_str(types[i]));
        if (i == 3) {
            mp_value_list_append(args, mp_value_str("i"));
            mp_value_list_append(args, mp_value_int(0));
        }
        mp__buf req = {0}, out = {0};
        mp__mconn_state st = {MP__MCONN_FIRST, 0};
        rc = mp__mwire_request(&req, NULL, "create", args, NULL);
        if (!rc) rc = mp__mserver_request(g_server, req.data, req.len, &st, &out);
        if (rc || check_reply(&out) != 0) die("cannot make the objects", rc);
        mp__buf_free(&req);
        mp__buf_free(&out);
        mp_value_free(args);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    if (!g_server || g_inputs % 256 == 0) {
        mp__mserver_free(g_server);
        g_server = NULL;
        server_make();
    }
    g_inputs++;
    mp__buf out = {0};
    /* Byte 0: a first request (bit 0), or a method call under no lease or lease 1. */
    mp__mconn_state st = {data[0] & 1 ? MP__MCONN_FIRST : MP__MCONN_CALLS, (data[0] >> 1) & 1};
    int rc = mp__mserver_request(g_server, data + 1, size - 1, &st, &out);
    if (rc && rc != MP_ENOMEM) die("the handler failed", rc);
    if (!rc && out.len) g_replies[check_reply(&out)]++;
    if (st.mode == MP__MCONN_LEASE) mp__mserver_lease_end(g_server, st.lease);
    mp__buf_free(&out);
    return 0;
}

#ifndef MP_FUZZ_LIBFUZZER

#include "fuzz_driver.h"

/* Bytes that matter to a request: pickle opcodes of containers and strings, and the
 * first digits of the object ids. */
static const unsigned char interesting[] = {0x80, 0x8c, 0x94, 0x85, 0x86, 0x87, ')',  '}',
                                            '(',  't',  'N',  '.',  '1',  '5',  0x4b, 0x00};

static size_t mutate(unsigned char *m, size_t n, size_t cap) {
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? (size_t)(rnd() % n) : 0;
        switch (rnd() % 7) {
        case 0:
            if (n) m[at] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 1:
            if (n) m[at] = (unsigned char)rnd();
            break;
        case 2:
            if (n) m[at] = interesting[rnd() % sizeof interesting];
            break;
        case 3:
            n = fuzz_delete_run(m, n, at);
            break;
        case 4:
            n = fuzz_duplicate_run(m, n, cap, at, 32);
            break;
        case 5:
            n = fuzz_splice(m, n, at, 32);
            break;
        default:
            if (n) m[0] ^= 1; /* a public call read as a method call, and back */
            break;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    fuzz_opts o = {.name = "fuzz_manager", .max_input = MAX_INPUT, .strict = 0};
    if (mp_init(&argc, &argv)) return 2;
    if (fuzz_parse_args(&o, argc, argv)) return 2;
    size_t biggest = fuzz_run_corpus();
    double el;
    unsigned long long iters = fuzz_mutations(&o, biggest, mutate, &el);
    if (iters == ~0ULL) return 2;
    printf("fuzz_manager: corpus %zu requests, %llu mutations in %.0f s (%.0f/s); replies: "
           "%llu #RETURN, %llu #ERROR, %llu #PROXY, %llu #TRACEBACK, %llu #UNSERIALIZABLE; "
           "seed %llu, no findings\n",
           n_corpus, iters, el, el > 0 ? iters / el : (double)iters, g_replies[0], g_replies[1],
           g_replies[2], g_replies[3], g_replies[4], o.seed);
    mp__mserver_free(g_server);
    fuzz_free_corpus();
    return 0;
}

#endif
