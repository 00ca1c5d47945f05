// Process lifecycle on every backend: exit codes, join, sentinel, signals, close.
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <future>
#include <regex>
#include <string>
#include <vector>

#include "fixture.h"
#include "targets.h"

#ifndef _WIN32
#include <signal.h>
#endif

using namespace mpt;

INSTANTIATE_TEST_SUITE_P(Backends, ProcessTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(ProcessTest, ExitCodeZero) {
    Args a;
    a.i(0);
    mp_process *p = start(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p));
    EXPECT_FALSE(mp_process_is_alive(p));
}

TEST_P(ProcessTest, ExitCodeIsTargetReturnValue) {
    const int codes[] = {1, 3, 42, 127, 255};
    std::vector<mp_process *> ps;
    for (int c : codes) {
        Args a;
        a.i(c);
        mp_process *p = start(tgt_return_arg, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    for (size_t i = 0; i < ps.size(); i++) EXPECT_EQ(codes[i], join_code(ps[i])) << "child " << i;
}

TEST_P(ProcessTest, ManyChildrenAtOnce) {
    std::vector<mp_process *> ps;
    for (int i = 0; i < 8; i++) {
        Args a;
        a.i(10 + i);
        mp_process *p = start(tgt_return_arg, a.get());
        ASSERT_NE(nullptr, p);
        ps.push_back(p);
    }
    for (int i = 0; i < 8; i++) EXPECT_EQ(10 + i, join_code(ps[i]));
}

TEST_P(ProcessTest, StartMethodOfProcess) {
    mp_process *p = make(tgt_return_arg);
    ASSERT_NE(nullptr, p);
    ASSERT_NE(nullptr, mp_process_start_method(p));
    EXPECT_STREQ(backend().c_str(), mp_process_start_method(p));
    EXPECT_STREQ(backend().c_str(), mp_context_name(ctx()));
}

TEST_P(ProcessTest, StateBeforeStart) {
    mp_process *p = make(tgt_return_arg);
    ASSERT_NE(nullptr, p);
    EXPECT_FALSE(mp_process_is_alive(p));
    EXPECT_EQ(0, mp_process_pid(p));
    int code = 777;
    EXPECT_EQ(MP_EAGAIN, mp_process_exitcode(p, &code));
    EXPECT_EQ(0, code) << "out-parameters are 0 on failure";
    mp_os_handle h = 0;
    EXPECT_EQ(MP_ESTATE, mp_process_sentinel(p, &h));
    EXPECT_EQ(MP_ESTATE, mp_process_join(p, 1.0));
}

TEST_P(ProcessTest, RunningStateAndJoinTimeout) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 17);
    ASSERT_NE(nullptr, p);
    EXPECT_TRUE(mp_process_is_alive(p));
    EXPECT_GT(mp_process_pid(p), 0);
    int code = 777;
    EXPECT_EQ(MP_EAGAIN, mp_process_exitcode(p, &code));
    // The child is held until released, so these must time out.
    EXPECT_EQ(MP_ETIMEDOUT, mp_process_join(p, 0.0));
    EXPECT_EQ(MP_ETIMEDOUT, mp_process_join(p, 0.2));
    EXPECT_TRUE(mp_process_is_alive(p));
    EXPECT_EQ(MP_EAGAIN, mp_process_exitcode(p, &code));
    b->release_now();
    EXPECT_EQ(17, join_code(p));
    EXPECT_FALSE(mp_process_is_alive(p));
    // Joining an ended process again is fine and changes nothing.
    EXPECT_EQ(0, mp_process_join(p, 0.0));
    EXPECT_EQ(0, mp_process_join(p, kWait));
    code = 777;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(17, code);
}

