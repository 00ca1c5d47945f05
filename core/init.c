/* mp_init, start-method selection, contexts and process-wide settings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os.h"
#include "../backends/backend.h"

static bool g_inited;
static const struct mp_backend_ops *g_method; /* the global start method; NULL = unset */
static char *g_executable;
static char **g_preload;
static unsigned char g_authkey[32];

void mp__shutdown(void) {
    mp__process_cleanup_children();
    for (const struct mp_backend_ops *const *b = mp__backend_all(); *b; b++)
        if ((*b)->shutdown) (*b)->shutdown();
}

static void mp__atexit(void) { mp__shutdown(); }

static int lib_init(void) {
    if (g_inited) return 0;
    mp__lock();
    int rc = 0;
    if (!g_inited) {
        rc = mp__os_init();
        if (!rc) rc = mp__os_random(g_authkey, sizeof g_authkey);
        if (!rc) {
            atexit(mp__atexit);
            g_inited = true;
        }
    }
    mp__unlock();
    return rc;
}

int mp_init(int *argc, char ***argv) {
    int rc = lib_init();
    if (rc) return rc;
    if (!argc || !argv || !*argv || *argc < 3 || strcmp((*argv)[1], "--mp-child") != 0) return 0;
    /* We are a child an exec-based backend started: it runs the target and exits. */
    const struct mp_backend_ops *ops = mp__backend_find((*argv)[2]);
    if (!ops || !ops->child_main) {
        fprintf(stderr, "multiproc: unknown child start method '%s'\n", (*argv)[2]);
        mp__os_exit(1);
    }
    rc = ops->child_main(*argc, *argv);
    fprintf(stderr, "multiproc: %s child failed to start: %s\n", ops->name,
            mp_last_error_message()[0] ? mp_last_error_message() : mp_strerror(rc));
    mp__os_exit(1);
    return rc;
}

/* A child learns the launch's authkey; mp__child_run calls this through begin. */
const unsigned char *mp__authkey(void) {
    lib_init();
    return g_authkey;
}

void mp__set_authkey(const unsigned char key[32]) {
    lib_init();
    memcpy(g_authkey, key, sizeof g_authkey);
}

mp_context *mp_get_context(const char *name) {
    if (lib_init()) return NULL;
    if (!name) {
        name = mp_get_start_method(false);
        if (!name) return NULL;
    }
    const struct mp_backend_ops *ops = mp__backend_find(name);
    if (!ops) {
        mp__err(MP_EINVAL, "mp_get_context: cannot find context for '%s'", name);
        return NULL;
    }
    return mp__backend_context(ops);
}

const char *mp_context_name(const mp_context *ctx) {
    for (const struct mp_backend_ops *const *b = mp__backend_all(); *b; b++)
        if (mp__backend_context(*b) == ctx) return (*b)->name;
    return NULL;
}

const char *const *mp_get_all_start_methods(void) {
    static const char *names[16];
    mp__lock();
    if (!names[0]) {
        size_t i = 0;
        for (const struct mp_backend_ops *const *b = mp__backend_all(); *b && i < 15; b++)
            names[i++] = (*b)->name;
        names[i] = NULL;
    }
    mp__unlock();
    return names;
}

static const struct mp_backend_ops *default_method(void) {
    const char *env = getenv("MP_START_METHOD");
    if (env && *env) {
        const struct mp_backend_ops *ops = mp__backend_find(env);
        if (ops) return ops;
        fprintf(stderr, "multiproc: MP_START_METHOD=%s is not a start method here; using the default\n", env);
    }
    return mp__backend_all()[0];
}

const char *mp_get_start_method(bool allow_none) {
    lib_init();
    mp__lock();
    if (!g_method && !allow_none) g_method = default_method();
    const char *name = g_method ? g_method->name : NULL;
    mp__unlock();
    return name;
}

int mp_set_start_method(const char *name, bool force) {
    lib_init();
    const struct mp_backend_ops *ops = NULL;
    if (name) {
        ops = mp__backend_find(name);
        if (!ops) return mp__err(MP_EINVAL, "mp_set_start_method: cannot find context for '%s'", name);
    } else if (!force) {
        return mp__err(MP_EINVAL, "mp_set_start_method: name is NULL (pass force to unset)");
    }
    mp__lock();
    int rc = 0;
    if (g_method && !force)
        rc = mp__err(MP_ESTATE, "mp_set_start_method: context has already been set");
    else
        g_method = ops;
    mp__unlock();
    return rc;
}

void mp__set_inherited_start_method(const char *name) {
    mp__lock();
    g_method = name ? mp__backend_find(name) : NULL;
    mp__unlock();
}

int mp_set_executable(const char *path) {
    char *copy = NULL;
    if (path && !(copy = mp__strdup(path))) return mp__err(MP_ENOMEM, "mp_set_executable: out of memory");
    mp__lock();
    mp__free(g_executable);
    g_executable = copy;
    mp__unlock();
    return 0;
}

const char *mp__executable(void) { return g_executable ? g_executable : mp__os_self_exe(); }

int mp_set_forkserver_preload(const char *const *libs, size_t n) {
    if (n && !libs) return mp__err(MP_EINVAL, "mp_set_forkserver_preload: libs is NULL");
    char **list = mp__calloc(n + 1, sizeof *list);
    if (!list) return mp__err(MP_ENOMEM, "mp_set_forkserver_preload: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!libs[i] || !(list[i] = mp__strdup(libs[i]))) {
            for (size_t j = 0; j < i; j++) mp__free(list[j]);
            mp__free(list);
            return mp__err(libs[i] ? MP_ENOMEM : MP_EINVAL, "mp_set_forkserver_preload: bad entry %zu", i);
        }
    }
    mp__lock();
    char **old = g_preload;
    g_preload = list;
    mp__unlock();
    for (size_t i = 0; old && old[i]; i++) mp__free(old[i]);
    mp__free(old);
    return 0;
}

const char *const *mp__forkserver_preload(void) {
    static const char *const none[] = {NULL};
    return g_preload ? (const char *const *)g_preload : none;
}

int mp_cpu_count(void) { return mp__os_cpu_count(); }
int mp_process_cpu_count(void) { return mp__os_process_cpu_count(); }
int64_t mp_getpid(void) { return mp__os_getpid(); }
