// Queues when a producer or a consumer is killed in the middle of a put or a get, on
// every start method but dummy: the dying process's item is lost whole, everything
// else stays whole and in order. The fixture is queue_fixture.h.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "queue_fixture.h"

// The implementation's fault-injection hook (the tests link the static library).
#include "core/queue_fault.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <csignal>
#endif

using namespace mpt;

namespace {

// ---- the dying child (not on dummy: the hook is per process) ----

int g_fault_point;                                 // the point to die at
mp_os_handle g_fault_ready = MP_INVALID_OS_HANDLE; // hold mode: 'R' here, then wait

void die_now() {
    disable_crash_reports();
#ifdef _WIN32
    TerminateProcess(GetCurrentProcess(), 9);
#else
    raise(SIGKILL);
#endif
}

void fault_hook(int point) {
    if (point != g_fault_point) return;
    if (g_fault_ready == MP_INVALID_OS_HANDLE) die_now();
    // Hold the queue's put or get side until the test kills this process.
    char c = 'R';
    write_all(g_fault_ready, &c, 1);
    sleep_for(kCap);
    die_now();
}

// [0] queue, [1] int point, [2] int len, [3] int seq, [4] ready (write end) or an int:
// dies at the fault point while putting make_item(99, seq, len) (put points) or
// getting (the get point). With a ready handle it says 'R' there and waits to be
// killed. kHookNotReached when the call returned instead.
int tgt_die_at(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    if (!q) return kBad;
    g_fault_point = (int)mp_args_int(a, 1);
    size_t len = (size_t)mp_args_int(a, 2);
    uint64_t seq = (uint64_t)mp_args_int(a, 3);
    if (mp_args_type(a, 4) == MP_ARG_OS_HANDLE) g_fault_ready = mp_args_os_handle(a, 4);
    mp__queue_fault_hook = fault_hook;
    int rc;
    if (g_fault_point == MP__QFAULT_GET_PARTIAL) {
        void *p = nullptr;
        size_t n = 0;
        rc = mp_queue_get_bytes(q, &p, &n, kWait);
        mp_queue_free_bytes(p);
    } else {
        std::vector<uint8_t> it = make_item(99, seq, len);
        rc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
    }
    mp__queue_fault_hook = nullptr;
    fprintf(stderr, "[queue child] fault point %d not reached (the call gave %s)\n", g_fault_point,
            mp_err_name(rc));
    return kHookNotReached;
}

// The exit code of a child that killed itself in fault_hook.
int self_killed_code() { return kWindows ? 9 : exitcode_killed(); }

} // namespace

// ---- owner death ----

// A process dies at `point` while putting or getting an item of len bytes; afterwards
// we and other processes put and get normally and see only whole items.
void QueueTest::owner_death(int point, size_t len, bool hold) {
    mp_queue *q = make_queue(MP_QUEUE, 0, kSmallRing);
    ASSERT_NE(nullptr, q);
    bool get = point == MP__QFAULT_GET_PARTIAL;
    put_item(q, 1, 0, len); // the item a dying consumer takes, or one before the dying put
    if (get) put_item(q, 1, 1, 100);
    Pipe &ready = pipe();
    Args a;
    ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
    a.i(point).i((int64_t)len).i(50);
    if (hold)
        a.h(ready.w);
    else
        a.i(0);
    mp_process *p = start(tgt_die_at, a.get());
    ASSERT_NE(nullptr, p);
    std::atomic<int> wrc{1};
    if (hold) {
        char c = 0;
        ASSERT_TRUE(read_exact(ready.r, &c, 1, kWait))
            << "the child did not reach fault point " << point;
        // Another putter waits on the side the child holds when it is killed.
        std::thread t([&] {
            std::vector<uint8_t> it = make_item(1, 2, 300);
            wrc = mp_queue_put_bytes(q, it.data(), it.size(), kWait);
        });
        sleep_for(0.2);
        EXPECT_EQ(0, mp_process_kill(p)) << err();
        t.join();
        EXPECT_EQ(0, wrc.load()) << "a put waiting when the holder died " << err();
        EXPECT_EQ(exitcode_killed(), join_code(p));
    } else {
        int code = join_code(p);
        ASSERT_NE(kHookNotReached, code) << "fault point " << point << " was never reached";
        EXPECT_EQ(self_killed_code(), code)
            << "the child should have died at fault point " << point;
    }
    // Survivors: a child puts a small and a big item, we put one.
    EXPECT_EQ(0, child_put(q, 2, 0, 2, {64, kSmallRing * 2})) << "a put after the death";
    put_item(q, 1, 3, 200);
    std::string want = get ? "1:1" : "1:0";
    if (hold) want += " 1:2";
    want += " 2:0 2:1 1:3";
    size_t count = (size_t)std::count(want.begin(), want.end(), ' ') + 1;
    size_t before = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &before)) << err();
    // Nobody else puts or gets now: exact, except that the dead process's lost item may
    // still count until a get passes its place (queue.h).
    EXPECT_GE(before, count) << "qsize after the death";
    EXPECT_LE(before, count + 1) << "qsize after the death";
    int code = 0;
    EXPECT_EQ(want, child_get_report(q, (int64_t)count, &code))
        << (get ? "the dying consumer's item is gone, the rest is whole and in order"
                : "the dying producer's item (99:50) is dropped, the rest is whole and in order");
    EXPECT_EQ(0, code);
    expect_empty_now(q);
    size_t n = 99;
    EXPECT_EQ(0, mp_queue_qsize(q, &n)) << err();
    EXPECT_EQ(0u, n) << "qsize once the survivors took everything (the lost item must not count)";
    // And it keeps working in this process.
    put_item(q, 1, 4, kSmallRing * 3);
    put_item(q, 1, 5, 10);
    expect_item(q, 1, 4, kSmallRing * 3);
    expect_item(q, 1, 5, 10);
}

