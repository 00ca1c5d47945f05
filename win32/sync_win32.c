/* OS primitives for the synchronisation objects on Windows: unnamed sections,
 * futex-style waits on named semaphores, process liveness through process handles. */
#include "win32.h"

#include "../core/os_sync.h"

int mp__os_shm_create(size_t size, mp_os_handle *h, void **base) {
    *h = MP_INVALID_OS_HANDLE;
    *base = NULL;
    /* Unnamed and backed by the paging file: it goes with its last handle and view. */
    HANDLE s = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE,
                                  (DWORD)((uint64_t)size >> 32), (DWORD)size, NULL);
    if (!s) return mp__os_err("CreateFileMapping");
    void *p = MapViewOfFile(s, FILE_MAP_ALL_ACCESS, 0, 0, size);
    if (!p) {
        int rc = mp__os_err("MapViewOfFile");
        CloseHandle(s);
        return rc;
    }
    *h = MP__OSH(s);
    *base = p;
    return 0;
}

int mp__os_shm_map(mp_os_handle h, size_t size, void **base) {
    *base = NULL;
    /* A view larger than the section fails here rather than faulting later. */
    void *p = MapViewOfFile(MP__H(h), FILE_MAP_ALL_ACCESS, 0, 0, size);
    if (!p) return mp__os_err("MapViewOfFile");
    *base = p;
    return 0;
}

void mp__os_shm_unmap(void *base, size_t size) {
    (void)size;
    if (base) UnmapViewOfFile(base);
}

/* WaitOnAddress works within one process only. A word's sleepers wait instead on a
 * semaphore named after the word's key, which exists only while someone holds it open:
 * no handle travels, and leftover counts vanish with the last sleeper. */
static void futex_name(uint64_t key, wchar_t name[40]) {
    static const wchar_t prefix[] = L"Local\\mp-futex-";
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; prefix[n]; n++) name[n] = prefix[n];
    for (int i = 15; i >= 0; i--) name[n++] = (wchar_t)hex[(key >> (i * 4)) & 15];
    name[n] = 0;
}

void mp__os_futex_init(mp__futex *f, uint64_t key) { f->key = key; }

int mp__os_futex_wait(mp__futex *f, uint32_t expect, double timeout) {
    wchar_t name[40];
    futex_name(f->key, name);
    /* Counted first: a waker that changed the word and then finds no sleeper (or no
     * semaphore yet) is matched by this thread seeing the new value below. */
    atomic_fetch_add(&f->waiters, 1);
    HANDLE h = CreateSemaphoreW(NULL, 0, 0x7fffffff, name);
    if (!h) {
        atomic_fetch_sub(&f->waiters, 1);
        mp__os_sleep(0.001); /* no semaphore: poll rather than fail a wait */
        return 0;
    }
    int rc = 0;
    if (atomic_load(&f->val) != expect) {
        rc = MP_EAGAIN;
    } else {
        DWORD r = WaitForSingleObject(h, mp__win_timeout_ms(timeout));
        if (r == WAIT_TIMEOUT) rc = MP_ETIMEDOUT;
    }
    atomic_fetch_sub(&f->waiters, 1);
    CloseHandle(h);
    return rc;
}

void mp__os_futex_wake(mp__futex *f, int n) {
    uint32_t w = atomic_load(&f->waiters);
    if (w == 0 || n <= 0) return;
    wchar_t name[40];
    futex_name(f->key, name);
    HANDLE h = OpenSemaphoreW(SEMAPHORE_MODIFY_STATE, FALSE, name);
    if (!h) return; /* the sleeper has not made it yet, and will see the new value */
    LONG k = (uint32_t)n < w ? (LONG)n : (LONG)w;
    /* Past the maximum count (sleepers counted that are gone) release what fits. */
    while (k > 0 && !ReleaseSemaphore(h, k, NULL)) k /= 2;
    CloseHandle(h);
}

uint32_t mp__os_sync_pid(void) { return (uint32_t)GetCurrentProcessId(); }
uint64_t mp__os_sync_tid(void) { return (uint64_t)GetCurrentThreadId(); }

int mp__os_proc_watch(uint32_t pid, mp_os_handle *out) {
    *out = MP_INVALID_OS_HANDLE;
    HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
    if (h) {
        *out = MP__OSH(h);
        return 0;
    }
    if (GetLastError() == ERROR_INVALID_PARAMETER) return MP_ENOENT;
    return 0; /* exists but not ours to open: counted alive, never seen gone */
}

bool mp__os_proc_watch_gone(mp_os_handle h) {
    if (h == MP_INVALID_OS_HANDLE) return false;
    return WaitForSingleObject(MP__H(h), 0) == WAIT_OBJECT_0;
}

void mp__os_proc_watch_close(mp_os_handle h) {
    if (h != MP_INVALID_OS_HANDLE) CloseHandle(MP__H(h));
}
