// The backend contract: registration refuses what would be ambiguous or unsafe, and
// the core survives a start method that fails, kills or stalls a start (the
// fault-injecting backend of fault_backend.h, wrapped around every real one).
#include <multiproc.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "fault_backend.h"
#include "fixture.h"
#include "targets.h"

extern "C" {
#include "core/backend.h"
}

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#endif

namespace mpt {
namespace {

int dummy_start(const mp__start_req *, mp__started *) { return MP_ENOTSUP; }
int dummy_wait(void *, double, int *) { return 0; }
void dummy_release(void *) {}

TEST(BackendRegistry, RefusesDuplicatesAndBadTables) {
    const char *const *names = mp_get_all_start_methods();
    ASSERT_TRUE(names && names[0]);
    // Registered ops must outlive the process (contexts point at them).
    static mp_backend_ops ops;
    ops = {MP_BACKEND_OPS_VERSION, names[0], 0,      dummy_start, dummy_wait, nullptr,
           dummy_release,          nullptr,  nullptr};
    EXPECT_EQ(MP_EEXIST, mp__backend_register(&ops, false)) << "a builtin's name";
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), names[0])) << mp_last_error_message();

    ops.name = "test-registry";
    ops.version = MP_BACKEND_OPS_VERSION - 1;
    EXPECT_EQ(MP_EINVAL, mp__backend_register(&ops, false)) << "an old ops version";
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "version")) << mp_last_error_message();
    ops.version = MP_BACKEND_OPS_VERSION + 1;
    EXPECT_EQ(MP_EINVAL, mp__backend_register(&ops, false)) << "a newer ops version";
    ops.version = MP_BACKEND_OPS_VERSION;
    ops.wait = nullptr;
    EXPECT_EQ(MP_EINVAL, mp__backend_register(&ops, false)) << "no wait slot";
    ops.wait = dummy_wait;
    EXPECT_EQ(MP_EINVAL, mp__backend_register(nullptr, false));
    EXPECT_EQ(nullptr, mp_get_context("test-registry")) << "nothing was registered";

    ASSERT_EQ(0, mp__backend_register(&ops, false)) << err();
    mp_context *ctx = mp_get_context("test-registry");
    ASSERT_NE(nullptr, ctx) << err();
    EXPECT_STREQ("test-registry", mp_context_name(ctx));
    EXPECT_EQ(MP_EEXIST, mp__backend_register(&ops, false)) << "the same name twice";
    EXPECT_EQ(MP_EEXIST, mp__backend_alias("test-registry", names[0]))
        << "an alias shadowing a name";
    ASSERT_EQ(0, mp__backend_alias("test-alias", "test-registry")) << err();
    EXPECT_EQ(ctx, mp_get_context("test-alias"));

    // A start through it reaches the slot and reports its error; a NULL slot is
    // MP_ENOTSUP through the one wrapper, never a call through NULL.
    mp_process *p = nullptr;
    mp_process_opts o = {};
    o.target = tgt_return_arg;
    Args a;
    a.i(0);
    o.args = a.get();
    ASSERT_EQ(0, mp_process_new(ctx, &o, &p)) << err();
    EXPECT_EQ(MP_ENOTSUP, mp_process_start(p));
    mp_process_free(p);

    EXPECT_EQ(0, mp__backend_unregister(&ops)) << err();
    EXPECT_EQ(nullptr, mp_get_context("test-registry"));
    EXPECT_EQ(nullptr, mp_get_context("test-alias")) << "its alias goes with it";
    EXPECT_EQ(MP_ENOENT, mp__backend_unregister(&ops));
    for (size_t i = 0; names[i]; i++) EXPECT_STRNE("test-registry", names[i]);
}

class FaultTest : public ProcessTest {
  protected:
    void TearDown() override {
        fault_open_gate();
        ProcessTest::TearDown();
        fault_unregister();
    }
    mp_context *fault(FaultPlan plan) { return fault_context(backend(), plan); }
    mp_process *make_on(mp_context *ctx, int code) {
        Args a;
        a.i(code);
        return make_on(ctx, tgt_return_arg, a);
    }
    mp_process *make_on(mp_context *ctx, mp_target_fn fn, const Args &a) {
        mp_process_opts o = {};
        o.target = fn;
        o.args = a.get();
        mp_process *p = nullptr;
        EXPECT_EQ(0, mp_process_new(ctx, &o, &p)) << err();
        return p;
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, FaultTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });

