// Pool (include/multiproc/pool.h) on every start method, and Python's ThreadPool: every
// call with results checked exactly, in order where the call keeps it, over inputs of
// 0, 1, 13 and 2503 items and chunk sizes 1, 7, larger than the input, Python's rule
// and adaptive; values of every type; task errors and how map, imap and the async calls
// report them; bad input; the options (processes, initializer and its initargs, a Queue
// and a Lock from there used by tasks, a failing initializer, maxtasksperchild).
// Records, sources (lazy on an endless one), calls from many threads and /dev/shm are in
// pool_input_test.cc; async results, callbacks, progress and close/terminate/join in
// pool_lifecycle_test.cc; workers that crash and tasks that time out in
// pool_crash_test.cc; the fixture and the tasks in pool_fixture.h and pool_tasks.h.
//
// Every test runs once per start method ("Backends/PoolTest.X/<backend>") and once on a
// ThreadPool ("ThreadPool/PoolTest.X/dummy").
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pool_fixture.h"

using namespace mpt;

namespace {

std::string param_name(const ::testing::TestParamInfo<std::string> &info) { return info.param; }

bool contains(const std::vector<int64_t> &v, int64_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

int64_t item_int(const mp_value *list, size_t i) { return mp_value_as_int(mp_value_item(list, i)); }

// The item "bad item <n>" names, -1 when the message names none.
int64_t bad_item_in(const std::string &msg) {
    size_t at = msg.find("bad item ");
    if (at == std::string::npos) return -1;
    return std::strtoll(msg.c_str() + at + 9, nullptr, 10);
}

// One value of every type the codec carries, in a tuple or a list; big adds 1 MiB of
// bytes (more than a pipe or a small ring holds at once).
Value mixed_values(bool tuple, bool big) {
    mp_value *v = tuple ? mp_value_tuple_new() : mp_value_list_new();
    mp_value_list_append(v, mp_value_none());
    mp_value_list_append(v, mp_value_bool(true));
    mp_value_list_append(v, mp_value_int(INT64_MIN));
    mp_value_list_append(v, mp_value_float(-2.5e300));
    mp_value_list_append(v, mp_value_strn("h\xc3\xa9llo\0w", 8)); // UTF-8 with a NUL
    mp_value_list_append(v, mp_value_bytes("\x00\xff\x01", 3));
    mp_value_list_append(v, mp_value_bytes(nullptr, 0));
    mp_value *nested = mp_value_list_new();
    mp_value *inner = mp_value_tuple_new();
    mp_value_list_append(inner, mp_value_int(3));
    mp_value_list_append(inner, mp_value_list_new());
    mp_value_list_append(nested, mp_value_int(1));
    mp_value_list_append(nested, inner);
    mp_value_list_append(v, nested);
    mp_value *d = mp_value_dict_new();
    mp_value_dict_set_str(d, "a", mp_value_int(1));
    mp_value_dict_set(d, mp_value_int(2), mp_value_str("b"));
    mp_value_list_append(v, d);
    if (big) {
        std::vector<uint8_t> b(1 << 20);
        for (size_t i = 0; i < b.size(); i++) b[i] = (uint8_t)(i * 131 + (i >> 12));
        mp_value_list_append(v, mp_value_bytes(b.data(), b.size()));
    }
    return Value(v);
}

} // namespace

INSTANTIATE_TEST_SUITE_P(Backends, PoolTest, ::testing::ValuesIn(all_backends()), param_name);
INSTANTIATE_TEST_SUITE_P(ThreadPool, PoolTest, ::testing::Values(std::string("dummy")), param_name);

// ---- apply ----

TEST_P(PoolTest, ApplyRunsInAWorker) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    std::vector<int64_t> workers = worker_pids(pool.get());
    mp_value *r = bogus<mp_value>();
    ASSERT_EQ(0, mp_pool_apply(pool.get(), task_where, nullptr, &r)) << err();
    Value hold(r);
    ASSERT_EQ(MP_VALUE_LIST, mp_value_get_type(r));
    int64_t pid = item_int(r, 0), tid = item_int(r, 1);
    if (process_workers()) {
        EXPECT_NE(mp_getpid(), pid) << "the task ran in the caller's process";
        EXPECT_TRUE(contains(workers, pid)) << "the task's pid " << pid << " is not a worker's";
    } else {
        EXPECT_EQ(mp_getpid(), pid) << "thread workers are threads of this process";
        EXPECT_NE(current_thread_id(), tid) << "the task ran on the caller's thread";
        EXPECT_TRUE(contains(workers, tid))
            << "on threads mp_pool_worker_pids gives thread ids: " << tid << " is not one";
    }
    EXPECT_EQ(-1, item_int(r, 3)) << "a pool without initializer left something for its tasks";
}

