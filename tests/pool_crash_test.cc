// Pool workers that die in a task, and tasks past their time limit, on every start
// method (not on threads: a crash in a worker thread would kill the test program).
//
// Each kind of death — a segfault, abort(), exit(3) from the task, SIGKILL from outside
// mid-task (TerminateProcess on Windows), and an OOM-like death (posix: the task
// allocates, then raises SIGKILL on itself, which is what the OOM killer does; Windows:
// it ends itself with STATUS_NO_MEMORY) — must give that task MP_EWORKERDIED with a
// message naming the signal or exit code, let every other task of the same call
// complete, keep the pool usable and bring its worker count back. Each kind is checked
// once in detail (map, apply_async, the error callback, progress) and then in a loop of
// 20 rounds; every wait is bounded (kWait), so a bug fails instead of hanging.
//
// A task past its time limit (the pool's task_timeout, or the call's timeout) fails with
// MP_ETIMEDOUT, its worker is replaced (killed, on processes) and the others complete;
// also in a loop of 20 rounds. These run on threads too: there the task is abandoned
// (the test lets it end afterwards).
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "pool_fixture.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <csignal>
#include <sys/types.h>
#endif

using namespace mpt;

namespace {

constexpr int kProcs = 2;
constexpr int kRounds = 20;
// The per-task limit in these tests: far above what a quick task takes, so only the
// sleeping task reaches it (and no assertion depends on how close anything comes).
constexpr double kTaskLimit = 1.0;
const char kThreadsCannotCrash[] =
    "the workers are threads: a crash in one would kill the test program";

// SIGKILL (posix) or TerminateProcess with kWindowsKillCode.
void kill_worker(int64_t pid) {
#ifdef _WIN32
    HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, (DWORD)pid);
    if (h) {
        TerminateProcess(h, kWindowsKillCode);
        CloseHandle(h);
    }
#else
    kill((pid_t)pid, SIGKILL);
#endif
}

// [x, kind, first + target] for x in [first, first + n): task_crash's items.
Value crash_items(size_t n, int kind, int64_t first, int64_t target) {
    mp_value *l = mp_value_list_new();
    for (size_t i = 0; i < n; i++) {
        mp_value *t = mp_value_list_new();
        mp_value_list_append(t, mp_value_int(first + (int64_t)i));
        mp_value_list_append(t, mp_value_int(kind));
        mp_value_list_append(t, mp_value_int(first + target));
        mp_value_list_append(l, t);
    }
    return Value(l);
}

// (x, seconds): task_sleep's argument tuple.
Value sleep_args(int64_t x, double seconds) {
    mp_value *t = mp_value_tuple_new();
    mp_value_list_append(t, mp_value_int(x));
    mp_value_list_append(t, mp_value_float(seconds));
    return Value(t);
}

} // namespace

class PoolCrashTest : public PoolTest {
  protected:
    // One imap (chunksize 1) of 8 items in which item `target` dies the way kind says:
    // that item is MP_EWORKERDIED naming the death, the others are right, the dead
    // worker is gone and replaced, and a later map works.
    void crash_round(PoolHolder &pool, int kind, int target, int round);
    // The first report ("crash", x): its worker's pid, killed now for kCrashKilled.
    int64_t crashed_worker(PoolHolder &pool, int kind, int64_t x);
    void check_crash_in_detail(int kind);
    void check_crash_repeated(int kind);
    // Six apply_async of task_sleep, the one at `target` sleeping kCap: it fails with
    // MP_ETIMEDOUT (the limit is call_timeout, or the pool's when 0), the others give
    // their values, the worker is replaced, a later map works.
    void timeout_round(PoolHolder &pool, double call_timeout, int target, int round);
    // A later map on the pool works.
    void expect_pool_works(mp_pool *p, int round);
};

INSTANTIATE_TEST_SUITE_P(Backends, PoolCrashTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });
INSTANTIATE_TEST_SUITE_P(ThreadPool, PoolCrashTest, ::testing::Values(std::string("dummy")),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });

void PoolCrashTest::expect_pool_works(mp_pool *p, int round) {
    Value items = int_list(20, round * 1000);
    mp_call_opts o = {};
    o.chunksize = 3;
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(p, task_affine, items.get(), &o, &ar)) << err();
    Async hold(ar);
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << "a later map " << err();
    std::vector<int64_t> want;
    for (int64_t i = 0; i < 20; i++) want.push_back(affine(round * 1000 + i));
    EXPECT_EQ("", diff_ints(r, want)) << "a later map";
}

int64_t PoolCrashTest::crashed_worker(PoolHolder &pool, int kind, int64_t x) {
    Report rep;
    if (!take_report("crash", x, &rep)) {
        ADD_FAILURE() << "the crashing task " << x << " never ran";
        return 0;
    }
    pool.note_pid(rep.pid);
    if (kind == kCrashKilled) kill_worker(rep.pid);
    return rep.pid;
}

void PoolCrashTest::crash_round(PoolHolder &pool, int kind, int target, int round) {
    SCOPED_TRACE(std::string(crash_name(kind)) + ", round " + std::to_string(round));
    const int64_t n = 8, first = round * 100;
    Value items = crash_items((size_t)n, kind, first, target);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_crash, items.get(), &o, &it)) << err();
    Imap hold(it);
    int64_t dead = crashed_worker(pool, kind, first + target);
    ASSERT_NE(0, dead);
    for (int64_t i = 0; i < n; i++) {
        mp_value *v = bogus<mp_value>();
        int rc = mp_imap_next(it, kWait, &v);
        std::string msg = mp_last_error_message();
        Value hv(rc == 0 ? v : nullptr);
        ASSERT_NE(MP_ETIMEDOUT, rc) << "item " << i << ": no result within " << kWait
                                    << " s: a call hangs on a dead worker";
        if (i == target) {
            EXPECT_EQ(MP_EWORKERDIED, rc) << "item " << i << ": " << mp_err_name(rc) << " " << msg;
            EXPECT_EQ(nullptr, v);
            if (rc == MP_EWORKERDIED) {
                EXPECT_EQ("", death_named(kind, msg));
            }
        } else {
            EXPECT_EQ(0, rc) << "item " << i
                             << ", another task of the same imap: " << mp_err_name(rc) << " "
                             << msg;
            EXPECT_EQ(affine(first + i), rc == 0 ? mp_value_as_int(v) : -1) << "item " << i;
        }
    }
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EOF, mp_imap_next(it, kWait, &v));
    EXPECT_TRUE(wait_process_gone(dead, kWait)) << "the dead worker " << dead << " still runs";
    EXPECT_EQ("", wait_workers(pool.get(), kProcs, {dead})) << "the worker count is not restored";
    EXPECT_EQ(kProcs, mp_pool_processes(pool.get()));
    expect_pool_works(pool.get(), round);
}

