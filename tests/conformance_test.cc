// Behaviours CPython's own test suite checks that differ by start method unless the
// library takes care: what a child of a context reports as its start method, the
// daemon flag a daemonic child's processes get, joining the parent process, the
// atexit handlers of a target (and not its parent's), and a bootstrap that fails.
#include <multiproc.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fixture.h"
#include "targets.h"

#ifndef _WIN32
#include <unistd.h>
#endif

namespace mpt {
namespace {

// [0] out: writes "method=<mp_get_start_method(true)>".
int tgt_report_method(mp_args *a) {
    const char *m = mp_get_start_method(true);
    return write_msg(mp_args_os_handle(a, 0), std::string("method=") + (m ? m : "(none)"))
               ? 0
               : kTgtIoError;
}

// [0] out: makes (without starting) a process with daemon = false and writes its flag.
int tgt_report_default_daemon(mp_args *a) {
    mp_process_opts o = {};
    o.target = tgt_return_arg;
    mp_process *p = nullptr;
    if (mp_process_new(nullptr, &o, &p) != 0) return kTgtNewFailed;
    std::string s = std::string("daemon=") + (mp_process_daemon(p) ? "1" : "0");
    mp_process_free(p);
    return write_msg(mp_args_os_handle(a, 0), s) ? 0 : kTgtIoError;
}

// [0] out: joins the parent process with a short timeout (it is alive), then writes
// the result and whether the parent reads as alive.
int tgt_join_parent_briefly(mp_args *a) {
    mp_process *par = mp_parent_process();
    if (!par) return kTgtNoContext;
    int rc = mp_process_join(par, 0.2);
    std::string s =
        std::string("join=") + mp_err_name(rc) + " alive=" + (mp_process_is_alive(par) ? "1" : "0");
    return write_msg(mp_args_os_handle(a, 0), s) ? 0 : kTgtIoError;
}

// [0] out, [1] ready: writes "waiting" to ready, joins the parent (up to 30 s), then
// writes "join=<rc>" to out.
int tgt_join_parent(mp_args *a) {
    if (!write_msg(mp_args_os_handle(a, 1), "waiting")) return kTgtIoError;
    int rc = mp_process_join(mp_parent_process(), 30);
    return write_msg(mp_args_os_handle(a, 0), std::string("join=") + mp_err_name(rc)) ? 0
                                                                                      : kTgtIoError;
}

// [0] out, [1] backend: starts tgt_join_parent, waits until it is waiting, writes its
// pid to out, then ends at once (_Exit: no exit cleanup, which would join it first).
int tgt_start_joiner_then_vanish(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    mp_context *ctx = mp_get_context(mp_args_str(a, 1));
    Pipe ready;
    if (!ctx || !pipe_open(&ready)) return kTgtNoContext;
    Args ga;
    ga.h(out).h(ready.w);
    mp_process_opts o = {};
    o.target = tgt_join_parent;
    o.args = ga.get();
    mp_process *g = nullptr;
    if (mp_process_new(ctx, &o, &g) != 0) return kTgtNewFailed;
    if (mp_process_start(g) != 0) return kTgtStartFailed;
    std::string msg;
    if (!read_msg(ready.r, &msg, kWait) || msg != "waiting") return kTgtIoError;
    if (!write_msg(out, "pid=" + std::to_string((long long)mp_process_pid(g)))) return kTgtIoError;
    fflush(nullptr);
    _Exit(0);
}

// Handlers the tests register: each writes a line to the pipe in g_probe_fd.
mp_os_handle g_probe_fd = MP_INVALID_OS_HANDLE;
void parent_handler() {
    if (g_probe_fd != MP_INVALID_OS_HANDLE) write_msg(g_probe_fd, "parent-handler");
}
void target_handler() {
    if (g_probe_fd != MP_INVALID_OS_HANDLE) write_msg(g_probe_fd, "target-handler");
}

// [0] out, [1] int how: registers target_handler, then returns 4 (how 0) or calls
// exit(6) (how 1).
int tgt_register_atexit(mp_args *a) {
    g_probe_fd = mp_args_os_handle(a, 0);
    atexit(target_handler);
    if (mp_args_int(a, 1) == 1) exit(6);
    return 4;
}

class ConformanceTest : public ProcessTest {};

INSTANTIATE_TEST_SUITE_P(Backends, ConformanceTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });

// CPython: a child started through a context reports that context's start method,
// whatever the parent's global one is.
TEST_P(ConformanceTest, ChildReportsItsContextsStartMethod) {
    const char *before = mp_get_start_method(true);
    std::string saved = before ? before : "";
    std::string other;
    for (const std::string &b : all_backends())
        if (b != backend()) other = b;
    ASSERT_FALSE(other.empty());
    ASSERT_EQ(0, mp_set_start_method(other.c_str(), true)) << err();
    Pipe &out = pipe();
    Args a;
    a.h(out.w);
    mp_process *p = start(tgt_report_method, a.get());
    ASSERT_NE(nullptr, p);
    std::string msg;
    EXPECT_TRUE(read_msg(out.r, &msg, kWait));
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ("method=" + backend(), msg);
    EXPECT_STREQ(other.c_str(), mp_get_start_method(true)) << "the parent's own stays";
    EXPECT_EQ(0, mp_set_start_method(saved.empty() ? nullptr : saved.c_str(), true)) << err();
}

// CPython: Process() inside a daemonic process is daemonic unless told otherwise.
TEST_P(ConformanceTest, ProcessesOfADaemonAreDaemonicByDefault) {
    for (bool daemon : {false, true}) {
        Pipe &out = pipe();
        Args a;
        a.h(out.w);
        mp_process *p = start(tgt_report_default_daemon, a.get(), nullptr, daemon);
        ASSERT_NE(nullptr, p);
        std::string msg;
        EXPECT_TRUE(read_msg(out.r, &msg, kWait));
        EXPECT_EQ(0, join_code(p));
        EXPECT_EQ(daemon ? "daemon=1" : "daemon=0", msg);
    }
}

// CPython: parent_process().join(timeout) waits on the parent's sentinel.
TEST_P(ConformanceTest, JoiningTheParentWaitsWithTheTimeout) {
    Pipe &out = pipe();
    Args a;
    a.h(out.w);
    mp_process *p = start(tgt_join_parent_briefly, a.get());
    ASSERT_NE(nullptr, p);
    std::string msg;
    EXPECT_TRUE(read_msg(out.r, &msg, kWait));
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ("join=MP_ETIMEDOUT alive=1", msg);
    EXPECT_EQ(MP_ESTATE, mp_process_join(mp_current_process(), 0))
        << "a process cannot join itself";
}

// ... and returns once the parent has ended.
TEST_P(ConformanceTest, JoiningTheParentReturnsWhenItEnds) {
    if (dummy()) GTEST_SKIP() << "dummy: a thread's parent is this process, which does not end";
    Pipe &out = pipe();
    Args a;
    a.h(out.w).s(backend().c_str());
    mp_process *p = start(tgt_start_joiner_then_vanish, a.get());
    ASSERT_NE(nullptr, p);
    std::string msg;
    ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "the grandchild never waited";
    ASSERT_EQ(0u, msg.rfind("pid=", 0)) << msg;
    int64_t gpid = std::stoll(msg.substr(4));
    kill_at_teardown(gpid);
    EXPECT_EQ(0, join_code(p));
    ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "the grandchild's join did not return";
    EXPECT_EQ("join=MP_OK", msg);
    EXPECT_TRUE(wait_process_gone(gpid, kWait));
}

// A target's atexit handlers run when it ends (gh-83856), whether it returns or calls
// exit; on fork the handlers inherited from the parent do not.
TEST_P(ConformanceTest, TargetAtexitHandlersRunAndInheritedOnesDoNot) {
    if (dummy())
        GTEST_SKIP() << "dummy: a thread's atexit handlers run when the whole program exits";
    static bool registered = false;
    if (!registered) {
        atexit(parent_handler); // inherited by fork children; must not run there
        registered = true;
    }
    for (int how : {0, 1}) {
        Pipe &out = pipe();
        g_probe_fd = out.w; // what a fork child inherits
        Args a;
        a.h(out.w).i(how);
        mp_process *p = start(tgt_register_atexit, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(how ? 6 : 4, join_code(p));
        g_probe_fd = MP_INVALID_OS_HANDLE;
        std::string msg;
        EXPECT_TRUE(read_msg(out.r, &msg, kWait)) << "no handler ran (how " << how << ")";
        EXPECT_EQ("target-handler", msg);
        EXPECT_EQ(0, wait_readable(out.r, 0.2))
            << "a second handler wrote: " << (read_msg(out.r, &msg, 1) ? msg : "?");
    }
}

// The same bootstrap failure fails mp_process_start on every method (a SharedMemory
// argument whose name was unlinked before the start cannot be attached in the child).
TEST_P(ConformanceTest, BootstrapFailureFailsTheStart) {
    if (kWindows) GTEST_SKIP() << "Windows: a named mapping cannot be removed while it is held";
    mp_shm_opts so = {};
    so.create = true;
    so.size = 4096;
    mp_shm *s = nullptr;
    ASSERT_EQ(0, mp_shm_open(&so, &s)) << err();
    Args a;
    ASSERT_EQ(0, mp_args_add_shm(a.get(), s)) << err();
    ASSERT_EQ(0, mp_shm_unlink(s)) << err();
    mp_process *p = make(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(MP_ENOENT, mp_process_start(p)) << err();
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), mp_shm_name(s))) << err();
    EXPECT_FALSE(mp_process_is_alive(p));
    mp_shm_free(s);
}

} // namespace
} // namespace mpt

