/* mp_value: a tree of tagged values (DESIGN §3). Every node has one owner; the codec
 * lives in pickle_dump.c and pickle_load.c. Dicts and sets keep insertion order in one
 * array and add a hash index once they grow, so building a big one (or decoding a
 * hostile one full of duplicate keys) stays linear. Keys and set items compare as
 * Python compares them (1 == 1.0 == True), so a dict holds what Python's would. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "os.h"
#include "value_internal.h"

/* ---- nodes ----
 * Values come and go by the thousand (a decoded list, a pool's results), and malloc
 * spends more on a node than everything else done with it. So a thread keeps the nodes
 * it frees for its next values, up to CACHE_MAX; beyond that it hands a batch to a
 * depot the threads share, where a thread that allocates more than it frees (a
 * decoder) takes them from. A thread's cache lives on the heap and goes back to the
 * depot, or to free(), when the thread exits. Not under AddressSanitizer, which must see
 * every node freed to tell a use after free. */
#if defined(__SANITIZE_ADDRESS__)
#define NODE_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NODE_CACHE 0
#endif
#endif
#ifndef NODE_CACHE
#define NODE_CACHE 1
#endif

#define CACHE_MAX 4096 /* nodes a thread keeps */
#define BATCH 512      /* nodes moved to or from the depot at once */
#define DEPOT_MAX 256  /* batches the depot keeps (about 7 MiB of nodes) */

#if NODE_CACHE
typedef struct node_cache {
    mp_value *head;
    size_t n;
} node_cache;

static MP__THREAD_LOCAL node_cache *t_cache;
static mp__tls *g_key;
static bool g_key_failed;
static mp_value *g_depot[DEPOT_MAX]; /* chains of BATCH nodes, under depot_lock() */
static _Atomic size_t g_ndepot;      /* read without the lock to skip an empty depot */
static atomic_flag g_depot_busy = ATOMIC_FLAG_INIT;
static struct slab *g_spare;         /* freed big slabs (below), under depot_lock() */
static _Atomic size_t g_spare_bytes; /* their bytes, read without the lock too */

/* The depot's own lock, held for a few instructions. Not the global lock: a
 * thread's exit gives its nodes back, and the thread joining it (a dummy
 * child's parent) may hold the global lock meanwhile. */
static void depot_lock(void) {
    for (unsigned spins = 0; atomic_flag_test_and_set_explicit(&g_depot_busy, memory_order_acquire);
         spins++) {
        if (spins > 64) mp__os_sleep(0);
    }
}

static void depot_unlock(void) { atomic_flag_clear_explicit(&g_depot_busy, memory_order_release); }

/* Puts a chain of nodes into the depot if it has room: true then. Under depot_lock(). */
static bool depot_put(mp_value *chain) {
    size_t n = atomic_load_explicit(&g_ndepot, memory_order_relaxed);
    if (n == DEPOT_MAX) return false;
    g_depot[n] = chain;
    atomic_store_explicit(&g_ndepot, n + 1, memory_order_relaxed);
    return true;
}

/* A thread's exit: its nodes go to the depot in batches, the rest to free(). */
static void cache_drop(void *arg) {
    node_cache *c = arg;
    while (c->head) {
        mp_value *chain = c->head, *last = chain;
        size_t k = 1;
        while (k < BATCH && last->next) {
            last = last->next;
            k++;
        }
        c->head = last->next;
        last->next = NULL;
        bool kept = false;
        if (k == BATCH) {
            depot_lock();
            kept = depot_put(chain);
            depot_unlock();
        }
        while (!kept && chain) {
            mp_value *nx = chain->next;
            mp__free(chain);
            chain = nx;
        }
    }
    mp__free(c);
}

static node_cache *cache_get(void) {
    if (t_cache) return t_cache;
    depot_lock();
    if (!g_key && !g_key_failed) g_key_failed = mp__os_tls_new(cache_drop, &g_key) != 0;
    depot_unlock();
    if (g_key_failed) return NULL; /* no way to give it back at exit: no cache */
    node_cache *c = mp__calloc(1, sizeof *c);
    if (!c) return NULL;
    if (mp__os_tls_set(g_key, c) != 0) {
        mp__free(c);
        return NULL;
    }
    return t_cache = c;
}
#endif

void mp__value_after_fork_child(void) {
#if NODE_CACHE
    atomic_store_explicit(&g_ndepot, 0, memory_order_relaxed);
    g_spare = NULL; /* the parent's memory, copied: forgotten, as the depot */
    atomic_store_explicit(&g_spare_bytes, 0, memory_order_relaxed);
    atomic_flag_clear_explicit(&g_depot_busy, memory_order_release);
#endif
}

static mp_value *node_get(void) {
#if NODE_CACHE
    node_cache *c = t_cache;
    if (!c || !c->head) {
        c = cache_get();
        if (c && !c->head && atomic_load_explicit(&g_ndepot, memory_order_relaxed)) {
            depot_lock();
            size_t n = atomic_load_explicit(&g_ndepot, memory_order_relaxed);
            if (n) {
                c->head = g_depot[n - 1];
                c->n = BATCH;
                atomic_store_explicit(&g_ndepot, n - 1, memory_order_relaxed);
            }
            depot_unlock();
        }
    }
    if (c && c->head) {
        mp_value *v = c->head;
        c->head = v->next;
        c->n--;
        memset(v, 0, sizeof *v);
        return v;
    }
#endif
    return mp__calloc(1, sizeof(mp_value));
}

