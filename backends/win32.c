/* The win32 start method: CreateProcessW of the executable, which re-enters the
 * library through mp_init and runs the target (Python's "spawn" on Windows).
 *
 * Parent and child talk over one duplex pipe whose child end is the only handle the
 * child inherits besides stdio (PROC_THREAD_ATTRIBUTE_HANDLE_LIST):
 *
 *   command line   "<exe>" --mp-child win32 <pipe handle, decimal>
 *   parent→child   "MPW1", u32 n, n × u64 handle values, u64 payload length, payload
 *   child→parent   i32 rc, u32 message length, message (the bootstrap report)
 *
 * The pipe is a named pipe with an unguessable one-instance name, because only a
 * named pipe does overlapped I/O: every parent-side wait also watches the child's
 * process handle, so a child that dies, or a pipe end that leaked into some other
 * program through another thread's CreateProcess, can never hang mp_process_start.
 *
 * The argument handles are not inherited: the child is created suspended and each
 * one is duplicated into it, so a handle reaches exactly the child it was meant for
 * even while other threads start other children. Daemonic children live in a job
 * that kills them when this process goes away, however it ends. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
/* Windows 8: InitOnce, handle lists and nested jobs. */
#if !defined(_WIN32_WINNT) || _WIN32_WINNT < 0x0602
#undef _WIN32_WINNT
#define _WIN32_WINNT 0x0602
#endif
#include <windows.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/backend.h"
#include "../core/os_win32.h"

/* The exit code Python's Popen.terminate uses; read back as -SIGTERM. */
#define MP__WIN_TERMINATE 0x10000u
#define MP__SIGTERM_CODE (-15)
#define HANDLES_MAX 65536u
static const char wire_magic[4] = {'M', 'P', 'W', '1'};

struct win32_bk {
    HANDLE process;
};

/* ---- pipes ------------------------------------------------------------------ */

static void close_h(HANDLE *h) {
    if (*h != NULL && *h != INVALID_HANDLE_VALUE) CloseHandle(*h);
    *h = NULL;
}

/* The parent's end: overlapped, and each transfer also waits on the child. */
struct chan {
    HANDLE pipe;
    HANDLE event;
    HANDLE process; /* the child: its end ends the conversation */
};

/* One ReadFile/WriteFile of up to n bytes; *done set. MP_EOF when the child ended
 * or closed its end first. */
static int chan_io(struct chan *c, bool write, void *buf, DWORD n, DWORD *done) {
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = c->event;
    *done = 0;
    BOOL ok = write ? WriteFile(c->pipe, buf, n, NULL, &ov) : ReadFile(c->pipe, buf, n, NULL, &ov);
    DWORD e = ok ? ERROR_SUCCESS : GetLastError();
    if (!ok && e == ERROR_IO_PENDING) {
        HANDLE both[2] = {c->event, c->process};
        /* Index 0 wins when both are ready, so a report written just before the
         * child exited is still read. */
        DWORD w = WaitForMultipleObjects(2, both, FALSE, INFINITE);
        DWORD we = w == WAIT_FAILED ? GetLastError() : ERROR_SUCCESS;
        /* The child ended (or the wait failed): stop the I/O, but keep whatever it
         * managed to transfer. */
        if (w != WAIT_OBJECT_0) CancelIoEx(c->pipe, &ov);
        ok = GetOverlappedResult(c->pipe, &ov, done, TRUE);
        e = ok ? ERROR_SUCCESS : GetLastError();
        if (!ok && w == WAIT_FAILED) return mp__win_err(we, "WaitForMultipleObjects(launch pipe)");
    } else if (ok) {
        ok = GetOverlappedResult(c->pipe, &ov, done, FALSE);
        e = ok ? ERROR_SUCCESS : GetLastError();
    }
    if (ok) return *done > 0 || n == 0 ? 0 : MP_EOF;
    if (e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA || e == ERROR_PIPE_NOT_CONNECTED ||
        e == ERROR_OPERATION_ABORTED || e == ERROR_HANDLE_EOF)
        return MP_EOF;
    return mp__win_err(e, write ? "WriteFile(launch pipe)" : "ReadFile(launch pipe)");
}

