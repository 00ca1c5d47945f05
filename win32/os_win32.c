/* The OS layer for Windows (core/os.h): clocks, ids, CPU counts, random bytes, error
 * translation, handles, the global lock, process exit, threads and libraries.
 * Plain Win32 (MSVC-compatible): no pthreads here even though mingw offers them. */
#include "win32.h"

#include <bcrypt.h>
#include <errno.h>
#include <process.h>
#include <stdio.h>
#include <string.h>

/* ---- small helpers shared through win32.h ------------------------------------ */

wchar_t *mp__win_to_wide(const char *s) {
    if (s == NULL) {
        mp__err(MP_EINVAL, "NULL string");
        return NULL;
    }
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) {
        mp__win_err(GetLastError(), "MultiByteToWideChar (is the string UTF-8?)");
        return NULL;
    }
    wchar_t *w = mp__malloc((size_t)n * sizeof(wchar_t));
    if (w == NULL) {
        mp__err(MP_ENOMEM, "out of memory converting a string");
        return NULL;
    }
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        mp__win_err(GetLastError(), "MultiByteToWideChar");
        mp__free(w);
        return NULL;
    }
    return w;
}

char *mp__win_to_utf8(const wchar_t *w) {
    if (w == NULL) {
        mp__err(MP_EINVAL, "NULL string");
        return NULL;
    }
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    if (n <= 0) {
        mp__win_err(GetLastError(), "WideCharToMultiByte");
        return NULL;
    }
    char *s = mp__malloc((size_t)n);
    if (s == NULL) {
        mp__err(MP_ENOMEM, "out of memory converting a string");
        return NULL;
    }
    if (WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n) {
        mp__win_err(GetLastError(), "WideCharToMultiByte");
        mp__free(s);
        return NULL;
    }
    return s;
}

wchar_t *mp__win_module_path(HMODULE mod) {
    /* GetModuleFileNameW truncates silently on old systems, so grow until the
     * result is shorter than the buffer; long paths reach 32767 characters. */
    for (DWORD cap = MAX_PATH; cap <= 65536; cap *= 2) {
        wchar_t *buf = mp__malloc(cap * sizeof(wchar_t));
        if (buf == NULL) {
            mp__err(MP_ENOMEM, "out of memory for a module path");
            return NULL;
        }
        SetLastError(0);
        DWORD n = GetModuleFileNameW(mod, buf, cap);
        DWORD e = GetLastError();
        if (n == 0) {
            mp__free(buf);
            mp__win_err(e, "GetModuleFileNameW");
            return NULL;
        }
        if (n < cap - 1 && e != ERROR_INSUFFICIENT_BUFFER) return buf;
        mp__free(buf);
    }
    mp__err(MP_ETOOBIG, "GetModuleFileNameW: path too long");
    return NULL;
}

DWORD mp__win_timeout_ms(double seconds) {
    if (mp__forever(seconds)) return INFINITE;
    double ms = mp__timeout(seconds) * 1000.0;
    if (ms >= (double)(INFINITE - 1)) return INFINITE - 1;
    DWORD whole = (DWORD)ms;
    return (double)whole < ms ? whole + 1 : whole;
}

/* ---- errors ------------------------------------------------------------------ */

static int map_win_error(DWORD code) {
    switch (code) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_MOD_NOT_FOUND:
    case ERROR_PROC_NOT_FOUND:
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
    case ERROR_INVALID_DRIVE:
        return MP_ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_PRIVILEGE_NOT_HELD:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
        return MP_EPERM;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_COMMITMENT_LIMIT:
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_NOT_ENOUGH_QUOTA:
        return MP_ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES:
        return MP_ELIMIT;
    case ERROR_INVALID_HANDLE:
        return MP_EBADF;
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_FUNCTION:
    case ERROR_INVALID_DATA:
    case ERROR_NO_UNICODE_TRANSLATION:
    case ERROR_BAD_EXE_FORMAT:
        return MP_EINVAL;
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
    case ERROR_PIPE_NOT_CONNECTED:
        return MP_EPIPE;
    case ERROR_HANDLE_EOF:
        return MP_EOF;
    case WAIT_TIMEOUT:
    case ERROR_TIMEOUT:
    case ERROR_SEM_TIMEOUT:
        return MP_ETIMEDOUT;
    case ERROR_ALREADY_EXISTS:
    case ERROR_FILE_EXISTS:
        return MP_EEXIST;
    case ERROR_NOT_SUPPORTED:
    case ERROR_CALL_NOT_IMPLEMENTED:
        return MP_ENOTSUP;
    case ERROR_OPERATION_ABORTED:
        return MP_EINTR;
    case ERROR_PIPE_BUSY:
    case ERROR_IO_PENDING:
    case ERROR_IO_INCOMPLETE:
        return MP_EAGAIN;
    case ERROR_MORE_DATA:
    case ERROR_INSUFFICIENT_BUFFER:
    case ERROR_FILENAME_EXCED_RANGE:
        return MP_ETOOBIG;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
        return MP_EFULL;
    default:
        return MP_ESYS;
    }
}

