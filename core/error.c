/* Error codes, the thread-local detail message, and the one allocation pair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static MP__THREAD_LOCAL char mp__errmsg[512];
static MP__THREAD_LOCAL int mp__oserr;
static MP__THREAD_LOCAL unsigned mp__muted;

const char *mp_strerror(int err) {
    switch (err) {
    case 0:
        return "success";
#define MP__ERR_MSG(name, value, msg) \
    case MP_##name:                   \
        return msg;
        MP_ERRNO_MAP(MP__ERR_MSG)
#undef MP__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *mp_err_name(int err) {
    switch (err) {
    case 0:
        return "MP_OK";
#define MP__ERR_NAME(name, value, msg) \
    case MP_##name:                    \
        return "MP_" #name;
        MP_ERRNO_MAP(MP__ERR_NAME)
#undef MP__ERR_NAME
    default:
        return "MP_UNKNOWN";
    }
}

const char *mp_last_error_message(void) { return mp__errmsg; }

int mp_last_os_error(void) { return mp__oserr; }

static void record(int oserr, const char *fmt, va_list ap) {
    mp__oserr = oserr;
    vsnprintf(mp__errmsg, sizeof mp__errmsg, fmt, ap);
}

int mp__err(int code, const char *fmt, ...) {
    if (mp__muted) return code;
    if (!fmt) {
        mp__oserr = 0;
        snprintf(mp__errmsg, sizeof mp__errmsg, "%s", mp_strerror(code));
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    record(0, fmt, ap);
    va_end(ap);
    return code;
}

int mp__err_os(int code, int oserr, const char *fmt, ...) {
    if (mp__muted) return code;
    va_list ap;
    va_start(ap, fmt);
    record(oserr, fmt, ap);
    va_end(ap);
    return code;
}

int mp__err_wrap(int code, const char *fmt, ...) {
    if (mp__muted) return code;
    /* The callee's detail is in the buffer we are about to write: keep a copy. */
    char inner[sizeof mp__errmsg];
    memcpy(inner, mp__errmsg, sizeof inner);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(mp__errmsg, sizeof mp__errmsg, fmt, ap);
    va_end(ap);
    /* Append ": inner", cut to what fits. */
    size_t at = n < 0 ? 0 : (size_t)n;
    if (inner[0] && at + 3 < sizeof mp__errmsg) {
        memcpy(mp__errmsg + at, ": ", 2);
        at += 2;
        size_t take = strnlen(inner, sizeof inner);
        if (take > sizeof mp__errmsg - 1 - at) take = sizeof mp__errmsg - 1 - at;
        memcpy(mp__errmsg + at, inner, take);
        mp__errmsg[at + take] = '\0';
    }
    return code;
}

void mp__err_clear(void) {
    mp__errmsg[0] = '\0';
    mp__oserr = 0;
}

void mp__err_mute(void) { mp__muted++; }
void mp__err_unmute(void) {
    if (mp__muted) mp__muted--;
}

void *mp__malloc(size_t n) { return malloc(n ? n : 1); }
void *mp__calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *mp__realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void mp__free(void *p) { free(p); }

char *mp__strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = mp__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
