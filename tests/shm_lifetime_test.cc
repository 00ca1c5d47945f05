// Lifetime of named blocks: what the tracker unlinks once the processes that used a
// block have ended (however they ended), and what it must leave alone (CPython
// gh-82300: never a block another live process still uses; untracked blocks).
// Windows: a named mapping vanishes with its last handle.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "shm_fixture.h"
#include "targets.h"

using namespace mpt;

namespace {

enum { kOk = 0, kBad = 90, kFail = 1 };

int64_t to_i64(const std::string &s) { return strtoll(s.c_str(), nullptr, 10); }

// Creates a block: [0] out (write end), [1] int untracked, [2] int how it ends
// (0: closes and returns, 1: returns without closing, 2: waits for a byte on [3] and
// then closes and returns), [3] release (read end, with 2), [4] str name or absent
// (generated). Writes "alive" into the block and "name=<name>" to out.
int tgt_create(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    bool untracked = mp_args_int(a, 1) != 0;
    int64_t how = mp_args_int(a, 2);
    if (out == MP_INVALID_OS_HANDLE) return kBad;
    mp_shm_opts o = {};
    o.create = true;
    o.size = 4096;
    o.untracked = untracked;
    o.name = mp_args_type(a, 4) == MP_ARG_STR ? mp_args_str(a, 4) : nullptr;
    mp_shm *s = nullptr;
    int rc = mp_shm_open(&o, &s);
    if (rc != 0) {
        write_msg(out, std::string("error=") + mp_err_name(rc));
        return kFail;
    }
    strcpy(static_cast<char *>(mp_shm_buf(s)), "alive");
    if (!write_msg(out, std::string("name=") + mp_shm_name(s))) return kBad + 1;
    if (how == 1) return kOk; // the block's object is never freed: the exit must not care
    if (how == 2) {
        mp_os_handle rel = mp_args_os_handle(a, 3);
        if (wait_readable(rel, kCap) != 1) return kTgtCapReached;
    }
    mp_shm_free(s);
    return kOk;
}

// Attaches a block by name (tracked, the default).
int attach_quietly(const char *name, mp_shm **out) {
    mp_shm_opts o = {};
    o.name = name;
    return mp_shm_open(&o, out);
}

// The grandchild of the kill -9 test: [0] out, [1] str the child's block, [2] str the
// test's block. Attaches both, creates its own, reports "g pid=<pid> b=<name>", sleeps.
int tgt_tree_grandchild(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *na = mp_args_str(a, 1), *nt = mp_args_str(a, 2);
    if (out == MP_INVALID_OS_HANDLE || !na || !nt) return kBad;
    mp_shm *sa = nullptr, *st = nullptr, *sb = nullptr;
    if (attach_quietly(na, &sa) != 0 || attach_quietly(nt, &st) != 0) {
        write_msg(out, "g error=attach");
        return kFail;
    }
    mp_shm_opts o = {};
    o.create = true;
    o.size = 4096;
    if (mp_shm_open(&o, &sb) != 0) {
        write_msg(out, "g error=create");
        return kFail;
    }
    write_msg(out, "g pid=" + std::to_string((long long)mp_getpid()) + " b=" + mp_shm_name(sb));
    sleep_for(kCap);
    return kTgtCapReached;
}

// The child of the kill -9 test: [0] out, [1] backend, [2] str the test's block.
// Creates two blocks (a, shared with the grandchild, and a2, its own), attaches the
// test's, starts tgt_tree_grandchild, reports "c pid=<pid> a=<name> a2=<name>", sleeps.
int tgt_tree_child(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *backend = mp_args_str(a, 1), *nt = mp_args_str(a, 2);
    if (out == MP_INVALID_OS_HANDLE || !backend || !nt) return kBad;
    mp_shm *sa = nullptr, *sa2 = nullptr, *st = nullptr;
    mp_shm_opts o = {};
    o.create = true;
    o.size = 4096;
    if (mp_shm_open(&o, &sa) != 0 || mp_shm_open(&o, &sa2) != 0 || attach_quietly(nt, &st) != 0) {
        write_msg(out, "c error=shm");
        return kFail;
    }
    mp_context *ctx = mp_get_context(backend);
    mp_args *ga = nullptr;
    if (!ctx || mp_args_new(&ga) != 0 || mp_args_add_os_handle(ga, out) != 0 ||
        mp_args_add_str(ga, mp_shm_name(sa)) != 0 || mp_args_add_str(ga, nt) != 0)
        return kBad + 1;
    mp_process_opts po = {};
    po.target = tgt_tree_grandchild;
    po.args = ga;
    mp_process *g = nullptr;
    if (mp_process_new(ctx, &po, &g) != 0 || mp_process_start(g) != 0) {
        write_msg(out, "c error=start");
        return kFail;
    }
    mp_args_free(ga);
    write_msg(out, "c pid=" + std::to_string((long long)mp_getpid()) + " a=" + mp_shm_name(sa) +
                       " a2=" + mp_shm_name(sa2));
    sleep_for(kCap);
    return kTgtCapReached;
}

// "k=v k=v" after a tag into a map.
std::map<std::string, std::string> fields(const std::string &m) {
    std::map<std::string, std::string> out;
    size_t pos = 0;
    while (pos < m.size()) {
        size_t sp = m.find(' ', pos);
        std::string w = m.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos);
        size_t eq = w.find('=');
        if (eq != std::string::npos) out[w.substr(0, eq)] = w.substr(eq + 1);
        if (sp == std::string::npos) break;
        pos = sp + 1;
    }
    return out;
}

} // namespace