static void node_put(mp_value *v) {
#if NODE_CACHE
    node_cache *c = t_cache ? t_cache : cache_get();
    if (c) {
        if (c->n == CACHE_MAX) {
            /* A batch off the cache's head goes to the depot (or to free()). */
            mp_value *chain = c->head, *last = chain;
            for (size_t k = 1; k < BATCH; k++) last = last->next;
            c->head = last->next;
            last->next = NULL;
            c->n -= BATCH;
            depot_lock();
            bool kept = depot_put(chain);
            depot_unlock();
            while (!kept && chain) {
                mp_value *nx = chain->next;
                mp__free(chain);
                chain = nx;
            }
        }
        v->next = c->head;
        c->head = v;
        c->n++;
        return;
    }
#endif
    mp__free(v);
}

mp_value *mp__value_alloc(mp_value_type t) {
    mp_value *v = node_get();
    if (!v) {
        mp__err(MP_ENOMEM, "out of memory allocating a %s value", mp_value_type_name(t));
        return NULL;
    }
    v->type = (uint8_t)t;
    return v;
}

void mp__value_node_free(mp_value *v) { node_put(v); }

mp_value *mp_value_none(void) { return mp__value_alloc(MP_VALUE_NONE); }

mp_value *mp_value_bool(bool b) {
    mp_value *v = mp__value_alloc(MP_VALUE_BOOL);
    if (v) v->u.b = b;
    return v;
}

mp_value *mp_value_int(int64_t i) {
    mp_value *v = mp__value_alloc(MP_VALUE_INT);
    if (v) v->u.i = i;
    return v;
}

mp_value *mp_value_float(double d) {
    mp_value *v = mp__value_alloc(MP_VALUE_FLOAT);
    if (v) v->u.f = d;
    return v;
}

static mp_value *new_blob(mp_value_type t, const void *p, size_t n) {
    if (!p && n) {
        mp__err(MP_EINVAL, "NULL data with a length of %zu", n);
        return NULL;
    }
    if (n == SIZE_MAX) {
        mp__err(MP_ENOMEM, "%s too long", mp_value_type_name(t));
        return NULL;
    }
    mp_value *v = mp__value_alloc(t);
    if (!v) return NULL;
    v->u.s.p = mp__malloc(n + 1);
    if (!v->u.s.p) {
        node_put(v);
        mp__err(MP_ENOMEM, "out of memory for a %s of %zu bytes", mp_value_type_name(t), n);
        return NULL;
    }
    if (n) memcpy(v->u.s.p, p, n);
    v->u.s.p[n] = '\0';
    v->u.s.n = n;
    return v;
}

mp_value *mp_value_str(const char *s) {
    if (!s) {
        mp__err(MP_EINVAL, "mp_value_str: NULL string");
        return NULL;
    }
    return new_blob(MP_VALUE_STR, s, strlen(s));
}

mp_value *mp_value_strn(const char *s, size_t n) { return new_blob(MP_VALUE_STR, s, n); }

mp_value *mp_value_bytes(const void *p, size_t n) { return new_blob(MP_VALUE_BYTES, p, n); }

mp_value *mp_value_tuple_new(void) { return mp__value_alloc(MP_VALUE_TUPLE); }
mp_value *mp_value_list_new(void) { return mp__value_alloc(MP_VALUE_LIST); }
mp_value *mp_value_dict_new(void) { return mp__value_alloc(MP_VALUE_DICT); }
mp_value *mp_value_set_new(void) { return mp__value_alloc(MP_VALUE_SET); }
mp_value *mp_value_frozenset_new(void) { return mp__value_alloc(MP_VALUE_FROZENSET); }

static bool is_set(const mp_value *v) {
    return v->type == MP_VALUE_SET || v->type == MP_VALUE_FROZENSET;
}

/* Dicts and sets share one table: a dict's entry is a key and a value, a set's an item. */
static size_t stride(const mp_value *t) { return t->type == MP_VALUE_DICT ? 2 : 1; }
static mp_value *table_key(const mp_value *t, size_t i) { return t->u.d.kv[i * stride(t)]; }

mp_value *mp__value_object(const char *mod, size_t mn, const char *name, size_t nn) {
    mp_value *v = mp__value_alloc(MP_VALUE_OBJECT);
    if (!v) return NULL;
    if (mn > SIZE_MAX / 2 || nn > SIZE_MAX / 2 || !(v->u.o.module = mp__malloc(mn + nn + 2))) {
        node_put(v);
        mp__err(MP_ENOMEM, "out of memory for an object value");
        return NULL;
    }
    memcpy(v->u.o.module, mod, mn);
    v->u.o.module[mn] = '\0';
    memcpy(v->u.o.module + mn + 1, name, nn);
    v->u.o.module[mn + 1 + nn] = '\0';
    return v;
}

mp_value *mp_value_object_new(const char *module, const char *name, mp_value *args) {
    if (!module || !name) {
        mp_value_free(args);
        mp__err(MP_EINVAL, "mp_value_object_new: NULL module or name");
        return NULL;
    }
    mp_value *v = mp__value_object(module, strlen(module), name, strlen(name));
    if (!v) {
        mp_value_free(args);
        return NULL;
    }
    v->u.o.args = args;
    return v;
}

/* Pushes v's children onto the work list so that freeing never recurses. */
static void push_children(mp_value *v, mp_value **work) {
    mp_value *c[4];
    switch (v->type) {
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        for (size_t i = 0; i < v->u.seq.n; i++) {
            if (v->u.seq.items[i]->flags & MP__VF_SLAB) continue; /* freed with the list */
            v->u.seq.items[i]->next = *work;
            *work = v->u.seq.items[i];
        }
        break;
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        for (size_t i = 0; i < stride(v) * v->u.d.n; i++) {
            v->u.d.kv[i]->next = *work;
            *work = v->u.d.kv[i];
        }
        break;
    case MP_VALUE_OBJECT:
        c[0] = v->u.o.args;
        c[1] = v->u.o.state;
        c[2] = v->u.o.items;
        c[3] = v->u.o.ditems;
        for (int i = 0; i < 4; i++) {
            if (c[i]) {
                c[i]->next = *work;
                *work = c[i];
            }
        }
        break;
    default:
        break;
    }
}

