/* The shared-memory blocks of the synchronisation objects, queues and shared arrays,
 * and this process's list of the blocks it maps. */
#include "block.h"

static mp__block *g_blocks; /* this process's mapped blocks, under the global lock */

static mp__block *blocks_find(uint64_t id) {
    for (mp__block *b = g_blocks; b; b = b->next)
        if (b->id == id) return b;
    return NULL;
}

int mp__block_new(uint32_t kind, size_t size, mp__block **out) {
    *out = NULL;
    mp__block *b = mp__calloc(1, sizeof *b);
    if (!b) return mp__err(MP_ENOMEM, "sync: out of memory");
    uint64_t id = 0;
    int rc;
    while (id == 0)
        if ((rc = mp__os_random(&id, sizeof id)) != 0) goto fail;
    if ((rc = mp__os_shm_create(size, &b->h, &b->base)) != 0) goto fail;
    b->id = id;
    b->size = size;
    b->refs = 1;
    mp__sync_hdr *hdr = b->base;
    hdr->id = id;
    hdr->magic = MP__SYNC_MAGIC;
    hdr->kind = kind;
    hdr->size = size;
    mp__os_global_lock();
    b->next = g_blocks;
    g_blocks = b;
    mp__os_global_unlock();
    *out = b;
    return 0;
fail:
    mp__free(b);
    return rc;
}

void mp__block_ref(mp__block *b) {
    mp__os_global_lock();
    b->refs++;
    mp__os_global_unlock();
}

static void block_unlink(mp__block *b) {
    for (mp__block **p = &g_blocks; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            return;
        }
}

void mp__block_release(mp__block *b) {
    if (!b) return;
    mp__os_global_lock();
    bool last = --b->refs == 0;
    if (last) block_unlink(b);
    mp__os_global_unlock();
    if (!last) return;
    mp__os_shm_unmap(b->base, b->size);
    if (b->h != MP_INVALID_OS_HANDLE) mp__os_handle_close(b->h);
    mp__free(b);
}

void mp__block_futex_init(const mp__block *b, mp__futex *f) {
    mp__os_futex_init(f, b->id + (uint64_t)((char *)f - (char *)b->base));
}

void mp__block_reduce(const mp__block *b, mp__buf *buf, mp_os_handle *handles, size_t *nh) {
    mp__buf_u64(buf, b->id);
    mp__buf_u64(buf, b->size);
    handles[(*nh)++] = b->h;
}

int mp__block_rebuild(mp__rd *r, uint32_t kind, mp_os_handle h, mp__block **out, bool *took) {
    *out = NULL;
    *took = false;
    uint64_t id = mp__rd_u64(r), size = mp__rd_u64(r);
    if (r->err || id == 0 || size < sizeof(mp__sync_hdr) || size > ((uint64_t)1 << 30))
        return mp__err(MP_EPROTO, "sync: malformed object description");
    mp__os_global_lock();
    mp__block *b = blocks_find(id);
    int rc = 0;
    if (b && b->h == h) {
        /* A fork child: the description names the very descriptor this block holds
         * (fork keeps the numbers), and the caller closes h as a spare. The block
         * keeps a copy, so it never hands out a number that was closed and reused. */
        mp_os_handle d;
        rc = mp__os_handle_dup(h, &d);
        if (!rc) b->h = d;
    }
    if (b && !rc) b->refs++;
    mp__os_global_unlock();
    if (rc) return rc;
    if (b) {
        *out = b;
        return 0;
    }
    b = mp__calloc(1, sizeof *b);
    if (!b) return mp__err(MP_ENOMEM, "sync: out of memory");
    rc = mp__os_shm_map(h, (size_t)size, &b->base);
    if (rc) {
        mp__free(b);
        return rc;
    }
    const mp__sync_hdr *hdr = b->base;
    if (hdr->magic != MP__SYNC_MAGIC || hdr->id != id || hdr->kind != kind || hdr->size != size) {
        mp__os_shm_unmap(b->base, (size_t)size);
        mp__free(b);
        return mp__err(MP_EPROTO, "sync: the shared block does not match its description");
    }
    b->id = id;
    b->size = (size_t)size;
    b->h = h;
    b->refs = 1;
    mp__os_global_lock();
    /* Another thread may have mapped it meanwhile; two mappings would still work. */
    b->next = g_blocks;
    g_blocks = b;
    mp__os_global_unlock();
    *took = true;
    *out = b;
    return 0;
}

void mp__block_unrebuild(mp__block *b, bool took) {
    if (!b) return;
    if (took) b->h = MP_INVALID_OS_HANDLE; /* the handle goes back to the caller */
    mp__block_release(b);
}