static int chan_all(struct chan *c, bool write, const void *buf, size_t n) {
    char *p = (char *)buf;
    while (n > 0) {
        DWORD chunk = n > 0x10000000u ? 0x10000000u : (DWORD)n, done = 0;
        int rc = chan_io(c, write, p, chunk, &done);
        if (rc < 0) return rc;
        p += done;
        n -= done;
    }
    return 0;
}

/* A one-instance duplex pipe: *server overlapped for us, *client synchronous and
 * (only) inheritable for the child. event: a manual-reset event for the connect. */
static int make_pipe(HANDLE *server, HANDLE *client, HANDLE event) {
    static volatile LONG counter;
    unsigned char rnd[8];
    char aname[96];
    wchar_t name[96];
    *server = *client = NULL;
    int rc = mp__os_random(rnd, sizeof rnd);
    if (rc < 0) return rc;
    /* Random, so no other program can squat the name or guess it to connect. */
    int len = snprintf(aname, sizeof aname, "\\\\.\\pipe\\multiproc-%lu-%ld-",
                       (unsigned long)GetCurrentProcessId(), (long)InterlockedIncrement(&counter));
    for (int i = 0; i < 8 && len > 0 && len < (int)sizeof aname - 3; i++)
        len += snprintf(aname + len, sizeof aname - (size_t)len, "%02x", rnd[i]);
    /* ASCII only, so widening is a copy (and needs no wide printf). */
    for (int i = 0;; i++) {
        name[i] = (wchar_t)(unsigned char)aname[i];
        if (aname[i] == '\0') break;
    }
    *server = CreateNamedPipeW(
        name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1, 65536,
        65536, 0, NULL);
    if (*server == INVALID_HANDLE_VALUE) {
        *server = NULL;
        return mp__os_err("win32: CreateNamedPipeW(launch pipe)");
    }
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    *client = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, &sa, OPEN_EXISTING, 0, NULL);
    if (*client == INVALID_HANDLE_VALUE) {
        /* Busy means someone else connected first: refuse to talk through it. */
        rc = mp__os_err("win32: CreateFileW(launch pipe)");
        *client = NULL;
        CloseHandle(*server);
        *server = NULL;
        return rc;
    }
    /* The client is already there, so this normally says ERROR_PIPE_CONNECTED;
     * it is called so the server end is formally connected on every version. */
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = event;
    DWORD unused;
    if (!ConnectNamedPipe(*server, &ov)) {
        DWORD e = GetLastError();
        if (e == ERROR_IO_PENDING && GetOverlappedResult(*server, &ov, &unused, TRUE))
            e = ERROR_PIPE_CONNECTED;
        if (e != ERROR_PIPE_CONNECTED) {
            rc = mp__win_err(e, "win32: ConnectNamedPipe(launch pipe)");
            close_h(client);
            close_h(server);
            return rc;
        }
    }
    return 0;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- the daemon job ---------------------------------------------------------- */

static INIT_ONCE job_once = INIT_ONCE_STATIC_INIT;
static HANDLE daemon_job;
static DWORD job_error;

static BOOL CALLBACK job_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    /* Never inheritable and never closed: the kernel closes it when this process
     * ends, for any reason, and that is what kills the daemons. */
    HANDLE job = CreateJobObjectW(NULL, NULL);
    if (job == NULL) {
        job_error = GetLastError();
        return TRUE;
    }
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
    memset(&li, 0, sizeof li);
    li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &li, sizeof li)) {
        job_error = GetLastError();
        CloseHandle(job);
        return TRUE;
    }
    daemon_job = job;
    return TRUE;
}

/* ---- parent side --------------------------------------------------------------- */

/* Ends a child that failed to start: give it grace_ms to exit on its own (it may be
 * writing its error to stderr), then terminate it; always reaped. */
static DWORD reap(HANDLE process, DWORD grace_ms) {
    DWORD code = 0;
    if (WaitForSingleObject(process, grace_ms) != WAIT_OBJECT_0) {
        TerminateProcess(process, 1);
        WaitForSingleObject(process, INFINITE);
    }
    if (!GetExitCodeProcess(process, &code)) code = 1;
    return code;
}

