/* The OS primitives the synchronisation objects (core/sync*.c) are built on, one
 * implementation per build: linux/sync_linux.c, win32/sync_win32.c.
 *
 *   - a block of shared memory that travels as one OS handle and disappears with its
 *     last user (posix: memfd + mmap MAP_SHARED; Windows: an unnamed section);
 *   - futex-style waits on a 32-bit word in such a block, working across processes and
 *     mappings (posix: a shared futex; Windows: a named semaphore per word, made while
 *     someone sleeps, since WaitOnAddress does not work across processes);
 *   - a liveness check of another process (pidfd / process HANDLE);
 *   - the caller's process and thread ids, cheap enough for a lock's fast path. */
#ifndef MP_CORE_OS_SYNC_H
#define MP_CORE_OS_SYNC_H

#include <stdatomic.h>

#include "os.h"

/* ---- shared memory blocks ---- */

/** A new zero-filled block of size bytes, mapped; *h is its handle (not inheritable). */
int mp__os_shm_create(size_t size, mp_os_handle *h, void **base);
/** Maps a block received as handle h (size as created). MP_EPROTO when it is smaller. */
int mp__os_shm_map(mp_os_handle h, size_t size, void **base);
void mp__os_shm_unmap(void *base, size_t size);

/* ---- futex-style waits ---- */

/** A word to wait on, in shared memory. val is the caller's; waiters and key belong to
 *  the OS layer (key names the Windows semaphore). */
typedef struct mp__futex {
    _Atomic uint32_t val;
    _Atomic uint32_t waiters; /* sleeping or about to (a killed sleeper leaves it raised:
                                 later wakes then make one needless system call) */
    uint64_t key;
} mp__futex;

/** Sets up a futex in a new block; key must be unique among live futexes on the machine
 *  (core: the block's random id plus the word's offset). */
void mp__os_futex_init(mp__futex *f, uint64_t key);
/** Sleeps while f->val == expect, at most timeout seconds (MP_FOREVER: no limit): 0 when woken
 *  (or spuriously: callers re-check), MP_EAGAIN when val differed, MP_ETIMEDOUT. */
int mp__os_futex_wait(mp__futex *f, uint32_t expect, double timeout);
/** Wakes up to n sleepers (INT32_MAX: all); cheap when nobody sleeps. */
void mp__os_futex_wake(mp__futex *f, int n);

/* ---- processes ---- */

/** The calling process and thread ids, cached (the pid as a non-zero 32-bit value). */
uint32_t mp__os_sync_pid(void);
uint64_t mp__os_sync_tid(void);
/** core/sync.c: drops the ids the calling thread cached from the two above; the OS
 *  layer calls it in a forked child (posix: an atfork handler). */
void mp__sync_forget_ids(void);
/** A watch on process pid: MP_ENOENT when it does not exist (any more). */
int mp__os_proc_watch(uint32_t pid, mp_os_handle *out);
/** True once the watched process has ended (never blocks). */
bool mp__os_proc_watch_gone(mp_os_handle h);
/** Ends a watch (MP_INVALID_OS_HANDLE is fine). */
void mp__os_proc_watch_close(mp_os_handle h);
/** True when process pid exists and has not ended (a watch, looked at once). */
static inline bool mp__os_proc_alive(uint32_t pid) {
    mp_os_handle h;
    if (mp__os_proc_watch(pid, &h) != 0) return false;
    bool gone = mp__os_proc_watch_gone(h);
    mp__os_proc_watch_close(h);
    return !gone;
}

#endif
