// The forkserver itself (Linux): it is replaced when it dies, it loads its preloads
// when it starts, and it talks to nobody but its parent. These tests run on the
// forkserver backend only (".../forkserver", ctest label forkserver).
#ifndef _WIN32

#include <dirent.h>
#include <dlfcn.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fixture.h"
#include "targets.h"

using namespace mpt;

namespace {

class ForkserverTest : public ProcessTest {};

INSTANTIATE_TEST_SUITE_P(Server, ForkserverTest, ::testing::Values(std::string("forkserver")),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

const char kProbe[] = MP_TEST_PRELOAD_PROBE;

// [0] out, [1] str library path: reports whether that library is already loaded (not
// loading it), and if so the pid its constructor ran in.
int tgt_probe_loaded(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *path = mp_args_str(a, 1);
    if (out == MP_INVALID_OS_HANDLE || !path) return kTgtBadArgs;
    std::vector<std::pair<std::string, std::string>> r;
    r.emplace_back("pid", std::to_string((long long)getpid()));
    r.emplace_back("ppid", std::to_string((long long)getppid()));
    void *h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    r.emplace_back("loaded", h ? "1" : "0");
    if (h) {
        auto magic = (int (*)(void))dlsym(h, "mp_preload_probe_magic");
        auto init_pid = (long *)dlsym(h, "mp_preload_probe_init_pid");
        r.emplace_back("magic", magic ? std::to_string(magic()) : "none");
        r.emplace_back("init_pid", init_pid ? std::to_string(*init_pid) : "none");
        dlclose(h);
    }
    return write_msg(out, kv(r)) ? 0 : kTgtIoError;
}

// Sets the preload list; an empty list resets it.
void set_preload(const std::vector<std::string> &libs) {
    std::vector<const char *> v;
    for (const auto &s : libs) v.push_back(s.c_str());
    ASSERT_EQ(0, mp_set_forkserver_preload(v.empty() ? nullptr : v.data(), v.size())) << err();
}

std::string str_pid(int64_t pid) { return std::to_string((long long)pid); }

// Unix sockets of this network namespace: inode -> peer inode (0 if none), name, and
// whether it listens, from the kernel's sock_diag interface. False if unavailable.
struct UnixSock {
    uint32_t peer = 0;
    std::string name;
    bool listening = false;
};
bool unix_sockets(std::map<uint32_t, UnixSock> *out) {
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return false;
    struct {
        nlmsghdr nlh;
        unix_diag_req udr;
    } req;
    memset(&req, 0, sizeof req);
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.udr.sdiag_family = AF_UNIX;
    req.udr.udiag_states = ~0u;
    req.udr.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_NAME;
    bool ok = send(nl, &req, sizeof req, 0) == (ssize_t)sizeof req;
    std::vector<char> buf(1 << 16);
    bool done = false;
    while (ok && !done) {
        ssize_t n = recv(nl, buf.data(), buf.size(), 0);
        if (n <= 0) {
            ok = false;
            break;
        }
        for (nlmsghdr *h = (nlmsghdr *)buf.data(); NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                done = true;
                break;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                ok = false;
                break;
            }
            unix_diag_msg *m = (unix_diag_msg *)NLMSG_DATA(h);
            UnixSock s;
            s.listening = m->udiag_state == 10; // TCP_LISTEN
            int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m);
            for (rtattr *a = (rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                if (a->rta_type == UNIX_DIAG_PEER)
                    memcpy(&s.peer, RTA_DATA(a), sizeof s.peer);
                else if (a->rta_type == UNIX_DIAG_NAME)
                    s.name.assign((const char *)RTA_DATA(a), RTA_PAYLOAD(a));
            }
            (*out)[m->udiag_ino] = s;
        }
    }
    close(nl);
    return ok && done;
}

// fd number -> readlink target, for a process.
std::map<int, std::string> fds_of(int64_t pid) {
    std::map<int, std::string> m;
    std::string dir = "/proc/" + str_pid(pid) + "/fd";
    DIR *d = opendir(dir.c_str());
    if (!d) return m;
    while (struct dirent *e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        char buf[512];
        ssize_t n = readlink((dir + "/" + e->d_name).c_str(), buf, sizeof buf - 1);
        m[atoi(e->d_name)] = n > 0 ? std::string(buf, (size_t)n) : "?";
    }
    closedir(d);
    return m;
}

uint32_t socket_inode(const std::string &target) {
    if (target.compare(0, 8, "socket:[") != 0) return 0;
    return (uint32_t)strtoul(target.c_str() + 8, nullptr, 10);
}

// pid -> its children still running (not zombies), from /proc.
std::vector<int64_t> children_of(int64_t parent) {
    std::vector<int64_t> out;
    DIR *d = opendir("/proc");
    if (!d) return out;
    while (struct dirent *e = readdir(d)) {
        char *end;
        long long pid = strtoll(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        std::string st = read_file("/proc/" + std::string(e->d_name) + "/stat");
        size_t rp = st.rfind(')');
        if (rp == std::string::npos || rp + 4 > st.size()) continue;
        char state = st[rp + 2];
        long long ppid = strtoll(st.c_str() + rp + 4, nullptr, 10);
        if (ppid == parent && state != 'Z' && state != 'X') out.push_back(pid);
    }
    closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

// Waits until the process has exactly n children (its warm ones, when none of ours
// runs); false at the deadline. *kids gets them.
bool wait_children(int64_t parent, size_t n, std::vector<int64_t> *kids = nullptr) {
    double deadline = now() + kWait;
    for (;;) {
        std::vector<int64_t> k = children_of(parent);
        if (k.size() == n) {
            if (kids) *kids = k;
            return true;
        }
        if (now() >= deadline) return false;
        sleep_for(0.005);
    }
}

bool contains(const std::vector<int64_t> &v, int64_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

// Whether any process we can see holds this socket or pipe inode.
bool inode_held_anywhere(const std::string &target) {
    DIR *d = opendir("/proc");
    if (!d) return true;
    bool found = false;
    while (!found) {
        struct dirent *e = readdir(d);
        if (!e) break;
        char *end;
        long long pid = strtoll(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        for (const auto &f : fds_of(pid))
            if (f.second == target) found = true;
    }
    closedir(d);
    return found;
}

// A process's descriptors once two looks 20 ms apart agree (kWait at most).
std::map<int, std::string> fds_at_rest(int64_t pid) {
    std::map<int, std::string> last = fds_of(pid);
    for (double deadline = now() + kWait; now() < deadline;) {
        sleep_for(0.02);
        std::map<int, std::string> cur = fds_of(pid);
        if (cur == last) return cur;
        last = cur;
    }
    return last;
}

// The warm pool size is process-wide: each test that changes it puts the default back.
struct WarmReset {
    ~WarmReset() { mp_set_forkserver_warm(2); }
};

int g_probe_global = 0;

// [0] out, [1] int: reports its pid, parent pid, g_probe_global and every descriptor
// above 2 (number and target), then sets g_probe_global to [1].
int tgt_warm_probe(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    std::vector<std::pair<std::string, std::string>> r;
    r.emplace_back("pid", std::to_string((long long)getpid()));
    r.emplace_back("ppid", std::to_string((long long)getppid()));
    r.emplace_back("global", std::to_string(g_probe_global));
    std::string fds;
    for (const auto &f : fds_of(getpid()))
        if (f.first > 2) fds += std::to_string(f.first) + ">" + f.second + ";";
    r.emplace_back("fds", fds);
    g_probe_global = (int)mp_args_int(a, 1);
    return write_msg(out, kv(r)) ? 0 : kTgtIoError;
}

std::string pipe_name(mp_os_handle fd) {
    struct stat st;
    if (fstat((int)fd, &st) != 0) return "?";
    return "pipe:[" + std::to_string((unsigned long long)st.st_ino) + "]";
}

// [0] out, [1] release (read end): runs a forkserver of its own with two warm
// children, reports "server", "warm1", "warm2", then waits for a byte on release (at
// most 60 s) and returns 0, so its exit shuts its server down.
int tgt_warm_parent(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0), release = mp_args_os_handle(a, 1);
    if (out == MP_INVALID_OS_HANDLE || release == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    mp_context *ctx = mp_get_context("forkserver");
    if (!ctx || mp_set_forkserver_warm(2) != 0) return kTgtNoContext;
    mp_args *args = nullptr;
    mp_process *p = nullptr;
    mp_process_opts o = {};
    o.target = tgt_return_arg;
    if (mp_args_new(&args) != 0 || mp_args_add_int(args, 0) != 0) return kTgtNewFailed;
    o.args = args;
    if (mp_process_new(ctx, &o, &p) != 0) return kTgtNewFailed;
    if (mp_process_start(p) != 0) return kTgtStartFailed;
    if (mp_process_join(p, 30) != 0) return kTgtJoinFailed;
    mp_process_free(p);
    mp_args_free(args);
    std::vector<int64_t> servers = forkserver_pids();
    std::vector<int64_t> warm;
    if (servers.size() != 1 || !wait_children(servers[0], 2, &warm)) return kTgtNotReady;
    std::vector<std::pair<std::string, std::string>> r;
    r.emplace_back("server", str_pid(servers[0]));
    r.emplace_back("warm1", str_pid(warm[0]));
    r.emplace_back("warm2", str_pid(warm[1]));
    if (!write_msg(out, kv(r))) return kTgtIoError;
    char c;
    read_exact(release, &c, 1, 60);
    return 0;
}

// [0] out: starts a child on the forkserver (as the first thing this process does
// with it), then reports how many children its server holds once it has three, or
// whatever it holds after kWait ("warm").
int tgt_warm_count(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    mp_context *ctx = mp_get_context("forkserver");
    if (!ctx) return kTgtNoContext;
    mp_process *p = nullptr;
    mp_process_opts o = {};
    o.target = tgt_return_arg;
    mp_args *args = nullptr;
    if (mp_args_new(&args) != 0 || mp_args_add_int(args, 0) != 0) return kTgtNewFailed;
    o.args = args;
    if (mp_process_new(ctx, &o, &p) != 0) return kTgtNewFailed;
    if (mp_process_start(p) != 0) return kTgtStartFailed;
    if (mp_process_join(p, 30) != 0) return kTgtJoinFailed;
    mp_process_free(p);
    mp_args_free(args);
    std::vector<int64_t> servers = forkserver_pids();
    if (servers.size() != 1) return kTgtNotReady;
    wait_children(servers[0], 3);
    std::vector<std::pair<std::string, std::string>> r;
    r.emplace_back("warm", std::to_string(children_of(servers[0]).size()));
    return write_msg(out, kv(r)) ? 0 : kTgtIoError;
}

} // namespace

namespace {

// Records the library logs (at WARNING and above) while it lives.
struct LogCapture {
    static void hook(void *ctx, int level, const char *, const char *msg) {
        LogCapture *c = static_cast<LogCapture *>(ctx);
        std::lock_guard<std::mutex> lk(c->mu);
        if (level >= MP_LOG_WARNING) c->lines.push_back(msg);
    }
    std::mutex mu;
    std::vector<std::string> lines;
    LogCapture() { mp_log_set_hook(hook, this); }
    ~LogCapture() { mp_log_set_hook(nullptr, nullptr); }
    bool has(const std::string &s) {
        std::lock_guard<std::mutex> lk(mu);
        for (const std::string &l : lines)
            if (l == s) return true;
        return false;
    }
};

} // namespace

TEST_P(ForkserverTest, NextStartReplacesAKilledServer) {
    LogCapture log;
    Args a;
    a.i(3);
    mp_process *p = start(tgt_return_arg, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(3, join_code(p));
    std::vector<int64_t> seen = forkserver_pids();
    ASSERT_EQ(1u, seen.size()) << "one forkserver, a child of this process, expected";
    for (int round = 0; round < 3; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<int64_t> killed;
        ASSERT_TRUE(kill_forkservers(&killed)) << "the forkserver did not die";
        ASSERT_EQ(1u, killed.size());
        Args b;
        b.i(40 + round);
        mp_process *q = start(tgt_return_arg, b.get());
        ASSERT_NE(nullptr, q);
        EXPECT_EQ(40 + round, join_code(q));
        std::vector<int64_t> now_running = forkserver_pids();
        ASSERT_EQ(1u, now_running.size()) << "a new forkserver expected";
        EXPECT_EQ(seen.end(), std::find(seen.begin(), seen.end(), now_running[0]))
            << "the same server " << now_running[0] << " still serves";
        std::vector<int64_t> z = zombie_children();
        EXPECT_EQ(z.end(), std::find(z.begin(), z.end(), killed[0]))
            << "the killed server " << killed[0] << " was not reaped";
        EXPECT_TRUE(log.has("the forkserver (pid " + std::to_string(killed[0]) +
                            ") has gone; a new one (pid " + std::to_string(now_running[0]) +
                            ") starts"))
            << "no WARNING record of the restart";
        seen.push_back(now_running[0]);
    }
}

TEST_P(ForkserverTest, StartRightAfterTheServerWasKilled) {
    // The start does not wait for the server to be gone: whichever state the dying
    // server is in when the request is sent (still running, exiting, or dead), the start
    // must bring up a new one and succeed. Many rounds, because the states are brief.
    for (int round = 0; round < 50; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<int64_t> servers = forkserver_pids();
        for (int64_t pid : servers) kill((pid_t)pid, SIGKILL);
        Args a;
        a.i(round % 7);
        mp_process *p = make(tgt_return_arg, a.get());
        ASSERT_NE(nullptr, p);
        int rc = mp_process_start(p);
        ASSERT_EQ(0, rc) << "start after the server was killed: " << mp_err_name(rc) << " "
                         << err();
        EXPECT_EQ(round % 7, join_code(p));
        for (int64_t pid : servers) EXPECT_TRUE(wait_process_gone(pid, kWait));
    }
}

TEST_P(ForkserverTest, PreloadTakesEffectWhenTheServerNextStarts) {
    struct Reset {
        ~Reset() { mp_set_forkserver_preload(nullptr, 0); }
    } reset;
    ASSERT_EQ(nullptr, dlopen(kProbe, RTLD_LAZY | RTLD_NOLOAD))
        << "the probe library must not be loaded in the test process";
    // Runs a child that reports on the probe; its parent is the server.
    auto probe = [&](std::map<std::string, std::string> *r) {
        Pipe &out = pipe();
        Args a;
        a.h(out.w).s(kProbe);
        mp_process *p = start(tgt_probe_loaded, a.get());
        ASSERT_NE(nullptr, p);
        std::string msg;
        ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the child";
        EXPECT_EQ(0, join_code(p));
        *r = parse_kv(msg);
        std::vector<int64_t> servers = forkserver_pids();
        ASSERT_EQ(1u, servers.size());
        EXPECT_EQ(str_pid(servers[0]), (*r)["ppid"]) << "forked by the server";
    };
    std::map<std::string, std::string> r;

    // A server running without the preload keeps running without it.
    set_preload({});
    ASSERT_TRUE(kill_forkservers());
    ASSERT_NO_FATAL_FAILURE(probe(&r));
    EXPECT_EQ("0", r["loaded"]);
    set_preload({kProbe});
    ASSERT_NO_FATAL_FAILURE(probe(&r));
    EXPECT_EQ("0", r["loaded"]) << "the preload applies to the next server, not this one";

    // The next server loads it once; its children find it loaded, not by themselves.
    ASSERT_TRUE(kill_forkservers());
    for (int i = 0; i < 2; i++) {
        ASSERT_NO_FATAL_FAILURE(probe(&r));
        EXPECT_EQ("1", r["loaded"]) << "preloaded library missing in the child";
        EXPECT_EQ(std::to_string(0x5eed), r["magic"]);
        EXPECT_EQ(r["ppid"], r["init_pid"]) << "the library was loaded by the server";
    }

    // A library that does not exist does not keep the server from serving, nor from
    // loading the others.
    set_preload({"/no/such/dir/libmp_missing.so", kProbe});
    ASSERT_TRUE(kill_forkservers());
    ASSERT_NO_FATAL_FAILURE(probe(&r));
    EXPECT_EQ("1", r["loaded"]);
    EXPECT_EQ(r["ppid"], r["init_pid"]);
    set_preload({"/no/such/dir/libmp_missing.so"});
    ASSERT_TRUE(kill_forkservers());
    ASSERT_NO_FATAL_FAILURE(probe(&r));
    EXPECT_EQ("0", r["loaded"]);

    // Reset: the next server has no preload.
    set_preload({});
    ASSERT_TRUE(kill_forkservers());
    ASSERT_NO_FATAL_FAILURE(probe(&r));
    EXPECT_EQ("0", r["loaded"]) << "a server started after the reset still preloads";
    EXPECT_EQ(nullptr, dlopen(kProbe, RTLD_LAZY | RTLD_NOLOAD)) << "loaded in the test process";
}

TEST_P(ForkserverTest, ServerTalksOnlyToItsParent) {
    // A child still running, so the server also holds that child's status socket.
    Blocker *b = nullptr;
    mp_process *p = start_blocked(&b, 0);
    ASSERT_NE(nullptr, p);
    std::vector<int64_t> servers = forkserver_pids();
    ASSERT_EQ(1u, servers.size());
    // At rest: the server holds more for a moment while it makes a warm child.
    std::map<int, std::string> server_fds = fds_at_rest(servers[0]);
    ASSERT_FALSE(server_fds.empty()) << "cannot read /proc/" << servers[0] << "/fd";
    std::set<uint32_t> mine;
    for (const auto &f : fds_of(getpid()))
        if (uint32_t ino = socket_inode(f.second)) mine.insert(ino);
    std::map<uint32_t, UnixSock> socks;
    bool diag = unix_sockets(&socks);
    std::vector<int64_t> kids = children_of(servers[0]);
    auto held_by_kids = [&](const std::string &target) {
        for (int64_t k : kids)
            for (const auto &f : fds_of(k))
                if (f.second == target) return true;
        return false;
    };
    std::ostringstream all;
    for (const auto &f : server_fds) all << f.first << " " << f.second << "\n";
    SCOPED_TRACE("the server's descriptors:\n" + all.str());
    size_t nsock = 0;
    for (const auto &f : server_fds) {
        if (f.first <= 2) continue; // stdio is the parent's, whatever it is
        uint32_t ino = socket_inode(f.second);
        if (!ino) {
            EXPECT_EQ(0u, f.second.find("anon_inode:")) << "fd " << f.first << ": " << f.second;
            continue;
        }
        nsock++;
        if (!diag) continue;
        auto it = socks.find(ino);
        if (it == socks.end()) {
            ADD_FAILURE() << "fd " << f.first << " is a socket but not an AF_UNIX one";
            continue;
        }
        EXPECT_EQ("", it->second.name) << "fd " << f.first << " has an address";
        EXPECT_FALSE(it->second.listening) << "fd " << f.first << " listens";
        if (mine.count(it->second.peer)) continue;
        // Else a warm child's: its note to the server (the child holds the other end),
        // or its pair, not taken yet: the server and the child hold this end and the
        // other is in flight to the parent (an offer queued on the control socket,
        // which only the parent holds), so no process holds it.
        std::string peer = "socket:[" + std::to_string(it->second.peer) + "]";
        if (held_by_kids(peer)) continue;
        EXPECT_TRUE(held_by_kids(f.second) && !inode_held_anywhere(peer))
            << "fd " << f.first << ": its peer (inode " << it->second.peer
            << ") is not held by the parent";
    }
    EXPECT_GE(nsock, 2u) << "the control socket and the running child's status socket";
    b->release_now();
    EXPECT_EQ(0, join_code(p));
    if (!diag) GTEST_SKIP() << "sock_diag unavailable: peers and addresses not checked";
}

// ---- warm children (mp_set_forkserver_warm) ----

// Brings the server up and waits until it has n warm children; its pid, or 0 (and a
// failure).
static int64_t server_with_warm(ForkserverTest *t, size_t n, std::vector<int64_t> *warm) {
    (void)t;
    std::vector<int64_t> servers = forkserver_pids();
    EXPECT_EQ(1u, servers.size()) << "one forkserver expected";
    if (servers.size() != 1) return 0;
    EXPECT_TRUE(wait_children(servers[0], n, warm))
        << "the server did not reach " << n << " warm children";
    return servers[0];
}

TEST_P(ForkserverTest, StartsAreServedByChildrenForkedBeforehand) {
    WarmReset reset;
    ASSERT_EQ(0, mp_set_forkserver_warm(2)) << err();
    Args a;
    a.i(0);
    EXPECT_EQ(0, join_code(start(tgt_return_arg, a.get())));
    for (int round = 0; round < 4; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<int64_t> warm;
        int64_t server = server_with_warm(this, 2, &warm);
        ASSERT_NE(0, server);
        Pipe &out = pipe();
        Args b;
        b.h(out.w).i(0);
        mp_process *p = start(tgt_warm_probe, b.get());
        ASSERT_NE(nullptr, p);
        int64_t pid = mp_process_pid(p);
        EXPECT_TRUE(contains(warm, pid)) << "child " << pid << " was not waiting before the start";
        std::string msg;
        ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the child";
        std::map<std::string, std::string> r = parse_kv(msg);
        EXPECT_EQ(str_pid(pid), r["pid"]);
        EXPECT_EQ(str_pid(server), r["ppid"]) << "forked by the server";
        EXPECT_EQ(0, join_code(p));
        // A warm child serves one start: it ended with its target.
        EXPECT_TRUE(wait_process_gone(pid, kWait));
    }
}

TEST_P(ForkserverTest, AWarmChildGetsOnlyWhatItsStartPassed) {
    WarmReset reset;
    ASSERT_EQ(0, mp_set_forkserver_warm(2)) << err();
    Args a;
    a.i(0);
    EXPECT_EQ(0, join_code(start(tgt_return_arg, a.get())));
    std::vector<std::string> earlier; // the pipes earlier children were given
    for (int round = 0; round < 3; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<int64_t> warm;
        ASSERT_NE(0, server_with_warm(this, 2, &warm));
        Pipe &out = pipe();
        std::string mine = pipe_name(out.w);
        Args b;
        b.h(out.w).i(7); // the child sets its global to 7; the next must still see 0
        mp_process *p = start(tgt_warm_probe, b.get());
        ASSERT_NE(nullptr, p);
        EXPECT_TRUE(contains(warm, mp_process_pid(p)));
        std::string msg;
        ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the child";
        EXPECT_EQ(0, join_code(p));
        std::map<std::string, std::string> r = parse_kv(msg);
        EXPECT_EQ("0", r["global"]) << "state of an earlier child";
        // Above stdio: the pipe it was given, the parent's sentinel (a pidfd) and the
        // directory it lists; nothing of the server's or of an earlier child's.
        std::string fds = r["fds"];
        size_t npipe = 0, npidfd = 0;
        for (size_t at = 0; at < fds.size();) {
            size_t semi = fds.find(';', at);
            if (semi == std::string::npos) semi = fds.size();
            std::string entry = fds.substr(at, semi - at);
            at = semi + 1;
            std::string target = entry.substr(entry.find('>') + 1);
            if (target == mine)
                npipe++;
            else if (target == "anon_inode:[pidfd]")
                npidfd++;
            else if (target.compare(0, 6, "/proc/") != 0)
                ADD_FAILURE() << "the child holds " << entry;
            for (const std::string &e : earlier)
                EXPECT_NE(e, target) << "an earlier child's pipe reached this one";
        }
        EXPECT_EQ(1u, npipe) << fds;
        EXPECT_EQ(1u, npidfd) << fds;
        earlier.push_back(mine);
    }
}

TEST_P(ForkserverTest, WarmZeroForksAtEachStart) {
    WarmReset reset;
    ASSERT_EQ(0, mp_set_forkserver_warm(2)) << err();
    Args a;
    a.i(0);
    EXPECT_EQ(0, join_code(start(tgt_return_arg, a.get())));
    std::vector<int64_t> warm;
    int64_t server = server_with_warm(this, 2, &warm);
    ASSERT_NE(0, server);
    ASSERT_EQ(0, mp_set_forkserver_warm(0)) << err();
    EXPECT_TRUE(wait_children(server, 0)) << "the warm children outlived the 0";
    for (int round = 0; round < 3; round++) {
        Pipe &out = pipe();
        Args b;
        b.h(out.w).i(0);
        mp_process *p = start(tgt_warm_probe, b.get());
        ASSERT_NE(nullptr, p);
        EXPECT_FALSE(contains(warm, mp_process_pid(p)));
        std::string msg;
        ASSERT_TRUE(read_msg(out.r, &msg, kWait));
        EXPECT_EQ(str_pid(server), parse_kv(msg)["ppid"]);
        EXPECT_EQ(0, join_code(p));
        EXPECT_EQ(std::vector<int64_t>(), children_of(server)) << "a child forked ahead";
    }
    EXPECT_EQ(MP_EINVAL, mp_set_forkserver_warm(-1));
    EXPECT_EQ(MP_EINVAL, mp_set_forkserver_warm(17));
    ASSERT_EQ(0, mp_set_forkserver_warm(1)) << err();
    EXPECT_TRUE(wait_children(server, 1)) << "switched on again, the pool did not fill";
}

TEST_P(ForkserverTest, WarmChildrenGoWithAKilledServer) {
    WarmReset reset;
    ASSERT_EQ(0, mp_set_forkserver_warm(2)) << err();
    Args a;
    a.i(0);
    EXPECT_EQ(0, join_code(start(tgt_return_arg, a.get())));
    for (int round = 0; round < 3; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<int64_t> warm;
        ASSERT_NE(0, server_with_warm(this, 2, &warm));
        std::vector<int64_t> killed;
        ASSERT_TRUE(kill_forkservers(&killed));
        for (int64_t pid : warm) {
            EXPECT_TRUE(wait_process_gone(pid, kWait)) << "warm child " << pid << " outlived";
            if (process_running(pid)) force_kill(pid);
        }
        // The next start brings up a new server; the offers of the dead one go unused.
        Args b;
        b.i(20 + round);
        mp_process *p = start(tgt_return_arg, b.get());
        ASSERT_NE(nullptr, p);
        EXPECT_FALSE(contains(warm, mp_process_pid(p)));
        EXPECT_EQ(20 + round, join_code(p));
        std::vector<int64_t> z = zombie_children();
        EXPECT_FALSE(contains(z, killed[0])) << "the killed server was not reaped";
    }
}

TEST_P(ForkserverTest, AKilledWarmChildIsReplaced) {
    WarmReset reset;
    ASSERT_EQ(0, mp_set_forkserver_warm(2)) << err();
    Args a;
    a.i(0);
    EXPECT_EQ(0, join_code(start(tgt_return_arg, a.get())));
    std::vector<int64_t> warm;
    int64_t server = server_with_warm(this, 2, &warm);
    ASSERT_NE(0, server);
    for (int64_t pid : warm) kill((pid_t)pid, SIGKILL);
    for (int64_t pid : warm) EXPECT_TRUE(wait_process_gone(pid, kWait));
    // Their offers may still be queued: the starts go elsewhere and succeed.
    for (int i = 0; i < 4; i++) {
        Args b;
        b.i(30 + i);
        mp_process *p = start(tgt_return_arg, b.get());
        ASSERT_NE(nullptr, p);
        EXPECT_FALSE(contains(warm, mp_process_pid(p)));
        EXPECT_EQ(30 + i, join_code(p));
    }
    std::vector<int64_t> now_warm;
    EXPECT_TRUE(wait_children(server, 2, &now_warm)) << "the pool was not refilled";
    EXPECT_EQ(std::vector<int64_t>{server}, forkserver_pids()) << "the server was replaced";
}

TEST_P(ForkserverTest, WarmChildrenDoNotOutliveTheProgram) {
    // A program with its own forkserver and warm children: once it ends (its exit shuts
    // the server down) or is killed, none of them is left.
    for (int killed = 0; killed < 2; killed++) {
        SCOPED_TRACE(killed ? "killed" : "normal exit");
        Pipe &out = pipe();
        Pipe &release = pipe();
        Args a;
        a.h(out.w).h(release.r);
        mp_process *p = start(tgt_warm_parent, a.get());
        ASSERT_NE(nullptr, p);
        std::string msg;
        ASSERT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the program";
        std::map<std::string, std::string> r = parse_kv(msg);
        std::vector<int64_t> theirs;
        for (const char *k : {"server", "warm1", "warm2"}) {
            int64_t pid = strtoll(r[k].c_str(), nullptr, 10);
            ASSERT_GT(pid, 0) << k << " in " << msg;
            theirs.push_back(pid);
            kill_at_teardown(pid);
        }
        if (killed) {
            ASSERT_EQ(0, mp_process_kill(p));
            EXPECT_EQ(-SIGKILL, join_code(p));
            for (int64_t pid : theirs) EXPECT_TRUE(wait_process_gone(pid, kWait)) << pid;
        } else {
            ASSERT_TRUE(write_all(release.w, "x", 1));
            EXPECT_EQ(0, join_code(p));
            // Shut down, not merely dying: the exit waited for the server, which reaped
            // its warm children first.
            for (int64_t pid : theirs) EXPECT_FALSE(process_running(pid)) << pid;
        }
    }
}

TEST_P(ForkserverTest, WarmStartsLeakNoDescriptor) {
    WarmReset reset;
    ASSERT_EQ(0, mp_set_forkserver_warm(2)) << err();
    auto once = [&](int code) {
        mp_args *args = nullptr;
        ASSERT_EQ(0, mp_args_new(&args));
        ASSERT_EQ(0, mp_args_add_int(args, code));
        mp_process_opts o = {};
        o.target = tgt_return_arg;
        o.args = args;
        mp_process *p = nullptr;
        ASSERT_EQ(0, mp_process_new(ctx(), &o, &p)) << err();
        EXPECT_EQ(0, mp_process_start(p)) << err();
        EXPECT_EQ(0, mp_process_join(p, kWait)) << err();
        int got = -1;
        EXPECT_EQ(0, mp_process_exitcode(p, &got));
        EXPECT_EQ(code, got);
        mp_process_free(p);
        mp_args_free(args);
    };
    once(1);
    int64_t server = server_with_warm(this, 2, nullptr);
    ASSERT_NE(0, server);
    // The server's count at rest: two warm children and nothing in flight (it holds
    // more for a moment while it makes one).
    auto at_rest = [&]() {
        size_t last = 0;
        double deadline = now() + kWait;
        while (now() < deadline) {
            size_t n = fds_at_rest(server).size();
            if (n == last && children_of(server).size() == 2) return n;
            last = n;
        }
        return (size_t)0;
    };
    long before = open_handles();
    size_t server_before = at_rest();
    ASSERT_NE(0u, server_before);
    for (int i = 0; i < 20; i++) once(i % 5);
    EXPECT_EQ(before, open_handles()) << "this process";
    size_t server_after = at_rest();
    for (double deadline = now() + kWait; server_after != server_before && now() < deadline;)
        server_after = at_rest();
    EXPECT_EQ(server_before, server_after) << "the server";
}

TEST_P(ForkserverTest, EnvironmentSetsThePoolSize) {
    // A fresh program (spawn) started with MP_FORKSERVER_WARM=3 keeps three.
    mp_context *spawn = mp_get_context("spawn");
    ASSERT_NE(nullptr, spawn) << err();
    Pipe &out = pipe();
    Args a;
    a.h(out.w);
    mp_process_opts o = {};
    o.target = tgt_warm_count;
    o.args = a.get();
    mp_process *p = nullptr;
    ASSERT_EQ(0, mp_process_new(spawn, &o, &p)) << err();
    ASSERT_EQ(0, setenv("MP_FORKSERVER_WARM", "3", 1));
    int rc = mp_process_start(p);
    unsetenv("MP_FORKSERVER_WARM");
    ASSERT_EQ(0, rc) << err();
    std::string msg;
    EXPECT_TRUE(read_msg(out.r, &msg, kWait)) << "no report from the program";
    EXPECT_EQ(0, mp_process_join(p, kWait)) << err();
    int code = -1;
    EXPECT_EQ(0, mp_process_exitcode(p, &code));
    EXPECT_EQ(0, code);
    mp_process_free(p);
    EXPECT_EQ("3", parse_kv(msg)["warm"]);
}

#endif