int mp__win_err(unsigned long code, const char *what) {
    char text[512];
    wchar_t *wmsg = NULL;
    DWORD n = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM |
                                 FORMAT_MESSAGE_IGNORE_INSERTS,
                             NULL, code, 0, (LPWSTR)&wmsg, 0, NULL);
    text[0] = '\0';
    if (n > 0 && wmsg != NULL) {
        int len =
            WideCharToMultiByte(CP_UTF8, 0, wmsg, (int)n, text, (int)sizeof text - 1, NULL, NULL);
        text[len > 0 ? len : 0] = '\0';
    }
    if (wmsg != NULL) LocalFree(wmsg);
    /* System messages end in ".\r\n", which reads badly inside a longer sentence. */
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                       text[len - 1] == '.'))
        text[--len] = '\0';
    if (len == 0) snprintf(text, sizeof text, "unknown error");
    return mp__err_os(map_win_error(code), (int)code, "%s: %s (error %lu)",
                      what ? what : "system call", text, (unsigned long)code);
}

int mp__os_err(const char *what) {
    DWORD code = GetLastError();
    if (code == ERROR_SUCCESS && errno != 0) {
        /* A C runtime call failed without touching GetLastError. */
        int e = errno;
        int rc = e == ENOMEM                 ? MP_ENOMEM
                 : e == EINVAL               ? MP_EINVAL
                 : e == ENOENT               ? MP_ENOENT
                 : e == EACCES || e == EPERM ? MP_EPERM
                 : e == EBADF                ? MP_EBADF
                 : e == EAGAIN               ? MP_EAGAIN
                 : e == EPIPE                ? MP_EPIPE
                 : e == EEXIST               ? MP_EEXIST
                 : e == EINTR                ? MP_EINTR
                                             : MP_ESYS;
        return mp__err_os(rc, e, "%s: %s", what ? what : "system call", strerror(e));
    }
    return mp__win_err(code, what);
}

/* ---- time, ids, CPUs, randomness ---------------------------------------------- */

int mp__os_cpu(void) { return (int)GetCurrentProcessorNumber(); }

double mp__os_monotonic(void) {
    LARGE_INTEGER now, qpc_freq;
    /* Both never fail since Windows XP; the frequency is a cheap shared-page read. */
    QueryPerformanceFrequency(&qpc_freq);
    QueryPerformanceCounter(&now);
    /* Split so a large counter keeps its sub-microsecond part in the double. */
    long long f = qpc_freq.QuadPart;
    return (double)(now.QuadPart / f) + (double)(now.QuadPart % f) / (double)f;
}

void mp__os_sleep(double seconds) {
    if (!(seconds > 0)) {
        Sleep(0);
        return;
    }
    /* Sleep may return up to a timer tick early; loop on the clock so callers can
     * rely on "at least seconds". */
    double deadline = mp__os_monotonic() + seconds;
    for (;;) {
        double left = deadline - mp__os_monotonic();
        if (left <= 0) return;
        Sleep(mp__win_timeout_ms(left));
    }
}

int64_t mp__os_getpid(void) { return (int64_t)GetCurrentProcessId(); }

int64_t mp__os_thread_id(void) { return (int64_t)GetCurrentThreadId(); }

int mp__os_cpu_count(void) {
    DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    if (n == 0) {
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        n = si.dwNumberOfProcessors;
    }
    return n > 0 ? (int)n : 1;
}

