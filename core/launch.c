/* The launch and the report: encoded once by core and decoded by the child (the
 * launch) or the parent (the report) whatever the start method, so every backend
 * runs a target with exactly the same inputs and every start fails the same way. */
#include <string.h>

#include "launch.h"
#include "os.h"

static const char launch_magic[4] = {'M', 'P', 'L', '3'};

void mp__fnref_clear(mp__fnref *r) {
    mp__free(r->module);
    mp__free(r->build);
    memset(r, 0, sizeof *r);
}

int mp__launch_encode(mp__launch *l, const mp_args *args, mp_os_handle parent_sentinel, mp__buf *b,
                      mp_os_handle *handles, size_t *nhandles) {
    /* Resolving in the parent catches a target outside every module (a heap or JIT
     * address) before any child exists, on every start method. */
    mp__fnref_clear(&l->ref);
    int rc = mp__os_fn_to_ref(l->target_ptr, &l->ref);
    if (rc) return rc;
    mp__buf_put(b, launch_magic, sizeof launch_magic);
    mp__buf_str(b, l->ref.module);
    mp__buf_u64(b, l->ref.offset);
    mp__buf_str(b, l->ref.build);
    mp__buf_u64(b, (uint64_t)(uintptr_t)l->target_ptr);
    mp__buf_str(b, l->name);
    mp__buf_str(b, l->identity);
    mp__buf_u8(b, l->daemon);
    mp__buf_u64(b, (uint64_t)l->parent_pid);
    mp__buf_str(b, l->parent_name);
    mp__buf_str(b, l->start_method);
    mp__buf_u32(b, l->flags);
    mp__buf_u32(b, (uint32_t)l->log_level);
    mp__buf_u8(b, l->log_stderr);
    mp__buf_put(b, l->authkey, sizeof l->authkey);
    *nhandles = 0;
    handles[(*nhandles)++] = parent_sentinel;
    mp__buf_u32(b, (uint32_t)(1 + mp__args_handle_count(args)));
    mp__buf a = {0};
    rc = mp__args_encode(args, &a, handles, nhandles);
    mp__buf_blob(b, a.data, a.len);
    mp__buf_free(&a);
    if (rc) return rc;
    if (b->err) return mp__err(b->err, "launch: out of memory encoding the arguments");
    return 0;
}

int mp__launch_decode(const void *payload, size_t len, mp__launch *out) {
    memset(out, 0, sizeof *out);
    mp__rd r = {payload, len, 0};
    if (len < sizeof launch_magic || memcmp(r.p, launch_magic, sizeof launch_magic) != 0)
        return mp__err(MP_EPROTO, "launch: bad magic (parent and child of different builds?)");
    r.p += sizeof launch_magic;
    r.left -= sizeof launch_magic;
    out->ref.module = mp__rd_str(&r);
    out->ref.offset = mp__rd_u64(&r);
    out->ref.build = mp__rd_str(&r);
    out->target_ptr = (void *)(uintptr_t)mp__rd_u64(&r);
    out->name = mp__rd_str(&r);
    out->identity = mp__rd_str(&r);
    out->daemon = mp__rd_u8(&r) != 0;
    out->parent_pid = (int64_t)mp__rd_u64(&r);
    out->parent_name = mp__rd_str(&r);
    out->start_method = mp__rd_str(&r);
    out->flags = mp__rd_u32(&r);
    out->log_level = (int)mp__rd_u32(&r);
    out->log_stderr = mp__rd_u8(&r) != 0;
    size_t keylen = 0;
    const unsigned char *key = NULL;
    if (r.left >= sizeof out->authkey && !r.err) {
        key = r.p;
        keylen = sizeof out->authkey;
        r.p += keylen;
        r.left -= keylen;
    } else {
        r.err = MP_EPROTO;
    }
    if (key) memcpy(out->authkey, key, keylen);
    out->nhandles = mp__rd_u32(&r);
    out->args_wire = mp__rd_blob(&r, &out->args_len);
    if (r.err || !out->start_method || !out->name || !out->identity) {
        mp__launch_clear(out);
        return mp__err(MP_EPROTO, "launch: malformed payload");
    }
    /* The raw pointer means something only where the child shares our image. */
    if (!(out->flags & MP_BACKEND_SAME_IMAGE)) out->target_ptr = NULL;
    return 0;
}

int mp__launch_resolve(mp__launch *l) {
    if (l->target_ptr) return 0;
    return mp__os_ref_to_fn(&l->ref, &l->target_ptr);
}

void mp__launch_clear(mp__launch *l) {
    mp__fnref_clear(&l->ref);
    mp__free(l->name);
    mp__free(l->identity);
    mp__free(l->parent_name);
    mp__free(l->start_method);
    memset(l, 0, sizeof *l);
}

/* ---- the report ---- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t mp__report_encode(int rc, const char *msg, unsigned char out[MP__REPORT_MAX]) {
    size_t n = (rc && msg) ? strlen(msg) : 0;
    if (n > MP__REPORT_MSG_MAX) n = MP__REPORT_MSG_MAX;
    put_u32(out, (uint32_t)(int32_t)rc);
    put_u32(out + 4, (uint32_t)n);
    if (n) memcpy(out + MP__REPORT_HEADER, msg, n);
    return MP__REPORT_HEADER + n;
}

int mp__report_header(const unsigned char h[MP__REPORT_HEADER], int *rc, size_t *msglen) {
    *rc = (int32_t)get_u32(h);
    uint32_t n = get_u32(h + 4);
    *msglen = 0;
    if (n > MP__REPORT_MSG_MAX)
        return mp__err(MP_EPROTO, "start: the child's report is malformed (%lu bytes of message)",
                       (unsigned long)n);
    *msglen = n;
    return 0;
}

int mp__report_error(int rc, const char *msg, size_t len, const char *who) {
    if (rc > 0 || strcmp(mp_err_name(rc), "MP_UNKNOWN") == 0) rc = MP_ECHILD;
    if (!msg || !len) return mp__err(rc, "%s: the child could not start: %s", who, mp_strerror(rc));
    return mp__err(rc, "%s: the child could not start: %.*s", who, (int)len, msg);
}

void mp__report_send(mp_os_handle *h, int rc, const char *msg) {
    if (*h == MP_INVALID_OS_HANDLE) return;
    unsigned char buf[MP__REPORT_MAX];
    size_t n = mp__report_encode(rc, msg, buf);
    /* One write, so the parent never sees half a report; a parent that went away is
     * no reason to stop. */
    mp__err_mute();
    (void)mp__os_write_all(*h, buf, n);
    mp__err_unmute();
    mp__os_handle_close(*h);
    *h = MP_INVALID_OS_HANDLE;
}

void mp__report_to_handle(void *ctx, int rc, const char *msg) {
    mp__report_send((mp_os_handle *)ctx, rc, msg);
}

int mp__report_recv(mp_os_handle h, const char *who) {
    unsigned char buf[MP__REPORT_MAX];
    if (mp__os_read_all(h, buf, MP__REPORT_HEADER) != 0)
        return mp__err(MP_ECHILD, "%s: the child ended before it could start", who);
    int code;
    size_t n;
    int rc = mp__report_header(buf, &code, &n);
    if (rc) return rc;
    if (code == 0) return 0;
    if (n && mp__os_read_all(h, buf, n) != 0) n = 0;
    return mp__report_error(code, (const char *)buf, n, who);
}
