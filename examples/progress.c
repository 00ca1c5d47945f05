/* progress: a progress bar on a long map. Python programs wrap imap in tqdm for this;
 * here the pool reports progress itself (mp_call_opts.progress: items done and failed
 * so far, of the total, after each task), and the bar is drawn on stderr: redrawn in
 * place on a terminal, one line per tenth otherwise (a log, a pipe, ctest).
 *
 *     with Pool(4) as pool:
 *         results = list(tqdm(pool.imap(work, range(2000)), total=2000))
 *     print(len(results), 'results, sum', sum(results))
 *
 * The callback runs on the pool's result thread, one call at a time, while the main
 * thread waits in mp_pool_map: it must be quick and must not call the pool.
 *
 * Usage: progress [start-method] */
#include "example_util.h"

#ifdef _WIN32
#include <io.h>
#define isatty _isatty
#define fileno _fileno
#else
#include <unistd.h>
#endif

#define ITEMS 2000
#define WIDTH 40

static int fail(const char *what, int rc) {
    fprintf(stderr, "progress: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

/* The task: a millisecond of "work", then x * 2. */
static int work(const mp_value *x, mp_value **result) {
    ex_sleep_ms(1);
    *result = mp_value_int(mp_value_as_int(x) * 2);
    return *result ? 0 : MP_ENOMEM;
}

typedef struct bar {
    bool live;    /* stderr is a terminal: redraw one line */
    int last;     /* the last percentage (live) or tenth (not live) drawn */
    double start; /* when the map began */
    size_t calls; /* how often the pool reported */
} bar;

static void draw(void *ctx, size_t done, size_t total, size_t failed) {
    bar *b = ctx;
    b->calls++;
    int pct = total ? (int)(done * 100 / total) : 0;
    int step = b->live ? pct : pct / 10;
    if (step == b->last && done != total) return; /* nothing new to show */
    b->last = step;
    char cells[WIDTH + 1];
    int fill = total ? (int)(done * WIDTH / total) : 0;
    for (int i = 0; i < WIDTH; i++) cells[i] = i < fill ? '#' : '.';
    cells[WIDTH] = '\0';
    fprintf(stderr, "%s[%s] %3d%% %zu/%zu, %zu failed, %.1f s%s", b->live ? "\r" : "", cells, pct,
            done, total, failed, ex_now() - b->start, b->live && done != total ? "" : "\n");
    fflush(stderr);
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    mp_pool *pool = NULL;
    mp_pool_opts po = {.processes = 4};
    mp_value *items = mp_value_list_new(), *results = NULL;
    int failed = 1;
    for (int i = 0; i < ITEMS; i++) mp_value_list_append(items, mp_value_int(i));
    if ((rc = mp_pool_new(ctx, &po, &pool)) < 0) {
        fail("Pool", rc);
        goto out;
    }
    bar b = {.live = isatty(fileno(stderr)) != 0, .last = -1, .start = ex_now()};
    /* Small chunks, so that the bar moves often; chunksize 0 (adaptive) works too. */
    mp_call_opts co = {.chunksize = 10, .progress = draw, .ctx = &b};
    if ((rc = mp_pool_map(pool, work, items, &co, &results)) < 0) {
        fail("map", rc);
        goto out;
    }
    int64_t sum = 0;
    for (size_t i = 0; i < mp_value_len(results); i++)
        sum += mp_value_as_int(mp_value_item(results, i));
    printf("%zu results, sum %lld (the bar was updated %zu times)\n", mp_value_len(results),
           (long long)sum, b.calls);
    failed = sum != (int64_t)ITEMS * (ITEMS - 1) || b.last != (b.live ? 100 : 10);
out:
    mp_pool_free(pool);
    mp_value_free(items);
    mp_value_free(results);
    return failed;
}
