/* mp_init: the library's entry. It registers the start methods this build has, makes
 * sure children are cleaned up at exit, and hands an exec'd child (argv names its
 * start method) to that backend, which runs the target and never returns. It sits at
 * the top: it knows the builtin backends, and nothing below calls up into it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/os.h"
#include "builtin.h"

static bool g_inited;

static void at_exit(void) { mp__shutdown(); }

static int init_once(void) {
    if (g_inited) return 0;
    mp__lock();
    int rc = 0;
    if (!g_inited) {
        rc = mp__runtime_init();
        if (!rc) rc = mp__backends_register_builtin();
        if (!rc) {
            atexit(at_exit);
            g_inited = true;
        }
    }
    mp__unlock();
    return rc;
}

int mp_init(int *argc, char ***argv) {
    int rc = init_once();
    if (rc) return rc;
    if (!argc || !argv || !*argv || *argc < 3 || strcmp((*argv)[1], "--mp-child") != 0) return 0;
    /* We are a child an exec-based backend started: it runs the target and exits. */
    const struct mp_backend_ops *ops = mp__backend_find((*argv)[2]);
    if (!ops) {
        fprintf(stderr, "multiproc: unknown child start method '%s'\n", (*argv)[2]);
        mp__os_exit(1);
    }
    rc = mp__backend_child_main(ops, *argc, *argv);
    fprintf(stderr, "multiproc: %s child failed to start: %s\n", ops->name,
            mp_last_error_message()[0] ? mp_last_error_message() : mp_strerror(rc));
    mp__os_exit(1);
    return rc;
}