void PoolCrashTest::check_crash_in_detail(int kind) {
    CallLog map_log, apply_log;
    PoolHolder pool = make_env_pool(kProcs);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();

    // map: fails with MP_EWORKERDIED naming the death; every other task ran to its end
    // (the progress says so), the error callback ran once.
    {
        SCOPED_TRACE("map");
        Value items = crash_items(10, kind, 0, 4);
        mp_call_opts o = map_log.opts(1);
        int rc;
        std::string msg;
        if (kind == kCrashKilled) { // the test kills the worker: map_async, then get
            mp_async_result *ar = nullptr;
            ASSERT_EQ(0, mp_pool_map_async(p, task_crash, items.get(), &o, &ar)) << err();
            Async hold(ar);
            ASSERT_NE(0, crashed_worker(pool, kind, 4));
            const mp_value *r = bogus<const mp_value>();
            rc = mp_async_result_get(ar, kWait, &r);
            msg = mp_last_error_message();
            EXPECT_EQ(nullptr, r);
        } else {
            mp_value *r = bogus<mp_value>();
            rc = mp_pool_map(p, task_crash, items.get(), &o, &r);
            msg = mp_last_error_message();
            EXPECT_EQ(nullptr, r);
            if (rc == 0) mp_value_free(r);
            EXPECT_NE(0, crashed_worker(pool, kind, 4));
        }
        EXPECT_EQ(MP_EWORKERDIED, rc) << mp_err_name(rc) << " " << msg;
        EXPECT_EQ("", death_named(kind, msg));
        ASSERT_TRUE(map_log.wait_progress_end()) << "the other tasks did not all end";
        std::lock_guard<std::mutex> lk(map_log.mu);
        const CallLog::Progress &last = map_log.progress.back();
        EXPECT_EQ(10u, last.total);
        EXPECT_EQ(1u, last.failed);
        EXPECT_EQ(1, map_log.errors);
        EXPECT_EQ(0, map_log.callbacks);
        EXPECT_EQ(MP_EWORKERDIED, map_log.error_code);
        EXPECT_EQ("", death_named(kind, map_log.error_message)) << "in the error callback";
    }
    EXPECT_EQ("", wait_workers(p, kProcs)) << "after the map";

    // apply_async: get gives MP_EWORKERDIED, the result did not succeed.
    {
        SCOPED_TRACE("apply_async");
        Value args = ints({50, kind, 50});
        mp_call_opts o = apply_log.opts(0, false);
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(p, task_crash, args.get(), &o, &ar)) << err();
        Async hold(ar);
        int64_t dead = crashed_worker(pool, kind, 50);
        const mp_value *r = bogus<const mp_value>();
        int rc = mp_async_result_get(ar, kWait, &r);
        std::string msg = mp_last_error_message();
        EXPECT_EQ(MP_EWORKERDIED, rc) << mp_err_name(rc) << " " << msg;
        EXPECT_EQ("", death_named(kind, msg));
        EXPECT_EQ(nullptr, r);
        bool ok = true;
        EXPECT_EQ(0, mp_async_result_successful(ar, &ok));
        EXPECT_FALSE(ok);
        ASSERT_TRUE(apply_log.wait_calls(1));
        EXPECT_EQ(1, apply_log.errors);
        EXPECT_EQ(MP_EWORKERDIED, apply_log.error_code);
        EXPECT_EQ("", wait_workers(p, kProcs, {dead})) << "after apply_async";
    }

    // imap: the crashed item's error, every other item's value.
    crash_round(pool, kind, 5, 1);
    EXPECT_FALSE(g_callbacks_overlapped);
}

void PoolCrashTest::check_crash_repeated(int kind) {
    PoolHolder pool = make_env_pool(kProcs);
    ASSERT_TRUE(pool);
    for (int round = 0; round < kRounds && !HasFailure(); round++)
        crash_round(pool, kind, round % 8, round);
}

TEST_P(PoolCrashTest, SegfaultInATask) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_in_detail(kCrashSegv);
}
TEST_P(PoolCrashTest, AbortInATask) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_in_detail(kCrashAbort);
}
TEST_P(PoolCrashTest, ExitInATask) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_in_detail(kCrashExit);
}
TEST_P(PoolCrashTest, WorkerKilledMidTask) {
    if (dummy()) GTEST_SKIP() << "the workers are threads: nothing to kill";
    check_crash_in_detail(kCrashKilled);
}
TEST_P(PoolCrashTest, OomKillInATask) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_in_detail(kCrashOom);
}

TEST_P(PoolCrashTest, SegfaultRepeated) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_repeated(kCrashSegv);
}
TEST_P(PoolCrashTest, AbortRepeated) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_repeated(kCrashAbort);
}
TEST_P(PoolCrashTest, ExitRepeated) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_repeated(kCrashExit);
}
TEST_P(PoolCrashTest, WorkerKilledRepeated) {
    if (dummy()) GTEST_SKIP() << "the workers are threads: nothing to kill";
    check_crash_repeated(kCrashKilled);
}
TEST_P(PoolCrashTest, OomKillRepeated) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    check_crash_repeated(kCrashOom);
}

