#include "targets.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <csignal>

#include "helpers.h"

namespace mpt {

static std::string i64(int64_t v) { return std::to_string((long long)v); }

int tgt_return_arg(mp_args *a) { return (int)mp_args_int(a, 0); }

int tgt_block(mp_args *a) {
    mp_os_handle rel = mp_args_os_handle(a, 0);
    mp_os_handle ready = mp_args_os_handle(a, 1);
    int code = (int)mp_args_int(a, 2);
    double cap = mp_args_double(a, 3);
    if (rel == MP_INVALID_OS_HANDLE || ready == MP_INVALID_OS_HANDLE || cap <= 0)
        return kTgtBadArgs;
    char c = 'R';
    if (!write_all(ready, &c, 1)) return kTgtIoError;
    if (wait_readable(rel, cap) != 1) return kTgtCapReached;
    if (!read_exact(rel, &c, 1, 1.0)) return kTgtIoError;
    return code;
}

std::string self_report() {
    mp_process *cur = mp_current_process();
    mp_process *par = mp_parent_process();
    std::vector<std::pair<std::string, std::string>> r;
    r.emplace_back("pid", i64(mp_getpid()));
    r.emplace_back("tid", i64(current_thread_id()));
    r.emplace_back("has_current", cur ? "1" : "0");
    if (cur) {
        const char *n = mp_process_name(cur);
        const char *m = mp_process_start_method(cur);
        r.emplace_back("name", n ? n : "(null)");
        r.emplace_back("daemon", mp_process_daemon(cur) ? "1" : "0");
        r.emplace_back("method", m ? m : "(null)");
        r.emplace_back("cur_pid", i64(mp_process_pid(cur)));
    }
    r.emplace_back("has_parent", par ? "1" : "0");
    if (par) {
        const char *n = mp_process_name(par);
        r.emplace_back("ppid", i64(mp_process_pid(par)));
        r.emplace_back("pname", n ? n : "(null)");
        mp_os_handle h = MP_INVALID_OS_HANDLE;
        int rc = mp_process_sentinel(par, &h);
        if (rc != 0) {
            r.emplace_back("psentinel", std::string("error:") + mp_err_name(rc));
        } else {
            int w = wait_sentinel(h, 0);
            r.emplace_back("psentinel", w == 0 ? "alive" : w == 1 ? "ready" : "error");
        }
    }
    return kv(r);
}

int tgt_report_self(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    return write_msg(out, self_report()) ? 0 : kTgtIoError;
}

int tgt_raise(mp_args *a) {
    disable_crash_reports();
    raise((int)mp_args_int(a, 0));
    return 100; /* not reached when the signal kills */
}

int tgt_segv(mp_args *a) {
    (void)a;
    disable_crash_reports();
    // Address 16, not NULL, so UBSan does not intercept it; through a volatile so
    // the compiler neither warns nor assumes.
    volatile uintptr_t addr = 16;
    *(volatile int *)addr = 1;
    return 100;
}

std::string describe_blob(const void *p, size_t n) {
    char buf[64];
    std::string s = std::to_string(n) + ":";
    if (n <= 32) {
        const unsigned char *b = (const unsigned char *)p;
        for (size_t i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "%02x", b[i]);
            s += buf;
        }
    } else {
        snprintf(buf, sizeof buf, "fnv%016" PRIx64, fnv1a(p, n));
        s += buf;
    }
    return s;
}

std::string describe_args(const mp_args *a, size_t from) {
    std::string s;
    size_t n = mp_args_count(a);
    for (size_t i = from; i < n; i++) {
        switch (mp_args_type(a, i)) {
        case MP_ARG_INT:
            s += "int:" + i64(mp_args_int(a, i));
            break;
        case MP_ARG_DOUBLE: {
            double d = mp_args_double(a, i);
            uint64_t bits;
            memcpy(&bits, &d, sizeof bits);
            char buf[32];
            snprintf(buf, sizeof buf, "%016" PRIx64, bits);
            s += std::string("double:") + buf;
            break;
        }
        case MP_ARG_STR: {
            const char *v = mp_args_str(a, i);
            s += "str:" + (v ? describe_blob(v, strlen(v)) : std::string("(null)"));
            break;
        }
        case MP_ARG_BYTES: {
            size_t len = 12345;
            const void *v = mp_args_bytes(a, i, &len);
            s += "bytes:" + (v || len == 0 ? describe_blob(v, len) : std::string("(null)"));
            break;
        }
        case MP_ARG_OS_HANDLE:
            s += std::string("handle:") +
                 (mp_args_os_handle(a, i) != MP_INVALID_OS_HANDLE ? "valid" : "invalid");
            break;
        default:
            s += "none";
        }
        s += "\n";
    }
    return s;
}

