/* mp_process: Python's Process object over a start-method backend, and the registry
 * of children every process (or dummy thread) keeps for active_children and exit. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "os.h"
#include "process.h"

/* The process we are, and our parent. A dummy child (a thread) overrides both with
 * thread-locals so current_process() inside it answers like a real child's. */
static mp_process *g_current;
static mp_process *g_parent;
static MP__THREAD_LOCAL mp_process *t_current;
static MP__THREAD_LOCAL mp_process *t_parent;
static mp_os_handle g_self_sentinel = MP_INVALID_OS_HANDLE;

static mp_process *process_alloc(const char *name, const char *identity) {
    mp_process *p = mp__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->name = mp__strdup(name);
    p->identity = mp__strdup(identity);
    p->sentinel = MP_INVALID_OS_HANDLE;
    if (!p->name || !p->identity) {
        mp__free(p->name);
        mp__free(p->identity);
        mp__free(p);
        return NULL;
    }
    return p;
}

/* Lets go of what the backend holds for p (its sentinel with it). */
static void process_release(mp_process *p) {
    mp__backend_release(p->ops, p->bk);
    p->bk = NULL;
    p->sentinel = MP_INVALID_OS_HANDLE;
}

static void process_destroy(mp_process *p) {
    if (!p->is_self && (p->state == MP__P_STARTED || p->state == MP__P_ENDED)) process_release(p);
    if (p->is_self && p->sentinel != MP_INVALID_OS_HANDLE) mp__os_handle_close(p->sentinel);
    mp_args_free(p->args);
    mp__free(p->name);
    mp__free(p->identity);
    mp__free(p);
}

/* The logger's name for the record's process (core/log.c). */
static const char *current_name(void) {
    mp_process *p = mp_current_process();
    return p ? p->name : NULL;
}

mp_process *mp_current_process(void) {
    if (t_current) return t_current;
    if (g_current) return g_current;
    mp__log_set_namer(current_name);
    mp__lock();
    if (!g_current) {
        mp_process *p = process_alloc("MainProcess", "");
        if (p) {
            p->is_self = true;
            p->state = MP__P_STARTED;
            p->pid = mp__os_getpid();
            g_current = p;
        }
    }
    mp__unlock();
    return g_current;
}

mp_process *mp_parent_process(void) { return t_parent ? t_parent : g_parent; }

/* Registry: under the global lock. */
static void registry_add(mp_process *owner, mp_process *p) {
    p->owner = owner;
    p->next = owner->children;
    owner->children = p;
}

