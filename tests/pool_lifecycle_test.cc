// Pool and ThreadPool (see pool_test.cc) over time: async results (get and wait with
// timeouts, ready, successful, cancel, a waitable for mp_wait next to a connection and a
// process sentinel, freeing one early), callbacks and error callbacks (once each, on one
// thread that is not the caller's, never two at once, with get's very result), progress
// (monotonic, complete at the end, failures counted, a source's total), and the pool's
// life: close, join, terminate with work pending, free with results pending, an imap
// freed with tasks in flight.
//
// Tasks are held at a gate (an Event passed to the workers' initializer) so that a test
// knows what runs and what waits; nothing here asserts how long anything takes.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pool_fixture.h"

using namespace mpt;

namespace {

int64_t bad_item_in(const std::string &msg) {
    size_t at = msg.find("bad item ");
    return at == std::string::npos ? -1 : std::strtoll(msg.c_str() + at + 9, nullptr, 10);
}

struct ConnFree {
    void operator()(mp_connection *c) const { mp_connection_free(c); }
};
using Conn = std::unique_ptr<mp_connection, ConnFree>;

// Every call that submits work, which must all fail with one of codes (and read
// nothing from src).
void expect_every_call_refused(mp_pool *p, std::initializer_list<int> codes, CountingSource *src) {
    Value items = int_list(3), targs = starmap_args(3), args = ints({1});
    Rec recs[2] = {};
    int64_t outs[2] = {0, 0};
    mp_value *r = nullptr;
    mp_async_result *ar = nullptr;
    mp_imap *it = nullptr;
    expect_fails(
        codes, &r, mp_value_free, [&] { return mp_pool_apply(p, task_affine, args.get(), &r); },
        "apply");
    expect_fails(
        codes, &ar, mp_async_result_free,
        [&] { return mp_pool_apply_async(p, task_affine, args.get(), nullptr, &ar); },
        "apply_async");
    expect_fails(
        codes, &r, mp_value_free,
        [&] { return mp_pool_map(p, task_affine, items.get(), nullptr, &r); }, "map");
    expect_fails(
        codes, &ar, mp_async_result_free,
        [&] { return mp_pool_map_async(p, task_affine, items.get(), nullptr, &ar); }, "map_async");
    expect_fails(
        codes, &r, mp_value_free,
        [&] { return mp_pool_starmap(p, task_weighted, targs.get(), nullptr, &r); }, "starmap");
    expect_fails(
        codes, &ar, mp_async_result_free,
        [&] { return mp_pool_starmap_async(p, task_weighted, targs.get(), nullptr, &ar); },
        "starmap_async");
    expect_fails(
        codes, &it, mp_imap_free,
        [&] { return mp_pool_imap(p, task_affine, items.get(), nullptr, &it); }, "imap");
    expect_fails(
        codes, &it, mp_imap_free,
        [&] { return mp_pool_imap_unordered(p, task_affine, items.get(), nullptr, &it); },
        "imap_unordered");
    expect_fails(
        codes, &r, mp_value_free,
        [&] { return mp_pool_map_source(p, task_affine, counting_source, src, nullptr, &r); },
        "map_source");
    expect_fails(
        codes, &it, mp_imap_free,
        [&] {
            return mp_pool_imap_source(p, task_affine, counting_source, src, true, nullptr, &it);
        },
        "imap_source");
    int rc =
        mp_pool_map_records(p, rec_affine, recs, sizeof(Rec), outs, sizeof(int64_t), 2, nullptr);
    EXPECT_TRUE(std::find(codes.begin(), codes.end(), rc) != codes.end())
        << "map_records: " << mp_err_name(rc);
    expect_fails(
        codes, &ar, mp_async_result_free,
        [&] {
            return mp_pool_map_records_async(p, rec_affine, recs, sizeof(Rec), outs,
                                             sizeof(int64_t), 2, nullptr, &ar);
        },
        "map_records_async");
    EXPECT_EQ(0, src->pulled.load()) << "a refused call read its source";
}

// Checks a progress log: done and failed never go down, total stays, done + failed
// (or done) ends at want_total with want_failed failures. "" or what is wrong.
std::string progress_problem(CallLog &log, size_t want_total, size_t want_failed) {
    std::lock_guard<std::mutex> lk(log.mu);
    if (log.progress.empty()) return "no progress call";
    for (size_t i = 1; i < log.progress.size(); i++) {
        const CallLog::Progress &a = log.progress[i - 1], &b = log.progress[i];
        if (b.done < a.done || b.failed < a.failed)
            return "progress went back at call " + std::to_string(i);
        if (a.total != 0 && b.total != a.total)
            return "the total changed at call " + std::to_string(i);
    }
    for (const CallLog::Progress &p : log.progress)
        if (p.done > want_total || p.failed > want_total) return "more done than the total";
    const CallLog::Progress &last = log.progress.back();
    if (last.total != want_total)
        return "final total " + std::to_string(last.total) + ", want " + std::to_string(want_total);
    if (last.failed != want_failed)
        return "final failed " + std::to_string(last.failed) + ", want " +
               std::to_string(want_failed);
    if (!(last.done == want_total || last.done + last.failed == want_total))
        return "final done " + std::to_string(last.done) + " of " + std::to_string(want_total);
    return "";
}

} // namespace