// With chunks, the crash fails the task it was in: the other chunks' items all arrive
// in order, the crashed chunk gives MP_EWORKERDIED (once or per item; items its task
// finished before the crash may keep their values).
TEST_P(PoolCrashTest, CrashInAChunk) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    PoolHolder pool = make_env_pool(kProcs);
    ASSERT_TRUE(pool);
    Value items = crash_items(16, kCrashSegv, 0, 5); // chunks of 4: the second one crashes
    mp_call_opts o = {};
    o.chunksize = 4;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_crash, items.get(), &o, &it)) << err();
    Imap hold(it);
    int64_t dead = crashed_worker(pool, kCrashSegv, 5);
    std::vector<int64_t> got;
    int errors = 0;
    for (int calls = 0;; calls++) {
        ASSERT_LE(calls, 16) << "more results than items";
        mp_value *v = nullptr;
        int rc = mp_imap_next(it, kWait, &v);
        std::string msg = mp_last_error_message();
        Value hv(v);
        if (rc == MP_EOF) break;
        ASSERT_NE(MP_ETIMEDOUT, rc) << "a call hangs on a dead worker";
        if (rc != 0) {
            EXPECT_EQ(MP_EWORKERDIED, rc) << msg;
            EXPECT_EQ("", death_named(kCrashSegv, msg));
            EXPECT_TRUE(got.empty() || got.back() < 8) << "the error came after the next chunk";
            errors++;
            continue;
        }
        int64_t idx = (mp_value_as_int(v) - 3) / 7;
        EXPECT_NE(5, idx) << "the crashed item has a value";
        EXPECT_TRUE(got.empty() || got.back() < idx) << "imap's order";
        EXPECT_FALSE(idx >= 8 && errors == 0)
            << "the next chunk came before the crashed one's error";
        got.push_back(idx);
    }
    EXPECT_GE(errors, 1);
    EXPECT_LE(errors, 4);
    for (int64_t i : {0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15})
        EXPECT_TRUE(std::find(got.begin(), got.end(), i) != got.end())
            << "item " << i << " of another chunk";
    EXPECT_EQ("", wait_workers(pool.get(), kProcs, {dead}));
    expect_pool_works(pool.get(), 0);
}

TEST_P(PoolCrashTest, CrashInARecordTask) {
    if (dummy()) GTEST_SKIP() << kThreadsCannotCrash;
    PoolHolder pool = make_env_pool(kProcs);
    ASSERT_TRUE(pool);
    std::vector<Rec> in(64);
    for (size_t i = 0; i < in.size(); i++) in[i].x = (int64_t)i;
    in[20].salt = kCrashSalt;
    std::vector<int64_t> out(in.size(), INT64_MIN);
    mp_call_opts o = {};
    o.chunksize = 4;
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_map_records_async(pool.get(), rec_crash, in.data(), sizeof(Rec),
                                           out.data(), sizeof(int64_t), in.size(), &o, &ar))
        << err();
    Async hold(ar);
    int64_t dead = crashed_worker(pool, kCrashSegv, 20);
    const mp_value *r = nullptr;
    int rc = mp_async_result_get(ar, kWait, &r);
    std::string msg = mp_last_error_message();
    EXPECT_EQ(MP_EWORKERDIED, rc) << mp_err_name(rc) << " " << msg;
    EXPECT_EQ("", death_named(kCrashSegv, msg));
    for (size_t i = 0; i < in.size(); i++)
        EXPECT_TRUE(out[i] == INT64_MIN || out[i] == rec_expected(in[i])) << "record " << i;
    EXPECT_EQ("", wait_workers(pool.get(), kProcs, {dead}));
    in[20].salt = 0;
    check_method(pool.get(), Method::MapRecords, 64, 4);
}

