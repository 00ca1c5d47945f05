// The pool tests' fixture: holders, callbacks, sources, the report queue, the checks
// (pool_fixture.h). The workers' side is pool_tasks.cc.
#include "pool_fixture.h"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace mpt {

// ---- callbacks and sources ----

std::atomic<bool> g_callbacks_overlapped{false};

namespace {

std::atomic<int> g_in_callback{0};

// Marks a callback running; two at once (of any call) set g_callbacks_overlapped.
struct InCallback {
    InCallback() {
        if (g_in_callback.fetch_add(1) != 0) g_callbacks_overlapped = true;
    }
    ~InCallback() { g_in_callback.fetch_sub(1); }
};

void on_result(void *ctx, const mp_value *result) {
    InCallback in;
    CallLog *l = static_cast<CallLog *>(ctx);
    std::lock_guard<std::mutex> lk(l->mu);
    l->callbacks++;
    l->result = result;
    l->result_copy.reset(result ? mp_value_copy(result) : nullptr);
    l->threads.insert(current_thread_id());
}

void on_error(void *ctx, int code, const char *message) {
    InCallback in;
    CallLog *l = static_cast<CallLog *>(ctx);
    std::lock_guard<std::mutex> lk(l->mu);
    l->errors++;
    l->error_code = code;
    l->error_message = message ? message : "(null)";
    l->threads.insert(current_thread_id());
}

void on_progress(void *ctx, size_t done, size_t total, size_t failed) {
    InCallback in;
    CallLog *l = static_cast<CallLog *>(ctx);
    std::lock_guard<std::mutex> lk(l->mu);
    l->progress.push_back({done, total, failed});
    l->threads.insert(current_thread_id());
}

} // namespace

mp_call_opts CallLog::opts(size_t chunksize, bool with_progress) {
    mp_call_opts o = {};
    o.chunksize = chunksize;
    o.callback = on_result;
    o.error_callback = on_error;
    o.progress = with_progress ? on_progress : nullptr;
    o.ctx = this;
    return o;
}

bool CallLog::wait_calls(int n) {
    double deadline = now() + kWait;
    while (calls() < n) {
        if (now() > deadline) return false;
        sleep_for(0.005);
    }
    return true;
}

bool CallLog::wait_progress_end() {
    double deadline = now() + kWait;
    for (;;) {
        {
            std::lock_guard<std::mutex> lk(mu);
            if (!progress.empty()) {
                const Progress &p = progress.back();
                if (p.total > 0 && (p.done == p.total || p.done + p.failed == p.total)) return true;
            }
        }
        if (now() > deadline) return false;
        sleep_for(0.005);
    }
}

int counting_source(void *ctx, mp_value **item) {
    CountingSource *s = static_cast<CountingSource *>(ctx);
    if (s->inside.fetch_add(1) != 0) s->overlapped = true;
    {
        std::lock_guard<std::mutex> lk(s->mu);
        s->threads.insert(current_thread_id());
    }
    int rc;
    int64_t i = s->pulled.load();
    *item = nullptr;
    if (s->fail_after >= 0 && i >= s->fail_after) {
        s->ended = true;
        rc = s->fail_code;
    } else if (s->limit >= 0 && i >= s->limit) {
        s->ended = true;
        rc = 0;
    } else {
        *item = mp_value_int(i);
        s->pulled = i + 1;
        rc = 1;
    }
    s->inside.fetch_sub(1);
    return rc;
}

// ---- matrices ----

const std::vector<size_t> &all_chunksizes() {
    static const std::vector<size_t> v = {1, 7, kBigChunk, MP_CHUNKSIZE_PYTHON, 0};
    return v;
}

const std::vector<size_t> &all_sizes() {
    static const std::vector<size_t> v = {0, 1, 13, 2503};
    return v;
}

std::string chunk_name(size_t c) {
    if (c == MP_CHUNKSIZE_PYTHON) return "MP_CHUNKSIZE_PYTHON";
    if (c == 0) return "0 (adaptive)";
    return std::to_string(c);
}

const char *method_name(Method m) {
    switch (m) {
    case Method::Map:
        return "map";
    case Method::MapAsync:
        return "map_async";
    case Method::Starmap:
        return "starmap";
    case Method::StarmapAsync:
        return "starmap_async";
    case Method::Imap:
        return "imap";
    case Method::ImapUnordered:
        return "imap_unordered";
    case Method::MapSource:
        return "map_source";
    case Method::ImapSource:
        return "imap_source (ordered)";
    case Method::ImapSourceUnordered:
        return "imap_source (unordered)";
    case Method::MapRecords:
        return "map_records";
    case Method::MapRecordsAsync:
        return "map_records_async";
    }
    return "?";
}