int tgt_echo_args(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    size_t n = mp_args_count(a);
    for (size_t i = 1; i < n; i++) {
        if (mp_args_type(a, i) != MP_ARG_OS_HANDLE) continue;
        mp_os_handle h = mp_args_os_handle(a, i);
        if (h == MP_INVALID_OS_HANDLE || !write_msg(h, "hello " + std::to_string(i)))
            return kTgtIoError;
    }
    std::string d = describe_args(a, 1);
    d += "past_end:" + std::to_string((int)mp_args_type(a, n)) + "\n";
    return write_msg(out, d) ? 0 : kTgtIoError;
}

int tgt_relay(mp_args *a) {
    mp_os_handle in = mp_args_os_handle(a, 0), out = mp_args_os_handle(a, 1);
    if (in == MP_INVALID_OS_HANDLE || out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    std::string m;
    if (!read_msg(in, &m, kWait)) return kTgtIoError;
    return write_msg(out, "echo:" + m) ? 0 : kTgtIoError;
}

// Starts fn(args) on the named backend as a child of the caller.
static int start_child(const char *backend, mp_target_fn fn, mp_args *args, bool daemon,
                       mp_process **out) {
    *out = nullptr;
    mp_context *ctx = mp_get_context(backend);
    if (!ctx) return kTgtNoContext;
    mp_process_opts o = {};
    o.target = fn;
    o.args = args;
    o.daemon = daemon;
    if (mp_process_new(ctx, &o, out) != 0) return kTgtNewFailed;
    if (mp_process_start(*out) != 0) {
        mp_process_free(*out);
        *out = nullptr;
        return kTgtStartFailed;
    }
    return 0;
}

int tgt_nested(mp_args *a) {
    const char *backend = mp_args_str(a, 0);
    mp_args *ga = nullptr;
    if (!backend || mp_args_new(&ga) != 0 || mp_args_add_int(ga, mp_args_int(a, 1)) != 0)
        return kTgtBadArgs;
    mp_process *g = nullptr;
    int rc = start_child(backend, tgt_return_arg, ga, false, &g);
    mp_args_free(ga);
    if (rc != 0) return rc;
    int code = -1;
    if (mp_process_join(g, kWait) != 0)
        rc = kTgtJoinFailed;
    else if (mp_process_exitcode(g, &code) != 0)
        rc = kTgtExitcodeFailed;
    else
        rc = code + 10;
    mp_process_free(g);
    return rc;
}

int tgt_name_children(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *backend = mp_args_str(a, 1);
    if (out == MP_INVALID_OS_HANDLE || !backend) return kTgtBadArgs;
    mp_context *ctx = mp_get_context(backend);
    if (!ctx) return kTgtNoContext;
    if (!write_msg(out, self_report())) return kTgtIoError;
    mp_args *ga = nullptr;
    if (mp_args_new(&ga) != 0 || mp_args_add_os_handle(ga, out) != 0) return kTgtBadArgs;
    mp_process_opts o = {};
    o.target = tgt_report_self;
    o.args = ga;
    mp_process *g1 = nullptr, *g2 = nullptr;
    int rc = 0;
    if (mp_process_new(ctx, &o, &g1) != 0 || mp_process_new(ctx, &o, &g2) != 0) {
        rc = kTgtNewFailed;
        goto done;
    }
    if (!write_msg(out, kv({{"g1", mp_process_name(g1) ? mp_process_name(g1) : "(null)"},
                            {"g2", mp_process_name(g2) ? mp_process_name(g2) : "(null)"}}))) {
        rc = kTgtIoError;
        goto done;
    }
    if (mp_process_start(g1) != 0)
        rc = kTgtStartFailed;
    else if (mp_process_join(g1, kWait) != 0)
        rc = kTgtJoinFailed;
    else {
        int code = -1;
        if (mp_process_exitcode(g1, &code) != 0 || code != 0) rc = kTgtExitcodeFailed;
    }
done:
    mp_process_free(g1);
    mp_process_free(g2);
    mp_args_free(ga);
    return rc;
}

int tgt_sleeper(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    if (!write_msg(out, "pid=" + i64(mp_getpid()))) return kTgtIoError;
    if (mp_args_type(a, 1) == MP_ARG_OS_HANDLE) {
        char c = 'R';
        if (!write_all(mp_args_os_handle(a, 1), &c, 1)) return kTgtIoError;
    }
    sleep_for(kCap);
    write_msg(out, "finished");
    return 97;
}

int tgt_start_sleeper_then_sleep(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *backend = mp_args_str(a, 1);
    bool daemon = mp_args_int(a, 2) != 0;
    mp_args *ga = nullptr;
    if (out == MP_INVALID_OS_HANDLE || !backend || mp_args_new(&ga) != 0 ||
        mp_args_add_os_handle(ga, out) != 0)
        return kTgtBadArgs;
    mp_process *g = nullptr;
    int rc = start_child(backend, tgt_sleeper, ga, daemon, &g);
    mp_args_free(ga);
    if (rc != 0) return rc;
    sleep_for(kCap);
    mp_process_free(g);
    return kTgtCapReached;
}

int tgt_watch_parent(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    mp_process *par = mp_parent_process();
    if (!par) return write_msg(out, "error:no parent") ? 1 : kTgtIoError;
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    int rc = mp_process_sentinel(par, &h);
    if (rc != 0)
        return write_msg(out, std::string("error:sentinel ") + mp_err_name(rc)) ? 1 : kTgtIoError;
    if (!write_msg(out, "watching pid=" + i64(mp_getpid()) + " ppid=" + i64(mp_process_pid(par))))
        return kTgtIoError;
    int w = wait_sentinel(h, kWait);
    write_msg(out, w == 1 ? "parent-gone" : w == 0 ? "timeout" : "error:wait");
    return 0;
}

int tgt_start_watcher_then_sleep(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *backend = mp_args_str(a, 1);
    mp_args *ga = nullptr;
    if (out == MP_INVALID_OS_HANDLE || !backend || mp_args_new(&ga) != 0 ||
        mp_args_add_os_handle(ga, out) != 0)
        return kTgtBadArgs;
    mp_process *g = nullptr;
    int rc = start_child(backend, tgt_watch_parent, ga, false, &g);
    mp_args_free(ga);
    if (rc != 0) return rc;
    sleep_for(kCap);
    mp_process_join(g, kWait);
    mp_process_free(g);
    return kTgtCapReached;
}

int tgt_slow_worker(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    sleep_for(mp_args_double(a, 1));
    return write_msg(out, "done pid=" + i64(mp_getpid())) ? 0 : kTgtIoError;
}

int tgt_daemon_cleanup(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *backend = mp_args_str(a, 1);
    bool with_daemon = mp_args_int(a, 2) != 0;
    if (out == MP_INVALID_OS_HANDLE || !backend) return kTgtBadArgs;
    int rc = 0;
    mp_process *d = nullptr, *w = nullptr;
    mp_args *da = nullptr, *wa = nullptr;
    Pipe ready;
    if (!pipe_open(&ready)) return kTgtIoError;
    if (with_daemon) {
        if (mp_args_new(&da) != 0 || mp_args_add_os_handle(da, out) != 0 ||
            mp_args_add_os_handle(da, ready.w) != 0) {
            rc = kTgtBadArgs;
            goto done;
        }
        rc = start_child(backend, tgt_sleeper, da, true, &d);
        if (rc != 0) goto done;
        char c = 0;
        if (!read_exact(ready.r, &c, 1, kWait) || c != 'R') {
            rc = kTgtNotReady;
            goto done;
        }
    }
    if (mp_args_new(&wa) != 0 || mp_args_add_os_handle(wa, out) != 0 ||
        mp_args_add_double(wa, 0.5) != 0) {
        rc = kTgtBadArgs;
        goto done;
    }
    rc = start_child(backend, tgt_slow_worker, wa, false, &w);
done:
    // Let go of both without joining: the library must terminate the daemonic one and
    // join the other before this child ends.
    mp_process_free(d);
    mp_process_free(w);
    mp_args_free(da);
    mp_args_free(wa);
    pipe_close(&ready);
    return rc;
}

} // namespace mpt
