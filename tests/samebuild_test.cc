// A child of another build must refuse a target of this one: mp_set_executable names a
// different program that calls mp_init, and start fails with MP_ERESOLVE in the parent
// (never a jump to whatever that program has at the target's offset).
#include <string>

#include "fixture.h"
#include "targets.h"

#ifndef _WIN32
#include <sys/stat.h>
#endif

using namespace mpt;

namespace {

// Restores the default executable; on forkserver the server running the other program
// is replaced by one running this program again (and the killed one is reaped).
struct RestoreExecutable {
    mp_context *ctx;
    bool forkserver;
    ~RestoreExecutable() {
        mp_set_executable(nullptr);
        if (!forkserver) return;
        EXPECT_TRUE(kill_forkservers()) << "the forkserver did not die";
        mp_args *a = nullptr;
        mp_args_new(&a);
        mp_args_add_int(a, 8);
        mp_process_opts o = {};
        o.target = tgt_return_arg;
        o.args = a;
        mp_process *p = nullptr;
        int code = -1;
        EXPECT_EQ(0, mp_process_new(ctx, &o, &p)) << err();
        if (p) {
            EXPECT_EQ(0, mp_process_start(p)) << "after restoring the executable: " << err();
            EXPECT_EQ(0, mp_process_join(p, kWait)) << err();
            EXPECT_EQ(0, mp_process_exitcode(p, &code));
            EXPECT_EQ(8, code) << "a child of the restored forkserver";
        }
        mp_process_free(p);
        mp_args_free(a);
    }
};

} // namespace

TEST_P(ProcessTest, ExecutableOfAnotherBuildIsRefused) {
    if (dummy() || backend() == "fork")
        GTEST_SKIP() << "the child shares the parent's image: no executable is run";
    std::string other = self_dir() + MP_TEST_OTHER_CHILD_NAME;
#ifndef _WIN32
    struct stat st;
    ASSERT_EQ(0, stat(other.c_str(), &st)) << "missing " << other;
#endif
    bool fs = backend() == "forkserver";
    RestoreExecutable restore{ctx(), fs};
    if (fs) {
        // The server runs the executable it was started with: the next one must run the
        // other program.
        ASSERT_TRUE(kill_forkservers()) << "the forkserver did not die";
    }
    ASSERT_EQ(0, mp_set_executable(other.c_str())) << err();
    Args a;
    a.i(5);
    mp_process *p = make(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    int rc = mp_process_start(p);
    std::string msg = mp_last_error_message();
    EXPECT_EQ(MP_ERESOLVE, rc) << mp_err_name(rc) << " " << msg;
    // Linux names the build (build-id); Windows says the target lives in another program.
    bool names_it = msg.find("build") != std::string::npos ||
                    (kWindows && msg.find(MP_TEST_OTHER_CHILD_NAME) != std::string::npos);
    EXPECT_TRUE(names_it) << "the message should say the child is another build: " << msg;
    EXPECT_FALSE(mp_process_is_alive(p));
    if (rc == 0) {
        // The child ran the target at a foreign address: end it before the teardown.
        if (mp_process_join(p, kWait) != 0) mp_process_kill(p);
    } else {
        // Nothing was left behind; the fixture's teardown also checks for any process.
        int code = 777;
        EXPECT_NE(0, mp_process_exitcode(p, &code))
            << "a process that never started has no exit code";
        size_t n = 12345;
        EXPECT_EQ(0, mp_active_children(nullptr, 0, &n)) << err();
        EXPECT_EQ(0u, n) << "the refused child is still counted as alive";
    }
#ifndef _WIN32
    std::vector<int64_t> z = zombie_children();
    EXPECT_TRUE(z.empty()) << "a refused child stays a zombie";
    for (const auto &c : running_children()) {
        if (c.second.find("forkserver") == std::string::npos) {
            EXPECT_EQ(std::string::npos, c.second.find(MP_TEST_OTHER_CHILD_NAME))
                << "a refused child still runs: " << c.first << " " << c.second;
        }
    }
#endif
}