TEST_P(PoolTest, ApplyPassesTheArgumentTuple) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    // Python's f(*args): the tuple (or list) is the task's argument list.
    Value t = ints({1, 2, 3}), l = ints({4, 5}, false);
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(p, task_weighted, t.get(), &r)) << err();
    EXPECT_EQ(weighted({1, 2, 3}), mp_value_as_int(r));
    mp_value_free(r);
    r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(p, task_weighted, l.get(), &r)) << err();
    EXPECT_EQ(weighted({4, 5}), mp_value_as_int(r));
    mp_value_free(r);

    // NULL: no arguments (the task sees an empty tuple or list, or NULL).
    r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(p, task_argc, nullptr, &r)) << err();
    Value argc(r);
    EXPECT_EQ(0, item_int(r, 0)) << "NULL args gave the task arguments";
    int64_t type = item_int(r, 1);
    EXPECT_TRUE(type == MP_VALUE_TUPLE || type == MP_VALUE_LIST || type == -1) << "type " << type;

    // A task that returns None gives NULL.
    r = bogus<mp_value>();
    EXPECT_EQ(0, mp_pool_apply(p, task_none, t.get(), &r)) << err();
    EXPECT_EQ(nullptr, r) << "None is NULL";

    // Values of every type arrive and come back unchanged.
    Value mixed = mixed_values(true, true);
    r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(p, task_echo, mixed.get(), &r)) << err();
    Value echoed(r);
    EXPECT_TRUE(mp_value_equal(mixed.get(), r)) << "the argument tuple changed on its way";
}

TEST_P(PoolTest, ApplyAsyncGivesTheResult) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    std::vector<Async> rs;
    for (int64_t i = 0; i < 10; i++) {
        Value args = ints({i, 100 + i});
        mp_async_result *ar = bogus<mp_async_result>();
        ASSERT_EQ(0, mp_pool_apply_async(pool.get(), task_weighted, args.get(), nullptr, &ar))
            << err();
        rs.emplace_back(ar);
    }
    for (int64_t i = 0; i < 10; i++) {
        const mp_value *r = nullptr;
        ASSERT_EQ(0, mp_async_result_get(rs[i].get(), kWait, &r)) << err();
        EXPECT_EQ(weighted({i, 100 + i}), mp_value_as_int(r)) << "result " << i;
    }
}

// An empty map is done at once and says so as Python's does: its callback gets the
// empty list (no error callback), and the result is ready and successful.
TEST_P(PoolTest, EmptyMapAsyncCallsItsCallback) {
    PoolHolder pool = make_pool(1);
    ASSERT_TRUE(pool);
    CallLog log;
    mp_call_opts o = log.opts(0, false);
    Value none = ints({});
    mp_async_result *ar = bogus<mp_async_result>();
    ASSERT_EQ(0, mp_pool_map_async(pool.get(), task_echo, none.get(), &o, &ar)) << err();
    Async hold(ar);
    const mp_value *r = nullptr;
    ASSERT_EQ(0, mp_async_result_get(ar, kWait, &r)) << err();
    ASSERT_TRUE(log.wait_calls(1)) << "no callback for an empty map";
    std::lock_guard<std::mutex> lk(log.mu);
    EXPECT_EQ(1, log.callbacks);
    EXPECT_EQ(0, log.errors);
    ASSERT_NE(nullptr, log.result_copy.get());
    EXPECT_EQ(MP_VALUE_LIST, mp_value_get_type(log.result_copy.get()));
    EXPECT_EQ(0u, mp_value_len(log.result_copy.get()));
    EXPECT_EQ(MP_VALUE_LIST, mp_value_get_type(r));
    EXPECT_EQ(0u, mp_value_len(r));
}

// ---- every mapping call over every size and chunk size ----

TEST_P(PoolTest, MapEverySizeAndChunksize) { check_matrix(Method::Map); }
TEST_P(PoolTest, MapAsyncEverySizeAndChunksize) { check_matrix(Method::MapAsync); }
TEST_P(PoolTest, StarmapEverySizeAndChunksize) { check_matrix(Method::Starmap); }
TEST_P(PoolTest, StarmapAsyncEverySizeAndChunksize) { check_matrix(Method::StarmapAsync); }
TEST_P(PoolTest, ImapEverySizeAndChunksize) { check_matrix(Method::Imap); }
TEST_P(PoolTest, ImapUnorderedEverySizeAndChunksize) { check_matrix(Method::ImapUnordered); }
TEST_P(PoolTest, MapSourceEverySizeAndChunksize) { check_matrix(Method::MapSource); }
TEST_P(PoolTest, ImapSourceEverySizeAndChunksize) { check_matrix(Method::ImapSource); }
TEST_P(PoolTest, ImapSourceUnorderedEverySizeAndChunksize) {
    check_matrix(Method::ImapSourceUnordered);
}
TEST_P(PoolTest, MapRecordsEverySizeAndChunksize) { check_matrix(Method::MapRecords); }
TEST_P(PoolTest, MapRecordsAsyncEverySizeAndChunksize) { check_matrix(Method::MapRecordsAsync); }

// ---- values ----

TEST_P(PoolTest, MapCarriesValuesOfEveryType) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    for (bool tuple : {false, true}) {
        for (size_t chunk : {(size_t)1, (size_t)2, (size_t)0}) {
            SCOPED_TRACE(std::string(tuple ? "a tuple" : "a list") + ", chunksize " +
                         chunk_name(chunk));
            Value items = mixed_values(tuple, true);
            mp_call_opts o = {};
            o.chunksize = chunk;
            mp_value *r = nullptr;
            ASSERT_EQ(0, mp_pool_map(pool.get(), task_echo, items.get(), &o, &r)) << err();
            Value hold(r);
            ASSERT_EQ(MP_VALUE_LIST, mp_value_get_type(r)) << "map gives a list, also over a tuple";
            ASSERT_EQ(mp_value_len(items.get()), mp_value_len(r));
            for (size_t i = 0; i < mp_value_len(r); i++)
                EXPECT_TRUE(mp_value_equal(mp_value_item(items.get(), i), mp_value_item(r, i)))
                    << "item " << i << " ("
                    << mp_value_type_name(mp_value_get_type(mp_value_item(items.get(), i)))
                    << ") changed";
        }
    }
}

