/* Named shared memory blocks on Windows: named file mappings backed by the paging
 * file, as Python's multiprocessing.shared_memory makes them, so either side attaches
 * the other's. A mapping vanishes with its last handle and view: nothing can outlive
 * the processes that use it, so there is no tracker and unlink has nothing to do.
 * A block keeps its section handle while mapped (as Python's mmap does): the name
 * lives as long as some handle does, not as long as a view. */
#include "win32.h"

#include "../core/os_shm.h"

const char *mp__os_shm_prefix(void) { return "wnsm_"; }

int mp__os_shm_check_name(const char *name) {
    /* '\' separates a kernel namespace: only "Local\name" and "Global\name" work. */
    const char *bs = strchr(name, '\\');
    if (bs) {
        size_t pre = (size_t)(bs - name);
        bool ns =
            (pre == 5 && !strncmp(name, "Local", 5)) || (pre == 6 && !strncmp(name, "Global", 6));
        if (!ns || !bs[1] || strchr(bs + 1, '\\'))
            return mp__err(MP_EINVAL, "shared memory: name '%s': '\\' only after Local or Global",
                           name);
    }
    return 0;
}

static int wide_name(const char *name, wchar_t *out, int cap) {
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name, -1, out, cap) == 0)
        return mp__err(MP_EINVAL, "shared memory: name '%s' is not valid UTF-8", name);
    return 0;
}

/* Maps the whole section; its size is the view's, whole pages (Python's
 * VirtualQuerySize), since Windows does not tell a section's requested size. */
static int map_all(HANDLE s, void **base, size_t *mapped) {
    void *p = MapViewOfFile(s, FILE_MAP_ALL_ACCESS, 0, 0, 0);
    if (!p) return mp__os_err("shared memory: MapViewOfFile");
    MEMORY_BASIC_INFORMATION mi;
    if (VirtualQuery(p, &mi, sizeof mi) == 0) {
        int rc = mp__os_err("shared memory: VirtualQuery");
        UnmapViewOfFile(p);
        return rc;
    }
    *base = p;
    *mapped = mi.RegionSize;
    return 0;
}

int mp__os_shm_named_create(const char *name, size_t size, mp_os_handle *h, void **base,
                            size_t *mapped) {
    *h = MP_INVALID_OS_HANDLE;
    *base = NULL;
    *mapped = 0;
    wchar_t w[MP__SHM_NAME_MAX + 1];
    int rc = wide_name(name, w, MP__SHM_NAME_MAX + 1);
    if (rc) return rc;
    uint64_t sz = size;
    HANDLE s = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(sz >> 32),
                                  (DWORD)sz, w);
    if (!s) return mp__os_err("shared memory: CreateFileMapping");
    if (GetLastError() == ERROR_ALREADY_EXISTS) {
        CloseHandle(s);
        return mp__err(MP_EEXIST, "shared memory: '%s' exists", name);
    }
    /* The handle stays open while mapped: a view keeps the section's memory, but its
     * name goes with the last handle, and others must still find it by name. */
    rc = map_all(s, base, mapped);
    if (rc)
        CloseHandle(s);
    else
        *h = MP__OSH(s);
    return rc;
}

int mp__os_shm_named_open(const char *name, mp_os_handle *h, void **base, size_t *mapped) {
    *h = MP_INVALID_OS_HANDLE;
    *base = NULL;
    *mapped = 0;
    wchar_t w[MP__SHM_NAME_MAX + 1];
    int rc = wide_name(name, w, MP__SHM_NAME_MAX + 1);
    if (rc) return rc;
    HANDLE s = OpenFileMappingW(FILE_MAP_ALL_ACCESS, FALSE, w);
    if (!s) {
        if (GetLastError() == ERROR_FILE_NOT_FOUND)
            return mp__err(MP_ENOENT, "shared memory: no block named '%s'", name);
        return mp__os_err("shared memory: OpenFileMapping");
    }
    rc = map_all(s, base, mapped);
    if (rc)
        CloseHandle(s);
    else
        *h = MP__OSH(s);
    return rc;
}

void mp__os_shm_named_unmap(mp_os_handle h, void *base, size_t mapped) {
    (void)mapped;
    if (base) UnmapViewOfFile(base);
    if (h != MP_INVALID_OS_HANDLE) CloseHandle(MP__H(h));
}

int mp__os_shm_named_unlink(const char *name) {
    (void)name;
    return 0;
}

int mp__os_shm_track(const char *name, bool created) {
    (void)name;
    (void)created;
    return 0;
}

void mp__os_shm_untrack(const char *name) { (void)name; }

void mp__os_shm_unlinked(const char *name, bool tracked) {
    (void)name;
    (void)tracked;
}

void mp__os_shm_each_left(void (*fn)(void *ctx, const char *name), void *ctx) {
    (void)fn;
    (void)ctx;
}