static void free_node(mp_value *v) {
    switch (v->type) {
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        mp__free(v->u.s.p);
        break;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        mp__free(v->u.seq.items);
        mp__value_slab_free(v->u.seq.slabs);
        break;
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        mp__free(v->u.d.kv);
        mp__free(v->u.d.index);
        break;
    case MP_VALUE_OBJECT:
        mp__free(v->u.o.module);
        break;
    default:
        break;
    }
    if (!(v->flags & MP__VF_SLAB)) node_put(v);
}

/* A slab: a word for the chain, its capacity, then the nodes. */
typedef struct slab {
    struct slab *next;
    size_t cap;
    mp_value nodes[];
} slab;

#define SPARE_MIN ((size_t)64 << 10) /* bytes: smaller slabs are malloc's business */
#define SPARE_MAX ((size_t)32 << 20) /* bytes of freed slabs kept for the next ones */

#if NODE_CACHE
/* Freed big slabs, kept for reuse: a pool's map of numbers makes slabs of MiBs, which
 * malloc maps and unmaps each time, and the page faults of touching them anew cost
 * more than the rest of the map. Under depot_lock(); the byte count is read without it
 * to skip an empty list. */
/* The smallest spare of at least n nodes, taken out of the list; NULL if none. */
static slab *spare_take(size_t n) {
    if (!atomic_load_explicit(&g_spare_bytes, memory_order_relaxed)) return NULL;
    depot_lock();
    slab **best = NULL;
    for (slab **pp = &g_spare; *pp; pp = &(*pp)->next)
        if ((*pp)->cap >= n && (*pp)->cap / 4 <= n && (!best || (*pp)->cap < (*best)->cap))
            best = pp;
    slab *s = NULL;
    if (best) {
        s = *best;
        *best = s->next;
        atomic_fetch_sub_explicit(&g_spare_bytes, s->cap * sizeof(mp_value), memory_order_relaxed);
    }
    depot_unlock();
    return s;
}

/* Keeps a freed slab if it is big and there is room: true then. */
static bool spare_put(slab *s) {
    size_t bytes = s->cap * sizeof(mp_value);
    if (bytes < SPARE_MIN) return false;
    depot_lock();
    size_t have = atomic_load_explicit(&g_spare_bytes, memory_order_relaxed);
    bool kept = have + bytes <= SPARE_MAX;
    if (kept) {
        s->next = g_spare;
        g_spare = s;
        atomic_store_explicit(&g_spare_bytes, have + bytes, memory_order_relaxed);
    }
    depot_unlock();
    return kept;
}
#else
static slab *spare_take(size_t n) {
    (void)n;
    return NULL;
}
static bool spare_put(slab *s) {
    (void)s;
    return false;
}
#endif

void *mp__value_slab_new(size_t n, mp_value **nodes) {
    slab *s = spare_take(n);
    if (!s) {
        s = n > (SIZE_MAX - sizeof *s) / sizeof(mp_value)
                ? NULL
                : mp__malloc(sizeof *s + n * sizeof(mp_value));
        if (!s) {
            mp__err(MP_ENOMEM, "out of memory for %zu values", n);
            return NULL;
        }
        s->cap = n;
    }
    s->next = NULL;
    *nodes = s->nodes; /* set by the caller, in the one pass that writes them */
    return s;
}

void mp__value_slab_chain(void **chain, void *sl) {
    slab *s = sl;
    s->next = *chain;
    *chain = s;
}

void mp__value_slab_free(void *chain) {
    for (slab *s = chain, *nx; s; s = nx) {
        nx = s->next;
        if (!spare_put(s)) mp__free(s);
    }
}

void mp_value_free(mp_value *v) {
    if (!v) return;
    v->next = NULL;
    mp_value *work = v;
    while (work) {
        mp_value *cur = work;
        work = cur->next;
        push_children(cur, &work);
        free_node(cur);
    }
}

int mp__value_seq_push(mp_value *seq, mp_value *item) {
    if (seq->u.seq.n == seq->u.seq.cap) {
        size_t cap = seq->u.seq.cap ? seq->u.seq.cap * 2 : 4;
        if (cap > SIZE_MAX / sizeof(mp_value *)) return mp__err(MP_ENOMEM, "list too long");
        mp_value **items = mp__realloc(seq->u.seq.items, cap * sizeof *items);
        if (!items)
            return mp__err(MP_ENOMEM, "out of memory growing a %s to %zu items",
                           mp_value_type_name((mp_value_type)seq->type), cap);
        seq->u.seq.items = items;
        seq->u.seq.cap = cap;
    }
    seq->u.seq.items[seq->u.seq.n++] = item;
    return 0;
}

int mp_value_list_append(mp_value *seq, mp_value *item) {
    if (!item) {
        if (!seq) return mp__err(MP_EINVAL, "mp_value_list_append: NULL list");
        return mp__err(MP_ENOMEM, "mp_value_list_append: NULL item (a failed constructor?)");
    }
    if (seq && seq->type == MP_VALUE_OBJECT) {
        if (!seq->u.o.items && !(seq->u.o.items = mp_value_list_new())) {
            mp_value_free(item);
            return MP_ENOMEM;
        }
        seq = seq->u.o.items;
    }
    if (!seq || (seq->type != MP_VALUE_LIST && seq->type != MP_VALUE_TUPLE)) {
        mp_value_free(item);
        if (seq && is_set(seq))
            return mp__err(MP_EINVAL,
                           "mp_value_list_append: a %s takes items with mp_value_set_add",
                           mp_value_type_name((mp_value_type)seq->type));
        return mp__err(MP_EINVAL, "mp_value_list_append: not a list or tuple");
    }
    int rc = mp__value_seq_push(seq, item);
    if (rc) mp_value_free(item);
    return rc;
}