TEST_P(ProcessTest, JoinForever) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 5);
    ASSERT_NE(nullptr, p);
    // join(MP_FOREVER) on another thread, watched so that a bug fails instead of hanging.
    auto fut = std::async(std::launch::async, [p] { return mp_process_join(p, MP_FOREVER); });
    EXPECT_EQ(std::future_status::timeout, fut.wait_for(std::chrono::milliseconds(100)))
        << "join(MP_FOREVER) returned while the child was held";
    b->release_now();
    if (fut.wait_for(std::chrono::duration<double>(kWait)) != std::future_status::ready) {
        ADD_FAILURE() << "join(MP_FOREVER) did not return after the child ended";
        if (!dummy()) mp_process_kill(p);
    }
    EXPECT_EQ(0, fut.get());
    int code = -1;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(5, code);
    // A negative timeout does not wait (Python's); the child has ended, so it is joined.
    EXPECT_EQ(0, mp_process_join(p, -5.0));
}

TEST_P(ProcessTest, Sentinel) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 3);
    ASSERT_NE(nullptr, p);
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_process_sentinel(p, &h)) << err();
    ASSERT_NE(MP_INVALID_OS_HANDLE, h);
    EXPECT_EQ(0, wait_sentinel(h, 0.0)) << "sentinel ready while the child runs";
    b->release_now();
    EXPECT_EQ(1, wait_sentinel(h, kWait)) << "sentinel not ready after the child ended";
    EXPECT_EQ(3, join_code(p));
}

// After join the sentinel stays ready (mp_wait on it returns at once), also in the
// moment between the exit status and the backend letting go of its end (forkserver:
// the server's 'X' message read, its end of the status socket not yet closed).
TEST_P(ProcessTest, SentinelStaysReadyAfterJoin) {
    for (int i = 0; i < 30; i++) {
        Args a;
        a.i(0);
        mp_process *p = start(tgt_return_arg, a.get());
        ASSERT_NE(nullptr, p);
        ASSERT_EQ(0, join_code(p));
        mp_os_handle h = MP_INVALID_OS_HANDLE;
        ASSERT_EQ(0, mp_process_sentinel(p, &h)) << err();
        ASSERT_EQ(1, wait_sentinel(h, 0.0)) << "run " << i << ": sentinel not ready after join";
    }
}

TEST_P(ProcessTest, ChildPid) {
    Pipe &out = pipe();
    Args a;
    a.h(out.w);
    mp_process *p = start(tgt_report_self, a.get());
    ASSERT_NE(nullptr, p);
    std::string msg;
    ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the child";
    EXPECT_EQ(0, join_code(p));
    auto r = parse_kv(msg);
    int64_t child_pid = strtoll(r["pid"].c_str(), nullptr, 10);
    SCOPED_TRACE(msg);
    if (dummy()) {
        // A thread of this process; its "pid" is the native thread id.
        EXPECT_EQ(mp_getpid(), child_pid);
        EXPECT_NE(mp_getpid(), mp_process_pid(p));
        EXPECT_EQ(strtoll(r["tid"].c_str(), nullptr, 10), mp_process_pid(p));
        EXPECT_EQ(r["tid"], r["cur_pid"]) << "the thread's own object carries its id";
    } else {
        EXPECT_NE(mp_getpid(), child_pid);
        EXPECT_EQ(mp_process_pid(p), child_pid);
    }
}

TEST_P(ProcessTest, Terminate) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 0);
    ASSERT_NE(nullptr, p);
    if (dummy()) {
        EXPECT_EQ(MP_ENOTSUP, mp_process_terminate(p));
        EXPECT_TRUE(mp_process_is_alive(p));
        b->release_now();
        EXPECT_EQ(0, join_code(p));
        return;
    }
    EXPECT_EQ(0, mp_process_terminate(p)) << err();
    EXPECT_EQ(exitcode_terminated(), join_code(p));
    EXPECT_FALSE(mp_process_is_alive(p));
    // No-op once ended.
    EXPECT_EQ(0, mp_process_terminate(p)) << err();
    int code = 0;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(exitcode_terminated(), code);
}

