// Listener / Client and CPython's authentication: families and addresses, our listener
// with our client (right and wrong keys, bad clients, timeouts), the legacy HMAC-MD5
// form, a child on every start method connecting with the inherited authkey, and
// interop with a real python3 (multiprocessing.connection) as client and as listener.
#include <multiproc.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "python_peer.h"
#include "targets.h"

extern "C" {
#include "../core/connection_internal.h"
#include "../core/os_net.h"
}

using namespace mpt;

namespace {

struct Conn {
    mp_connection *c = nullptr;
    Conn() = default;
    Conn(const Conn &) = delete;
    Conn &operator=(const Conn &) = delete;
    ~Conn() { mp_connection_free(c); }
};

struct Lst {
    mp_listener *l = nullptr;
    Lst() = default;
    Lst(const Lst &) = delete;
    Lst &operator=(const Lst &) = delete;
    ~Lst() { mp_listener_free(l); }
};

// Options with an explicit key; the key's storage must outlive the options.
mp_listener_opts key_opts(const char *key, size_t n, mp_family family) {
    mp_listener_opts o;
    memset(&o, 0, sizeof o);
    o.family = family;
    o.authkey = key;
    o.authkey_len = n;
    return o;
}
mp_listener_opts key_opts(const char *key, mp_family family = MP_AF_DEFAULT) {
    return key_opts(key, strlen(key), family);
}
mp_listener_opts key_opts(const std::string &key, mp_family family = MP_AF_DEFAULT) {
    return key_opts(key.data(), key.size(), family);
}
mp_listener_opts key_opts(std::string &&key, mp_family family = MP_AF_DEFAULT) = delete;

mp_listener_opts no_auth_opts() {
    mp_listener_opts o;
    memset(&o, 0, sizeof o);
    o.no_auth = true;
    return o;
}

// A client connecting from another thread; rc and the error detail of that thread.
struct ClientThread {
    std::thread t;
    int rc = 1;
    std::string msg;
    mp_connection *c = nullptr;
    void start(const std::string &addr, const mp_listener_opts *o, double timeout = kWait) {
        mp_listener_opts copy;
        bool have = o != nullptr;
        if (have) copy = *o;
        t = std::thread([this, addr, copy, have, timeout] {
            rc = mp_client_connect(addr.c_str(), have ? &copy : nullptr, timeout, &c);
            msg = mp_last_error_message();
        });
    }
    void join() {
        if (t.joinable()) t.join();
    }
    ~ClientThread() {
        join();
        mp_connection_free(c);
    }
};

// Receives one message within kWait; "" with a failure otherwise.
std::string recv_str(mp_connection *c) {
    bool ready = false;
    EXPECT_EQ(0, mp_connection_poll(c, kWait, &ready)) << err();
    if (!ready) {
        ADD_FAILURE() << "no message within " << kWait << " s";
        return "";
    }
    void *p = nullptr;
    size_t n = 0;
    int rc = mp_connection_recv_bytes(c, 0, &p, &n);
    EXPECT_EQ(0, rc) << err();
    std::string s = rc ? "" : std::string(static_cast<const char *>(p), n);
    mp_connection_free_bytes(p);
    return s;
}

bool send_str(mp_connection *c, const std::string &s) {
    int rc = mp_connection_send_bytes(c, s.data(), s.size());
    EXPECT_EQ(0, rc) << err();
    return rc == 0;
}

// Lower-case hex of the bytes of s.
std::string hex_of(const std::string &s) {
    std::string h;
    char b[3];
    for (unsigned char c : s) {
        snprintf(b, sizeof b, "%02x", c);
        h += b;
    }
    return h;
}

// Addresses to try on this platform: one per family (and abstract AF_UNIX on Linux).
std::vector<std::pair<std::string, mp_family>> test_addresses() {
    std::vector<std::pair<std::string, mp_family>> v;
    v.push_back({"127.0.0.1:0", MP_AF_INET});
    char buf[512];
    if (mp_family_supported(MP_AF_UNIX)) {
        EXPECT_EQ(0, mp_arbitrary_address(MP_AF_UNIX, buf, sizeof buf)) << err();
        v.push_back({buf, MP_AF_UNIX});
#ifdef __linux__
        v.push_back({"@mp-test-" + std::to_string(mp_getpid()) + "-" +
                         std::to_string(reinterpret_cast<uintptr_t>(buf) & 0xffff),
                     MP_AF_UNIX});
#endif
    }
    if (mp_family_supported(MP_AF_PIPE)) {
        EXPECT_EQ(0, mp_arbitrary_address(MP_AF_PIPE, buf, sizeof buf)) << err();
        v.push_back({buf, MP_AF_PIPE});
    }
    return v;
}

// Our listener and our client over address with the two keys; returns the accept
// code and sets *client_rc. On success a message goes each way.
int pair_once(mp_listener *l, const mp_listener_opts *copts, int *client_rc,
              std::string *client_msg = nullptr) {
    ClientThread ct;
    ct.start(mp_listener_address(l), copts);
    Conn s;
    int rc = mp_listener_accept(l, kWait, &s.c);
    std::string smsg = mp_last_error_message();
    ct.join();
    *client_rc = ct.rc;
    if (client_msg) *client_msg = ct.msg;
    if (rc == 0 && ct.rc == 0) {
        send_str(s.c, "hello client");
        EXPECT_EQ("hello client", recv_str(ct.c));
        send_str(ct.c, "hello listener");
        EXPECT_EQ("hello listener", recv_str(s.c));
    }
    mp__err(rc, "%s", smsg.c_str());
    return rc;
}

// ---- families and addresses ----------------------------------------------------

TEST(Listener, AddressFamilyIsDeducedAsCPythonDoes) {
    EXPECT_EQ(MP_AF_INET, mp_address_family("localhost:0"));
    EXPECT_EQ(MP_AF_INET, mp_address_family("127.0.0.1:8080"));
    EXPECT_EQ(MP_AF_INET, mp_address_family(":5000"));
    EXPECT_EQ(MP_AF_UNIX, mp_address_family("/tmp/sock"));
    EXPECT_EQ(MP_AF_UNIX, mp_address_family("/tmp/a:1"));
    EXPECT_EQ(MP_AF_UNIX, mp_address_family("@abstract"));
    EXPECT_EQ(MP_AF_UNIX, mp_address_family("relative"));
    EXPECT_EQ(MP_AF_UNIX, mp_address_family("host:notaport"));
    EXPECT_EQ(MP_AF_PIPE, mp_address_family("\\\\.\\pipe\\name"));
    EXPECT_EQ(MP_AF_DEFAULT, mp_address_family(nullptr));
    EXPECT_STREQ("AF_INET", mp_family_name(MP_AF_INET));
    EXPECT_STREQ("AF_UNIX", mp_family_name(MP_AF_UNIX));
    EXPECT_STREQ("AF_PIPE", mp_family_name(MP_AF_PIPE));
    EXPECT_TRUE(mp_family_supported(MP_AF_INET));
    EXPECT_EQ(kWindows, mp_family_supported(MP_AF_PIPE));
    EXPECT_EQ(!kWindows, mp_family_supported(MP_AF_UNIX));
    EXPECT_FALSE(mp_family_supported(MP_AF_DEFAULT));
}

TEST(Listener, ArbitraryAddresses) {
    char a[512], b[512];
    ASSERT_EQ(0, mp_arbitrary_address(MP_AF_INET, a, sizeof a)) << err();
    EXPECT_STREQ("localhost:0", a);
    mp_family local = kWindows ? MP_AF_PIPE : MP_AF_UNIX;
    ASSERT_EQ(0, mp_arbitrary_address(local, a, sizeof a)) << err();
    ASSERT_EQ(0, mp_arbitrary_address(local, b, sizeof b)) << err();
    EXPECT_STRNE(a, b);
    EXPECT_EQ(local, mp_address_family(a)) << a;
    ASSERT_EQ(0, mp_arbitrary_address(MP_AF_DEFAULT, b, sizeof b)) << err();
    EXPECT_EQ(local, mp_address_family(b)) << b;
    EXPECT_EQ(MP_ETOOBIG, mp_arbitrary_address(local, a, 8));
    EXPECT_STREQ("", a);
    EXPECT_EQ(MP_ENOTSUP, mp_arbitrary_address(kWindows ? MP_AF_UNIX : MP_AF_PIPE, a, sizeof a));
}

TEST(Listener, BadArguments) {
    mp_listener *l = reinterpret_cast<mp_listener *>(1);
    EXPECT_EQ(MP_EINVAL, mp_listener_new("x", nullptr, nullptr));
    mp_listener_opts o = key_opts("k", MP_AF_INET);
    EXPECT_EQ(MP_EINVAL, mp_listener_new("/not/host/port", &o, &l));
    EXPECT_EQ(nullptr, l);
    o.family = kWindows ? MP_AF_UNIX : MP_AF_PIPE;
    EXPECT_EQ(MP_ENOTSUP, mp_listener_new("\\\\.\\pipe\\x", &o, &l));
    mp_connection *c = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_client_connect(nullptr, nullptr, 1.0, &c));
    EXPECT_EQ(MP_EINVAL, mp_listener_accept(nullptr, 0, &c));
    EXPECT_EQ(nullptr, mp_listener_address(nullptr));
    EXPECT_EQ(nullptr, mp_listener_last_accepted(nullptr));
    EXPECT_EQ(0, mp_listener_close(nullptr));
    mp_listener_free(nullptr);
    EXPECT_EQ(MP_EINVAL, mp_deliver_challenge(nullptr, "k", 1));
    EXPECT_EQ(MP_EINVAL, mp_answer_challenge(nullptr, "k", 1));
}