// ---- get, wait, ready, successful ----

TEST_P(PoolTest, AsyncResultGetWaitReadySuccessful) {
    PoolHolder pool = make_env_pool(1);
    ASSERT_TRUE(pool);
    Value args = ints({5});
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_gated, args.get(), nullptr, &ar)) << err();
    Async hold(ar);
    Report rep;
    ASSERT_TRUE(take_report("started", 5, &rep)) << "the task did not start";
    EXPECT_FALSE(mp_async_result_ready(ar));
    bool ok = true;
    EXPECT_EQ(MP_ESTATE, mp_async_result_successful(ar, &ok)) << "not ready: Python's ValueError";
    EXPECT_FALSE(ok) << "the out value is false on failure";
    for (double t : {0.05, 0.0, -1.0}) {
        const mp_value *r = bogus<const mp_value>();
        EXPECT_EQ(MP_ETIMEDOUT, mp_async_result_get(ar, t, &r)) << "get, timeout " << t;
        EXPECT_EQ(nullptr, r);
        EXPECT_EQ(MP_ETIMEDOUT, mp_async_result_wait(ar, t)) << "wait, timeout " << t;
    }
    EXPECT_FALSE(mp_async_result_ready(ar));
    open_gate();
    EXPECT_EQ(0, mp_async_result_wait(ar, kWait)) << err();
    EXPECT_TRUE(mp_async_result_ready(ar));
    EXPECT_EQ(0, mp_async_result_successful(ar, &ok)) << err();
    EXPECT_TRUE(ok);
    const mp_value *r = nullptr, *again = nullptr;
    ASSERT_EQ(0, mp_async_result_get(ar, 0, &r)) << "ready: no wait needed " << err();
    EXPECT_EQ(affine(5), mp_value_as_int(r));
    ASSERT_EQ(0, mp_async_result_get(ar, kWait, &again)) << err();
    EXPECT_EQ(r, again) << "get gives the result it keeps, every time";
    EXPECT_EQ(0, mp_async_result_wait(ar, 0));
    EXPECT_EQ(0, mp_async_result_wait(ar, -1.0));
}

TEST_P(PoolTest, AsyncResultOfAFailedTask) {
    PoolHolder pool = make_pool(1);
    ASSERT_TRUE(pool);
    Value args = ints({3});
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_fail_some, args.get(), nullptr, &ar))
        << err();
    Async hold(ar);
    for (int i = 0; i < 2; i++) {
        const mp_value *r = bogus<const mp_value>();
        EXPECT_EQ(MP_EINVAL, mp_async_result_get(ar, kWait, &r)) << "get " << i;
        EXPECT_EQ(3, bad_item_in(mp_last_error_message())) << "get " << i << " " << err();
        EXPECT_EQ(nullptr, r);
    }
    EXPECT_TRUE(mp_async_result_ready(ar));
    bool ok = true;
    EXPECT_EQ(0, mp_async_result_successful(ar, &ok)) << err();
    EXPECT_FALSE(ok);
    EXPECT_EQ(0, mp_async_result_wait(ar, 0)) << "a failed result is ready";
}

// ---- cancel ----

TEST_P(PoolTest, CancelBeforeStart) {
    CallLog log_b, log_m;
    PoolHolder pool = make_env_pool(1);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    // A holds the only worker; B and M wait behind it.
    Value a_args = ints({1}), b_args = ints({2});
    Value m_items = int_list(5, 10);
    mp_async_result *a = nullptr, *b = nullptr, *m = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(p, task_gated, a_args.get(), nullptr, &a)) << err();
    Async ah(a);
    Report rep;
    ASSERT_TRUE(take_report("started", 1, &rep));
    mp_call_opts ob = log_b.opts(0, false), om = log_m.opts(1, false);
    ASSERT_EQ(0, mp_pool_apply_async(p, task_report, b_args.get(), &ob, &b)) << err();
    Async bh(b);
    ASSERT_EQ(0, mp_pool_map_async(p, task_report, m_items.get(), &om, &m)) << err();
    Async mh(m);

    for (mp_async_result *c : {b, m}) {
        EXPECT_EQ(0, mp_async_result_cancel(c)) << "none of its tasks started " << err();
        const mp_value *r = bogus<const mp_value>();
        EXPECT_EQ(MP_ECANCELED, mp_async_result_get(c, kWait, &r));
        EXPECT_EQ(nullptr, r);
        EXPECT_TRUE(mp_async_result_ready(c));
        bool ok = true;
        EXPECT_EQ(0, mp_async_result_successful(c, &ok));
        EXPECT_FALSE(ok);
        EXPECT_EQ(MP_ESTATE, mp_async_result_cancel(c)) << "canceled already: it is ready";
    }
    EXPECT_EQ(MP_ESTATE, mp_async_result_cancel(a)) << "its task runs";
    EXPECT_FALSE(mp_async_result_ready(a)) << "a refused cancel changes nothing";

    open_gate();
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(a, kWait, &r)) << err();
    EXPECT_EQ(affine(1), mp_value_as_int(r));
    EXPECT_EQ(MP_ESTATE, mp_async_result_cancel(a)) << "ready";
    Value c_args = ints({3});
    mp_value *cr = nullptr;
    ASSERT_EQ(0, mp_pool_apply(p, task_report, c_args.get(), &cr)) << err();
    mp_value_free(cr);
    // Once all the work is done, the canceled tasks have not run, and their success
    // callbacks were never called.
    EXPECT_EQ(0, mp_pool_close(p)) << err();
    EXPECT_EQ(0, mp_pool_join(p, kWait)) << err();
    std::set<int64_t> ran;
    for (const Report &x : drain_reports())
        if (x.kind == "ran") ran.insert(x.item);
    EXPECT_EQ(std::set<int64_t>({3}), ran) << "a canceled task ran";
    EXPECT_EQ(0, log_b.callbacks);
    EXPECT_EQ(0, log_m.callbacks);
}

