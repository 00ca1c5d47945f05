/* The OS side of SharedMemory (core/shared_memory.c), one implementation per build:
 * linux/shm_linux.c + linux/tracker_linux.c, win32/shm_win32.c.
 *
 *   - named blocks: posix shm_open names ("/name", listed in /dev/shm on Linux),
 *     Windows named file mappings (gone with their last handle or view);
 *   - the tracker that unlinks a posix block once every process that tracks it has
 *     ended without unlinking it (Windows needs none: nothing outlives its users). */
#ifndef MP_CORE_OS_SHM_H
#define MP_CORE_OS_SHM_H

#include "os.h"

/** Longest name accepted in bytes, without the leading '/': Linux's NAME_MAX, what
 *  Python's SharedMemory takes there (shm_open names /dev/shm/<name>). Windows takes
 *  the same: a mapping's name is documented up to MAX_PATH (260) characters, and 255
 *  UTF-8 bytes are at most 255 UTF-16 units; one limit keeps a name portable. */
#define MP__SHM_NAME_MAX 255

/** Prefix of generated names, as Python's _SHM_NAME_PREFIX without the posix '/':
 *  "psm_" (posix) or "wnsm_" (Windows); 8 hex digits follow. */
const char *mp__os_shm_prefix(void);

/** MP_EINVAL (with a message) for a name this OS cannot use, beyond what the core
 *  checks for every OS (1..MP__SHM_NAME_MAX bytes, no '/'). */
int mp__os_shm_check_name(const char *name);

/** Creates block name (MP_EEXIST when it exists) of size bytes and maps it; *mapped is
 *  the size the OS reports (posix: fstat; Windows: VirtualQuery, whole pages). *h is
 *  what must stay open while mapped (Windows: the section, whose name goes with its
 *  last handle; posix: none, MP_INVALID_OS_HANDLE). On failure nothing is left behind. */
int mp__os_shm_named_create(const char *name, size_t size, mp_os_handle *h, void **base,
                            size_t *mapped);
/** Maps an existing block (MP_ENOENT when there is none) in full. */
int mp__os_shm_named_open(const char *name, mp_os_handle *h, void **base, size_t *mapped);
/** Unmaps and closes h. */
void mp__os_shm_named_unmap(mp_os_handle h, void *base, size_t mapped);
/** Removes the name: MP_ENOENT when it is gone. Windows: 0, nothing to do. */
int mp__os_shm_named_unlink(const char *name);

/* ---- the tracker (linux/tracker_linux.c; no-ops on Windows) ---- */

/** Tells the tracker this process uses block name (created says it made the block:
 *  only such blocks are ever unlinked by the tracker). Returns once the tracker has
 *  recorded it (starting the tracker when none runs). */
int mp__os_shm_track(const char *name, bool created);
/** Undoes mp__os_shm_track for this process (an attach that failed): the block is
 *  never unlinked for it. */
void mp__os_shm_untrack(const char *name);
/** The name was unlinked: the tracker forgets it. Only when this process talks to a
 *  tracker already (tracked, or opened blocks before); never starts one. */
void mp__os_shm_unlinked(const char *name, bool tracked);
/** Calls fn(ctx, name) for each block this process created and tracks and did not
 *  unlink: what the tracker unlinks once no process has it any more (none on Windows,
 *  where a name ends with its last handle). */
void mp__os_shm_each_left(void (*fn)(void *ctx, const char *name), void *ctx);

#endif