/* Inheritable duplicates of our std handles, for the child's STARTUPINFO; NULL
 * where we have none. Duplicates, so another thread never sees our own handles
 * flip to inheritable. */
static void dup_stdio(HANDLE out[3]) {
    static const DWORD ids[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
    for (int i = 0; i < 3; i++) {
        HANDLE s = GetStdHandle(ids[i]);
        out[i] = NULL;
        if (s == NULL || s == INVALID_HANDLE_VALUE) continue;
        if (!DuplicateHandle(GetCurrentProcess(), s, GetCurrentProcess(), &out[i], 0, TRUE,
                             DUPLICATE_SAME_ACCESS))
            out[i] = NULL; /* the child runs without that stream rather than not at all */
    }
}

/* Sends the header (handles already duplicated into the child) and the payload. */
static int send_launch(struct chan *c, const mp_os_handle *remote, size_t n,
                       const mp__start_req *req) {
    mp__buf b = {0};
    mp__buf_put(&b, wire_magic, sizeof wire_magic);
    mp__buf_u32(&b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) mp__buf_u64(&b, (uint64_t)remote[i]);
    mp__buf_u64(&b, (uint64_t)req->len);
    int rc = b.err ? mp__err(MP_ENOMEM, "win32: out of memory encoding the launch") : 0;
    if (!rc) rc = chan_all(c, true, b.data, b.len);
    if (!rc && req->len > 0) rc = chan_all(c, true, req->payload, req->len);
    mp__buf_free(&b);
    return rc;
}

/* Reads the child's report: 0 (running the target), the child's error as
 * mp__report_error records it, or MP_EOF when it ended without a word. */
static int read_report(struct chan *c) {
    unsigned char buf[MP__REPORT_MAX];
    int rc = chan_all(c, false, buf, MP__REPORT_HEADER);
    if (rc < 0) return rc;
    int code;
    size_t len;
    rc = mp__report_header(buf, &code, &len);
    if (rc < 0 || code == 0) return rc;
    if (len > 0 && chan_all(c, false, buf, len) < 0) len = 0;
    return mp__report_error(code, (const char *)buf, len, "win32");
}

/* The attribute list naming the only handles the child inherits. */
static int make_attrs(HANDLE *inherit, DWORD n, LPPROC_THREAD_ATTRIBUTE_LIST *out) {
    SIZE_T size = 0;
    *out = NULL;
    InitializeProcThreadAttributeList(NULL, 1, 0, &size);
    LPPROC_THREAD_ATTRIBUTE_LIST attrs = mp__malloc(size);
    if (attrs == NULL) return mp__err(MP_ENOMEM, "win32: out of memory for process attributes");
    if (!InitializeProcThreadAttributeList(attrs, 1, 0, &size)) {
        int rc = mp__os_err("win32: InitializeProcThreadAttributeList");
        mp__free(attrs);
        return rc;
    }
    if (!UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit,
                                   n * sizeof(HANDLE), NULL, NULL)) {
        int rc = mp__os_err("win32: UpdateProcThreadAttribute(HANDLE_LIST)");
        DeleteProcThreadAttributeList(attrs);
        mp__free(attrs);
        return rc;
    }
    *out = attrs;
    return 0;
}