TEST_P(PoolTest, CancelAMapThatStarted) {
    PoolHolder pool = make_env_pool(1);
    ASSERT_TRUE(pool);
    Value items = int_list(3, 1);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_async_result *m = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(pool.get(), task_gated, items.get(), &o, &m)) << err();
    Async mh(m);
    Report rep;
    ASSERT_TRUE(take_report("started", 1, &rep));
    EXPECT_EQ(MP_ESTATE, mp_async_result_cancel(m)) << "one of its tasks started";
    open_gate();
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(m, kWait, &r)) << err();
    EXPECT_EQ("", diff_ints(r, {affine(1), affine(2), affine(3)}));
    EXPECT_EQ(MP_ESTATE, mp_async_result_cancel(m));
}

// ---- mp_wait ----

TEST_P(PoolTest, WaitOnAResultAConnectionAndAProcess) {
    PoolHolder pool = make_env_pool(1);
    ASSERT_TRUE(pool);
    Value args = ints({9});
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_gated, args.get(), nullptr, &ar)) << err();
    Async hold(ar);
    Report rep;
    ASSERT_TRUE(take_report("started", 9, &rep));

    mp_waitable w[3];
    ASSERT_EQ(0, mp_async_result_waitable(ar, &w[0])) << err();
    mp_waitable same;
    ASSERT_EQ(0, mp_async_result_waitable(ar, &same)) << err();
    EXPECT_EQ(w[0].kind, same.kind) << "made on first use, then the same";
    if (w[0].kind == MP_WAIT_CONNECTION) {
        EXPECT_EQ(w[0].u.conn, same.u.conn);
    } else {
        EXPECT_EQ(w[0].u.handle, same.u.handle);
    }
    mp_connection *rd = nullptr, *wr = nullptr;
    ASSERT_EQ(0, mp_pipe(false, &rd, &wr)) << err();
    Conn rh(rd), wh(wr);
    w[1] = mp_waitable_connection(rd);
    Blocker *b = nullptr;
    mp_process *proc = start_blocked(&b);
    ASSERT_NE(nullptr, proc);
    mp_os_handle sentinel = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_process_sentinel(proc, &sentinel)) << err();
    w[2] = mp_waitable_handle(sentinel);

    bool ready[3] = {true, true, true};
    size_t nready = 99;
    EXPECT_EQ(MP_ETIMEDOUT, mp_wait(w, 3, 0.05, ready, &nready)) << "nothing is ready";
    EXPECT_FALSE(ready[0] || ready[1] || ready[2]);

    open_gate();
    ASSERT_EQ(0, mp_wait(w, 3, kWait, ready, &nready)) << err();
    EXPECT_TRUE(ready[0]) << "the result";
    EXPECT_FALSE(ready[1]);
    EXPECT_FALSE(ready[2]);
    EXPECT_EQ(1u, nready);
    EXPECT_TRUE(mp_async_result_ready(ar)) << "its waitable fired before it was ready";

    // The result stays ready; the connection joins it.
    ASSERT_EQ(0, mp_connection_send_bytes(wr, "x", 1)) << err();
    ASSERT_EQ(0, mp_wait(w, 3, kWait, ready, &nready)) << err();
    EXPECT_TRUE(ready[0]);
    EXPECT_TRUE(ready[1]);
    EXPECT_FALSE(ready[2]);
    EXPECT_EQ(2u, nready);

    // And the process's end.
    b->release_now();
    EXPECT_EQ(0, join_code(proc));
    ASSERT_EQ(0, mp_wait(w, 3, kWait, ready, &nready)) << err();
    EXPECT_TRUE(ready[0] && ready[1] && ready[2]);
    EXPECT_EQ(3u, nready);

    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(ar, 0, &r)) << err();
    EXPECT_EQ(affine(9), mp_value_as_int(r));
}

// ---- freeing a result early ----

