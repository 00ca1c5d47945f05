/* The queues' fault-injection points, for tests (plain C, also included from C++): a
 * test sets mp__queue_fault_hook in a child to kill it at a precise point of a put or
 * a get. NULL in production. */
#ifndef MP_CORE_QUEUE_FAULT_H
#define MP_CORE_QUEUE_FAULT_H

#ifdef __cplusplus
extern "C" {
#endif

enum mp__queue_fault {
    MP__QFAULT_PUT_PARTIAL = 1, /* a putter holds the put side; its item is partly written */
    MP__QFAULT_GET_PARTIAL = 2, /* a getter holds the get side; the item is partly read */
    MP__QFAULT_PUT_SPILL = 3,   /* a putter is placing an item too big for the ring */
};
extern void (*mp__queue_fault_hook)(int point);

#ifdef __cplusplus
}
#endif
#endif