static int win32_start(const mp__start_req *req, mp__started *out) {
    struct chan chan = {NULL, NULL, NULL};
    HANDLE child_end = NULL, stdio[3] = {NULL, NULL, NULL}, inherit[4];
    LPPROC_THREAD_ATTRIBUTE_LIST attrs = NULL;
    PROCESS_INFORMATION pi = {NULL, NULL, 0, 0};
    mp_os_handle *remote = NULL;
    wchar_t *wexe = NULL, *wcmd = NULL;
    char *cmd = NULL;
    struct win32_bk *bk = NULL;
    int rc;

    if (req->executable == NULL || strchr(req->executable, '"') != NULL) {
        rc = mp__err(MP_ECHILD, "win32: no usable executable to start (%s)",
                     req->executable ? req->executable : "unknown");
        goto fail;
    }
    if (req->nhandles > HANDLES_MAX) {
        rc = mp__err(MP_EINVAL, "win32: too many handles to pass (%lu)",
                     (unsigned long)req->nhandles);
        goto fail;
    }
    bk = mp__calloc(1, sizeof *bk);
    remote = mp__calloc(req->nhandles ? req->nhandles : 1, sizeof *remote);
    if (bk == NULL || remote == NULL) {
        rc = mp__err(MP_ENOMEM, "win32: out of memory starting a child");
        goto fail;
    }
    if (req->daemon) {
        InitOnceExecuteOnce(&job_once, job_init, NULL, NULL);
        if (daemon_job == NULL) {
            rc = mp__win_err(job_error, "win32: CreateJobObject for daemonic children");
            goto fail;
        }
    }

    chan.event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (chan.event == NULL) {
        rc = mp__os_err("win32: CreateEventW");
        goto fail;
    }
    rc = make_pipe(&chan.pipe, &child_end, chan.event);
    if (rc < 0) goto fail;
    dup_stdio(stdio);
    DWORD ninherit = 0;
    inherit[ninherit++] = child_end;
    for (int i = 0; i < 3; i++)
        if (stdio[i] != NULL) inherit[ninherit++] = stdio[i];
    rc = make_attrs(inherit, ninherit, &attrs);
    if (rc < 0) goto fail;

    size_t cmd_cap = strlen(req->executable) + 64;
    cmd = mp__malloc(cmd_cap);
    if (cmd == NULL) {
        rc = mp__err(MP_ENOMEM, "win32: out of memory for the command line");
        goto fail;
    }
    /* Inherited handles keep their value, so the child can use this number as is. */
    snprintf(cmd, cmd_cap, "\"%s\" --mp-child win32 %llu", req->executable,
             (unsigned long long)(uintptr_t)child_end);
    wexe = mp__win_to_wide(req->executable);
    wcmd = mp__win_to_wide(cmd);
    if (wexe == NULL || wcmd == NULL) {
        rc = mp__err(MP_ECHILD, "win32: executable path is not valid UTF-8: %s", req->executable);
        goto fail;
    }

    STARTUPINFOEXW si;
    memset(&si, 0, sizeof si);
    si.StartupInfo.cb = sizeof si;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = stdio[0];
    si.StartupInfo.hStdOutput = stdio[1];
    si.StartupInfo.hStdError = stdio[2];
    si.lpAttributeList = attrs;
    /* ERROR_INTERNAL_ERROR is transient: Wine's process creation gave it once in a full
     * test run, while other processes were being started, and the same start succeeded
     * right after. A few more tries, a little apart; any other error is final. */
    BOOL made = FALSE;
    DWORD e = 0;
    for (int attempt = 0; attempt < 4 && !made; attempt++) {
        if (attempt) Sleep(10u * (DWORD)attempt);
        made = CreateProcessW(wexe, wcmd, NULL, NULL, TRUE,
                              CREATE_SUSPENDED | EXTENDED_STARTUPINFO_PRESENT |
                                  CREATE_UNICODE_ENVIRONMENT,
                              NULL, NULL, &si.StartupInfo, &pi);
        e = made ? 0 : GetLastError();
        if (!made && e != ERROR_INTERNAL_ERROR) break;
    }
    if (!made) {
        char what[64 + MAX_PATH];
        snprintf(what, sizeof what, "win32: CreateProcessW(%s)", req->executable);
        mp__win_err(e, what);
        rc = mp__err_wrap(MP_ECHILD, "win32: cannot start the child");
        pi.hProcess = pi.hThread = NULL;
        goto fail;
    }
    chan.process = pi.hProcess;
    /* Our copy of the child's end goes, so the pipe breaks when the child ends. */
    close_h(&child_end);
    for (int i = 0; i < 3; i++) close_h(&stdio[i]);

    for (size_t i = 0; i < req->nhandles; i++) {
        HANDLE dup = NULL;
        remote[i] = MP_INVALID_OS_HANDLE;
        /* (HANDLE)-1 would name this very process: pass "no handle" through as is. */
        if (req->handles[i] == MP_INVALID_OS_HANDLE || req->handles[i] == 0) continue;
        if (!DuplicateHandle(GetCurrentProcess(), MP__H(req->handles[i]), pi.hProcess, &dup, 0,
                             FALSE, DUPLICATE_SAME_ACCESS)) {
            rc = mp__os_err("win32: DuplicateHandle into the child");
            goto fail;
        }
        remote[i] = MP__OSH(dup);
    }
    /* Before the first instruction runs, so nothing the daemon starts escapes it. */
    if (req->daemon && !AssignProcessToJobObject(daemon_job, pi.hProcess)) {
        rc = mp__os_err("win32: AssignProcessToJobObject(daemon job)");
        goto fail;
    }
    if (ResumeThread(pi.hThread) == (DWORD)-1) {
        rc = mp__os_err("win32: ResumeThread");
        goto fail;
    }
    close_h(&pi.hThread);

    /* A child that dies early ends the exchange; its missing report then says so. */
    rc = send_launch(&chan, remote, req->nhandles, req);
    if (rc == 0 || rc == MP_EOF) rc = read_report(&chan);
    /* Closing our end first lets a child still waiting for input end on its own. */
    if (rc < 0) close_h(&chan.pipe);
    if (rc == MP_EOF) {
        DWORD code = reap(pi.hProcess, 5000);
        rc = mp__err(MP_ECHILD,
                     "win32: child exited with code %ld (0x%lx) before it could report; "
                     "does %s call mp_init first in main?",
                     (long)code, (unsigned long)code, req->executable);
        goto fail;
    }
    if (rc < 0) {
        reap(pi.hProcess, 5000);
        goto fail;
    }

    close_h(&chan.pipe);
    close_h(&chan.event);
    mp__free(remote);
    mp__free(cmd);
    mp__free(wcmd);
    mp__free(wexe);
    DeleteProcThreadAttributeList(attrs);
    mp__free(attrs);
    bk->process = pi.hProcess;
    out->pid = (int64_t)pi.dwProcessId;
    out->sentinel = MP__OSH(pi.hProcess);
    out->state = bk;
    return 0;

fail:
    if (pi.hProcess != NULL) {
        /* Handles duplicated into it go with it. */
        reap(pi.hProcess, 0);
        close_h(&pi.hProcess);
    }
    close_h(&pi.hThread);
    close_h(&chan.pipe);
    close_h(&chan.event);
    close_h(&child_end);
    for (int i = 0; i < 3; i++) close_h(&stdio[i]);
    if (attrs != NULL) {
        DeleteProcThreadAttributeList(attrs);
        mp__free(attrs);
    }
    mp__free(remote);
    mp__free(cmd);
    mp__free(wcmd);
    mp__free(wexe);
    mp__free(bk);
    return rc;
}