TEST_P(PoolTest, FreeAPendingResult) {
    PoolHolder pool = make_env_pool(1);
    ASSERT_TRUE(pool);
    Value args = ints({4}), after = ints({5});
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_gated, args.get(), nullptr, &ar)) << err();
    Report rep;
    ASSERT_TRUE(take_report("started", 4, &rep));
    mp_async_result_free(ar); // the call goes on; its result is dropped
    open_gate();
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(pool.get(), task_report, after.get(), &r)) << err();
    EXPECT_EQ(affine(5), mp_value_as_int(r));
    mp_value_free(r);
    ASSERT_TRUE(take_report("ran", 5, &rep));
}

// ---- callbacks ----

TEST_P(PoolTest, CallbackOncePerResultOnTheHandlerThread) {
    const int n = 20;
    std::vector<std::unique_ptr<CallLog>> logs;
    for (int i = 0; i < n; i++) logs.emplace_back(new CallLog);
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    std::vector<Async> rs;
    for (int i = 0; i < n; i++) {
        Value args = ints({i});
        mp_call_opts o = logs[i]->opts(0, false);
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_affine, args.get(), &o, &ar)) << err();
        rs.emplace_back(ar);
    }
    std::set<int64_t> threads;
    for (int i = 0; i < n; i++) {
        const mp_value *r = nullptr;
        ASSERT_EQ(0, mp_async_result_get(rs[i].get(), kWait, &r)) << err();
        ASSERT_TRUE(logs[i]->wait_calls(1)) << "result " << i << ": no callback";
        std::lock_guard<std::mutex> lk(logs[i]->mu);
        EXPECT_EQ(1, logs[i]->callbacks) << "result " << i;
        EXPECT_EQ(0, logs[i]->errors);
        EXPECT_EQ(r, logs[i]->result) << "result " << i << ": the callback's result is not get's";
        EXPECT_EQ(affine(i), mp_value_as_int(logs[i]->result_copy.get()));
        threads.insert(logs[i]->threads.begin(), logs[i]->threads.end());
    }
    EXPECT_EQ(1u, threads.size()) << "callbacks ran on " << threads.size() << " threads";
    EXPECT_EQ(0u, threads.count(current_thread_id())) << "a callback ran on the caller's thread";
    EXPECT_FALSE(g_callbacks_overlapped) << "two callbacks ran at once";
    // Still once each when the pool has ended.
    EXPECT_EQ(0, mp_pool_close(pool.get()));
    EXPECT_EQ(0, mp_pool_join(pool.get(), kWait)) << err();
    for (int i = 0; i < n; i++) EXPECT_EQ(1, logs[i]->calls()) << "result " << i;
}

// A thread in a synchronous call reads and handles the pool's answers itself (so an
// apply costs a pipe's two wake-ups, not three): callbacks and progress of other calls
// must still run on the one handler thread, never on the thread that happened to read
// their answers, and every result must still reach its own call.
TEST_P(PoolTest, CallbacksStayOnTheHandlerThreadWhileCallersReadAnswers) {
    const int n = 40;
    std::vector<std::unique_ptr<CallLog>> logs;
    for (int i = 0; i < n; i++) logs.emplace_back(new CallLog);
    CallLog mlog;
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    std::atomic<int64_t> sync_tid{0};
    std::atomic<bool> stop{false};
    std::atomic<int> sync_calls{0};
    std::string sync_error;
    std::thread syncer([&] {
        sync_tid = current_thread_id();
        Value items = int_list(50);
        // Until the other calls are all done (so it reads while they are answered).
        for (int i = 0; (i < 300 || !stop) && sync_error.empty(); i++) {
            Value args = ints({i});
            mp_value *r = nullptr;
            int rc = mp_pool_apply(p, task_affine, args.get(), &r);
            sync_calls++;
            if (rc != 0)
                sync_error =
                    std::string("apply: ") + mp_err_name(rc) + " " + mp_last_error_message();
            else if (mp_value_as_int(r) != affine(i))
                sync_error = "apply " + std::to_string(i) + ": a wrong result";
            mp_value_free(r);
            if (i % 50 != 0 || !sync_error.empty()) continue;
            rc = mp_pool_map(p, task_affine, items.get(), nullptr, &r);
            std::vector<int64_t> want;
            for (int64_t k = 0; k < 50; k++) want.push_back(affine(k));
            if (rc != 0)
                sync_error = std::string("map: ") + mp_err_name(rc);
            else if (!(sync_error = diff_ints(r, want)).empty())
                sync_error = "map: " + sync_error;
            mp_value_free(r);
        }
    });
    struct Joiner { // also when an ASSERT below returns early
        std::thread &t;
        std::atomic<bool> &stop;
        ~Joiner() {
            stop = true;
            if (t.joinable()) t.join();
        }
    } joiner{syncer, stop};
    std::vector<Async> rs;
    Value mitems = int_list(200);
    mp_call_opts mo = mlog.opts(1, true);
    mp_async_result *mar = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(p, task_affine, mitems.get(), &mo, &mar)) << err();
    Async mres(mar);
    for (int i = 0; i < n; i++) {
        Value args = ints({i});
        mp_call_opts o = logs[i]->opts(0, false);
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(p, task_affine, args.get(), &o, &ar)) << err();
        rs.emplace_back(ar);
    }
    std::set<int64_t> threads;
    for (int i = 0; i < n; i++) {
        const mp_value *r = nullptr;
        ASSERT_EQ(0, mp_async_result_get(rs[i].get(), kWait, &r)) << err();
        EXPECT_EQ(affine(i), mp_value_as_int(r)) << "result " << i;
        ASSERT_TRUE(logs[i]->wait_calls(1)) << "result " << i << ": no callback";
        std::lock_guard<std::mutex> lk(logs[i]->mu);
        EXPECT_EQ(1, logs[i]->callbacks) << "result " << i;
        threads.insert(logs[i]->threads.begin(), logs[i]->threads.end());
    }
    const mp_value *ml = nullptr;
    ASSERT_EQ(0, mp_async_result_get(mres.get(), kWait, &ml)) << err();
    EXPECT_EQ(200u, mp_value_len(ml));
    EXPECT_TRUE(mlog.wait_progress_end()) << "the map's progress did not end";
    stop = true;
    syncer.join();
    EXPECT_GE(sync_calls.load(), 300) << "the synchronous calls stopped early";
    EXPECT_EQ("", sync_error);
    {
        std::lock_guard<std::mutex> lk(mlog.mu);
        threads.insert(mlog.threads.begin(), mlog.threads.end());
    }
    EXPECT_EQ(1u, threads.size()) << "callbacks and progress ran on " << threads.size()
                                  << " threads";
    EXPECT_EQ(0u, threads.count(current_thread_id())) << "a callback ran on the caller's thread";
    EXPECT_EQ(0u, threads.count(sync_tid.load()))
        << "a callback ran on the thread of a synchronous call";
}