TEST_P(ProcessTest, TerminateRightAfterStart) {
    if (dummy()) GTEST_SKIP() << "dummy cannot terminate a thread";
    Blocker &b = blocker();
    Args a;
    b.add_args(a, 0);
    mp_process *p = start(tgt_block, a.get());
    ASSERT_NE(nullptr, p);
    // No wait for the child to reach its target: terminate must work at any time.
    EXPECT_EQ(0, mp_process_terminate(p)) << err();
    EXPECT_EQ(exitcode_terminated(), join_code(p));
}

TEST_P(ProcessTest, TerminateAfterEndIsNoop) {
    if (dummy()) GTEST_SKIP() << "dummy cannot terminate a thread";
    Args a;
    a.i(6);
    mp_process *p = start(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(6, join_code(p));
    EXPECT_EQ(0, mp_process_terminate(p)) << err();
    int code = 0;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(6, code);
}

TEST_P(ProcessTest, Kill) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 0);
    ASSERT_NE(nullptr, p);
    if (dummy()) {
        EXPECT_EQ(MP_ENOTSUP, mp_process_kill(p));
        b->release_now();
        EXPECT_EQ(0, join_code(p));
        return;
    }
    EXPECT_EQ(0, mp_process_kill(p)) << err();
    EXPECT_EQ(exitcode_killed(), join_code(p));
    EXPECT_FALSE(mp_process_is_alive(p));
}

TEST_P(ProcessTest, Interrupt) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 0);
    ASSERT_NE(nullptr, p);
    if (dummy() || kWindows) {
        EXPECT_EQ(MP_ENOTSUP, mp_process_interrupt(p));
        EXPECT_TRUE(mp_process_is_alive(p));
        b->release_now();
        EXPECT_EQ(0, join_code(p));
        return;
    }
#ifndef _WIN32
    EXPECT_EQ(0, mp_process_interrupt(p)) << err();
    EXPECT_EQ(-SIGINT, join_code(p));
#endif
}

TEST_P(ProcessTest, SignalDeath) {
#ifdef _WIN32
    GTEST_SKIP() << "no signals on Windows";
#else
    if (dummy()) GTEST_SKIP() << "a signal would kill the test process itself on dummy";
    for (int sig : {SIGUSR1, SIGKILL, SIGABRT}) {
        Args a;
        a.i(sig);
        mp_process *p = start(tgt_raise, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(-sig, join_code(p)) << "signal " << sig;
    }
#endif
}

TEST_P(ProcessTest, SegfaultingTarget) {
    if (dummy()) GTEST_SKIP() << "a segfault would kill the test process itself on dummy";
    mp_process *p = start(tgt_segv);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(exitcode_segfault(), join_code(p));
    EXPECT_FALSE(mp_process_is_alive(p));
}

TEST_P(ProcessTest, StartTwice) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 0);
    ASSERT_NE(nullptr, p);
    int64_t pid = mp_process_pid(p);
    EXPECT_EQ(MP_ESTATE, mp_process_start(p)) << "second start while running";
    EXPECT_EQ(pid, mp_process_pid(p));
    b->release_now();
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(MP_ESTATE, mp_process_start(p)) << "start after the end";
    EXPECT_FALSE(mp_process_is_alive(p));
}

TEST_P(ProcessTest, CloseWhileRunningThenUseAfterClose) {
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 4, "closing");
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(MP_ESTATE, mp_process_close(p));
    EXPECT_TRUE(mp_process_is_alive(p));
    b->release_now();
    EXPECT_EQ(4, join_code(p));
    EXPECT_EQ(0, mp_process_close(p)) << err();
    EXPECT_EQ(0, mp_process_close(p)) << "close is safe twice";
    EXPECT_STREQ("closing", mp_process_name(p));
    EXPECT_FALSE(mp_process_is_alive(p));
    int code = 777;
    mp_os_handle h = 0;
    EXPECT_EQ(MP_ECLOSED, mp_process_start(p));
    EXPECT_EQ(MP_ECLOSED, mp_process_join(p, 1.0));
    EXPECT_EQ(MP_ECLOSED, mp_process_exitcode(p, &code));
    EXPECT_EQ(0, code);
    EXPECT_EQ(MP_ECLOSED, mp_process_sentinel(p, &h));
    EXPECT_EQ(MP_ECLOSED, mp_process_terminate(p));
    EXPECT_EQ(MP_ECLOSED, mp_process_kill(p));
    EXPECT_EQ(MP_ECLOSED, mp_process_interrupt(p));
    EXPECT_EQ(MP_ECLOSED, mp_process_set_daemon(p, true));
}

