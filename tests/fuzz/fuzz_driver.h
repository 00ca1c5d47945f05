/* The standalone driver of the fuzz harnesses (fuzz_value.c, fuzz_frame.c), included
 * after the harness's LLVMFuzzerTestOneInput when it is not built for libFuzzer: the
 * corpus, the seeded random numbers, the command line and the timed mutation loop.
 * Each harness keeps its own mutator and report. */
#ifndef MP_TESTS_FUZZ_DRIVER_H
#define MP_TESTS_FUZZ_DRIVER_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct blob {
    unsigned char *p;
    size_t n;
} blob;

static blob *corpus;
static size_t n_corpus, cap_corpus;

typedef struct fuzz_opts {
    const char *name; /* the program, for messages */
    size_t max_input; /* bytes of a corpus file used, and the mutation buffer's bound */
    int strict;       /* a path that cannot be read is an error (else it is skipped) */
    double seconds;   /* of mutations */
    unsigned long long seed, max_iters;
} fuzz_opts;

/* At most o->max_input bytes of the file at path; -1 when it cannot be read. */
static int fuzz_read_file(const fuzz_opts *o, const char *path, blob *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, n = 0;
    unsigned char *p = malloc(cap);
    size_t r;
    while (p && n < o->max_input && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            unsigned char *q = realloc(p, cap *= 2);
            if (!q) free(p);
            p = q;
        }
    }
    fclose(f);
    if (!p) return -1;
    out->p = p;
    out->n = n < o->max_input ? n : o->max_input;
    return 0;
}

static void fuzz_add_file(const fuzz_opts *o, const char *path) {
    blob b;
    if (fuzz_read_file(o, path, &b)) {
        if (!o->strict) return;
        fprintf(stderr, "%s: cannot read %s\n", o->name, path);
        exit(2);
    }
    if (n_corpus == cap_corpus) {
        cap_corpus = cap_corpus ? cap_corpus * 2 : 64;
        corpus = realloc(corpus, cap_corpus * sizeof *corpus);
        if (!corpus) exit(2);
    }
    corpus[n_corpus++] = b;
}

static void fuzz_add_path(const fuzz_opts *o, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (!o->strict) return;
        fprintf(stderr, "%s: no such file or directory: %s\n", o->name, path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        fuzz_add_file(o, path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) {
        if (!o->strict) return;
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(n);
        if (!full) exit(2);
        snprintf(full, n, "%s/%s", path, e->d_name);
        struct stat fs;
        if (stat(full, &fs) == 0 && !S_ISDIR(fs.st_mode)) fuzz_add_file(o, full);
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

/* Edits both mutators make (m holds n bytes, capacity cap; at < n unless n is 0); each
 * returns the new length. */

/* Deletes a run of up to 16 bytes at at. */
static size_t fuzz_delete_run(unsigned char *m, size_t n, size_t at) {
    size_t k = 1 + (size_t)(rnd() % 16);
    if (at + k > n) k = n - at;
    memmove(m + at, m + at + k, n - at - k);
    return n - k;
}

/* Repeats the run of up to max_run bytes at at, when it fits. */
static size_t fuzz_duplicate_run(unsigned char *m, size_t n, size_t cap, size_t at,
                                 size_t max_run) {
    size_t k = 1 + (size_t)(rnd() % max_run);
    if (at + k > n) k = n - at;
    if (n + k <= cap) {
        memmove(m + at + k, m + at, n - at);
        n += k;
    }
    return n;
}

/* Overwrites up to max_run bytes at at with a run of another corpus entry. */
static size_t fuzz_splice(unsigned char *m, size_t n, size_t at, size_t max_run) {
    const blob *o = &corpus[rnd() % n_corpus];
    if (!o->n) return n;
    size_t from = (size_t)(rnd() % o->n), k = 1 + (size_t)(rnd() % max_run);
    if (from + k > o->n) k = o->n - from;
    if (at + k > n) k = n - at;
    memcpy(m + at, o->p + from, k);
    return n;
}

/* [--seconds S] [--seed N] [--max-iters N] DIR|FILE...: fills the corpus and seeds rnd;
 * 0, or 2 (and the usage said) when no corpus was given. */
static int fuzz_parse_args(fuzz_opts *o, int argc, char **argv) {
    o->seconds = 20;
    o->seed = 12345;
    o->max_iters = ~0ULL;
    int npaths = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            o->seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            o->seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--max-iters") == 0 && i + 1 < argc) {
            o->max_iters = strtoull(argv[++i], NULL, 10);
        } else {
            fuzz_add_path(o, argv[i]);
            npaths++;
        }
    }
    if (!npaths || !n_corpus) {
        fprintf(stderr, "usage: %s [--seconds S] [--seed N] [--max-iters N] DIR|FILE...\n",
                o->name);
        return 2;
    }
    rng_state = o->seed ? o->seed : 1;
    return 0;
}

/* Runs every corpus entry once; the size of the biggest. */
static size_t fuzz_run_corpus(void) {
    size_t biggest = 0;
    for (size_t i = 0; i < n_corpus; i++) {
        LLVMFuzzerTestOneInput(corpus[i].p, corpus[i].n);
        if (corpus[i].n > biggest) biggest = corpus[i].n;
    }
    return biggest;
}

/* Mutates random corpus entries (mutate: buffer, length, capacity; the new length) and
 * runs them until o->seconds have passed or o->max_iters runs; the number of runs, its
 * time in *elapsed, or ~0ULL when out of memory. */
static unsigned long long fuzz_mutations(const fuzz_opts *o, size_t biggest,
                                         size_t (*mutate)(unsigned char *, size_t, size_t),
                                         double *elapsed) {
    size_t cap = biggest * 2 + 64;
    if (cap > o->max_input) cap = o->max_input;
    unsigned char *m = malloc(cap);
    if (!m) return ~0ULL;
    time_t t0 = time(NULL);
    unsigned long long iters = 0;
    while (iters < o->max_iters) {
        if ((iters & 255) == 0 && difftime(time(NULL), t0) >= o->seconds) break;
        const blob *b = &corpus[rnd() % n_corpus];
        size_t n = b->n < cap ? b->n : cap;
        memcpy(m, b->p, n);
        n = mutate(m, n, cap);
        LLVMFuzzerTestOneInput(m, n);
        iters++;
    }
    *elapsed = difftime(time(NULL), t0);
    free(m);
    return iters;
}

static void fuzz_free_corpus(void) {
    for (size_t i = 0; i < n_corpus; i++) free(corpus[i].p);
    free(corpus);
}

#endif