TEST_P(PoolTest, ErrorCallbackOnce) {
    CallLog la, lm, lr;
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    Value args = ints({3}), items = int_list(21); // 3, 10 and 17 fail
    mp_call_opts oa = la.opts(0, false), om = lm.opts(1, false), orr = lr.opts(1, false);
    mp_async_result *a = nullptr, *m = nullptr, *rr = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(p, task_fail_some, args.get(), &oa, &a)) << err();
    Async ah(a);
    ASSERT_EQ(0, mp_pool_map_async(p, task_fail_some, items.get(), &om, &m)) << err();
    Async mh(m);
    std::vector<Rec> recs(30);
    for (size_t i = 0; i < recs.size(); i++) recs[i].x = (int64_t)i; // 13 fails
    std::vector<int64_t> out(recs.size());
    ASSERT_EQ(0, mp_pool_map_records_async(p, rec_fail, recs.data(), sizeof(Rec), out.data(),
                                           sizeof(int64_t), recs.size(), &orr, &rr))
        << err();
    Async rh(rr);
    for (mp_async_result *x : {a, m, rr}) {
        const mp_value *r = nullptr;
        EXPECT_EQ(MP_EINVAL, mp_async_result_get(x, kWait, &r));
    }
    for (CallLog *l : {&la, &lm, &lr}) ASSERT_TRUE(l->wait_calls(1)) << "no error callback";
    EXPECT_EQ(0, mp_pool_close(p));
    EXPECT_EQ(0, mp_pool_join(p, kWait)) << err();
    for (CallLog *l : {&la, &lm, &lr}) {
        std::lock_guard<std::mutex> lk(l->mu);
        EXPECT_EQ(1, l->errors) << "the error callback runs once per call, with the first error";
        EXPECT_EQ(0, l->callbacks) << "a failed call called its success callback";
        EXPECT_EQ(MP_EINVAL, l->error_code);
        EXPECT_EQ(0u, l->threads.count(current_thread_id())) << "ran on the caller's thread";
    }
    EXPECT_EQ(3, bad_item_in(la.error_message)) << la.error_message;
    int64_t bad = bad_item_in(lm.error_message);
    EXPECT_TRUE(bad == 3 || bad == 10 || bad == 17) << lm.error_message;
    EXPECT_FALSE(g_callbacks_overlapped);
}

TEST_P(PoolTest, MapAsyncCallbackGetsTheList) {
    CallLog log, empty_log;
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    Value items = int_list(100);
    mp_call_opts o = log.opts(7, false);
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(pool.get(), task_affine, items.get(), &o, &ar)) << err();
    Async hold(ar);
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << err();
    ASSERT_TRUE(log.wait_calls(1));
    {
        std::lock_guard<std::mutex> lk(log.mu);
        EXPECT_EQ(1, log.callbacks);
        EXPECT_EQ(0, log.errors);
        EXPECT_EQ(r, log.result) << "the callback's list is get's";
        EXPECT_TRUE(mp_value_equal(r, log.result_copy.get()));
    }
    // An empty map is ready at once with an empty list. (CPython does not call the
    // callback then; it may be called at most once.)
    Value none = int_list(0);
    mp_call_opts oe = empty_log.opts(0, false);
    mp_async_result *er = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(pool.get(), task_affine, none.get(), &oe, &er)) << err();
    Async eh(er);
    EXPECT_EQ(0, mp_async_result_wait(er, kWait)) << err();
    r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(er, 0, &r)) << err();
    EXPECT_EQ(MP_VALUE_LIST, mp_value_get_type(r));
    EXPECT_EQ(0u, mp_value_len(r));
    EXPECT_EQ(0, mp_pool_close(pool.get()));
    EXPECT_EQ(0, mp_pool_join(pool.get(), kWait)) << err();
    EXPECT_LE(empty_log.calls(), 1);
    EXPECT_EQ(0, empty_log.errors);
    EXPECT_EQ(1, log.calls());
}

