/* apr: the child is created by APR's apr_proc_create running this executable again,
 * like spawn. APR cannot place fds at chosen numbers, so the bootstrap channel and the
 * handles are inherited at whatever numbers they have (named on the command line) and
 * the child closes every other fd before it does anything else. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_thread_proc.h>

#include "unix.h"

static pthread_once_t apr_once = PTHREAD_ONCE_INIT;
static apr_status_t apr_init_status;

static void apr_start_up(void) { apr_init_status = apr_initialize(); }

static int apr_err(apr_status_t st, const char *what) {
    char buf[256];
    apr_strerror(st, buf, sizeof buf);
    return mp__err(MP_ECHILD, "apr: %s: %s", what, buf);
}

static int apr_start(const mp__start_req *req, mp__started *out) {
    pthread_once(&apr_once, apr_start_up);
    if (apr_init_status != APR_SUCCESS) return apr_err(apr_init_status, "apr_initialize");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return mp__os_err("apr: socketpair");
    size_t n = req->nhandles;
    int *inh = mp__calloc(n + 1, sizeof *inh);
    char *list = mp__calloc(n + 1, 12);
    apr_pool_t *pool = NULL;
    int rc = 0;
    if (!inh || !list) {
        rc = mp__err(MP_ENOMEM, "apr: out of memory");
        goto done;
    }
    for (size_t i = 0; i <= n; i++) inh[i] = -1;
    /* Inheritable copies exist only while apr_proc_create runs. */
    inh[0] = fcntl(sv[1], F_DUPFD, 3);
    for (size_t i = 0; i < n && inh[0] >= 0; i++)
        if ((inh[i + 1] = fcntl((int)req->handles[i], F_DUPFD, 3)) < 0) break;
    size_t o = 0;
    for (size_t i = 0; i <= n; i++) {
        if (inh[i] < 0) {
            rc = mp__os_err("apr: dup");
            goto done;
        }
        o += (size_t)snprintf(list + o, 12, i ? ",%d" : "%d", inh[i]);
    }
    apr_status_t st = apr_pool_create(&pool, NULL);
    if (st != APR_SUCCESS) {
        rc = apr_err(st, "apr_pool_create");
        goto done;
    }
    apr_procattr_t *attr;
    apr_proc_t proc;
    const char *argv[] = {req->executable, "--mp-child", "apr", list, NULL};
    if ((st = apr_procattr_create(&attr, pool)) != APR_SUCCESS ||
        (st = apr_procattr_cmdtype_set(attr, APR_PROGRAM_ENV)) != APR_SUCCESS ||
        (st = apr_procattr_detach_set(attr, 0)) != APR_SUCCESS ||
        (st = apr_procattr_error_check_set(attr, 1)) != APR_SUCCESS ||
        (st = apr_proc_create(&proc, req->executable, argv, NULL, attr, pool)) != APR_SUCCESS) {
        rc = apr_err(st, req->executable);
        goto done;
    }
    /* Our copies of the child's channel end must go before we wait for its report. */
    close(sv[1]);
    sv[1] = -1;
    for (size_t i = 0; i <= n; i++) {
        close(inh[i]);
        inh[i] = -1;
    }
    rc = mp__unix_exec_handshake(proc.pid, sv[0], req, "apr", out);
done:
    for (size_t i = 0; inh && i <= n; i++)
        if (inh[i] >= 0) close(inh[i]);
    mp__free(inh);
    mp__free(list);
    if (pool) apr_pool_destroy(pool);
    close(sv[0]);
    if (sv[1] >= 0) close(sv[1]);
    return rc;
}

/* argv: exe --mp-child apr <chan>,<h1>,<h2>... */
static int apr_child_main(int argc, char **argv) {
    if (argc < 4) return mp__err(MP_EINVAL, "apr child: bad command line");
    size_t n = 1;
    for (const char *c = argv[3]; *c; c++) n += *c == ',';
    int *fds = mp__calloc(n, sizeof *fds);
    if (!fds) return mp__err(MP_ENOMEM, "apr child: out of memory");
    char *s = argv[3];
    for (size_t i = 0; i < n; i++) {
        fds[i] = (int)strtol(s, &s, 10);
        if (*s == ',') s++;
    }
    /* APR's fork+exec let through every inheritable fd of the parent: drop them. */
    mp__os_close_fds_except(fds, n);
    return mp__unix_exec_child(fds[0], fds + 1, n - 1);
}

const struct mp_backend_ops mp__backend_apr = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "apr",
    .flags = 0,
    .start = apr_start,
    .wait = mp__unix_child_wait,
    .signal = mp__unix_child_signal,
    .release = mp__unix_child_release,
    .child_main = apr_child_main,
};
