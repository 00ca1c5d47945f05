/* Fuzz harness for the post-authentication frame reader (core/connection.c): the input
 * is the byte stream a connection reads, as a hostile or broken peer might send it
 * (4-byte headers, -1 with an 8-byte length, negative lengths, truncated frames,
 * lengths far beyond the maximum), read with every kind of receive.
 *
 * Input: byte 0 configures the connection (bits 0-1: maximum message 64 KiB, 1 MiB,
 * the 1 GiB default or 100 bytes; bit 2: buffered receiving); bytes 1-4 choose the
 * receives in turn (recv_bytes, recv_bytes with maxlength 100, recv_bytes_into with
 * and without taking a message that does not fit, recv of a value); the rest is the
 * stream, written to a pipe whose read end becomes the connection.
 *
 * Oracles, besides the sanitizers (memory errors, leaks, undefined behaviour): a model
 * of CPython's framing predicts each receive's outcome (the message, clean end of
 * file, or an error that closes the connection: MP_EOF mid-message, MP_EPROTO,
 * MP_ETOOBIG), and the received bytes must be the model's; no single allocation may
 * exceed ALLOC_BOUND, whatever a header claims (standalone GNU builds wrap malloc to
 * check; with libFuzzer use -malloc_limit_mb=5).
 *
 * Built two ways, as fuzz_value.c:
 *  - with libFuzzer (-DMP_FUZZ=ON, clang): LLVMFuzzerTestOneInput only;
 *  - standalone (default): runs the corpus files given, then seeded random mutations
 *    of them for a bounded time:
 *      fuzz_frame [--seconds S] [--seed N] [--max-iters N] DIR|FILE...  */
#include <multiproc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

int mp__connection_from_os_handle(mp_os_handle h, int kind, bool readable, bool writable,
                                  mp_connection **out);

#define PIPE_KIND 2      /* MP__CONN_PIPE */
#define MAX_STREAM 60000 /* fits a fresh pipe's buffer: written whole before reading */
#define ALLOC_BOUND (((size_t)4 << 20) + 65536) /* the reader's first chunk for a body */

static void die(const char *what, int rc) {
    fprintf(stderr, "fuzz_frame: FINDING: %s: %s (%s)\n", what, mp_err_name(rc),
            mp_last_error_message());
    abort();
}

/* ---- allocation bound: ld --wrap=malloc,calloc,realloc (standalone GNU builds) ---- */

static size_t g_biggest;
static int g_tracking;

#ifdef MP_FUZZ_WRAP_ALLOC
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static void note(size_t n) {
    if (g_tracking && n > g_biggest) g_biggest = n;
}
void *__wrap_malloc(size_t n) {
    note(n);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size) {
    note(size && n > SIZE_MAX / size ? SIZE_MAX : n * size);
    return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n) {
    note(n);
    return __real_realloc(p, n);
}
#endif

/* ---- the model: CPython's framing over the stream ---- */

enum { EXP_OK, EXP_EOF_CLEAN, EXP_EOF_MID, EXP_PROTO, EXP_BIG };

typedef struct model {
    const unsigned char *p;
    size_t n, pos;
} model;

/* The next message's fate, given a maxlength (0: none) and the connection's maximum. */
static int expect(const model *m, uint64_t maxlen, uint64_t maxmsg, uint64_t *size, size_t *hl) {
    size_t rem = m->n - m->pos;
    const unsigned char *h = m->p + m->pos;
    *size = 0;
    *hl = 4;
    if (rem == 0) return EXP_EOF_CLEAN;
    if (rem < 4) return EXP_EOF_MID;
    uint32_t u = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (u == 0xffffffffu) {
        if (rem < 12) return EXP_EOF_MID;
        *hl = 12;
        for (int i = 4; i < 12; i++) *size = *size << 8 | h[i];
    } else if (u > 0x7fffffffu) {
        return EXP_PROTO;
    } else {
        *size = u;
    }
    if ((maxlen && *size > maxlen) || (maxmsg && *size > maxmsg) || *size > (uint64_t)SIZE_MAX - 1)
        return EXP_BIG;
    if (*size > rem - *hl) return EXP_EOF_MID;
    return EXP_OK;
}

