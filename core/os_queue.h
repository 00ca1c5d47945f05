/* The OS side of a queue's large items ("spills"), one implementation per build:
 * linux/queue_linux.c, win32/queue_win32.c.
 *
 * An item too big for the ring goes into a shared-memory block of its own, and the
 * ring gets a small record naming it: seq (unique and increasing per queue, given by
 * core under the put lock) and rec[2] (the OS layer's words). The block must outlive
 * its producer, with no consumer around:
 *   - posix: the block is a memfd whose fd travels as SCM_RIGHTS over a carrier
 *     socketpair that every holder of the queue keeps both ends of; an fd in flight
 *     lives in the kernel's socket, not in any process. Consumers send used blocks
 *     back the other way (a free list), so a steady stream of big items reuses the
 *     same few blocks, whose mappings each side keeps; a block seen for the first
 *     time is written with pwrite (no page faults, no zeroing).
 *   - Windows: a section per item, whose handle the producer moves into the queue
 *     creator's process (kept in the producer when that fails); rec names the keeper
 *     process and the handle, and the getter moves it out (DUPLICATE_CLOSE_SOURCE).
 *
 * The put side calls the producer functions under the queue's put lock, the get side
 * the consumer ones under its get lock: a spill object needs no lock of its own. */
#ifndef MP_CORE_OS_QUEUE_H
#define MP_CORE_OS_QUEUE_H

#include <stdatomic.h>

#include "os.h"

typedef struct mp__qspill mp__qspill;

/** Handles the spill channel travels with (posix 2, Windows 0). */
size_t mp__os_qspill_handle_count(void);
/** A new channel, in the process that creates the queue (creator_pid: that process).
 *  free_count, in the queue's shared block, counts the recycled blocks waiting. */
int mp__os_qspill_new(uint32_t creator_pid, _Atomic uint32_t *free_count, mp__qspill **out);
/** Appends the channel's handles (borrowed) to handles[*nh ...]. */
void mp__os_qspill_reduce(const mp__qspill *s, mp_os_handle *handles, size_t *nh);
/** Another process's channel from mp__os_qspill_handle_count handles, which it takes
 *  over on success. */
int mp__os_qspill_rebuild(uint32_t creator_pid, _Atomic uint32_t *free_count,
                          const mp_os_handle *handles, mp__qspill **out);
/** Frees this process's channel: its mappings and handles (NULL is fine). */
void mp__os_qspill_free(mp__qspill *s);

/** Producer: a block of at least size bytes for the next item (maybe recycled). */
int mp__os_qspill_take(mp__qspill *s, uint64_t size);
/** Producer: writes into that block at off. */
int mp__os_qspill_write(mp__qspill *s, uint64_t off, const void *buf, size_t len);
/** Producer: hands the block from the last take over as item seq (of size bytes),
 *  to be written afterwards; fills rec. MP_EFULL when the channel stays full for
 *  timeout seconds. On failure the block is dropped. */
int mp__os_qspill_send(mp__qspill *s, uint64_t seq, uint64_t size, uint64_t rec[2], double timeout);
/** Producer: lets go of the block from the last take (once sent, it lives on in the
 *  channel; otherwise it is dropped). */
void mp__os_qspill_cancel(mp__qspill *s);
/** Consumer: takes the block of item seq, to read until mp__os_qspill_done. Blocks of
 *  older items left by dead processes are discarded on the way. MP_ENOENT when the
 *  block is gone (a dead getter took it; or, on Windows, its keeper ended). */
int mp__os_qspill_recv(mp__qspill *s, uint64_t seq, uint64_t size, const uint64_t rec[2]);
/** Consumer: reads from that block at off. */
int mp__os_qspill_read(mp__qspill *s, uint64_t off, void *dst, size_t len);
/** Consumer: done with the block from the last recv; recycle says it may be reused. */
void mp__os_qspill_done(mp__qspill *s, bool recycle);

/* ---- the overflow arena: a large block of shared memory that costs only what is
 * touched (posix: a sparse memfd; Windows: a section), mapped where needed ---- */

/** A new arena; *size its bytes (a power of two). */
int mp__os_qarena_new(uint64_t *size, mp_os_handle *h);
int mp__os_qarena_map(mp_os_handle h, uint64_t size, void **base);
void mp__os_qarena_unmap(void *base, uint64_t size);
/** Gives the memory of [off, off + len) back to the OS (it reads as zeros afterwards);
 *  best effort. */
void mp__os_qarena_discard(mp_os_handle h, void *base, uint64_t off, uint64_t len);

#endif
