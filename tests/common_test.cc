// Tests that do not depend on a start method (ctest label "common"): errors, the start
// method registry, CPU counts, the argument list API, the main process, bad input.
#include <multiproc.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "targets.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <sched.h>
#include <unistd.h>
#endif

using namespace mpt;

namespace {

std::vector<std::string> method_list() {
    std::vector<std::string> v;
    const char *const *m = mp_get_all_start_methods();
    for (size_t i = 0; m && m[i]; i++) v.push_back(m[i]);
    return v;
}

bool env_method_set() {
    const char *e = getenv("MP_START_METHOD");
    return e && *e;
}

// Restores the global start method a test changes.
class StartMethodGuard {
  public:
    StartMethodGuard() {
        const char *m = mp_get_start_method(true);
        if (m) saved_ = m;
        had_ = m != nullptr;
    }
    ~StartMethodGuard() {
        if (had_)
            mp_set_start_method(saved_.c_str(), true);
        else
            mp_set_start_method(nullptr, true);
    }

  private:
    std::string saved_;
    bool had_ = false;
};

} // namespace

// ---- errors -----------------------------------------------------------------------

TEST(Errors, StrerrorAndNameForEveryCode) {
    std::set<std::string> names, messages;
    int count = 0;
#define CHECK_CODE(name, value, msg)                   \
    EXPECT_EQ(value, (int)MP_##name);                  \
    EXPECT_STREQ(msg, mp_strerror(MP_##name));         \
    EXPECT_STREQ("MP_" #name, mp_err_name(MP_##name)); \
    names.insert(mp_err_name(MP_##name));              \
    messages.insert(mp_strerror(MP_##name));           \
    count++;
    MP_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
    EXPECT_EQ((size_t)count, names.size()) << "names are distinct";
    EXPECT_EQ((size_t)count, messages.size()) << "messages are distinct";
    // One past the most negative code (MP__ERR_LAST is not that: the enum counts
    // down, so it equals the last code + 1).
    int lowest = 0;
#define LOWEST(name, value, msg) lowest = value < lowest ? value : lowest;
    MP_ERRNO_MAP(LOWEST)
#undef LOWEST
    for (int bad : {1, 12345, -12345, lowest - 1, INT32_MIN}) {
        ASSERT_NE(nullptr, mp_strerror(bad));
        EXPECT_STREQ("unknown error", mp_strerror(bad)) << bad;
        EXPECT_STREQ("MP_UNKNOWN", mp_err_name(bad)) << bad;
    }
    EXPECT_NE(nullptr, mp_strerror(0));
    EXPECT_NE(nullptr, mp_err_name(0));
}

TEST(Errors, LastErrorMessageAfterFailures) {
    EXPECT_EQ(nullptr, mp_get_context("no-such-method"));
    EXPECT_STRNE("", mp_last_error_message());
    StartMethodGuard guard;
    EXPECT_EQ(MP_EINVAL, mp_set_start_method("no-such-method", true));
    EXPECT_STRNE("", mp_last_error_message());
    EXPECT_EQ(MP_EINVAL, mp_args_new(nullptr));
    EXPECT_STRNE("", mp_last_error_message());
}

TEST(Errors, LastErrorMessageIsPerThread) {
    EXPECT_EQ(nullptr, mp_get_context("no-such-method"));
    std::string here = mp_last_error_message();
    EXPECT_NE("", here);
    std::string there = "unset";
    std::thread t([&] { there = mp_last_error_message(); });
    t.join();
    EXPECT_EQ("", there) << "a new thread has no error yet";
    EXPECT_EQ(here, mp_last_error_message()) << "unchanged by the other thread";
}

// ---- library and start methods ----------------------------------------------------

TEST(Version, LibraryMatchesTheHeaders) {
    const char *v = mp_version();
    ASSERT_NE(nullptr, v);
    EXPECT_STREQ(MP_VERSION_STRING, v);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH);
    EXPECT_STREQ(want, v) << "MP_VERSION_STRING agrees with MAJOR.MINOR.PATCH";
}

TEST(Init, SafeToCallAgain) {
    EXPECT_EQ(0, mp_init(nullptr, nullptr));
    int argc = 1;
    char arg0[] = "mp_tests";
    char *args[] = {arg0, nullptr};
    char **argv = args;
    EXPECT_EQ(0, mp_init(&argc, &argv));
    EXPECT_EQ(1, argc);
}

TEST(StartMethods, AllAvailableOnThisPlatform) {
    std::vector<std::string> v = method_list();
    ASSERT_FALSE(v.empty());
    std::set<std::string> s(v.begin(), v.end());
    EXPECT_EQ(v.size(), s.size()) << "no duplicates";
#ifdef _WIN32
    std::set<std::string> expected = {"win32", "dummy"};
    const char *dflt = "win32";
#else
    std::set<std::string> expected = {"fork", "spawn", "forkserver", "dummy"};
#ifdef MP_TEST_HAVE_APR
    expected.insert("apr");
#endif
    const char *dflt = "forkserver";
#endif
    EXPECT_EQ(expected, s);
    EXPECT_EQ(dflt, v[0]) << "the platform default comes first";
    for (const std::string &name : v) {
        mp_context *c = mp_get_context(name.c_str());
        ASSERT_NE(nullptr, c) << name << " " << err();
        EXPECT_STREQ(name.c_str(), mp_context_name(c));
        EXPECT_EQ(c, mp_get_context(name.c_str())) << "contexts are static";
    }
}

TEST(StartMethods, UnavailableNames) {
    EXPECT_EQ(nullptr, mp_get_context("no-such-method"));
    EXPECT_EQ(nullptr, mp_get_context(""));
#ifdef _WIN32
    for (const char *n : {"fork", "forkserver", "apr"}) {
        EXPECT_EQ(nullptr, mp_get_context(n)) << n;
        EXPECT_STRNE("", mp_last_error_message());
    }
    // Portable code asking for spawn gets win32.
    mp_context *spawn = mp_get_context("spawn");
    ASSERT_NE(nullptr, spawn) << err();
    EXPECT_STREQ("win32", mp_context_name(spawn));
    EXPECT_EQ(mp_get_context("win32"), spawn);
#else
    EXPECT_EQ(nullptr, mp_get_context("win32"));
    EXPECT_STRNE("", mp_last_error_message());
#endif
}

TEST(StartMethods, DefaultContext) {
    if (env_method_set()) GTEST_SKIP() << "MP_START_METHOD is set in the environment";
    StartMethodGuard guard;
    ASSERT_EQ(0, mp_set_start_method(nullptr, true));
    mp_context *c = mp_get_context(nullptr);
    ASSERT_NE(nullptr, c) << err();
    EXPECT_EQ(method_list()[0], mp_context_name(c));
}

TEST(StartMethods, SetAndGet) {
    StartMethodGuard guard;
    const char *other = kWindows ? "dummy" : "spawn";
    const char *third = kWindows ? "win32" : "fork";
    ASSERT_EQ(0, mp_set_start_method(nullptr, true)) << "unset";
    EXPECT_EQ(nullptr, mp_get_start_method(true));
    ASSERT_EQ(0, mp_set_start_method(other, false)) << err();
    EXPECT_STREQ(other, mp_get_start_method(true));
    EXPECT_STREQ(other, mp_get_start_method(false));
    EXPECT_STREQ(other, mp_context_name(mp_get_context(nullptr))) << "the default context follows";
    EXPECT_EQ(MP_ESTATE, mp_set_start_method(third, false)) << "already set";
    EXPECT_STREQ(other, mp_get_start_method(true));
    EXPECT_EQ(0, mp_set_start_method(third, true)) << err();
    EXPECT_STREQ(third, mp_get_start_method(true));
    EXPECT_EQ(MP_EINVAL, mp_set_start_method("no-such-method", true));
    EXPECT_STREQ(third, mp_get_start_method(true)) << "unchanged by a failed set";
    ASSERT_EQ(0, mp_set_start_method(nullptr, true));
    EXPECT_EQ(nullptr, mp_get_start_method(true));
    const char *fixed = mp_get_start_method(false);
    ASSERT_NE(nullptr, fixed);
    if (!env_method_set()) {
        EXPECT_EQ(method_list()[0], fixed) << "unset: fixed to the platform default";
    }
    EXPECT_STREQ(fixed, mp_get_start_method(true)) << "get(false) fixed it";
    EXPECT_EQ(MP_ESTATE, mp_set_start_method(other, false));
}

#ifdef _WIN32
TEST(StartMethods, SpawnNamesWin32ForSetStartMethod) {
    StartMethodGuard guard;
    ASSERT_EQ(0, mp_set_start_method("spawn", true)) << err();
    mp_context *c = mp_get_context(nullptr);
    ASSERT_NE(nullptr, c);
    EXPECT_STREQ("win32", mp_context_name(c));
}
#endif

TEST(StartMethods, EnvironmentVariableSetsTheDefault) {
    // A fresh copy of this program with MP_START_METHOD=dummy reports its default
    // (see main.cc).
    std::string path = (kWindows ? std::string(getenv("TEMP") ? getenv("TEMP") : ".") + "\\"
                                 : std::string("/tmp/")) +
                       "mp_tests_env_" + std::to_string((long long)mp_getpid()) + ".txt";
    remove(path.c_str());
    int rc = run_self_with_env(
        {{"MP_START_METHOD", "dummy"}, {"MP_TEST_REPORT_START_METHOD", path}}, kWait);
    ASSERT_EQ(0, rc) << "the copy of this program failed";
    std::string got = read_file(path);
    remove(path.c_str());
    EXPECT_EQ("dummy dummy", got) << "mp_get_start_method(false) and mp_get_context(NULL)";
}

TEST(StartMethods, ProcessOnDefaultContext) {
    Args a;
    a.i(12);
    mp_process_opts o = {};
    o.target = tgt_return_arg;
    o.args = a.get();
    mp_process *p = nullptr;
    ASSERT_EQ(0, mp_process_new(nullptr, &o, &p)) << err();
    ASSERT_NE(nullptr, p);
    mp_context *c = mp_get_context(nullptr);
    ASSERT_NE(nullptr, c);
    EXPECT_STREQ(mp_context_name(c), mp_process_start_method(p));
    ASSERT_EQ(0, mp_process_start(p)) << err();
    EXPECT_EQ(0, mp_process_join(p, kWait));
    int code = -1;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(12, code);
    mp_process_free(p);
}

// ---- CPUs and pids -------------------------------------------------------------------

TEST(System, CpuCounts) {
    int n = mp_cpu_count(), pn = mp_process_cpu_count();
    EXPECT_GE(n, 1);
    EXPECT_GE(pn, 1);
    EXPECT_LE(pn, n);
    unsigned hc = std::thread::hardware_concurrency();
    if (hc > 0) {
        EXPECT_GE((unsigned)n, hc) << "at least the CPUs online";
    }
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(0, sched_getaffinity(0, sizeof set, &set));
    EXPECT_EQ(CPU_COUNT(&set), pn) << "os.process_cpu_count: the affinity mask";
    if (CPU_COUNT(&set) > 1) {
        // Restrict a thread to one CPU: the count it sees follows its mask.
        int seen = 0;
        std::thread t([&] {
            cpu_set_t one;
            CPU_ZERO(&one);
            for (int i = 0; i < CPU_SETSIZE; i++)
                if (CPU_ISSET(i, &set)) {
                    CPU_SET(i, &one);
                    break;
                }
            if (sched_setaffinity(0, sizeof one, &one) == 0) seen = mp_process_cpu_count();
        });
        t.join();
        EXPECT_EQ(1, seen);
        EXPECT_EQ(n, mp_cpu_count()) << "the system count does not follow the mask";
    }
#endif
}

TEST(System, GetPid) {
#ifdef _WIN32
    EXPECT_EQ((int64_t)GetCurrentProcessId(), mp_getpid());
#else
    EXPECT_EQ((int64_t)getpid(), mp_getpid());
#endif
}

// ---- the main process -------------------------------------------------------------

TEST(MainProcess, CurrentAndParent) {
    mp_process *cur = mp_current_process();
    ASSERT_NE(nullptr, cur);
    EXPECT_STREQ("MainProcess", mp_process_name(cur));
    EXPECT_EQ(mp_getpid(), mp_process_pid(cur));
    EXPECT_FALSE(mp_process_daemon(cur));
    EXPECT_EQ(cur, mp_current_process()) << "the same object every time";
    EXPECT_EQ(nullptr, mp_parent_process());
    // The main process is never a "child" of itself.
    size_t n = 99;
    EXPECT_EQ(0, mp_active_children(nullptr, 0, &n));
    EXPECT_EQ(0u, n);
}

TEST(MainProcess, CurrentProcessInAPlainThread) {
    // A thread the library did not start belongs to the main process.
    std::string name;
    std::thread t([&] {
        mp_process *c = mp_current_process();
        name = c && mp_process_name(c) ? mp_process_name(c) : "(null)";
    });
    t.join();
    EXPECT_EQ("MainProcess", name);
}

// ---- the argument list ------------------------------------------------------------

TEST(ArgsApi, ValuesAndReaders) {
    mp_args *a = nullptr;
    ASSERT_EQ(0, mp_args_new(&a));
    ASSERT_NE(nullptr, a);
    EXPECT_EQ(0u, mp_args_count(a));
    EXPECT_EQ(MP_ARG_NONE, mp_args_type(a, 0));
    char buf[] = "mutable";
    const unsigned char bytes[] = {0, 1, 2, 0xff};
    EXPECT_EQ(0, mp_args_add_int(a, -42));
    EXPECT_EQ(0, mp_args_add_double(a, 2.75));
    EXPECT_EQ(0, mp_args_add_str(a, buf));
    EXPECT_EQ(0, mp_args_add_bytes(a, bytes, sizeof bytes));
    EXPECT_EQ(0, mp_args_add_bytes(a, nullptr, 0));
    buf[0] = 'X'; // the list holds its own copy
    ASSERT_EQ(5u, mp_args_count(a));
    EXPECT_EQ(MP_ARG_INT, mp_args_type(a, 0));
    EXPECT_EQ(MP_ARG_DOUBLE, mp_args_type(a, 1));
    EXPECT_EQ(MP_ARG_STR, mp_args_type(a, 2));
    EXPECT_EQ(MP_ARG_BYTES, mp_args_type(a, 3));
    EXPECT_EQ(MP_ARG_BYTES, mp_args_type(a, 4));
    EXPECT_EQ(MP_ARG_NONE, mp_args_type(a, 5));
    EXPECT_EQ(-42, mp_args_int(a, 0));
    EXPECT_EQ(2.75, mp_args_double(a, 1));
    EXPECT_STREQ("mutable", mp_args_str(a, 2));
    size_t len = 0;
    const void *p = mp_args_bytes(a, 3, &len);
    ASSERT_EQ(sizeof bytes, len);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, memcmp(bytes, p, len));
    len = 99;
    mp_args_bytes(a, 4, &len);
    EXPECT_EQ(0u, len);
    // Wrong type or out of range: zero values.
    EXPECT_EQ(0, mp_args_int(a, 1));
    EXPECT_EQ(0, mp_args_int(a, 2));
    EXPECT_EQ(0.0, mp_args_double(a, 0));
    EXPECT_EQ(nullptr, mp_args_str(a, 0));
    EXPECT_EQ(nullptr, mp_args_str(a, 99));
    len = 99;
    EXPECT_EQ(nullptr, mp_args_bytes(a, 0, &len));
    EXPECT_EQ(MP_INVALID_OS_HANDLE, mp_args_os_handle(a, 0));
    EXPECT_EQ(MP_INVALID_OS_HANDLE, mp_args_os_handle(a, 99));
    EXPECT_EQ(0, mp_args_int(a, 99));
    mp_args_free(a);
}

TEST(ArgsApi, OsHandleIsKeptByTheCaller) {
    Pipe pp;
    ASSERT_TRUE(pipe_open(&pp));
    mp_args *a = nullptr;
    ASSERT_EQ(0, mp_args_new(&a));
    EXPECT_EQ(0, mp_args_add_os_handle(a, pp.w));
    EXPECT_EQ(1u, mp_args_count(a));
    EXPECT_EQ(MP_ARG_OS_HANDLE, mp_args_type(a, 0));
    mp_args_free(a);
    // The caller's handle still works after the list is gone.
    EXPECT_TRUE(write_msg(pp.w, "still open"));
    std::string m;
    EXPECT_TRUE(read_msg(pp.r, &m, kWait));
    EXPECT_EQ("still open", m);
    pipe_close(&pp);
}

TEST(ArgsApi, BadInput) {
    EXPECT_EQ(MP_EINVAL, mp_args_new(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_int(nullptr, 1));
    EXPECT_EQ(MP_EINVAL, mp_args_add_double(nullptr, 1.0));
    EXPECT_EQ(MP_EINVAL, mp_args_add_str(nullptr, "x"));
    EXPECT_EQ(MP_EINVAL, mp_args_add_bytes(nullptr, "x", 1));
    EXPECT_EQ(MP_EINVAL, mp_args_add_os_handle(nullptr, 0));
    mp_args *a = nullptr;
    ASSERT_EQ(0, mp_args_new(&a));
    EXPECT_EQ(MP_EINVAL, mp_args_add_str(a, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_bytes(a, nullptr, 3));
    EXPECT_EQ(0u, mp_args_count(a)) << "failed adds add nothing";
    mp_args_free(a);
    mp_args_free(nullptr);
    EXPECT_EQ(0u, mp_args_count(nullptr));
    EXPECT_EQ(MP_ARG_NONE, mp_args_type(nullptr, 0));
    EXPECT_EQ(0, mp_args_int(nullptr, 0));
    EXPECT_EQ(nullptr, mp_args_str(nullptr, 0));
}

// ---- bad input to the process API -------------------------------------------------

TEST(ProcessApi, NullProcess) {
    int code = 0;
    mp_os_handle h = 0;
    EXPECT_EQ(MP_EINVAL, mp_process_start(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_process_join(nullptr, 1.0));
    EXPECT_EQ(MP_EINVAL, mp_process_exitcode(nullptr, &code));
    EXPECT_EQ(MP_EINVAL, mp_process_sentinel(nullptr, &h));
    EXPECT_EQ(MP_EINVAL, mp_process_terminate(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_process_kill(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_process_interrupt(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_process_close(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_process_set_name(nullptr, "x"));
    EXPECT_EQ(MP_EINVAL, mp_process_set_daemon(nullptr, true));
    EXPECT_FALSE(mp_process_is_alive(nullptr));
    EXPECT_EQ(0, mp_process_pid(nullptr));
    mp_process_free(nullptr);
}

TEST(ProcessApi, BadOptions) {
    mp_process *p = reinterpret_cast<mp_process *>(uintptr_t(0x10));
    EXPECT_EQ(MP_EINVAL, mp_process_new(nullptr, nullptr, &p));
    EXPECT_EQ(nullptr, p);
    EXPECT_STRNE("", mp_last_error_message());
    mp_process_opts o = {};
    p = reinterpret_cast<mp_process *>(uintptr_t(0x10));
    EXPECT_EQ(MP_EINVAL, mp_process_new(nullptr, &o, &p));
    EXPECT_EQ(nullptr, p);
    EXPECT_STRNE("", mp_last_error_message());
}

TEST(ProcessApi, ActiveChildrenBadInput) {
    mp_process *list[2];
    size_t n = 0;
    EXPECT_EQ(MP_EINVAL, mp_active_children(list, 2, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_active_children(nullptr, 2, &n));
}

TEST(Executable, Accepted) {
    std::string self = self_exe();
    EXPECT_EQ(0, mp_set_executable(self.c_str())) << err();
    EXPECT_EQ(0, mp_set_executable(nullptr)) << err();
}
