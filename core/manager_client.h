/* A manager's clients inside the library (core/manager.c), for the manager object
 * (core/manager_ctl.c): where a manager is and with which key, this process's lease on
 * it, public calls, and proxies made from their answers. */
#ifndef MP_CORE_MANAGER_CLIENT_H
#define MP_CORE_MANAGER_CLIENT_H

#include "manager_internal.h"

/** A manager as its clients know it: address, authkey, this process's lease. Shared by
 *  the managers and proxies that reach one address with one key; reference counted. */
typedef struct mp__mclient mp__mclient;

/** The client for address and key (one reference more), or NULL (MP_ENOMEM). */
mp__mclient *mp__mclient_get(const char *address, const void *key, size_t keylen);
/** Lets go of a reference; the last one closes its connections. NULL is fine. */
void mp__mclient_put(mp__mclient *c);
/** This process's lease on a C manager, taken on first use, into lease ("" for a
 *  Python manager, which has none). */
void mp__mclient_lease(mp__mclient *cl, double timeout, char lease[24]);
/** A public call of the server over a connection of its own (CPython's dispatch):
 *  0 and *result (may be NULL), or the error the answer carries. */
int mp__mpublic_call(const mp__mclient *cl, double timeout, const char *method,
                     const mp_value *args, const mp_value *kwds, mp_value **result);
/** A proxy that owns one server reference to (type_id, id), under lease; on failure the
 *  reference is given back. exposed is taken. */
int mp__mproxy_new(mp__mclient *cl, double timeout, const char *type_id, const char *id,
                   const char *lease, mp_value *exposed, mp_proxy **out);
/** A tuple of copies of up to three values (NULL ends the list); NULL on MP_ENOMEM. */
mp_value *mp__mtuple_of(const mp_value *a, const mp_value *b, const mp_value *c);

#endif