static int win32_wait(void *state, double timeout, int *exitcode) {
    struct win32_bk *bk = state;
    if (bk == NULL) return mp__err(MP_ESTATE, "win32: process not started");
    int rc = mp__os_handle_wait(MP__OSH(bk->process), timeout);
    if (rc < 0) return rc;
    DWORD code = 0;
    if (!GetExitCodeProcess(bk->process, &code)) return mp__os_err("win32: GetExitCodeProcess");
    *exitcode = code == MP__WIN_TERMINATE ? MP__SIGTERM_CODE : (int)code;
    return 0;
}

static int win32_signal(void *state, int sig) {
    struct win32_bk *bk = state;
    if (sig == MP__SIG_INT)
        return mp__err(MP_ENOTSUP, "win32: interrupt (SIGINT) cannot be sent to a process");
    if (sig != MP__SIG_TERM && sig != MP__SIG_KILL)
        return mp__err(MP_EINVAL, "win32: unknown signal %d", sig);
    if (bk == NULL) return mp__err(MP_ESTATE, "win32: process not started");
    if (!TerminateProcess(bk->process, MP__WIN_TERMINATE)) {
        DWORD e = GetLastError();
        /* Access is denied once the process has ended: that is the no-op case. */
        if (WaitForSingleObject(bk->process, 0) == WAIT_OBJECT_0) return 0;
        return mp__win_err(e, "win32: TerminateProcess");
    }
    return 0;
}

static void win32_release(void *state) {
    struct win32_bk *bk = state;
    if (bk != NULL) {
        close_h(&bk->process);
        mp__free(bk);
    }
}

/* ---- child side ---------------------------------------------------------------- */

struct report_ctx {
    HANDLE pipe;
};