int mp__os_process_cpu_count(void) {
    DWORD_PTR proc = 0, sys = 0;
    /* The masks cover one processor group only: a process spanning groups gets
     * zeros, and an unrestricted one equals the system mask. In both cases every
     * CPU of the machine is available. */
    if (!GetProcessAffinityMask(GetCurrentProcess(), &proc, &sys) || proc == 0 || proc == sys)
        return mp__os_cpu_count();
    int n = 0;
    for (; proc != 0; proc &= proc - 1) n++;
    return n;
}

int mp__os_random(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        ULONG chunk = n > 0x40000000u ? 0x40000000u : (ULONG)n;
        NTSTATUS st = BCryptGenRandom(NULL, p, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
        if (st < 0)
            return mp__err(MP_ESYS, "BCryptGenRandom failed (status 0x%08lx)", (unsigned long)st);
        p += chunk;
        n -= chunk;
    }
    return 0;
}

static INIT_ONCE self_exe_once = INIT_ONCE_STATIC_INIT;
static char *self_exe_path;

static BOOL CALLBACK self_exe_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    wchar_t *w = mp__win_module_path(NULL);
    if (w != NULL) {
        self_exe_path = mp__win_to_utf8(w); /* kept for the life of the process */
        mp__free(w);
    }
    return TRUE;
}

const char *mp__os_self_exe(void) {
    InitOnceExecuteOnce(&self_exe_once, self_exe_init, NULL, NULL);
    return self_exe_path;
}

/* ---- handles ----------------------------------------------------------------- */

static bool handle_is_null(mp_os_handle h) { return h == MP_INVALID_OS_HANDLE || h == 0; }

int mp__os_handle_close(mp_os_handle h) {
    if (handle_is_null(h)) return 0;
    if (!CloseHandle(MP__H(h))) return mp__os_err("CloseHandle");
    return 0;
}

int mp__os_handle_dup(mp_os_handle h, mp_os_handle *out) {
    HANDLE dup = NULL;
    *out = MP_INVALID_OS_HANDLE;
    /* (HANDLE)-1 is also the current-process pseudo handle: never duplicate it. */
    if (handle_is_null(h)) return mp__err(MP_EBADF, "DuplicateHandle: invalid handle");
    if (!DuplicateHandle(GetCurrentProcess(), MP__H(h), GetCurrentProcess(), &dup, 0, FALSE,
                         DUPLICATE_SAME_ACCESS))
        return mp__os_err("DuplicateHandle");
    *out = MP__OSH(dup);
    return 0;
}

int mp__os_handle_wait(mp_os_handle h, double timeout) {
    if (handle_is_null(h)) return mp__err(MP_EBADF, "WaitForSingleObject: invalid handle");
    double deadline = mp__deadline(timeout);
    for (;;) {
        DWORD r = WaitForSingleObject(MP__H(h), mp__win_timeout_ms(mp__left(deadline)));
        if (r == WAIT_OBJECT_0 || r == WAIT_ABANDONED) return 0;
        if (r == WAIT_FAILED) return mp__os_err("WaitForSingleObject");
        /* Waits can end a tick early; only report expiry once it really passed. */
        if (mp__left(deadline) == 0) return MP_ETIMEDOUT;
    }
}

/* Pipes and files opened for synchronous I/O. */
int mp__os_write_all(mp_os_handle h, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        DWORD chunk = n > 0x10000000u ? 0x10000000u : (DWORD)n, done = 0;
        if (!WriteFile(MP__H(h), p, chunk, &done, NULL)) {
            DWORD e = GetLastError();
            if (e == ERROR_BROKEN_PIPE || e == ERROR_NO_DATA)
                return mp__err(MP_EPIPE, "write: the other end closed");
            return mp__win_err(e, "WriteFile");
        }
        p += done;
        n -= done;
    }
    return 0;
}

int mp__os_read_all(mp_os_handle h, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        DWORD chunk = n > 0x10000000u ? 0x10000000u : (DWORD)n, got = 0;
        if (!ReadFile(MP__H(h), p, chunk, &got, NULL)) {
            DWORD e = GetLastError();
            if (e == ERROR_BROKEN_PIPE || e == ERROR_HANDLE_EOF)
                return mp__err(MP_EOF, "read: the other end closed");
            return mp__win_err(e, "ReadFile");
        }
        if (got == 0) return mp__err(MP_EOF, "read: the other end closed");
        p += got;
        n -= got;
    }
    return 0;
}

