/* Fuzz harness for the value codec (mp_value_loads / mp_value_dumps).
 *
 * One input: decode it; when that works, encode the value, decode that again, and
 * require the same value and a stable encoding. Any crash, sanitizer report, leak or
 * abort is a finding.
 *
 * Built two ways:
 *  - with libFuzzer (-DMP_FUZZ=ON, clang): LLVMFuzzerTestOneInput only;
 *  - standalone (default): main runs every file of the corpus directories given, then
 *    random mutations of them for a bounded time, seeded, so CI can run it:
 *      fuzz_value [--seconds S] [--seed N] [--max-iters N] DIR|FILE...  */
#include <multiproc.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, int rc) {
    fprintf(stderr, "fuzz_value: FINDING: %s: %s (%s)\n", what, mp_err_name(rc),
            mp_last_error_message());
    abort();
}

static unsigned long long n_decoded; /* inputs that decoded (standalone statistics) */
static int in_corpus;                /* standalone: running the corpus files */
static unsigned long long n_bombs;   /* corpus files the amplification bound refuses */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* tight limits keep each run fast; they are what a server would set anyway */
    mp_value_limits lim = {.max_size = 1 << 20, .max_items = 1 << 16};
    mp_value *v = NULL;
    int rc = mp_value_loads(data, size, &lim, &v);
    if (rc) {
        if (v) die("loads failed but set *out", rc);
        if (rc != MP_EPROTO && rc != MP_ETOOBIG && rc != MP_ENOMEM)
            die("loads: unexpected code", rc);
        if (in_corpus && rc == MP_ETOOBIG) {
            /* the corpus's memo bombs (bomb_*): refused with the default limits too, by
             * the amplification bound, which no limit lifts */
            mp_value *x = NULL;
            if (mp_value_loads(data, size, NULL, &x) == MP_ETOOBIG &&
                strstr(mp_last_error_message(), "times the message's size"))
                n_bombs++;
            mp_value_free(x);
        }
        return 0;
    }
    n_decoded++;
    void *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    rc = mp_value_dumps(v, &buf, &len);
    if (rc) die("dumps of a decoded value", rc);
    /* the encoding has no memo, so it may be bigger than the input: no item limit */
    mp_value_limits big = {.max_items = SIZE_MAX};
    mp_value *w = NULL;
    rc = mp_value_loads(buf, len, &big, &w);
    if (rc) die("loads of our own dumps", rc);
    if (!mp_value_equal(v, w)) die("round trip changed the value", 0);
    rc = mp_value_dumps(w, &buf2, &len2);
    if (rc) die("second dumps", rc);
    if (len != len2 || memcmp(buf, buf2, len) != 0) die("encoding is not stable", 0);
    mp_value *c = mp_value_copy(v);
    if (!c || !mp_value_equal(v, c)) die("copy differs", 0);
    mp_value_free(c);
    mp_value_buf_free(buf);
    mp_value_buf_free(buf2);
    mp_value_free(v);
    mp_value_free(w);
    return 0;
}

#ifndef MP_FUZZ_LIBFUZZER

#include "fuzz_driver.h"

/* Values that tend to matter to a pickle reader: length bytes, opcode bytes, and what
 * the text opcodes of protocols 0-1 read (newlines, digits, escapes, quotes). */
static const unsigned char interesting[] = {
    0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xfe, '(', '.',  'N',  ']',  '}',  ')',  'a',
    'e',  's',  'u',  't',  'h',  'j',  'q',  'r', 0x94, 0x95, 0x93, 0x8c, 0x8d, 0x8e,
    0x8a, 0x8b, 'R',  'b',  0x8f, 0x90, 0x91, 'I', 'L',  'F',  'V',  'S',  'T',  'U',
    'l',  'd',  'p',  'g',  '\n', '\\', '\'', '0', '9',  '-',  'e',  'x',  'u'};

/* Mutates m (capacity cap) in place; returns the new length. */
static size_t mutate(unsigned char *m, size_t n, size_t cap) {
    int edits = 1 + (int)(rnd() % 6);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? (size_t)(rnd() % n) : 0;
        switch (rnd() % 8) {
        case 0: /* flip a bit */
            if (n) m[at] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 1: /* random byte */
            if (n) m[at] = (unsigned char)rnd();
            break;
        case 2: /* interesting byte */
            if (n) m[at] = interesting[rnd() % sizeof interesting];
            break;
        case 3: /* delete a run */
            n = fuzz_delete_run(m, n, at);
            break;
        case 4: /* insert a byte */
            if (n < cap) {
                memmove(m + at + 1, m + at, n - at);
                m[at] = rnd() % 2 ? (unsigned char)rnd() : interesting[rnd() % sizeof interesting];
                n++;
            }
            break;
        case 5: /* duplicate a run */
            n = fuzz_duplicate_run(m, n, cap, at, 32);
            break;
        case 6: /* splice in a run of another corpus entry */
            n = fuzz_splice(m, n, at, 32);
            break;
        default: /* truncate */
            n = at;
            break;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    fuzz_opts o = {.name = "fuzz_value", .max_input = SIZE_MAX, .strict = 1};
    if (fuzz_parse_args(&o, argc, argv)) return 2;
    in_corpus = 1;
    size_t biggest = fuzz_run_corpus();
    in_corpus = 0;
    unsigned long long corpus_ok = n_decoded;
    if (corpus_ok + n_bombs != n_corpus)
        fprintf(stderr,
                "fuzz_value: note: %llu of %zu corpus files decode, %llu are refused bombs\n",
                corpus_ok, n_corpus, n_bombs);

    n_decoded = 0;
    double el;
    unsigned long long iters = fuzz_mutations(&o, biggest, mutate, &el);
    if (iters == ~0ULL) return 2;
    printf("fuzz_value: corpus %zu files (%llu decode, %llu bombs refused), %llu mutations in %.0f "
           "s (%.0f/s), "
           "%llu decoded and round-tripped, seed %llu, no findings\n",
           n_corpus, corpus_ok, n_bombs, iters, el, el > 0 ? iters / el : (double)iters, n_decoded,
           o.seed);
    fuzz_free_corpus();
    return corpus_ok + n_bombs == n_corpus ? 0 : 1;
}

#endif
