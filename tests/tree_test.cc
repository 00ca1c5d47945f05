// Process trees on every backend: nested children, their names, daemonic cleanup when
// a child ends, and what happens to grandchildren when a child is killed.
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>

#include "fixture.h"
#include "targets.h"

using namespace mpt;

static int64_t to_i64(const std::string &s) { return strtoll(s.c_str(), nullptr, 10); }

TEST_P(ProcessTest, NestedChildren) {
    Args a;
    a.s(backend().c_str()).i(5);
    mp_process *p = start(tgt_nested, a.get());
    ASSERT_NE(nullptr, p);
    // 15 = the grandchild's 5 + 10; other codes name the step that failed (targets.h).
    EXPECT_EQ(15, join_code(p));
}

TEST_P(ProcessTest, GrandchildrenAreNamedFromTheChildsIdentity) {
    Pipe &out = pipe();
    Args a;
    a.h(out.w).s(backend().c_str());
    mp_process *p = start(tgt_name_children, a.get());
    ASSERT_NE(nullptr, p);
    std::string child_name = mp_process_name(p) ? mp_process_name(p) : "(null)";
    std::smatch m;
    std::regex re("Process-([0-9]+)");
    ASSERT_TRUE(std::regex_match(child_name, m, re)) << child_name;
    std::string n = m[1];

    std::string self, names, grand;
    ASSERT_TRUE(read_msg(out.r, &self, kWait)) << "no report from the child";
    ASSERT_TRUE(read_msg(out.r, &names, kWait)) << "no names from the child";
    ASSERT_TRUE(read_msg(out.r, &grand, kWait)) << "no report from the grandchild";
    EXPECT_EQ(0, join_code(p));
    auto rs = parse_kv(self), rn = parse_kv(names), rg = parse_kv(grand);
    SCOPED_TRACE("child:\n" + self + "names:\n" + names + "grandchild:\n" + grand);
    EXPECT_EQ(child_name, rs["name"]);
    EXPECT_EQ("Process-" + n + ":1", rn["g1"]);
    EXPECT_EQ("Process-" + n + ":2", rn["g2"]);
    EXPECT_EQ("Process-" + n + ":1", rg["name"]) << "the grandchild sees its own name";
    EXPECT_EQ(backend(), rg["method"]);
    if (!dummy()) {
        EXPECT_EQ("1", rg["has_parent"]);
        EXPECT_EQ(rs["pid"], rg["ppid"]) << "the grandchild's parent is the child";
        EXPECT_EQ(child_name, rg["pname"]);
        EXPECT_EQ("alive", rg["psentinel"]);
    }
}

TEST_P(ProcessTest, DaemonCleanupWhenChildEnds) {
    // The child starts a daemonic grandchild (unless dummy: threads cannot be
    // terminated) and a non-daemonic one that needs 0.5 s, and returns at once: on its
    // way out the library must terminate the daemonic one and join the other.
    Pipe &out = pipe();
    Args a;
    a.h(out.w).s(backend().c_str()).i(dummy() ? 0 : 1);
    mp_process *p = start(tgt_daemon_cleanup, a.get());
    ASSERT_NE(nullptr, p);
    int64_t daemon_pid = 0;
    if (!dummy()) {
        std::string m;
        ASSERT_TRUE(read_msg(out.r, &m, kWait)) << "no pid from the daemonic grandchild";
        ASSERT_EQ(0u, m.find("pid=")) << m;
        daemon_pid = to_i64(m.substr(4));
        ASSERT_GT(daemon_pid, 0);
        kill_at_teardown(daemon_pid);
    }
    EXPECT_EQ(0, join_code(p));
    // The non-daemonic grandchild was joined before the child ended, so its message is
    // already in the pipe now: no waiting.
    std::string done;
    EXPECT_TRUE(read_msg(out.r, &done, 0.0))
        << "the non-daemonic grandchild had not finished when the child ended";
    EXPECT_EQ(0u, done.find("done pid=")) << done;
    if (!dummy()) {
        EXPECT_TRUE(wait_process_gone(daemon_pid, kWait))
            << "the daemonic grandchild " << daemon_pid << " survived its parent's exit";
        std::string more;
        EXPECT_FALSE(read_msg(out.r, &more, 0.0)) << "unexpected: " << more;
    }
}

TEST_P(ProcessTest, DaemonicGrandchildDiesWithKilledParent) {
    if (dummy()) GTEST_SKIP() << "dummy children are threads: nothing to kill";
    // A child starts a daemonic grandchild that sleeps long; SIGKILL (TerminateProcess)
    // on the child gives it no chance to clean up, yet the grandchild must die.
    Pipe &out = pipe();
    Args a;
    a.h(out.w).s(backend().c_str()).i(1);
    mp_process *p = start(tgt_start_sleeper_then_sleep, a.get());
    ASSERT_NE(nullptr, p);
    std::string m;
    ASSERT_TRUE(read_msg(out.r, &m, kWait)) << "no pid from the grandchild";
    ASSERT_EQ(0u, m.find("pid=")) << m;
    int64_t gpid = to_i64(m.substr(4));
    ASSERT_GT(gpid, 0);
    kill_at_teardown(gpid);
    ASSERT_TRUE(process_running(gpid));
    ASSERT_EQ(0, mp_process_kill(p)) << err();
    EXPECT_EQ(exitcode_killed(), join_code(p));
    EXPECT_TRUE(wait_process_gone(gpid, kWait))
        << "the daemonic grandchild " << gpid << " outlived its killed parent";
}

TEST_P(ProcessTest, ParentSentinelReadyWhenParentDies) {
    if (dummy()) GTEST_SKIP() << "dummy children are threads: their parent cannot die";
    // A non-daemonic grandchild watches its parent's sentinel; killing the parent makes
    // it ready (and the grandchild, not daemonic, lives on to report it).
    Pipe &out = pipe();
    Args a;
    a.h(out.w).s(backend().c_str());
    mp_process *p = start(tgt_start_watcher_then_sleep, a.get());
    ASSERT_NE(nullptr, p);
    std::string m;
    ASSERT_TRUE(read_msg(out.r, &m, kWait)) << "no message from the grandchild";
    ASSERT_EQ(0u, m.find("watching pid=")) << m;
    int64_t gpid = to_i64(m.substr(strlen("watching pid=")));
    kill_at_teardown(gpid);
    EXPECT_NE(std::string::npos, m.find("ppid=" + std::to_string((long long)mp_process_pid(p))))
        << m << ": the grandchild's parent should be the child";
    ASSERT_EQ(0, mp_process_kill(p)) << err();
    EXPECT_EQ(exitcode_killed(), join_code(p));
    ASSERT_TRUE(read_msg(out.r, &m, kWait + 5)) << "the grandchild said nothing more";
    EXPECT_EQ("parent-gone", m);
    EXPECT_TRUE(wait_process_gone(gpid, kWait));
}