namespace mpt {
namespace {

// ---- queries on closed objects ----

// [0] queue, [1] int kind: closes its own queue object, then every query on it says
// so; 0, or the number of the first check that failed.
int tgt_query_closed_queue(mp_args *a) {
    mp_queue *q = mp_args_queue(a, 0);
    if (!q) return kTgtBadArgs;
    if (mp_queue_close(q) != 0) return 10;
    bool b = true;
    size_t n = 7;
    if (mp_queue_empty(q) || mp_queue_full(q)) return 11;
    if (mp_queue_is_empty(q, &b) != MP_ECLOSED || b) return 12;
    b = true;
    if (mp_queue_is_full(q, &b) != MP_ECLOSED || b) return 13;
    if (mp_queue_qsize(q, &n) != MP_ECLOSED || n != 0) return 14;
    void *item = nullptr;
    size_t len = 0;
    if (mp_queue_get_bytes(q, &item, &len, 0) != MP_ECLOSED) return 15;
    return 0;
}

// Python raises on a closed queue (ValueError for get/put; empty() raises once the
// pipe is closed); the predicates here are false on a closed object, and the forms
// that can say why give MP_ECLOSED: in the process that closed it only (as Python's
// close, it is this object's, not the queue's).
TEST_P(ConformanceTest, QueriesOnAClosedQueueAreErrors) {
    for (mp_queue_kind kind : {MP_QUEUE, MP_JOINABLE_QUEUE, MP_SIMPLE_QUEUE}) {
        SCOPED_TRACE(kind);
        bool simple = kind == MP_SIMPLE_QUEUE;
        mp_queue_opts o = {};
        o.kind = kind;
        o.maxsize = 1;
        mp_queue *q = nullptr;
        ASSERT_EQ(0, mp_queue_new_opts(ctx(), &o, &q)) << err();
        bool b = true;
        size_t n = 0;
        ASSERT_EQ(0, mp_queue_is_empty(q, &b)) << err();
        EXPECT_TRUE(b);
        EXPECT_TRUE(mp_queue_empty(q));
        ASSERT_EQ(0, mp_queue_put_bytes(q, "x", 1, kWait)) << err();
        ASSERT_EQ(0, mp_queue_is_empty(q, &b)) << err();
        EXPECT_FALSE(b);
        if (simple) {
            EXPECT_EQ(MP_ENOTSUP, mp_queue_is_full(q, &b)) << "a SimpleQueue has no full()";
            EXPECT_EQ(MP_ENOTSUP, mp_queue_qsize(q, &n));
        } else {
            ASSERT_EQ(0, mp_queue_is_full(q, &b)) << err();
            EXPECT_TRUE(b) << "maxsize 1, one item";
            EXPECT_TRUE(mp_queue_full(q));
            ASSERT_EQ(0, mp_queue_qsize(q, &n)) << err();
            EXPECT_EQ(1u, n);
        }
        Args a;
        EXPECT_EQ(0, mp_args_add_queue(a.get(), q)) << err();
        a.i(kind);
        mp_process *p = start(tgt_query_closed_queue, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(0, join_code(p)) << "a check in the child failed";
        // The child closed its object; ours is open and sees the item.
        ASSERT_EQ(0, mp_queue_is_empty(q, &b)) << err();
        EXPECT_FALSE(b);
        ASSERT_EQ(0, mp_queue_close(q));
        EXPECT_FALSE(mp_queue_empty(q)) << "a closed queue is not 'empty'";
        EXPECT_FALSE(mp_queue_full(q));
        b = true;
        EXPECT_EQ(MP_ECLOSED, mp_queue_is_empty(q, &b));
        EXPECT_FALSE(b);
        b = true;
        EXPECT_EQ(MP_ECLOSED, mp_queue_is_full(q, &b));
        EXPECT_FALSE(b);
        n = 5;
        EXPECT_EQ(MP_ECLOSED, mp_queue_qsize(q, &n));
        EXPECT_EQ(0u, n);
        EXPECT_EQ(MP_EINVAL, mp_queue_is_empty(nullptr, &b));
        EXPECT_EQ(MP_EINVAL, mp_queue_is_full(q, nullptr));
        EXPECT_FALSE(mp_queue_empty(nullptr));
        mp_queue_free(q);
    }
}

// Python: is_alive(), exitcode, pid and sentinel raise ValueError on a closed process;
// name and daemon still answer.
TEST_P(ConformanceTest, QueriesOnAClosedProcessAreErrors) {
    Args a;
    a.i(3);
    mp_process *p = make(tgt_return_arg, a.get(), "closed-one");
    ASSERT_NE(nullptr, p);
    bool alive = true;
    int64_t pid = 9;
    ASSERT_EQ(0, mp_process_alive(p, &alive)) << err();
    EXPECT_FALSE(alive) << "not started";
    ASSERT_EQ(0, mp_process_get_pid(p, &pid)) << err();
    EXPECT_EQ(0, pid) << "Python's None before the start";
    ASSERT_EQ(0, mp_process_start(p)) << err();
    EXPECT_EQ(3, join_code(p));
    ASSERT_EQ(0, mp_process_alive(p, &alive)) << err();
    EXPECT_FALSE(alive);
    ASSERT_EQ(0, mp_process_get_pid(p, &pid)) << err();
    EXPECT_NE(0, pid);
    EXPECT_EQ(pid, mp_process_pid(p));
    ASSERT_EQ(0, mp_process_close(p)) << err();
    EXPECT_FALSE(mp_process_is_alive(p));
    alive = true;
    EXPECT_EQ(MP_ECLOSED, mp_process_alive(p, &alive));
    EXPECT_FALSE(alive);
    int code = 7;
    EXPECT_EQ(MP_ECLOSED, mp_process_exitcode(p, &code));
    EXPECT_EQ(0, code);
    EXPECT_EQ(0, mp_process_pid(p)) << "no pid once closed";
    pid = 9;
    EXPECT_EQ(MP_ECLOSED, mp_process_get_pid(p, &pid));
    EXPECT_EQ(0, pid);
    mp_os_handle h = 0;
    EXPECT_EQ(MP_ECLOSED, mp_process_sentinel(p, &h));
    EXPECT_STREQ("closed-one", mp_process_name(p));
    EXPECT_EQ(MP_EINVAL, mp_process_alive(nullptr, &alive));
    EXPECT_EQ(MP_EINVAL, mp_process_get_pid(nullptr, &pid));
    // The current process cannot be closed: its queries always answer.
    ASSERT_EQ(0, mp_process_alive(mp_current_process(), &alive)) << err();
    EXPECT_TRUE(alive);
    ASSERT_EQ(0, mp_process_get_pid(mp_current_process(), &pid)) << err();
    EXPECT_EQ(mp_getpid(), pid);
}

// A predicate answers without touching the caller's last error (and without paying
// for a message); actions record theirs.
TEST_P(ConformanceTest, PredicatesKeepTheLastError) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 0);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(MP_ETIMEDOUT, mp_process_join(p, 0.01));
    std::string before = mp_last_error_message();
    EXPECT_NE(std::string::npos, before.find("timed out")) << before;
    for (int i = 0; i < 100; i++) EXPECT_TRUE(mp_process_is_alive(p));
    EXPECT_EQ(before, mp_last_error_message()) << "is_alive overwrote the last error";
    int code = 0;
    EXPECT_EQ(MP_EAGAIN, mp_process_exitcode(p, &code));
    EXPECT_NE(before, mp_last_error_message()) << "an action records its error";
    b->release_now();
    EXPECT_EQ(0, join_code(p));
}

// The OS's own error number survives behind MP_E* codes (even MP_ESYS).
TEST(Errors, TheOsErrorNumberIsKept) {
    mp_listener *a = nullptr, *b = nullptr;
    mp_listener_opts o = {};
    o.no_auth = true;
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &a)) << err();
    EXPECT_EQ(0, mp_last_os_error()) << "a success leaves no OS error behind... of its own";
    std::string addr = mp_listener_address(a);
    int rc = mp_listener_new(addr.c_str(), &o, &b);
    EXPECT_NE(0, rc) << "a second listener on " << addr;