int mp__os_self_sentinel(mp_os_handle *out) {
    *out = MP_INVALID_OS_HANDLE;
    /* A real handle (not the pseudo one) so it can be duplicated into children;
     * query rights let them read our pid and exit code, nothing more. */
    HANDLE h =
        OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, GetCurrentProcessId());
    if (h == NULL) return mp__os_err("OpenProcess(self)");
    *out = MP__OSH(h);
    return 0;
}

/* ---- the global lock ---------------------------------------------------------- */

static INIT_ONCE lock_once = INIT_ONCE_STATIC_INIT;
static CRITICAL_SECTION global_lock;

static BOOL CALLBACK lock_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    InitializeCriticalSection(&global_lock); /* cannot fail since Vista */
    return TRUE;
}

void mp__os_global_lock(void) {
    InitOnceExecuteOnce(&lock_once, lock_init, NULL, NULL);
    EnterCriticalSection(&global_lock);
}

void mp__os_global_unlock(void) { LeaveCriticalSection(&global_lock); }

/* ---- exit ------------------------------------------------------------------- */

void mp__os_exit(int code) {
    fflush(NULL);
    ExitProcess((UINT)code);
}

void mp__os_describe_exit(int exitcode, char *buf, size_t n) {
    DWORD code = (DWORD)exitcode;
    const char *what = NULL;
    switch (code) {
    case 0xC0000005u:
        what = "access violation";
        break;
    case 0xC000001Du:
        what = "illegal instruction";
        break;
    case 0xC0000094u:
        what = "integer division by zero";
        break;
    case 0xC00000FDu:
        what = "stack overflow";
        break;
    case 0xC0000409u:
        what = "stack buffer overrun (abort)";
        break;
    case 0xC0000017u:
        what = "out of memory";
        break;
    default:
        break;
    }
    if (what != NULL)
        snprintf(buf, n, "ended with exception 0x%08lx (%s)", (unsigned long)code, what);
    else if (exitcode == -15)
        snprintf(buf, n, "was terminated (TerminateProcess)");
    else if ((code & 0xC0000000u) == 0xC0000000u)
        snprintf(buf, n, "ended with exception 0x%08lx", (unsigned long)code);
    else
        snprintf(buf, n, "exited with code %d", exitcode);
}

/* A new process has no parent's handlers to skip: exit() runs them all, and the
 * target's (registered later) first, then before_exit. */
static void (*g_before_exit)(void);

static void run_before_exit(void) {
    if (g_before_exit != NULL) g_before_exit();
}

void mp__os_exit_mark(void (*before_exit)(void)) {
    g_before_exit = before_exit;
    atexit(run_before_exit);
}

void mp__os_exit_handlers(int code) { exit(code); }

/* ---- thread-local keys ----------------------------------------------------------- */

struct mp__tls {
    DWORD slot;
};

int mp__os_tls_new(void (*dtor)(void *), mp__tls **out) {
    *out = mp__malloc(sizeof **out);
    if (*out == NULL) return mp__err(MP_ENOMEM, "tls: out of memory");
    /* A fiber-local slot: its callback runs at each thread's exit, as a pthread key's. */
    (*out)->slot = FlsAlloc((PFLS_CALLBACK_FUNCTION)(void (*)(void))dtor);
    if ((*out)->slot == FLS_OUT_OF_INDEXES) {
        int rc = mp__os_err("FlsAlloc");
        mp__free(*out);
        *out = NULL;
        return rc;
    }
    return 0;
}

int mp__os_tls_set(mp__tls *k, void *v) {
    if (!FlsSetValue(k->slot, v)) return mp__os_err("FlsSetValue");
    return 0;
}

/* ---- mutex and condition variable ----------------------------------------------- */

struct mp__mutex {
    SRWLOCK l;
};

struct mp__cond {
    CONDITION_VARIABLE c;
};

int mp__os_mutex_new(mp__mutex **out) {
    *out = mp__malloc(sizeof **out);
    if (*out == NULL) return mp__err(MP_ENOMEM, "mutex: out of memory");
    InitializeSRWLock(&(*out)->l);
    return 0;
}

void mp__os_mutex_free(mp__mutex *m) { mp__free(m); }

void mp__os_mutex_lock(mp__mutex *m) { AcquireSRWLockExclusive(&m->l); }

void mp__os_mutex_unlock(mp__mutex *m) { ReleaseSRWLockExclusive(&m->l); }

