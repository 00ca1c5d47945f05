/* The start-method registry and the choke point through which the core calls a
 * backend. A context is a registry slot that holds its backend's ops; the global start
 * method is one of them. Backends are registered at run time (mp_init registers the
 * build's own; tests add a fault-injecting one), so the core never names a backend. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define MAX_BACKENDS 16
#define MAX_ALIASES 8

struct mp_context {
    const struct mp_backend_ops *ops;
    bool removed; /* unregistered: still a valid context, no longer found by name */
};

/* Under mp__lock. Slots are never reused, so a context pointer stays valid. */
static struct mp_context g_slots[MAX_BACKENDS];
static size_t g_nslots;
static struct mp_context *g_order[MAX_BACKENDS]; /* registered, default first */
static size_t g_norder;
static struct {
    char name[32];
    const struct mp_backend_ops *target;
} g_alias[MAX_ALIASES];
static size_t g_nalias;
static const char *g_names[MAX_BACKENDS + 1]; /* mp_get_all_start_methods */
static const struct mp_backend_ops *g_method; /* the global start method; NULL = unset */
/* A dummy child (a thread) has the start method that made it, as any child does. */
static MP__THREAD_LOCAL const struct mp_backend_ops *t_method;

static const struct mp_backend_ops *find_locked(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < g_norder; i++)
        if (strcmp(g_order[i]->ops->name, name) == 0) return g_order[i]->ops;
    for (size_t i = 0; i < g_nalias; i++)
        if (strcmp(g_alias[i].name, name) == 0) return g_alias[i].target;
    return NULL;
}

static void names_locked(void) {
    for (size_t i = 0; i < g_norder; i++) g_names[i] = g_order[i]->ops->name;
    g_names[g_norder] = NULL;
}

int mp__backend_register(const struct mp_backend_ops *ops, bool make_default) {
    if (!ops || !ops->name || !ops->name[0])
        return mp__err(MP_EINVAL, "backend register: no ops or no name");
    if (ops->version != MP_BACKEND_OPS_VERSION)
        return mp__err(MP_EINVAL,
                       "backend register: '%s' has ops version %d, this library needs %d",
                       ops->name, ops->version, MP_BACKEND_OPS_VERSION);
    if (!ops->start || !ops->wait || !ops->release)
        return mp__err(MP_EINVAL,
                       "backend register: '%s' lacks a required slot (start, wait, release)",
                       ops->name);
    if (strlen(ops->name) >= sizeof g_alias[0].name)
        return mp__err(MP_EINVAL, "backend register: name '%s' is too long", ops->name);
    int rc = 0;
    mp__lock();
    if (find_locked(ops->name)) {
        rc = mp__err(MP_EEXIST, "backend register: a start method '%s' exists already", ops->name);
    } else {
        /* The same ops registered again revive their slot: contexts handed out stay
         * the ones in use. */
        struct mp_context *c = NULL;
        for (size_t i = 0; i < g_nslots && !c; i++)
            if (g_slots[i].ops == ops) c = &g_slots[i];
        if (!c && g_nslots == MAX_BACKENDS) {
            rc = mp__err(MP_EFULL, "backend register: %d start methods at most", MAX_BACKENDS);
            goto out;
        }
        if (!c) c = &g_slots[g_nslots++];
        c->ops = ops;
        c->removed = false;
        if (make_default) {
            memmove(g_order + 1, g_order, g_norder * sizeof *g_order);
            g_order[0] = c;
        } else {
            g_order[g_norder] = c;
        }
        g_norder++;
        names_locked();
    }
out:
    mp__unlock();
    return rc;
}

int mp__backend_unregister(const struct mp_backend_ops *ops) {
    int rc = mp__err(MP_ENOENT, "backend unregister: not registered");
    mp__lock();
    for (size_t i = 0; i < g_norder; i++) {
        if (g_order[i]->ops != ops) continue;
        g_order[i]->removed = true;
        memmove(g_order + i, g_order + i + 1, (g_norder - i - 1) * sizeof *g_order);
        g_norder--;
        names_locked();
        if (g_method == ops) g_method = NULL;
        for (size_t a = 0; a < g_nalias; a++)
            if (g_alias[a].target == ops) g_alias[a--] = g_alias[--g_nalias];
        rc = 0;
        break;
    }
    mp__unlock();
    return rc;
}

int mp__backend_alias(const char *alias, const char *target) {
    if (!alias || !target || strlen(alias) >= sizeof g_alias[0].name)
        return mp__err(MP_EINVAL, "backend alias: bad name");
    int rc = 0;
    mp__lock();
    const struct mp_backend_ops *ops = find_locked(target);
    if (!ops)
        rc = mp__err(MP_ENOENT, "backend alias: no start method '%s'", target);
    else if (find_locked(alias))
        rc = mp__err(MP_EEXIST, "backend alias: '%s' names a start method already", alias);
    else if (g_nalias == MAX_ALIASES)
        rc = mp__err(MP_EFULL, "backend alias: %d aliases at most", MAX_ALIASES);
    else {
        snprintf(g_alias[g_nalias].name, sizeof g_alias[0].name, "%s", alias);
        g_alias[g_nalias++].target = ops;
    }
    mp__unlock();
    return rc;
}

const struct mp_backend_ops *mp__backend_find(const char *name) {
    mp__lock();
    const struct mp_backend_ops *ops = find_locked(name);
    mp__unlock();
    return ops;
}

mp_context *mp__backend_context(const struct mp_backend_ops *ops) {
    mp_context *c = NULL;
    mp__lock();
    for (size_t i = 0; ops && i < g_nslots && !c; i++)
        if (g_slots[i].ops == ops) c = &g_slots[i];
    mp__unlock();
    return c;
}

