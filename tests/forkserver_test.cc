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
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
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

} // namespace

TEST_P(ForkserverTest, NextStartReplacesAKilledServer) {
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
    std::map<int, std::string> server_fds = fds_of(servers[0]);
    ASSERT_FALSE(server_fds.empty()) << "cannot read /proc/" << servers[0] << "/fd";
    std::set<uint32_t> mine;
    for (const auto &f : fds_of(getpid()))
        if (uint32_t ino = socket_inode(f.second)) mine.insert(ino);
    std::map<uint32_t, UnixSock> socks;
    bool diag = unix_sockets(&socks);
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
        EXPECT_TRUE(mine.count(it->second.peer))
            << "fd " << f.first << ": its peer (inode " << it->second.peer
            << ") is not held by the parent";
    }
    EXPECT_GE(nsock, 2u) << "the control socket and the running child's status socket";
    b->release_now();
    EXPECT_EQ(0, join_code(p));
    if (!diag) GTEST_SKIP() << "sock_diag unavailable: peers and addresses not checked";
}

#endif
