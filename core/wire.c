/* A growable buffer and a bounds-checked reader: the launch payload's wire format.
 * Integers are little-endian fixed width; this wire only ever joins a parent and a
 * child of the same build, so it needs no versioning beyond the launch's magic. */
#include <string.h>

#include "internal.h"

static void buf_grow(mp__buf *b, size_t need) {
    if (b->err || b->len + need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need) cap *= 2;
    unsigned char *d = mp__realloc(b->data, cap);
    if (!d) {
        b->err = MP_ENOMEM;
        return;
    }
    b->data = d;
    b->cap = cap;
}

void *mp__buf_reserve(mp__buf *b, size_t n) {
    buf_grow(b, n);
    return b->err ? NULL : b->data + b->len;
}

void mp__buf_put(mp__buf *b, const void *p, size_t n) {
    buf_grow(b, n);
    if (b->err || n == 0) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void mp__buf_u8(mp__buf *b, uint8_t v) { mp__buf_put(b, &v, 1); }

void mp__buf_u32(mp__buf *b, uint32_t v) {
    unsigned char c[4];
    for (int i = 0; i < 4; i++) c[i] = (unsigned char)(v >> (8 * i));
    mp__buf_put(b, c, 4);
}

void mp__buf_u64(mp__buf *b, uint64_t v) {
    unsigned char c[8];
    for (int i = 0; i < 8; i++) c[i] = (unsigned char)(v >> (8 * i));
    mp__buf_put(b, c, 8);
}

void mp__buf_str(mp__buf *b, const char *s) {
    if (!s) {
        mp__buf_u32(b, UINT32_MAX);
        return;
    }
    size_t n = strlen(s);
    mp__buf_u32(b, (uint32_t)n);
    mp__buf_put(b, s, n);
}

void mp__buf_blob(mp__buf *b, const void *p, size_t n) {
    mp__buf_u64(b, n);
    mp__buf_put(b, p, n);
}

void mp__buf_free(mp__buf *b) {
    mp__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static const unsigned char *rd_take(mp__rd *r, size_t n) {
    if (r->err || r->left < n) {
        r->err = MP_EPROTO;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t mp__rd_u8(mp__rd *r) {
    const unsigned char *p = rd_take(r, 1);
    return p ? p[0] : 0;
}

uint32_t mp__rd_u32(mp__rd *r) {
    const unsigned char *p = rd_take(r, 4);
    uint32_t v = 0;
    if (p)
        for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

uint64_t mp__rd_u64(mp__rd *r) {
    const unsigned char *p = rd_take(r, 8);
    uint64_t v = 0;
    if (p)
        for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

char *mp__rd_str(mp__rd *r) {
    uint32_t n = mp__rd_u32(r);
    if (r->err || n == UINT32_MAX) return NULL;
    const unsigned char *p = rd_take(r, n);
    if (!p) return NULL;
    char *s = mp__malloc((size_t)n + 1);
    if (!s) {
        r->err = MP_ENOMEM;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

const void *mp__rd_blob(mp__rd *r, size_t *n) {
    uint64_t len = mp__rd_u64(r);
    *n = 0;
    if (r->err || len > r->left) {
        r->err = MP_EPROTO;
        return NULL;
    }
    *n = (size_t)len;
    return rd_take(r, (size_t)len);
}