TEST_P(PoolTest, NoneResults) {
    PoolHolder pool = make_pool(2);
    ASSERT_TRUE(pool);
    Value items = int_list(10);
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map(pool.get(), task_none, items.get(), nullptr, &r)) << err();
    Value hold(r);
    ASSERT_EQ(10u, mp_value_len(r));
    for (size_t i = 0; i < 10; i++)
        EXPECT_EQ(MP_VALUE_NONE, mp_value_get_type(mp_value_item(r, i))) << "item " << i;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_none, items.get(), nullptr, &it)) << err();
    Imap ih(it);
    for (size_t i = 0; i < 10; i++) {
        mp_value *v = bogus<mp_value>();
        EXPECT_EQ(0, mp_imap_next(it, kWait, &v)) << "item " << i << " " << err();
        EXPECT_EQ(nullptr, v) << "None is NULL";
    }
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EOF, mp_imap_next(it, kWait, &v));
}

// ---- task errors ----

TEST_P(PoolTest, MapFailsWithTheFirstError) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();

    // One failing item: the call fails with its code and detail.
    Value seven = int_list(7); // only 3 fails
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_value *r = bogus<mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_pool_map(p, task_fail_some, seven.get(), &o, &r));
    EXPECT_EQ(3, bad_item_in(mp_last_error_message())) << err();
    EXPECT_EQ(nullptr, r) << "no results on failure";

    // Many failing items, whatever the chunks: the error of one of them (which one is
    // "the first" is the order results arrive in, as in CPython's MapResult).
    Value many = int_list(200);
    for (size_t chunk : {(size_t)1, (size_t)4, (size_t)0, MP_CHUNKSIZE_PYTHON}) {
        SCOPED_TRACE("chunksize " + chunk_name(chunk));
        o.chunksize = chunk;
        r = bogus<mp_value>();
        EXPECT_EQ(MP_EINVAL, mp_pool_map(p, task_fail_some, many.get(), &o, &r));
        int64_t bad = bad_item_in(mp_last_error_message());
        EXPECT_TRUE(bad >= 0 && bad < 200 && fails(bad)) << err();
        EXPECT_EQ(nullptr, r);
    }

    // map_async: get gives the error and its detail; the result did not succeed.
    mp_async_result *ar = nullptr;
    o.chunksize = 1;
    ASSERT_EQ(0, mp_pool_map_async(p, task_fail_some, seven.get(), &o, &ar)) << err();
    Async ah(ar);
    const mp_value *cr = bogus<const mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_async_result_get(ar, kWait, &cr));
    EXPECT_EQ(3, bad_item_in(mp_last_error_message())) << err();
    EXPECT_EQ(nullptr, cr);
    bool ok = true;
    EXPECT_EQ(0, mp_async_result_successful(ar, &ok)) << err();
    EXPECT_FALSE(ok);

    // starmap: an argument tuple the task refuses.
    Value args = starmap_args(5);
    mp_value_list_append(mp_value_item(args.get(), 2), mp_value_str("not an int"));
    r = bogus<mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_pool_starmap(p, task_weighted, args.get(), &o, &r));
    EXPECT_NE(std::string::npos,
              std::string(mp_last_error_message()).find("argument 3 is not an int"))
        << err();
    EXPECT_EQ(nullptr, r);

    // The pool goes on.
    check_method(p, Method::Map, 50, 0);
}

TEST_P(PoolTest, AnErrorWithoutDetailGivesTheCodesText) {
    PoolHolder pool = make_pool(1);
    ASSERT_TRUE(pool);
    mp_value *r = bogus<mp_value>();
    EXPECT_EQ(MP_EIO, mp_pool_apply(pool.get(), task_fail_plain, nullptr, &r));
    EXPECT_NE(std::string::npos, std::string(mp_last_error_message()).find(mp_strerror(MP_EIO)))
        << err();
    EXPECT_EQ(nullptr, r);
    Value items = int_list(3);
    r = bogus<mp_value>();
    EXPECT_EQ(MP_EIO, mp_pool_map(pool.get(), task_fail_plain, items.get(), nullptr, &r));
    EXPECT_NE(std::string::npos, std::string(mp_last_error_message()).find(mp_strerror(MP_EIO)))
        << err();
    EXPECT_EQ(nullptr, r);
}

