// The fault-injecting start method (fault_backend.h). It speaks the library's internal
// backend contract (core/backend.h), which is what a start method written outside the
// library would implement.
#include "fault_backend.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

extern "C" {
#include "core/backend.h"
}

namespace mpt {
namespace {

struct Wrapped {
    const mp_backend_ops *inner;
    void *state;
};

std::mutex g_mu;
std::condition_variable g_cv;
const mp_backend_ops *g_inner = nullptr;
FaultPlan g_plan;
int g_inner_starts = 0;
bool g_held = false, g_open = false;
bool g_registered = false;

int f_start(const mp__start_req *req, mp__started *out) {
    std::unique_lock<std::mutex> lk(g_mu);
    const mp_backend_ops *inner = g_inner;
    FaultPlan plan = g_plan;
    if (plan.fault == Fault::kFailStart)
        return mp__err(plan.error, "fault: injected start failure");
    if (plan.fault == Fault::kGate) {
        g_held = true;
        g_cv.notify_all();
        g_cv.wait(lk, [] { return g_open; });
        g_held = false;
    }
    g_inner_starts++;
    lk.unlock();
    mp__started st;
    int rc = inner->start(req, &st);
    if (rc) return rc;
    if (plan.fault == Fault::kFailAfterStart) {
        // The child exists; make sure it is gone before saying start failed.
        int code = 0;
        if (inner->signal) inner->signal(st.state, MP__SIG_KILL);
        inner->wait(st.state, MP_FOREVER, &code);
        inner->release(st.state);
        return mp__err(plan.error, "fault: injected failure after the child started");
    }
    if (plan.fault == Fault::kKillAtStart && inner->signal) inner->signal(st.state, MP__SIG_KILL);
    out->pid = st.pid;
    out->sentinel = st.sentinel;
    out->state = new Wrapped{inner, st.state};
    return 0;
}

int f_wait(void *state, double timeout, int *exitcode) {
    auto *w = static_cast<Wrapped *>(state);
    return w->inner->wait(w->state, timeout, exitcode);
}

int f_signal(void *state, int sig) {
    auto *w = static_cast<Wrapped *>(state);
    if (!w->inner->signal)
        return mp__err(MP_ENOTSUP, "fault: the wrapped start method cannot signal");
    return w->inner->signal(w->state, sig);
}

void f_release(void *state) {
    auto *w = static_cast<Wrapped *>(state);
    if (!w) return;
    w->inner->release(w->state);
    delete w;
}

// Not const: its flags follow the wrapped backend's, which the launch carries.
mp_backend_ops g_ops = {
    MP_BACKEND_OPS_VERSION, "fault", 0, f_start, f_wait, f_signal, f_release, nullptr, nullptr};

} // namespace

mp_context *fault_context(const std::string &inner, FaultPlan plan) {
    const mp_backend_ops *ops = mp__backend_find(inner.c_str());
    if (!ops) {
        ADD_FAILURE() << "no start method " << inner;
        return nullptr;
    }
    {
        std::lock_guard<std::mutex> lk(g_mu);
        g_inner = ops;
        g_plan = plan;
        g_inner_starts = 0;
        g_open = false;
        g_ops.flags = ops->flags;
    }
    if (!g_registered) {
        int rc = mp__backend_register(&g_ops, false);
        if (rc) {
            ADD_FAILURE() << "registering the fault backend: " << mp_last_error_message();
            return nullptr;
        }
        g_registered = true;
    }
    return mp_get_context("fault");
}

void fault_set_plan(FaultPlan plan) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_plan = plan;
}

void fault_unregister() {
    if (!g_registered) return;
    EXPECT_EQ(0, mp__backend_unregister(&g_ops)) << mp_last_error_message();
    g_registered = false;
}

int fault_inner_starts() {
    std::lock_guard<std::mutex> lk(g_mu);
    return g_inner_starts;
}

bool fault_wait_held(double timeout) {
    std::unique_lock<std::mutex> lk(g_mu);
    return g_cv.wait_for(lk, std::chrono::duration<double>(timeout), [] { return g_held; });
}

void fault_open_gate() {
    std::lock_guard<std::mutex> lk(g_mu);
    g_open = true;
    g_cv.notify_all();
}

} // namespace mpt