// ---- messages ----

bool names_number(const std::string &msg, long long n) {
    std::string d = std::to_string(n < 0 ? -n : n);
    for (size_t at = msg.find(d); at != std::string::npos; at = msg.find(d, at + 1)) {
        bool digit_before = at > 0 && isdigit((unsigned char)msg[at - 1]);
        size_t end = at + d.size();
        bool digit_after = end < msg.size() && isdigit((unsigned char)msg[end]);
        if (!digit_before && !digit_after) return true;
    }
    return false;
}

namespace {

#ifdef _WIN32
// An NTSTATUS named in hex (either case, with or without 0x) or as a number.
bool names_status(const std::string &msg, uint32_t st) {
    char lo[16], up[16];
    snprintf(lo, sizeof lo, "%08x", (unsigned)st);
    snprintf(up, sizeof up, "%08X", (unsigned)st);
    return msg.find(lo) != std::string::npos || msg.find(up) != std::string::npos ||
           names_number(msg, (long long)st) || names_number(msg, (long long)(int32_t)st);
}
#else
bool names_signal(const std::string &msg, int sig, const char *name) {
    return msg.find(name) != std::string::npos || names_number(msg, sig);
}
#endif

} // namespace

std::string death_named(int kind, const std::string &msg) {
    bool ok = false;
    std::string want;
#ifdef _WIN32
    switch (kind) {
    case kCrashSegv:
        ok = names_status(msg, 0xC0000005u);
        want = "0xC0000005";
        break;
    case kCrashAbort: // the C runtime's abort ends the process with code 3
    case kCrashExit:
        ok = names_number(msg, 3);
        want = "exit code 3";
        break;
    case kCrashKilled:
        ok = names_number(msg, kWindowsKillCode);
        want = "exit code " + std::to_string(kWindowsKillCode);
        break;
    case kCrashOom:
        ok = names_status(msg, 0xC0000017u);
        want = "0xC0000017";
        break;
    }
#else
    switch (kind) {
    case kCrashSegv:
        ok = names_signal(msg, SIGSEGV, "SIGSEGV");
        want = "SIGSEGV or signal " + std::to_string(SIGSEGV);
        break;
    case kCrashAbort:
        ok = names_signal(msg, SIGABRT, "SIGABRT");
        want = "SIGABRT or signal " + std::to_string(SIGABRT);
        break;
    case kCrashExit:
        ok = names_number(msg, 3);
        want = "exit code 3";
        break;
    case kCrashKilled:
    case kCrashOom:
        ok = names_signal(msg, SIGKILL, "SIGKILL");
        want = "SIGKILL or signal " + std::to_string(SIGKILL);
        break;
    }
#endif
    return ok ? "" : "the message should name " + want + ": \"" + msg + "\"";
}

// ---- PoolHolder ----

PoolHolder &PoolHolder::operator=(PoolHolder &&o) noexcept {
    if (this != &o) {
        reset();
        p_ = o.p_;
        processes_ = o.processes_;
        before_free_ = std::move(o.before_free_);
        seen_ = std::move(o.seen_);
        o.p_ = nullptr;
    }
    return *this;
}

void PoolHolder::note_pid(int64_t pid) {
    if (processes_ && pid > 0) seen_.insert(pid);
}

void PoolHolder::reset(bool open_gate) {
    if (!p_) return;
    mp_pool *p = p_;
    p_ = nullptr;
    if (processes_) {
        int64_t pids[256];
        size_t n = 0;
        if (mp_pool_worker_pids(p, pids, 256, &n) == 0)
            for (size_t i = 0; i < std::min<size_t>(n, 256); i++) seen_.insert(pids[i]);
    }
    if (open_gate && before_free_) before_free_();
    mp_pool_free(p);
    for (int64_t pid : seen_) {
        if (pid == mp_getpid()) { // never kill ourselves, whatever the pool said
            ADD_FAILURE() << "a worker process had the test process's own pid";
            continue;
        }
        if (!wait_process_gone(pid, kWait)) {
            ADD_FAILURE() << "worker process " << pid
                          << " still runs after mp_pool_free (killing it)";
            force_kill(pid);
            wait_process_gone(pid, kWait);
        }
    }
    seen_.clear();
}