// A backend that fails a start leaves nothing behind, and the same object starts
// fine once the backend works again.
TEST_P(FaultTest, StartFailureLeavesNothing) {
    FaultPlan plan;
    plan.fault = Fault::kFailStart;
    plan.error = MP_EIO;
    mp_context *ctx = fault(plan);
    ASSERT_NE(nullptr, ctx);
    mp_process *warm = make_on(ctx, 0); // a first start may bring up helpers (forkserver)
    fault_set_plan(FaultPlan());
    ASSERT_EQ(0, mp_process_start(warm)) << err();
    EXPECT_EQ(0, mp_process_join(warm, kWait)) << err();
    mp_process_free(warm);

    fault_set_plan(plan);
    long before = open_handles();
    mp_process *p = make_on(ctx, 7);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(MP_EIO, mp_process_start(p));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "injected")) << err();
    EXPECT_FALSE(mp_process_is_alive(p));
    EXPECT_EQ(0, mp_process_pid(p));
    EXPECT_EQ(MP_ESTATE, mp_process_join(p, 0)) << "never started";
    size_t n = 99;
    ASSERT_EQ(0, mp_active_children(nullptr, 0, &n));
    EXPECT_EQ(0u, n);
    EXPECT_EQ(before, open_handles()) << "a failed start leaked a handle";

    fault_set_plan(FaultPlan());
    ASSERT_EQ(0, mp_process_start(p)) << err();
    EXPECT_EQ(0, mp_process_join(p, kWait)) << err();
    int code = -1;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(7, code);
    mp_process_free(p);
}

// The child existed, then the backend failed the start: it is killed and reaped
// inside start, so no zombie and no stray child remains.
TEST_P(FaultTest, FailureAfterTheChildStartedReapsIt) {
    FaultPlan plan;
    plan.fault = Fault::kFailAfterStart;
    plan.error = MP_EPROTO;
    mp_context *ctx = fault(plan);
    ASSERT_NE(nullptr, ctx);
    for (int i = 0; i < 3; i++) {
        mp_process *p = make_on(ctx, 0);
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(MP_EPROTO, mp_process_start(p));
        EXPECT_NE(nullptr, strstr(mp_last_error_message(), "after the child started")) << err();
        mp_process_free(p);
    }
    EXPECT_EQ(3, fault_inner_starts());
    EXPECT_TRUE(zombie_children().empty());
    size_t n = 99;
    ASSERT_EQ(0, mp_active_children(nullptr, 0, &n));
    EXPECT_EQ(0u, n);
    // The fixture's teardown checks that no child process of this test still runs.
}

// A child killed the moment it started: start succeeds, join reports the kill.
TEST_P(FaultTest, ChildKilledAtStart) {
    if (dummy()) GTEST_SKIP() << "dummy: a thread cannot be killed";
    FaultPlan plan;
    plan.fault = Fault::kKillAtStart;
    mp_context *ctx = fault(plan);
    ASSERT_NE(nullptr, ctx);
    for (int i = 0; i < 3; i++) {
        // The child would wait for a release that never comes, then return 5.
        Blocker b;
        ASSERT_TRUE(b.ok);
        Args a;
        b.add_args(a, 5);
        mp_process *p = make_on(ctx, tgt_block, a);
        ASSERT_NE(nullptr, p);
        ASSERT_EQ(0, mp_process_start(p)) << err();
        EXPECT_EQ(0, mp_process_join(p, kWait)) << err();
        EXPECT_FALSE(mp_process_is_alive(p));
        int code = 0;
        EXPECT_EQ(0, mp_process_exitcode(p, &code));
        EXPECT_EQ(exitcode_killed(), code);
        EXPECT_EQ(0, mp_process_terminate(p)) << "an ended child: a no-op";
        mp_process_free(p);
    }
    EXPECT_TRUE(zombie_children().empty());
}

// A start that stalls inside the backend holds no library lock: other threads list,
// start and join processes meanwhile, and the stalled start completes afterwards.
TEST_P(FaultTest, SlowStartHoldsNoLock) {
    FaultPlan plan;
    plan.fault = Fault::kGate;
    mp_context *gated = fault(plan);
    ASSERT_NE(nullptr, gated);
    mp_process *slow = make_on(gated, 3);
    ASSERT_NE(nullptr, slow);
    std::atomic<bool> returned{false};
    std::atomic<int> rc{1};
    std::thread t([&] {
        rc = mp_process_start(slow);
        returned = true;
    });
    ASSERT_TRUE(fault_wait_held(kWait)) << "the start never reached the backend";

    size_t n = 99;
    EXPECT_EQ(0, mp_active_children(nullptr, 0, &n)) << err();
    EXPECT_EQ(nullptr, mp_get_context("no-such-method"));
    mp_process *quick = make_on(ctx(), 4); // the real backend, not the gated one
    ASSERT_NE(nullptr, quick);
    EXPECT_EQ(0, mp_process_start(quick)) << err();
    EXPECT_EQ(0, mp_process_join(quick, kWait)) << err();
    int code = 0;
    EXPECT_EQ(0, mp_process_exitcode(quick, &code));
    EXPECT_EQ(4, code);
    mp_process_free(quick);
    EXPECT_FALSE(returned.load()) << "the gated start returned before the gate opened";

    fault_open_gate();
    t.join();
    ASSERT_EQ(0, rc.load()) << err();
    EXPECT_EQ(0, mp_process_join(slow, kWait)) << err();
    EXPECT_EQ(0, mp_process_exitcode(slow, &code));
    EXPECT_EQ(3, code);
    mp_process_free(slow);
}

} // namespace
} // namespace mpt
