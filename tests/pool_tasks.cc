// What the pool tests' workers run: task functions, record functions, initializers
// (pool_tasks.h). No GoogleTest here: this code runs in worker processes and threads.
#include "pool_tasks.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "helpers.h"

#ifdef _WIN32
#include <windows.h>
#endif

namespace mpt {

// ---- the worker's side: what the initializer keeps for the tasks ----

namespace {

struct WorkerEnv {
    int64_t tag = -1;
    mp_event *gate = nullptr;
    mp_queue *report = nullptr;
    mp_lock *lock = nullptr;
    int inits = 0;
};

// Per thread, because the workers of the dummy backend are threads of one process. A
// worker process that ran its initializer on another thread than its tasks still finds
// its own through g_env. Every env stays reachable (no leak report) until exit.
thread_local WorkerEnv *t_env = nullptr;
thread_local int t_inits = 0;
thread_local int t_runs = 0;
std::atomic<WorkerEnv *> g_env{nullptr};
std::mutex g_envs_mu;
std::vector<std::unique_ptr<WorkerEnv>> g_envs;

// The test's "release" for task_sleep: the pid of the test process while it is open. A
// forked worker inherits the variable but has another pid, so only threads of the test
// process itself (dummy workers) ever see it open.
std::atomic<int64_t> g_release_pid{0};
bool released() { return g_release_pid.load() == mp_getpid(); }

// Memory the OOM-like crash allocates (kept reachable until the process dies).
void *volatile g_sink = nullptr;

WorkerEnv *env() {
    WorkerEnv *e = t_env;
    return e ? e : g_env.load();
}

// An int item, or the first int of an argument tuple or list.
bool item_of(const mp_value *arg, int64_t *x) {
    mp_value_type t = mp_value_get_type(arg);
    if (t == MP_VALUE_INT) {
        *x = mp_value_as_int(arg);
        return true;
    }
    if ((t == MP_VALUE_TUPLE || t == MP_VALUE_LIST) && mp_value_len(arg) >= 1 &&
        mp_value_get_type(mp_value_item(arg, 0)) == MP_VALUE_INT) {
        *x = mp_value_as_int(mp_value_item(arg, 0));
        return true;
    }
    return false;
}

int64_t int_at(const mp_value *arg, size_t i) { return mp_value_as_int(mp_value_item(arg, i)); }

mp_value *report_value(const char *kind, int64_t x, int64_t tag) {
    mp_value *v = mp_value_list_new();
    mp_value_list_append(v, mp_value_str(kind));
    mp_value_list_append(v, mp_value_int(x));
    mp_value_list_append(v, mp_value_int(mp_getpid()));
    mp_value_list_append(v, mp_value_int(current_thread_id()));
    mp_value_list_append(v, mp_value_int(tag));
    return v;
}

// Puts (kind, x, pid, tid, tag) on the report queue from the initializer.
int report(const char *kind, int64_t x) {
    WorkerEnv *e = env();
    if (!e || !e->report)
        return mp_task_error(MP_ESTATE, "no report queue: the pool needs init_env");
    mp_value *v = report_value(kind, x, e->tag);
    int rc = mp_queue_put(e->report, v, kWait);
    mp_value_free(v);
    return rc == 0 ? 0
                   : mp_task_error(rc, "report %s %lld: %s", kind, (long long)x, mp_err_name(rc));
}

int set_int(mp_value **result, int64_t v) {
    *result = mp_value_int(v);
    return *result ? 0 : MP_ENOMEM;
}

// Dies the way kind says; returns only if it did not.
void die(int kind) {
    disable_crash_reports();
    switch (kind) {
    case kCrashSegv: {
        // Address 16, not NULL, so UBSan does not intercept it (as tgt_segv).
        volatile uintptr_t addr = 16;
        *(volatile int *)addr = 1;
        break;
    }
    case kCrashAbort:
        abort();
    case kCrashExit:
        exit(3);
    case kCrashOom: {
        // What the OOM killer does to a process that allocated too much: SIGKILL after
        // the allocation (the test cannot make the real one act on a shared machine).
        const size_t n = (size_t)64 << 20;
        char *p = (char *)malloc(n);
        if (p)
            for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        g_sink = p;
#ifdef _WIN32
        TerminateProcess(GetCurrentProcess(), 0xC0000017u); // STATUS_NO_MEMORY
#else
        raise(SIGKILL);
#endif
        break;
    }
    default:
        break;
    }
}

} // namespace

int init_env(mp_args *a) {
    std::unique_ptr<WorkerEnv> e(new WorkerEnv);
    e->tag = mp_args_int(a, 0);
    e->gate = mp_args_event(a, 1);
    e->report = mp_args_queue(a, 2);
    e->lock = mp_args_lock(a, 3);
    e->inits = ++t_inits;
    WorkerEnv *raw = e.get();
    {
        std::lock_guard<std::mutex> lk(g_envs_mu);
        g_envs.push_back(std::move(e));
    }
    t_env = raw;
    g_env = raw;
    if (raw->report) {
        mp_value *v = report_value("init", raw->tag, raw->tag);
        int rc = mp_queue_put(raw->report, v, kWait);
        mp_value_free(v);
        if (rc != 0) return rc;
    }
    return 0;
}

int init_fail(mp_args *a) {
    int code = (int)mp_args_int(a, 0);
    return mp_task_error(code, "init refused %d", code);
}

int init_wait(mp_args *a) {
    mp_event *e = mp_args_event(a, 0);
    return e ? mp_event_wait(e, kWait) : MP_EINVAL;
}

int init_crash(mp_args *a) {
    die((int)mp_args_int(a, 0));
    return 0;
}

// ---- tasks ----

int task_affine(const mp_value *arg, mp_value **result) {
    int64_t x = 0;
    if (!item_of(arg, &x))
        return mp_task_error(MP_EINVAL, "task_affine: not an int but %s",
                             mp_value_type_name(mp_value_get_type(arg)));
    return set_int(result, affine(x));
}

int task_echo(const mp_value *arg, mp_value **result) {
    *result = arg ? mp_value_copy(arg) : nullptr;
    return arg && !*result ? MP_ENOMEM : 0;
}

int task_none(const mp_value *arg, mp_value **result) {
    (void)arg;
    *result = nullptr;
    return 0;
}

int task_weighted(const mp_value *arg, mp_value **result) {
    mp_value_type t = mp_value_get_type(arg);
    if (t != MP_VALUE_TUPLE && t != MP_VALUE_LIST)
        return mp_task_error(MP_EINVAL, "task_weighted: not an argument tuple but %s",
                             mp_value_type_name(t));
    std::vector<int64_t> v;
    for (size_t i = 0; i < mp_value_len(arg); i++) {
        const mp_value *it = mp_value_item(arg, i);
        if (mp_value_get_type(it) != MP_VALUE_INT)
            return mp_task_error(MP_EINVAL, "task_weighted: argument %zu is not an int", i);
        v.push_back(mp_value_as_int(it));
    }
    return set_int(result, weighted(v));
}

int task_argc(const mp_value *arg, mp_value **result) {
    mp_value *v = mp_value_list_new();
    mp_value_list_append(v, mp_value_int((int64_t)mp_value_len(arg)));
    mp_value_list_append(v, mp_value_int(arg ? (int64_t)mp_value_get_type(arg) : -1));
    *result = v;
    return v ? 0 : MP_ENOMEM;
}

int task_fail_some(const mp_value *arg, mp_value **result) {
    int64_t x = 0;
    if (!item_of(arg, &x)) return mp_task_error(MP_EINVAL, "task_fail_some: not an int");
    if (fails(x)) return mp_task_error(MP_EINVAL, "bad item %lld", (long long)x);
    return set_int(result, affine(x));
}

int task_fail_plain(const mp_value *arg, mp_value **result) {
    (void)arg;
    (void)result;
    return MP_EIO;
}

int task_where(const mp_value *arg, mp_value **result) {
    (void)arg;
    WorkerEnv *e = env();
    mp_value *v = mp_value_list_new();
    mp_value_list_append(v, mp_value_int(mp_getpid()));
    mp_value_list_append(v, mp_value_int(current_thread_id()));
    mp_value_list_append(v, mp_value_int(++t_runs));
    mp_value_list_append(v, mp_value_int(e ? e->tag : -1));
    mp_value_list_append(v, mp_value_int(e ? e->inits : 0));
    *result = v;
    return v ? 0 : MP_ENOMEM;
}

int task_gated(const mp_value *arg, mp_value **result) {
    int64_t x = 0;
    if (!item_of(arg, &x)) return mp_task_error(MP_EINVAL, "task_gated: not an int");
    WorkerEnv *e = env();
    if (!e || !e->gate)
        return mp_task_error(MP_ESTATE, "task_gated: no gate: the pool needs init_env");
    int rc = report("started", x);
    if (rc != 0) return rc;
    rc = mp_event_wait(e->gate, kCap);
    if (rc != 0) return mp_task_error(rc, "task_gated %lld: the gate did not open", (long long)x);
    return set_int(result, affine(x));
}

int task_report(const mp_value *arg, mp_value **result) {
    int64_t x = 0;
    if (!item_of(arg, &x)) return mp_task_error(MP_EINVAL, "task_report: not an int");
    int rc = report("ran", x);
    return rc != 0 ? rc : set_int(result, affine(x));
}

int task_lock(const mp_value *arg, mp_value **result) {
    int64_t mode = 0;
    if (!item_of(arg, &mode)) return mp_task_error(MP_EINVAL, "task_lock: not an int");
    WorkerEnv *e = env();
    if (!e || !e->lock)
        return mp_task_error(MP_ESTATE, "task_lock: no lock: the pool needs init_env");
    int rc = mp_lock_acquire(e->lock, mode == 0 ? 0.0 : kWait);
    if (rc == MP_ETIMEDOUT && mode == 0) return set_int(result, 0);
    if (rc != 0 && rc != MP_EOWNERDEAD)
        return mp_task_error(rc, "task_lock: acquire: %s", mp_err_name(rc));
    rc = mp_lock_release(e->lock);
    if (rc != 0) return mp_task_error(rc, "task_lock: release: %s", mp_err_name(rc));
    return set_int(result, 1);
}

int task_sleep(const mp_value *arg, mp_value **result) {
    int64_t x = int_at(arg, 0);
    double seconds = mp_value_as_float(mp_value_item(arg, 1));
    int rc = report("sleep", x);
    if (rc != 0) return rc;
    double end = now() + seconds;
    while (now() < end && !released()) sleep_for(0.01);
    return set_int(result, affine(x));
}

int task_crash(const mp_value *arg, mp_value **result) {
    int64_t x = int_at(arg, 0);
    int kind = (int)int_at(arg, 1);
    int64_t target = int_at(arg, 2);
    if (x != target) return set_int(result, affine(x));
    int rc = report("crash", x);
    if (rc != 0) return rc;
    if (kind == kCrashKilled) {
        WorkerEnv *e = env();
        if (e && e->gate) mp_event_wait(e->gate, kCap);
        return mp_task_error(MP_ESTATE, "task_crash %lld: was not killed", (long long)x);
    }
    die(kind);
    return mp_task_error(MP_ESTATE, "task_crash %lld: survived %s", (long long)x, crash_name(kind));
}

const char *crash_name(int kind) {
    switch (kind) {
    case kCrashSegv:
        return "segfault";
    case kCrashAbort:
        return "abort";
    case kCrashExit:
        return "exit(3)";
    case kCrashKilled:
        return "SIGKILL from outside";
    case kCrashOom:
        return "OOM-like SIGKILL";
    default:
        return "?";
    }
}

// ---- records ----

int rec_affine(const void *in, void *out) {
    if (!in || !out) return MP_EINVAL;
    Rec r;
    memcpy(&r, in, sizeof r); // records need not be aligned
    int64_t v = rec_expected(r);
    memcpy(out, &v, sizeof v);
    return 0;
}

int rec_fail(const void *in, void *out) {
    Rec r;
    memcpy(&r, in, sizeof r);
    if (r.x == 13) return MP_EINVAL;
    return rec_affine(in, out);
}

int rec_no_out(const void *in, void *out) { return in && !out ? 0 : MP_EINVAL; }

int rec_hash64k(const void *in, void *out) {
    uint64_t h = fnv1a(in, kBigRec);
    memcpy(out, &h, sizeof h);
    return 0;
}

int rec_crash(const void *in, void *out) {
    Rec r;
    memcpy(&r, in, sizeof r);
    if (r.salt == kCrashSalt) {
        report("crash", r.x);
        die(kCrashSegv);
        return MP_ESTATE;
    }
    return rec_affine(in, out);
}

// ---- values ----

int64_t weighted(const std::vector<int64_t> &args) {
    int64_t s = 0;
    for (size_t i = 0; i < args.size(); i++) s += (int64_t)(i + 1) * args[i];
    return s;
}

Value int_list(size_t n, int64_t first) {
    mp_value *l = mp_value_list_new();
    for (size_t i = 0; i < n; i++) mp_value_list_append(l, mp_value_int(first + (int64_t)i));
    return Value(l);
}

Value starmap_args(size_t n) {
    mp_value *l = mp_value_list_new();
    for (size_t i = 0; i < n; i++) {
        mp_value *t = mp_value_tuple_new();
        mp_value_list_append(t, mp_value_int((int64_t)i));
        mp_value_list_append(t, mp_value_int((int64_t)((i * i) % 1000)));
        mp_value_list_append(t, mp_value_int(5));
        mp_value_list_append(l, t);
    }
    return Value(l);
}

int64_t starmap_expected(size_t i) { return weighted({(int64_t)i, (int64_t)((i * i) % 1000), 5}); }

Value ints(std::initializer_list<int64_t> v, bool tuple) {
    mp_value *l = tuple ? mp_value_tuple_new() : mp_value_list_new();
    for (int64_t x : v) mp_value_list_append(l, mp_value_int(x));
    return Value(l);
}

std::string diff_ints(const mp_value *results, const std::vector<int64_t> &want) {
    if (mp_value_get_type(results) != MP_VALUE_LIST)
        return std::string("not a list but ") + mp_value_type_name(mp_value_get_type(results));
    if (mp_value_len(results) != want.size())
        return "length " + std::to_string(mp_value_len(results)) + ", want " +
               std::to_string(want.size());
    for (size_t i = 0; i < want.size(); i++) {
        const mp_value *v = mp_value_item(results, i);
        if (mp_value_get_type(v) != MP_VALUE_INT || mp_value_as_int(v) != want[i])
            return "item " + std::to_string(i) + " is " +
                   (mp_value_get_type(v) == MP_VALUE_INT
                        ? std::to_string(mp_value_as_int(v))
                        : mp_value_type_name(mp_value_get_type(v))) +
                   ", want " + std::to_string(want[i]);
    }
    return "";
}

void set_sleep_release(bool open) { g_release_pid = open ? mp_getpid() : 0; }

void forget_worker_env() { g_env = nullptr; }

} // namespace mpt