TEST_P(PoolTest, RecordsCallbackGetsNull) {
    CallLog log;
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    std::vector<Rec> in(50);
    for (size_t i = 0; i < in.size(); i++) in[i].x = (int64_t)i;
    std::vector<int64_t> out(in.size());
    mp_call_opts o = log.opts(4);
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_map_records_async(pool.get(), rec_affine, in.data(), sizeof(Rec),
                                           out.data(), sizeof(int64_t), in.size(), &o, &ar))
        << err();
    Async hold(ar);
    const mp_value *r = bogus<const mp_value>();
    ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << err();
    EXPECT_EQ(nullptr, r);
    ASSERT_TRUE(log.wait_calls(1));
    ASSERT_TRUE(log.wait_progress_end());
    EXPECT_EQ("", progress_problem(log, in.size(), 0));
    std::lock_guard<std::mutex> lk(log.mu);
    EXPECT_EQ(1, log.callbacks);
    EXPECT_EQ(nullptr, log.result) << "records have no result value";
    for (size_t i = 0; i < in.size(); i++) EXPECT_EQ(rec_expected(in[i]), out[i]) << "record " << i;
}

// ---- progress ----

TEST_P(PoolTest, ProgressIsMonotonicAndEndsComplete) {
    CallLog lm, li, ls;
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    // map_async, chunks of 7.
    Value items = int_list(100);
    mp_call_opts om = lm.opts(7);
    mp_async_result *ar = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(pool.get(), task_affine, items.get(), &om, &ar)) << err();
    Async hold(ar);
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << err();
    ASSERT_TRUE(lm.wait_progress_end()) << "map: the progress never reached the total";
    EXPECT_EQ("", progress_problem(lm, 100, 0)) << "map";
    // imap, one by one.
    mp_call_opts oi = li.opts(1);
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_affine, items.get(), &oi, &it)) << err();
    Imap ih(it);
    check_imap(it, 100, true);
    ASSERT_TRUE(li.wait_progress_end()) << "imap";
    EXPECT_EQ("", progress_problem(li, 100, 0)) << "imap";
    // starmap (sync), adaptive chunks.
    Value targs = starmap_args(60);
    mp_call_opts os = ls.opts(0);
    mp_value *sr = nullptr;
    ASSERT_EQ(0, mp_pool_starmap(pool.get(), task_weighted, targs.get(), &os, &sr)) << err();
    mp_value_free(sr);
    ASSERT_TRUE(ls.wait_progress_end()) << "starmap";
    EXPECT_EQ("", progress_problem(ls, 60, 0)) << "starmap";
    for (CallLog *l : {&lm, &li, &ls}) {
        std::lock_guard<std::mutex> lk(l->mu);
        EXPECT_EQ(0u, l->threads.count(current_thread_id()))
            << "progress ran on the caller's thread";
    }
    EXPECT_FALSE(g_callbacks_overlapped);
}

// Failed items count as failed. Whether `done` counts them too is not said: the last
// call has done == total or done + failed == total. (imap: every item is processed.)
TEST_P(PoolTest, ProgressCountsFailures) {
    CallLog log;
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    Value items = int_list(50); // 3, 10, 17, 24, 31, 38, 45 fail
    mp_call_opts o = log.opts(1);
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap_unordered(pool.get(), task_fail_some, items.get(), &o, &it)) << err();
    Imap ih(it);
    int errors = 0;
    for (int i = 0; i < 50; i++) {
        mp_value *v = nullptr;
        int rc = mp_imap_next(it, kWait, &v);
        mp_value_free(v);
        ASSERT_TRUE(rc == 0 || rc == MP_EINVAL) << mp_err_name(rc) << " " << err();
        errors += rc != 0;
    }
    EXPECT_EQ(7, errors);
    ASSERT_TRUE(log.wait_progress_end());
    EXPECT_EQ("", progress_problem(log, 50, 7));
}

// Over a source the total is 0 until the source has ended, then the number of items.
TEST_P(PoolTest, ProgressOfASource) {
    CountingSource src;
    src.limit = 200;
    CallLog log;
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    mp_call_opts o = log.opts(1);
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map_source(pool.get(), task_affine, counting_source, &src, &o, &r))
        << err();
    mp_value_free(r);
    ASSERT_TRUE(log.wait_progress_end());
    EXPECT_EQ("", progress_problem(log, 200, 0));
    std::lock_guard<std::mutex> lk(log.mu);
    bool known = false;
    for (const CallLog::Progress &p : log.progress) {
        EXPECT_TRUE(p.total == 0 || p.total == 200) << p.total;
        EXPECT_FALSE(known && p.total == 0) << "the total went back to 0";
        known = known || p.total != 0;
    }
}