TEST_P(QueueTest, ProducerKilledInTheMiddleOfAPut) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread "
                        "cannot be killed";
    owner_death(MP__QFAULT_PUT_PARTIAL, 3000, false);
}

TEST_P(QueueTest, ProducerKilledInTheMiddleOfAPutWhileAnotherWaits) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread "
                        "cannot be killed";
    owner_death(MP__QFAULT_PUT_PARTIAL, 3000, true);
}

TEST_P(QueueTest, ProducerKilledPlacingAnItemBiggerThanTheRing) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread "
                        "cannot be killed";
    owner_death(MP__QFAULT_PUT_SPILL, kSmallRing * 4, false);
}

TEST_P(QueueTest, ConsumerKilledInTheMiddleOfAGet) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread "
                        "cannot be killed";
    owner_death(MP__QFAULT_GET_PARTIAL, 3000, false);
}

TEST_P(QueueTest, ConsumerKilledInTheMiddleOfAGetOfABigItem) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread "
                        "cannot be killed";
    owner_death(MP__QFAULT_GET_PARTIAL, kSmallRing * 4, false);
}

// A JoinableQueue item that is never delivered (its producer died placing it) is no
// task: join must not wait for it forever.
TEST_P(QueueTest, JoinableJoinReturnsAfterAProducerDied) {
    if (dummy())
        GTEST_SKIP() << "a dummy child is a thread: the fault hook is per process and a thread "
                        "cannot be killed";
    for (int point : {(int)MP__QFAULT_PUT_PARTIAL, (int)MP__QFAULT_PUT_SPILL}) {
        SCOPED_TRACE(point == MP__QFAULT_PUT_SPILL ? "killed placing a big item"
                                                   : "killed mid-put");
        size_t len = point == MP__QFAULT_PUT_SPILL ? kSmallRing * 4 : 3000;
        mp_queue *q = make_queue(MP_JOINABLE_QUEUE, 0, kSmallRing);
        ASSERT_NE(nullptr, q);
        Args a;
        ASSERT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(point).i((int64_t)len).i(50).i(0);
        mp_process *p = start(tgt_die_at, a.get());
        ASSERT_NE(nullptr, p);
        int code = join_code(p);
        ASSERT_NE(kHookNotReached, code) << "fault point " << point << " was never reached";
        put_item(q, 1, 0, 100);
        expect_item(q, 1, 0, 100); // passes (drops) the dead producer's item if it shows
        EXPECT_EQ(0, mp_queue_task_done(q)) << err();
        EXPECT_EQ(0, mp_queue_join(q, kWait))
            << "the dead producer's item counted as a task " << err();
        EXPECT_EQ(MP_ESTATE, mp_queue_task_done(q)) << "one task was put, one is done";
    }
}