const struct mp_backend_ops *mp__context_ops(const mp_context *ctx) {
    return ctx ? ctx->ops : NULL;
}

/* ---- the global start method and contexts (Python's DefaultContext) ---- */

static const struct mp_backend_ops *default_locked(void) {
    const char *env = getenv("MP_START_METHOD");
    if (env && *env) {
        const struct mp_backend_ops *ops = find_locked(env);
        if (ops) return ops;
        fprintf(stderr,
                "multiproc: MP_START_METHOD=%s is not a start method here; using the default\n",
                env);
    }
    return g_norder ? g_order[0]->ops : NULL;
}

static int none_registered(const char *fn) {
    return mp__err(MP_ESTATE, "%s: no start method is registered (call mp_init first)", fn);
}

const char *mp_get_start_method(bool allow_none) {
    if (t_method) return t_method->name;
    mp__lock();
    if (!g_method && !allow_none) g_method = default_locked();
    const char *name = g_method ? g_method->name : NULL;
    mp__unlock();
    return name;
}

int mp_set_start_method(const char *name, bool force) {
    const struct mp_backend_ops *ops = NULL;
    if (!name && !force)
        return mp__err(MP_EINVAL, "mp_set_start_method: name is NULL (pass force to unset)");
    int rc = 0;
    mp__lock();
    if (name && !(ops = find_locked(name)))
        rc = g_norder
                 ? mp__err(MP_EINVAL, "mp_set_start_method: cannot find context for '%s'", name)
                 : none_registered("mp_set_start_method");
    else if (g_method && !force)
        rc = mp__err(MP_ESTATE, "mp_set_start_method: context has already been set");
    else
        g_method = ops;
    mp__unlock();
    return rc;
}

void mp__backend_set_inherited(const char *name, bool thread) {
    if (thread) {
        t_method = name ? mp__backend_find(name) : NULL;
        return;
    }
    mp__lock();
    g_method = find_locked(name);
    mp__unlock();
}

mp_context *mp__context_default(void) {
    if (t_method) return mp__backend_context(t_method);
    mp__lock();
    if (!g_method) g_method = default_locked();
    const struct mp_backend_ops *ops = g_method;
    mp__unlock();
    if (!ops) {
        none_registered("mp_get_context");
        return NULL;
    }
    return mp__backend_context(ops);
}

mp_context *mp_get_context(const char *name) {
    if (!name) return mp__context_default();
    const struct mp_backend_ops *ops = mp__backend_find(name);
    if (ops) return mp__backend_context(ops);
    mp__lock();
    size_t n = g_norder;
    mp__unlock();
    if (!n)
        none_registered("mp_get_context");
    else
        mp__err(MP_EINVAL, "mp_get_context: cannot find context for '%s'", name);
    return NULL;
}

const char *mp_context_name(const mp_context *ctx) { return ctx ? ctx->ops->name : NULL; }

const char *const *mp_get_all_start_methods(void) { return g_names; }

/* ---- the choke point ---- */

static int check(const struct mp_backend_ops *ops, const char *slot) {
    if (!ops) return mp__err(MP_EINVAL, "%s: no start method", slot);
    if (ops->version != MP_BACKEND_OPS_VERSION)
        return mp__err(MP_EINVAL, "%s: start method '%s' has ops version %d, this library needs %d",
                       slot, ops->name, ops->version, MP_BACKEND_OPS_VERSION);
    return 0;
}

int mp__backend_start(const struct mp_backend_ops *ops, const mp__start_req *req,
                      mp__started *out) {
    int rc = check(ops, "start");
    if (rc) return rc;
    if (!ops->start)
        return mp__err(MP_ENOTSUP, "start method '%s' cannot start processes", ops->name);
    mp__started st = {0, MP_INVALID_OS_HANDLE, NULL};
    rc = ops->start(req, &st);
    if (rc) return rc;
    *out = st;
    return 0;
}

int mp__backend_wait(const struct mp_backend_ops *ops, void *state, double timeout, int *exitcode) {
    int rc = check(ops, "wait");
    if (rc) return rc;
    if (!ops->wait)
        return mp__err(MP_ENOTSUP, "start method '%s' cannot wait for a process", ops->name);
    return ops->wait(state, timeout, exitcode);
}

int mp__backend_signal(const struct mp_backend_ops *ops, void *state, int sig) {
    int rc = check(ops, "signal");
    if (rc) return rc;
    if (!ops->signal)
        return mp__err(MP_ENOTSUP, "start method '%s' cannot signal a process", ops->name);
    return ops->signal(state, sig);
}

void mp__backend_release(const struct mp_backend_ops *ops, void *state) {
    if (check(ops, "release") == 0 && ops->release) ops->release(state);
}

int mp__backend_child_main(const struct mp_backend_ops *ops, int argc, char **argv) {
    int rc = check(ops, "child");
    if (rc) return rc;
    if (!ops->child_main)
        return mp__err(MP_ENOTSUP, "start method '%s' starts no exec'd children", ops->name);
    return ops->child_main(argc, argv);
}

void mp__backend_shutdown_all(void) {
    const struct mp_backend_ops *list[MAX_BACKENDS];
    size_t n = 0;
    mp__lock();
    for (size_t i = 0; i < g_norder; i++) list[n++] = g_order[i]->ops;
    mp__unlock();
    for (size_t i = 0; i < n; i++)
        if (list[i]->version == MP_BACKEND_OPS_VERSION && list[i]->shutdown) list[i]->shutdown();
}