// An initializer that crashes: every worker dies before it is ready. A few such deaths
// in a row are a start that cannot succeed, so the calls fail with MP_EWORKERDIED
// instead of workers being started forever (CPython's pool respawns them endlessly).
TEST_P(PoolCrashTest, InitializerThatCrashesFailsTheCalls) {
    if (dummy()) GTEST_SKIP() << "the workers are threads: a crash would end the test";
    Args a;
    a.i(kCrashExit);
    mp_pool_opts po = {};
    po.initializer = init_crash;
    po.initargs = a.get();
    PoolHolder pool = make_pool(kProcs, po);
    ASSERT_TRUE(pool);
    Value items = int_list(10);
    mp_value *res = bogus<mp_value>();
    int rc = mp_pool_map(pool.get(), task_echo, items.get(), nullptr, &res);
    std::string msg = mp_last_error_message();
    EXPECT_EQ(MP_EWORKERDIED, rc) << mp_err_name(rc) << " " << msg;
    EXPECT_NE(std::string::npos, msg.find("before it was ready")) << msg;
    EXPECT_EQ(nullptr, res);
    mp_value_free(rc == 0 ? res : nullptr);
}

// A worker killed while it starts (its initializer still running) is replaced as an
// idle one is: one death before readiness is not yet a start that cannot succeed.
TEST_P(PoolCrashTest, WorkerKilledWhileStartingIsReplaced) {
    if (dummy()) GTEST_SKIP() << "the workers are threads: nothing to kill";
    Args a;
    ASSERT_EQ(0, mp_args_add_event(a.get(), gate())) << err();
    mp_pool_opts po = {};
    po.initializer = init_wait;
    po.initargs = a.get();
    PoolHolder pool = make_pool(kProcs, po);
    ASSERT_TRUE(pool);
    std::vector<int64_t> pids = worker_pids(pool.get());
    ASSERT_EQ((size_t)kProcs, pids.size());
    kill_worker(pids[0]);
    EXPECT_TRUE(wait_process_gone(pids[0], kWait));
    open_gate();
    EXPECT_EQ("", wait_workers(pool.get(), kProcs, {pids[0]}));
    check_method(pool.get(), Method::Map, 100, 1);
}

// A worker that dies between tasks is replaced; no task fails.
TEST_P(PoolCrashTest, IdleWorkerKilled) {
    if (dummy()) GTEST_SKIP() << "the workers are threads: nothing to kill";
    PoolHolder pool = make_pool(kProcs);
    ASSERT_TRUE(pool);
    std::vector<int64_t> pids = worker_pids(pool.get());
    ASSERT_EQ((size_t)kProcs, pids.size());
    kill_worker(pids[0]);
    EXPECT_TRUE(wait_process_gone(pids[0], kWait));
    EXPECT_EQ("", wait_workers(pool.get(), kProcs, {pids[0]}));
    check_method(pool.get(), Method::Map, 100, 1);
    check_method(pool.get(), Method::Imap, 100, 1);
}

// ---- time limits ----

void PoolCrashTest::timeout_round(PoolHolder &pool, double call_timeout, int target, int round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int64_t n = 6, first = round * 100;
    mp_call_opts o = {};
    o.timeout = call_timeout;
    std::vector<Async> rs;
    for (int64_t i = 0; i < n; i++) {
        Value args = sleep_args(first + i, i == target ? kCap : 0.0);
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_sleep, args.get(), &o, &ar)) << err();
        rs.emplace_back(ar);
    }
    Report rep;
    ASSERT_TRUE(take_report("sleep", first + target, &rep)) << "the sleeping task never ran";
    pool.note_pid(rep.pid);
    for (int64_t i = 0; i < n; i++) {
        const mp_value *r = bogus<const mp_value>();
        int rc = mp_async_result_get(rs[i].get(), kWait, &r);
        if (i == target) {
            EXPECT_EQ(MP_ETIMEDOUT, rc) << mp_err_name(rc) << " " << err();
            EXPECT_EQ(nullptr, r);
            // The task's limit, not get's: the result is ready, and failed.
            EXPECT_TRUE(mp_async_result_ready(rs[i].get())) << "the task ran past its limit";
            bool ok = true;
            EXPECT_EQ(0, mp_async_result_successful(rs[i].get(), &ok));
            EXPECT_FALSE(ok);
        } else {
            EXPECT_EQ(0, rc) << "task " << i << ": " << mp_err_name(rc) << " " << err();
            EXPECT_EQ(affine(first + i), rc == 0 ? mp_value_as_int(r) : -1);
        }
    }
    if (process_workers()) {
        EXPECT_TRUE(wait_process_gone(rep.pid, kWait))
            << "the worker of the timed-out task still runs";
        EXPECT_EQ("", wait_workers(pool.get(), kProcs, {rep.pid})) << "the worker is not replaced";
    }
    expect_pool_works(pool.get(), round);
}