/* ---- hashing and equality ---- */

/* Recursion bound for hash/equal/copy: an object's list/dict items sit one hidden
 * level below it, so a value MP_VALUE_MAX_DEPTH deep may recurse up to twice that. */
#define RECURSION_MAX (2 * MP_VALUE_MAX_DEPTH + 2)

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* splitmix64's finalizer: a set's hash adds its items' hashes, mixed first. */
static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A random seed per process, so nobody can prepare keys that all collide. */
static _Atomic uint64_t hash_seed_v;

static uint64_t hash_seed(void) {
    uint64_t s = atomic_load(&hash_seed_v);
    if (s) return s;
    uint64_t mine = 0;
    if (mp__os_random(&mine, sizeof mine) != 0 || !mine)
        mine = (uint64_t)(uintptr_t)&hash_seed_v ^ 0x9e3779b97f4a7c15ULL;
    mine |= 1;
    uint64_t expected = 0;
    /* the first seed stored wins, so indexes built by racing threads agree */
    if (!atomic_compare_exchange_strong(&hash_seed_v, &expected, mine)) return expected;
    return mine;
}

static bool is_number(const mp_value *v) {
    return v->type == MP_VALUE_BOOL || v->type == MP_VALUE_INT || v->type == MP_VALUE_FLOAT;
}

/* The int64 a number equals exactly, if there is one (2.0 -> 2, -0.0 -> 0, 2.5 none). */
static bool number_as_int(const mp_value *v, int64_t *out) {
    if (v->type == MP_VALUE_BOOL)
        *out = v->u.b;
    else if (v->type == MP_VALUE_INT)
        *out = v->u.i;
    else if (v->u.f >= -9223372036854775808.0 && v->u.f < 9223372036854775808.0 &&
             (double)(int64_t)v->u.f == v->u.f)
        *out = (int64_t)v->u.f;
    else
        return false;
    return true;
}

/* Python's == on numbers: by value across bool, int and float, exactly (2**63 - 1 is
 * not 9.223372036854775807e18), and NaN equal to nothing. */
static bool number_equal(const mp_value *a, const mp_value *b) {
    if (a->type == MP_VALUE_FLOAT && b->type == MP_VALUE_FLOAT) return a->u.f == b->u.f;
    int64_t x, y;
    return number_as_int(a, &x) && number_as_int(b, &y) && x == y;
}

/* A hash that agrees with key_equal: numbers that compare equal hash alike. Inside
 * an object (compared by mp_value_equal, where NaN equals NaN) every NaN hashes alike. */
static uint64_t key_hash_in(const mp_value *v, unsigned depth, bool in_object) {
    uint64_t h = FNV_OFFSET ^ hash_seed();
    if (is_number(v)) {
        int64_t i;
        if (number_as_int(v, &i)) return fnv(fnv(h, "i", 1), &i, sizeof i);
        if (isnan(v->u.f)) {
            /* A NaN key equals only itself, so it may hash by identity (as in Python
             * 3.10+): many NaN keys then spread instead of all colliding. */
            uintptr_t id = in_object ? 0 : (uintptr_t)v;
            return fnv(fnv(h, "n", 1), &id, sizeof id);
        }
        return fnv(fnv(h, "f", 1), &v->u.f, sizeof v->u.f);
    }
    h = fnv(h, &v->type, 1);
    switch (v->type) {
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        return fnv(h, v->u.s.p, v->u.s.n);
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        h = fnv(h, &v->u.seq.n, sizeof v->u.seq.n);
        if (depth >= MP_VALUE_MAX_DEPTH) return h;
        for (size_t i = 0; i < v->u.seq.n; i++) {
            uint64_t c = key_hash_in(v->u.seq.items[i], depth + 1, in_object);
            h = fnv(h, &c, sizeof c);
        }
        return h;
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET: {
        /* in any order: equal sets may hold their items in different orders */
        uint64_t sum = 0;
        if (depth < MP_VALUE_MAX_DEPTH)
            for (size_t i = 0; i < v->u.d.n; i++)
                sum += mix(key_hash_in(v->u.d.kv[i], depth + 1, in_object));
        return fnv(fnv(h, &v->u.d.n, sizeof v->u.d.n), &sum, sizeof sum);
    }
    case MP_VALUE_DICT:
        return fnv(h, &v->u.d.n, sizeof v->u.d.n); /* never a key */
    case MP_VALUE_OBJECT: {
        /* the args too, so that keys like date(2020, 1, n) do not all collide */
        const char *name = mp__obj_name(v);
        h = fnv(h, v->u.o.module, (size_t)(name - v->u.o.module) + strlen(name));
        if (!v->u.o.args || depth >= MP_VALUE_MAX_DEPTH) return h;
        uint64_t c = key_hash_in(v->u.o.args, depth + 1, true);
        return fnv(h, &c, sizeof c);
    }
    default:
        return h;
    }
}

static uint64_t key_hash(const mp_value *v, unsigned depth) { return key_hash_in(v, depth, false); }

