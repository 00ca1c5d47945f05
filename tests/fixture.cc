#include "fixture.h"

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>

#include "targets.h"

namespace mpt {

std::vector<std::string> all_backends() {
    std::vector<std::string> out;
    const char *const *names = mp_get_all_start_methods();
    for (size_t i = 0; names && names[i]; i++) out.push_back(names[i]);
    return out;
}

struct ProcessTest::Watchdog {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false, parked = false;
    std::thread t;
    explicit Watchdog(std::string name) {
        t = std::thread([this, name] {
            std::unique_lock<std::mutex> lk(mu);
            parked = true;
            cv.notify_all();
            if (!cv.wait_for(lk, std::chrono::duration<double>(kTestLimit),
                             [this] { return done; })) {
                fprintf(stderr, "\n*** %s did not finish within %.0f s: a call blocks forever\n",
                        name.c_str(), kTestLimit);
                fflush(stderr);
                std::_Exit(3);
            }
        });
        // The test forks next: not while this thread is still starting. A new thread's
        // start allocates (under ASan, inside the sanitizer's allocator), and a fork
        // child would inherit that allocator's lock held, forever.
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [this] { return parked; });
    }
    ~Watchdog() {
        {
            std::lock_guard<std::mutex> lk(mu);
            done = true;
        }
        cv.notify_all();
        t.join();
    }
};

ProcessTest::ProcessTest() {
    const ::testing::TestInfo *ti = ::testing::UnitTest::GetInstance()->current_test_info();
    watchdog_.reset(
        new Watchdog(ti ? std::string(ti->test_suite_name()) + "." + ti->name() : "a test"));
}

ProcessTest::~ProcessTest() = default;

void ProcessTest::SetUp() {
    for (const auto &c : running_children()) children_before_.insert(c.first);
    ctx_ = mp_get_context(backend().c_str());
    ASSERT_NE(nullptr, ctx_) << backend() << " " << err();
}

void ProcessTest::TearDown() {
    for (auto &b : blockers_) b->release_now();
    for (mp_process *p : procs_) {
        if (!mp_process_is_alive(p)) continue;
        if (!dummy()) mp_process_kill(p);
        EXPECT_EQ(0, mp_process_join(p, kWait))
            << "a child did not end at teardown: " << mp_process_name(p) << " " << err();
    }
    for (mp_process *p : procs_) mp_process_free(p);
    procs_.clear();
    for (int64_t pid : strays_) {
        if (process_running(pid)) {
            ADD_FAILURE() << "a grandchild still runs at teardown (killing it): pid " << pid;
            force_kill(pid);
            wait_process_gone(pid, kWait);
        }
    }
    blockers_.clear();
    for (auto &p : pipes_) pipe_close(p.get());
    pipes_.clear();

    // Nothing left behind: no live child known to the library, no zombie, no child
    // process started by this test still running (the forkserver itself may stay).
    size_t n = 12345;
    EXPECT_EQ(0, mp_active_children(nullptr, 0, &n)) << err();
    EXPECT_EQ(0u, n) << "children still alive after the test";
    std::vector<int64_t> z = zombie_children();
    if (!z.empty()) {
        // One grace period: a library may reap from a helper thread.
        sleep_for(0.2);
        z = zombie_children();
    }
    std::ostringstream zs;
    for (int64_t pid : z) zs << pid << " ";
    EXPECT_TRUE(z.empty()) << "zombie children left: " << zs.str();
    std::ostringstream rs;
    for (const auto &c : running_children()) {
        if (children_before_.count(c.first) || c.second.find("forkserver") != std::string::npos)
            continue;
        rs << c.first << " [" << c.second << "] ";
    }
    EXPECT_TRUE(rs.str().empty()) << "child processes still running: " << rs.str();
}

Pipe &ProcessTest::pipe() {
    pipes_.push_back(std::unique_ptr<Pipe>(new Pipe));
    EXPECT_TRUE(pipe_open(pipes_.back().get()));
    return *pipes_.back();
}

Blocker &ProcessTest::blocker() {
    blockers_.push_back(std::unique_ptr<Blocker>(new Blocker));
    EXPECT_TRUE(blockers_.back()->ok);
    return *blockers_.back();
}

mp_process *ProcessTest::make(mp_target_fn fn, const mp_args *args, const char *name, bool daemon) {
    mp_process_opts o = {};
    o.target = fn;
    o.name = name;
    o.args = args;
    o.daemon = daemon;
    mp_process *p = nullptr;
    int rc = mp_process_new(ctx_, &o, &p);
    if (rc != 0 || !p) {
        ADD_FAILURE() << "mp_process_new: " << mp_err_name(rc) << " " << err();
        return nullptr;
    }
    procs_.push_back(p);
    return p;
}

mp_process *ProcessTest::start(mp_target_fn fn, const mp_args *args, const char *name,
                               bool daemon) {
    mp_process *p = make(fn, args, name, daemon);
    if (!p) return nullptr;
    int rc = mp_process_start(p);
    if (rc != 0) {
        ADD_FAILURE() << "mp_process_start: " << mp_err_name(rc) << " " << err();
        return nullptr;
    }
    return p;
}

mp_process *ProcessTest::start_blocked(Blocker **out, int code, const char *name, bool daemon) {
    Blocker &b = blocker();
    *out = &b;
    Args a;
    b.add_args(a, code);
    mp_process *p = start(tgt_block, a.get(), name, daemon);
    if (!p) return nullptr;
    if (!b.wait_ready()) {
        ADD_FAILURE() << "the child did not reach its target within " << kWait << " s";
        return nullptr;
    }
    return p;
}

int ProcessTest::join_code(mp_process *p) {
    int rc = mp_process_join(p, kWait);
    if (rc != 0) {
        ADD_FAILURE() << "mp_process_join: " << mp_err_name(rc) << " " << err();
        return INT_MIN;
    }
    int code = INT_MIN;
    rc = mp_process_exitcode(p, &code);
    if (rc != 0) {
        ADD_FAILURE() << "mp_process_exitcode: " << mp_err_name(rc) << " " << err();
        return INT_MIN;
    }
    return code;
}

} // namespace mpt
