/* Process-wide settings and state every module may read: the bookkeeping lock, the
 * authkey, the executable children run, CPU counts. Calls nothing but the OS layer. */
#include <string.h>

#include "os.h"

static unsigned char g_authkey[32];
static bool g_authkey_set;
static char *g_executable;

void mp__lock(void) { mp__os_global_lock(); }
void mp__unlock(void) { mp__os_global_unlock(); }

/* What other modules let go at the process's exit (managers' proxies), under the lock. */
static void (*g_exit_hooks[8])(void);

int mp__exit_hook_add(void (*fn)(void)) {
    int rc = mp__err(MP_ENOMEM, "too many exit hooks");
    mp__lock();
    for (size_t i = 0; i < sizeof g_exit_hooks / sizeof g_exit_hooks[0]; i++)
        if (g_exit_hooks[i] == fn || !g_exit_hooks[i]) {
            g_exit_hooks[i] = fn;
            rc = 0;
            break;
        }
    mp__unlock();
    return rc;
}

void mp__exit_hooks_run(void) {
    void (*hooks[8])(void);
    mp__lock();
    memcpy(hooks, g_exit_hooks, sizeof hooks);
    mp__unlock();
    for (size_t i = 0; i < sizeof hooks / sizeof hooks[0] && hooks[i]; i++) hooks[i]();
}

/* Random as Python's os.urandom(32). Under the lock. */
static int make_authkey(void) {
    if (g_authkey_set) return 0;
    int rc = mp__os_random(g_authkey, sizeof g_authkey);
    g_authkey_set = rc == 0;
    return rc;
}

int mp__runtime_init(void) {
    int rc = mp__os_init();
    if (rc) return rc;
    mp__lock();
    rc = make_authkey();
    mp__unlock();
    return rc;
}

const unsigned char *mp__authkey(void) {
    mp__lock();
    /* mp_init made it already, or said why it could not. */
    mp__err_mute();
    make_authkey();
    mp__err_unmute();
    mp__unlock();
    return g_authkey;
}

void mp__set_authkey(const unsigned char key[32]) {
    mp__lock();
    memcpy(g_authkey, key, sizeof g_authkey);
    g_authkey_set = true;
    mp__unlock();
}

int mp_set_executable(const char *path) {
    char *copy = NULL;
    if (path && !(copy = mp__strdup(path)))
        return mp__err(MP_ENOMEM, "mp_set_executable: out of memory");
    mp__lock();
    mp__free(g_executable);
    g_executable = copy;
    mp__unlock();
    return 0;
}

const char *mp__executable(void) { return g_executable ? g_executable : mp__os_self_exe(); }

int mp_cpu_count(void) { return mp__os_cpu_count(); }
int mp_process_cpu_count(void) { return mp__os_process_cpu_count(); }
int64_t mp_getpid(void) { return mp__os_getpid(); }