TEST_P(PoolCrashTest, TaskTimeoutOfThePool) {
    mp_pool_opts po = {};
    po.task_timeout = kTaskLimit;
    PoolHolder pool = make_env_pool(kProcs, 42, po);
    ASSERT_TRUE(pool);
    timeout_round(pool, 0, 2, 0); // 0: the pool's limit
}

TEST_P(PoolCrashTest, TaskTimeoutOfTheCall) {
    PoolHolder pool = make_env_pool(kProcs); // no limit of its own
    ASSERT_TRUE(pool);
    timeout_round(pool, kTaskLimit, 3, 0);
    if (HasFatalFailure()) return;
    // imap with the call's limit: the timed-out item's error, then the others.
    Value items(mp_value_list_new());
    for (int64_t i = 0; i < 6; i++)
        mp_value_list_append(items.get(), sleep_args(500 + i, i == 1 ? kCap : 0.0).release());
    mp_call_opts o = {};
    o.chunksize = 1;
    o.timeout = kTaskLimit;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_sleep, items.get(), &o, &it)) << err();
    Imap hold(it);
    for (int64_t i = 0; i < 6; i++) {
        mp_value *v = nullptr;
        int rc = mp_imap_next(it, kWait, &v);
        Value hv(v);
        if (i == 1) {
            // A second MP_ETIMEDOUT for the next item would mean this one was next()'s.
            EXPECT_EQ(MP_ETIMEDOUT, rc) << mp_err_name(rc);
        } else {
            EXPECT_EQ(0, rc) << "item " << i << ": " << mp_err_name(rc) << " " << err();
            EXPECT_EQ(affine(500 + i), rc == 0 ? mp_value_as_int(v) : -1);
        }
    }
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EOF, mp_imap_next(it, kWait, &v));
}

// The call's timeout wins over the pool's: MP_FOREVER lifts it, a longer one extends it;
// 0 keeps the pool's.
TEST_P(PoolCrashTest, TheCallsTimeoutOverridesThePools) {
    mp_pool_opts po = {};
    po.task_timeout = 0.5;
    PoolHolder pool = make_env_pool(kProcs, 42, po);
    ASSERT_TRUE(pool);
    struct Case {
        double call_timeout, sleep;
        int want;
    } cases[] = {
        {MP_FOREVER, 2.0, 0},      // no limit for this call
        {20.0, 2.0, 0},            // a longer limit for this call
        {0.0, kCap, MP_ETIMEDOUT}, // the pool's limit
    };
    int64_t x = 0;
    for (const Case &c : cases) {
        SCOPED_TRACE("call timeout " + std::to_string(c.call_timeout));
        mp_call_opts o = {};
        o.timeout = c.call_timeout;
        Value args = sleep_args(++x, c.sleep);
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_sleep, args.get(), &o, &ar)) << err();
        Async hold(ar);
        const mp_value *r = nullptr;
        int rc = mp_async_result_get(ar, kWait, &r);
        EXPECT_EQ(c.want, rc) << mp_err_name(rc) << " " << err();
        EXPECT_TRUE(mp_async_result_ready(ar));
        if (rc == 0) {
            EXPECT_EQ(affine(x), mp_value_as_int(r));
        }
    }
    if (process_workers()) {
        EXPECT_EQ("", wait_workers(pool.get(), kProcs));
    }
    expect_pool_works(pool.get(), 0);
}

TEST_P(PoolCrashTest, TaskTimeoutRepeated) {
    PoolHolder pool = make_env_pool(kProcs);
    ASSERT_TRUE(pool);
    for (int round = 0; round < kRounds && !HasFailure(); round++)
        timeout_round(pool, kTaskLimit, round % 6, round);
}