// ---- close, join, terminate ----

TEST_P(PoolTest, CloseLetsSubmittedWorkFinish) {
    PoolHolder pool = make_env_pool(2);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    std::vector<int64_t> pids = worker_pids(p);
    std::vector<Async> rs;
    for (int64_t i = 0; i < 3; i++) {
        Value args = ints({i});
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(p, task_gated, args.get(), nullptr, &ar)) << err();
        rs.emplace_back(ar);
    }
    Report rep;
    ASSERT_TRUE(take_report("started", -1, &rep));
    ASSERT_TRUE(take_report("started", -1, &rep)) << "both workers busy";
    EXPECT_EQ(0, mp_pool_close(p)) << err();
    EXPECT_EQ(0, mp_pool_close(p)) << "closing twice is fine";
    EXPECT_EQ(MP_ETIMEDOUT, mp_pool_join(p, 0.05)) << "the workers still have submitted work";
    open_gate();
    for (int64_t i = 0; i < 3; i++) {
        const mp_value *r = nullptr;
        EXPECT_EQ(0, mp_async_result_get(rs[i].get(), kWait, &r)) << "task " << i << " " << err();
        EXPECT_EQ(affine(i), mp_value_as_int(r)) << "task " << i;
    }
    EXPECT_EQ(0, mp_pool_join(p, kWait)) << err();
    EXPECT_EQ(0, mp_pool_join(p, 0)) << "joined: at once";
    if (process_workers()) {
        for (int64_t pid : pids)
            EXPECT_FALSE(process_running(pid)) << "worker " << pid << " still runs after join";
    }
}

TEST_P(PoolTest, NothingCanBeSubmittedAfterClose) {
    CountingSource src;
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    ASSERT_EQ(0, mp_pool_close(pool.get())) << err();
    expect_every_call_refused(pool.get(), {MP_ESTATE}, &src);
    EXPECT_EQ(0, mp_pool_join(pool.get(), kWait)) << err();
    expect_every_call_refused(pool.get(), {MP_ESTATE}, &src);
}

// After terminate, too (CPython: "Pool not running"); MP_ECLOSED would say it as well.
TEST_P(PoolTest, NothingCanBeSubmittedAfterTerminate) {
    CountingSource src;
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    ASSERT_EQ(0, mp_pool_terminate(pool.get())) << err();
    expect_every_call_refused(pool.get(), {MP_ESTATE, MP_ECLOSED}, &src);
    EXPECT_EQ(0, mp_pool_join(pool.get(), kWait)) << err();
}

TEST_P(PoolTest, JoinBeforeCloseIsAnError) {
    PoolHolder pool = make_pool(1);
    ASSERT_TRUE(pool);
    EXPECT_EQ(MP_ESTATE, mp_pool_join(pool.get(), 0));
    EXPECT_EQ(MP_ESTATE, mp_pool_join(pool.get(), kWait)) << "not a wait: an error at once";
    check_method(pool.get(), Method::Map, 10, 1); // still running
}

TEST_P(PoolTest, TerminateAnIdlePool) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    std::vector<int64_t> pids = worker_pids(pool.get());
    EXPECT_EQ(0, mp_pool_terminate(pool.get())) << err();
    EXPECT_EQ(0, mp_pool_join(pool.get(), kWait)) << err();
    EXPECT_EQ(0, mp_pool_terminate(pool.get())) << "terminating twice is fine";
    if (process_workers()) {
        for (int64_t pid : pids)
            EXPECT_FALSE(process_running(pid)) << "worker " << pid << " still runs";
    }
}

