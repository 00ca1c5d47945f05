// A C manager's Condition, Barrier and Array typeids (Python's threading.Condition,
// threading.Barrier, array.array in a SyncManager), used by several threads of a C
// client: each thread talks over its own connection, so each is its own owner of the
// condition's lock, as Python's proxies in several threads are. On every start method.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "manager_fixture.h"

using namespace mpt;

namespace {

// Calls method; the result's truth (false on error, which is recorded in *rc).
bool call_bool(mp_proxy *p, const char *method, const mp_value *args, int *rc = nullptr) {
    mp_value *v = nullptr;
    int r = mp_proxy_call(p, method, args, nullptr, &v);
    if (rc) *rc = r;
    bool b = r == 0 && mp_value_as_bool(v);
    mp_value_free(v);
    return b;
}

class ManagerSync : public ProcessTest {
  protected:
    void SetUp() override {
        ProcessTest::SetUp();
        mp_manager_opts o = {};
        o.timeout = kCap;
        mp_manager *m = nullptr;
        ASSERT_EQ(0, mp_sync_manager_new(ctx(), &o, &m)) << err();
        m_.reset(m);
        ASSERT_EQ(0, mp_manager_start(m)) << err();
    }
    void TearDown() override {
        m_.reset();
        ProcessTest::TearDown();
    }
    Proxy make(const char *type_id, Val args = Val()) {
        mp_proxy *p = nullptr;
        EXPECT_EQ(0, mp_manager_create(m_.get(), type_id, args.get(), nullptr, &p)) << err();
        return Proxy(p);
    }
    Manager m_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ManagerSync, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });

TEST_P(ManagerSync, ConditionWaitAndNotify) {
    Proxy c = make("Condition");
    ASSERT_TRUE(c);
    std::atomic<int> stage{0};
    bool woken = false;
    int wrc = -100;
    std::thread waiter([&] {
        if (!call_bool(c.get(), "acquire", nullptr)) return;
        stage = 1;
        Val t = tup({mp_value_float(kWait)});
        woken = call_bool(c.get(), "wait", t.get(), &wrc);
        call_bool(c.get(), "release", nullptr);
    });
    ASSERT_TRUE(eventually([&] { return stage == 1; }));
    // The waiter let go of the lock in wait: this thread gets it and notifies.
    Val blk = tup({mp_value_bool(true), mp_value_float(kWait)});
    ASSERT_TRUE(call_bool(c.get(), "acquire", blk.get())) << err();
    EXPECT_EQ(0, mp_proxy_call(c.get(), "notify", nullptr, nullptr, nullptr)) << err();
    EXPECT_EQ(0, mp_proxy_release(c.get())) << err();
    waiter.join();
    EXPECT_EQ(0, wrc) << err();
    EXPECT_TRUE(woken) << "wait did not report the notify";
}

// A waiter that gave up is not counted by a later notify: the notify wakes the one
// still waiting.
TEST_P(ManagerSync, ConditionNotifyAfterATimeoutIsNotLost) {
    Proxy c = make("Condition");
    ASSERT_TRUE(c);
    std::atomic<int> waiting{0};
    bool long_woken = false, short_woken = true;
    std::thread longw([&] {
        call_bool(c.get(), "acquire", nullptr);
        waiting++;
        Val t = tup({mp_value_float(kWait)});
        long_woken = call_bool(c.get(), "wait", t.get());
        call_bool(c.get(), "release", nullptr);
    });
    ASSERT_TRUE(eventually([&] { return waiting == 1; }));
    sleep_for(0.2); // the long waiter is in wait (or about to be: it holds the lock)
    std::thread shortw([&] {
        call_bool(c.get(), "acquire", nullptr);
        Val t = tup({mp_value_float(0.2)});
        short_woken = call_bool(c.get(), "wait", t.get());
        call_bool(c.get(), "release", nullptr);
    });
    shortw.join();
    EXPECT_FALSE(short_woken) << "nobody notified the short waiter";
    ASSERT_TRUE(call_bool(c.get(), "acquire", nullptr)) << err();
    Val one = tup({mp_value_int(1)});
    EXPECT_EQ(0, mp_proxy_call(c.get(), "notify", one.get(), nullptr, nullptr)) << err();
    EXPECT_EQ(0, mp_proxy_release(c.get()));
    longw.join();
    EXPECT_TRUE(long_woken) << "the notify was lost on the waiter that had given up";
}

TEST_P(ManagerSync, ConditionErrors) {
    Proxy c = make("Condition");
    ASSERT_TRUE(c);
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EREMOTE, mp_proxy_call(c.get(), "wait", nullptr, nullptr, &v));
    EXPECT_NE(std::string::npos, err().find("RuntimeError")) << err();
    EXPECT_EQ(MP_EREMOTE, mp_proxy_call(c.get(), "notify", nullptr, nullptr, &v));
    EXPECT_EQ(MP_EREMOTE, mp_proxy_release(c.get()));
    // Recursive, as Python's default RLock: acquired twice, released twice.
    EXPECT_TRUE(call_bool(c.get(), "acquire", nullptr));
    EXPECT_TRUE(call_bool(c.get(), "acquire", nullptr));
    EXPECT_EQ(0, mp_proxy_release(c.get()));
    EXPECT_EQ(0, mp_proxy_release(c.get()));
    EXPECT_EQ(MP_EREMOTE, mp_proxy_release(c.get()));
    EXPECT_EQ(nullptr, v);
}

