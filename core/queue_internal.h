/* Internals of the queues (core/queue*.c), shared with the tests' fault injection. */
#ifndef MP_CORE_QUEUE_INTERNAL_H
#define MP_CORE_QUEUE_INTERNAL_H

#include "internal.h"

/* Fault injection for tests: when set, called at these points (NULL in production). */
enum mp__queue_fault {
    MP__QFAULT_PUT_PARTIAL = 1, /* a putter holds the put side; its item is partly written */
    MP__QFAULT_GET_PARTIAL = 2, /* a getter holds the get side; the item is partly read */
    MP__QFAULT_PUT_SPILL = 3,   /* a putter is placing an item too big for the ring */
};
extern void (*mp__queue_fault_hook)(int point);

#endif