/* mp_value_equal: deep, types strict, containers in order. */
static bool equal_rec(const mp_value *a, const mp_value *b, unsigned depth) {
    if (a == b) return true;
    if (!a || !b || a->type != b->type) return false;
    if (depth > RECURSION_MAX) return false;
    switch (a->type) {
    case MP_VALUE_NONE:
        return true;
    case MP_VALUE_BOOL:
        return a->u.b == b->u.b;
    case MP_VALUE_INT:
        return a->u.i == b->u.i;
    case MP_VALUE_FLOAT:
        return a->u.f == b->u.f || (isnan(a->u.f) && isnan(b->u.f));
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        if (a->u.seq.n != b->u.seq.n) return false;
        for (size_t i = 0; i < a->u.seq.n; i++)
            if (!equal_rec(a->u.seq.items[i], b->u.seq.items[i], depth + 1)) return false;
        return true;
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        if (a->u.d.n != b->u.d.n) return false;
        for (size_t i = 0; i < stride(a) * a->u.d.n; i++)
            if (!equal_rec(a->u.d.kv[i], b->u.d.kv[i], depth + 1)) return false;
        return true;
    case MP_VALUE_OBJECT:
        return strcmp(a->u.o.module, b->u.o.module) == 0 &&
               strcmp(mp__obj_name(a), mp__obj_name(b)) == 0 && a->u.o.newobj == b->u.o.newobj &&
               equal_rec(a->u.o.args, b->u.o.args, depth + 1) &&
               equal_rec(a->u.o.state, b->u.o.state, depth + 1) &&
               equal_rec(a->u.o.items, b->u.o.items, depth + 1) &&
               equal_rec(a->u.o.ditems, b->u.o.ditems, depth + 1);
    default:
        return false;
    }
}

bool mp_value_equal(const mp_value *a, const mp_value *b) { return equal_rec(a, b, 0); }

static size_t table_find(const mp_value *t, const mp_value *key, uint64_t h, unsigned depth);

/* Python's == where dict keys and set items meet: numbers by value, tuples item by
 * item, sets as sets (any order); anything else as mp_value_equal. */
static bool key_equal(const mp_value *a, const mp_value *b, unsigned depth) {
    if (a == b) return true; /* Python too: identity first (a NaN key finds itself) */
    if (depth > RECURSION_MAX) return false;
    if (is_number(a) || is_number(b)) return is_number(a) && is_number(b) && number_equal(a, b);
    if (a->type != b->type) return false;
    switch (a->type) {
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        if (a->u.seq.n != b->u.seq.n) return false;
        for (size_t i = 0; i < a->u.seq.n; i++)
            if (!key_equal(a->u.seq.items[i], b->u.seq.items[i], depth + 1)) return false;
        return true;
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        /* items are unique, so the same count and each of a in b is equality */
        if (a->u.d.n != b->u.d.n) return false;
        for (size_t i = 0; i < a->u.d.n; i++) {
            const mp_value *x = a->u.d.kv[i];
            uint64_t h = b->u.d.index ? key_hash(x, depth + 1) : 0;
            if (table_find(b, x, h, depth + 1) == SIZE_MAX) return false;
        }
        return true;
    default:
        return equal_rec(a, b, depth);
    }
}

static bool hashable_rec(const mp_value *v, unsigned depth, const mp_value **bad) {
    switch (v->type) {
    case MP_VALUE_LIST:
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
        *bad = v;
        return false;
    case MP_VALUE_TUPLE:
        for (size_t i = 0; i < v->u.seq.n && depth < RECURSION_MAX; i++)
            if (!hashable_rec(v->u.seq.items[i], depth + 1, bad)) return false;
        return true;
    case MP_VALUE_FROZENSET:
        for (size_t i = 0; i < v->u.d.n && depth < RECURSION_MAX; i++)
            if (!hashable_rec(v->u.d.kv[i], depth + 1, bad)) return false;
        return true;
    default:
        return true; /* an object: only Python can tell, so it may try */
    }
}

bool mp__value_hashable(const mp_value *v, const mp_value **bad) {
    *bad = NULL;
    return hashable_rec(v, 0, bad);
}

/* ---- dicts and sets ---- */

/* Small tables are scanned; from this many entries on they carry a hash index. */
#define DICT_INDEX_MIN 8

static size_t table_find(const mp_value *t, const mp_value *key, uint64_t h, unsigned depth) {
    if (!t->u.d.index) {
        for (size_t i = 0; i < t->u.d.n; i++)
            if (key_equal(table_key(t, i), key, depth)) return i;
        return SIZE_MAX;
    }
    size_t mask = t->u.d.icap - 1;
    for (size_t j = (size_t)h & mask;; j = (j + 1) & mask) {
        uint32_t e = t->u.d.index[j];
        if (!e) return SIZE_MAX;
        if (key_equal(table_key(t, e - 1), key, depth)) return e - 1;
    }
}

static void index_insert(mp_value *t, size_t entry, uint64_t h) {
    size_t mask = t->u.d.icap - 1;
    size_t j = (size_t)h & mask;
    while (t->u.d.index[j]) j = (j + 1) & mask;
    t->u.d.index[j] = (uint32_t)(entry + 1);
}

/* Rebuilds the index with room for need entries at load <= 1/2. */
static int index_rebuild(mp_value *t, size_t need) {
    size_t icap = 16;
    while (icap < 2 * need) {
        if (icap > SIZE_MAX / 4 / sizeof(uint32_t)) return mp__err(MP_ENOMEM, "dict too big");
        icap *= 2;
    }
    uint32_t *index = mp__calloc(icap, sizeof *index);
    if (!index)
        return mp__err(MP_ENOMEM, "out of memory indexing a %s of %zu",
                       mp_value_type_name((mp_value_type)t->type), need);
    mp__free(t->u.d.index);
    t->u.d.index = index;
    t->u.d.icap = icap;
    for (size_t i = 0; i < t->u.d.n; i++) index_insert(t, i, key_hash(table_key(t, i), 0));
    return 0;
}

/* Puts key (and val, for a dict) in table t; an equal key found: *dup = key, and a
 * dict's value is replaced (*old_val), as Python keeps the first key. */