TEST(Listener, InetReportsTheRealPortAndPeer) {
    Lst l;
    mp_listener_opts o = key_opts("secret");
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    EXPECT_EQ(MP_AF_INET, mp_listener_family(l.l));
    std::string addr = mp_listener_address(l.l);
    EXPECT_EQ(0u, addr.find("127.0.0.1:")) << addr;
    EXPECT_NE("127.0.0.1:0", addr);
    EXPECT_EQ(nullptr, mp_listener_last_accepted(l.l));
    int crc;
    ASSERT_EQ(0, pair_once(l.l, &o, &crc)) << err();
    ASSERT_EQ(0, crc);
    const char *peer = mp_listener_last_accepted(l.l);
    ASSERT_NE(nullptr, peer);
    EXPECT_EQ(0u, std::string(peer).find("127.0.0.1:")) << peer;
}

TEST(Listener, SecondListenerOnTheSameAddressIsRefused) {
    for (auto &a : test_addresses()) {
        if (a.second == MP_AF_INET) continue;
        SCOPED_TRACE(a.first);
        Lst l1, l2;
        mp_listener_opts o = key_opts("k");
        ASSERT_EQ(0, mp_listener_new(a.first.c_str(), &o, &l1.l)) << err();
        EXPECT_EQ(MP_EEXIST, mp_listener_new(a.first.c_str(), &o, &l2.l)) << err();
    }
}

