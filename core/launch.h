/* The launch (parent -> child: everything a child needs to become the process the
 * parent described) and the report (child -> parent: whether its bootstrap worked).
 * One encoding each, whatever the start method; backends only carry the bytes. */
#ifndef MP_CORE_LAUNCH_H
#define MP_CORE_LAUNCH_H

#include "internal.h"

/* ---- the launch (core/launch.c) ---- */

/* What a backend is (mp_backend_ops.flags, core/backend.h); the launch carries them
 * to the child. */
enum {
    MP_BACKEND_THREADS = 1u << 0,    /* children are threads of this process (dummy) */
    MP_BACKEND_SAME_IMAGE = 1u << 1, /* children share this address layout (fork, dummy) */
};

typedef struct mp__launch {
    mp__fnref ref;
    void *target_ptr; /* valid in the same image (fork, dummy, forkserver after resolve) */
    char *name;
    char *identity; /* "1", "1:2" */
    bool daemon;
    int64_t parent_pid;
    char *parent_name;
    char *start_method; /* the backend that started the child: its global method there */
    unsigned flags;     /* that backend's MP_BACKEND_* flags */
    unsigned char authkey[32];
    int log_level; /* the parent's logging settings (core/log.c) */
    bool log_stderr;
    const unsigned char *args_wire; /* points into the payload */
    size_t args_len;
    size_t nhandles; /* handles[0] is the parent sentinel, args' handles follow */
} mp__launch;

/** Encodes l (its args_wire and nhandles are ignored) and args into b; handles[0]
 *  becomes parent_sentinel and the args' handles follow (handles must have room for
 *  1 + mp__args_handle_count(args)). Fills l->ref from l->target_ptr first, so a
 *  target outside every module is refused here, in the parent. */
int mp__launch_encode(mp__launch *l, const mp_args *args, mp_os_handle parent_sentinel, mp__buf *b,
                      mp_os_handle *handles, size_t *nhandles);
/** Decodes a payload; the launch points into it (args_wire), so keep it alive. The raw
 *  target pointer is kept only when the flags say the child shares our image. */
int mp__launch_decode(const void *payload, size_t len, mp__launch *out);
/** Resolves l->ref into l->target_ptr (no-op when already set). MP_ERESOLVE on failure. */
int mp__launch_resolve(mp__launch *l);
void mp__launch_clear(mp__launch *l);

/* ---- the report: i32 rc, u32 length, message; little-endian ---- */

#define MP__REPORT_HEADER 8
#define MP__REPORT_MSG_MAX 4096
#define MP__REPORT_MAX (MP__REPORT_HEADER + MP__REPORT_MSG_MAX)

/** Encodes a report into out (room for MP__REPORT_MAX); returns its length. A longer
 *  message is cut. */
size_t mp__report_encode(int rc, const char *msg, unsigned char out[MP__REPORT_MAX]);
/** Reads a header: the child's code (0: it runs the target) and *msglen, the bytes of
 *  message that follow. MP_EPROTO (recorded) for a message longer than the maximum. */
int mp__report_header(const unsigned char h[MP__REPORT_HEADER], int *rc, size_t *msglen);
/** Records the child's failure as who's error and returns its code (a code that is not
 *  one of ours becomes MP_ECHILD). msg need not be NUL-terminated: len bytes. */
int mp__report_error(int rc, const char *msg, size_t len, const char *who);
/** A report exchanged over a blocking handle (a pipe or socket the child inherited):
 *  writes one report and closes *h (set to invalid); reads one, 0 or the child's
 *  error as mp__report_error records it, MP_ECHILD when the child ended first. */
void mp__report_send(mp_os_handle *h, int rc, const char *msg);
int mp__report_recv(mp_os_handle h, const char *who);

/* ---- the child (core/child.c) ---- */

/** Report hook: the child says whether it is about to run the target. */
typedef void (*mp__report_fn)(void *ctx, int rc, const char *msg);
/** The report hook for mp__report_send: ctx points at the mp_os_handle. */
void mp__report_to_handle(void *ctx, int rc, const char *msg);

/** Runs a child: resolves the target, rebuilds the arguments, reports, sets
 *  current/parent process, runs the target, cleans up its own children. A process
 *  child then exits with the target's code (running the handlers the target
 *  registered with atexit); a thread child (MP_BACKEND_THREADS) returns it. Returns 1
 *  when the bootstrap failed (reported; the caller ends the child without running any
 *  exit handler). handles are owned after this. */
int mp__child_run(mp__launch *l, mp_os_handle *handles, size_t nhandles, mp__report_fn report,
                  void *report_ctx);
/** mp__child_run in two steps, for a backend that can do the first in the parent
 *  (dummy): prepare resolves the target and rebuilds the arguments (on failure every
 *  handle is closed and the error recorded); exec runs the child from there, taking
 *  args and the parent's sentinel (handles[0]). */
int mp__child_prepare(mp__launch *l, mp_os_handle *handles, size_t nhandles, mp_args **args);
int mp__child_exec(mp__launch *l, mp_args *args, mp_os_handle parent_sentinel, mp__report_fn report,
                   void *report_ctx);

#endif
