// Pool and ThreadPool (see pool_test.cc): record tasks (no output, errors, 64 KiB
// records), sources (a failing one, an endless one read lazily, the thread they run
// on), imap_unordered with tasks ending out of order, calls from many threads at once,
// and nothing left in /dev/shm.
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pool_fixture.h"

using namespace mpt;

// ---- records ----

TEST_P(PoolTest, MapRecordsWithoutOutput) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    std::vector<Rec> in(100);
    for (size_t i = 0; i < in.size(); i++) in[i].x = (int64_t)i;
    int64_t dummy_out = 5;
    for (size_t chunk : {(size_t)1, (size_t)7, (size_t)0}) {
        mp_call_opts o = {};
        o.chunksize = chunk;
        EXPECT_EQ(0, mp_pool_map_records(pool.get(), rec_no_out, in.data(), sizeof(Rec), nullptr, 0,
                                         in.size(), &o))
            << "out_size 0: the task gets out == NULL; chunksize " << chunk_name(chunk) << " "
            << err();
        EXPECT_EQ(0, mp_pool_map_records(pool.get(), rec_no_out, in.data(), sizeof(Rec), &dummy_out,
                                         0, in.size(), &o))
            << "out_size 0 with a buffer: still no output " << err();
    }
    EXPECT_EQ(5, dummy_out);
}

TEST_P(PoolTest, MapRecordsErrorFailsTheCall) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    std::vector<Rec> in(100);
    for (size_t i = 0; i < in.size(); i++) {
        in[i].x = (int64_t)i; // 13 fails
        in[i].salt = (int64_t)i * 1000;
    }
    for (size_t chunk : {(size_t)1, (size_t)8, (size_t)0}) {
        SCOPED_TRACE("chunksize " + chunk_name(chunk));
        std::vector<int64_t> out(in.size(), INT64_MIN);
        mp_call_opts o = {};
        o.chunksize = chunk;
        EXPECT_EQ(MP_EINVAL, mp_pool_map_records(pool.get(), rec_fail, in.data(), sizeof(Rec),
                                                 out.data(), sizeof(int64_t), in.size(), &o));
        // Part of the results may be there: whatever was written is right.
        for (size_t i = 0; i < in.size(); i++)
            EXPECT_TRUE(out[i] == INT64_MIN || out[i] == rec_expected(in[i])) << "record " << i;

        mp_async_result *ar = nullptr;
        ASSERT_EQ(0, mp_pool_map_records_async(pool.get(), rec_fail, in.data(), sizeof(Rec),
                                               out.data(), sizeof(int64_t), in.size(), &o, &ar))
            << err();
        Async hold(ar);
        const mp_value *r = bogus<const mp_value>();
        EXPECT_EQ(MP_EINVAL, mp_async_result_get(ar, kWait, &r));
        EXPECT_EQ(nullptr, r);
        bool ok = true;
        EXPECT_EQ(0, mp_async_result_successful(ar, &ok));
        EXPECT_FALSE(ok);
    }
    check_method(pool.get(), Method::MapRecords, 100, 0);
}

TEST_P(PoolTest, MapRecordsOfBigRecords) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    const size_t n = 40; // 2.5 MiB in all
    std::vector<uint8_t> in(n * kBigRec);
    for (size_t i = 0; i < in.size(); i++) in[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t chunk : {(size_t)1, (size_t)3, (size_t)0}) {
        SCOPED_TRACE("chunksize " + chunk_name(chunk));
        std::vector<uint64_t> out(n, 0);
        mp_call_opts o = {};
        o.chunksize = chunk;
        ASSERT_EQ(0, mp_pool_map_records(pool.get(), rec_hash64k, in.data(), kBigRec, out.data(),
                                         sizeof(uint64_t), n, &o))
            << err();
        for (size_t i = 0; i < n; i++)
            EXPECT_EQ(fnv1a(&in[i * kBigRec], kBigRec), out[i]) << "record " << i;
    }
}

// ---- sources ----

TEST_P(PoolTest, MapOverAFailingSource) {
    CountingSource src;
    src.fail_after = 10;
    src.fail_code = MP_EIO;
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_value *r = bogus<mp_value>();
    EXPECT_EQ(MP_EIO, mp_pool_map_source(pool.get(), task_affine, counting_source, &src, &o, &r))
        << "the source's error is the call's " << err();
    EXPECT_EQ(nullptr, r);
    check_method(pool.get(), Method::MapSource, 20, 1);
}