static void child_report(void *ctx, int rc, const char *msg) {
    struct report_ctx *r = ctx;
    if (r->pipe == NULL) return;
    unsigned char buf[MP__REPORT_MAX];
    size_t len = mp__report_encode(rc, msg, buf);
    /* One write, so the parent never sees half a report; a parent that went away
     * is no reason to stop. */
    mp__err_mute();
    (void)mp__os_write_all(MP__OSH(r->pipe), buf, len);
    mp__err_unmute();
    close_h(&r->pipe);
}

static int win32_child_main(int argc, char **argv) {
    struct report_ctx report = {NULL};
    unsigned char hdr[8];
    mp_os_handle *handles = NULL;
    unsigned char *payload = NULL;
    mp__launch launch;
    int rc;

    if (argc < 4) return mp__err(MP_EINVAL, "win32 child: missing launch pipe argument");
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(argv[3], &end, 10);
    if (errno != 0 || end == argv[3] || *end != '\0' || v == 0)
        return mp__err(MP_EINVAL, "win32 child: bad launch pipe argument '%s'", argv[3]);
    HANDLE pipe = (HANDLE)(uintptr_t)v;
    /* Inherited handles arrive inheritable: keep it out of our own children. */
    if (!SetHandleInformation(pipe, HANDLE_FLAG_INHERIT, 0))
        return mp__os_err("win32 child: launch pipe");
    report.pipe = pipe; /* the report goes back the same way; it closes the pipe */

    rc = mp__os_read_all(MP__OSH(pipe), hdr, sizeof hdr);
    if (rc == 0 && memcmp(hdr, wire_magic, sizeof wire_magic) != 0)
        rc = mp__err(MP_EPROTO, "win32 child: bad launch header (parent of another build?)");
    if (rc < 0) goto fail;
    uint32_t n = get_u32(hdr + 4);
    if (n > HANDLES_MAX) {
        rc = mp__err(MP_EPROTO, "win32 child: %lu handles announced", (unsigned long)n);
        goto fail;
    }
    handles = mp__calloc(n ? n : 1, sizeof *handles);
    if (handles == NULL) {
        rc = mp__err(MP_ENOMEM, "win32 child: out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        unsigned char b[8];
        rc = mp__os_read_all(MP__OSH(pipe), b, sizeof b);
        if (rc < 0) goto fail;
        handles[i] = (mp_os_handle)get_u64(b);
    }
    unsigned char lb[8];
    rc = mp__os_read_all(MP__OSH(pipe), lb, sizeof lb);
    if (rc < 0) goto fail;
    uint64_t len = get_u64(lb);
    if (len > (uint64_t)(SIZE_MAX / 2)) {
        rc = mp__err(MP_EPROTO, "win32 child: payload of %llu bytes announced",
                     (unsigned long long)len);
        goto fail;
    }
    payload = mp__malloc(len ? (size_t)len : 1);
    if (payload == NULL) {
        rc = mp__err(MP_ENOMEM, "win32 child: out of memory for a %llu-byte payload",
                     (unsigned long long)len);
        goto fail;
    }
    rc = mp__os_read_all(MP__OSH(pipe), payload, (size_t)len);
    if (rc < 0) goto fail;

    rc = mp__launch_decode(payload, (size_t)len, &launch);
    if (rc < 0) goto fail;
    /* The launch points into payload and owns handles from here on; the process
     * ends with the target, so neither is freed. */
    mp__child_run(&launch, handles, n, child_report, &report);
    mp__os_exit(1); /* only a failed bootstrap comes back */
    return 0;

fail:
    if (rc == MP_EOF)
        rc = mp__err(MP_EPROTO, "win32 child: launch pipe closed early (parent gone?)");
    child_report(&report, rc, mp_last_error_message());
    mp__free(payload);
    mp__free(handles);
    return rc;
}

const struct mp_backend_ops mp__backend_win32 = {
    .version = MP_BACKEND_OPS_VERSION,
    .name = "win32",
    .flags = 0,
    .start = win32_start,
    .wait = win32_wait,
    .signal = win32_signal,
    .release = win32_release,
    .child_main = win32_child_main,
    .shutdown = NULL,
};