int mp__os_cond_new(mp__cond **out) {
    *out = mp__malloc(sizeof **out);
    if (*out == NULL) return mp__err(MP_ENOMEM, "condition variable: out of memory");
    InitializeConditionVariable(&(*out)->c);
    return 0;
}

void mp__os_cond_free(mp__cond *c) { mp__free(c); }

int mp__os_cond_wait(mp__cond *c, mp__mutex *m, double timeout) {
    if (!SleepConditionVariableSRW(&c->c, &m->l, mp__win_timeout_ms(timeout), 0))
        return GetLastError() == ERROR_TIMEOUT ? MP_ETIMEDOUT : 0;
    return 0;
}

void mp__os_cond_signal(mp__cond *c) { WakeConditionVariable(&c->c); }

void mp__os_cond_broadcast(mp__cond *c) { WakeAllConditionVariable(&c->c); }

/* ---- threads (the dummy backend) ---------------------------------------------- */

struct mp__thread {
    HANDLE h;
    unsigned tid;
};

/* The start arguments live apart from the thread object so mp__os_thread_free may
 * detach (and free) the object before the thread has even begun. */
struct thread_boot {
    void (*fn)(void *);
    void *arg;
};

static unsigned __stdcall thread_trampoline(void *p) {
    struct thread_boot boot = *(struct thread_boot *)p;
    mp__free(p);
    boot.fn(boot.arg);
    return 0;
}

int mp__os_thread_start(void (*fn)(void *), void *arg, mp__thread **out) {
    *out = NULL;
    mp__thread *t = mp__calloc(1, sizeof *t);
    struct thread_boot *boot = mp__malloc(sizeof *boot);
    if (t == NULL || boot == NULL) {
        mp__free(t);
        mp__free(boot);
        return mp__err(MP_ENOMEM, "out of memory starting a thread");
    }
    boot->fn = fn;
    boot->arg = arg;
    /* _beginthreadex, not CreateThread: the thread uses the C runtime. */
    uintptr_t h = _beginthreadex(NULL, 0, thread_trampoline, boot, 0, &t->tid);
    if (h == 0) {
        int rc = mp__os_err("_beginthreadex");
        mp__free(t);
        mp__free(boot);
        return rc;
    }
    t->h = (HANDLE)h;
    *out = t;
    return 0;
}

mp_os_handle mp__os_thread_sentinel(const mp__thread *t) {
    return t ? MP__OSH(t->h) : MP_INVALID_OS_HANDLE;
}

int mp__os_thread_join(mp__thread *t, double timeout) {
    if (t == NULL) return mp__err(MP_EINVAL, "thread join: NULL thread");
    return mp__os_handle_wait(MP__OSH(t->h), timeout);
}

int64_t mp__os_thread_native_id(const mp__thread *t) { return t ? (int64_t)t->tid : 0; }

void mp__os_thread_free(mp__thread *t) {
    if (t == NULL) return;
    /* Closing the handle of a running thread detaches it; it keeps running. */
    CloseHandle(t->h);
    mp__free(t);
}

/* ---- daemonic children ----------------------------------------------------- */

int mp__os_die_with_parent(mp_os_handle parent_sentinel) {
    (void)parent_sentinel;
    /* Nothing to do here: the win32 backend put this process in its parent's
     * kill-on-close job before it ran, so the kernel ends it with the parent. */
    return 0;
}

/* ---- libraries, init ----------------------------------------------------------- */

int mp__os_dlopen(const char *path) {
    wchar_t *w = mp__win_to_wide(path);
    if (w == NULL) return mp__err(MP_EINVAL, "dlopen: bad path");
    /* The altered search path finds a library's dependencies next to it. */
    HMODULE m = LoadLibraryExW(w, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    int rc = 0;
    if (m == NULL) {
        DWORD e = GetLastError();
        char what[64 + MAX_PATH];
        snprintf(what, sizeof what, "LoadLibrary(%s)", path);
        rc = mp__win_err(e, what);
    }
    mp__free(w);
    return rc; /* the library stays loaded for the life of the process */
}

int mp__os_init(void) {
    InitOnceExecuteOnce(&lock_once, lock_init, NULL, NULL);
    if (mp__os_self_exe() == NULL)
        return mp__err(MP_ESYS, "cannot find the path of this executable");
    return 0;
}