// imap over a failing source: the items before the failure in order, then the
// source's error (not a clean MP_EOF).
TEST_P(PoolTest, ImapOverAFailingSource) {
    for (bool ordered : {true, false}) {
        SCOPED_TRACE(ordered ? "ordered" : "unordered");
        CountingSource src;
        src.fail_after = 10;
        src.fail_code = MP_EIO;
        PoolHolder pool = make_pool(2);
        ASSERT_TRUE(pool);
        mp_call_opts o = {};
        o.chunksize = 1;
        mp_imap *it = nullptr;
        ASSERT_EQ(0, mp_pool_imap_source(pool.get(), task_affine, counting_source, &src, ordered,
                                         &o, &it))
            << err();
        Imap ih(it);
        std::set<int64_t> got;
        int rc = 0;
        for (int calls = 0; calls <= 11; calls++) {
            mp_value *v = nullptr;
            rc = mp_imap_next(it, kWait, &v);
            Value hv(v);
            if (rc != 0) break;
            int64_t x = mp_value_as_int(v);
            if (ordered) {
                EXPECT_EQ(affine((int64_t)got.size()), x) << "result " << got.size();
            }
            EXPECT_TRUE(got.insert(x).second) << "a result twice";
        }
        EXPECT_EQ(MP_EIO, rc) << "the source's error ends the iteration, not " << mp_err_name(rc);
        EXPECT_LE(got.size(), 10u);
        for (int64_t x : got) EXPECT_TRUE((x - 3) % 7 == 0 && (x - 3) / 7 < 10) << x;
        ih.reset();
        pool.reset();
    }
}

// The window: after taking k results, the source gave fewer than k + a bound. The window
// size is not part of the contract; the bound here is deliberately generous (64 tasks
// per worker + 1024), so it only catches a source read far ahead of the consumer (an
// implementation that reads the whole source first never returns from the call, and the
// watchdog reports it). Chunksize 1 (an adaptive chunk may batch many items per task).
TEST_P(PoolTest, ImapOverAnEndlessSourceIsLazy) {
    const int procs = 2;
    const int64_t slack = 64 * procs + 1024;
    for (bool ordered : {true, false}) {
        SCOPED_TRACE(ordered ? "ordered" : "unordered");
        CountingSource src; // endless
        PoolHolder pool = make_pool(procs);
        ASSERT_TRUE(pool);
        mp_call_opts o = {};
        o.chunksize = 1;
        mp_imap *it = nullptr;
        ASSERT_EQ(0, mp_pool_imap_source(pool.get(), task_affine, counting_source, &src, ordered,
                                         &o, &it))
            << err();
        Imap ih(it);
        std::set<int64_t> got;
        int64_t taken = 0;
        for (int64_t k : {0, 1, 300, 2500}) {
            for (; taken < k; taken++) {
                mp_value *v = nullptr;
                int rc = mp_imap_next(it, kWait, &v);
                Value hv(v);
                ASSERT_EQ(0, rc) << "result " << taken << " " << err();
                int64_t x = mp_value_as_int(v);
                if (ordered) {
                    ASSERT_EQ(affine(taken), x) << "result " << taken;
                }
                ASSERT_TRUE(got.insert(x).second) << "a result twice: " << x;
                ASSERT_LT((x - 3) / 7, src.pulled.load()) << "a result for an item never pulled";
            }
            sleep_for(0.2); // give the pool time to fill its window; only makes the check stricter
            int64_t pulled = src.pulled.load();
            EXPECT_GE(pulled, k);
            EXPECT_LE(pulled, k + slack) << "after " << k << " results the source gave " << pulled;
        }
        EXPECT_FALSE(src.overlapped) << "the source ran on two threads at once";
        EXPECT_FALSE(src.ended);
        // Freed: the source is not read any more.
        ih.reset();
        int64_t at_free = src.pulled.load();
        sleep_for(0.1);
        EXPECT_EQ(at_free, src.pulled.load()) << "the source was read after mp_imap_free";
        pool.reset();
        EXPECT_EQ(at_free, src.pulled.load()) << "the source was read after mp_imap_free";
    }
}