TEST_P(ManagerSync, BarrierLetsThreePartiesThrough) {
    Proxy b = make("Barrier", tup({mp_value_int(3)}));
    ASSERT_TRUE(b);
    std::vector<int64_t> idx(3, -1);
    std::vector<int> rcs(3, -100);
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; i++)
        ts.emplace_back([&, i] {
            Val t = tup({mp_value_float(kWait)});
            mp_value *v = nullptr;
            rcs[i] = mp_proxy_call(b.get(), "wait", t.get(), nullptr, &v);
            idx[i] = mp_value_as_int(v);
            mp_value_free(v);
        });
    for (auto &t : ts) t.join();
    for (int rc : rcs) EXPECT_EQ(0, rc);
    std::sort(idx.begin(), idx.end());
    EXPECT_EQ((std::vector<int64_t>{0, 1, 2}), idx);
    Val args = tup({mp_value_str("parties")});
    mp_value *v = nullptr;
    ASSERT_EQ(0, mp_proxy_call(b.get(), "__getattribute__", args.get(), nullptr, &v)) << err();
    EXPECT_EQ(3, mp_value_as_int(v));
    mp_value_free(v);
}

TEST_P(ManagerSync, BarrierTimeoutBreaksItAndResetMends) {
    Proxy b = make("Barrier", tup({mp_value_int(2)}));
    ASSERT_TRUE(b);
    Val t = tup({mp_value_float(0.2)});
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EBROKEN, mp_proxy_call(b.get(), "wait", t.get(), nullptr, &v));
    EXPECT_NE(std::string::npos, err().find("BrokenBarrierError")) << err();
    Val broken = tup({mp_value_str("broken")});
    EXPECT_TRUE(call_bool(b.get(), "__getattribute__", broken.get()));
    EXPECT_EQ(MP_EBROKEN, mp_proxy_call(b.get(), "wait", t.get(), nullptr, &v))
        << "a broken barrier lets nobody through";
    EXPECT_EQ(0, mp_proxy_call(b.get(), "reset", nullptr, nullptr, nullptr)) << err();
    EXPECT_FALSE(call_bool(b.get(), "__getattribute__", broken.get()));
    // abort breaks it for a waiting party.
    int rc = -100;
    std::thread w([&] {
        Val tt = tup({mp_value_float(kWait)});
        rc = mp_proxy_call(b.get(), "wait", tt.get(), nullptr, nullptr);
    });
    Val nw = tup({mp_value_str("n_waiting")});
    EXPECT_TRUE(eventually([&] { return call_bool(b.get(), "__getattribute__", nw.get()); }));
    EXPECT_EQ(0, mp_proxy_call(b.get(), "abort", nullptr, nullptr, nullptr));
    w.join();
    EXPECT_EQ(MP_EBROKEN, rc);
    mp_proxy *p = nullptr;
    EXPECT_EQ(MP_EINVAL,
              mp_manager_create(m_.get(), "Barrier", tup({mp_value_int(0)}).get(), nullptr, &p))
        << "no parties";
    EXPECT_EQ(nullptr, p);
}

TEST_P(ManagerSync, Array) {
    Proxy a = make("Array", tup({mp_value_str("d"), [] {
                                     mp_value *l = mp_value_list_new();
                                     mp_value_list_append(l, mp_value_float(1.5));
                                     mp_value_list_append(l, mp_value_int(2));
                                     return l;
                                 }()}));
    ASSERT_TRUE(a);
    size_t n = 0;
    EXPECT_EQ(0, mp_proxy_len(a.get(), &n));
    EXPECT_EQ(2u, n);
    Val i1(mp_value_int(1)), f(mp_value_float(7.25)), s(mp_value_str("x"));
    mp_value *v = nullptr;
    ASSERT_EQ(0, mp_proxy_getitem(a.get(), i1.get(), &v)) << err();
    EXPECT_EQ(MP_VALUE_FLOAT, mp_value_get_type(v)) << "an int in a 'd' array is a float";
    EXPECT_EQ(2.0, mp_value_as_float(v));
    mp_value_free(v);
    EXPECT_EQ(0, mp_proxy_setitem(a.get(), i1.get(), f.get())) << err();
    EXPECT_EQ(MP_EINVAL, mp_proxy_setitem(a.get(), i1.get(), s.get()));
    EXPECT_NE(std::string::npos, err().find("TypeError")) << err();
    Val i9(mp_value_int(9));
    EXPECT_EQ(MP_ENOENT, mp_proxy_getitem(a.get(), i9.get(), &v)) << "IndexError";
    ASSERT_EQ(0, mp_proxy_getvalue(a.get(), &v)) << err();
    Val hold(v);
    EXPECT_STREQ("array", mp_value_object_module(v));
    EXPECT_STREQ("array", mp_value_object_name(v));
    const mp_value *items = mp_value_item(mp_value_object_args(v), 1);
    ASSERT_EQ(2u, mp_value_len(items));
    EXPECT_EQ(7.25, mp_value_as_float(mp_value_item(items, 1)));
    mp_proxy *p = nullptr;
    EXPECT_EQ(MP_EINVAL,
              mp_manager_create(m_.get(), "Array", tup({mp_value_str("Z")}).get(), nullptr, &p))
        << "an unknown typecode";
    EXPECT_EQ(nullptr, p);
}

} // namespace