TEST_P(ProcessTest, CloseBeforeStart) {
    mp_process *p = make(tgt_return_arg);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, mp_process_close(p)) << err();
    EXPECT_EQ(MP_ECLOSED, mp_process_start(p));
    EXPECT_FALSE(mp_process_is_alive(p));
}

TEST_P(ProcessTest, DaemonFlag) {
    mp_process *p = make(tgt_return_arg, nullptr, nullptr, true);
    ASSERT_NE(nullptr, p);
    EXPECT_TRUE(mp_process_daemon(p));
    EXPECT_EQ(0, mp_process_set_daemon(p, false));
    EXPECT_FALSE(mp_process_daemon(p));
    EXPECT_EQ(0, mp_process_set_daemon(p, true));
    ASSERT_EQ(0, mp_process_start(p)) << err();
    EXPECT_EQ(MP_ESTATE, mp_process_set_daemon(p, false));
    EXPECT_TRUE(mp_process_daemon(p));
    EXPECT_EQ(0, join_code(p));
    mp_process *q = make(tgt_return_arg);
    ASSERT_NE(nullptr, q);
    EXPECT_FALSE(mp_process_daemon(q)) << "not daemonic by default";
}

TEST_P(ProcessTest, DefaultAndExplicitNames) {
    mp_process *p1 = make(tgt_return_arg);
    mp_process *p2 = make(tgt_return_arg);
    mp_process *p3 = make(tgt_return_arg, nullptr, "my-worker");
    ASSERT_TRUE(p1 && p2 && p3);
    std::regex re("Process-([0-9]+)");
    std::smatch m1, m2;
    std::string n1 = mp_process_name(p1) ? mp_process_name(p1) : "(null)";
    std::string n2 = mp_process_name(p2) ? mp_process_name(p2) : "(null)";
    ASSERT_TRUE(std::regex_match(n1, m1, re)) << n1;
    ASSERT_TRUE(std::regex_match(n2, m2, re)) << n2;
    EXPECT_EQ(std::stol(m1[1]) + 1, std::stol(m2[1]))
        << "consecutive objects: " << n1 << ", " << n2;
    EXPECT_STREQ("my-worker", mp_process_name(p3));
    EXPECT_EQ(0, mp_process_set_name(p3, "renamed"));
    EXPECT_STREQ("renamed", mp_process_name(p3));
}

TEST_P(ProcessTest, CurrentAndParentProcessInChild) {
    Pipe &out = pipe();
    Args a;
    a.h(out.w);
    mp_process *p = start(tgt_report_self, a.get(), "worker-\xc3\xa9", true);
    ASSERT_NE(nullptr, p);
    std::string msg;
    ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the child";
    EXPECT_EQ(0, join_code(p));
    auto r = parse_kv(msg);
    SCOPED_TRACE(msg);
    EXPECT_EQ("1", r["has_current"]);
    EXPECT_EQ("worker-\xc3\xa9", r["name"]);
    EXPECT_EQ("1", r["daemon"]) << "a daemonic child sees itself as daemonic";
    EXPECT_EQ(backend(), r["method"]);
    if (dummy()) {
        // A thread of the main process: whether it has a parent object is not pinned
        // down by the header; if it has one, that is the main process.
        if (r["has_parent"] == "1") {
            EXPECT_EQ(std::to_string((long long)mp_getpid()), r["ppid"]);
            EXPECT_EQ("MainProcess", r["pname"]);
        }
        return;
    }
    EXPECT_EQ(r["pid"], r["cur_pid"]) << "the child's own object carries its pid";
    EXPECT_EQ("1", r["has_parent"]);
    EXPECT_EQ(std::to_string((long long)mp_getpid()), r["ppid"]);
    EXPECT_EQ("MainProcess", r["pname"]);
    EXPECT_EQ("alive", r["psentinel"]) << "the parent's sentinel is not ready while it runs";
}