// ---- PoolTest ----

void PoolTest::SetUp() {
    const ::testing::TestInfo *ti = ::testing::UnitTest::GetInstance()->current_test_info();
    thread_pool_ = ti && std::string(ti->test_suite_name()).rfind("ThreadPool/", 0) == 0;
    ProcessTest::SetUp();
    g_callbacks_overlapped = false;
    set_sleep_release(false);
    forget_worker_env();
}

void PoolTest::TearDown() {
    open_gate();
    ProcessTest::TearDown();
    mp_event_free(gate_);
    mp_queue_free(reports_q_);
    mp_lock_free(lock_);
    gate_ = nullptr;
    reports_q_ = nullptr;
    lock_ = nullptr;
    kept_.clear();
}

PoolHolder PoolTest::make_pool(int processes, mp_pool_opts o) {
    o.processes = processes;
    mp_pool *p = nullptr;
    int rc = thread_pool_ ? mp_thread_pool_new(&o, &p) : mp_pool_new(ctx(), &o, &p);
    if (rc != 0 || !p) {
        ADD_FAILURE() << (thread_pool_ ? "mp_thread_pool_new: " : "mp_pool_new: ")
                      << mp_err_name(rc) << " " << err();
        return PoolHolder();
    }
    return PoolHolder(p, process_workers(), [this] { open_gate(); });
}

PoolHolder PoolTest::make_env_pool(int processes, int64_t tag, mp_pool_opts o) {
    Args a;
    add_env_args(a, tag);
    o.initializer = init_env;
    o.initargs = a.get();
    return make_pool(processes, o); // the args go here: mp_pool_new copies them
}

void PoolTest::add_env_args(Args &a, int64_t tag) {
    a.i(tag);
    EXPECT_EQ(0, mp_args_add_event(a.get(), gate())) << err();
    EXPECT_EQ(0, mp_args_add_queue(a.get(), report_queue())) << err();
    EXPECT_EQ(0, mp_args_add_lock(a.get(), env_lock())) << err();
}

mp_event *PoolTest::gate() {
    if (!gate_) {
        EXPECT_EQ(0, mp_event_new(ctx(), &gate_)) << err();
    }
    return gate_;
}

mp_queue *PoolTest::report_queue() {
    if (!reports_q_) {
        EXPECT_EQ(0, mp_queue_new(ctx(), 0, &reports_q_)) << err();
    }
    return reports_q_;
}

mp_lock *PoolTest::env_lock() {
    if (!lock_) {
        EXPECT_EQ(0, mp_lock_new(ctx(), &lock_)) << err();
    }
    return lock_;
}

void PoolTest::open_gate() {
    set_sleep_release(true);
    if (gate_) mp_event_set(gate_);
}

namespace {

int64_t int_at(const mp_value *v, size_t i) { return mp_value_as_int(mp_value_item(v, i)); }

bool parse_report(const mp_value *v, Report *r) {
    if (mp_value_get_type(v) != MP_VALUE_LIST || mp_value_len(v) != 5) return false;
    const char *k = mp_value_as_str(mp_value_item(v, 0), nullptr);
    if (!k) return false;
    r->kind = k;
    r->item = int_at(v, 1);
    r->pid = int_at(v, 2);
    r->tid = int_at(v, 3);
    r->tag = int_at(v, 4);
    return true;
}

bool matches(const Report &r, const std::string &kind, int64_t item) {
    return r.kind == kind && (item < 0 || r.item == item);
}

} // namespace

bool PoolTest::take_report(const std::string &kind, int64_t item, Report *out, double timeout) {
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
        if (matches(*it, kind, item)) {
            *out = *it;
            kept_.erase(it);
            return true;
        }
    }
    double deadline = now() + timeout;
    for (;;) {
        mp_value *v = nullptr;
        int rc = mp_queue_get(report_queue(), &v, std::max(0.0, deadline - now()));
        Value hold(v);
        if (rc == MP_EEMPTY) return false;
        if (rc != 0) {
            ADD_FAILURE() << "reading the report queue: " << mp_err_name(rc) << " " << err();
            return false;
        }
        Report r;
        if (!parse_report(v, &r)) {
            ADD_FAILURE() << "a malformed report";
            continue;
        }
        if (matches(r, kind, item)) {
            *out = r;
            return true;
        }
        kept_.push_back(r);
    }
}

