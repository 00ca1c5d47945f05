/* What the builtin manager types share (core/manager_types.c: containers;
 * core/manager_sync.c: queues and synchronisation): argument and result helpers, and
 * the types themselves, which mp__mreg_add_sync (core/manager_ctl.c) registers. */
#ifndef MP_CORE_MANAGER_TYPES_H
#define MP_CORE_MANAGER_TYPES_H

#include "manager_internal.h"

#define A(i, name) mp__marg(args, kwds, i, name)
#define NMETH(t) (sizeof(t) / sizeof((t)[0]))

/* A copy for the caller: 0, or MP_ENOMEM. NULL stays NULL (None). */
static inline int mt_ret(const mp_value *v, mp_value **out) {
    *out = v ? mp_value_copy(v) : NULL;
    return (*out || !v) ? 0 : mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
}

static inline int mt_ret_int(int64_t i, mp_value **out) {
    *out = mp_value_int(i);
    return *out ? 0 : mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
}

static inline int mt_ret_bool(bool b, mp_value **out) {
    *out = mp_value_bool(b);
    return *out ? 0 : mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
}

static inline int mt_need(const mp_value *v, const char *method, const char *what) {
    return v ? 0
             : mp_manager_raise(MP_EINVAL, "TypeError", "%s() missing required argument: '%s'",
                                method, what);
}

static inline int mt_nomem(void) {
    return mp_manager_raise(MP_ENOMEM, "MemoryError", "out of memory");
}

static inline int mt_attr_name(const mp_value *n, const char *method, const char **s) {
    int rc = mt_need(n, method, "name");
    if (rc) return rc;
    *s = mp_value_as_str(n, NULL);
    return *s ? 0 : mp_manager_raise(MP_EINVAL, "TypeError", "attribute name must be string");
}

extern const mp_manager_type mp__mtype_dict, mp__mtype_list, mp__mtype_iter, mp__mtype_namespace,
    mp__mtype_value, mp__mtype_array;
extern const mp_manager_type mp__mtype_queue, mp__mtype_joinable_queue, mp__mtype_lock,
    mp__mtype_rlock, mp__mtype_semaphore, mp__mtype_bsemaphore, mp__mtype_event,
    mp__mtype_condition, mp__mtype_barrier;

/** Adds SyncManager's typeids to r (those it has already stay). */
int mp__mreg_add_sync(mp__mreg *r);

#endif
