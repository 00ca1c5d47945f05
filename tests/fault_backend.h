// A fault-injecting start method for tests: "fault" wraps another registered backend
// and, as the plan says, fails a start before or after the child exists, kills the
// child the moment it has started, or holds a start at a gate until the test opens it.
// It is registered through the library's own registration call, as a user's backend
// would be, and removed again by fault_unregister().
#ifndef MP_TESTS_FAULT_BACKEND_H
#define MP_TESTS_FAULT_BACKEND_H

#include <multiproc.h>

#include <string>

namespace mpt {

enum class Fault {
    kNone,           // pass every start through
    kFailStart,      // fail before the inner backend is asked (no child ever exists)
    kFailAfterStart, // the inner child starts, is killed and reaped, then start fails
    kKillAtStart,    // the inner child starts and is killed at once; start succeeds
    kGate,           // the start waits at a gate until fault_open_gate()
};

struct FaultPlan {
    Fault fault = Fault::kNone;
    int error = MP_ECHILD; // what a failing start returns
};

// Registers "fault" (once; again after fault_unregister) wrapping the start method
// inner, with plan for the starts that follow. nullptr and a test failure on error.
mp_context *fault_context(const std::string &inner, FaultPlan plan);
void fault_set_plan(FaultPlan plan);
// Removes "fault" from the registry (its context stays usable by live processes).
void fault_unregister();
// How many starts reached the inner backend since fault_context.
int fault_inner_starts();
// kGate: true once a start is held at the gate (within timeout); then opens it.
bool fault_wait_held(double timeout);
void fault_open_gate();

} // namespace mpt

#endif