// A source runs on one thread, the pool's result-handler thread (the one progress runs
// on), never the caller's and never two at once.
TEST_P(PoolTest, SourceRunsOnTheResultHandlerThread) {
    CountingSource a, b;
    a.limit = b.limit = 300;
    CallLog log;
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    mp_call_opts o = log.opts(1);
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map_source(pool.get(), task_affine, counting_source, &a, &o, &r)) << err();
    mp_value_free(r);
    mp_imap *it = nullptr;
    o.progress = nullptr;
    ASSERT_EQ(0, mp_pool_imap_source(pool.get(), task_affine, counting_source, &b, false, &o, &it))
        << err();
    Imap ih(it);
    check_imap(it, 300, false);
    ih.reset();
    ASSERT_TRUE(log.wait_progress_end());
    std::lock_guard<std::mutex> lk(log.mu);
    std::set<int64_t> all(a.threads);
    all.insert(b.threads.begin(), b.threads.end());
    all.insert(log.threads.begin(), log.threads.end());
    EXPECT_EQ(1u, all.size()) << "sources and callbacks ran on " << all.size() << " threads";
    EXPECT_EQ(0u, all.count(current_thread_id())) << "a source ran on the caller's thread";
    EXPECT_FALSE(a.overlapped || b.overlapped);
}

// imap_unordered: every item exactly once, also when tasks end out of order.
TEST_P(PoolTest, ImapUnorderedYieldsEveryItemOnce) {
    PoolHolder pool = make_env_pool(4);
    ASSERT_TRUE(pool);
    const int64_t n = 200;
    Value items(mp_value_list_new());
    for (int64_t x = 0; x < n; x++) {
        mp_value *t = mp_value_list_new();
        mp_value_list_append(t, mp_value_int(x));
        mp_value_list_append(t, mp_value_float(0.001 * (double)((x * 7) % 5)));
        mp_value_list_append(items.get(), t);
    }
    for (size_t chunk : {(size_t)1, (size_t)3, (size_t)0}) {
        SCOPED_TRACE("chunksize " + chunk_name(chunk));
        mp_call_opts o = {};
        o.chunksize = chunk;
        mp_imap *it = nullptr;
        ASSERT_EQ(0, mp_pool_imap_unordered(pool.get(), task_sleep, items.get(), &o, &it)) << err();
        Imap ih(it);
        check_imap(it, (size_t)n, false);
    }
}

// ---- threads ----

// Every call may be made from any thread: four threads use one pool at once.
TEST_P(PoolTest, CallsFromManyThreads) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    const int nthreads = 4;
    std::vector<std::string> errors(nthreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < nthreads; t++) {
        ts.emplace_back([p, t, &errors] {
            std::string &e = errors[t];
            int64_t first = t * 100000;
            Value items = int_list(300, first);
            std::vector<int64_t> want;
            for (int64_t i = 0; i < 300; i++) want.push_back(affine(first + i));
            for (int round = 0; round < 3 && e.empty(); round++) {
                mp_value *r = nullptr;
                int rc = mp_pool_map(p, task_affine, items.get(), nullptr, &r);
                if (rc != 0)
                    e = std::string("map: ") + mp_err_name(rc) + " " + mp_last_error_message();
                else if (!(e = diff_ints(r, want)).empty())
                    e = "map: " + e;
                mp_value_free(r);
                mp_imap *it = nullptr;
                rc = mp_pool_imap(p, task_affine, items.get(), nullptr, &it);
                for (int64_t i = 0; rc == 0 && i < 300 && e.empty(); i++) {
                    mp_value *v = nullptr;
                    rc = mp_imap_next(it, kWait, &v);
                    if (rc == 0 && mp_value_as_int(v) != want[(size_t)i])
                        e = "imap: item " + std::to_string(i);
                    mp_value_free(v);
                }
                if (rc != 0 && e.empty()) e = std::string("imap: ") + mp_err_name(rc);
                mp_imap_free(it);
                Value args = ints({first + round});
                mp_async_result *ar = nullptr;
                rc = mp_pool_apply_async(p, task_affine, args.get(), nullptr, &ar);
                const mp_value *cr = nullptr;
                if (rc == 0) rc = mp_async_result_get(ar, kWait, &cr);
                if (rc != 0 && e.empty())
                    e = std::string("apply_async: ") + mp_err_name(rc);
                else if (e.empty() && mp_value_as_int(cr) != affine(first + round))
                    e = "apply_async: wrong result";
                mp_async_result_free(ar);
            }
        });
    }
    for (std::thread &t : ts) t.join();
    for (int t = 0; t < nthreads; t++) EXPECT_EQ("", errors[t]) << "thread " << t;
}

