/* example_util.h: the little the examples share. Include it first (before any system
 * header): it asks for POSIX's nanosleep under -std=c11. Everything is static inline,
 * so an example that uses a part of it gets no warning about the rest. */
#ifndef MULTIPROC_EXAMPLE_UTIL_H
#define MULTIPROC_EXAMPLE_UTIL_H

#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

#include "multiproc.h"

/* Sleeps ms milliseconds (time.sleep). */
static inline void ex_sleep_ms(unsigned ms) {
#ifdef _WIN32
    Sleep(ms);
#else
    struct timespec t = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
#endif
}

/* A monotonic clock in seconds (time.monotonic), for the timings examples print. */
static inline double ex_now(void) {
#ifdef _WIN32
    LARGE_INTEGER f, t;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart / (double)f.QuadPart;
#else
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
#endif
}

/* Writes a double as Python's repr does: the fewest digits that read back the same,
 * positional from 1e-4 up to 1e16 (with ".0" when there is no fraction), else with an
 * exponent. */
static inline void ex_print_float(FILE *f, double d) {
    char buf[64];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    const char *e = strchr(buf, 'e');
    int exp = e ? atoi(e + 1) : 0;
    if (!e || exp < -4 || exp >= 16) { /* inf, nan, or Python's exponent form */
        fputs(buf, f);
        return;
    }
    int decimals = prec - 1 - exp;
    snprintf(buf, sizeof buf, "%.*f", decimals > 0 ? decimals : 0, d);
    fputs(buf, f);
    if (decimals <= 0) fputs(".0", f);
}

/* Writes a value to f the way Python's print shows it ([42, None, 'hello'],
 * {1: '1'}, b'howdy', <class 'float'>). Strings are shown between quotes as they are,
 * without Python's escapes. */
static inline void ex_fprint_value(FILE *f, const mp_value *v) {
    mp_value_type t = mp_value_get_type(v);
    size_t n;
    switch (t) {
    case MP_VALUE_NONE:
        fputs("None", f);
        break;
    case MP_VALUE_BOOL:
        fputs(mp_value_as_bool(v) ? "True" : "False", f);
        break;
    case MP_VALUE_INT:
        fprintf(f, "%lld", (long long)mp_value_as_int(v));
        break;
    case MP_VALUE_FLOAT:
        ex_print_float(f, mp_value_as_float(v));
        break;
    case MP_VALUE_STR:
        fprintf(f, "'%s'", mp_value_as_str(v, NULL));
        break;
    case MP_VALUE_BYTES: {
        const char *p = mp_value_as_bytes(v, &n);
        fputs("b'", f);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
                fputc(c, f);
            else
                fprintf(f, "\\x%02x", c);
        }
        fputc('\'', f);
        break;
    }
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        n = mp_value_len(v);
        fputs(t == MP_VALUE_TUPLE ? "(" : t == MP_VALUE_LIST ? "[" : "{", f);
        for (size_t i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            ex_fprint_value(f, mp_value_item(v, i));
        }
        if (t == MP_VALUE_TUPLE && n == 1) fputc(',', f);
        fputs(t == MP_VALUE_TUPLE ? ")" : t == MP_VALUE_LIST ? "]" : "}", f);
        break;
    case MP_VALUE_DICT:
        fputc('{', f);
        for (size_t i = 0; i < mp_value_len(v); i++) {
            if (i) fputs(", ", f);
            ex_fprint_value(f, mp_value_dict_key(v, i));
            fputs(": ", f);
            ex_fprint_value(f, mp_value_dict_value(v, i));
        }
        fputc('}', f);
        break;
    case MP_VALUE_OBJECT:
        /* A bare global such as `float` is a class to Python's print. */
        if (!mp_value_object_args(v) && !strcmp(mp_value_object_module(v), "builtins"))
            fprintf(f, "<class '%s'>", mp_value_object_name(v));
        else
            fprintf(f, "<%s.%s object>", mp_value_object_module(v), mp_value_object_name(v));
        break;
    default:
        fprintf(f, "<%s>", mp_value_type_name(t));
        break;
    }
}

/* print(v), without the newline. */
static inline void print_value(const mp_value *v) { ex_fprint_value(stdout, v); }

#endif
