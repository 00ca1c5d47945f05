/* SharedMemory: named blocks other processes (also Python's) attach by name. The OS
 * work and the tracker are behind core/os_shm.h; this file keeps Python's rules
 * (names, sizes, errors) and the argument type "shm", which travels by name: a child
 * attaches the block again, and registers with the tracker like any attacher. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "os_shm.h"
#include "shared_internal.h"

struct mp_shm {
    char *name;
    mp_os_handle h; /* kept while mapped (Windows: the name lives with it) */
    void *base;     /* NULL once closed */
    size_t mapped;
    size_t requested;
    bool tracked;
};

/* At exit, Python's resource tracker warns of the blocks it has to unlink: here the
 * process that made them says so (the tracker daemon has no terminal), for each block
 * it created, tracked and did not unlink. */
static void warn_left(void *ctx, const char *name) {
    (void)ctx;
    mp_log(MP_LOG_WARNING,
           "shared memory block '%s' was not unlinked: the tracker unlinks it once no "
           "process has it open",
           name);
}

static void exit_report(void) { mp__os_shm_each_left(warn_left, NULL); }

static int generated_create(size_t size, char *name, mp_os_handle *h, void **base, size_t *mapped) {
    /* Python's rule: 14 characters at most (FreeBSD's limit), random hex after the
     * prefix; a clash with an existing name only means another draw. */
    for (int tries = 0; tries < 100; tries++) {
        unsigned char r[4];
        int rc = mp__os_random(r, sizeof r);
        if (rc) return rc;
        snprintf(name, MP__SHM_NAME_MAX + 1, "%s%02x%02x%02x%02x", mp__os_shm_prefix(), r[0], r[1],
                 r[2], r[3]);
        rc = mp__os_shm_named_create(name, size, h, base, mapped);
        if (rc != MP_EEXIST) return rc;
    }
    return mp__err(MP_EEXIST, "mp_shm_open: no free generated name after 100 tries");
}

/* A name both systems take (1..255 bytes, no '/': Python on Linux adds the '/' itself),
 * so a name that works here works everywhere; then what this OS adds. */
int mp__shm_check_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0) return mp__err(MP_EINVAL, "shared memory: empty name");
    if (n > MP__SHM_NAME_MAX)
        return mp__err(MP_EINVAL, "shared memory: a name of %zu bytes is longer than %d", n,
                       MP__SHM_NAME_MAX);
    if (strchr(name, '/')) return mp__err(MP_EINVAL, "shared memory: name '%s' contains '/'", name);
    return mp__os_shm_check_name(name);
}

int mp_shm_open(const mp_shm_opts *opts, mp_shm **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_shm_open: out is NULL");
    *out = NULL;
    if (!opts) return mp__err(MP_EINVAL, "mp_shm_open: opts is NULL");
    if (!opts->create && !opts->name)
        return mp__err(MP_EINVAL, "mp_shm_open: a name is needed unless create is set");
    if (opts->create && opts->size == 0)
        return mp__err(MP_EINVAL, "mp_shm_open: size must be > 0 to create a block");
    int rc;
    if (opts->name && (rc = mp__shm_check_name(opts->name)) != 0) return rc;

    char name[MP__SHM_NAME_MAX + 1];
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    void *base = NULL;
    size_t mapped = 0;
    bool tracked = !opts->untracked;
    if (opts->create) {
        if (opts->name) {
            snprintf(name, sizeof name, "%s", opts->name);
            rc = mp__os_shm_named_create(name, opts->size, &h, &base, &mapped);
        } else {
            rc = generated_create(opts->size, name, &h, &base, &mapped);
        }
        if (rc) return rc;
        /* Registered once it exists: a crash in between leaks this one block, while
         * registering first could get someone else's block of that name unlinked. */
        if (tracked && (rc = mp__os_shm_track(name, true)) != 0) {
            mp__os_shm_named_unmap(h, base, mapped);
            mp__os_shm_named_unlink(name);
            return rc;
        }
        static atomic_bool hooked;
        if (tracked && !atomic_exchange(&hooked, true)) mp__exit_hook_add(exit_report);
    } else {
        snprintf(name, sizeof name, "%s", opts->name);
        /* Registered before opening: the tracker then cannot unlink the block (its last
         * other user ending) between our open and our registration. */
        if (tracked && (rc = mp__os_shm_track(name, false)) != 0) return rc;
        rc = mp__os_shm_named_open(name, &h, &base, &mapped);
        if (rc) {
            if (tracked) {
                mp__err_mute(); /* the open's reason, not the tracker's */
                mp__os_shm_untrack(name);
                mp__err_unmute();
            }
            return rc;
        }
    }
    mp_shm *s = mp__calloc(1, sizeof *s);
    char *dup = mp__strdup(name);
    if (!s || !dup) {
        mp__free(s);
        mp__free(dup);
        mp__os_shm_named_unmap(h, base, mapped);
        if (opts->create) {
            mp__os_shm_named_unlink(name);
            if (tracked) mp__os_shm_unlinked(name, true);
        } else if (tracked) {
            mp__os_shm_untrack(name);
        }
        return mp__err(MP_ENOMEM, "mp_shm_open: out of memory");
    }
    s->name = dup;
    s->h = h;
    s->base = base;
    s->mapped = mapped;
    s->requested = opts->create ? opts->size : mapped;
    s->tracked = tracked;
    *out = s;
    return 0;
}

