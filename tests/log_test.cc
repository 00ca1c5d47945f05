// Logging and finalizers (include/multiproc/log.h): off by default; levels, names and
// the hook; the stderr format with the process's name, in a child on every start method;
// the settings children inherit; finalizers run once, in Python's exit order, at a
// child's exit, and not the parent's copies in a fork child.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fixture.h"
#include "targets.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

using namespace mpt;

namespace {

struct Record {
    int level;
    std::string who, msg;
};

void keep_record(void *ctx, int level, const char *who, const char *msg) {
    static_cast<std::vector<Record> *>(ctx)->push_back({level, who, msg});
}

// Puts the logging settings back as they were at the start of the program.
struct LogReset {
    ~LogReset() {
        mp_log_set_hook(nullptr, nullptr);
        mp_log_stop_stderr();
        mp_log_set_level(MP_LOG_NOTSET);
    }
};

// A new empty file's path (removed with the object).
struct TempFile {
    std::string path;
    TempFile() {
#ifdef _WIN32
        char dir[MAX_PATH], name[MAX_PATH];
        if (GetTempPathA(sizeof dir, dir) && GetTempFileNameA(dir, "mpl", 0, name)) path = name;
#else
        char name[] = "/tmp/mp_log_test.XXXXXX";
        int fd = mkstemp(name);
        if (fd >= 0) {
            close(fd);
            path = name;
        }
#endif
    }
    ~TempFile() {
        if (!path.empty()) std::remove(path.c_str());
    }
};

// The file's text with Windows' text-mode line ends ("\r\n") read as "\n".
std::string read_text(const std::string &path) {
    std::string t = read_file(path), out;
    for (char c : t)
        if (c != '\r') out += c;
    return out;
}

void append_line(const char *path, const char *line) {
    if (FILE *f = std::fopen(path, "a")) {
        std::fprintf(f, "%s\n", line);
        std::fclose(f);
    }
}

// [0] int: the exit code says what the child's logging settings are: its level, plus
// 100 when records go to stderr.
int tgt_log_settings(mp_args *) {
    return mp_log_get_level() + (mp_log_to_stderr_enabled() ? 100 : 0);
}

// [0] str path: stderr goes to the file; logs one record at INFO and one at DEBUG (which
// the level INFO drops), then returns 0 (the library then logs the exit there too).
int tgt_log_to_file(mp_args *a) {
    const char *path = mp_args_str(a, 0);
    if (!path || !std::freopen(path, "a", stderr)) return kTgtBadArgs;
    mp_log(MP_LOG_INFO, "hello %d", 7);
    mp_log(MP_LOG_DEBUG, "not shown");
    return 0;
}

#ifndef _WIN32
// [0] str path: stderr goes to the file; creates a tracked shared memory block and
// leaves it (closed, not unlinked, not freed), so at exit the process says the tracker
// will unlink it. (Windows has no tracker.)
int tgt_shm_left(mp_args *a) {
    const char *path = mp_args_str(a, 0);
    if (!path || !std::freopen(path, "a", stderr)) return kTgtBadArgs;
    mp_shm_opts o = {};
    o.create = true;
    o.size = 4096;
    mp_shm *s = nullptr;
    if (mp_shm_open(&o, &s) != 0) return kTgtIoError;
    mp_shm_close(s);
    return 0;
}
#endif

struct FinArg {
    std::string path, line;
};

void fin_write(void *p) {
    FinArg *f = static_cast<FinArg *>(p);
    append_line(f->path.c_str(), f->line.c_str());
    delete f;
}

// [0] str path: registers finalizers that append their names to the file; they run at
// the child's exit in Python's order.
int tgt_finalizers(mp_args *a) {
    const char *path = mp_args_str(a, 0);
    if (!path) return kTgtBadArgs;
    struct {
        const char *name;
        int prio;
    } fs[] = {{"p0-first", 0},
              {"p5", 5},
              {"neg", -3},
              {"p0-second", 0},
              {"never", MP_FINALIZE_NOT_AT_EXIT},
              {"canceled", 9}};
    mp_finalizer *h[6] = {};
    FinArg *args[6];
    for (int i = 0; i < 6; i++) {
        args[i] = new FinArg{path, fs[i].name};
        if (mp_finalize_new(fin_write, args[i], fs[i].prio, &h[i]) != 0) return kTgtIoError;
    }
    mp_finalize_cancel(h[5]);
    delete args[5]; // a canceled finalizer's argument is the caller's again
    return 0;
}

} // namespace

