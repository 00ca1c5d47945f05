/* The mp_value representation, shared by core/value.c and the pickle codec
 * (core/pickle_dump.c, core/pickle_load.c). */
#ifndef MP_CORE_VALUE_INTERNAL_H
#define MP_CORE_VALUE_INTERNAL_H

#include <string.h>

#include "internal.h"

/* Decoder-only marks (flags). */
enum {
    MP__VF_SHARED = 1, /* a memo GET copied it: changing it later means a cycle */
    MP__VF_MOVED = 2,  /* a list whose items went into a set(): a memo GET of it is refused */
    MP__VF_SLAB = 4    /* a scalar in its list's slab: freed with the list, never alone */
};

struct mp_value {
    uint8_t type;    /* mp_value_type */
    uint8_t flags;   /* MP__VF_* while decoding */
    uint32_t height; /* decoder: 0 scalar, containers 1 + the highest item */
    mp_value *next;  /* free's work list; the decoder's discard list */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            char *p;
            size_t n;
        } s; /* str, bytes: p[n] == 0 */
        struct {
            mp_value **items;
            size_t n, cap;
            void *slabs; /* blocks of MP__VF_SLAB items, chained by their first word */
        } seq;
        struct {           /* dict, and set/frozenset (keys only) */
            mp_value **kv; /* dict: key, value, key, value... (2n used of 2cap);
                                set: item, item... (n used of cap) */
            size_t n, cap;
            uint32_t *index; /* open addressing over entries (entry + 1; 0 empty) */
            size_t icap;     /* power of two, 0 while small */
        } d;
        struct {
            char *module;     /* "module\0name": one allocation, name follows */
            mp_value *args;   /* tuple; NULL for a bare global */
            mp_value *state;  /* BUILD's argument, or NULL */
            mp_value *items;  /* list of APPEND(S) to the object, or NULL */
            mp_value *ditems; /* dict of SETITEM(S) to the object, or NULL */
            bool newobj;
        } o;
    } u;
};

/** An object's name: it follows the module in the same allocation. */
static inline const char *mp__obj_name(const mp_value *v) {
    return v->u.o.module + strlen(v->u.o.module) + 1;
}
/** A new object for the global mod.name (lengths given); NULL (MP_ENOMEM) on failure. */
mp_value *mp__value_object(const char *mod, size_t mn, const char *name, size_t nn);
/** A new value of type t with zeroed payload; NULL (MP_ENOMEM recorded) on failure. */
mp_value *mp__value_alloc(mp_value_type t);
/** Gives back a node mp__value_alloc made, its payload already freed (or never set). */
void mp__value_node_free(mp_value *v);
/** A block for n scalar items of one list (int, float, bool, none: no payload), so
 *  that making them costs no allocation each: *nodes gets the n nodes, uninitialised:
 *  the caller sets each one's type, payload, flags MP__VF_SLAB, height 0, next NULL. Chain it onto the list's seq.slabs with mp__value_slab_chain; it is
 *  freed with the list. NULL with MP_ENOMEM recorded. */
void *mp__value_slab_new(size_t n, mp_value **nodes);
/** Adds a block to a chain (*chain: a list's seq.slabs, or a chain on its way there). */
void mp__value_slab_chain(void **chain, void *slab);
/** Frees a chain of blocks whose items nobody holds any more. */
void mp__value_slab_free(void *chain);
/** Appends without ownership games: 0 or MP_ENOMEM (item stays the caller's). */
int mp__value_seq_push(mp_value *seq, mp_value *item);
/** Sets d[key] = val, keys compared as Python compares them (mp__value_key_equal). On
 *  success old_key and old_val receive what the dict let go (the duplicate new key and
 *  the replaced value) or NULL; on failure (MP_ENOMEM) nothing changed and key/val stay
 *  the caller's. The key is not checked for hashability (mp__value_hashable). */
int mp__value_dict_put(mp_value *d, mp_value *key, mp_value *val, mp_value **old_key,
                       mp_value **old_val);
/** Removes d[key] (keys compared as Python does): 1 and what the dict let go in
 *  *old_key and *old_val (the caller's now), or 0 and NULLs when absent. */
int mp__value_dict_take(mp_value *d, const mp_value *key, mp_value **old_key, mp_value **old_val);
/** Adds item to a set or frozenset s unless an equal item is there: then *dup is item
 *  (let go: the first one stays, as in Python), else NULL. On failure (MP_ENOMEM)
 *  nothing changed and item stays the caller's. Not checked for hashability. */
int mp__value_set_put(mp_value *s, mp_value *item, mp_value **dup);
/** Whether Python could hash v (a dict key, a set item): not a list, dict or set, nor a
 *  tuple or frozenset holding one. On false *bad is the unhashable part. */
bool mp__value_hashable(const mp_value *v, const mp_value **bad);
/** Adds to *values the values a copy of v makes (v and all it holds), to *payload its
 *  str/bytes bytes and to *names its objects' module and name bytes (with their NULs).
 *  Recursive: for values no deeper than MP_VALUE_MAX_DEPTH. */
void mp__value_measure(const mp_value *v, size_t *values, size_t *payload, size_t *names);
/** Appends v's pickle opcodes to b with no PROTO, frame or STOP: a piece of a pickle
 *  made elsewhere (a pool's task lists items encoded one by one). 0, MP_EINVAL for
 *  what mp_value_dumps refuses, or MP_ENOMEM (b keeps what was written). */
int mp__pickle_dump_item(const mp_value *v, mp__buf *b);
/** Checks UTF-8 as CPython's "surrogatepass" decoder accepts it (lone surrogates ok). */
bool mp__utf8_valid(const char *p, size_t n);
/** Checks UTF-8 as CPython's strict "utf-8" codec accepts it (no surrogates). */
bool mp__utf8_valid_strict(const char *p, size_t n);

#endif