static int table_put(mp_value *t, mp_value *key, mp_value *val, mp_value **dup,
                     mp_value **old_val) {
    size_t st = stride(t);
    *dup = *old_val = NULL;
    uint64_t h = t->u.d.index || t->u.d.n + 1 >= DICT_INDEX_MIN ? key_hash(key, 0) : 0;
    size_t at = table_find(t, key, h, 0);
    if (at != SIZE_MAX) {
        *dup = key;
        if (st == 2) {
            *old_val = t->u.d.kv[2 * at + 1];
            t->u.d.kv[2 * at + 1] = val;
        }
        return 0;
    }
    const char *what = mp_value_type_name((mp_value_type)t->type);
    if (t->u.d.n >= UINT32_MAX - 1) return mp__err(MP_ENOMEM, "%s too big", what);
    if (t->u.d.n == t->u.d.cap) {
        size_t cap = t->u.d.cap ? t->u.d.cap * 2 : 4;
        if (cap > SIZE_MAX / (st * sizeof(mp_value *)))
            return mp__err(MP_ENOMEM, "%s too big", what);
        mp_value **kv = mp__realloc(t->u.d.kv, st * cap * sizeof *kv);
        if (!kv) return mp__err(MP_ENOMEM, "out of memory growing a %s to %zu entries", what, cap);
        t->u.d.kv = kv;
        t->u.d.cap = cap;
    }
    if (t->u.d.n + 1 >= DICT_INDEX_MIN && 2 * (t->u.d.n + 1) > t->u.d.icap) {
        int rc = index_rebuild(t, t->u.d.n + 1);
        if (rc) return rc;
    }
    size_t i = t->u.d.n++;
    t->u.d.kv[st * i] = key;
    if (st == 2) t->u.d.kv[st * i + 1] = val;
    if (t->u.d.index) index_insert(t, i, h);
    return 0;
}

int mp__value_dict_put(mp_value *d, mp_value *key, mp_value *val, mp_value **old_key,
                       mp_value **old_val) {
    return table_put(d, key, val, old_key, old_val);
}

int mp__value_set_put(mp_value *s, mp_value *item, mp_value **dup) {
    mp_value *unused;
    return table_put(s, item, NULL, dup, &unused);
}

/* MP_EINVAL naming the unhashable part of key, as Python's TypeError does. */
static int unhashable(const char *fn, const mp_value *key) {
    const mp_value *bad;
    if (mp__value_hashable(key, &bad)) return 0;
    return mp__err(MP_EINVAL, "%s: unhashable type: '%s'%s", fn,
                   mp_value_type_name((mp_value_type)bad->type),
                   bad == key ? "" : " (inside the key)");
}

int mp_value_dict_set(mp_value *dict, mp_value *key, mp_value *val) {
    int rc;
    if (dict && dict->type == MP_VALUE_OBJECT) {
        if (!dict->u.o.ditems && !(dict->u.o.ditems = mp_value_dict_new())) {
            rc = MP_ENOMEM;
            goto fail;
        }
        dict = dict->u.o.ditems;
    }
    if (!dict || dict->type != MP_VALUE_DICT) {
        rc = mp__err(MP_EINVAL, "mp_value_dict_set: not a dict");
        goto fail;
    }
    if (!key || !val) {
        rc = mp__err(MP_ENOMEM, "mp_value_dict_set: NULL key or value (a failed constructor?)");
        goto fail;
    }
    if ((rc = unhashable("mp_value_dict_set", key)) != 0) goto fail;
    mp_value *ok, *ov;
    rc = mp__value_dict_put(dict, key, val, &ok, &ov);
    if (rc) goto fail;
    mp_value_free(ok);
    mp_value_free(ov);
    return 0;
fail:
    mp_value_free(key);
    mp_value_free(val);
    return rc;
}

int mp_value_dict_set_str(mp_value *dict, const char *key, mp_value *val) {
    if (!key) {
        mp_value_free(val);
        return mp__err(MP_EINVAL, "mp_value_dict_set_str: NULL key");
    }
    return mp_value_dict_set(dict, mp_value_str(key), val);
}

int mp_value_set_add(mp_value *set, mp_value *item) {
    int rc;
    if (!set || !is_set(set)) {
        rc = mp__err(MP_EINVAL, "mp_value_set_add: not a set or frozenset");
        goto fail;
    }
    if (!item) return mp__err(MP_ENOMEM, "mp_value_set_add: NULL item (a failed constructor?)");
    if ((rc = unhashable("mp_value_set_add", item)) != 0) goto fail;
    mp_value *dup;
    if ((rc = mp__value_set_put(set, item, &dup)) != 0) goto fail;
    mp_value_free(dup);
    return 0;
fail:
    mp_value_free(item);
    return rc;
}

int mp_value_object_set_state(mp_value *obj, mp_value *state) {
    if (!obj || obj->type != MP_VALUE_OBJECT) {
        mp_value_free(state);
        return mp__err(MP_EINVAL, "mp_value_object_set_state: not an object");
    }
    if (!state) return mp__err(MP_ENOMEM, "mp_value_object_set_state: NULL state");
    mp_value_free(obj->u.o.state);
    obj->u.o.state = state;
    return 0;
}

/* The entry of key in table t, or SIZE_MAX; never found for a key Python cannot hash. */
static size_t lookup(const mp_value *t, const mp_value *key) {
    const mp_value *bad;
    if (!mp__value_hashable(key, &bad)) return SIZE_MAX;
    return table_find(t, key, t->u.d.index ? key_hash(key, 0) : 0, 0);
}

int mp__value_dict_take(mp_value *d, const mp_value *key, mp_value **old_key, mp_value **old_val) {
    *old_key = *old_val = NULL;
    if (!d || d->type != MP_VALUE_DICT || !key) return 0;
    size_t at = lookup(d, key);
    if (at == SIZE_MAX) return 0;
    *old_key = d->u.d.kv[2 * at];
    *old_val = d->u.d.kv[2 * at + 1];
    memmove(&d->u.d.kv[2 * at], &d->u.d.kv[2 * at + 2],
            2 * (d->u.d.n - at - 1) * sizeof *d->u.d.kv);
    d->u.d.n--;
    if (d->u.d.index) {
        /* Entries after it moved down one: the index is remade (in place: its size fits). */
        memset(d->u.d.index, 0, d->u.d.icap * sizeof *d->u.d.index);
        for (size_t i = 0; i < d->u.d.n; i++) index_insert(d, i, key_hash(table_key(d, i), 0));
    }
    return 1;
}

