/* A queue's spill channel on Windows (core/os_queue.h). There is no SCM_RIGHTS, so a
 * spill item is a section of its own whose handle must live in some process until a
 * getter takes it: the producer moves it into the queue creator's process (the
 * keeper), or keeps it itself when that fails (the creator is gone, or denies
 * PROCESS_DUP_HANDLE). rec = {keeper pid, handle value in the keeper}; the getter moves
 * the handle out with DUPLICATE_CLOSE_SOURCE. When the keeper has ended before a
 * getter came, the item is gone (the getter skips it). No recycling here: each item
 * costs fresh pages. */
#include <string.h>

#include "win32.h"

#include "../core/os_queue.h"

struct mp__qspill {
    uint32_t creator;
    HANDLE creator_h; /* opened on first use; NULL: not yet */
    HANDLE put_sec;
    void *put_base;
    HANDLE get_sec;
    void *get_base;
};

size_t mp__os_qspill_handle_count(void) { return 0; }

int mp__os_qspill_new(uint32_t creator_pid, _Atomic uint32_t *free_count, mp__qspill **out) {
    (void)free_count;
    *out = mp__calloc(1, sizeof **out);
    if (!*out) return mp__err(MP_ENOMEM, "queue: out of memory");
    (*out)->creator = creator_pid;
    return 0;
}

void mp__os_qspill_reduce(const mp__qspill *s, mp_os_handle *handles, size_t *nh) {
    (void)s;
    (void)handles;
    (void)nh;
}

int mp__os_qspill_rebuild(uint32_t creator_pid, _Atomic uint32_t *free_count,
                          const mp_os_handle *handles, mp__qspill **out) {
    (void)handles;
    return mp__os_qspill_new(creator_pid, free_count, out);
}

void mp__os_qspill_free(mp__qspill *s) {
    if (!s) return;
    mp__os_qspill_cancel(s);
    mp__os_qspill_done(s, false);
    if (s->creator_h) CloseHandle(s->creator_h);
    mp__free(s);
}

int mp__os_qspill_take(mp__qspill *s, uint64_t size) {
    mp__os_qspill_cancel(s);
    uint64_t sz = size ? size : 1;
    HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(sz >> 32),
                                  (DWORD)sz, NULL);
    if (!h) return mp__os_err("queue: CreateFileMapping");
    void *p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, (SIZE_T)sz);
    if (!p) {
        int rc = mp__os_err("queue: MapViewOfFile");
        CloseHandle(h);
        return rc;
    }
    s->put_sec = h;
    s->put_base = p;
    return 0;
}

int mp__os_qspill_write(mp__qspill *s, uint64_t off, const void *buf, size_t len) {
    if (len) memcpy((char *)s->put_base + off, buf, len);
    return 0;
}

int mp__os_qspill_read(mp__qspill *s, uint64_t off, void *dst, size_t len) {
    if (len) memcpy(dst, (const char *)s->get_base + off, len);
    return 0;
}

void mp__os_qspill_cancel(mp__qspill *s) {
    if (s->put_base) UnmapViewOfFile(s->put_base);
    if (s->put_sec) CloseHandle(s->put_sec);
    s->put_base = NULL;
    s->put_sec = NULL;
}

/* A process's start time in milliseconds, low 32 bits: with its pid it names the keeper
 * of a section, so that a getter never takes a handle value out of another process that
 * reused a dead keeper's pid (DUPLICATE_CLOSE_SOURCE would close an unrelated handle). */
static uint32_t proc_stamp(HANDLE p) {
    FILETIME created, exited, kernel, user;
    if (!GetProcessTimes(p, &created, &exited, &kernel, &user)) return 0;
    uint64_t t = ((uint64_t)created.dwHighDateTime << 32) | created.dwLowDateTime;
    return (uint32_t)(t / 10000);
}

static uint64_t keeper_id(DWORD pid, HANDLE p) {
    return (uint64_t)pid | (uint64_t)proc_stamp(p) << 32;
}

