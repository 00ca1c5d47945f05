/* Error codes, the thread-local detail message, and the one allocation pair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static MP__THREAD_LOCAL char mp__errmsg[512];

const char *mp_strerror(int err) {
    switch (err) {
    case 0: return "success";
#define MP__ERR_MSG(name, value, msg) case MP_##name: return msg;
    MP_ERRNO_MAP(MP__ERR_MSG)
#undef MP__ERR_MSG
    default: return "unknown error";
    }
}

const char *mp_err_name(int err) {
    switch (err) {
    case 0: return "MP_OK";
#define MP__ERR_NAME(name, value, msg) case MP_##name: return "MP_" #name;
    MP_ERRNO_MAP(MP__ERR_NAME)
#undef MP__ERR_NAME
    default: return "MP_UNKNOWN";
    }
}

const char *mp_last_error_message(void) { return mp__errmsg; }

int mp__err(int code, const char *fmt, ...) {
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(mp__errmsg, sizeof mp__errmsg, fmt, ap);
        va_end(ap);
    } else {
        snprintf(mp__errmsg, sizeof mp__errmsg, "%s", mp_strerror(code));
    }
    return code;
}

void mp__err_clear(void) { mp__errmsg[0] = '\0'; }

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
