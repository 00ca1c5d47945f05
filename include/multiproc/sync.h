/* multiproc synchronisation: Lock, RLock, Semaphore, BoundedSemaphore, Condition,
 * Event, Barrier, shared between processes on every start method. Included by
 * multiproc.h. */
#ifndef MULTIPROC_SYNC_H
#define MULTIPROC_SYNC_H

#ifdef __cplusplus
extern "C" {
#endif

/* (filled in by the synchronisation issue) */

#ifdef __cplusplus
}
#endif
#endif