// imap: a failed item gives its error and the iteration goes on.
TEST_P(PoolTest, ImapGoesOnAfterAFailedItem) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    const size_t n = 30;
    Value items = int_list(n);
    mp_call_opts o = {};
    o.chunksize = 1;
    for (bool ordered : {true, false}) {
        SCOPED_TRACE(ordered ? "imap" : "imap_unordered");
        mp_imap *it = nullptr;
        ASSERT_EQ(0, ordered
                         ? mp_pool_imap(pool.get(), task_fail_some, items.get(), &o, &it)
                         : mp_pool_imap_unordered(pool.get(), task_fail_some, items.get(), &o, &it))
            << err();
        Imap ih(it);
        std::multiset<int64_t> values, bad;
        for (size_t i = 0; i < n; i++) {
            mp_value *v = bogus<mp_value>();
            int rc = mp_imap_next(it, kWait, &v);
            std::string msg = mp_last_error_message();
            Value hv(rc == 0 ? v : nullptr);
            ASSERT_NE(MP_ETIMEDOUT, rc) << "result " << i;
            ASSERT_NE(MP_EOF, rc) << "only " << i << " results of " << n;
            if (ordered && fails((int64_t)i)) {
                EXPECT_EQ(MP_EINVAL, rc) << "item " << i;
                EXPECT_EQ((int64_t)i, bad_item_in(msg)) << msg;
            } else if (ordered) {
                EXPECT_EQ(0, rc) << "item " << i << ": " << mp_err_name(rc) << " " << msg;
            }
            if (rc == 0)
                values.insert(mp_value_as_int(v));
            else {
                EXPECT_EQ(MP_EINVAL, rc) << msg;
                EXPECT_EQ(nullptr, v) << "no item with an error";
                bad.insert(bad_item_in(msg));
            }
        }
        mp_value *v = nullptr;
        EXPECT_EQ(MP_EOF, mp_imap_next(it, kWait, &v));
        std::multiset<int64_t> want_values, want_bad;
        for (size_t i = 0; i < n; i++) {
            if (fails((int64_t)i))
                want_bad.insert((int64_t)i);
            else
                want_values.insert(affine((int64_t)i));
        }
        EXPECT_TRUE(values == want_values) << "the successful items differ";
        EXPECT_TRUE(bad == want_bad) << "each failed item gives its own error, once";
    }
}

// With chunks, an item shares the error of its chunk's task: the items of the other
// chunks all arrive, in order, and the failed chunk's items are errors or (if the
// implementation keeps the results its task produced before failing) their values.
TEST_P(PoolTest, ImapWithAFailedChunk) {
    PoolHolder pool = make_pool(3);
    ASSERT_TRUE(pool);
    const int64_t n = 30; // chunks of 5: 3, 10, 17 and 24 fail, in chunks 0, 2, 3 and 4
    Value items = int_list((size_t)n);
    mp_call_opts o = {};
    o.chunksize = 5;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_fail_some, items.get(), &o, &it)) << err();
    Imap ih(it);
    std::vector<int64_t> got; // indices of the values, in order
    int errors = 0;
    int calls = 0;
    for (;; calls++) {
        ASSERT_LE(calls, n) << "more results than items";
        mp_value *v = nullptr;
        int rc = mp_imap_next(it, kWait, &v);
        Value hv(v);
        if (rc == MP_EOF) break;
        ASSERT_NE(MP_ETIMEDOUT, rc);
        if (rc != 0) {
            EXPECT_EQ(MP_EINVAL, rc) << err();
            errors++;
            continue;
        }
        int64_t x = mp_value_as_int(v);
        ASSERT_EQ(3, ((x % 7) + 7) % 7) << "not a result of task_fail_some: " << x;
        int64_t idx = (x - 3) / 7;
        EXPECT_FALSE(fails(idx)) << "a value for failed item " << idx;
        EXPECT_TRUE(got.empty() || got.back() < idx)
            << "imap's order: " << idx << " after " << got.back();
        got.push_back(idx);
    }
    EXPECT_GE(errors, 4) << "four chunks failed";
    EXPECT_LE(errors, 4 * 5);
    for (int64_t i = 5; i < 10; i++)
        EXPECT_TRUE(std::find(got.begin(), got.end(), i) != got.end())
            << "item " << i << " of a good chunk";
    for (int64_t i = 25; i < 30; i++)
        EXPECT_TRUE(std::find(got.begin(), got.end(), i) != got.end())
            << "item " << i << " of a good chunk";
}

// A wait that times out loses nothing.
TEST_P(PoolTest, ImapNextTimesOutAndGoesOn) {
    PoolHolder pool = make_env_pool(2);
    ASSERT_TRUE(pool);
    Value items = int_list(4);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_imap *it = nullptr;
    ASSERT_EQ(0, mp_pool_imap(pool.get(), task_gated, items.get(), &o, &it)) << err();
    Imap ih(it);
    Report rep;
    ASSERT_TRUE(take_report("started", -1, &rep)) << "no task started";
    for (double t : {0.05, 0.0, -1.0}) {
        mp_value *v = bogus<mp_value>();
        EXPECT_EQ(MP_ETIMEDOUT, mp_imap_next(it, t, &v)) << "timeout " << t;
        EXPECT_EQ(nullptr, v);
    }
    open_gate();
    check_imap(it, 4, true);
}

// ---- bad input ----