#ifdef _WIN32
    EXPECT_EQ(10048, mp_last_os_error()) << err(); // WSAEADDRINUSE
#else
    EXPECT_EQ(EADDRINUSE, mp_last_os_error()) << err();
#endif
    EXPECT_EQ(MP_EINVAL, mp_process_join(nullptr, 0));
    EXPECT_EQ(0, mp_last_os_error()) << "an error of the library's own has no OS number";
    mp_listener_free(b);
    mp_listener_free(a);
}

} // namespace
} // namespace mpt

extern "C" {
#include "core/internal.h"
}

#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#endif

namespace mpt {
namespace {

bool handle_open(mp_os_handle h) {
#ifdef _WIN32
    DWORD flags;
    return GetHandleInformation((HANDLE)h, &flags) != 0;
#else
    return fcntl((int)h, F_GETFD) != -1;
#endif
}

// What a fork child meets: an argument list whose arena is described with the very
// handle number this process's arena holds already (fork keeps the numbers).
// Rebuilding it must not close that arena's handle, or the number is reused (a pipe
// opened next) and handed on to the next child as the arena's.
TEST(Blocks, RebuildWithTheArenasOwnHandleKeepsItOpen) {
    mp_lock *l = nullptr;
    ASSERT_EQ(0, mp_lock_new(nullptr, &l)) << err();
    mp_args *a = nullptr;
    ASSERT_EQ(0, mp_args_new(&a));
    ASSERT_EQ(0, mp_args_add_lock(a, l));
    ASSERT_EQ(0, mp_args_add_lock(a, l));
    mp__buf b = {};
    mp_os_handle hs[4];
    size_t nh = 0;
    ASSERT_EQ(0, mp__args_encode(a, &b, hs, &nh));
    ASSERT_EQ(1u, nh) << "the arena travels once, the objects without a handle";
    mp_args *copy = nullptr;
    mp__rd r = {b.data, b.len, 0};
    ASSERT_EQ(0, mp__args_decode(&r, hs, nh, &copy)) << err();
    // The original still encodes with a handle that is open, and both objects work.
    mp__buf b2 = {};
    size_t nh2 = 0;
    mp_os_handle hs2[4];
    ASSERT_EQ(0, mp__args_encode(a, &b2, hs2, &nh2));
    ASSERT_EQ(1u, nh2);
    EXPECT_TRUE(handle_open(hs2[0])) << "the lock's arena hands out a closed handle";
    mp_lock *c = mp_args_lock(copy, 1);
    ASSERT_NE(nullptr, c);
    EXPECT_EQ(0, mp_lock_acquire(c, 0)) << err();
    EXPECT_EQ(MP_ETIMEDOUT, mp_lock_acquire(l, 0)) << "one lock, seen twice";
    EXPECT_EQ(0, mp_lock_release(c)) << err();
    mp_args_free(copy);
    EXPECT_EQ(0, mp_lock_acquire(l, 0)) << err();
    EXPECT_EQ(0, mp_lock_release(l));
    mp_args_free(a);
    mp_lock_free(l);
    mp__buf_free(&b);
    mp__buf_free(&b2);
}

} // namespace
} // namespace mpt