// ---- our listener with our client ------------------------------------------------

TEST(Listener, RightKeyOnEveryFamily) {
    for (auto &a : test_addresses()) {
        SCOPED_TRACE(a.first);
        Lst l;
        mp_listener_opts o = key_opts("the key", a.second);
        ASSERT_EQ(0, mp_listener_new(a.first.c_str(), &o, &l.l)) << err();
        EXPECT_EQ(a.second, mp_listener_family(l.l));
        if (a.second != MP_AF_INET) {
            EXPECT_EQ(a.first, mp_listener_address(l.l));
        }
        int crc;
        std::string cmsg;
        EXPECT_EQ(0, pair_once(l.l, &o, &crc, &cmsg)) << err();
        EXPECT_EQ(0, crc) << cmsg;
        // And a second client on the same listener.
        EXPECT_EQ(0, pair_once(l.l, &o, &crc, &cmsg)) << err();
        EXPECT_EQ(0, crc) << cmsg;
        if (a.second == MP_AF_PIPE) {
            EXPECT_EQ(nullptr, mp_listener_last_accepted(l.l));
        }
    }
}

TEST(Listener, WrongKeyFailsOnBothSidesAndTheListenerGoesOn) {
    for (auto &a : test_addresses()) {
        SCOPED_TRACE(a.first);
        Lst l;
        mp_listener_opts so = key_opts("right key", a.second);
        mp_listener_opts bad = key_opts("wrong key", a.second);
        ASSERT_EQ(0, mp_listener_new(a.first.c_str(), &so, &l.l)) << err();
        int crc;
        std::string cmsg;
        EXPECT_EQ(MP_EAUTH, pair_once(l.l, &bad, &crc, &cmsg)) << err();
        EXPECT_EQ(MP_EAUTH, crc) << cmsg;
        EXPECT_EQ(0, pair_once(l.l, &so, &crc, &cmsg)) << err();
        EXPECT_EQ(0, crc) << cmsg;
    }
}

TEST(Listener, EmptyKeyIsAKey) {
    Lst l;
    mp_listener_opts o = key_opts("");
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    mp_listener_opts other = key_opts("x");
    int crc;
    EXPECT_EQ(MP_EAUTH, pair_once(l.l, &other, &crc)) << err();
    EXPECT_EQ(MP_EAUTH, crc);
    EXPECT_EQ(0, pair_once(l.l, &o, &crc)) << err();
    EXPECT_EQ(0, crc);
}

TEST(Listener, DefaultKeyIsTheProcessAuthkey) {
    unsigned char key[MP_AUTHKEY_LEN];
    ASSERT_EQ(0, mp_get_authkey(key)) << err();
    Lst l;
    ASSERT_EQ(0, mp_listener_new(nullptr, nullptr, &l.l)) << err();
    EXPECT_EQ(kWindows ? MP_AF_PIPE : MP_AF_UNIX, mp_listener_family(l.l));
    int crc;
    EXPECT_EQ(0, pair_once(l.l, nullptr, &crc)) << err();
    EXPECT_EQ(0, crc);
    // The same key given explicitly works; another does not.
    std::string k(reinterpret_cast<char *>(key), sizeof key);
    mp_listener_opts o = key_opts(k);
    EXPECT_EQ(0, pair_once(l.l, &o, &crc)) << err();
    EXPECT_EQ(0, crc);
    k[0] ^= 1;
    o = key_opts(k);
    EXPECT_EQ(MP_EAUTH, pair_once(l.l, &o, &crc)) << err();
    EXPECT_EQ(MP_EAUTH, crc);
}

TEST(Listener, SetAuthkeyChangesTheDefault) {
    unsigned char old[MP_AUTHKEY_LEN], key[MP_AUTHKEY_LEN], back[MP_AUTHKEY_LEN];
    ASSERT_EQ(0, mp_get_authkey(old));
    for (size_t i = 0; i < sizeof key; i++) key[i] = static_cast<unsigned char>(i * 7 + 1);
    ASSERT_EQ(0, mp_set_authkey(key));
    ASSERT_EQ(0, mp_get_authkey(back));
    EXPECT_EQ(0, memcmp(key, back, sizeof key));
    Lst l;
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", nullptr, &l.l)) << err();
    std::string k(reinterpret_cast<char *>(key), sizeof key);
    mp_listener_opts o = key_opts(k);
    int crc;
    EXPECT_EQ(0, pair_once(l.l, &o, &crc)) << err();
    EXPECT_EQ(0, crc);
    ASSERT_EQ(0, mp_set_authkey(old));
    EXPECT_EQ(MP_EINVAL, mp_set_authkey(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_get_authkey(nullptr));
}

TEST(Listener, NoAuthOnBothSides) {
    Lst l;
    mp_listener_opts o = no_auth_opts();
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    int crc;
    EXPECT_EQ(0, pair_once(l.l, &o, &crc)) << err();
    EXPECT_EQ(0, crc);
}

TEST(Listener, AuthenticatingClientMeetsANonAuthenticatingListener) {
    // The listener (no key) waits for data; the client waits for a challenge: the
    // client's timeout ends it.
    Lst l;
    mp_listener_opts none = no_auth_opts();
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &none, &l.l)) << err();
    mp_listener_opts o = key_opts("k");
    ClientThread ct;
    ct.start(mp_listener_address(l.l), &o, 0.5);
    Conn s;
    ASSERT_EQ(0, mp_listener_accept(l.l, kWait, &s.c)) << err();
    ct.join();
    EXPECT_EQ(MP_ETIMEDOUT, ct.rc) << ct.msg;
}

