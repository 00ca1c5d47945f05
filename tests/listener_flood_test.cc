// Floods of unauthenticated connections (issue 17, item 3): a listener with many
// accepted peers that never answer its challenge still serves a good client at once,
// with descriptors and memory bounded by mp_listener_opts' max_pending.
//
// The default cases open a few hundred idle connections. The long measurement
// (MP_FLOOD_IDLE=10000 with --gtest_also_run_disabled_tests, Linux) opens them from a
// forked process and prints the good client's time and the listener's descriptors and
// RSS before and after.
#include <multiproc.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#ifndef _WIN32
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "fixture.h"

extern "C" {
#include "../core/os_net.h"
}

using namespace mpt;

namespace {

constexpr double kHandshake = 5.0; // the idle peers' handshake timeout in these tests

mp_listener_opts flood_opts(int backlog, int max_pending, double handshake) {
    mp_listener_opts o;
    memset(&o, 0, sizeof o);
    o.authkey = "flood key";
    o.authkey_len = strlen("flood key");
    o.backlog = backlog;
    o.max_pending = max_pending;
    o.handshake_timeout = handshake;
    return o;
}

int port_of(const char *address) { return atoi(strrchr(address, ':') + 1); }

// Raw connections that never speak (made with the OS layer: no handshake).
struct Idle {
    std::vector<std::pair<mp_os_handle, int>> h;
    bool open(int port, int n) {
        for (int i = 0; i < n; i++) {
            mp_os_handle x;
            int kind;
            int rc = mp__os_net_connect(MP_AF_INET, "127.0.0.1", port, nullptr,
                                        mp__os_monotonic() + kWait, &x, &kind);
            if (rc) {
                ADD_FAILURE() << "idle connection " << i << ": " << mp_strerror(rc) << " " << err();
                return false;
            }
            h.push_back({x, kind});
        }
        return true;
    }
    void close() {
        for (auto &p : h) mp__os_net_close(p.first, p.second);
        h.clear();
    }
    ~Idle() { close(); }
};

// Accepts on another thread until a client is served or stop is set, as a server loop
// does: MP_ETIMEDOUT and MP_EAUTH mean "call again".
struct Server {
    std::thread t;
    std::atomic<bool> stop{false};
    std::atomic<double> served_at{0};
    mp_connection *c = nullptr;
    void start(mp_listener *l, double slice) {
        t = std::thread([this, l, slice] {
            while (!stop) {
                mp_connection *x = nullptr;
                int rc = mp_listener_accept(l, slice, &x);
                if (rc == 0) {
                    served_at = now();
                    c = x;
                    return;
                }
                if (rc != MP_ETIMEDOUT && rc != MP_EAUTH && rc != MP_EPIPE) {
                    ADD_FAILURE() << "accept: " << mp_strerror(rc) << " " << err();
                    return;
                }
            }
        });
    }
    void join() {
        stop = true;
        if (t.joinable()) t.join();
    }
    ~Server() {
        join();
        mp_connection_free(c);
    }
};

#ifndef _WIN32
long rss_kib() {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long size = 0, res = 0;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

// Raises the soft descriptor limit to at least want; false (with why) when the hard
// limit is lower.
bool raise_fd_limit(rlim_t want, std::string *why) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        *why = "getrlimit failed";
        return false;
    }
    if (rl.rlim_cur >= want) return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        *why = "needs " + std::to_string(want) + " descriptors, the hard limit (ulimit -Hn) is " +
               std::to_string(rl.rlim_max);
        return false;
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        *why = "setrlimit(RLIMIT_NOFILE) failed";
        return false;
    }
    return true;
}
#endif