TEST_P(ProcessTest, UnresolvableTarget) {
    if (dummy() || backend() == "fork")
        GTEST_SKIP() << "same address space: the target pointer is used as is";
    // Heap memory belongs to no module, so there is nothing to send to the child.
    std::vector<unsigned char> not_code(64, 0xcc);
    mp_target_fn fn = reinterpret_cast<mp_target_fn>(reinterpret_cast<uintptr_t>(not_code.data()));
    mp_process_opts o = {};
    o.target = fn;
    mp_process *p = nullptr;
    int rc = mp_process_new(ctx(), &o, &p);
    if (rc != 0) {
        // Refusing it when the object is created is as good as refusing it at start.
        EXPECT_EQ(MP_ERESOLVE, rc) << mp_err_name(rc) << " " << err();
        EXPECT_EQ(nullptr, p);
        EXPECT_STRNE("", mp_last_error_message());
        return;
    }
    ASSERT_NE(nullptr, p);
    rc = mp_process_start(p);
    std::string msg = mp_last_error_message();
    EXPECT_EQ(MP_ERESOLVE, rc) << mp_err_name(rc) << " " << msg;
    EXPECT_NE("", msg);
    EXPECT_FALSE(mp_process_is_alive(p));
    if (rc == 0) mp_process_join(p, kWait);
    mp_process_free(p);
}

TEST_P(ProcessTest, ActiveChildren) {
    Blocker *b1 = nullptr, *b2 = nullptr;
    mp_process *p1 = start_blocked(&b1, 0);
    mp_process *p2 = start_blocked(&b2, 0);
    Args a;
    a.i(9);
    mp_process *quick = start(tgt_return_arg, a.get());
    ASSERT_TRUE(p1 && p2 && quick);
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_process_sentinel(quick, &h)) << err();
    ASSERT_EQ(1, wait_sentinel(h, kWait));
    // The quick one has ended; active_children drops it (and reaps it) — poll, because
    // the sentinel may turn ready a moment before the process can be reaped.
    mp_process *list[8] = {};
    size_t n = 0;
    double deadline = now() + kWait;
    for (;;) {
        ASSERT_EQ(0, mp_active_children(list, 8, &n)) << err();
        if (n <= 2 || now() > deadline) break;
        sleep_for(0.01);
    }
    ASSERT_EQ(2u, n);
    EXPECT_TRUE((list[0] == p1 && list[1] == p2) || (list[0] == p2 && list[1] == p1));
    EXPECT_FALSE(mp_process_is_alive(quick));
    int code = -1;
    EXPECT_EQ(0, mp_process_exitcode(quick, &code)) << "reaped by active_children";
    EXPECT_EQ(9, code);
    // A short list still reports how many are alive.
    mp_process *one[1] = {};
    EXPECT_EQ(0, mp_active_children(one, 1, &n));
    EXPECT_EQ(2u, n);
    EXPECT_TRUE(one[0] == p1 || one[0] == p2);
    EXPECT_EQ(0, mp_active_children(nullptr, 0, &n));
    EXPECT_EQ(2u, n);
    b1->release_now();
    b2->release_now();
    EXPECT_EQ(0, join_code(p1));
    EXPECT_EQ(0, join_code(p2));
    EXPECT_EQ(0, mp_active_children(list, 8, &n));
    EXPECT_EQ(0u, n);
}