TEST(Listener, AcceptTimesOutAndCloseEndsIt) {
    Lst l;
    mp_listener_opts o = key_opts("k");
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    mp_connection *c = reinterpret_cast<mp_connection *>(1);
    double t0 = now();
    EXPECT_EQ(MP_ETIMEDOUT, mp_listener_accept(l.l, 0.2, &c));
    EXPECT_GE(now() - t0, 0.19);
    EXPECT_LT(now() - t0, 10.0);
    EXPECT_EQ(nullptr, c);
    EXPECT_EQ(0, mp_listener_close(l.l));
    EXPECT_EQ(0, mp_listener_close(l.l));
    EXPECT_EQ(MP_ECLOSED, mp_listener_accept(l.l, 0, &c));
    EXPECT_NE(nullptr, mp_listener_address(l.l));
}

TEST(Listener, ClientTimesOutWhenNobodyAccepts) {
    Lst l;
    mp_listener_opts o = key_opts("k");
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    mp_connection *c = nullptr;
    double t0 = now();
    EXPECT_EQ(MP_ETIMEDOUT, mp_client_connect(mp_listener_address(l.l), &o, 0.3, &c)) << err();
    EXPECT_LT(now() - t0, 10.0);
    EXPECT_EQ(nullptr, c);
}

TEST(Listener, ClientFindsNobodyListening) {
    char addr[512];
    mp_family local = kWindows ? MP_AF_PIPE : MP_AF_UNIX;
    ASSERT_EQ(0, mp_arbitrary_address(local, addr, sizeof addr));
    mp_connection *c = nullptr;
    EXPECT_EQ(MP_ENOENT, mp_client_connect(addr, nullptr, 5.0, &c)) << err();
    // A port that was just free.
    std::string inet;
    {
        Lst l;
        ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", nullptr, &l.l)) << err();
        inet = mp_listener_address(l.l);
    }
    // (Another program may have taken the port since: then the handshake fails.)
    int rc = mp_client_connect(inet.c_str(), nullptr, 5.0, &c);
    EXPECT_NE(0, rc);
    EXPECT_EQ(nullptr, c);
    mp_connection_free(c);
}

#ifndef _WIN32
TEST(Listener, UnixSocketFileIsRemovedOnClose) {
    char addr[512];
    ASSERT_EQ(0, mp_arbitrary_address(MP_AF_UNIX, addr, sizeof addr));
    mp_listener *l = nullptr;
    ASSERT_EQ(0, mp_listener_new(addr, nullptr, &l)) << err();
    EXPECT_EQ(0, access(addr, F_OK));
    mp_listener_free(l);
    EXPECT_NE(0, access(addr, F_OK));
}
#endif

// ---- bad peers ----------------------------------------------------------------

double now_deadline(double timeout) { return mp__os_monotonic() + timeout; }

// Connects without a handshake and writes raw bytes (a CPython frame header or
// anything) on the handle.
bool raw_write(mp_connection *c, const void *p, size_t n) {
    int kind = 0;
    mp_os_handle h = mp__connection_handle(c, &kind);
    return mp__os_net_write(h, kind, p, n, now_deadline(kWait)) == 0;
}

TEST(Listener, HugeLengthBeforeAuthIsRefusedWithoutReadingIt) {
    static const unsigned char k4[] = {0x7f, 0xff, 0xff, 0xff};
    static const unsigned char k12[] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char k257[] = {0, 0, 1, 1};
    static const unsigned char kneg[] = {0x80, 0, 0, 0};
    struct Case {
        const unsigned char *p;
        size_t n;
    } cases[] = {{k4, 4}, {k12, 12}, {k257, 4}, {kneg, 4}};
    for (auto &a : test_addresses()) {
        SCOPED_TRACE(a.first);
        Lst l;
        mp_listener_opts o = key_opts("k", a.second);
        ASSERT_EQ(0, mp_listener_new(a.first.c_str(), &o, &l.l)) << err();
        for (auto &cs : cases) {
            mp_listener_opts none = no_auth_opts();
            none.family = a.second;
            ClientThread ct;
            ct.start(mp_listener_address(l.l), &none);
            ct.join();
            ASSERT_EQ(0, ct.rc) << ct.msg;
            ASSERT_TRUE(raw_write(ct.c, cs.p, cs.n));
            Conn s;
            double t0 = now();
            EXPECT_EQ(MP_EAUTH, mp_listener_accept(l.l, kWait, &s.c)) << err();
            EXPECT_LT(now() - t0, kWait / 2) << "the listener waited for the body";
        }
        int crc;
        EXPECT_EQ(0, pair_once(l.l, &o, &crc)) << err();
        EXPECT_EQ(0, crc);
    }
}