// The good client behind n idle peers: the serial listener of before served it only
// after every idle peer ahead of it had used up its handshake timeout (n * kHandshake
// seconds, and the client gives up after kWait); now its handshake runs beside theirs.
void good_client_behind(int n, int max_pending) {
#ifndef _WIN32
    std::string why;
    if (!raise_fd_limit((rlim_t)(n + max_pending + 256), &why)) GTEST_SKIP() << why;
#endif
    mp_listener *l = nullptr;
    mp_listener_opts o = flood_opts(n + 16, max_pending, kHandshake);
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l)) << err();
    int port = port_of(mp_listener_address(l));
#ifndef _WIN32
    int fds0 = (int)open_handles();
#endif
    {
        Server s;
        // The slice is the handshake timeout: the old listener bounded a handshake by
        // the accept's timeout.
        s.start(l, kHandshake);
        Idle idle;
        ASSERT_TRUE(idle.open(port, n));
        mp_connection *c = nullptr;
        double t0 = now();
        int rc = mp_client_connect(mp_listener_address(l), &o, kWait, &c);
        double took = now() - t0;
        EXPECT_EQ(0, rc) << "the good client was not served within " << kWait << " s behind " << n
                         << " idle connections " << err();
        // Far below n * kHandshake, the time the serial listener made it wait.
        EXPECT_LT(took, kHandshake) << "the good client waited for the idle connections";
        ASSERT_TRUE(eventually([&] { return s.served_at.load() != 0 || rc != 0; }));
        s.join();
        if (rc == 0) {
            ASSERT_NE(nullptr, s.c);
            ASSERT_EQ(0, mp_connection_send_bytes(c, "hello", 5)) << err();
            void *p = nullptr;
            size_t len = 0;
            ASSERT_EQ(0, mp_connection_recv_bytes(s.c, 16, &p, &len)) << err();
            EXPECT_EQ(std::string("hello"), std::string(static_cast<char *>(p), len));
            mp_connection_free_bytes(p);
        }
#ifndef _WIN32
        // Ours: the n idle ends and the good client's; the listener's: at most
        // max_pending idle ones and the good connection.
        int fds = (int)open_handles();
        EXPECT_LE(fds, fds0 + n + 1 + max_pending + 1 + 4)
            << "the listener holds more pending connections than max_pending";
#endif
        mp_connection_free(c);
    }
    mp_listener_free(l);
}

TEST(ListenerFlood, GoodClientIsServedBehindIdleConnections) { good_client_behind(300, 64); }

TEST(ListenerFlood, IdlePeerIsClosedAfterTheHandshakeTimeout) {
    mp_listener *l = nullptr;
    mp_listener_opts o = flood_opts(4, 0, 0.3);
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l)) << err();
    Idle idle;
    ASSERT_TRUE(idle.open(port_of(mp_listener_address(l)), 1));
    mp_connection *c = nullptr;
    double t0 = now();
    EXPECT_EQ(MP_ETIMEDOUT, mp_listener_accept(l, 1.0, &c)) << err();
    EXPECT_GE(now() - t0, 0.9);
    EXPECT_EQ(nullptr, c);
    // The peer got the challenge, then the end of the connection.
    unsigned char buf[4 + MP__AUTH_CHALLENGE_LEN];
    mp_os_handle h = idle.h[0].first;
    int kind = idle.h[0].second;
    ASSERT_EQ(0, mp__os_net_read(h, kind, buf, sizeof buf, mp__os_monotonic() + kWait)) << err();
    EXPECT_EQ(0, memcmp(buf + 4, "#CHALLENGE#{sha256}", 19));
    EXPECT_EQ(MP_EOF, mp__os_net_read(h, kind, buf, 1, mp__os_monotonic() + kWait)) << err();
    mp_listener_free(l);
}

