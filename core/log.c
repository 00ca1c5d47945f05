/* Logging and finalizers (include/multiproc/log.h): Python's multiprocessing.util.
 * The settings are a few atomics, read on every record; the hook and the finalizer
 * registry sit behind a lock of their own, held for a few instructions (never while a
 * hook or a finalizer runs), so that logging works under any other lock. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "os.h"

/* ---- the small lock ---- */

static atomic_flag g_busy = ATOMIC_FLAG_INIT;

static void small_lock(void) {
    for (unsigned spins = 0; atomic_flag_test_and_set_explicit(&g_busy, memory_order_acquire);
         spins++)
        if (spins > 64) mp__os_sleep(0);
}

static void small_unlock(void) { atomic_flag_clear_explicit(&g_busy, memory_order_release); }

/* ---- logging ---- */

static _Atomic int g_level;      /* MP_LOG_NOTSET: WARNING, as Python's effective level */
static _Atomic bool g_to_stderr; /* log_to_stderr was called */
static _Atomic bool g_have_hook; /* read without the lock to skip it */
static mp_log_hook g_hook;       /* under small_lock */
static void *g_hook_ctx;

/* The name of the process (or dummy child) logging: told by core/process.c, which
 * logs through here too, so this file does not call up into it. */
static _Atomic(mp__log_namer) g_namer;

void mp__log_set_namer(mp__log_namer fn) { atomic_store(&g_namer, fn); }

static int effective(int level) { return level > 0 ? level : MP_LOG_WARNING; }

void mp_log_to_stderr(int level) {
    if (level > 0) atomic_store(&g_level, level);
    atomic_store(&g_to_stderr, true);
}

void mp_log_stop_stderr(void) { atomic_store(&g_to_stderr, false); }

bool mp_log_to_stderr_enabled(void) { return atomic_load(&g_to_stderr); }

int mp_log_set_level(int level) {
    if (level < 0) return mp__err(MP_EINVAL, "mp_log_set_level: level %d is negative", level);
    atomic_store(&g_level, level);
    return 0;
}

int mp_log_get_level(void) { return effective(atomic_load(&g_level)); }

void mp_log_set_hook(mp_log_hook hook, void *ctx) {
    small_lock();
    g_hook = hook;
    g_hook_ctx = ctx;
    atomic_store(&g_have_hook, hook != NULL);
    small_unlock();
}

bool mp_log_enabled(int level) {
    if (!atomic_load_explicit(&g_to_stderr, memory_order_relaxed) &&
        !atomic_load_explicit(&g_have_hook, memory_order_relaxed))
        return false;
    return level >= effective(atomic_load_explicit(&g_level, memory_order_relaxed));
}

const char *mp_log_level_name(int level) {
    static MP__THREAD_LOCAL char other[32];
    switch (level) {
    case MP_LOG_NOTSET:
        return "NOTSET";
    case MP_LOG_SUBDEBUG:
        return "SUBDEBUG";
    case MP_LOG_DEBUG:
        return "DEBUG";
    case MP_LOG_INFO:
        return "INFO";
    case MP_LOG_SUBWARNING:
        return "SUBWARNING";
    case MP_LOG_WARNING:
        return "WARNING";
    case MP_LOG_ERROR:
        return "ERROR";
    case MP_LOG_CRITICAL:
        return "CRITICAL";
    default:
        snprintf(other, sizeof other, "Level %d", level);
        return other;
    }
}

