/* logging: the "Logging" section of Python's multiprocessing documentation.
 *
 *     >>> import multiprocessing, logging
 *     >>> logger = multiprocessing.log_to_stderr()
 *     >>> logger.setLevel(logging.INFO)
 *     >>> logger.warning('doomed')
 *     [WARNING/MainProcess] doomed
 *     >>> m = multiprocessing.Manager()
 *     [INFO/SyncManager-1] child process calling self.run()
 *     [INFO/SyncManager-1] created temp directory /.../pymp-...
 *     [INFO/SyncManager-1] manager serving at '/.../listener-...'
 *     >>> del m
 *     [INFO/MainProcess] sending shutdown message to manager
 *     [INFO/SyncManager-1] manager exiting with exitcode 0
 *
 * In C the records go to stderr in the same format, from the main process and from its
 * children on every start method (they inherit the level). A child of our own says
 * what it is doing too; records of its own go through mp_log like the library's.
 *
 * Usage: logging [start-method] */
#include "example_util.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "logging: %s: %s (%s)\n", what, mp_strerror(rc), mp_last_error_message());
    return 1;
}

static int worker(mp_args *args) {
    (void)args;
    mp_log(MP_LOG_INFO, "working for %s", "the main process");
    mp_log(MP_LOG_DEBUG, "not shown: below the level"); /* INFO drops DEBUG */
    return 0;
}

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc < 0) return fail("mp_init", rc);
    mp_context *ctx = mp_get_context(argc > 1 ? argv[1] : NULL);
    if (!ctx) return fail("mp_get_context", MP_EINVAL);

    /* logger = multiprocessing.log_to_stderr(); logger.setLevel(logging.INFO) */
    mp_log_to_stderr(MP_LOG_INFO);
    mp_log(MP_LOG_WARNING, "doomed");

    /* m = multiprocessing.Manager(): its server process logs as it starts... */
    mp_manager *m = NULL;
    mp_process *p = NULL;
    int code = -1;
    mp_manager_opts mo = {.timeout = 30};
    if ((rc = mp_sync_manager_new(ctx, &mo, &m)) < 0 || (rc = mp_manager_start(m)) < 0) {
        fail("Manager()", rc);
        goto out;
    }
    /* ...and so does a process of ours. */
    mp_process_opts opts = {.target = worker, .name = "Worker"};
    if ((rc = mp_process_new(ctx, &opts, &p)) < 0 || (rc = mp_process_start(p)) < 0 ||
        (rc = mp_process_join(p, 60)) < 0 || (rc = mp_process_exitcode(p, &code)) < 0) {
        fail("worker", rc);
        goto out;
    }
    if (code != 0) rc = MP_ECHILD;
    /* del m */
    if (mp_manager_shutdown(m) < 0 && rc == 0) rc = MP_ECHILD;
out:
    mp_process_free(p);
    mp_manager_free(m);
    if (rc == 0) printf("logging: done, the worker exited with %d\n", code);
    return rc < 0 ? 1 : 0;
}