std::vector<Report> PoolTest::drain_reports() {
    std::vector<Report> out;
    out.swap(kept_);
    for (;;) {
        mp_value *v = nullptr;
        int rc = mp_queue_get(report_queue(), &v, 0);
        Value hold(v);
        if (rc != 0) {
            EXPECT_EQ(MP_EEMPTY, rc) << err();
            return out;
        }
        Report r;
        if (parse_report(v, &r))
            out.push_back(r);
        else
            ADD_FAILURE() << "a malformed report";
    }
}

std::vector<int64_t> PoolTest::worker_pids(mp_pool *p) {
    int64_t buf[256];
    size_t n = 12345;
    int rc = mp_pool_worker_pids(p, buf, 256, &n);
    EXPECT_EQ(0, rc) << err();
    if (rc != 0) return {};
    EXPECT_LE(n, 256u);
    return std::vector<int64_t>(buf, buf + std::min<size_t>(n, 256));
}

std::string PoolTest::wait_workers(mp_pool *p, int n, const std::vector<int64_t> &gone) {
    double deadline = now() + kWait;
    for (;;) {
        std::vector<int64_t> pids = worker_pids(p);
        std::string why;
        std::set<int64_t> distinct(pids.begin(), pids.end());
        if (pids.size() != (size_t)n)
            why = std::to_string(pids.size()) + " workers, want " + std::to_string(n);
        else if (distinct.size() != pids.size())
            why = "a pid is listed twice";
        for (int64_t pid : pids) {
            if (std::find(gone.begin(), gone.end(), pid) != gone.end())
                why = "the dead worker " + std::to_string(pid) + " is still listed";
            else if (process_workers() && !process_running(pid))
                why = "worker " + std::to_string(pid) + " does not run";
        }
        if (why.empty()) return "";
        if (now() > deadline) return why + " (still after " + std::to_string((int)kWait) + " s)";
        sleep_for(0.01);
    }
}

void PoolTest::check_imap(mp_imap *it, size_t n, bool ordered, int64_t first) {
    std::vector<int64_t> got, want;
    for (size_t i = 0; i < n; i++) {
        mp_value *v = nullptr;
        int rc = mp_imap_next(it, kWait, &v);
        Value hold(v);
        ASSERT_EQ(0, rc) << "result " << i << " of " << n << ": " << mp_err_name(rc) << " "
                         << err();
        ASSERT_EQ(MP_VALUE_INT, mp_value_get_type(v)) << "result " << i;
        got.push_back(mp_value_as_int(v));
        want.push_back(affine(first + (int64_t)i));
    }
    mp_value *v = bogus<mp_value>();
    EXPECT_EQ(MP_EOF, mp_imap_next(it, kWait, &v)) << "after the last result " << err();
    EXPECT_EQ(nullptr, v);
    v = nullptr;
    EXPECT_EQ(MP_EOF, mp_imap_next(it, 0, &v)) << "MP_EOF again";
    if (!ordered) {
        std::sort(got.begin(), got.end());
        std::sort(want.begin(), want.end());
    }
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            ADD_FAILURE() << (ordered ? "result " : "sorted result ") << i << " is " << got[i]
                          << ", want " << want[i];
            break;
        }
    }
}