TEST(Listener, GarbageInsteadOfAnAnswerIsRefused) {
    Lst l;
    mp_listener_opts o = key_opts("k");
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    const std::vector<std::string> answers = {"",
                                              "x",
                                              std::string(16, 'a'),
                                              std::string(20, 'a'),
                                              "{sha256}short",
                                              "{sha1}" + std::string(20, 'a'),
                                              "{nosuchdigest}" + std::string(32, 'a'),
                                              "{sha256" + std::string(40, 'a'),
                                              std::string(256, '{')};
    for (auto &ans : answers) {
        mp_listener_opts none = no_auth_opts();
        ClientThread ct;
        ct.start(mp_listener_address(l.l), &none);
        ct.join();
        ASSERT_EQ(0, ct.rc) << ct.msg;
        ASSERT_TRUE(send_str(ct.c, ans));
        Conn s;
        EXPECT_EQ(MP_EAUTH, mp_listener_accept(l.l, kWait, &s.c)) << err();
        // The listener told the client: the challenge, then #FAILURE#.
        EXPECT_EQ(0u, recv_str(ct.c).find("#CHALLENGE#{sha256}"));
        EXPECT_EQ("#FAILURE#", recv_str(ct.c));
    }
    int crc;
    EXPECT_EQ(0, pair_once(l.l, &o, &crc)) << err();
    EXPECT_EQ(0, crc);
}

// A listener without a handshake, played by the test: it sends whatever it likes.
struct FakeServer {
    Lst l;
    Conn s;
    ClientThread ct;
    std::string key;
    bool start(const std::string &k) {
        key = k;
        mp_listener_opts none = no_auth_opts();
        EXPECT_EQ(0, mp_listener_new("127.0.0.1:0", &none, &l.l)) << err();
        if (!l.l) return false;
        mp_listener_opts o = key_opts(key);
        ct.start(mp_listener_address(l.l), &o);
        EXPECT_EQ(0, mp_listener_accept(l.l, kWait, &s.c)) << err();
        return s.c != nullptr;
    }
    mp_os_handle h(int *kind) { return mp__connection_handle(s.c, kind); }
};

TEST(Listener, ClientRefusesAHugeChallenge) {
    FakeServer f;
    ASSERT_TRUE(f.start("k"));
    static const unsigned char k12[] = {0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0};
    ASSERT_TRUE(raw_write(f.s.c, k12, sizeof k12));
    f.ct.join();
    EXPECT_EQ(MP_EAUTH, f.ct.rc) << f.ct.msg;
}

TEST(Listener, ClientRefusesBadChallenges) {
    const std::vector<std::string> challenges = {"hello",
                                                 "#CHALLENGE#",
                                                 "#CHALLENGE#" + std::string(19, 'x'),
                                                 "#CHALLENGE#{md4}" + std::string(40, 'x'),
                                                 "#CHALLENGE#" + std::string(41, 'x'),
                                                 "#WELCOME#"};
    for (auto &c : challenges) {
        SCOPED_TRACE(c);
        FakeServer f;
        ASSERT_TRUE(f.start("k"));
        ASSERT_TRUE(send_str(f.s.c, c));
        f.ct.join();
        EXPECT_EQ(MP_EAUTH, f.ct.rc) << f.ct.msg;
    }
}

TEST(Listener, ClientRefusesAServerThatDoesNotWelcome) {
    FakeServer f;
    ASSERT_TRUE(f.start("k"));
    ASSERT_TRUE(send_str(f.s.c, "#CHALLENGE#{sha256}" + std::string(40, 'r')));
    EXPECT_EQ(0u, recv_str(f.s.c).find("{sha256}"));
    ASSERT_TRUE(send_str(f.s.c, "#FAILURE#"));
    f.ct.join();
    EXPECT_EQ(MP_EAUTH, f.ct.rc) << f.ct.msg;
}

// ---- the legacy (Python <= 3.11) form --------------------------------------------

std::string hmac_of(int alg, const std::string &key, const std::string &msg) {
    unsigned char out[MP__HMAC_MAX];
    size_t n = 0;
    EXPECT_EQ(0, mp__os_hmac(alg, key.data(), key.size(), msg.data(), msg.size(), out, &n))
        << err();
    return std::string(reinterpret_cast<char *>(out), n);
}

TEST(Listener, HmacKnownAnswers) {
    // RFC 2202 / RFC 4231 test case 2.
    const std::string key = "Jefe", msg = "what do ya want for nothing?";
    EXPECT_EQ("750c783e6ab0b503eaa86e310a5db738", hex_of(hmac_of(MP__HMAC_MD5, key, msg)));
    EXPECT_EQ("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
              hex_of(hmac_of(MP__HMAC_SHA256, key, msg)));
    EXPECT_EQ(48u, hmac_of(MP__HMAC_SHA384, key, msg).size());
    EXPECT_EQ(16u, hmac_of(MP__HMAC_MD5, "", "").size());
}

TEST(Listener, LegacyClientIsAccepted) {
    // A Python <= 3.11 client: bare HMAC-MD5 answers, a 20-byte challenge.
    const std::string key = "legacy";
    Lst l;
    mp_listener_opts o = key_opts(key);
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &o, &l.l)) << err();
    std::atomic<int> step{0};
    std::thread fake([&] {
        mp_listener_opts none = no_auth_opts();
        mp_connection *c = nullptr;
        if (mp_client_connect(mp_listener_address(l.l), &none, kWait, &c) != 0) return;
        std::string ch = recv_str(c);
        if (ch.compare(0, 11, "#CHALLENGE#") == 0) {
            send_str(c, hmac_of(MP__HMAC_MD5, key, ch.substr(11)));
            if (recv_str(c) == "#WELCOME#") {
                step = 1;
                std::string mine(20, '\x5a');
                send_str(c, "#CHALLENGE#" + mine);
                std::string ans = recv_str(c);
                if (ans == hmac_of(MP__HMAC_MD5, key, mine)) {
                    step = 2;
                    send_str(c, "#WELCOME#");
                }
            }
        }
        mp_connection_free(c);
    });
    Conn s;
    EXPECT_EQ(0, mp_listener_accept(l.l, kWait, &s.c)) << err();
    fake.join();
    EXPECT_EQ(2, step.load());
}