// ---- long lists of numbers ----

// A long list of numbers under adaptive chunks goes to the workers while it is still
// being copied (its first chunks run meanwhile): every kind of call over it gives every
// result in its place, also when a later item turns out to be no number (the rest goes
// pickled) or cannot be sent at all (the call fails and names it).
TEST_P(PoolTest, LongListsOfNumbersGoInWhileTheyAreCopied) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    const size_t n = 100003; // well past the first blocks, and not a multiple of them
    // The ints [0, n), with some of them replaced.
    auto ints_but = [n](std::initializer_list<std::pair<size_t, mp_value *>> other) {
        Value l(mp_value_list_new());
        for (size_t i = 0; i < n; i++) {
            mp_value *v = nullptr;
            for (const auto &o : other)
                if (o.first == i) v = o.second;
            mp_value_list_append(l.get(), v ? v : mp_value_int((int64_t)i));
        }
        return l;
    };

    check_method(p, Method::Map, n, 0);
    check_method(p, Method::MapAsync, n, 0);
    check_method(p, Method::Imap, n, 0);
    check_method(p, Method::ImapUnordered, n, 0);

    Value floats(mp_value_list_new());
    for (size_t i = 0; i < n; i++) mp_value_list_append(floats.get(), mp_value_float(0.5 * i));
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map(p, task_echo, floats.get(), nullptr, &r)) << err();
    Value fr(r);
    EXPECT_TRUE(mp_value_equal(floats.get(), r)) << "the floats came back changed";

    // No longer all ints from item 50 001 on (a float, then a str): the same results.
    Value mixed =
        ints_but({{50001, mp_value_float(2.5)}, {70001, mp_value_str("seventy thousand")}});
    for (int round = 0; round < 3; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        r = nullptr;
        ASSERT_EQ(0, mp_pool_map(p, task_echo, mixed.get(), nullptr, &r)) << err();
        Value mr(r);
        EXPECT_TRUE(mp_value_equal(mixed.get(), r)) << "a mixed list came back changed";
    }

    // Item 60 001 cannot be pickled (a str that is not UTF-8): the call fails and says
    // which item; no results; the pool goes on.
    Value bad = ints_but({{60001, mp_value_strn("\xff\xfe", 2)}});
    r = bogus<mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_pool_map(p, task_echo, bad.get(), nullptr, &r));
    EXPECT_NE(std::string::npos, std::string(mp_last_error_message()).find("item 60001")) << err();
    EXPECT_EQ(nullptr, r) << "no results on failure";
    check_method(p, Method::Map, 2503, 0);
}

// ---- clean-up ----

TEST_P(PoolTest, NothingLeftInDevShm) {
#ifdef _WIN32
    GTEST_SKIP() << "no /dev/shm on Windows";
#else
    // What a pool uses in shared memory goes with it: this process holds no /dev/shm file
    // afterwards (its own files, not a listing of /dev/shm: ctest runs other backends'
    // tests alongside).
    {
        PoolHolder pool = make_env_pool(2);
        ASSERT_TRUE(pool);
        Value big(mp_value_list_new());
        std::vector<uint8_t> b(1 << 20, 0x5a);
        for (int i = 0; i < 8; i++)
            mp_value_list_append(big.get(), mp_value_bytes(b.data(), b.size()));
        mp_value *r = nullptr;
        ASSERT_EQ(0, mp_pool_map(pool.get(), task_echo, big.get(), nullptr, &r)) << err();
        EXPECT_TRUE(mp_value_equal(big.get(), r));
        mp_value_free(r);
        check_method(pool.get(), Method::MapRecords, 2503, 0);
        check_method(pool.get(), Method::ImapSource, 500, 7);
    }
    EXPECT_EQ("", dev_shm_files_in_use());
#endif
}
