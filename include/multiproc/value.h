/* multiproc values: the tagged value that travels over connections and queues, and
 * its codec, a safe subset of pickle: protocol 5 written, protocols 0-5 read (DESIGN
 * §3). Included by multiproc.h.
 *
 * Conventions of this module:
 *  - Constructors (mp_value_none ... mp_value_object_new, mp_value_copy) return a new
 *    value owned by the caller, or NULL when memory ran out (detail in
 *    mp_last_error_message()). Free with mp_value_free.
 *  - Actions (append, set, dumps, loads) return 0 or a negative MP_E* code.
 *  - Inserting takes ownership of the inserted values even on failure, so calls nest:
 *    mp_value_list_append(l, mp_value_int(1)) (a NULL item gives MP_ENOMEM).
 *  - Accessors never fail: on a NULL value or the wrong type they return 0 / 0.0 /
 *    false / NULL. Returned pointers are borrowed: valid while the value lives and the
 *    part they point into is not replaced.
 *  - A value is a tree: every value has one owner; nothing is shared. */
#ifndef MULTIPROC_VALUE_H
#define MULTIPROC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiproc/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A value: none, bool, int64, double, str, bytes, tuple, list, dict, set, frozenset,
 *  or an inert object(module.name, args) for what pickle would run. Owned by whoever
 *  made it.
 *
 *  Dict keys and set items follow Python's rules, so that a dict or set holds what
 *  Python's would and nothing is lost on the way:
 *  - they must be hashable, as Python says: not a list, dict or set, nor a tuple or
 *    frozenset holding one (an object is taken as hashable: only Python can tell);
 *  - they compare with Python's ==: numbers by value across bool, int and float
 *    (1 == 1.0 == true, 0 == -0.0 == false; NaN equals nothing but itself), str and
 *    bytes by content (a str never equals bytes), tuples item by item, frozensets as
 *    sets (in any order), objects as mp_value_equal;
 *  - a key or item must not be changed (through a borrowed pointer) while it is in a
 *    dict or set: lookups would then miss it, as in Python. */
typedef struct mp_value mp_value;

typedef enum mp_value_type {
    MP_VALUE_NONE = 0, /* also what mp_value_get_type says for NULL */
    MP_VALUE_BOOL,
    MP_VALUE_INT,   /* int64 */
    MP_VALUE_FLOAT, /* double */
    MP_VALUE_STR,   /* UTF-8, length-aware (may contain NUL), always NUL-terminated */
    MP_VALUE_BYTES,
    MP_VALUE_TUPLE,
    MP_VALUE_LIST,
    MP_VALUE_DICT,     /* hashable keys, insertion order kept, a key appears once */
    MP_VALUE_OBJECT,   /* inert: a global "module"."name", optional args/state; never run */
    MP_VALUE_SET,      /* hashable items, each once, insertion order kept */
    MP_VALUE_FROZENSET /* a set that is hashable itself: a dict key, a set item */
} mp_value_type;

/* ---- constructors (NULL on out of memory) ------------------------------------ */

/** New None. */
MP_API mp_value *mp_value_none(void);
/** New bool. */
MP_API mp_value *mp_value_bool(bool b);
/** New int. */
MP_API mp_value *mp_value_int(int64_t v);
/** New float. */
MP_API mp_value *mp_value_float(double d);
/** New str copied from the NUL-terminated s (NULL s: NULL, MP_EINVAL detail). UTF-8 is
 *  checked by mp_value_dumps, not here.
 *  @return NULL when s is NULL or out of memory. */
MP_API mp_value *mp_value_str(const char *s);
/** New str copied from n bytes at s (s may be NULL when n is 0). */
MP_API mp_value *mp_value_strn(const char *s, size_t n);
/** New bytes copied from n bytes at p (p may be NULL when n is 0). */
MP_API mp_value *mp_value_bytes(const void *p, size_t n);
/** New empty tuple; fill it with mp_value_list_append (tuples are built like lists). */
MP_API mp_value *mp_value_tuple_new(void);
/** New empty list. */
MP_API mp_value *mp_value_list_new(void);
/** New empty dict. */
MP_API mp_value *mp_value_dict_new(void);
/** New empty set; fill it with mp_value_set_add. */
MP_API mp_value *mp_value_set_new(void);
/** New empty frozenset; fill it with mp_value_set_add before it becomes a dict key or
 *  a set item. */
MP_API mp_value *mp_value_frozenset_new(void);
/** New inert object: the global module.name (copied), called with args (a tuple,
 *  owned from here on even on failure; NULL: a bare reference to the global). */
