/* Process objects, private to the core (core/process.c, core/child.c): backends never
 * see one; they get a start request and hand back an mp__started. */
#ifndef MP_CORE_PROCESS_H
#define MP_CORE_PROCESS_H

#include "backend.h"

enum mp__pstate { MP__P_INIT, MP__P_STARTED, MP__P_ENDED, MP__P_CLOSED };

struct mp_process {
    const struct mp_backend_ops *ops;
    char *name;
    char *identity;
    bool daemon;
    enum mp__pstate state;
    mp_target_fn target;
    mp_args *args;
    bool user_freed;    /* the user let go; the registry still reaps it */
    bool is_self;       /* current/parent process objects: not started by us */
    bool bk_terminated; /* exit cleanup already sent it SIGTERM */
    /* from the backend's mp__started */
    int64_t pid;
    mp_os_handle sentinel;
    void *bk;
    int exitcode;
    /* the children registry: each process object lists the children it started */
    struct mp_process *owner;    /* whose children list holds this one */
    struct mp_process *next;     /* sibling in owner's list */
    struct mp_process *children; /* started by this one, not yet reaped and let go */
    unsigned next_child_id;      /* for "Process-<identity>:N" */
};

/** Sets up the calling child (a process, or a dummy thread when thread is true) as
 *  described by l, with the parent's sentinel; returns its process object. */
mp_process *mp__process_child_begin(const mp__launch *l, mp_os_handle parent_sentinel, bool thread);
/** Ends a child begun with mp__process_child_begin: cleans its children up. */
void mp__process_child_end(mp_process *self, bool thread);

#endif