static int feed(const uint8_t *data, size_t size, mp_connection **out) {
    *out = NULL;
#ifdef _WIN32
    HANDLE r, w;
    if (!CreatePipe(&r, &w, NULL, 1 << 20)) return MP_EIO;
    DWORD k = 0;
    BOOL ok = size ? WriteFile(w, data, (DWORD)size, &k, NULL) : TRUE;
    CloseHandle(w);
    if (!ok || k != size) {
        CloseHandle(r);
        return MP_EIO;
    }
    int rc = mp__connection_from_os_handle((mp_os_handle)r, PIPE_KIND, true, false, out);
    if (rc) CloseHandle(r);
#else
    int fds[2];
    if (pipe(fds)) return MP_EIO;
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fds[1], data + done, size - done);
        if (k <= 0) break;
        done += (size_t)k;
    }
    close(fds[1]);
    if (done != size) {
        close(fds[0]);
        return MP_EIO;
    }
    int rc = mp__connection_from_os_handle(fds[0], PIPE_KIND, true, false, out);
    if (rc) close(fds[0]);
#endif
    return rc;
}

static unsigned long long n_messages; /* messages received whole (statistics) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    static const uint64_t maxima[4] = {65536, 1 << 20, MP_CONNECTION_DEFAULT_MAX_MESSAGE, 100};
    const uint64_t maxmsg = maxima[data[0] & 3];
    const uint8_t *ops = data + 1;
    model m = {data + 5, size - 5 > MAX_STREAM ? MAX_STREAM : size - 5, 0};
    mp_connection *c = NULL;
    int rc = feed(m.p, m.n, &c);
    if (rc) die("cannot set up the pipe", rc);
    if ((rc = mp_connection_set_max_message(c, maxmsg))) die("set_max_message", rc);
    if ((rc = mp_connection_set_buffered(c, (data[0] & 4) != 0))) die("set_buffered", rc);
    g_biggest = 0;
    g_tracking = 1;
    for (unsigned i = 0;; i++) {
        int op = ops[i % 4] % 5;
        uint64_t want;
        size_t hl;
        int x = expect(&m, op == 1 ? 100 : 0, maxmsg, &want, &hl);
        const unsigned char *payload = m.p + m.pos + hl;
        char small[64];
        size_t len = 0, off = op == 2 ? i % 8 : 0;
        void *p = NULL, *whole = NULL;
        bool fits = false;
        if (op <= 1) {
            rc = mp_connection_recv_bytes(c, op == 1 ? 100 : 0, &p, &len);
        } else if (op <= 3) {
            fits = want <= sizeof small - off;
            rc = mp_connection_recv_bytes_into(c, small, sizeof small, off, &len,
                                               op == 2 ? &whole : NULL);
            if (!rc) p = small + off;
        } else {
            mp_value *v = NULL;
            rc = mp_connection_recv(c, &v);
            if (rc == 0 || x != EXP_OK) {
                if (!!v != !rc) die("recv: *out does not match the result", rc);
            } else if (mp_connection_closed(c)) {
                die("a value that does not decode closed the connection", rc);
            }
            mp_value_free(v);
            if (x == EXP_OK) rc = 0; /* decoding is fuzz_value's business; the frame was whole */
        }
        bool closed = mp_connection_closed(c);
        switch (x) {
        case EXP_OK:
            if (op == 2 || op == 3) {
                if (fits ? rc != 0 : rc != MP_ETOOBIG) die("recv_bytes_into: wrong outcome", rc);
                if (len != want) die("recv_bytes_into: wrong length", rc);
                if (!fits) p = whole;
            } else if (rc) {
                die("a whole message was refused", rc);
            }
            if (closed) die("a whole message closed the connection", rc);
            if (op != 4 && p && len && memcmp(p, payload, len) != 0) die("received other bytes", 0);
            if (op <= 1) mp_connection_free_bytes(p);
            mp_connection_free_bytes(whole);
            m.pos += hl + (size_t)want;
            n_messages++;
            break;
        case EXP_EOF_CLEAN:
            if (rc != MP_EOF || closed) die("clean end of file", rc);
            break;
        case EXP_EOF_MID:
            if (rc != MP_EOF || !closed) die("end of file in the middle of a message", rc);
            break;
        case EXP_PROTO:
            if (rc != MP_EPROTO || !closed) die("malformed header", rc);
            break;
        default:
            if (rc != MP_ETOOBIG || !closed) die("oversized message", rc);
            break;
        }
        if (x != EXP_OK) {
            if (p && op <= 1) die("an error left a buffer", rc);
            if (whole) die("an error left a whole message", rc);
            break;
        }
    }
    g_tracking = 0;
    if (g_biggest > ALLOC_BOUND) {
        fprintf(stderr, "fuzz_frame: allocation of %zu bytes\n", g_biggest);
        die("an allocation beyond the bound", 0);
    }
    mp_connection_free(c);
    return 0;
}