bool mp_value_set_contains(const mp_value *s, const mp_value *item) {
    return s && item && is_set(s) && lookup(s, item) != SIZE_MAX;
}

mp_value *mp_value_dict_get(const mp_value *d, const mp_value *key) {
    if (!d || d->type != MP_VALUE_DICT || !key) return NULL;
    size_t at = lookup(d, key);
    return at == SIZE_MAX ? NULL : d->u.d.kv[2 * at + 1];
}

mp_value *mp_value_dict_get_str(const mp_value *d, const char *key) {
    if (!d || d->type != MP_VALUE_DICT || !key) return NULL;
    mp_value k = {.type = MP_VALUE_STR};
    k.u.s.p = (char *)key;
    k.u.s.n = strlen(key);
    return mp_value_dict_get(d, &k);
}

mp_value *mp_value_dict_get_int(const mp_value *d, int64_t key) {
    mp_value k = {.type = MP_VALUE_INT};
    k.u.i = key;
    return mp_value_dict_get(d, &k);
}

/* ---- copies ---- */

static mp_value *copy_rec(const mp_value *v, unsigned depth, size_t *items, size_t *bytes,
                          int *err) {
    if (depth > RECURSION_MAX) {
        *err = mp__err(MP_ETOOBIG, "value nested deeper than %d", MP_VALUE_MAX_DEPTH);
        return NULL;
    }
    if (*items == 0) {
        *err = mp__err(MP_ETOOBIG, "too many values (memo copies count too)");
        return NULL;
    }
    (*items)--;
    mp_value *c = NULL;
    switch (v->type) {
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        if (v->u.s.n > *bytes) {
            *err = mp__err(MP_ETOOBIG, "decoded str/bytes exceed the size limit");
            return NULL;
        }
        *bytes -= v->u.s.n;
        c = new_blob((mp_value_type)v->type, v->u.s.p, v->u.s.n);
        break;
    case MP_VALUE_OBJECT:
        c = mp_value_object_new(v->u.o.module, mp__obj_name(v), NULL);
        if (!c) break;
        c->u.o.newobj = v->u.o.newobj;
        if (v->u.o.args && !(c->u.o.args = copy_rec(v->u.o.args, depth + 1, items, bytes, err)))
            goto fail;
        if (v->u.o.state && !(c->u.o.state = copy_rec(v->u.o.state, depth + 1, items, bytes, err)))
            goto fail;
        if (v->u.o.items && !(c->u.o.items = copy_rec(v->u.o.items, depth + 1, items, bytes, err)))
            goto fail;
        if (v->u.o.ditems &&
            !(c->u.o.ditems = copy_rec(v->u.o.ditems, depth + 1, items, bytes, err)))
            goto fail;
        break;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        c = mp__value_alloc((mp_value_type)v->type);
        if (!c) break;
        if (v->u.seq.n) {
            c->u.seq.items = mp__malloc(v->u.seq.n * sizeof *c->u.seq.items);
            if (!c->u.seq.items) {
                *err = mp__err(MP_ENOMEM, "out of memory copying a sequence");
                goto fail;
            }
            c->u.seq.cap = v->u.seq.n;
        }
        for (size_t i = 0; i < v->u.seq.n; i++) {
            mp_value *it = copy_rec(v->u.seq.items[i], depth + 1, items, bytes, err);
            if (!it) goto fail;
            c->u.seq.items[c->u.seq.n++] = it;
        }
        break;
    case MP_VALUE_DICT:
        c = mp__value_alloc(MP_VALUE_DICT);
        if (!c) break;
        for (size_t i = 0; i < v->u.d.n; i++) {
            mp_value *k = copy_rec(v->u.d.kv[2 * i], depth + 1, items, bytes, err);
            if (!k) goto fail;
            mp_value *x = copy_rec(v->u.d.kv[2 * i + 1], depth + 1, items, bytes, err);
            mp_value *ok, *ov;
            if (!x || (*err = mp__value_dict_put(c, k, x, &ok, &ov)) != 0) {
                mp_value_free(k);
                mp_value_free(x);
                goto fail;
            }
            /* keys of the source are distinct: nothing is let go, unless a key was
             * changed after it went in */
            mp_value_free(ok);
            mp_value_free(ov);
        }
        break;
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        c = mp__value_alloc((mp_value_type)v->type);
        if (!c) break;
        for (size_t i = 0; i < v->u.d.n; i++) {
            mp_value *it = copy_rec(v->u.d.kv[i], depth + 1, items, bytes, err), *dup;
            if (!it || (*err = mp__value_set_put(c, it, &dup)) != 0) {
                mp_value_free(it);
                goto fail;
            }
            mp_value_free(dup);
        }
        break;
    default:
        c = mp__value_alloc((mp_value_type)v->type);
        if (c) c->u = v->u;
        break;
    }
    if (!c) {
        *err = MP_ENOMEM;
        return NULL;
    }
    c->height = v->height;
    return c;
fail:
    mp_value_free(c);
    if (!*err) *err = MP_ENOMEM;
    return NULL;
}

void mp__value_measure(const mp_value *v, size_t *values, size_t *payload, size_t *names) {
    /* recursive as copy_rec is: the decoder measures only what its depth bound let in */
    (*values)++;
    switch (v->type) {
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        *payload += v->u.s.n;
        break;
    case MP_VALUE_OBJECT:
        *names += strlen(v->u.o.module) + strlen(mp__obj_name(v)) + 2;
        if (v->u.o.args) mp__value_measure(v->u.o.args, values, payload, names);
        if (v->u.o.state) mp__value_measure(v->u.o.state, values, payload, names);
        if (v->u.o.items) mp__value_measure(v->u.o.items, values, payload, names);
        if (v->u.o.ditems) mp__value_measure(v->u.o.ditems, values, payload, names);
        break;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        for (size_t i = 0; i < v->u.seq.n; i++)
            mp__value_measure(v->u.seq.items[i], values, payload, names);
        break;
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        for (size_t i = 0; i < v->u.d.n * stride(v); i++)
            mp__value_measure(v->u.d.kv[i], values, payload, names);
        break;
    default:
        break;
    }
}