static void registry_remove(mp_process *p) {
    if (!p->owner) return;
    for (mp_process **pp = &p->owner->children; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    p->owner = NULL;
    p->next = NULL;
}

static size_t reap_and_list(mp_process *owner, mp_process **list, size_t cap);

static int check_open(const mp_process *p, const char *fn) {
    if (!p) return mp__err(MP_EINVAL, "%s: process is NULL", fn);
    if (p->state == MP__P_CLOSED) return mp__err(MP_ECLOSED, "%s: process object is closed", fn);
    return 0;
}

int mp_process_new(mp_context *ctx, const mp_process_opts *opts, mp_process **out) {
    if (!out) return mp__err(MP_EINVAL, "mp_process_new: out is NULL");
    *out = NULL;
    if (!opts) return mp__err(MP_EINVAL, "mp_process_new: opts is NULL");
    if (!opts->target) return mp__err(MP_EINVAL, "mp_process_new: target is NULL");
    if (!ctx) ctx = mp__context_default();
    if (!ctx) return MP_ESTATE; /* it said why */
    mp_process *self = mp_current_process();
    if (!self) return mp__err(MP_ENOMEM, "mp_process_new: out of memory");

    mp__lock();
    unsigned id = ++self->next_child_id;
    mp__unlock();
    char identity[256], defname[300];
    if (self->identity[0])
        snprintf(identity, sizeof identity, "%s:%u", self->identity, id);
    else
        snprintf(identity, sizeof identity, "%u", id);
    snprintf(defname, sizeof defname, "Process-%s", identity);

    mp_process *p = process_alloc(opts->name ? opts->name : defname, identity);
    if (!p) return mp__err(MP_ENOMEM, "mp_process_new: out of memory");
    int rc = mp__args_copy(opts->args, &p->args);
    if (rc) {
        process_destroy(p);
        return rc;
    }
    p->ops = mp__context_ops(ctx);
    p->target = opts->target;
    /* As Python: a process made inside a daemonic one is daemonic by default. */
    p->daemon = opts->daemon || self->daemon;
    p->state = MP__P_INIT;
    *out = p;
    return 0;
}

static int self_sentinel(mp_os_handle *out) {
    mp__lock();
    int rc = 0;
    if (g_self_sentinel == MP_INVALID_OS_HANDLE) rc = mp__os_self_sentinel(&g_self_sentinel);
    *out = g_self_sentinel;
    mp__unlock();
    return rc;
}

int mp_process_start(mp_process *p) {
    int rc = check_open(p, "mp_process_start");
    if (rc) return rc;
    if (p->is_self) return mp__err(MP_ESTATE, "mp_process_start: cannot start this process object");
    if (p->state != MP__P_INIT)
        return mp__err(MP_ESTATE, "mp_process_start: cannot start a process twice");
    mp_process *self = mp_current_process();
    if (!self) return mp__err(MP_ENOMEM, "mp_process_start: out of memory");
    if (self->daemon)
        return mp__err(MP_ESTATE,
                       "mp_process_start: daemonic processes are not allowed to have children");

    /* As Python's start(): reap finished children first, so none lingers as a zombie. */
    reap_and_list(self, NULL, 0);
    mp_os_handle sentinel;
    rc = self_sentinel(&sentinel);
    if (rc) return rc;
    size_t cap = 1 + mp__args_handle_count(p->args), nh = 0;
    mp_os_handle *handles = mp__calloc(cap, sizeof *handles);
    mp__buf b = {0};
    if (!handles) return mp__err(MP_ENOMEM, "mp_process_start: out of memory");
    mp__launch l = {
        .target_ptr = (void *)p->target,
        .name = p->name,
        .identity = p->identity,
        .daemon = p->daemon,
        .parent_pid = self->pid,
        .parent_name = self->name,
        .start_method = (char *)p->ops->name,
        .flags = p->ops->flags,
    };
    memcpy(l.authkey, mp__authkey(), sizeof l.authkey);
    mp__log_settings(&l.log_level, &l.log_stderr);
    rc = mp__launch_encode(&l, p->args, sentinel, &b, handles, &nh);
    mp__fnref_clear(&l.ref);
    mp__started st;
    if (!rc) {
        mp__start_req req = {
            .payload = b.data,
            .len = b.len,
            .handles = handles,
            .nhandles = nh,
            .executable = mp__executable(),
            .daemon = p->daemon,
            .plain_args = !mp__args_has_objects(p->args),
        };
        rc = mp__backend_start(p->ops, &req, &st);
    }
    mp__buf_free(&b);
    mp__free(handles);
    if (rc) return rc;
    p->pid = st.pid;
    p->sentinel = st.sentinel;
    p->bk = st.state;
    p->state = MP__P_STARTED;
    mp__lock();
    registry_add(self, p);
    mp__unlock();
    return 0;
}

/* Polls or waits through the backend; moves p to ENDED. */
static int process_wait(mp_process *p, double timeout) {
    if (p->state == MP__P_ENDED) return 0;
    int code = 0;
    int rc = mp__backend_wait(p->ops, p->bk, timeout, &code);
    if (rc) return rc;
    p->exitcode = code;
    p->state = MP__P_ENDED;
    return 0;
}

/* Whether p is still running, recording nothing (a predicate). */
static bool process_running(mp_process *p) {
    mp__err_mute();
    bool running = process_wait(p, 0) != 0;
    mp__err_unmute();
    return running;
}

int mp_process_join(mp_process *p, double timeout) {
    int rc = check_open(p, "mp_process_join");
    if (rc) return rc;
    if (p->is_self) {
        /* Python: the parent process object joins through its sentinel. */
        if (p == mp_current_process() || p->sentinel == MP_INVALID_OS_HANDLE)
            return mp__err(MP_ESTATE, "mp_process_join: a process cannot join itself");
        rc = mp__os_handle_wait(p->sentinel, timeout);
        if (rc == MP_ETIMEDOUT)
            return mp__err(rc, "mp_process_join: timed out after %.3f s", timeout);
        return rc;
    }
    if (p->state == MP__P_INIT)
        return mp__err(MP_ESTATE, "mp_process_join: can only join a started process");
    rc = process_wait(p, timeout);
    if (rc == MP_ETIMEDOUT) return mp__err(rc, "mp_process_join: timed out after %.3f s", timeout);
    if (rc) return rc;
    mp__lock();
    registry_remove(p);
    mp__unlock();
    return 0;
}

bool mp_process_is_alive(mp_process *p) {
    if (!p || p->state == MP__P_CLOSED) return false;
    if (p->is_self) {
        if (p == g_current || p == t_current) return true;
        if (p->sentinel == MP_INVALID_OS_HANDLE) return false;
        mp__err_mute();
        bool alive = mp__os_handle_wait(p->sentinel, 0) == MP_ETIMEDOUT;
        mp__err_unmute();
        return alive;
    }
    if (p->state != MP__P_STARTED) return false;
    return process_running(p);
}

int mp_process_exitcode(mp_process *p, int *code) {
    if (code) *code = 0;
    int rc = check_open(p, "mp_process_exitcode");
    if (rc) return rc;
    if (!code) return mp__err(MP_EINVAL, "mp_process_exitcode: code is NULL");
    if (p->is_self || p->state == MP__P_INIT)
        return mp__err(MP_EAGAIN, "mp_process_exitcode: the process has not been started");
    if (process_running(p)) return mp__err(MP_EAGAIN, "mp_process_exitcode: still running");
    *code = p->exitcode;
    return 0;
}

int mp_process_alive(mp_process *p, bool *alive) {
    if (alive) *alive = false;
    int rc = check_open(p, "mp_process_alive");
    if (rc) return rc;
    if (!alive) return mp__err(MP_EINVAL, "mp_process_alive: alive is NULL");
    *alive = mp_process_is_alive(p);
    return 0;
}

int64_t mp_process_pid(const mp_process *p) {
    return (p && p->state != MP__P_INIT && p->state != MP__P_CLOSED) ? p->pid : 0;
}

int mp_process_get_pid(const mp_process *p, int64_t *pid) {
    if (pid) *pid = 0;
    int rc = check_open(p, "mp_process_get_pid");
    if (rc) return rc;
    if (!pid) return mp__err(MP_EINVAL, "mp_process_get_pid: pid is NULL");
    *pid = mp_process_pid(p);
    return 0;
}

int mp_process_sentinel(const mp_process *p, mp_os_handle *out) {
    if (out) *out = MP_INVALID_OS_HANDLE;
    int rc = check_open(p, "mp_process_sentinel");
    if (rc) return rc;
    if (!out) return mp__err(MP_EINVAL, "mp_process_sentinel: out is NULL");
    if (p->state == MP__P_INIT || p->sentinel == MP_INVALID_OS_HANDLE)
        return mp__err(MP_ESTATE, "mp_process_sentinel: process not started");
    *out = p->sentinel;
    return 0;
}

static int process_signal(mp_process *p, int sig, const char *fn) {
    int rc = check_open(p, fn);
    if (rc) return rc;
    if (p->is_self) return mp__err(MP_ENOTSUP, "%s: not supported on this process object", fn);
    if (p->state == MP__P_INIT) return mp__err(MP_ESTATE, "%s: process not started", fn);
    if (p->state == MP__P_ENDED) return 0;
    return mp__backend_signal(p->ops, p->bk, sig);
}

int mp_process_terminate(mp_process *p) {
    return process_signal(p, MP__SIG_TERM, "mp_process_terminate");
}
int mp_process_kill(mp_process *p) { return process_signal(p, MP__SIG_KILL, "mp_process_kill"); }
int mp_process_interrupt(mp_process *p) {
    return process_signal(p, MP__SIG_INT, "mp_process_interrupt");
}

int mp_process_close(mp_process *p) {
    if (!p) return mp__err(MP_EINVAL, "mp_process_close: process is NULL");
    if (p->state == MP__P_CLOSED) return 0;
    if (p->is_self) return mp__err(MP_ESTATE, "mp_process_close: cannot close this process object");
    if (p->state == MP__P_STARTED && process_running(p))
        return mp__err(MP_ESTATE,
                       "mp_process_close: cannot close a process while it is still running");
    mp__lock();
    registry_remove(p);
    mp__unlock();
    if (p->state == MP__P_ENDED) process_release(p);
    p->state = MP__P_CLOSED;
    return 0;
}

void mp_process_free(mp_process *p) {
    if (!p || p->is_self) return;
    mp__lock();
    if (p->state == MP__P_STARTED && p->owner && process_running(p)) {
        /* Still running: the registry keeps it to reap it (and terminate a daemon). */
        p->user_freed = true;
        mp__unlock();
        return;
    }
    registry_remove(p);
    mp__unlock();
    process_destroy(p);
}

const char *mp_process_name(const mp_process *p) { return p ? p->name : NULL; }

int mp_process_set_name(mp_process *p, const char *name) {
    if (!p || !name) return mp__err(MP_EINVAL, "mp_process_set_name: NULL argument");
    char *n = mp__strdup(name);
    if (!n) return mp__err(MP_ENOMEM, "mp_process_set_name: out of memory");
    mp__free(p->name);
    p->name = n;
    return 0;
}

bool mp_process_daemon(const mp_process *p) { return p && p->daemon; }

int mp_process_set_daemon(mp_process *p, bool daemon) {
    int rc = check_open(p, "mp_process_set_daemon");
    if (rc) return rc;
    if (p->state != MP__P_INIT || p->is_self)
        return mp__err(MP_ESTATE, "mp_process_set_daemon: process has already started");
    p->daemon = daemon;
    return 0;
}

const char *mp_process_start_method(const mp_process *p) {
    return (p && p->ops) ? p->ops->name : NULL;
}

/* Finished children leave the registry here, as Python's _cleanup() does. */
static size_t reap_and_list(mp_process *owner, mp_process **list, size_t cap) {
    size_t n = 0;
    mp__lock();
    mp_process **pp = &owner->children;
    while (*pp) {
        mp_process *c = *pp;
        if (c->state != MP__P_STARTED || !process_running(c)) {
            *pp = c->next;
            c->owner = NULL;
            c->next = NULL;
            if (c->user_freed) process_destroy(c);
            continue;
        }
        /* Freed by the user but alive: still a child (Python would list it), and the
         * object stays valid until it is reaped. */
        if (list && n < cap) list[n] = c;
        n++;
        pp = &c->next;
    }
    mp__unlock();
    return n;
}

int mp_active_children(mp_process **list, size_t cap, size_t *n) {
    if (n) *n = 0;
    if (!n) return mp__err(MP_EINVAL, "mp_active_children: n is NULL");
    if (cap && !list) return mp__err(MP_EINVAL, "mp_active_children: list is NULL");
    mp_process *self = mp_current_process();
    if (!self) return mp__err(MP_ENOMEM, "mp_active_children: out of memory");
    *n = reap_and_list(self, list, cap);
    return 0;
}

/* Python's _exit_function: terminate daemonic children, then join the rest. A dummy
 * daemon cannot be terminated (it is a thread), so it is left to run, as Python leaves
 * daemon threads. */
static void cleanup_children_of(mp_process *owner) {
    for (int pass = 0; pass < 2; pass++) {
        for (;;) {
            mp_process *victim = NULL;
            mp__lock();
            for (mp_process *c = owner->children; c; c = c->next) {
                if (c->state != MP__P_STARTED) continue;
                bool threads = c->ops->flags & MP_BACKEND_THREADS;
                if (pass == 0 && c->daemon && !threads && !c->bk_terminated) {
                    victim = c;
                    break;
                }
                if (pass == 1 && !(c->daemon && threads)) {
                    victim = c;
                    break;
                }
            }
            mp__unlock();
            if (!victim) break;
            if (pass == 0) {
                mp_log(MP_LOG_INFO, "calling terminate() for daemon %s", victim->name);
                victim->bk_terminated = true;
                mp__err_mute();
                mp__backend_signal(victim->ops, victim->bk, MP__SIG_TERM);
                mp__err_unmute();
            } else {
                mp_log(MP_LOG_INFO, "calling join() for process %s", victim->name);
                mp__err_mute();
                process_wait(victim, MP_FOREVER);
                mp__err_unmute();
            }
            if (pass == 1 || victim->state == MP__P_ENDED) {
                mp__lock();
                if (victim->state != MP__P_STARTED) {
                    bool freed = victim->user_freed;
                    registry_remove(victim);
                    if (freed) process_destroy(victim);
                }
                mp__unlock();
            }
        }
    }
    /* What is left (dummy daemons) outlives its owner's object. */
    mp__lock();
    while (owner->children) {
        mp_process *c = owner->children;
        owner->children = c->next;
        c->owner = NULL;
        c->next = NULL;
    }
    mp__unlock();
}

void mp__shutdown(void) {
    /* Said once, though an exit may come here twice (the target's exit, then ours). */
    static atomic_bool said;
    if (!atomic_exchange(&said, true)) mp_log(MP_LOG_INFO, "process shutting down");
    mp__exit_hooks_run();
    mp_log(MP_LOG_DEBUG, "running all \"atexit\" finalizers with priority >= 0");
    mp_finalize_run_all(0);
    mp_process *self = mp_current_process();
    if (self) cleanup_children_of(self);
    mp_log(MP_LOG_DEBUG, "running the remaining \"atexit\" finalizers");
    mp_finalize_run_all(MP_FINALIZE_NOT_AT_EXIT);
    mp__backend_shutdown_all();
}

void mp__process_after_fork_child(void) {
    /* The parent's children are not ours, and its sentinel is now our parent's. */
    g_current = NULL;
    g_parent = NULL;
    t_current = NULL;
    t_parent = NULL;
    g_self_sentinel = MP_INVALID_OS_HANDLE;
    mp__value_after_fork_child();
    mp__finalize_after_fork_child();
}

mp_process *mp__process_child_begin(const mp__launch *l, mp_os_handle parent_sentinel,
                                    bool thread) {
    mp_process *self = process_alloc(l->name, l->identity);
    mp_process *parent = process_alloc(l->parent_name ? l->parent_name : "MainProcess", "");
    if (!self || !parent) {
        if (self) process_destroy(self);
        if (parent) process_destroy(parent);
        mp__err(MP_ENOMEM, "child: out of memory for the process objects");
        return NULL;
    }
    self->is_self = parent->is_self = true;
    mp__log_set_namer(current_name);
    self->ops = mp__backend_find(l->start_method);
    self->state = parent->state = MP__P_STARTED;
    self->daemon = l->daemon;
    self->pid = thread ? mp__os_thread_id() : mp__os_getpid();
    parent->pid = l->parent_pid;
    parent->sentinel = parent_sentinel;
    if (thread) {
        t_current = self;
        t_parent = parent;
    } else {
        g_current = self;
        g_parent = parent;
        mp__set_authkey(l->authkey);
        mp__log_inherit(l->log_level, l->log_stderr);
    }
    mp__backend_set_inherited(l->start_method, thread);
    return self;
}

void mp__process_child_end(mp_process *self, bool thread) {
    if (!self) return;
    cleanup_children_of(self);
    if (thread) {
        mp_process *parent = t_parent;
        t_current = NULL;
        t_parent = NULL;
        mp__backend_set_inherited(NULL, true);
        process_destroy(self);
        if (parent) process_destroy(parent);
    }
    /* A real child exits right after; its objects go with it. */
}