TEST(ListenerFlood, AFullSetDropsItsOldestPeer) {
    mp_listener *l = nullptr;
    mp_listener_opts o = flood_opts(8, 2, 60.0);
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l)) << err();
    Idle idle;
    int port = port_of(mp_listener_address(l));
    mp_connection *c = nullptr;
    // One at a time, so the listener takes them in this order.
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(idle.open(port, 1));
        EXPECT_EQ(MP_ETIMEDOUT, mp_listener_accept(l, 0.3, &c)) << err();
    }
    unsigned char buf[4 + MP__AUTH_CHALLENGE_LEN];
    for (int i = 0; i < 3; i++) {
        SCOPED_TRACE(i);
        mp_os_handle h = idle.h[i].first;
        int kind = idle.h[i].second;
        ASSERT_EQ(0, mp__os_net_read(h, kind, buf, sizeof buf, mp__os_monotonic() + kWait));
        size_t got = 0;
        // The oldest was closed; the two newest still wait for their answers.
        int rc = i == 0 ? mp__os_net_read(h, kind, buf, 1, mp__os_monotonic() + kWait)
                        : mp__os_net_read_some(h, kind, buf, 1, &got);
        EXPECT_EQ(i == 0 ? MP_EOF : 0, rc) << err();
        EXPECT_EQ(0u, got);
    }
    // A good client still gets through the full set.
    Server s;
    s.start(l, kWait);
    EXPECT_EQ(0, mp_client_connect(mp_listener_address(l), &o, kWait, &c)) << err();
    s.join();
    EXPECT_NE(nullptr, s.c);
    mp_connection_free(c);
    mp_listener_free(l);
}

// A client that sends its handshake a byte at a time is served, while idle peers wait.
TEST(ListenerFlood, AnswerInPiecesIsAssembled) {
    mp_listener *l = nullptr;
    mp_listener_opts o = flood_opts(8, 0, kWait);
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l)) << err();
    Idle idle;
    int port = port_of(mp_listener_address(l));
    ASSERT_TRUE(idle.open(port, 3));
    Server s;
    s.start(l, kWait);
    // Our client's side of the handshake, by hand, one byte per write.
    mp_os_handle h;
    int kind;
    ASSERT_EQ(0, mp__os_net_connect(MP_AF_INET, "127.0.0.1", port, nullptr,
                                    mp__os_monotonic() + kWait, &h, &kind))
        << err();
    double dl = mp__os_monotonic() + kWait;
    unsigned char m[MP__AUTH_MAX_MESSAGE];
    size_t n = 0;
    ASSERT_EQ(0, mp__auth_recv_msg(h, kind, m, sizeof m, &n, dl)) << err();
    unsigned char reply[MP__AUTH_REPLY_MAX];
    size_t rlen = 0;
    ASSERT_EQ(0, mp__auth_make_reply(o.authkey, o.authkey_len, m, n, reply, &rlen)) << err();
    unsigned char frame[4 + MP__AUTH_REPLY_MAX] = {0, 0, 0, (unsigned char)rlen};
    memcpy(frame + 4, reply, rlen);
    for (size_t i = 0; i < 4 + rlen; i++) {
        ASSERT_EQ(0, mp__os_net_write(h, kind, frame + i, 1, dl)) << err();
        sleep_for(0.002);
    }
    ASSERT_EQ(0, mp__auth_recv_msg(h, kind, m, sizeof m, &n, dl)) << err();
    EXPECT_EQ(std::string("#WELCOME#"), std::string(reinterpret_cast<char *>(m), n));
    // Our challenge, whole; the listener's reply; our verdict.
    unsigned char ch[MP__AUTH_CHALLENGE_LEN];
    ASSERT_EQ(0, mp__auth_make_challenge(ch));
    ASSERT_EQ(0, mp__auth_send_msg(h, kind, ch, sizeof ch, dl)) << err();
    ASSERT_EQ(0, mp__auth_recv_msg(h, kind, m, sizeof m, &n, dl)) << err();
    ASSERT_EQ(0, mp__auth_check_answer(o.authkey, o.authkey_len, ch, m, n)) << err();
    ASSERT_EQ(0, mp__auth_send_msg(h, kind, "#WELCOME#", 9, dl)) << err();
    // Data right behind the handshake stays the connection's.
    ASSERT_EQ(0, mp__auth_send_msg(h, kind, "data", 4, dl)) << err();
    ASSERT_TRUE(eventually([&] { return s.served_at.load() != 0; }));
    s.join();
    ASSERT_NE(nullptr, s.c);
    void *p = nullptr;
    size_t len = 0;
    ASSERT_EQ(0, mp_connection_recv_bytes(s.c, 16, &p, &len)) << err();
    EXPECT_EQ(std::string("data"), std::string(static_cast<char *>(p), len));
    mp_connection_free_bytes(p);
    mp__os_net_close(h, kind);
    mp_listener_free(l);
}

