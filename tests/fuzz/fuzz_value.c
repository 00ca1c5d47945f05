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

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

typedef struct blob {
    unsigned char *p;
    size_t n;
} blob;

static blob *corpus;
static size_t n_corpus, cap_corpus;

static int read_file(const char *path, blob *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, n = 0;
    unsigned char *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            unsigned char *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                p = NULL;
            }
            p = q;
        }
    }
    fclose(f);
    if (!p) return -1;
    out->p = p;
    out->n = n;
    return 0;
}

static void add_file(const char *path) {
    blob b;
    if (read_file(path, &b)) {
        fprintf(stderr, "fuzz_value: cannot read %s\n", path);
        exit(2);
    }
    if (n_corpus == cap_corpus) {
        cap_corpus = cap_corpus ? cap_corpus * 2 : 64;
        corpus = realloc(corpus, cap_corpus * sizeof *corpus);
        if (!corpus) exit(2);
    }
    corpus[n_corpus++] = b;
}

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz_value: no such file or directory: %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) exit(2);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(n);
        if (!full) exit(2);
        snprintf(full, n, "%s/%s", path, e->d_name);
        struct stat fs;
        if (stat(full, &fs) == 0 && !S_ISDIR(fs.st_mode)) add_file(full);
        free(full);
    }
    closedir(d);
}

static uint64_t rng_state;

static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

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
        case 3: { /* delete a run */
            size_t k = 1 + (size_t)(rnd() % 16);
            if (at + k > n) k = n - at;
            memmove(m + at, m + at + k, n - at - k);
            n -= k;
            break;
        }
        case 4: /* insert a byte */
            if (n < cap) {
                memmove(m + at + 1, m + at, n - at);
                m[at] = rnd() % 2 ? (unsigned char)rnd() : interesting[rnd() % sizeof interesting];
                n++;
            }
            break;
        case 5: { /* duplicate a run */
            size_t k = 1 + (size_t)(rnd() % 32);
            if (at + k > n) k = n - at;
            if (n + k <= cap) {
                memmove(m + at + k, m + at, n - at);
                n += k;
            }
            break;
        }
        case 6: { /* splice in a run of another corpus entry */
            const blob *o = &corpus[rnd() % n_corpus];
            if (!o->n) break;
            size_t from = (size_t)(rnd() % o->n), k = 1 + (size_t)(rnd() % 32);
            if (from + k > o->n) k = o->n - from;
            if (at + k > n) k = n - at;
            memcpy(m + at, o->p + from, k);
            break;
        }
        default: /* truncate */
            n = at;
            break;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    double seconds = 20;
    unsigned long long seed = 12345, max_iters = ~0ULL;
    int npaths = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--max-iters") == 0 && i + 1 < argc) {
            max_iters = strtoull(argv[++i], NULL, 10);
        } else {
            add_path(argv[i]);
            npaths++;
        }
    }
    if (!npaths || !n_corpus) {
        fprintf(stderr, "usage: fuzz_value [--seconds S] [--seed N] [--max-iters N] DIR|FILE...\n");
        return 2;
    }
    rng_state = seed ? seed : 1;
    size_t biggest = 0;
    for (size_t i = 0; i < n_corpus; i++) {
        LLVMFuzzerTestOneInput(corpus[i].p, corpus[i].n);
        if (corpus[i].n > biggest) biggest = corpus[i].n;
    }
    unsigned long long corpus_ok = n_decoded;
    if (corpus_ok != n_corpus)
        fprintf(stderr, "fuzz_value: note: %llu of %zu corpus files decode\n", corpus_ok, n_corpus);

    size_t cap = biggest * 2 + 64;
    unsigned char *m = malloc(cap);
    if (!m) return 2;
    time_t t0 = time(NULL);
    unsigned long long iters = 0;
    n_decoded = 0;
    while (iters < max_iters) {
        if ((iters & 255) == 0 && difftime(time(NULL), t0) >= seconds) break;
        const blob *b = &corpus[rnd() % n_corpus];
        memcpy(m, b->p, b->n);
        size_t n = mutate(m, b->n, cap);
        LLVMFuzzerTestOneInput(m, n);
        iters++;
    }
    double el = difftime(time(NULL), t0);
    printf("fuzz_value: corpus %zu files (%llu decode), %llu mutations in %.0f s (%.0f/s), "
           "%llu decoded and round-tripped, seed %llu, no findings\n",
           n_corpus, corpus_ok, iters, el, el > 0 ? iters / el : (double)iters, n_decoded, seed);
    free(m);
    for (size_t i = 0; i < n_corpus; i++) free(corpus[i].p);
    free(corpus);
    return corpus_ok == n_corpus ? 0 : 1;
}

#endif