MP_API mp_value *mp_value_object_new(const char *module, const char *name, mp_value *args);
/** A deep copy of v (NULL for NULL, on out of memory, or for nesting far deeper than
 *  MP_VALUE_MAX_DEPTH; anything the codec accepts copies). */
MP_API mp_value *mp_value_copy(const mp_value *v);
/** Frees v and everything in it (NULL is fine). Iterative: any depth is fine. */
MP_API void mp_value_free(mp_value *v);

/* ---- building containers (they take ownership of what they are given) -------- */

/** Appends item to a list or tuple, or to an object's list items; item is owned by
 *  seq from here on, and freed on failure. MP_EINVAL when seq is none of those (a set
 *  takes mp_value_set_add), MP_ENOMEM when item is NULL.
 *  @retval MP_EINVAL  seq is NULL, not a list, tuple or object (a set among them).
 *  @retval MP_ENOMEM  item is NULL (a failed constructor), or out of memory. */
MP_API int mp_value_list_append(mp_value *seq, mp_value *item);
/** Sets dict[key] = val (or in an object's dict items), both owned by dict from here
 *  on (freed on failure). A key equal by Python's == already present (1, 1.0 and true
 *  are one key) keeps its place and its first spelling: its value is replaced (the old
 *  one and the new key are freed), as Python does. MP_EINVAL when dict is not a dict
 *  or object, or the key is unhashable (a list: Python's TypeError).
 *  @retval MP_EINVAL  dict is NULL or not a dict or object, or key is unhashable.
 *  @retval MP_ENOMEM  key or val is NULL (a failed constructor), or out of memory. */
MP_API int mp_value_dict_set(mp_value *dict, mp_value *key, mp_value *val);
/** mp_value_dict_set with a str key copied from the NUL-terminated key.
 *  @retval MP_EINVAL  key is NULL, or dict is NULL or not a dict or object.
 *  @retval MP_ENOMEM  val is NULL, or out of memory. */
MP_API int mp_value_dict_set_str(mp_value *dict, const char *key, mp_value *val);
/** Adds item to a set or frozenset, owned by it from here on (freed on failure). An
 *  equal item (Python's ==) already there stays, and item is freed, as Python does.
 *  MP_EINVAL when set is neither, or item is unhashable; MP_ENOMEM for a NULL item. A
 *  frozenset is built this way too, before it goes into a dict or set.
 *  @retval MP_EINVAL  set is NULL or not a set or frozenset, or item is unhashable.
 *  @retval MP_ENOMEM  item is NULL (a failed constructor), or out of memory. */
MP_API int mp_value_set_add(mp_value *set, mp_value *item);
/** Sets an object's state (what pickle's BUILD passes to __setstate__), owned by obj
 *  from here on (freed on failure); replaces (frees) an earlier state.
 *  @retval MP_EINVAL  obj is NULL or not an object.
 *  @retval MP_ENOMEM  state is NULL (a failed constructor). */
MP_API int mp_value_object_set_state(mp_value *obj, mp_value *state);

/* ---- accessors ---------------------------------------------------------------- */

/** The type of v (MP_VALUE_NONE for NULL). */
MP_API mp_value_type mp_value_get_type(const mp_value *v);
/** Python's name for a type ("NoneType", "int", "dict", "object"...). */
MP_API const char *mp_value_type_name(mp_value_type t);
/** An int, or a bool as 0/1; 0 for anything else. */
MP_API int64_t mp_value_as_int(const mp_value *v);
/** A float, or an int/bool converted; 0.0 for anything else. */
MP_API double mp_value_as_float(const mp_value *v);
/** Python's truth value: False for None, false, 0, 0.0, and empty str/bytes/containers.
 *  @return false for NULL. */
MP_API bool mp_value_as_bool(const mp_value *v);
/** A str's NUL-terminated UTF-8 and its byte length in *len (len may be NULL); NULL
 *  (and *len 0) when v is not a str. */
MP_API const char *mp_value_as_str(const mp_value *v, size_t *len);
/** A bytes value's data (never NULL for bytes, even empty) and length; NULL otherwise. */
MP_API const void *mp_value_as_bytes(const mp_value *v, size_t *len);
/** Items of a tuple/list/dict/set/frozenset, bytes of a str/bytes; 0 for anything else. */
MP_API size_t mp_value_len(const mp_value *v);
/** Item i of a tuple or list, or of a set or frozenset in insertion order (borrowed);
 *  NULL when out of range or not one of those. */