#ifndef MP_FUZZ_LIBFUZZER

#include "fuzz_driver.h"

/* Bytes that matter to a frame reader: the edges of the length fields. */
static const unsigned char interesting[] = {0x00, 0x01, 0x04, 0x0c, 0x3f, 0x40,
                                            0x7f, 0x80, 0xfe, 0xff, 0x10, 0x20};

/* Mutates m (capacity cap) in place; returns the new length. */
static size_t mutate(unsigned char *m, size_t n, size_t cap) {
    int edits = 1 + (int)(rnd() % 6);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? (size_t)(rnd() % n) : 0;
        switch (rnd() % 8) {
        case 0:
            if (n) m[at] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 1:
            if (n) m[at] = (unsigned char)rnd();
            break;
        case 2:
            if (n) m[at] = interesting[rnd() % sizeof interesting];
            break;
        case 3: { /* a header: small, large, -1 + 8 bytes, or negative */
            static const unsigned char hdrs[][12] = {
                {0, 0, 0, 3},
                {0, 0, 0x10, 0},
                {0x7f, 0xff, 0xff, 0xff},
                {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5},
                {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                {0xff, 0xff, 0xff, 0xfe},
                {0x80, 0, 0, 0},
                {0, 0, 0, 0}};
            const unsigned char *h = hdrs[rnd() % 8];
            size_t k = (h[0] == 0xff && h[3] == 0xff) ? 12 : 4;
            if (n + k <= cap) {
                memmove(m + at + k, m + at, n - at);
                memcpy(m + at, h, k);
                n += k;
            }
            break;
        }
        case 4: /* delete a run */
            n = fuzz_delete_run(m, n, at);
            break;
        case 5: /* duplicate a run */
            n = fuzz_duplicate_run(m, n, cap, at, 64);
            break;
        case 6: /* splice in a run of another corpus entry */
            n = fuzz_splice(m, n, at, 64);
            break;
        default: /* truncate */
            n = at;
            break;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    fuzz_opts o = {.name = "fuzz_frame", .max_input = MAX_STREAM + 5, .strict = 0};
    if (fuzz_parse_args(&o, argc, argv)) return 2;
    size_t biggest = fuzz_run_corpus();
    unsigned long long corpus_msgs = n_messages;
    double el;
    unsigned long long iters = fuzz_mutations(&o, biggest, mutate, &el);
    if (iters == ~0ULL) return 2;
    printf("fuzz_frame: corpus %zu files (%llu messages), %llu mutations in %.0f s (%.0f/s), "
           "%llu messages received whole, allocation bound %s, seed %llu, no findings\n",
           n_corpus, corpus_msgs, iters, el, el > 0 ? iters / el : (double)iters, n_messages,
#ifdef MP_FUZZ_WRAP_ALLOC
           "checked",
#else
           "not checked (no malloc wrapping in this build)",
#endif
           o.seed);
    fuzz_free_corpus();
    return 0;
}

#endif