int mp__os_qspill_send(mp__qspill *s, uint64_t seq, uint64_t size, uint64_t rec[2],
                       double timeout) {
    (void)seq;
    (void)size;
    (void)timeout;
    /* The view stays until cancel: the item is written after this. */
    DWORD me = GetCurrentProcessId();
    HANDLE moved = NULL;
    if (s->creator != me) {
        if (!s->creator_h)
            s->creator_h = OpenProcess(PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION,
                                       FALSE, s->creator);
        /* Without DUPLICATE_CLOSE_SOURCE, which closes the source even on failure. */
        if (s->creator_h && !DuplicateHandle(GetCurrentProcess(), s->put_sec, s->creator_h, &moved,
                                             0, FALSE, DUPLICATE_SAME_ACCESS))
            moved = NULL;
    }
    if (moved) {
        CloseHandle(s->put_sec);
        rec[0] = keeper_id(s->creator, s->creator_h);
        rec[1] = (uint64_t)(uintptr_t)moved;
    } else {
        /* Kept here: it lives as long as this process, or until a getter takes it. */
        rec[0] = keeper_id(me, GetCurrentProcess());
        rec[1] = (uint64_t)(uintptr_t)s->put_sec;
    }
    s->put_sec = NULL;
    return 0;
}

int mp__os_qspill_recv(mp__qspill *s, uint64_t seq, uint64_t size, const uint64_t rec[2]) {
    (void)seq;
    mp__os_qspill_done(s, false);
    HANDLE h = NULL;
    DWORD pid = (DWORD)(rec[0] & 0xffffffffu);
    if (rec[0] == keeper_id(GetCurrentProcessId(), GetCurrentProcess())) {
        h = (HANDLE)(uintptr_t)rec[1];
    } else if (pid == GetCurrentProcessId()) {
        return MP_ENOENT; /* kept by a dead process whose pid this one now has */
    } else {
        HANDLE keeper =
            OpenProcess(PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
        if (!keeper) return MP_ENOENT;
        if (keeper_id(pid, keeper) != rec[0]) { /* the keeper is gone; its pid was reused */
            CloseHandle(keeper);
            return MP_ENOENT;
        }
        BOOL ok = DuplicateHandle(keeper, (HANDLE)(uintptr_t)rec[1], GetCurrentProcess(), &h, 0,
                                  FALSE, DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE);
        CloseHandle(keeper);
        if (!ok) return MP_ENOENT;
    }
    uint64_t sz = size ? size : 1;
    void *p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, (SIZE_T)sz);
    if (!p) {
        int rc = mp__os_err("queue: MapViewOfFile");
        CloseHandle(h);
        return rc;
    }
    s->get_sec = h;
    s->get_base = p;
    return 0;
}

void mp__os_qspill_done(mp__qspill *s, bool recycle) {
    (void)recycle;
    if (s->get_base) UnmapViewOfFile(s->get_base);
    if (s->get_sec) CloseHandle(s->get_sec);
    s->get_base = NULL;
    s->get_sec = NULL;
}

/* ---- the overflow arena: a section, whose pages exist once touched ---- */

#define ARENA_SIZE ((uint64_t)128 << 20)

int mp__os_qarena_new(uint64_t *size, mp_os_handle *h) {
    *h = MP_INVALID_OS_HANDLE;
    HANDLE s = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE,
                                  (DWORD)(ARENA_SIZE >> 32), (DWORD)ARENA_SIZE, NULL);
    if (!s) return mp__os_err("queue: CreateFileMapping");
    *size = ARENA_SIZE;
    *h = MP__OSH(s);
    return 0;
}

int mp__os_qarena_map(mp_os_handle h, uint64_t size, void **base) {
    *base = MapViewOfFile(MP__H(h), FILE_MAP_ALL_ACCESS, 0, 0, (SIZE_T)size);
    return *base ? 0 : mp__os_err("queue: MapViewOfFile");
}

void mp__os_qarena_unmap(void *base, uint64_t size) {
    (void)size;
    if (base) UnmapViewOfFile(base);
}

/* A section's pages cannot be given back while mapped: the arena keeps its high-water
 * mark until the queue goes. */
void mp__os_qarena_discard(mp_os_handle h, void *base, uint64_t off, uint64_t len) {
    (void)h;
    (void)base;
    (void)off;
    (void)len;
}