MP_API mp_value *mp_value_item(const mp_value *v, size_t i);
/** True when set (or frozenset) s holds an item equal to item by Python's ==.
 *  @return false when s or item is NULL or s is not a set. */
MP_API bool mp_value_set_contains(const mp_value *s, const mp_value *item);
/** Key of entry i of a dict, in insertion order (borrowed); NULL when out of range. */
MP_API mp_value *mp_value_dict_key(const mp_value *d, size_t i);
/** Value of entry i of a dict (borrowed); NULL when out of range. */
MP_API mp_value *mp_value_dict_value(const mp_value *d, size_t i);
/** dict[key] (borrowed), keys compared by Python's == (a 1.0 finds the key 1); NULL
 *  when absent or key is unhashable. Hashed lookup. */
MP_API mp_value *mp_value_dict_get(const mp_value *d, const mp_value *key);
/** dict[key] for a str key given as a NUL-terminated string (borrowed); NULL if absent. */
MP_API mp_value *mp_value_dict_get_str(const mp_value *d, const char *key);
/** dict[key] for an int key (borrowed; also finds an equal bool or float key); NULL if
 *  absent. */
MP_API mp_value *mp_value_dict_get_int(const mp_value *d, int64_t key);
/** An object's module ("collections"); NULL when v is not an object. */
MP_API const char *mp_value_object_module(const mp_value *v);
/** An object's qualified name within its module ("OrderedDict"); NULL if not an object. */
MP_API const char *mp_value_object_name(const mp_value *v);
/** An object's call arguments (a tuple, borrowed), NULL for a bare global reference. */
MP_API mp_value *mp_value_object_args(const mp_value *v);
/** An object's state from BUILD (borrowed), NULL when it has none. */
MP_API mp_value *mp_value_object_state(const mp_value *v);
/** Items appended to an object (a list subclass's items, borrowed), NULL when none. */
MP_API mp_value *mp_value_object_listitems(const mp_value *v);
/** Items set on an object (a dict subclass's items such as an OrderedDict's,
 *  borrowed), NULL when none. */
MP_API mp_value *mp_value_object_dictitems(const mp_value *v);
/** True when the object is made by cls.__new__(cls, *args) (pickle NEWOBJ) rather than
 *  by calling the global (REDUCE).
 *  @return false for NULL and for anything but an object. */
MP_API bool mp_value_object_is_newobj(const mp_value *v);
/** Deep equality, stricter than Python's == (which keys use): types must match (1,
 *  1.0 and True differ); floats compare with == except that NaN equals NaN (so round
 *  trips compare equal); dicts, sets and frozensets compare in order. Two NULLs are
 *  equal. */
MP_API bool mp_value_equal(const mp_value *a, const mp_value *b);

/* ---- the codec: pickle (protocol 5 out, 0-5 in), safe subset ------------------- */

/** Deepest nesting of containers the codec and the recursive helpers accept. */
#define MP_VALUE_MAX_DEPTH 1000

/** Bounds for mp_value_loads. A zero field means its default; NULL means all defaults. */
typedef struct mp_value_limits {
    size_t max_size; /* input bytes, and total str/bytes payload decoded; 1 GiB */
    size_t
        max_depth; /* container nesting ([] is 1, [[]] is 2); MP_VALUE_MAX_DEPTH, also the most */
    size_t max_items;    /* values created in all (memo copies and MARKs count); 1 << 22 */
    size_t max_str;      /* bytes in one str or bytes value; max_size */
    bool refuse_objects; /* GLOBAL/STACK_GLOBAL: MP_EPROTO instead of inert objects */
} mp_value_limits;