// terminate with work pending: every result not ready fails with MP_ECLOSED at once
// (the gate stays closed, so no task ever ends before that), ready results keep theirs.
TEST_P(PoolTest, TerminateFailsEveryPendingResult) {
    CountingSource src; // endless
    PoolHolder pool = make_env_pool(2);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    std::vector<int64_t> pids = worker_pids(p);
    Value done_args = ints({7});
    mp_async_result *done = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(p, task_affine, done_args.get(), nullptr, &done)) << err();
    Async dh(done);
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(done, kWait, &r)) << err();

    std::vector<Async> pending;
    for (int64_t i = 0; i < 5; i++) { // 2 run, 3 wait
        Value args = ints({i});
        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_apply_async(p, task_gated, args.get(), nullptr, &ar)) << err();
        pending.emplace_back(ar);
    }
    Report rep;
    ASSERT_TRUE(take_report("started", -1, &rep));
    ASSERT_TRUE(take_report("started", -1, &rep));
    Value items = int_list(10, 10);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_async_result *m = nullptr;
    ASSERT_EQ(0, mp_pool_map_async(p, task_gated, items.get(), &o, &m)) << err();
    pending.emplace_back(m);
    mp_imap *it = nullptr, *is = nullptr;
    ASSERT_EQ(0, mp_pool_imap(p, task_gated, items.get(), &o, &it)) << err();
    Imap ih(it);
    ASSERT_EQ(0, mp_pool_imap_source(p, task_gated, counting_source, &src, false, &o, &is))
        << err();
    Imap sh(is);

    ASSERT_EQ(0, mp_pool_terminate(p)) << err();
    for (size_t i = 0; i < pending.size(); i++) {
        const mp_value *pr = bogus<const mp_value>();
        EXPECT_EQ(MP_ECLOSED, mp_async_result_get(pending[i].get(), kWait, &pr)) << "result " << i;
        EXPECT_EQ(nullptr, pr);
        EXPECT_TRUE(mp_async_result_ready(pending[i].get()));
        bool ok = true;
        EXPECT_EQ(0, mp_async_result_successful(pending[i].get(), &ok));
        EXPECT_FALSE(ok);
    }
    for (mp_imap *x : {it, is}) {
        mp_value *v = bogus<mp_value>();
        EXPECT_EQ(MP_ECLOSED, mp_imap_next(x, kWait, &v)) << err();
        EXPECT_EQ(nullptr, v);
    }
    r = nullptr;
    EXPECT_EQ(0, mp_async_result_get(done, 0, &r))
        << "a result ready before terminate keeps its value";
    EXPECT_EQ(affine(7), mp_value_as_int(r));

    open_gate(); // threads of the dummy backend can end only now
    EXPECT_EQ(0, mp_pool_join(p, kWait)) << err();
    int64_t pulled = src.pulled.load();
    for (size_t i = 0; i < pending.size(); i++) {
        const mp_value *pr = nullptr;
        EXPECT_EQ(MP_ECLOSED, mp_async_result_get(pending[i].get(), 0, &pr))
            << "result " << i << " changed after the failure";
    }
    if (process_workers()) {
        for (int64_t pid : pids)
            EXPECT_FALSE(process_running(pid)) << "worker " << pid << " still runs after join";
    }
    ih.reset();
    sh.reset();
    EXPECT_EQ(pulled, src.pulled.load()) << "the source was read after the pool ended";
}

// Results and iterators outlive their pool: not ready when it was freed, they fail
// with MP_ECLOSED.
TEST_P(PoolTest, FreeWithResultsPending) {
    PoolHolder pool = make_env_pool(1);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    Value a_args = ints({1}), b_args = ints({2}), items = int_list(2, 3);
    mp_async_result *a = nullptr, *b = nullptr;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_apply_async(p, task_gated, a_args.get(), nullptr, &a)) << err();
    Async ah(a);
    Report rep;
    ASSERT_TRUE(take_report("started", 1, &rep));
    ASSERT_EQ(0, mp_pool_apply_async(p, task_gated, b_args.get(), nullptr, &b)) << err();
    Async bh(b);
    ASSERT_EQ(0, mp_pool_imap(p, task_gated, items.get(), nullptr, &it)) << err();
    Imap ih(it);
    if (!process_workers()) {
        // Worker threads cannot be stopped: fail the results first, then let the threads
        // end, so that the free can join them.
        ASSERT_EQ(0, mp_pool_terminate(p)) << err();
        open_gate();
    }
    // Process workers: the gate stays closed, the free must not wait for their tasks.
    std::atomic<bool> freed{false};
    std::thread t([&] {
        pool.reset(false);
        freed = true;
    });
    double deadline = now() + kWait;
    while (!freed && now() < deadline) sleep_for(0.01);
    EXPECT_TRUE(freed) << "mp_pool_free waited for the running tasks";
    open_gate();
    t.join();
    for (mp_async_result *x : {a, b}) {
        const mp_value *r = bogus<const mp_value>();
        EXPECT_EQ(MP_ECLOSED, mp_async_result_get(x, kWait, &r));
        EXPECT_EQ(nullptr, r);
        EXPECT_TRUE(mp_async_result_ready(x));
    }
    mp_value *v = bogus<mp_value>();
    EXPECT_EQ(MP_ECLOSED, mp_imap_next(it, kWait, &v));
    EXPECT_EQ(nullptr, v);
}

// mp_imap_free stops the input and drops the tasks in flight without waiting for them.
TEST_P(PoolTest, ImapFreedWithTasksInFlight) {
    CountingSource src; // endless
    PoolHolder pool = make_env_pool(2);
    ASSERT_TRUE(pool);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap_source(pool.get(), task_gated, counting_source, &src, true, &o, &it))
        << err();
    Report rep;
    ASSERT_TRUE(take_report("started", -1, &rep));
    ASSERT_TRUE(take_report("started", -1, &rep)) << "both workers busy";
    std::atomic<bool> freed{false};
    std::thread t([&] {
        mp_imap_free(it);
        freed = true;
    });
    double deadline = now() + kWait;
    while (!freed && now() < deadline) sleep_for(0.01);
    EXPECT_TRUE(freed) << "mp_imap_free waited for the tasks in flight";
    open_gate();
    t.join();
    int64_t at_free = src.pulled.load();
    // The tasks in flight end, dropped; the pool goes on.
    check_method(pool.get(), Method::Map, 20, 1);
    Value args = ints({5});
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(pool.get(), task_report, args.get(), &r)) << err();
    mp_value_free(r);
    EXPECT_EQ(at_free, src.pulled.load()) << "the source was read after mp_imap_free";
}