namespace mpt {
namespace {

// MP_FOREVER is +infinity and a negative timeout means "do not wait", as Python's
// join/poll/wait/get/acquire take it: every blocking call returns at once. (A hang here
// is caught by the fixture's watchdog.)
TEST_P(ConformanceTest, NegativeTimeoutsDoNotWait) {
    EXPECT_TRUE(std::isinf(MP_FOREVER) && MP_FOREVER > 0);
    for (double t : {-1.0, -0.5, -1e9, std::nan("")}) {
        SCOPED_TRACE(t);
        Blocker *b = nullptr;
        mp_process *p = start_blocked(&b, 0);
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(MP_ETIMEDOUT, mp_process_join(p, t));

        mp_connection *c1 = nullptr, *c2 = nullptr;
        ASSERT_EQ(0, mp_pipe(true, &c1, &c2));
        bool ready = true;
        EXPECT_EQ(0, mp_connection_poll(c1, t, &ready));
        EXPECT_FALSE(ready);
        mp_waitable w = mp_waitable_connection(c1);
        EXPECT_EQ(MP_ETIMEDOUT, mp_wait(&w, 1, t, &ready, nullptr));
        mp_connection_free(c1);
        mp_connection_free(c2);

        mp_lock *l = nullptr;
        ASSERT_EQ(0, mp_lock_new(ctx(), &l));
        ASSERT_EQ(0, mp_lock_acquire(l, t)) << "a free lock is taken without waiting";
        EXPECT_EQ(MP_ETIMEDOUT, mp_lock_acquire(l, t));
        EXPECT_EQ(0, mp_lock_release(l));
        mp_lock_free(l);

        mp_semaphore *s = nullptr;
        ASSERT_EQ(0, mp_semaphore_new(ctx(), 0, &s));
        EXPECT_EQ(MP_ETIMEDOUT, mp_semaphore_acquire(s, t));
        mp_semaphore_free(s);

        mp_event *e = nullptr;
        ASSERT_EQ(0, mp_event_new(ctx(), &e));
        EXPECT_EQ(MP_ETIMEDOUT, mp_event_wait(e, t));
        mp_event_free(e);

        mp_condition *cv = nullptr;
        ASSERT_EQ(0, mp_condition_new(ctx(), nullptr, &cv));
        ASSERT_EQ(0, mp_condition_acquire(cv, t));
        EXPECT_EQ(MP_ETIMEDOUT, mp_condition_wait(cv, t));
        EXPECT_EQ(0, mp_condition_release(cv));
        mp_condition_free(cv);

        mp_barrier *br = nullptr;
        ASSERT_EQ(0, mp_barrier_new(ctx(), 2, nullptr, nullptr, MP_FOREVER, &br));
        EXPECT_EQ(MP_EBROKEN, mp_barrier_wait_timeout(br, t, nullptr))
            << "Python: BrokenBarrierError";
        mp_barrier_free(br);

        mp_queue *q = nullptr;
        ASSERT_EQ(0, mp_queue_new(ctx(), 1, &q));
        mp_value *v = nullptr;
        EXPECT_EQ(MP_EEMPTY, mp_queue_get(q, &v, t));
        ASSERT_EQ(0, mp_queue_put_bytes(q, "x", 1, t)) << "room: no wait needed";
        EXPECT_EQ(MP_EFULL, mp_queue_put_bytes(q, "y", 1, t));
        mp_queue_free(q);

        b->release_now();
        EXPECT_EQ(0, join_code(p));
    }
}

} // namespace
} // namespace mpt
