// Queue shutdown (Python 3.13's queue.Queue.shutdown; multiprocessing's Queue has
// none): puts refused, gets drain what is left and then refuse, immediate drops the
// items as tasks done; blocked putters, getters and joiners in other processes wake.
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "queue_fixture.h"
#include "targets.h"

namespace mpt {
namespace {

// Codes of the targets below: 0 when the call gave what was expected.
constexpr int kGotOther = 2, kGotItem = 3;

// [0] queue, [1] ready (write end), [2] int what (0 get, 1 put, 2 join), [3] int
// expected (an MP_E* code, or 0): writes 'R', then makes the call once, with kCap as
// its timeout: longer than the parent's join (kWait) waits for the child, so a wake
// that does not come fails the test rather than ending the call at its timeout.
int tgt_call_after_ready(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    mp_os_handle ready = mp_args_os_handle(a, 1);
    int64_t what = mp_args_int(a, 2), want = mp_args_int(a, 3);
    if (!q || ready == MP_INVALID_OS_HANDLE) return kBad;
    char c = 'R';
    if (!write_all(ready, &c, 1)) return kTgtIoError;
    int rc;
    if (what == 0) {
        void *p = nullptr;
        size_t n = 0;
        rc = mp_queue_get_bytes(q, &p, &n, kCap);
        mp_queue_free_bytes(p);
        if (rc == 0 && want != 0) return kGotItem;
    } else if (what == 1) {
        rc = mp_queue_put_bytes(q, "late", 4, kCap);
    } else {
        rc = mp_queue_join(q, kCap);
    }
    return rc == want ? kOk : kGotOther;
}

// [0] queue, [1] int immediate: shuts the queue down from this process.
int tgt_shutdown(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    if (!q) return kBad;
    return mp_queue_shutdown(q, mp_args_int(a, 1) != 0) == 0 ? kOk : kFail;
}

// [0] queue: a put must give MP_ESHUTDOWN, and the queue says it is shut down.
int tgt_put_refused(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    if (!q) return kBad;
    if (!mp_queue_is_shutdown(q)) return kFail;
    return mp_queue_put_bytes(q, "x", 1, 0) == MP_ESHUTDOWN ? kOk : kGotOther;
}

} // namespace

class QueueShutdownTest : public QueueTest {
  protected:
    // A child that makes one call once it has said it is about to; returns it.
    mp_process *start_call(mp_queue *q, int what, int want) {
        Blocker &b = blocker();
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.h(b.ready.w).i(what).i(want);
        mp_process *p = start(tgt_call_after_ready, a.get());
        if (p && !b.wait_ready()) {
            ADD_FAILURE() << "the child did not get to its call";
            return nullptr;
        }
        sleep_for(0.1); // most likely asleep in the call by now (either way the answer holds)
        return p;
    }
    int child_shutdown(mp_queue *q, bool immediate) {
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(immediate ? 1 : 0);
        mp_process *p = start(tgt_shutdown, a.get());
        return p ? join_code(p) : -1000;
    }
    void expect_shut_down_get(mp_queue *q, double timeout) {
        void *p = nullptr;
        size_t n = 0;
        EXPECT_EQ(MP_ESHUTDOWN, mp_queue_get_bytes(q, &p, &n, timeout)) << "got " << n << " bytes";
        mp_queue_free_bytes(p);
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, QueueShutdownTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// After shutdown: puts are refused (here and in a child); gets deliver what is left,
// ring, overflow area and big items alike, and then give MP_ESHUTDOWN at once instead
// of waiting for the timeout (or MP_EEMPTY with none).
TEST_P(QueueShutdownTest, PutsRefusedGetsDrainThenShutDown) {
    for (mp_queue_kind kind : {MP_QUEUE, MP_JOINABLE_QUEUE}) {
        SCOPED_TRACE(kind);
        mp_queue *q = make_queue(kind, 0, kSmallRing);
        ASSERT_NE(nullptr, q);
        EXPECT_FALSE(mp_queue_is_shutdown(q));
        const int count = 400; // x 300 bytes: past the ring, into the overflow area
        for (int i = 0; i < count; i++) put_item(q, 1, (uint64_t)i, 300, 0);
        put_item(q, 1, count, kSmallRing * 2, 0); // a big item
        ASSERT_EQ(0, mp_queue_shutdown(q, false)) << err();
        EXPECT_TRUE(mp_queue_is_shutdown(q));
        EXPECT_EQ(0, mp_queue_shutdown(q, false)) << "twice is fine";
        EXPECT_EQ(MP_ESHUTDOWN, mp_queue_put_bytes(q, "x", 1, kWait));
        mp_value *v = mp_value_int(1);
        EXPECT_EQ(MP_ESHUTDOWN, mp_queue_put(q, v, 0));
        mp_value_free(v);
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        mp_process *p = start(tgt_put_refused, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(0, join_code(p)) << "a child's put after the shutdown";
        size_t n = 0;
        EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
        EXPECT_EQ((size_t)count + 1, n) << "the items stay";
        int code = 0;
        std::string want;
        for (int i = 0; i < count / 2; i++) want += (i ? " " : "") + id_str(1, (uint64_t)i);
        EXPECT_EQ(want, child_get_report(q, count / 2, &code)) << "a child gets what is left";
        EXPECT_EQ(0, code);
        for (int i = count / 2; i < count; i++) expect_item(q, 1, (uint64_t)i, 300);
        expect_item(q, 1, count, kSmallRing * 2);
        expect_shut_down_get(q, 0);
        expect_shut_down_get(q, kWait); // at once, not after kWait
        if (kind == MP_JOINABLE_QUEUE) {
            for (int i = 0; i <= count; i++)
                ASSERT_EQ(0, mp_queue_task_done(q)) << "task_done works after shutdown " << err();
            EXPECT_EQ(0, mp_queue_join(q, kWait)) << err();
        }
    }
}

// Waiters in other processes wake: a getter blocked on an empty queue and a putter
// blocked on a full one get MP_ESHUTDOWN, before their timeout (kCap, beyond the
// join's kWait: a missed wake fails the join).
TEST_P(QueueShutdownTest, BlockedGetterAndPutterInOtherProcessesWake) {
    mp_queue *empty = make_queue(MP_QUEUE, 0);
    mp_queue *full = make_queue(MP_QUEUE, 1);
    ASSERT_TRUE(empty && full);
    put_item(full, 1, 0, 64, 0);
    mp_process *getter = start_call(empty, 0, MP_ESHUTDOWN);
    mp_process *putter = start_call(full, 1, MP_ESHUTDOWN);
    ASSERT_TRUE(getter && putter);
    // From children, so that a shutdown kept waiting (for the blocked putter to let go
    // of the put side) fails their join instead of hanging here.
    EXPECT_EQ(0, child_shutdown(empty, false));
    EXPECT_EQ(0, child_shutdown(full, false));
    EXPECT_EQ(0, join_code(getter)) << "the blocked get did not end with MP_ESHUTDOWN";
    EXPECT_EQ(0, join_code(putter)) << "the blocked put did not end with MP_ESHUTDOWN";
    expect_item(full, 1, 0, 64); // not immediate: the item stays for a get
    expect_shut_down_get(full, 0);
}

// A getter of this process waiting in a thread wakes when a child shuts the queue
// down: the state is the queue's, in its shared block, not the object's.
TEST_P(QueueShutdownTest, ShutdownFromAChildWakesThisProcess) {
    mp_queue *q = make_queue(MP_QUEUE, 1);
    ASSERT_NE(nullptr, q);
    std::atomic<int> get_rc{1};
    std::atomic<bool> waiting{false}, done{false};
    std::thread getter([&] {
        waiting = true;
        void *p = nullptr;
        size_t n = 0;
        get_rc = mp_queue_get_bytes(q, &p, &n, kCap); // a missed wake fails the check below
        mp_queue_free_bytes(p);
        done = true;
    });
    EXPECT_TRUE(eventually([&] { return waiting.load(); }));
    sleep_for(0.1); // most likely asleep in the get by now (either way the answer holds)
    EXPECT_EQ(0, child_shutdown(q, false));
    EXPECT_TRUE(eventually([&] { return done.load(); })) << "the waiting get was not woken";
    getter.join();
    EXPECT_EQ(MP_ESHUTDOWN, get_rc.load()) << "the waiting get did not end with MP_ESHUTDOWN";
    EXPECT_TRUE(mp_queue_is_shutdown(q));
    EXPECT_EQ(MP_ESHUTDOWN, mp_queue_put_bytes(q, "x", 1, kWait));
}

// immediate: the items left are dropped, each a task done, so a joiner in another
// process returns once the tasks taken earlier are done; gets give MP_ESHUTDOWN at
// once, puts too.
TEST_P(QueueShutdownTest, ImmediateDropsItemsAndReleasesJoin) {
    mp_queue *q = make_queue(MP_JOINABLE_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    for (int i = 0; i < 300; i++) put_item(q, 1, (uint64_t)i, 300, 0); // into the overflow area too
    put_item(q, 1, 300, kSmallRing * 2, 0); // a big item, dropped with its block
    expect_item(q, 1, 0, 300);              // taken, not yet done
    mp_process *joiner = start_call(q, 2, 0);
    ASSERT_NE(nullptr, joiner);
    ASSERT_EQ(0, child_shutdown(q, true));
    EXPECT_TRUE(mp_queue_is_shutdown(q));
    size_t n = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
    EXPECT_EQ(0u, n) << "immediate drops what is left";
    expect_shut_down_get(q, 0);
    expect_shut_down_get(q, kWait);
    EXPECT_EQ(MP_ESHUTDOWN, mp_queue_put_bytes(q, "x", 1, 0));
    // The item taken before is still a task: join waits for it (as Python's).
    EXPECT_EQ(MP_ETIMEDOUT, mp_queue_join(q, 0.05)) << "one task taken and not done";
    EXPECT_EQ(0, mp_queue_task_done(q)) << err();
    EXPECT_EQ(0, join_code(joiner)) << "the child's join did not return";
    EXPECT_EQ(0, mp_queue_join(q, 0)) << err();
    EXPECT_EQ(MP_ESTATE, mp_queue_task_done(q)) << "the dropped items were counted done";
}

// immediate from a child, while a getter of this process waits in a thread and items
// wait in the queue: the getter and later gets answer MP_ESHUTDOWN, nothing is left.
TEST_P(QueueShutdownTest, ImmediateFromAChild) {
    mp_queue *q = make_queue(MP_QUEUE, 0);
    mp_queue *e = make_queue(MP_QUEUE, 0);
    ASSERT_TRUE(q && e);
    for (int i = 0; i < 5; i++) put_item(q, 1, (uint64_t)i, 64, 0);
    std::atomic<int> rc{1};
    std::atomic<bool> done{false};
    std::thread t([&] {
        void *p = nullptr;
        size_t n = 0;
        rc = mp_queue_get_bytes(e, &p, &n, kCap); // a missed wake fails the check below
        mp_queue_free_bytes(p);
        done = true;
    });
    sleep_for(0.1); // most likely asleep in the get by now (either way the answer holds)
    EXPECT_EQ(0, child_shutdown(q, true));
    EXPECT_EQ(0, child_shutdown(e, true));
    EXPECT_TRUE(eventually([&] { return done.load(); })) << "the waiting get was not woken";
    t.join();
    EXPECT_EQ(MP_ESHUTDOWN, rc.load());
    expect_shut_down_get(q, 0);
    size_t n = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &n));
    EXPECT_EQ(0u, n);
}

// A shutdown after a non-immediate one still drops what is left; SimpleQueue has no
// shutdown (as in Python); a closed object cannot shut the queue down.
TEST_P(QueueShutdownTest, ImmediateAfterPlainAndWhatHasNone) {
    mp_queue *q = make_queue(MP_QUEUE, 0);
    ASSERT_NE(nullptr, q);
    put_item(q, 1, 0, 64, 0);
    put_item(q, 1, 1, 64, 0);
    ASSERT_EQ(0, mp_queue_shutdown(q, false));
    expect_item(q, 1, 0, 64);
    ASSERT_EQ(0, mp_queue_shutdown(q, true));
    expect_shut_down_get(q, 0);
    mp_queue *s = make_queue(MP_SIMPLE_QUEUE);
    ASSERT_NE(nullptr, s);
    EXPECT_EQ(MP_ENOTSUP, mp_queue_shutdown(s, false));
    EXPECT_FALSE(mp_queue_is_shutdown(s));
    mp_queue *c = make_queue(MP_QUEUE, 0);
    ASSERT_NE(nullptr, c);
    ASSERT_EQ(0, mp_queue_close(c));
    EXPECT_EQ(MP_ECLOSED, mp_queue_shutdown(c, false));
    EXPECT_EQ(MP_EINVAL, mp_queue_shutdown(nullptr, false));
    EXPECT_FALSE(mp_queue_is_shutdown(nullptr));
}

} // namespace mpt
