/* Fuzz driver for the authentication handshake (core/auth.c): feeds random and mutated
 * peer messages to both sides of CPython's challenge/response over a socket pair, for
 * a bounded time. A standalone program (no libFuzzer needed), run by ctest as
 * fuzz_handshake_smoke; build with -DMP_ASAN=ON -DMP_UBSAN=ON to catch memory errors.
 *
 *   fuzz_handshake [--seconds S] [--iterations N] [--seed X] [--verbose]
 *
 * Oracles, besides the sanitizers: every call ends (a deadline bounds each one) with
 * one of the codes a peer can cause, and the challenging side never accepts an answer
 * the script could not have computed (the challenge is random and unseen). Exit
 * status 0 when nothing was found, 1 with the seed and iteration otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/connection_internal.h"
#include "core/os_net.h"

static uint64_t g_rng;

static uint64_t rnd(void) {
    /* xorshift64*: reproducible from the seed printed on failure. */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

typedef struct script {
    unsigned char b[4096];
    size_t n;
} script;

static void put(script *s, const void *p, size_t n) {
    if (n > sizeof s->b - s->n) n = sizeof s->b - s->n;
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void put_frame(script *s, const void *p, size_t n) {
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    put(s, h, 4);
    put(s, p, n);
}

/* A plausible message: what a correct peer might send at some step. */
static size_t plausible(unsigned char *m) {
    static const char *digests[] = {"{sha256}", "{md5}", "{sha384}", "{sha3_256}",
                                    "{sha1}",   "{",     "{}"};
    size_t n = 0;
    switch (below(6)) {
    case 0: /* a modern challenge */
    case 1: {
        const char *d = digests[below(sizeof digests / sizeof digests[0])];
        memcpy(m, "#CHALLENGE#", 11);
        n = 11;
        memcpy(m + n, d, strlen(d));
        n += strlen(d);
        size_t r = below(3) ? 40 : below(80);
        for (size_t i = 0; i < r; i++) m[n++] = (unsigned char)rnd();
        break;
    }
    case 2: /* a legacy challenge */
        memcpy(m, "#CHALLENGE#", 11);
        n = 11;
        for (size_t i = 0; i < 20; i++) m[n++] = (unsigned char)rnd();
        break;
    case 3:
        memcpy(m, "#WELCOME#", 9);
        n = 9;
        break;
    case 4: /* an answer: prefixed or bare */
        if (below(2)) {
            memcpy(m, "{sha256}", 8);
            n = 8;
            for (size_t i = 0; i < 32; i++) m[n++] = (unsigned char)rnd();
        } else {
            for (size_t i = 0; i < 16; i++) m[n++] = (unsigned char)rnd();
        }
        break;
    default:
        n = below(300);
        for (size_t i = 0; i < n; i++) m[i] = (unsigned char)rnd();
        break;
    }
    return n;
}

static size_t mutate(unsigned char *m, size_t n, size_t cap) {
    size_t k = 1 + below(4);
    for (size_t j = 0; j < k; j++) {
        switch (below(4)) {
        case 0:
            if (n) m[below(n)] ^= (unsigned char)(1u << below(8));
            break;
        case 1:
            if (n) n = below(n + 1);
            break;
        case 2:
            if (n < cap) m[n++] = (unsigned char)rnd();
            break;
        default:
            if (n) m[below(n)] = "{}#\0\xff"[below(5)];
            break;
        }
    }
    return n;
}

static void build(script *s) {
    s->n = 0;
    if (below(3) == 0) {
        /* A correct opening (a challenge, then #WELCOME# whatever we answered), so the
         * fuzzing reaches the second half: our challenge and the peer's answer. */
        unsigned char m[128];
        size_t n = 11;
        memcpy(m, "#CHALLENGE#", 11);
        if (below(2)) {
            memcpy(m + n, "{sha256}", 8);
            n += 8;
        }
        size_t r = n == 11 ? 20 : 40;
        for (size_t i = 0; i < r; i++) m[n++] = (unsigned char)rnd();
        put_frame(s, m, n);
        put_frame(s, "#WELCOME#", 9);
    }
    size_t frames = 1 + below(4);
    for (size_t f = 0; f < frames; f++) {
        unsigned char m[512];
        size_t n = plausible(m);
        switch (below(8)) {
        case 0: /* a raw header announcing a huge or negative length */ {
            static const unsigned char heads[][12] = {
                {0x7f, 0xff, 0xff, 0xff},
                {0x80, 0, 0, 0},
                {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5},
                {0, 0, 1, 1},
                {0, 0, 1, 0}};
            size_t i = below(sizeof heads / sizeof heads[0]);
            put(s, heads[i], i == 2 || i == 3 ? 12 : 4);
            break;
        }
        case 1: /* a header cut short */
            put(s, "\0\0", below(4));
            break;
        case 2:
        case 3:
            put_frame(s, m, mutate(m, n, sizeof m));
            break;
        default:
            put_frame(s, m, n);
            break;
        }
    }
    if (below(4) == 0) { /* trailing junk */
        unsigned char j[64];
        size_t n = below(sizeof j);
        for (size_t i = 0; i < n; i++) j[i] = (unsigned char)rnd();
        put(s, j, n);
    }
}

static bool expected_rc(int rc) {
    return rc == 0 || rc == MP_EAUTH || rc == MP_EOF || rc == MP_ETIMEDOUT || rc == MP_EPIPE;
}

int main(int argc, char **argv) {
    if (mp_init(&argc, &argv) != 0) return 2;
    double seconds = 5.0;
    long long iterations = -1;
    bool verbose = false;
    g_rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)mp_getpid();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
            iterations = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            g_rng = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--verbose"))
            verbose = true;
        else {
            fprintf(stderr, "usage: %s [--seconds S] [--iterations N] [--seed X] [--verbose]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!g_rng) g_rng = 1;
    const uint64_t seed = g_rng;
    printf("fuzz_handshake: seed 0x%llx, %.1f s\n", (unsigned long long)seed, seconds);
    fflush(stdout);

    static const char key[] = "fuzz key";
    double end = mp__os_monotonic() + seconds;
    long long it = 0, accepted = 0, by_code[32] = {0};
    for (; (iterations < 0 || it < iterations) && mp__os_monotonic() < end; it++) {
        mp_os_handle h[2];
        if (mp__os_net_socketpair(h) != 0) {
            fprintf(stderr, "socketpair: %s\n", mp_last_error_message());
            return 2;
        }
        script s;
        build(&s);
        if (mp__os_net_write(h[1], MP__CONN_SOCKET, s.b, s.n, mp__os_monotonic() + 5.0) != 0) {
            fprintf(stderr, "write: %s\n", mp_last_error_message());
            return 2;
        }
        /* Mostly the peer ends its side after the script (end of file, our replies
         * still arrive); sometimes it closes outright (our writes fail); sometimes it
         * stays silent and only the deadline ends the wait. */
        size_t how = below(8);
        bool hang_up = how != 0;
        if (how == 1) {
            mp__os_net_close(h[1], MP__CONN_SOCKET);
            h[1] = MP_INVALID_OS_HANDLE;
        } else if (hang_up && mp__os_net_shutdown_write(h[1]) != 0) {
            fprintf(stderr, "shutdown: %s\n", mp_last_error_message());
            return 2;
        }
        double deadline = mp__os_monotonic() + (hang_up ? 5.0 : 0.02);
        bool client_role = below(2) == 0;
        int rc1, rc2 = 0;
        if (client_role) {
            /* Client: answer the listener's challenge, then challenge it. */
            rc1 = mp__auth_answer(h[0], MP__CONN_SOCKET, key, sizeof key - 1, deadline);
            if (rc1 == 0)
                rc2 = mp__auth_deliver(h[0], MP__CONN_SOCKET, key, sizeof key - 1, deadline);
        } else {
            /* Listener: challenge first, then answer. */
            rc1 = mp__auth_deliver(h[0], MP__CONN_SOCKET, key, sizeof key - 1, deadline);
            if (rc1 == 0)
                rc2 = mp__auth_answer(h[0], MP__CONN_SOCKET, key, sizeof key - 1, deadline);
        }
        mp__os_net_close(h[0], MP__CONN_SOCKET);
        if (h[1] != MP_INVALID_OS_HANDLE) mp__os_net_close(h[1], MP__CONN_SOCKET);
        int last = rc1 ? rc1 : rc2;
        bool bad = !expected_rc(rc1) || !expected_rc(rc2);
        /* The scripted peer never saw our random challenge, so it cannot have answered it. */
        if ((client_role && rc1 == 0 && rc2 == 0) || (!client_role && rc1 == 0)) {
            fprintf(stderr, "FINDING: a forged answer was accepted (%s side)\n",
                    client_role ? "client" : "listener");
            bad = true;
        }
        if (client_role && rc1 == 0) accepted++;
        by_code[-last < 32 && last <= 0 ? -last : 31]++;
        if (verbose)
            printf("%lld %s rc=%s/%s %s\n", it, client_role ? "client" : "listener",
                   mp_err_name(rc1), mp_err_name(rc2), mp_last_error_message());
        if (bad) {
            fprintf(stderr, "FINDING at iteration %lld (seed 0x%llx): rc %s/%s: %s\n", it,
                    (unsigned long long)seed, mp_err_name(rc1), mp_err_name(rc2),
                    mp_last_error_message());
            return 1;
        }
    }
    printf("fuzz_handshake: %lld iterations, %lld challenges answered and welcomed;", it, accepted);
    for (int c = 0; c < 32; c++)
        if (by_code[c]) printf(" %s=%lld", mp_err_name(-c), by_code[c]);
    printf("\nfuzz_handshake: no finding\n");
    return 0;
}
