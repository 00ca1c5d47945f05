/* The library objects a child can rebuild from its arguments, found by name. Each
 * module that makes a passable object adds its type here. */
#include "internal.h"
#include "connection_internal.h"
#include "manager_internal.h"
#include "shared_internal.h"

/* core/queue.c */
extern const mp__objtype mp__objtype_queue;
/* core/sync.c, core/sync_cond.c */
extern const mp__objtype mp__objtype_lock, mp__objtype_rlock, mp__objtype_semaphore,
    mp__objtype_bounded_semaphore, mp__objtype_condition, mp__objtype_event, mp__objtype_barrier;

const mp__objtype *const mp__objtypes[] = {
    &mp__connection_objtype,
    &mp__objtype_lock,
    &mp__objtype_rlock,
    &mp__objtype_semaphore,
    &mp__objtype_bounded_semaphore,
    &mp__objtype_condition,
    &mp__objtype_event,
    &mp__objtype_barrier,
    &mp__objtype_queue,
    &mp__objtype_shared_array,
    &mp__objtype_shm,
    &mp__objtype_proxy,
    NULL,
};