/** Encodes v as a pickle (protocol 5, framed like CPython's) that Python's
 *  pickle.loads turns into the natural object (None, bool, int, float, str, bytes,
 *  tuple, list, dict, set, frozenset; an object becomes its global called with args
 *  (REDUCE/NEWOBJ), then given its list items, dict items and state as pickle does).
 *  *buf is freed with mp_value_buf_free. MP_EINVAL for a str that is not UTF-8, a
 *  dict key or set item Python cannot hash (a list, dict or set, also inside a tuple
 *  or frozenset: possible when a key was changed through a borrowed pointer), an
 *  object whose args are not a tuple (or absent while it has items or a state), or
 *  nesting deeper than MP_VALUE_MAX_DEPTH.
 *  @retval MP_EINVAL  v, buf or len is NULL, or v cannot be encoded (see above).
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_value_dumps(const mp_value *v, void **buf, size_t *len);
/** Frees a buffer from mp_value_dumps (NULL is fine). */
MP_API void mp_value_buf_free(void *buf);
/** Decodes a pickle into *out, owned by the caller. Never runs code and never trusts
 *  a length: input beyond the limits is MP_ETOOBIG, malformed or unsupported input
 *  MP_EPROTO, an int wider than int64 MP_ETOOBIG, each with a precise detail message.
 *  Accepted: protocols 0 to 5 as CPython writes the types above (Python 3, and
 *  Python 2's pickle and cPickle), opcode by opcode:
 *  - PROTO (0-5), FRAME, STOP; MARK; PUT/BINPUT/LONG_BINPUT/MEMOIZE (numbered from 0,
 *    or from 1 as cPickle does, never further ahead) and GET/BINGET/LONG_BINGET: a GET
 *    copies the value it names, and the copy counts against max_items and max_size;
 *  - NONE, NEWTRUE/NEWFALSE, and INT's "00"/"01" (protocols 0-1's False/True);
 *  - ints: INT and LONG text (decimal at any length: optional sign, no leading zero,
 *    underscore or base prefix; LONG's trailing 'L' optional), BININT/BININT1/BININT2,
 *    LONG1/LONG4;
 *  - floats: FLOAT text (repr or %.17g: digits with an optional '.' and exponent, or
 *    inf/infinity/nan in any case, at most 256 bytes; past the float range an error,
 *    as CPython's OverflowError), BINFLOAT;
 *  - str: UNICODE (raw-unicode-escape, any length), BINUNICODE/SHORT_BINUNICODE/
 *    BINUNICODE8 (UTF-8; lone surrogates pass, as CPython's surrogatepass); Python 2
 *    str, STRING (quoted, escapes decoded) and BINSTRING/SHORT_BINSTRING, become str
 *    when ASCII and are refused otherwise, as Python 3's loads does by default;
 *  - bytes: BINBYTES/SHORT_BINBYTES/BINBYTES8, and BYTEARRAY8 (as bytes);
 *  - containers: EMPTY_TUPLE, TUPLE1-3, TUPLE, EMPTY_LIST, LIST, APPEND(S), EMPTY_DICT,
 *    DICT, SETITEM(S), EMPTY_SET, ADDITEMS, FROZENSET. A dict key or set item Python
 *    cannot hash is MP_EPROTO (Python's TypeError); keys equal by Python's == are one
 *    key, the first kept with the last value, as in Python;
 *  - GLOBAL/STACK_GLOBAL with REDUCE/NEWOBJ (+ APPEND(S)/SETITEM(S)/BUILD): inert
 *    objects (or refused, see limits), except the constructors protocols 0-3 use for
 *    bytes, bytearray, set and frozenset (_codecs.encode(s, 'latin1'), bytes(),
 *    bytearray(b), bytearray(s, 'latin-1'), set(list), frozenset(list)), which decode
 *    to those; below protocol 3, Python 2 names (__builtin__, exceptions, copy_reg)
 *    become Python 3's.
 *  Amplification bound, whatever the limits: since a GET copies, decoding an input of
 *  len bytes makes at most 2 * len + 2^17 values (MARKs and copies included) and copies
 *  at most 4 * len + 4 MiB bytes of str/bytes and object names; past it MP_ETOOBIG
 *  ("the decoded value would be more than N times the message's size"). A pickle
 *  without GETs never reaches it (one value per byte at most, text at most doubles as
 *  UTF-8): only a value shared many times, such as [x] * 100000 for a big list x, can.
 *  Refused with MP_EPROTO: POP, POP_MARK and DUP (CPython writes them only for
 *  cycles), a container changed after a GET copied it (a cycle), PERSID/BINPERSID,
 *  EXT1/EXT2/EXT4, INST/OBJ, NEWOBJ_EX, NEXT_BUFFER/READONLY_BUFFER (out-of-band
 *  buffers), unknown opcodes, and bytes after STOP. Text arguments must end in '\n'
 *  within the input (and within their frame, if in one); module, global and memo
 *  index arguments are at most 256 bytes.
 *  @retval MP_EINVAL  out is NULL, or buf is NULL with len > 0.
 *  @retval MP_ETOOBIG the input, a str or bytes, the items, the nesting or an int is beyond the
 *      limits, or the decoded value beyond the amplification bound.
 *  @retval MP_EPROTO  malformed, empty or unsupported input (see above).
 *  @retval MP_ENOMEM  out of memory. */
MP_API int mp_value_loads(const void *buf, size_t len, const mp_value_limits *lim, mp_value **out);

#ifdef __cplusplus
}
#endif
#endif