class ShmLifetimeTest : public ShmFixture {
  protected:
    bool skip_unless_processes(std::string *why) {
        if (!kPosixShm) {
            *why = "posix names outlive processes; Windows is checked by "
                   "NamedMappingVanishesWithItsLastHandle";
            return true;
        }
        if (dummy()) {
            *why = "dummy children are threads: the creating process never ends during the test";
            return true;
        }
        return false;
    }

    // Starts tgt_create; returns the block's name (learned), "" (and a failure) on error.
    std::string child_creates(bool untracked, int how, mp_process **pp, Blocker **b = nullptr) {
        Pipe &out = pipe();
        Args a;
        a.h(out.w).i(untracked ? 1 : 0).i(how);
        if (how == 2) {
            *b = &blocker();
            a.h((*b)->release.r);
        }
        mp_process *p = start(tgt_create, a.get());
        if (pp) *pp = p;
        if (!p) return "";
        std::string m;
        if (!read_msg(out.r, &m, kWait) || m.compare(0, 5, "name=") != 0) {
            ADD_FAILURE() << "the child reported no name: " << m;
            return "";
        }
        return learn(m.substr(5));
    }

    // The tracker has handled the death of a child that ended after `since`: a later
    // child's tracked block has been unlinked. Without this, "still there" could only
    // mean "not yet".
    void sync_with_tracker() {
        mp_process *p = nullptr;
        std::string n = child_creates(false, 0, &p);
        ASSERT_FALSE(n.empty());
        EXPECT_EQ(0, join_code(p));
        ASSERT_TRUE(eventually([&] { return !dev_shm_has(n); }, kLeakWait))
            << "the tracked block of a dead child was not unlinked: " << n;
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, ShmLifetimeTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// (a) A child creates a tracked block and ends without unlinking it: the block goes.
TEST_P(ShmLifetimeTest, TrackedBlockOfAnEndedChildIsUnlinked) {
    std::string why;
    if (skip_unless_processes(&why)) GTEST_SKIP() << why;
    for (int how = 0; how < 2; how++) {
        SCOPED_TRACE(how == 0 ? "the child closed it" : "the child never closed it");
        mp_process *p = nullptr;
        std::string name = child_creates(false, how, &p);
        ASSERT_FALSE(name.empty());
        EXPECT_EQ(0, join_code(p));
        EXPECT_TRUE(eventually([&] { return !dev_shm_has(name); }, kLeakWait))
            << name << " is still in /dev/shm " << kLeakWait << " s after its creator ended";
    }
}

// (b) gh-82300: the creator ends while the parent still has the block attached (and
// tracked): the block must stay until the parent is done with it.
TEST_P(ShmLifetimeTest, BlockStaysWhileAnotherProcessHoldsIt) {
    std::string why;
    if (skip_unless_processes(&why)) GTEST_SKIP() << why;
    for (int killed = 0; killed < 2; killed++) {
        SCOPED_TRACE(killed ? "the creator is SIGKILLed" : "the creator returns");
        mp_process *p = nullptr;
        Blocker *b = nullptr;
        std::string name = child_creates(false, 2, &p, &b);
        ASSERT_FALSE(name.empty());
        Shm mine;
        ASSERT_EQ(0, shm_attach(name, &mine)) << err();
        EXPECT_STREQ("alive", mine.buf());
        if (killed) {
            ASSERT_EQ(0, mp_process_kill(p)) << err();
            EXPECT_EQ(exitcode_killed(), join_code(p));
        } else {
            b->release_now();
            EXPECT_EQ(0, join_code(p));
        }
        sync_with_tracker();
        EXPECT_TRUE(dev_shm_has(name))
            << "the tracker unlinked a block this process still holds (gh-82300)";
        Shm again;
        EXPECT_EQ(0, shm_attach(name, &again)) << "a second attach by name " << err();
        strcpy(mine.buf(), "still mine");
        if (again.s) {
            EXPECT_STREQ("still mine", again.buf());
        }
        EXPECT_EQ(0, mp_shm_unlink(mine.s)) << err();
        EXPECT_FALSE(dev_shm_has(name));
    }
}

// An untracked attach (Python 3.13's track=False) does not keep a block: once its
// tracking creator ends, the name goes; the mapping stays valid.
TEST_P(ShmLifetimeTest, AnUntrackedAttachDoesNotKeepTheBlock) {
    std::string why;
    if (skip_unless_processes(&why)) GTEST_SKIP() << why;
    mp_process *p = nullptr;
    Blocker *b = nullptr;
    std::string name = child_creates(false, 2, &p, &b);
    ASSERT_FALSE(name.empty());
    mp_shm_opts o = {};
    o.name = name.c_str();
    o.untracked = true;
    Shm mine;
    ASSERT_EQ(0, mp_shm_open(&o, &mine.s)) << err();
    b->release_now();
    EXPECT_EQ(0, join_code(p));
    EXPECT_TRUE(eventually([&] { return !dev_shm_has(name); }, kLeakWait))
        << "an untracked attach kept " << name << " after its creator ended";
    EXPECT_STREQ("alive", mine.buf()) << "the mapping must outlive the name";
}

// (c) An untracked block outlives its creator; the test unlinks it.
TEST_P(ShmLifetimeTest, UntrackedBlockOutlivesItsCreator) {
    if (!kPosixShm) GTEST_SKIP() << "posix only: on Windows a block lives only as long as a handle";
    mp_process *p = nullptr;
    std::string name = child_creates(true, 0, &p);
    ASSERT_FALSE(name.empty());
    EXPECT_EQ(0, join_code(p));
    if (!dummy()) sync_with_tracker();
    EXPECT_TRUE(dev_shm_has(name)) << "an untracked block was unlinked";
    Shm s;
    ASSERT_EQ(0, shm_attach(name, &s)) << err();
    EXPECT_STREQ("alive", s.buf());
    EXPECT_EQ(0, mp_shm_unlink(s.s)) << err();
}

// A name reused after an unlink is a new block: the first block's creator ending must
// not unlink the second. foreign: the name is unlinked behind the library's back (by
// Python, or `rm /dev/shm/...`) and the new block is untracked, so only the block
// itself (not the tracker's record) can tell that it is another one.
class ShmReuseTest : public ShmLifetimeTest {
  protected:
    void run(bool foreign) {
        std::string why;
        if (skip_unless_processes(&why)) GTEST_SKIP() << why;
        std::string name = fresh_name(foreign ? "reuse_f" : "reuse");
        Pipe &out = pipe();
        Blocker &b = blocker();
        Args a;
        a.h(out.w).i(0).i(2).h(b.release.r).s(name.c_str());
        mp_process *p = start(tgt_create, a.get());
        ASSERT_NE(nullptr, p);
        std::string m;
        ASSERT_TRUE(read_msg(out.r, &m, kWait));
        ASSERT_EQ("name=" + name, m);
        Shm second;
        if (foreign) {
            dev_shm_remove(name);
            ASSERT_EQ(0, shm_create(name, 4096, &second, true)) << err();
        } else {
            Shm first;
            ASSERT_EQ(0, shm_attach(name, &first)) << err();
            EXPECT_EQ(0, mp_shm_unlink(first.s)) << err();
            ASSERT_EQ(0, shm_create(name, 4096, &second)) << err();
        }
        strcpy(second.buf(), "second");
        b.release_now();
        EXPECT_EQ(0, join_code(p));
        sync_with_tracker();
        EXPECT_TRUE(dev_shm_has(name)) << "the first block's creator ended and its tracker "
                                          "record unlinked the new block of the same name";
        Shm again;
        ASSERT_EQ(0, shm_attach(name, &again)) << err();
        EXPECT_STREQ("second", again.buf());
        EXPECT_EQ(0, mp_shm_unlink(again.s)) << err();
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, ShmReuseTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(ShmReuseTest, NameReusedAfterUnlink) { run(false); }
TEST_P(ShmReuseTest, NameReusedAfterAForeignUnlink) { run(true); }

// (d) kill -9 of a whole tree: a child and its grandchild create and attach tracked
// blocks (a: the child's, attached by the grandchild; a2: the child's alone; b: the
// grandchild's) and attach the test's block t; both are SIGKILLed. Nothing they created
// may remain, and t (the test lives) must stay. The order of the kills:
//   kAtOnce      both, back to back;
//   kGrandFirst  b must go while the child lives, a and a2 stay; then the child;
//   kChildFirst  a2 must go while the grandchild lives (a forked grandchild must not
//                keep its parent's registrations alive), a stays; then the grandchild.
enum KillOrder { kAtOnce, kGrandFirst, kChildFirst };

class ShmKillTest : public ShmLifetimeTest {
  protected:
    void run(KillOrder order) {
        std::string why;
        if (skip_unless_processes(&why)) GTEST_SKIP() << why;
        std::string tname = fresh_name("tree");
        Shm t;
        ASSERT_EQ(0, shm_create(tname, 4096, &t)) << err();
        strcpy(t.buf(), "the test's");
        Pipe &out = pipe();
        Args a;
        a.h(out.w).s(backend().c_str()).s(tname.c_str());
        mp_process *p = start(tgt_tree_child, a.get());
        ASSERT_NE(nullptr, p);
        std::map<std::string, std::string> c, g;
        for (int i = 0; i < 2; i++) {
            std::string m;
            ASSERT_TRUE(read_msg(out.r, &m, kWait)) << "the tree did not report";
            (m[0] == 'g' ? g : c) = fields(m);
            ASSERT_EQ(0u, fields(m).count("error")) << m;
        }
        ASSERT_TRUE(c.count("a") && c.count("a2") && g.count("b") && c.count("pid") &&
                    g.count("pid"));
        std::string na = learn(c["a"]), na2 = learn(c["a2"]), nb = learn(g["b"]);
        int64_t gpid = to_i64(g["pid"]);
        kill_at_teardown(gpid);
        EXPECT_EQ(mp_process_pid(p), to_i64(c["pid"]));
        EXPECT_TRUE(dev_shm_has(na) && dev_shm_has(na2) && dev_shm_has(nb))
            << na << " " << na2 << " " << nb;
        auto gone = [](const std::string &n) { return !dev_shm_has(n); };
        if (order == kGrandFirst) {
            force_kill(gpid);
            ASSERT_TRUE(wait_process_gone(gpid, kWait));
            EXPECT_TRUE(eventually([&] { return gone(nb); }, kLeakWait))
                << "the killed grandchild's block " << nb << " remains while its parent lives";
            EXPECT_TRUE(dev_shm_has(na) && dev_shm_has(na2))
                << "the child still lives and holds them";
            ASSERT_EQ(0, mp_process_kill(p)) << err();
        } else if (order == kChildFirst) {
            ASSERT_EQ(0, mp_process_kill(p)) << err();
            EXPECT_EQ(exitcode_killed(), join_code(p));
            EXPECT_TRUE(eventually([&] { return gone(na2); }, kLeakWait))
                << "the killed child's own block " << na2
                << " remains while its child lives "
                   "(did the grandchild inherit the child's tracker registration?)";
            EXPECT_TRUE(dev_shm_has(na))
                << "the grandchild still lives and holds " << na << " (gh-82300)";
            EXPECT_TRUE(dev_shm_has(nb)) << "the grandchild still lives and holds " << nb;
            force_kill(gpid);
        } else {
            force_kill(gpid);
            ASSERT_EQ(0, mp_process_kill(p)) << err();
        }
        ASSERT_TRUE(wait_process_gone(gpid, kWait));
        if (order != kChildFirst) {
            EXPECT_EQ(exitcode_killed(), join_code(p));
        }
        EXPECT_TRUE(eventually([&] { return gone(na) && gone(na2) && gone(nb); }, kLeakWait))
            << "left in /dev/shm " << kLeakWait
            << " s after kill -9 of the tree: " << (gone(na) ? "" : na + " ")
            << (gone(na2) ? "" : na2 + " ") << (gone(nb) ? "" : nb);
        EXPECT_TRUE(dev_shm_has(tname)) << "the killed tree took the live test's block with it";
        EXPECT_STREQ("the test's", t.buf());
        EXPECT_EQ(0, mp_shm_unlink(t.s)) << err();
    }
};

INSTANTIATE_TEST_SUITE_P(Backends, ShmKillTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(ShmKillTest, KillNineOfTheWholeTreeLeavesNothing) { run(kAtOnce); }
TEST_P(ShmKillTest, KillNineGrandchildThenChild) { run(kGrandFirst); }
TEST_P(ShmKillTest, KillNineChildThenGrandchild) { run(kChildFirst); }

// Windows: a named mapping has no life of its own: once its last handle is closed,
// attaching by name is MP_ENOENT (posix: the name stays until unlinked or tracked).
TEST_P(ShmLifetimeTest, NamedMappingVanishesWithItsLastHandle) {
    if (kPosixShm) GTEST_SKIP() << "Windows semantics; posix is checked by the tracker tests above";
    mp_process *p = nullptr;
    std::string name = child_creates(false, 0, &p);
    ASSERT_FALSE(name.empty());
    EXPECT_EQ(0, join_code(p));
    Shm gone;
    EXPECT_EQ(MP_ENOENT, shm_attach(name, &gone)) << "the child's block outlived its last handle";
    // Held by us, a child's attach and exit change nothing; our last close ends it.
    std::string mine = fresh_name("win");
    Shm c;
    ASSERT_EQ(0, shm_create(mine, 4096, &c)) << err();
    {
        Shm a;
        ASSERT_EQ(0, shm_attach(mine, &a)) << err();
        EXPECT_EQ(0, mp_shm_unlink(a.s)) << "unlink does nothing on Windows";
    }
    Shm a2;
    EXPECT_EQ(0, shm_attach(mine, &a2)) << "the creator still holds it " << err();
    mp_shm_free(a2.s);
    a2.s = nullptr;
    mp_shm_free(c.s);
    c.s = nullptr;
    Shm late;
    EXPECT_EQ(MP_ENOENT, shm_attach(mine, &late)) << "alive after its last handle closed";
}

#ifndef _WIN32
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <vector>

// White-box (linux/tracker_linux.c): how long a client waits for the tracker's answer.
extern "C" double mp__shm_tracker_reply_timeout;

namespace {

// Requests whose answers come late must not cost this process its registrations: [0]
// out. Creates blocks with no time allowed for answers (most time out, their answers
// arrive later and must be skipped), then with time again; every block it got must
// still exist while it lives. Reports "late=<n> names=<a,b,...>" or "error=...".
int tgt_late_answers(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kBad;
    mp_shm_opts o = {};
    o.create = true;
    o.size = 4096;
    std::vector<mp_shm *> kept;
    mp_shm *s = nullptr;
    if (mp_shm_open(&o, &s) != 0) { // connected before answers stop being awaited
        write_msg(out, std::string("error=first ") + mp_last_error_message());
        return kFail;
    }
    kept.push_back(s);
    const double saved = mp__shm_tracker_reply_timeout;
    mp__shm_tracker_reply_timeout = 0.0;
    int late = 0;
    // Until some answers were late (a daemon on the other core can answer at once).
    for (int i = 0; i < 400 && late < 10; i++) {
        int rc = mp_shm_open(&o, &s);
        if (rc == 0 && kept.size() < 20) {
            kept.push_back(s);
        } else if (rc == 0) {
            mp_shm_unlink(s);
            mp_shm_free(s);
        } else if (rc == MP_ETIMEDOUT) {
            late++;
        } else {
            mp__shm_tracker_reply_timeout = saved;
            write_msg(out, std::string("error=") + mp_err_name(rc));
            return kFail;
        }
    }
    mp__shm_tracker_reply_timeout = saved;
    // A full exchange: the owed answers are skipped and this one is ours.
    if (mp_shm_open(&o, &s) != 0) {
        write_msg(out, std::string("error=after ") + mp_last_error_message());
        return kFail;
    }
    kept.push_back(s);
    std::string names;
    for (mp_shm *k : kept) {
        mp_shm *again = nullptr;
        mp_shm_opts at = {};
        at.name = mp_shm_name(k);
        if (mp_shm_open(&at, &again) != 0) {
            write_msg(out, std::string("error=gone ") + mp_shm_name(k));
            return kFail;
        }
        mp_shm_free(again);
        names += (names.empty() ? "" : ",") + std::string(mp_shm_name(k));
    }
    write_msg(out, "late=" + std::to_string(late) + " names=" + names);
    return kOk; // never unlinked: the tracker does it once this process has ended
}

} // namespace

// A late answer (a slow or stopped tracker) is an error for that request only: the
// connection stays, so the tracker does not take this process for ended and unlink
// the blocks it still uses.
TEST_P(ShmLifetimeTest, LateTrackerAnswersKeepTheRegistrations) {
    std::string why;
    if (skip_unless_processes(&why)) GTEST_SKIP() << why;
    Pipe &out = pipe();
    Args a;
    a.h(out.w);
    mp_process *p = start(tgt_late_answers, a.get());
    ASSERT_NE(nullptr, p);
    std::string m;
    ASSERT_TRUE(read_msg(out.r, &m, kWait)) << "no report";
    auto kv = fields(m);
    std::vector<std::string> names;
    for (size_t pos = 0; pos < kv["names"].size();) {
        size_t c = kv["names"].find(',', pos);
        names.push_back(
            learn(kv["names"].substr(pos, c == std::string::npos ? std::string::npos : c - pos)));
        pos = c == std::string::npos ? kv["names"].size() : c + 1;
    }
    EXPECT_EQ(0, join_code(p));
    ASSERT_TRUE(kv.count("late")) << m;
    EXPECT_FALSE(names.empty()) << m;
    for (const std::string &n : names)
        EXPECT_TRUE(eventually([&] { return !dev_shm_has(n); }, kLeakWait))
            << n << " is still in /dev/shm after its creator ended";
    if (to_i64(kv["late"]) == 0)
        GTEST_SKIP() << "the tracker answered every request at once: no late answer was skipped";
}

namespace {

// The pid of the process listening on the tracker's abstract socket (as
// linux/tracker_linux.c names it), found through /proc: the socket's inode in
// /proc/net/unix, then the process holding it. -1 when there is none. (SO_PEERCRED
// would name the daemon's short-lived parent, which called listen.)
int64_t tracker_daemon_pid() {
    struct stat st;
    if (stat("/dev/shm", &st) != 0) memset(&st, 0, sizeof st);
    char name[128];
    snprintf(name, sizeof name, "@multiproc-tracker-2-%lu-%llx-%llx", (unsigned long)geteuid(),
             (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    std::string table = read_file("/proc/net/unix"), inode;
    for (size_t pos = 0; pos < table.size() && inode.empty();) {
        size_t end = table.find('\n', pos);
        std::string line =
            table.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        pos = end == std::string::npos ? table.size() : end + 1;
        // Num RefCount Protocol Flags Type St Inode Path; the listener has __SO_ACCEPTCON.
        char flags[16] = "", path[160] = "";
        unsigned long ino = 0;
        if (sscanf(line.c_str(), "%*s %*s %*s %15s %*s %*s %lu %159s", flags, &ino, path) == 3 &&
            strcmp(path, name) == 0 && strcmp(flags, "00010000") == 0)
            inode = "socket:[" + std::to_string(ino) + "]";
    }
    if (inode.empty()) return -1;
    int64_t found = -1;
    DIR *proc = opendir("/proc");
    while (proc && found < 0) {
        struct dirent *e = readdir(proc);
        if (!e) break;
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        std::string fds = std::string("/proc/") + e->d_name + "/fd";
        DIR *d = opendir(fds.c_str());
        while (d && found < 0) {
            struct dirent *f = readdir(d);
            if (!f) break;
            char link[64];
            ssize_t n = readlink((fds + "/" + f->d_name).c_str(), link, sizeof link - 1);
            if (n > 0 && std::string(link, (size_t)n) == inode)
                found = strtoll(e->d_name, nullptr, 10);
        }
        if (d) closedir(d);
    }
    if (proc) closedir(proc);
    return found;
}

// The signals a process ignores (SigIgn in /proc/<pid>/status), 0 when unreadable.
uint64_t ignored_signals(int64_t pid) {
    std::string status = read_file("/proc/" + std::to_string((long long)pid) + "/status");
    size_t at = status.find("SigIgn:");
    return at == std::string::npos ? 0 : strtoull(status.c_str() + at + 7, nullptr, 16);
}

} // namespace

// The daemon is shared by every program of the user: a kill (or Ctrl-C) of one
// program's process group must not cost the others their clean-up, so it ignores
// SIGTERM and SIGINT, as CPython's resource tracker does, and goes on serving. (Never
// SIGKILL it here: other test processes use it at the same time.)
TEST_P(ShmLifetimeTest, TrackerDaemonIgnoresTermAndInt) {
    std::string why;
    if (skip_unless_processes(&why)) GTEST_SKIP() << why;
    // A tracked block of our own keeps us a client, so the daemon stays.
    Shm mine;
    ASSERT_EQ(0, shm_create(fresh_name("sig"), 4096, &mine)) << err();
    int64_t pid = tracker_daemon_pid();
    ASSERT_GT(pid, 0) << "no process listens on the tracker's socket";
    ASSERT_NE(pid, (int64_t)getpid());
    // Signal only a daemon of this very build: another program of this user (another
    // checkout's tests) may have started the one that serves now.
    struct stat self_st, daemon_st;
    ASSERT_EQ(0, stat("/proc/self/exe", &self_st));
    if (stat(("/proc/" + std::to_string((long long)pid) + "/exe").c_str(), &daemon_st) != 0 ||
        daemon_st.st_dev != self_st.st_dev || daemon_st.st_ino != self_st.st_ino) {
        EXPECT_EQ(0, mp_shm_unlink(mine.s)) << err(); // a skip leaves nothing behind either
        GTEST_SKIP() << "the tracker daemon serving now (pid " << pid
                     << ") was started by another program";
    }
    EXPECT_EQ(0, kill((pid_t)pid, SIGTERM));
    EXPECT_EQ(0, kill((pid_t)pid, SIGINT));
    uint64_t ign = ignored_signals(pid);
    EXPECT_TRUE(ign & (1ull << (SIGTERM - 1))) << "SigIgn " << std::hex << ign;
    EXPECT_TRUE(ign & (1ull << (SIGINT - 1))) << "SigIgn " << std::hex << ign;
    // Still serving: a child's tracked block goes after the child's kill -9, and the
    // daemon that unlinked it is the one that got the signals (a new one would mean the
    // signals ended it).
    mp_process *p = nullptr;
    Blocker *b = nullptr;
    std::string name = child_creates(false, 2, &p, &b);
    ASSERT_FALSE(name.empty());
    ASSERT_EQ(0, mp_process_kill(p)) << err();
    EXPECT_EQ(exitcode_killed(), join_code(p));
    EXPECT_TRUE(eventually([&] { return !dev_shm_has(name); }, kLeakWait))
        << name << " is still in /dev/shm after its creator's kill -9";
    EXPECT_EQ(pid, tracker_daemon_pid()) << "the daemon that got SIGTERM and SIGINT is gone";
    EXPECT_EQ(0, mp_shm_unlink(mine.s)) << err();
}

// The daemon's entry (an environment variable naming its listening socket) must not
// take over another program that inherits it or is given a forged one: that
// program's main() runs as usual.
TEST(ShmTrackerEnv, AForeignTrackerVariableIsIgnored) {
    int lfd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    ASSERT_GE(lfd, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "mp-test-env-%d", (int)getpid());
    socklen_t alen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1));
    ASSERT_EQ(0, bind(lfd, (struct sockaddr *)&addr, alen));
    ASSERT_EQ(0, listen(lfd, 4));
    const std::string fd = std::to_string(lfd);
    // The parent's pid, pid 1, no pid, junk: none is the program's own pid.
    for (const std::string &v :
         {std::to_string(getpid()) + ":" + fd, "1:" + fd, fd, std::string("x")}) {
        SCOPED_TRACE("MP__SHM_TRACKER_FD=" + v);
        int po[2];
        ASSERT_EQ(0, ::pipe(po));
        pid_t c = fork();
        ASSERT_GE(c, 0);
        if (c == 0) {
            dup2(po[1], 1);
            setenv("MP__SHM_TRACKER_FD", v.c_str(), 1);
            execl("/proc/self/exe", "mp_tests", "--gtest_list_tests",
                  "--gtest_filter=ShmTrackerEnv.*", (char *)nullptr);
            _exit(127);
        }
        close(po[1]);
        std::string got;
        int st = 0;
        bool ended = false;
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(kWait);
        int fl = fcntl(po[0], F_GETFL);
        fcntl(po[0], F_SETFL, fl | O_NONBLOCK);
        while (!ended && std::chrono::steady_clock::now() < until) {
            char buf[512];
            ssize_t n;
            while ((n = read(po[0], buf, sizeof buf)) > 0) got.append(buf, (size_t)n);
            ended = waitpid(c, &st, WNOHANG) == c;
            if (!ended) usleep(10000);
        }
        if (!ended) {
            kill(c, SIGKILL);
            waitpid(c, &st, 0);
        }
        char buf[512];
        ssize_t n;
        while ((n = read(po[0], buf, sizeof buf)) > 0) got.append(buf, (size_t)n);
        close(po[0]);
        EXPECT_TRUE(ended) << "the program did not end within " << kWait
                           << " s (serving as a tracker?)";
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
        EXPECT_NE(std::string::npos, got.find("AForeignTrackerVariableIsIgnored"))
            << "main() did not run: " << got;
    }
    close(lfd);
}
// A setuid program must not start or use the tracker (it would unlink with root's
// rights for an unprivileged user): a tracked open is MP_EPERM, untracked works. This
// part runs only inside the setuid copy that SetuidProgramRefusesTracking starts.
TEST(ShmTrackerSecure, InsideASetuidProgram) {
    if (!getenv("MP_TEST_SETUID_CHILD"))
        GTEST_SKIP() << "runs only in the setuid copy started by SetuidProgramRefusesTracking";
    ASSERT_NE(getuid(), geteuid()) << "not started setuid";
    mp_shm_opts o = {};
    o.create = true;
    o.size = 4096;
    mp_shm *s = nullptr;
    EXPECT_EQ(MP_EPERM, mp_shm_open(&o, &s));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "untracked")) << mp_last_error_message();
    o.untracked = true;
    ASSERT_EQ(0, mp_shm_open(&o, &s)) << mp_last_error_message();
    mp_shm_opts at = {};
    at.name = mp_shm_name(s);
    mp_shm *t = nullptr;
    EXPECT_EQ(MP_EPERM, mp_shm_open(&at, &t)) << "a tracked attach";
    EXPECT_EQ(0, mp_shm_unlink(s));
    mp_shm_free(s);
}

TEST(ShmTrackerSecure, SetuidProgramRefusesTracking) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to make a setuid-root copy of this program";
    char dir[] = "/tmp/mp-setuid-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(dir));
    const std::string copy = std::string(dir) + "/mp_tests";
    {
        int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        int outf = open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
        ASSERT_GE(in, 0);
        ASSERT_GE(outf, 0);
        char buf[1 << 16];
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0) ASSERT_EQ(n, write(outf, buf, (size_t)n));
        close(in);
        close(outf);
    }
    ASSERT_EQ(0, chmod(dir, 0755));
    ASSERT_EQ(0, chmod(copy.c_str(), 04755));
    int po[2];
    ASSERT_EQ(0, ::pipe(po));
    pid_t c = fork();
    ASSERT_GE(c, 0);
    if (c == 0) {
        dup2(po[1], 1);
        dup2(po[1], 2);
        if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(126);
        setenv("MP_TEST_SETUID_CHILD", "1", 1);
        execl(copy.c_str(), "mp_tests", "--gtest_filter=ShmTrackerSecure.InsideASetuidProgram",
              (char *)nullptr);
        _exit(127);
    }
    close(po[1]);
    std::string got;
    int st = 0;
    bool ended = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(kWait);
    fcntl(po[0], F_SETFL, fcntl(po[0], F_GETFL) | O_NONBLOCK);
    char buf[512];
    ssize_t n;
    while (!ended && std::chrono::steady_clock::now() < until) {
        while ((n = read(po[0], buf, sizeof buf)) > 0) got.append(buf, (size_t)n);
        ended = waitpid(c, &st, WNOHANG) == c;
        if (!ended) usleep(10000);
    }
    if (!ended) {
        kill(c, SIGKILL);
        waitpid(c, &st, 0);
    }
    while ((n = read(po[0], buf, sizeof buf)) > 0) got.append(buf, (size_t)n);
    close(po[0]);
    unlink(copy.c_str());
    rmdir(dir);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 126)
        GTEST_SKIP() << "cannot become uid 65534 to run the setuid copy";
    if (got.find("not started setuid") != std::string::npos)
        GTEST_SKIP() << "/tmp does not honour setuid bits (mounted nosuid?)";
    EXPECT_TRUE(ended) << "the setuid copy did not end within " << kWait << " s";
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st << ": " << got;
    EXPECT_NE(std::string::npos, got.find("[       OK ] ShmTrackerSecure.InsideASetuidProgram"))
        << got;
}
#endif