TEST(Log, OffByDefaultLevelsNamesAndHook) {
    LogReset reset;
    EXPECT_FALSE(mp_log_enabled(MP_LOG_CRITICAL)) << "logging is off until told where to go";
    EXPECT_EQ(MP_LOG_WARNING, mp_log_get_level())
        << "NOTSET is WARNING, as Python's effective level";
    std::vector<Record> got;
    mp_log_set_hook(keep_record, &got);
    mp_log(MP_LOG_INFO, "dropped");
    mp_log(MP_LOG_WARNING, "kept %s", "one");
    ASSERT_EQ(1u, got.size());
    EXPECT_EQ(MP_LOG_WARNING, got[0].level);
    EXPECT_EQ("kept one", got[0].msg);
    EXPECT_EQ("MainProcess", got[0].who);

    EXPECT_EQ(0, mp_log_set_level(MP_LOG_SUBDEBUG));
    EXPECT_EQ(MP_LOG_SUBDEBUG, mp_log_get_level());
    EXPECT_TRUE(mp_log_enabled(MP_LOG_SUBDEBUG));
    EXPECT_FALSE(mp_log_enabled(MP_LOG_SUBDEBUG - 1));
    EXPECT_EQ(MP_EINVAL, mp_log_set_level(-1));
    EXPECT_EQ(MP_LOG_SUBDEBUG, mp_log_get_level()) << "a refused level changes nothing";

    std::string big(5000, 'x');
    mp_log(MP_LOG_ERROR, "%s", big.c_str());
    ASSERT_EQ(2u, got.size());
    EXPECT_LT(got[1].msg.size(), big.size());
    EXPECT_EQ("...", got[1].msg.substr(got[1].msg.size() - 3))
        << "a long message is cut, and says so";

    EXPECT_STREQ("SUBDEBUG", mp_log_level_name(MP_LOG_SUBDEBUG));
    EXPECT_STREQ("SUBWARNING", mp_log_level_name(MP_LOG_SUBWARNING));
    EXPECT_STREQ("CRITICAL", mp_log_level_name(MP_LOG_CRITICAL));
    EXPECT_STREQ("Level 33", mp_log_level_name(33));

    mp_log_set_hook(nullptr, nullptr);
    got.clear();
    mp_log(MP_LOG_CRITICAL, "nowhere");
    EXPECT_TRUE(got.empty()) << "no hook, no stderr: the record goes nowhere";
    mp_log_to_stderr(MP_LOG_NOTSET);
    EXPECT_TRUE(mp_log_to_stderr_enabled());
    EXPECT_EQ(MP_LOG_SUBDEBUG, mp_log_get_level()) << "log_to_stderr(NOTSET) keeps the level";
    mp_log_to_stderr(MP_LOG_ERROR);
    EXPECT_EQ(MP_LOG_ERROR, mp_log_get_level());
}

TEST(Finalize, RunOnceCancelAndExitOrder) {
    std::vector<std::string> ran;
    struct Arg {
        std::vector<std::string> *ran;
        std::string name;
    };
    auto fn = [](void *p) {
        Arg *a = static_cast<Arg *>(p);
        a->ran->push_back(a->name);
        delete a;
    };
    auto add = [&](const char *name, int prio) {
        mp_finalizer *f = nullptr;
        EXPECT_EQ(0, mp_finalize_new(fn, new Arg{&ran, name}, prio, &f)) << err();
        return f;
    };
    EXPECT_EQ(MP_EINVAL, mp_finalize_new(nullptr, nullptr, 0, nullptr));

    mp_finalizer *now = add("now", 1);
    mp_finalize_run(now);
    EXPECT_EQ(std::vector<std::string>{"now"}, ran) << "run: at once";
    Arg *gone_arg = new Arg{&ran, "canceled"};
    mp_finalizer *gone = nullptr;
    ASSERT_EQ(0, mp_finalize_new(fn, gone_arg, 1, &gone)) << err();
    mp_finalize_cancel(gone);
    delete gone_arg; // a canceled finalizer's argument is the caller's again
    mp_finalize_run(nullptr);
    mp_finalize_cancel(nullptr);
    ran.clear();

    add("a0", 0);
    add("b5", 5);
    add("c-2", -2);
    add("d0", 0);
    mp_finalizer *manual = add("manual", MP_FINALIZE_NOT_AT_EXIT);
    mp_finalize_run_all(0);
    EXPECT_EQ((std::vector<std::string>{"b5", "d0", "a0"}), ran)
        << "priority >= 0: highest first, then the most recent";
    mp_finalize_run_all(MP_FINALIZE_NOT_AT_EXIT);
    EXPECT_EQ((std::vector<std::string>{"b5", "d0", "a0", "c-2"}), ran)
        << "then the rest; one without an exit priority is not run at exit";
    mp_finalize_run_all(MP_FINALIZE_NOT_AT_EXIT);
    EXPECT_EQ(4u, ran.size()) << "each runs once";
    mp_finalize_run(manual);
    EXPECT_EQ("manual", ran.back());
}