TEST(Listener, LegacyServerIsAnswered) {
    const std::string key = "legacy";
    FakeServer f;
    ASSERT_TRUE(f.start(key));
    std::string mine(20, '\x33');
    ASSERT_TRUE(send_str(f.s.c, "#CHALLENGE#" + mine));
    EXPECT_EQ(hmac_of(MP__HMAC_MD5, key, mine), recv_str(f.s.c));
    ASSERT_TRUE(send_str(f.s.c, "#WELCOME#"));
    // The client challenges us with {sha256}; a legacy server answers bare MD5.
    std::string ch = recv_str(f.s.c);
    ASSERT_EQ(0u, ch.find("#CHALLENGE#{sha256}"));
    EXPECT_EQ(11u + 8u + 40u, ch.size());
    send_str(f.s.c, hmac_of(MP__HMAC_MD5, key, ch.substr(11)));
    EXPECT_EQ("#WELCOME#", recv_str(f.s.c));
    f.ct.join();
    EXPECT_EQ(0, f.ct.rc) << f.ct.msg;
}

TEST(Listener, ModernDigestsTheServerMayPick) {
    // A 3.12+ server configured with another digest: {sha384} (and {md5}).
    for (const char *name : {"sha384", "md5", "sha256"}) {
        SCOPED_TRACE(name);
        int alg = !strcmp(name, "sha384") ? MP__HMAC_SHA384
                  : !strcmp(name, "md5")  ? MP__HMAC_MD5
                                          : MP__HMAC_SHA256;
        const std::string key = "modern";
        FakeServer f;
        ASSERT_TRUE(f.start(key));
        std::string msg = std::string("{") + name + "}" + std::string(40, 'q');
        ASSERT_TRUE(send_str(f.s.c, "#CHALLENGE#" + msg));
        EXPECT_EQ(std::string("{") + name + "}" + hmac_of(alg, key, msg), recv_str(f.s.c));
        ASSERT_TRUE(send_str(f.s.c, "#WELCOME#"));
        std::string ch = recv_str(f.s.c).substr(11);
        send_str(f.s.c, "{sha256}" + hmac_of(MP__HMAC_SHA256, key, ch));
        EXPECT_EQ("#WELCOME#", recv_str(f.s.c));
        f.ct.join();
        EXPECT_EQ(0, f.ct.rc) << f.ct.msg;
    }
}

// ---- the public challenge functions on any connection ----------------------------

TEST(Listener, DeliverAndAnswerOverAPipe) {
    for (bool right : {true, false}) {
        mp_connection *a = nullptr, *b = nullptr;
        ASSERT_EQ(0, mp_pipe(true, &a, &b)) << err();
        int arc = 1, brc = 1;
        std::thread t([&] {
            arc = mp_deliver_challenge(a, "key", 3);
            if (arc == 0) arc = mp_answer_challenge(a, "key", 3);
        });
        brc = mp_answer_challenge(b, right ? "key" : "kez", 3);
        if (brc == 0) brc = mp_deliver_challenge(b, "key", 3);
        t.join();
        EXPECT_EQ(right ? 0 : MP_EAUTH, arc);
        EXPECT_EQ(right ? 0 : MP_EAUTH, brc);
        if (right) {
            send_str(a, "after");
            EXPECT_EQ("after", recv_str(b));
        }
        mp_connection_free(a);
        mp_connection_free(b);
    }
}

// ---- a child on every start method -------------------------------------------------

class ListenerProcess : public ProcessTest {};

INSTANTIATE_TEST_SUITE_P(Backends, ListenerProcess, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

} // namespace

// [0] address: connects with the inherited process authkey, sends "child", expects "ok".
int tgt_listener_client(mp_args *a) {
    mp_connection *c = nullptr;
    int rc = mp_client_connect(mp_args_str(a, 0), nullptr, 60.0, &c);
    if (rc) return 10 - rc; // 10 + the error's magnitude
    int code = 0;
    bool ready = false;
    void *p = nullptr;
    size_t n = 0;
    if (mp_connection_send_bytes(c, "child", 5) != 0)
        code = 2;
    else if (mp_connection_poll(c, 60.0, &ready) != 0 || !ready)
        code = 3;
    else if (mp_connection_recv_bytes(c, 16, &p, &n) != 0 || n != 2 || memcmp(p, "ok", 2) != 0)
        code = 4;
    mp_connection_free_bytes(p);
    mp_connection_free(c);
    return code;
}