mp_value *mp_value_copy(const mp_value *v) {
    if (!v) return NULL;
    size_t items = SIZE_MAX, bytes = SIZE_MAX;
    int err = 0;
    return copy_rec(v, 0, &items, &bytes, &err);
}

/* ---- accessors ---- */

mp_value_type mp_value_get_type(const mp_value *v) {
    return v ? (mp_value_type)v->type : MP_VALUE_NONE;
}

const char *mp_value_type_name(mp_value_type t) {
    switch (t) {
    case MP_VALUE_NONE:
        return "NoneType";
    case MP_VALUE_BOOL:
        return "bool";
    case MP_VALUE_INT:
        return "int";
    case MP_VALUE_FLOAT:
        return "float";
    case MP_VALUE_STR:
        return "str";
    case MP_VALUE_BYTES:
        return "bytes";
    case MP_VALUE_TUPLE:
        return "tuple";
    case MP_VALUE_LIST:
        return "list";
    case MP_VALUE_DICT:
        return "dict";
    case MP_VALUE_OBJECT:
        return "object";
    case MP_VALUE_SET:
        return "set";
    case MP_VALUE_FROZENSET:
        return "frozenset";
    default:
        return "unknown";
    }
}

int64_t mp_value_as_int(const mp_value *v) {
    if (!v) return 0;
    if (v->type == MP_VALUE_INT) return v->u.i;
    if (v->type == MP_VALUE_BOOL) return v->u.b;
    return 0;
}

double mp_value_as_float(const mp_value *v) {
    if (!v) return 0.0;
    if (v->type == MP_VALUE_FLOAT) return v->u.f;
    if (v->type == MP_VALUE_INT) return (double)v->u.i;
    if (v->type == MP_VALUE_BOOL) return v->u.b;
    return 0.0;
}

bool mp_value_as_bool(const mp_value *v) {
    if (!v) return false;
    switch (v->type) {
    case MP_VALUE_NONE:
        return false;
    case MP_VALUE_BOOL:
        return v->u.b;
    case MP_VALUE_INT:
        return v->u.i != 0;
    case MP_VALUE_FLOAT:
        return v->u.f != 0.0;
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        return v->u.s.n != 0;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        return v->u.seq.n != 0;
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        return v->u.d.n != 0;
    default:
        return true;
    }
}

const char *mp_value_as_str(const mp_value *v, size_t *len) {
    bool ok = v && v->type == MP_VALUE_STR;
    if (len) *len = ok ? v->u.s.n : 0;
    return ok ? v->u.s.p : NULL;
}

const void *mp_value_as_bytes(const mp_value *v, size_t *len) {
    bool ok = v && v->type == MP_VALUE_BYTES;
    if (len) *len = ok ? v->u.s.n : 0;
    return ok ? v->u.s.p : NULL;
}

size_t mp_value_len(const mp_value *v) {
    if (!v) return 0;
    switch (v->type) {
    case MP_VALUE_STR:
    case MP_VALUE_BYTES:
        return v->u.s.n;
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
        return v->u.seq.n;
    case MP_VALUE_DICT:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET:
        return v->u.d.n;
    default:
        return 0;
    }
}

mp_value *mp_value_item(const mp_value *v, size_t i) {
    if (v && is_set(v)) return i < v->u.d.n ? v->u.d.kv[i] : NULL;
    if (!v || (v->type != MP_VALUE_TUPLE && v->type != MP_VALUE_LIST) || i >= v->u.seq.n)
        return NULL;
    return v->u.seq.items[i];
}

mp_value *mp_value_dict_key(const mp_value *d, size_t i) {
    if (!d || d->type != MP_VALUE_DICT || i >= d->u.d.n) return NULL;
    return d->u.d.kv[2 * i];
}

mp_value *mp_value_dict_value(const mp_value *d, size_t i) {
    if (!d || d->type != MP_VALUE_DICT || i >= d->u.d.n) return NULL;
    return d->u.d.kv[2 * i + 1];
}

const char *mp_value_object_module(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT ? v->u.o.module : NULL;
}

const char *mp_value_object_name(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT ? mp__obj_name(v) : NULL;
}

mp_value *mp_value_object_args(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT ? v->u.o.args : NULL;
}

mp_value *mp_value_object_state(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT ? v->u.o.state : NULL;
}

mp_value *mp_value_object_listitems(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT ? v->u.o.items : NULL;
}

mp_value *mp_value_object_dictitems(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT ? v->u.o.ditems : NULL;
}

bool mp_value_object_is_newobj(const mp_value *v) {
    return v && v->type == MP_VALUE_OBJECT && v->u.o.newobj;
}

/* Well-formed UTF-8: no overlongs, nothing above U+10FFFF, and encoded surrogates
 * U+D800..U+DFFF only when surrogates is set (CPython pickles lone surrogates that way
 * and reads them back with "surrogatepass"; its plain "utf-8" codec refuses them). */
static bool utf8_valid(const char *s, size_t n, bool surrogates) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF) return false;
        if (!surrogates && cp >= 0xD800 && cp <= 0xDFFF) return false;
        i += len;
    }
    return true;
}

bool mp__utf8_valid(const char *s, size_t n) { return utf8_valid(s, n, true); }

bool mp__utf8_valid_strict(const char *s, size_t n) { return utf8_valid(s, n, false); }