#ifndef _WIN32
// The measurement: MP_FLOOD_IDLE idle connections (default 10000) from a forked
// process, then a good client; prints its time and this process's descriptors and RSS.
//   MP_FLOOD_IDLE=10000 build/tests/mp_tests --gtest_also_run_disabled_tests
//       --gtest_filter='ListenerFlood.DISABLED_Measure'
TEST(ListenerFlood, DISABLED_Measure) {
    const char *e = getenv("MP_FLOOD_IDLE");
    int n = e ? atoi(e) : 10000;
    const char *mp = getenv("MP_FLOOD_MAX_PENDING");
    int max_pending = mp ? atoi(mp) : 0;
    std::string why;
    if (!raise_fd_limit((rlim_t)(n + 1024), &why)) GTEST_SKIP() << why;
    mp_listener *l = nullptr;
    mp_listener_opts o = flood_opts(n + 16, max_pending, 10.0);
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l)) << err();
    int port = port_of(mp_listener_address(l));
    int fds0 = (int)open_handles();
    long rss0 = rss_kib();
    Server s;
    s.start(l, 3.0);
    int ready[2], go[2];
    ASSERT_EQ(0, pipe(ready));
    ASSERT_EQ(0, pipe(go));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // The flooder: plain sockets, connected, silent until told to exit.
        std::vector<int> fd;
        for (int i = 0; i < n; i++) {
            int x = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa;
            memset(&sa, 0, sizeof sa);
            sa.sin_family = AF_INET;
            sa.sin_port = htons((uint16_t)port);
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (x < 0 || connect(x, (struct sockaddr *)&sa, sizeof sa) != 0) _exit(1);
            fd.push_back(x);
        }
        char b = 1;
        if (write(ready[1], &b, 1) != 1) _exit(2);
        if (read(go[0], &b, 1) < 0) _exit(3);
        _exit(0);
    }
    char b;
    double tf = now();
    ASSERT_EQ(1, read(ready[0], &b, 1)) << "the flooder failed";
    double flood_took = now() - tf;
    mp_connection *c = nullptr;
    double t0 = now();
    int rc = mp_client_connect(mp_listener_address(l), &o, 60.0, &c);
    double took = now() - t0;
    EXPECT_EQ(0, rc) << err();
    ASSERT_TRUE(eventually([&] { return s.served_at.load() != 0 || rc != 0; }));
    s.join();
    int fds1 = (int)open_handles();
    long rss1 = rss_kib();
    printf("flood: %d idle connections (opened in %.3f s), max_pending %d\n", n, flood_took,
           max_pending ? max_pending : 256);
    printf("flood: good client served in %.3f s (connect + handshake)\n", took);
    printf("flood: listener process fds %d before, %d after (the good connection's two ends "
           "included)\n",
           fds0, fds1);
    printf("flood: listener process RSS %ld KiB before, %ld KiB after\n", rss0, rss1);
    EXPECT_LE(fds1, fds0 + (max_pending ? max_pending : 256) + 8);
    mp_connection_free(c);
    if (write(go[1], &b, 1) != 1) ADD_FAILURE() << "write";
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    mp_listener_free(l);
}
#endif

} // namespace