TEST_P(PoolTest, BadArguments) {
    mp_pool *np = bogus<mp_pool>();
    mp_pool_opts neg = {};
    neg.processes = -1;
    EXPECT_EQ(MP_EINVAL,
              thread_pool_ ? mp_thread_pool_new(&neg, &np) : mp_pool_new(ctx(), &neg, &np))
        << "processes < 0 (Python's ValueError)";
    EXPECT_EQ(nullptr, np) << "the out pointer is NULL on failure";
    EXPECT_EQ(MP_EINVAL, mp_pool_new(ctx(), nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_thread_pool_new(nullptr, nullptr));

    PoolHolder pool = make_pool(1);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    Value items = int_list(3), an_int(mp_value_int(5)), a_dict(mp_value_dict_new()),
          a_str(mp_value_str("abc")), not_tuples = int_list(2);
    CountingSource src;
    src.limit = 3;
    Rec rec = {};
    int64_t out = 0;
    mp_value *r = nullptr;
    mp_async_result *ar = nullptr;
    mp_imap *it = nullptr;
    auto fails_r = [&](const char *what, std::function<int()> call) {
        expect_fails({MP_EINVAL}, &r, mp_value_free, call, what);
    };
    auto fails_ar = [&](const char *what, std::function<int()> call) {
        expect_fails({MP_EINVAL}, &ar, mp_async_result_free, call, what);
    };
    auto fails_it = [&](const char *what, std::function<int()> call) {
        expect_fails({MP_EINVAL}, &it, mp_imap_free, call, what);
    };

    // A NULL pool.
    fails_r("apply(NULL)", [&] { return mp_pool_apply(nullptr, task_affine, nullptr, &r); });
    fails_ar("apply_async(NULL)",
             [&] { return mp_pool_apply_async(nullptr, task_affine, nullptr, nullptr, &ar); });
    fails_r("map(NULL)",
            [&] { return mp_pool_map(nullptr, task_affine, items.get(), nullptr, &r); });
    fails_ar("map_async(NULL)",
             [&] { return mp_pool_map_async(nullptr, task_affine, items.get(), nullptr, &ar); });
    fails_r("starmap(NULL)",
            [&] { return mp_pool_starmap(nullptr, task_weighted, items.get(), nullptr, &r); });
    fails_ar("starmap_async(NULL)", [&] {
        return mp_pool_starmap_async(nullptr, task_weighted, items.get(), nullptr, &ar);
    });
    fails_it("imap(NULL)",
             [&] { return mp_pool_imap(nullptr, task_affine, items.get(), nullptr, &it); });
    fails_it("imap_unordered(NULL)", [&] {
        return mp_pool_imap_unordered(nullptr, task_affine, items.get(), nullptr, &it);
    });
    fails_r("map_source(NULL)", [&] {
        return mp_pool_map_source(nullptr, task_affine, counting_source, &src, nullptr, &r);
    });
    fails_it("imap_source(NULL)", [&] {
        return mp_pool_imap_source(nullptr, task_affine, counting_source, &src, true, nullptr, &it);
    });
    EXPECT_EQ(MP_EINVAL,
              mp_pool_map_records(nullptr, rec_affine, &rec, sizeof rec, &out, 8, 1, nullptr));
    fails_ar("map_records_async(NULL)", [&] {
        return mp_pool_map_records_async(nullptr, rec_affine, &rec, sizeof rec, &out, 8, 1, nullptr,
                                         &ar);
    });
    EXPECT_EQ(MP_EINVAL, mp_pool_close(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_terminate(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_join(nullptr, 0));
    int64_t pids[4];
    size_t n = 0;
    EXPECT_EQ(MP_EINVAL, mp_pool_worker_pids(nullptr, pids, 4, &n));
    EXPECT_EQ(MP_EINVAL, mp_pool_worker_pids(p, pids, 4, nullptr));

    // A NULL function.
    fails_r("apply(fn NULL)", [&] { return mp_pool_apply(p, nullptr, nullptr, &r); });
    fails_ar("apply_async(fn NULL)",
             [&] { return mp_pool_apply_async(p, nullptr, nullptr, nullptr, &ar); });
    fails_r("map(fn NULL)", [&] { return mp_pool_map(p, nullptr, items.get(), nullptr, &r); });
    fails_it("imap(fn NULL)", [&] { return mp_pool_imap(p, nullptr, items.get(), nullptr, &it); });
    fails_it("imap_source(fn NULL)", [&] {
        return mp_pool_imap_source(p, nullptr, counting_source, &src, true, nullptr, &it);
    });
    EXPECT_EQ(MP_EINVAL, mp_pool_map_records(p, nullptr, &rec, sizeof rec, &out, 8, 1, nullptr));

    // Items that are not a list or tuple; a NULL source.
    for (const mp_value *bad : {(const mp_value *)nullptr, (const mp_value *)an_int.get(),
                                (const mp_value *)a_dict.get(), (const mp_value *)a_str.get()}) {
        SCOPED_TRACE(std::string("items ") +
                     (bad ? mp_value_type_name(mp_value_get_type(bad)) : "NULL"));
        fails_r("map", [&] { return mp_pool_map(p, task_affine, bad, nullptr, &r); });
        fails_ar("map_async", [&] { return mp_pool_map_async(p, task_affine, bad, nullptr, &ar); });
        fails_r("starmap", [&] { return mp_pool_starmap(p, task_weighted, bad, nullptr, &r); });
        fails_ar("starmap_async",
                 [&] { return mp_pool_starmap_async(p, task_weighted, bad, nullptr, &ar); });
        fails_it("imap", [&] { return mp_pool_imap(p, task_affine, bad, nullptr, &it); });
        fails_it("imap_unordered",
                 [&] { return mp_pool_imap_unordered(p, task_affine, bad, nullptr, &it); });
    }
    fails_r("map_source(src NULL)",
            [&] { return mp_pool_map_source(p, task_affine, nullptr, &src, nullptr, &r); });
    fails_it("imap_source(src NULL)", [&] {
        return mp_pool_imap_source(p, task_affine, nullptr, &src, false, nullptr, &it);
    });
    // starmap over items that are not argument tuples: refused at the call or by the
    // task, MP_EINVAL either way.
    fails_r("starmap over ints",
            [&] { return mp_pool_starmap(p, task_weighted, not_tuples.get(), nullptr, &r); });

    // NULL out pointers.
    EXPECT_EQ(MP_EINVAL, mp_pool_apply(p, task_affine, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_apply_async(p, task_affine, nullptr, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_map(p, task_affine, items.get(), nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_map_async(p, task_affine, items.get(), nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_imap(p, task_affine, items.get(), nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL,
              mp_pool_imap_source(p, task_affine, counting_source, &src, true, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_pool_map_records_async(p, rec_affine, &rec, sizeof rec, &out, 8, 1,
                                                   nullptr, nullptr));
    EXPECT_EQ(0, src.pulled.load()) << "a refused call read its source";

    // Records: no input or no output buffer for n > 0 records.
    EXPECT_EQ(MP_EINVAL,
              mp_pool_map_records(p, rec_affine, nullptr, sizeof rec, &out, 8, 1, nullptr));
    EXPECT_EQ(MP_EINVAL,
              mp_pool_map_records(p, rec_affine, &rec, sizeof rec, nullptr, 8, 1, nullptr));

    // Results and iterators.
    const mp_value *cr = bogus<const mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_async_result_get(nullptr, 0, &cr));
    EXPECT_EQ(MP_EINVAL, mp_async_result_wait(nullptr, 0));
    EXPECT_FALSE(mp_async_result_ready(nullptr));
    bool ok = true;
    EXPECT_EQ(MP_EINVAL, mp_async_result_successful(nullptr, &ok));
    EXPECT_EQ(MP_EINVAL, mp_async_result_cancel(nullptr));
    mp_waitable w;
    EXPECT_EQ(MP_EINVAL, mp_async_result_waitable(nullptr, &w));
    mp_value *v = bogus<mp_value>();
    EXPECT_EQ(MP_EINVAL, mp_imap_next(nullptr, 0, &v));
    mp_pool_free(nullptr);
    mp_imap_free(nullptr);
    mp_async_result_free(nullptr);

    // The pool still works.
    check_method(p, Method::Map, 13, 1);
}

// ---- options ----

TEST_P(PoolTest, ProcessesOption) {
    {
        PoolHolder pool = make_pool(3);
        ASSERT_TRUE(pool);
        mp_pool *p = pool.get();
        EXPECT_EQ(3, mp_pool_processes(p));
        std::vector<int64_t> pids = worker_pids(p);
        EXPECT_EQ(3u, pids.size()) << "mp_pool_new starts every worker";
        EXPECT_EQ(3u, std::set<int64_t>(pids.begin(), pids.end()).size()) << "a pid twice";
        for (int64_t pid : pids) {
            if (process_workers()) {
                EXPECT_NE(mp_getpid(), pid);
                EXPECT_TRUE(process_running(pid)) << pid;
            } else {
                EXPECT_NE(current_thread_id(), pid);
            }
        }
        // Fewer places than workers: *n is still the number of workers.
        int64_t one[2] = {-7, -7};
        size_t n = 0;
        EXPECT_EQ(0, mp_pool_worker_pids(p, one, 1, &n)) << err();
        EXPECT_EQ(3u, n);
        EXPECT_TRUE(contains(pids, one[0]));
        EXPECT_EQ(-7, one[1]) << "written past cap";
        n = 0;
        EXPECT_EQ(0, mp_pool_worker_pids(p, nullptr, 0, &n)) << err();
        EXPECT_EQ(3u, n);
        check_method(p, Method::Map, 100, 1);
    }
    // 0 and NULL options: mp_process_cpu_count() workers.
    {
        PoolHolder pool = make_pool(0);
        ASSERT_TRUE(pool);
        EXPECT_EQ(mp_process_cpu_count(), mp_pool_processes(pool.get()));
        check_method(pool.get(), Method::Map, 100, 0);
    }
    mp_pool *q = nullptr;
    int rc = thread_pool_ ? mp_thread_pool_new(nullptr, &q) : mp_pool_new(ctx(), nullptr, &q);
    PoolHolder dflt(q, process_workers(), [this] { open_gate(); });
    ASSERT_EQ(0, rc) << err();
    EXPECT_EQ(mp_process_cpu_count(), mp_pool_processes(q));
    check_method(q, Method::Imap, 100, 0);
}

TEST_P(PoolTest, NullContextIsTheDefault) {
    mp_context *d = mp_get_context(nullptr);
    ASSERT_NE(nullptr, d) << err();
    if (thread_pool_ || backend() != mp_context_name(d))
        GTEST_SKIP() << "runs once, on the default start method (" << mp_context_name(d) << ")";
    mp_pool *q = nullptr;
    int rc = mp_pool_new(nullptr, nullptr, &q);
    PoolHolder pool(q, true, [this] { open_gate(); });
    ASSERT_EQ(0, rc) << err();
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(q, task_where, nullptr, &r)) << err();
    EXPECT_NE(mp_getpid(), item_int(r, 0));
    mp_value_free(r);
}

// ---- the initializer ----

TEST_P(PoolTest, InitializerSeesItsArgsInEachWorker) {
    PoolHolder pool = make_env_pool(3, 4242);
    ASSERT_TRUE(pool);
    Value items = int_list(60);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map(pool.get(), task_where, items.get(), &o, &r)) << err();
    Value hold(r);
    ASSERT_EQ(60u, mp_value_len(r));
    std::set<int64_t> workers; // pids, or thread ids on threads
    for (size_t i = 0; i < 60; i++) {
        const mp_value *w = mp_value_item(r, i);
        EXPECT_EQ(4242, item_int(w, 3)) << "task " << i << " did not see its worker's initargs";
        EXPECT_EQ(1, item_int(w, 4))
            << "task " << i << ": the initializer ran " << item_int(w, 4) << " times in its worker";
        workers.insert(item_int(w, process_workers() ? 0 : 1));
        pool.note_pid(item_int(w, 0));
    }
    // Once in each worker, before its first task (its report is in the queue before
    // any of its tasks ran); no worker was replaced, so at most 3 of them.
    std::set<int64_t> inits;
    for (const Report &rep : drain_reports()) {
        if (rep.kind != "init") continue;
        EXPECT_EQ(4242, rep.tag);
        EXPECT_TRUE(inits.insert(process_workers() ? rep.pid : rep.tid).second)
            << "the initializer ran twice in worker " << rep.pid << "/" << rep.tid;
    }
    EXPECT_LE(inits.size(), 3u);
    for (int64_t w : workers)
        EXPECT_EQ(1u, inits.count(w)) << "worker " << w << " ran tasks without its initializer";
}

// Nested use: a Queue passed in initargs, used by every task.
TEST_P(PoolTest, InitializerQueueIsUsedByTasks) {
    PoolHolder pool = make_env_pool(2, 7);
    ASSERT_TRUE(pool);
    Value items = int_list(50, 100);
    mp_call_opts o = {};
    o.chunksize = 3;
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map(pool.get(), task_report, items.get(), &o, &r)) << err();
    Value hold(r);
    std::vector<int64_t> want;
    for (int64_t x = 100; x < 150; x++) want.push_back(affine(x));
    EXPECT_EQ("", diff_ints(r, want));
    std::multiset<int64_t> ran;
    for (const Report &rep : drain_reports()) {
        if (rep.kind == "ran") {
            ran.insert(rep.item);
            EXPECT_EQ(7, rep.tag);
        }
    }
    std::multiset<int64_t> all;
    for (int64_t x = 100; x < 150; x++) all.insert(x);
    EXPECT_TRUE(ran == all) << "each task puts its item on the queue once; got " << ran.size();
}

// Nested use: a Lock passed in initargs is the caller's lock.
TEST_P(PoolTest, InitializerLockIsTheCallersLock) {
    PoolHolder pool = make_env_pool(2, 1);
    ASSERT_TRUE(pool);
    Value try_it = ints({0}), take_it = ints({1});
    ASSERT_EQ(0, mp_lock_acquire(env_lock(), kWait)) << err();
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_apply(pool.get(), task_lock, try_it.get(), &r)) << err();
    EXPECT_EQ(0, mp_value_as_int(r)) << "the task took a lock this test holds: not the same lock";
    mp_value_free(r);
    ASSERT_EQ(0, mp_lock_release(env_lock())) << err();
    for (const Value *m : {&take_it, &try_it}) {
        r = nullptr;
        ASSERT_EQ(0, mp_pool_apply(pool.get(), task_lock, m->get(), &r)) << err();
        EXPECT_EQ(1, mp_value_as_int(r)) << "the task could not take the free lock";
        mp_value_free(r);
    }
    EXPECT_EQ(0, mp_lock_acquire(env_lock(), 0)) << "a task left the lock held";
    EXPECT_EQ(0, mp_lock_release(env_lock()));
}

// A failing initializer fails every call of the pool with its code and detail, and
// nothing hangs.
TEST_P(PoolTest, InitializerFailureFailsEveryCall) {
    CountingSource src1, src2; // before the pool: it may read them until it is freed
    src1.limit = src2.limit = 5;
    Args a;
    a.i(MP_EPERM);
    mp_pool_opts po = {};
    po.initializer = init_fail;
    po.initargs = a.get();
    PoolHolder pool = make_pool(2, po);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    Value items = int_list(4), targs = starmap_args(4), args = ints({1});
    Rec recs[3] = {};
    int64_t outs[3];
    auto expect_init_error = [](int rc, const std::string &msg, const char *what) {
        EXPECT_EQ(MP_EPERM, rc) << what << ": " << mp_err_name(rc) << " " << msg;
        EXPECT_NE(std::string::npos, msg.find("init refused")) << what << ": \"" << msg << "\"";
    };
    // An async call either fails at once or gives the error through its result.
    auto expect_async = [&](int rc, mp_async_result *ar, const char *what) {
        Async hold(ar);
        std::string msg = mp_last_error_message();
        if (rc != 0) return expect_init_error(rc, msg, what);
        const mp_value *r = bogus<const mp_value>();
        rc = mp_async_result_get(ar, kWait, &r);
        expect_init_error(rc, mp_last_error_message(), what);
        EXPECT_EQ(nullptr, r) << what;
    };
    auto expect_imap = [&](int rc, mp_imap *it, const char *what) {
        Imap hold(it);
        std::string msg = mp_last_error_message();
        if (rc != 0) return expect_init_error(rc, msg, what);
        mp_value *v = bogus<mp_value>();
        rc = mp_imap_next(it, kWait, &v);
        expect_init_error(rc, mp_last_error_message(), what);
        EXPECT_EQ(nullptr, v) << what;
    };
    for (int round = 0; round < 2; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        mp_value *r = nullptr;
        mp_async_result *ar = nullptr;
        mp_imap *it = nullptr;
        int rc = mp_pool_apply(p, task_affine, args.get(), &r);
        expect_init_error(rc, mp_last_error_message(), "apply");
        mp_value_free(r);
        r = nullptr;
        rc = mp_pool_map(p, task_affine, items.get(), nullptr, &r);
        expect_init_error(rc, mp_last_error_message(), "map");
        mp_value_free(r);
        r = nullptr;
        rc = mp_pool_starmap(p, task_weighted, targs.get(), nullptr, &r);
        expect_init_error(rc, mp_last_error_message(), "starmap");
        mp_value_free(r);
        r = nullptr;
        CountingSource &src = round == 0 ? src1 : src2;
        rc = mp_pool_map_source(p, task_affine, counting_source, &src, nullptr, &r);
        expect_init_error(rc, mp_last_error_message(), "map_source");
        mp_value_free(r);
        rc = mp_pool_map_records(p, rec_affine, recs, sizeof(Rec), outs, sizeof(int64_t), 3,
                                 nullptr);
        expect_init_error(rc, mp_last_error_message(), "map_records");

        ar = nullptr;
        rc = mp_pool_apply_async(p, task_affine, args.get(), nullptr, &ar);
        expect_async(rc, ar, "apply_async");
        ar = nullptr;
        rc = mp_pool_map_async(p, task_affine, items.get(), nullptr, &ar);
        expect_async(rc, ar, "map_async");
        ar = nullptr;
        rc = mp_pool_starmap_async(p, task_weighted, targs.get(), nullptr, &ar);
        expect_async(rc, ar, "starmap_async");
        ar = nullptr;
        rc = mp_pool_map_records_async(p, rec_affine, recs, sizeof(Rec), outs, sizeof(int64_t), 3,
                                       nullptr, &ar);
        expect_async(rc, ar, "map_records_async");
        it = nullptr;
        rc = mp_pool_imap(p, task_affine, items.get(), nullptr, &it);
        expect_imap(rc, it, "imap");
        it = nullptr;
        rc = mp_pool_imap_unordered(p, task_affine, items.get(), nullptr, &it);
        expect_imap(rc, it, "imap_unordered");
    }
    EXPECT_EQ(0, mp_pool_close(p)) << err();
    EXPECT_EQ(0, mp_pool_join(p, kWait))
        << "the pool of a failed initializer does not end " << err();
}

// ---- maxtasksperchild ----

TEST_P(PoolTest, MaxTasksPerChildReplacesWorkers) {
    mp_pool_opts po = {};
    po.maxtasksperchild = 2;
    PoolHolder pool = make_pool(2, po);
    ASSERT_TRUE(pool);
    mp_pool *p = pool.get();
    std::vector<int64_t> before = worker_pids(p);
    EXPECT_EQ(2u, before.size());
    Value items = int_list(20);
    mp_call_opts o = {};
    o.chunksize = 1;
    mp_value *r = nullptr;
    ASSERT_EQ(0, mp_pool_map(p, task_where, items.get(), &o, &r)) << err();
    Value hold(r);
    ASSERT_EQ(20u, mp_value_len(r));
    std::map<int64_t, int> per_worker;
    for (size_t i = 0; i < 20; i++) {
        const mp_value *w = mp_value_item(r, i);
        EXPECT_LE(item_int(w, 2), 2) << "a worker ran more than maxtasksperchild tasks";
        per_worker[item_int(w, process_workers() ? 0 : 1)]++;
        pool.note_pid(item_int(w, 0));
    }
    for (const auto &kv : per_worker)
        EXPECT_LE(kv.second, 2) << "worker " << kv.first << " ran " << kv.second << " tasks";
    if (!kWindows) { // Windows reuses ids soon enough to merge two workers here
        EXPECT_GE(per_worker.size(), 10u) << "20 tasks at most 2 per worker need 10 workers";
    }
    // Replaced workers are running in their places; the first ones are not all there.
    EXPECT_EQ("", wait_workers(p, 2));
    std::vector<int64_t> after = worker_pids(p);
    EXPECT_TRUE(std::set<int64_t>(before.begin(), before.end()) !=
                std::set<int64_t>(after.begin(), after.end()))
        << "mp_pool_worker_pids still lists the first workers";
    if (process_workers()) {
        for (int64_t pid : before) {
            if (!contains(after, pid)) {
                EXPECT_TRUE(wait_process_gone(pid, kWait))
                    << "a retired worker still runs: " << pid;
            }
        }
    }
    check_method(p, Method::Imap, 30, 1); // and the pool goes on
}
