/* multiproc values: the tagged value that travels over connections and queues, and
 * its codec, a safe subset of pickle protocol 5 (DESIGN §3). Included by multiproc.h. */
#ifndef MULTIPROC_VALUE_H
#define MULTIPROC_VALUE_H

#ifdef __cplusplus
extern "C" {
#endif

/** A value: none, bool, int64, double, str, bytes, tuple, list, dict, or an inert
 *  object(module.name, args) for what pickle would run. Owned by whoever made it. */
typedef struct mp_value mp_value;

/* (the value API is filled in by the connections issue: constructors, accessors,
 *  mp_value_dumps / mp_value_loads / mp_value_free) */

#ifdef __cplusplus
}
#endif
#endif
