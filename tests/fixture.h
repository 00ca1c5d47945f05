// The per-backend fixture: every behavioural test runs once per start method available
// on this platform (value-parameterised), named ".../<backend>" so that ctest can select
// one backend with --gtest_filter=*/<backend>.
#ifndef MP_TESTS_FIXTURE_H
#define MP_TESTS_FIXTURE_H

#include <multiproc.h>

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "helpers.h"

namespace mpt {

// The detail of the last library error, for failure messages.
inline std::string err() {
    const char *m = mp_last_error_message();
    return std::string("[last error: ") + (m ? m : "(null)") + "]";
}

constexpr bool kWindows =
#ifdef _WIN32
    true;
#else
    false;
#endif

// An argument list that is freed with the scope; adds report failures.
class Args {
  public:
    Args() { EXPECT_EQ(0, mp_args_new(&a_)) << err(); }
    ~Args() { mp_args_free(a_); }
    Args(const Args &) = delete;
    Args &operator=(const Args &) = delete;
    Args &i(int64_t v) {
        EXPECT_EQ(0, mp_args_add_int(a_, v)) << err();
        return *this;
    }
    Args &d(double v) {
        EXPECT_EQ(0, mp_args_add_double(a_, v)) << err();
        return *this;
    }
    Args &s(const char *v) {
        EXPECT_EQ(0, mp_args_add_str(a_, v)) << err();
        return *this;
    }
    Args &b(const void *p, size_t n) {
        EXPECT_EQ(0, mp_args_add_bytes(a_, p, n)) << err();
        return *this;
    }
    Args &h(mp_os_handle v) {
        EXPECT_EQ(0, mp_args_add_os_handle(a_, v)) << err();
        return *this;
    }
    mp_args *get() const { return a_; }
    void reset() {
        mp_args_free(a_);
        a_ = nullptr;
    }

  private:
    mp_args *a_ = nullptr;
};

// Holds a child in its target until released: the child writes 'R' on `ready` once it
// runs its target, then waits for one byte on `release` (at most kCap seconds) and
// returns the code it was given. Releasing writes a byte rather than closing, because a
// forked child holds copies of every descriptor.
struct Blocker {
    Pipe release, ready;
    bool released = false;
    bool ok = false;
    Blocker() { ok = pipe_open(&release) && pipe_open(&ready); }
    ~Blocker() {
        pipe_close(&release);
        pipe_close(&ready);
    }
    void add_args(Args &a, int code) { a.h(release.r).h(ready.w).i(code).d(kCap); }
    bool wait_ready(double timeout = kWait) {
        char c = 0;
        return read_exact(ready.r, &c, 1, timeout) && c == 'R';
    }
    void release_now() {
        if (!released) {
            char c = 'x';
            released = write_all(release.w, &c, 1);
        }
    }
};

class ProcessTest : public ::testing::TestWithParam<std::string> {
  protected:
    ProcessTest();
    ~ProcessTest() override;
    void SetUp() override;
    void TearDown() override;

    const std::string &backend() const { return GetParam(); }
    bool dummy() const { return backend() == "dummy"; }
    mp_context *ctx() const { return ctx_; }

    // Owned by the fixture, released/closed at teardown.
    Pipe &pipe();
    Blocker &blocker();
    // A new process object on this backend, owned by the fixture (killed if still
    // running, joined and freed at teardown). nullptr (and a failure) on error.
    mp_process *make(mp_target_fn fn, const mp_args *args = nullptr, const char *name = nullptr,
                     bool daemon = false);
    // make + start; nullptr (and a failure) on error.
    mp_process *start(mp_target_fn fn, const mp_args *args = nullptr, const char *name = nullptr,
                      bool daemon = false);
    // A blocked child: started and known to be running its target.
    mp_process *start_blocked(Blocker **b, int code = 0, const char *name = nullptr,
                              bool daemon = false);
    // Joins (kWait) and returns the exit code; a failure and INT32_MIN on error.
    int join_code(mp_process *p);
    // A pid to SIGKILL at teardown if it still runs (grandchildren).
    void kill_at_teardown(int64_t pid) { strays_.push_back(pid); }

  private:
    mp_context *ctx_ = nullptr;
    std::vector<mp_process *> procs_;
    std::vector<std::unique_ptr<Pipe>> pipes_;
    std::vector<std::unique_ptr<Blocker>> blockers_;
    std::vector<int64_t> strays_;
    std::set<int64_t> children_before_;
    struct Watchdog;
    std::unique_ptr<Watchdog> watchdog_;
};

// Longest a test may take; past it the binary reports the test and exits, so a call
// that blocks forever (mp_process_start has no timeout) fails fast instead of hanging
// until the ctest timeout.
constexpr double kTestLimit = 120.0;

// The start methods this build offers, for INSTANTIATE_TEST_SUITE_P.
std::vector<std::string> all_backends();

} // namespace mpt

#endif