void mp_log_v(int level, const char *fmt, va_list ap) {
    if (!fmt || !mp_log_enabled(level)) return;
    char msg[2048];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof msg) memcpy(msg + sizeof msg - 4, "...", 4);
    mp__log_namer namer = atomic_load(&g_namer);
    const char *who = namer ? namer() : NULL;
    if (!who) who = "MainProcess";
    if (atomic_load(&g_to_stderr)) {
        /* One write per record: lines of several processes never mix. */
        char line[2200];
        int k = snprintf(line, sizeof line, "[%s/%s] %s\n", mp_log_level_name(level), who, msg);
        if (k > 0) {
            size_t len = (size_t)k < sizeof line ? (size_t)k : sizeof line - 1;
            if (line[len - 1] != '\n') line[len - 1] = '\n';
            fwrite(line, 1, len, stderr);
            fflush(stderr);
        }
    }
    if (atomic_load(&g_have_hook)) {
        small_lock();
        mp_log_hook hook = g_hook;
        void *ctx = g_hook_ctx;
        small_unlock();
        if (hook) hook(ctx, level, who, msg);
    }
}

void mp_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mp_log_v(level, fmt, ap);
    va_end(ap);
}

void mp__log_settings(int *level, bool *to_stderr) {
    *level = atomic_load(&g_level);
    *to_stderr = atomic_load(&g_to_stderr);
}

void mp__log_inherit(int level, bool to_stderr) {
    atomic_store(&g_level, level);
    atomic_store(&g_to_stderr, to_stderr);
}

/* ---- finalizers ---- */

struct mp_finalizer {
    mp_finalizer *next;
    mp_finalize_fn fn;
    void *arg;
    int priority;
    uint64_t order; /* creation order: later ones run first within a priority */
};

static mp_finalizer *g_finalizers; /* under small_lock */
static mp_finalizer *g_inherited;  /* a fork child's copies of its parent's: never run */
static uint64_t g_order;

int mp_finalize_new(mp_finalize_fn fn, void *arg, int exitpriority, mp_finalizer **out) {
    if (out) *out = NULL;
    if (!fn) return mp__err(MP_EINVAL, "mp_finalize_new: fn is NULL");
    mp_finalizer *f = mp__calloc(1, sizeof *f);
    if (!f) return mp__err(MP_ENOMEM, "mp_finalize_new: out of memory");
    f->fn = fn;
    f->arg = arg;
    f->priority = exitpriority;
    small_lock();
    f->order = ++g_order;
    f->next = g_finalizers;
    g_finalizers = f;
    small_unlock();
    if (out) *out = f;
    return 0;
}

/* Takes f out of the registry: true if it was there (it had not run yet). */
static bool take(mp_finalizer *f) {
    bool found = false;
    small_lock();
    for (mp_finalizer **pp = &g_finalizers; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            found = true;
            break;
        }
    small_unlock();
    return found;
}

void mp_finalize_run(mp_finalizer *f) {
    if (!f || !take(f)) return;
    f->fn(f->arg);
    mp__free(f);
}

void mp_finalize_cancel(mp_finalizer *f) {
    if (f && take(f)) mp__free(f);
}

/* Whether a runs before b at exit: higher priority first, then the most recent. */
static bool before(const mp_finalizer *a, const mp_finalizer *b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->order > b->order;
}

void mp_finalize_run_all(int minpriority) {
    /* One at a time, the first in exit order each time: a finalizer may register or
     * run others. */
    for (;;) {
        small_lock();
        mp_finalizer **best = NULL;
        for (mp_finalizer **pp = &g_finalizers; *pp; pp = &(*pp)->next) {
            const mp_finalizer *f = *pp;
            if (f->priority == MP_FINALIZE_NOT_AT_EXIT || f->priority < minpriority) continue;
            if (!best || before(f, *best)) best = pp;
        }
        mp_finalizer *f = best ? *best : NULL;
        if (f) *best = f->next;
        small_unlock();
        if (!f) return;
        f->fn(f->arg);
        mp__free(f);
    }
}

void mp__finalize_after_fork_child(void) {
    /* The parent's finalizers are the parent's: the child starts with none (as Python's
     * _bootstrap clears the registry). Their memory is a copy: left alone, and kept
     * where a leak checker still sees it. */
    g_inherited = g_finalizers;
    g_finalizers = NULL;
    atomic_flag_clear_explicit(&g_busy, memory_order_release);
}