namespace {

TEST_P(ListenerProcess, ChildConnectsWithTheInheritedAuthkey) {
    Lst l;
    ASSERT_EQ(0, mp_listener_new(nullptr, nullptr, &l.l)) << err();
    Args args;
    args.s(mp_listener_address(l.l));
    mp_process *p = start(tgt_listener_client, args.get());
    ASSERT_NE(nullptr, p);
    Conn s;
    ASSERT_EQ(0, mp_listener_accept(l.l, kWait, &s.c)) << err();
    EXPECT_EQ("child", recv_str(s.c));
    send_str(s.c, "ok");
    EXPECT_EQ(0, join_code(p));
}

TEST_P(ListenerProcess, ChildWithAnotherKeyIsRefused) {
    Lst l;
    mp_listener_opts o = key_opts("not the process key");
    ASSERT_EQ(0, mp_listener_new(nullptr, &o, &l.l)) << err();
    Args args;
    args.s(mp_listener_address(l.l));
    mp_process *p = start(tgt_listener_client, args.get());
    ASSERT_NE(nullptr, p);
    Conn s;
    EXPECT_EQ(MP_EAUTH, mp_listener_accept(l.l, kWait, &s.c)) << err();
    EXPECT_EQ(10 - MP_EAUTH, join_code(p));
}

// ---- interop with a real python3 ---------------------------------------------------

#ifndef _WIN32

bool python_usable(std::string *why) {
    static int state = 0; // 0 unknown, 1 yes, 2 no
    if (state == 0) state = python_runs("import multiprocessing.connection") ? 1 : 2;
    *why = "python3 with multiprocessing.connection is not available";
    return state == 1;
}

#define REQUIRE_PYTHON()                                 \
    do {                                                 \
        std::string why_;                                \
        if (!python_usable(&why_)) GTEST_SKIP() << why_; \
    } while (0)

std::vector<std::pair<std::string, mp_family>> interop_addresses() {
    std::vector<std::pair<std::string, mp_family>> v;
    for (auto &a : test_addresses())
        if (a.second == MP_AF_INET || a.second == MP_AF_UNIX) v.push_back(a);
    return v;
}

// The bytes exchange against the peer's "bytes" mode.
void exchange_bytes(mp_connection *c) {
    send_str(c, "abc");
    EXPECT_EQ("py:abc", recv_str(c));
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<char>(i * 31 + 7);
    send_str(c, big);
    EXPECT_EQ("py:" + big, recv_str(c));
    send_str(c, "");
    EXPECT_EQ("py:", recv_str(c));
    send_str(c, "quit");
    EXPECT_EQ("bye", recv_str(c));
}

mp_value *recv_value(mp_connection *c) {
    bool ready = false;
    EXPECT_EQ(0, mp_connection_poll(c, kWait, &ready)) << err();
    mp_value *v = nullptr;
    if (ready)
        EXPECT_EQ(0, mp_connection_recv(c, &v)) << err();
    else
        ADD_FAILURE() << "no value within " << kWait << " s";
    return v;
}

// Sends v, expects ("echo", v, pytype).
void echo_value(mp_connection *c, mp_value *v, const char *pytype) {
    ASSERT_EQ(0, mp_connection_send(c, v)) << err();
    mp_value *r = recv_value(c);
    ASSERT_EQ(MP_VALUE_TUPLE, mp_value_get_type(r));
    ASSERT_EQ(3u, mp_value_len(r));
    EXPECT_STREQ("echo", mp_value_as_str(mp_value_item(r, 0), nullptr));
    EXPECT_TRUE(mp_value_equal(v, mp_value_item(r, 1))) << pytype;
    EXPECT_STREQ(pytype, mp_value_as_str(mp_value_item(r, 2), nullptr));
    mp_value_free(r);
    mp_value_free(v);
}

void exchange_values(mp_connection *c) {
    echo_value(c, mp_value_int(42), "int");
    echo_value(c, mp_value_int(-(int64_t(1) << 62)), "int");
    echo_value(c, mp_value_str("h\xc3\xa9llo"), "str");
    echo_value(c, mp_value_bytes("\0\1\2", 3), "bytes");
    echo_value(c, mp_value_float(0.25), "float");
    echo_value(c, mp_value_none(), "NoneType");
    echo_value(c, mp_value_bool(true), "bool");
    mp_value *l = mp_value_list_new();
    mp_value_list_append(l, mp_value_int(1));
    mp_value_list_append(l, mp_value_str("two"));
    mp_value *inner = mp_value_list_new();
    mp_value_list_append(inner, mp_value_float(3.0));
    mp_value_list_append(l, inner);
    echo_value(c, l, "list");
    mp_value *d = mp_value_dict_new();
    mp_value_dict_set_str(d, "a", mp_value_int(1));
    mp_value_dict_set(d, mp_value_int(2), mp_value_str("b"));
    mp_value_dict_set_str(d, "list", mp_value_list_new());
    echo_value(c, d, "dict");

    mp_value *sample = mp_value_str("sample");
    ASSERT_EQ(0, mp_connection_send(c, sample)) << err();
    mp_value_free(sample);
    mp_value *s = recv_value(c);
    ASSERT_EQ(MP_VALUE_DICT, mp_value_get_type(s));
    mp_value *ints = mp_value_dict_get_str(s, "ints");
    ASSERT_EQ(11u, mp_value_len(ints));
    EXPECT_EQ(65536, mp_value_as_int(mp_value_item(ints, 6)));
    EXPECT_EQ(INT64_MIN, mp_value_as_int(mp_value_item(ints, 10)));
    EXPECT_EQ(int64_t(1) << 62, mp_value_as_int(mp_value_item(ints, 9)));
    EXPECT_STREQ("h\xc3\xa9llo \xe2\x98\x83",
                 mp_value_as_str(mp_value_dict_get_str(s, "str"), nullptr));
    size_t bn = 0;
    const void *bp = mp_value_as_bytes(mp_value_dict_get_str(s, "bytes"), &bn);
    ASSERT_EQ(3u, bn);
    EXPECT_EQ(0, memcmp(bp, "\x00\x01\xff", 3));
    EXPECT_EQ(2.5, mp_value_as_float(mp_value_dict_get_str(s, "float")));
    mp_value *flags = mp_value_dict_get_str(s, "flags");
    EXPECT_EQ(MP_VALUE_TUPLE, mp_value_get_type(flags));
    EXPECT_EQ(MP_VALUE_NONE, mp_value_get_type(mp_value_item(flags, 2)));
    EXPECT_EQ(MP_VALUE_DICT,
              mp_value_get_type(mp_value_item(mp_value_dict_get_str(s, "nested"), 0)));
    mp_value_free(s);

    mp_value *q = mp_value_str("quit");
    ASSERT_EQ(0, mp_connection_send(c, q)) << err();
    mp_value_free(q);
    mp_value *bye = recv_value(c);
    EXPECT_STREQ("bye", mp_value_as_str(bye, nullptr));
    mp_value_free(bye);
}

// The end of a connection attempt with a python peer: refused when the keys differ (the
// peer then exits 3), else the mode's exchange on c and a clean exit.
void finish_exchange(PyPeer &py, int rc, mp_connection *c, bool same_key, const char *mode) {
    if (!same_key) {
        EXPECT_EQ(MP_EAUTH, rc) << err();
        EXPECT_EQ(3, py.wait(kWait));
        return;
    }
    ASSERT_EQ(0, rc) << err();
    if (!strcmp(mode, "bytes"))
        exchange_bytes(c);
    else
        exchange_values(c);
    EXPECT_EQ(0, py.wait(kWait));
}

// A python Client against our Listener.
void python_client(const std::string &address, mp_family fam, const std::string &ourkey,
                   const std::string &pykey, const char *mode) {
    SCOPED_TRACE(address + " mode " + mode);
    Lst l;
    mp_listener_opts o = key_opts(ourkey, fam);
    ASSERT_EQ(0, mp_listener_new(address.c_str(), &o, &l.l)) << err();
    PyPeer py;
    ASSERT_TRUE(py.start({MP_TEST_INTEROP_PEER, "client", mp_family_name(fam),
                          mp_listener_address(l.l), hex_of(pykey), mode}));
    Conn s;
    int rc = mp_listener_accept(l.l, kWait, &s.c);
    finish_exchange(py, rc, s.c, ourkey == pykey, mode);
}

// Our Client against a python Listener.
void python_listener(const std::string &address, mp_family fam, const std::string &ourkey,
                     const std::string &pykey, const char *mode) {
    SCOPED_TRACE(address + " mode " + mode);
    PyPeer py;
    ASSERT_TRUE(py.start(
        {MP_TEST_INTEROP_PEER, "listen", mp_family_name(fam), address, hex_of(pykey), mode}));
    std::string line;
    ASSERT_TRUE(py.line(&line, kWait)) << "the python listener did not start";
    ASSERT_EQ(0u, line.find("ADDRESS ")) << line;
    std::string bound = line.substr(8);
    mp_listener_opts o = key_opts(ourkey, fam);
    Conn c;
    int rc = mp_client_connect(bound.c_str(), &o, kWait, &c.c);
    finish_exchange(py, rc, c.c, ourkey == pykey, mode);
}

TEST(ListenerInterop, PythonClientToOurListener) {
    REQUIRE_PYTHON();
    for (auto &a : interop_addresses()) {
        python_client(a.first, a.second, "shared key", "shared key", "bytes");
        python_client(a.first, a.second, "shared key", "shared key", "values");
        python_client(a.first, a.second, "shared key", "other key", "bytes");
    }
}

TEST(ListenerInterop, OurClientToPythonListener) {
    REQUIRE_PYTHON();
    for (auto &a : interop_addresses()) {
        std::string addr = a.first;
        if (a.second == MP_AF_INET) addr = "127.0.0.1:0";
        python_listener(addr, a.second, "shared key", "shared key", "bytes");
        python_listener(addr, a.second, "shared key", "shared key", "values");
        python_listener(addr, a.second, "other key", "shared key", "bytes");
    }
}

TEST(ListenerInterop, ProcessAuthkeyGivenToPython) {
    REQUIRE_PYTHON();
    unsigned char key[MP_AUTHKEY_LEN];
    ASSERT_EQ(0, mp_get_authkey(key));
    std::string k(reinterpret_cast<char *>(key), sizeof key);
    Lst l;
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", nullptr, &l.l)) << err();
    PyPeer py;
    ASSERT_TRUE(py.start(
        {MP_TEST_INTEROP_PEER, "client", "AF_INET", mp_listener_address(l.l), hex_of(k), "bytes"}));
    Conn s;
    ASSERT_EQ(0, mp_listener_accept(l.l, kWait, &s.c)) << err();
    exchange_bytes(s.c);
    EXPECT_EQ(0, py.wait(kWait));
}

TEST(ListenerInterop, NoAuthWithPython) {
    REQUIRE_PYTHON();
    Lst l;
    mp_listener_opts none = no_auth_opts();
    ASSERT_EQ(0, mp_listener_new("127.0.0.1:0", &none, &l.l)) << err();
    PyPeer py;
    ASSERT_TRUE(py.start(
        {MP_TEST_INTEROP_PEER, "client", "AF_INET", mp_listener_address(l.l), "none", "bytes"}));
    Conn s;
    ASSERT_EQ(0, mp_listener_accept(l.l, kWait, &s.c)) << err();
    exchange_bytes(s.c);
    EXPECT_EQ(0, py.wait(kWait));
}

#else

TEST(ListenerInterop, PythonPeers) {
    GTEST_SKIP() << "interop with python3 runs on Linux only (no python under Wine)";
}

#endif

} // namespace