TEST_P(ProcessTest, ChildrenInheritTheLogSettings) {
    LogReset reset;
    // CRITICAL keeps the library's own INFO records off the test's output.
    mp_log_to_stderr(MP_LOG_CRITICAL);
    mp_process *p = start(tgt_log_settings);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(MP_LOG_CRITICAL + 100, join_code(p)) << "level and stderr travel to the child";

    mp_log_stop_stderr();
    mp_log_set_level(45);
    p = start(tgt_log_settings);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(45, join_code(p));
}

TEST_P(ProcessTest, ChildLogsWithItsNameInPythonsFormat) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: its stderr is the test's own";
    LogReset reset;
    TempFile out;
    ASSERT_FALSE(out.path.empty());
    mp_log_to_stderr(MP_LOG_INFO);
    Args a;
    a.s(out.path.c_str());
    mp_process *p = start(tgt_log_to_file, a.get(), "LogChild");
    ASSERT_NE(nullptr, p);
    mp_log_stop_stderr(); // the parent's own records stay off the test's output
    EXPECT_EQ(0, join_code(p));
    std::string text = read_text(out.path);
    EXPECT_NE(std::string::npos, text.find("[INFO/LogChild] hello 7\n")) << text;
    EXPECT_NE(std::string::npos, text.find("[INFO/LogChild] process exiting with exitcode 0\n"))
        << text;
    EXPECT_EQ(std::string::npos, text.find("not shown")) << text;
}

// Python's resource tracker warns of the blocks it must unlink at shutdown; here the
// process that made a block and left it says so as it exits, and the tracker then
// unlinks it.
TEST_P(ProcessTest, ChildWarnsOfSharedMemoryItLeavesToTheTracker) {
    if (dummy()) GTEST_SKIP() << "a dummy child is a thread: the process has not exited";
#ifdef _WIN32
    GTEST_SKIP() << "Windows has no tracker: a block's name ends with its last handle";
#else
    LogReset reset;
    TempFile out;
    ASSERT_FALSE(out.path.empty());
    mp_log_to_stderr(MP_LOG_WARNING);
    Args a;
    a.s(out.path.c_str());
    mp_process *p = start(tgt_shm_left, a.get(), "ShmChild");
    ASSERT_NE(nullptr, p);
    mp_log_stop_stderr();
    EXPECT_EQ(0, join_code(p));
    std::string text = read_text(out.path);
    const std::string head = "[WARNING/ShmChild] shared memory block '";
    size_t at = text.find(head);
    ASSERT_NE(std::string::npos, at) << text;
    size_t end = text.find('\'', at + head.size());
    ASSERT_NE(std::string::npos, end) << text;
    std::string name = text.substr(at + head.size(), end - at - head.size());
    EXPECT_NE(
        std::string::npos,
        text.find("' was not unlinked: the tracker unlinks it once no process has it open\n", end))
        << text;
    // The tracker unlinks it once the child's connection is gone.
    std::string path = "/dev/shm/" + name;
    EXPECT_TRUE(eventually([&] { return access(path.c_str(), F_OK) != 0; }))
        << path << " was left behind";
#endif
}

TEST_P(ProcessTest, FinalizersRunAtAChildsExitInPythonsOrder) {
    if (dummy())
        GTEST_SKIP() << "a dummy child's finalizers are its process's: they run at its exit";
    TempFile out;
    ASSERT_FALSE(out.path.empty());
    // One of the parent's: a fork child has a copy, which it must not run.
    mp_finalizer *mine = nullptr;
    ASSERT_EQ(0, mp_finalize_new(fin_write, new FinArg{out.path, "parent"}, 100, &mine));
    Args a;
    a.s(out.path.c_str());
    mp_process *p = start(tgt_finalizers, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ("p5\np0-second\np0-first\nneg\n", read_text(out.path));
    mp_finalize_run(mine);
    EXPECT_EQ("p5\np0-second\np0-first\nneg\nparent\n", read_text(out.path));
}