const char *mp_shm_name(const mp_shm *s) { return s ? s->name : NULL; }
size_t mp_shm_size(const mp_shm *s) { return s ? s->mapped : 0; }
size_t mp_shm_requested_size(const mp_shm *s) { return s ? s->requested : 0; }
void *mp_shm_buf(const mp_shm *s) { return s ? s->base : NULL; }

int mp_shm_close(mp_shm *s) {
    if (!s) return mp__err(MP_EINVAL, "mp_shm_close: shm is NULL");
    if (s->base) mp__os_shm_named_unmap(s->h, s->base, s->mapped);
    s->base = NULL;
    s->h = MP_INVALID_OS_HANDLE;
    return 0;
}

int mp_shm_unlink(mp_shm *s) {
    if (!s) return mp__err(MP_EINVAL, "mp_shm_unlink: shm is NULL");
    int rc = mp__os_shm_named_unlink(s->name);
    /* Also when it was gone already: the tracker must not keep a stale name, which a
     * new block could take. */
    mp__err_mute();
    mp__os_shm_unlinked(s->name, s->tracked);
    mp__err_unmute();
    return rc;
}

void mp_shm_free(mp_shm *s) {
    if (!s) return;
    mp_shm_close(s);
    mp__free(s->name);
    mp__free(s);
}

/* ---- as a process argument: by name ---- */

static size_t shm_handle_count(const void *obj) {
    (void)obj;
    return 0;
}

static int shm_reduce(const void *obj, mp__buf *b, mp_os_handle *handles, size_t *nh) {
    (void)handles;
    (void)nh;
    const mp_shm *s = obj;
    mp__buf_str(b, s->name);
    mp__buf_u8(b, s->tracked);
    return 0;
}

static int shm_rebuild(mp__rd *r, const mp_os_handle *handles, size_t nh, void **out) {
    (void)handles;
    (void)nh;
    *out = NULL;
    char *name = mp__rd_str(r);
    uint8_t tracked = mp__rd_u8(r);
    if (r->err || !name) {
        mp__free(name);
        return mp__err(MP_EPROTO, "shm: malformed object description");
    }
    mp_shm_opts o = {.name = name, .untracked = !tracked};
    mp_shm *s;
    int rc = mp_shm_open(&o, &s);
    mp__free(name);
    if (rc) return rc;
    *out = s;
    return 0;
}

static void shm_objfree(void *obj) { mp_shm_free(obj); }

const mp__objtype mp__objtype_shm = {
    .name = "shm",
    .handle_count = shm_handle_count,
    .reduce = shm_reduce,
    .rebuild = shm_rebuild,
    .free = shm_objfree,
};

int mp_args_add_shm(mp_args *a, mp_shm *s) {
    if (!a) return mp__err(MP_EINVAL, "mp_args_add_shm: args is NULL");
    if (!s) return mp__err(MP_EINVAL, "mp_args_add_shm: shm is NULL");
    return mp__args_add_object(a, &mp__objtype_shm, s);
}

mp_shm *mp_args_shm(const mp_args *a, size_t i) { return mp__args_object(a, i, &mp__objtype_shm); }