void PoolTest::check_method(mp_pool *p, Method m, size_t n, size_t chunksize) {
    SCOPED_TRACE(std::string(method_name(m)) + " over " + std::to_string(n) + " items, chunksize " +
                 chunk_name(chunksize));
    mp_call_opts o = {};
    o.chunksize = chunksize;
    std::vector<int64_t> want(n);
    for (size_t i = 0; i < n; i++) want[i] = affine((int64_t)i);
    switch (m) {
    case Method::Map:
    case Method::Starmap: {
        bool star = m == Method::Starmap;
        Value items = star ? starmap_args(n) : int_list(n);
        if (star)
            for (size_t i = 0; i < n; i++) want[i] = starmap_expected(i);
        mp_value *r = bogus<mp_value>();
        int rc = star ? mp_pool_starmap(p, task_weighted, items.get(), &o, &r)
                      : mp_pool_map(p, task_affine, items.get(), &o, &r);
        if (rc != 0) {
            EXPECT_EQ(nullptr, r) << "the out pointer is NULL on failure";
            FAIL() << mp_err_name(rc) << " " << err();
        }
        Value res(r);
        EXPECT_EQ("", diff_ints(r, want));
        break;
    }
    case Method::MapAsync:
    case Method::StarmapAsync: {
        bool star = m == Method::StarmapAsync;
        Value items = star ? starmap_args(n) : int_list(n);
        if (star)
            for (size_t i = 0; i < n; i++) want[i] = starmap_expected(i);
        mp_async_result *ar = nullptr;
        int rc = star ? mp_pool_starmap_async(p, task_weighted, items.get(), &o, &ar)
                      : mp_pool_map_async(p, task_affine, items.get(), &o, &ar);
        Async hold(ar);
        ASSERT_EQ(0, rc) << err();
        const mp_value *r = nullptr;
        ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << err();
        EXPECT_EQ("", diff_ints(r, want));
        bool ok = false;
        EXPECT_EQ(0, mp_async_result_successful(ar, &ok));
        EXPECT_TRUE(ok);
        break;
    }
    case Method::Imap:
    case Method::ImapUnordered: {
        bool ordered = m == Method::Imap;
        Value items = int_list(n);
        mp_imap *it = nullptr;
        int rc = ordered ? mp_pool_imap(p, task_affine, items.get(), &o, &it)
                         : mp_pool_imap_unordered(p, task_affine, items.get(), &o, &it);
        Imap hold(it);
        ASSERT_EQ(0, rc) << err();
        check_imap(it, n, ordered);
        break;
    }
    case Method::MapSource: {
        CountingSource src;
        src.limit = (int64_t)n;
        mp_value *r = nullptr;
        int rc = mp_pool_map_source(p, task_affine, counting_source, &src, &o, &r);
        Value res(r);
        ASSERT_EQ(0, rc) << err();
        EXPECT_EQ("", diff_ints(r, want));
        EXPECT_EQ((int64_t)n, src.pulled.load());
        EXPECT_TRUE(src.ended) << "the source was not read to its end";
        EXPECT_FALSE(src.overlapped) << "the source ran on two threads at once";
        break;
    }
    case Method::ImapSource:
    case Method::ImapSourceUnordered: {
        bool ordered = m == Method::ImapSource;
        CountingSource src;
        src.limit = (int64_t)n;
        mp_imap *it = nullptr;
        int rc = mp_pool_imap_source(p, task_affine, counting_source, &src, ordered, &o, &it);
        Imap hold(it);
        ASSERT_EQ(0, rc) << err();
        check_imap(it, n, ordered);
        hold.reset(); // before src goes
        EXPECT_EQ((int64_t)n, src.pulled.load());
        EXPECT_FALSE(src.overlapped) << "the source ran on two threads at once";
        break;
    }
    case Method::MapRecords:
    case Method::MapRecordsAsync: {
        std::vector<Rec> in(n + 1); // + 1: never an empty vector's NULL data
        for (size_t i = 0; i < n; i++) {
            in[i].x = (int64_t)i * 3 - 1000;
            in[i].salt = (int64_t)(i * 0x9E3779B97F4A7C15ull >> 8);
            memset(in[i].pad, (int)(i & 0xff), sizeof in[i].pad);
        }
        std::vector<int64_t> out(n + 1, INT64_MIN);
        if (m == Method::MapRecords) {
            ASSERT_EQ(0, mp_pool_map_records(p, rec_affine, in.data(), sizeof(Rec), out.data(),
                                             sizeof(int64_t), n, &o))
                << err();
        } else {
            mp_async_result *ar = nullptr;
            int rc = mp_pool_map_records_async(p, rec_affine, in.data(), sizeof(Rec), out.data(),
                                               sizeof(int64_t), n, &o, &ar);
            Async hold(ar);
            ASSERT_EQ(0, rc) << err();
            const mp_value *r = bogus<const mp_value>();
            ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << err();
            EXPECT_EQ(nullptr, r) << "records give no value";
        }
        for (size_t i = 0; i < n; i++) {
            if (out[i] != rec_expected(in[i])) {
                ADD_FAILURE() << "record " << i << " is " << out[i] << ", want "
                              << rec_expected(in[i]);
                break;
            }
        }
        EXPECT_EQ(INT64_MIN, out[n]) << "a record was written past n";
        break;
    }
    }
}

void PoolTest::check_matrix(Method m) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    bool source =
        m == Method::MapSource || m == Method::ImapSource || m == Method::ImapSourceUnordered;
    for (size_t n : all_sizes()) {
        for (size_t c : all_chunksizes()) {
            if (source && c == MP_CHUNKSIZE_PYTHON) continue;
            check_method(pool.get(), m, n, c);
            if (HasFatalFailure()) return;
        }
    }
}

} // namespace mpt