TEST_P(ProcessTest, FreeWhileRunningStillReaped) {
    Blocker &b = blocker();
    Args a;
    b.add_args(a, 0);
    mp_process_opts o = {};
    o.target = tgt_block;
    o.args = a.get();
    mp_process *p = nullptr;
    ASSERT_EQ(0, mp_process_new(ctx(), &o, &p)) << err();
    ASSERT_EQ(0, mp_process_start(p)) << err();
    int64_t pid = mp_process_pid(p);
    if (!dummy()) kill_at_teardown(pid);
    ASSERT_TRUE(b.wait_ready());
    mp_process_free(p); // the child is left to run; the library keeps track of it
    // Still a child of this process, as in Python, until it is reaped.
    size_t n = 0;
    EXPECT_EQ(0, mp_active_children(nullptr, 0, &n));
    EXPECT_EQ(1u, n) << "a freed running child is still an active child";
    b.release_now();
    // active_children reaps what has ended; the freed child must not stay a zombie.
    double deadline = now() + kWait;
    bool gone = false;
    do {
        ASSERT_EQ(0, mp_active_children(nullptr, 0, &n)) << err();
        std::vector<int64_t> z = zombie_children();
        gone = n == 0 && !process_running(pid) && std::find(z.begin(), z.end(), pid) == z.end();
        if (!gone) sleep_for(0.01);
    } while (!gone && now() < deadline);
    EXPECT_TRUE(gone) << "the freed child " << pid << " was not reaped (n=" << n << ")";
}

TEST_P(ProcessTest, SetExecutable) {
    std::string self = self_exe();
    ASSERT_FALSE(self.empty());
    struct Restore {
        ~Restore() { mp_set_executable(nullptr); }
    } restore;
    bool execs = !dummy() && backend() != "fork";
    Args a;
    a.i(21);
    if (backend() == "forkserver") {
        // A running server forks children from its own image and never looks at the
        // executable: start it now (each case may be a process of its own, with no
        // server yet), or the start below would exec the missing path to make one.
        mp_process *warm = start(tgt_return_arg, a.get());
        ASSERT_NE(nullptr, warm);
        EXPECT_EQ(21, join_code(warm));
        execs = false;
    }
    const char *missing =
        kWindows ? "C:\\no\\such\\dir\\mp_missing.exe" : "/no/such/dir/mp_missing";
    ASSERT_EQ(0, mp_set_executable(missing)) << err();
    mp_process *p = make(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    int rc = mp_process_start(p);
    if (execs) {
        EXPECT_EQ(MP_ECHILD, rc) << mp_err_name(rc) << " " << err();
        EXPECT_FALSE(mp_process_is_alive(p));
    } else {
        EXPECT_EQ(0, rc) << "backend " << backend() << " does not exec: " << err();
        if (rc == 0) {
            EXPECT_EQ(21, join_code(p));
        }
    }
    // An explicit path to this program works, and so does the default again.
    ASSERT_EQ(0, mp_set_executable(self.c_str())) << err();
    mp_process *q = start(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, q);
    EXPECT_EQ(21, join_code(q));
    ASSERT_EQ(0, mp_set_executable(nullptr)) << err();
    mp_process *r = start(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, r);
    EXPECT_EQ(21, join_code(r));
}

TEST_P(ProcessTest, BadInput) {
    mp_process *p = reinterpret_cast<mp_process *>(uintptr_t(0x10));
    EXPECT_EQ(MP_EINVAL, mp_process_new(ctx(), nullptr, &p));
    EXPECT_EQ(nullptr, p) << "*out is NULL on failure";
    EXPECT_STRNE("", mp_last_error_message());
    mp_process_opts o = {};
    p = reinterpret_cast<mp_process *>(uintptr_t(0x10));
    EXPECT_EQ(MP_EINVAL, mp_process_new(ctx(), &o, &p)) << "NULL target";
    EXPECT_EQ(nullptr, p);
    o.target = tgt_return_arg;
    EXPECT_EQ(MP_EINVAL, mp_process_new(ctx(), &o, nullptr));
    mp_process *q = make(tgt_return_arg);
    ASSERT_NE(nullptr, q);
    EXPECT_EQ(MP_EINVAL, mp_process_exitcode(q, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_process_sentinel(q, nullptr));
}
