// Handles, sockets and connections sent over a connection (CPython's send_handle /
// recv_handle and its pickling of connections and sockets): in one process, between a
// parent and a child on every backend, errors, and no handle leaks. Every receive has a
// timeout, so a bug fails the test instead of hanging it.
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "conn_helpers.h"
#include "targets.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
#endif

using namespace mpt;

namespace {

struct Conn {
    mp_connection *c = nullptr;
    Conn() = default;
    ~Conn() { mp_connection_free(c); }
    Conn(const Conn &) = delete;
    Conn &operator=(const Conn &) = delete;
};

// Reads exactly want.size() bytes from h and compares.
bool read_is(mp_os_handle h, const std::string &want, double timeout = kWait) {
    std::string got(want.size(), '\0');
    return read_exact(h, &got[0], got.size(), timeout) && got == want;
}

// A received socket, closed the right way on every system (closesocket on Windows).
void socket_close(mp_os_handle s) {
    mp_connection *c = nullptr;
    if (s != MP_INVALID_OS_HANDLE &&
        mp__connection_from_os_handle(s, kSocketKind, true, true, &c) == 0)
        mp_connection_free(c);
}

// A connected Listener/Client pair: server (accepted) and client ends.
struct SocketPair {
    Conn server, client;
    bool ok = false;
    explicit SocketPair(mp_family family) {
        mp_listener_opts o;
        memset(&o, 0, sizeof o);
        o.family = family;
        const char *addr = family == MP_AF_INET ? "127.0.0.1:0" : nullptr;
        mp_listener *l = nullptr;
        if (mp_listener_new(addr, &o, &l) != 0) {
            ADD_FAILURE() << "listener " << mp_family_name(family) << " " << err();
            return;
        }
        std::string bound = mp_listener_address(l);
        int crc = 1;
        std::thread t([&] { crc = mp_client_connect(bound.c_str(), &o, kWait, &client.c); });
        int arc = mp_listener_accept(l, kWait, &server.c);
        t.join();
        mp_listener_free(l);
        EXPECT_EQ(0, arc) << err();
        EXPECT_EQ(0, crc);
        ok = arc == 0 && crc == 0;
    }
};

// The families a socket connection can be made with here.
std::vector<mp_family> socket_families() {
    std::vector<mp_family> v;
    for (mp_family f : {MP_AF_INET, MP_AF_UNIX, MP_AF_PIPE})
        if (mp_family_supported(f)) v.push_back(f);
    return v;
}

} // namespace

// ---- in one process -------------------------------------------------------------------

TEST(Handle, PipeHandleOverDuplexPipeBothWays) {
    PipePair pp;
    for (int dir = 0; dir < 2; dir++) {
        mp_connection *tx = dir ? pp.b : pp.a, *rx = dir ? pp.a : pp.b;
        Pipe p;
        ASSERT_TRUE(pipe_open(&p));
        ASSERT_EQ(0, mp_connection_send_handle(tx, p.w, mp_getpid())) << err();
        handle_close(p.w); // the sent duplicate lives on without the sender's
        p.w = MP_INVALID_OS_HANDLE;
        mp_os_handle h = MP_INVALID_OS_HANDLE;
        ASSERT_EQ(0, mp_connection_recv_handle(rx, kWait, &h)) << err();
        ASSERT_NE(MP_INVALID_OS_HANDLE, h);
        ASSERT_TRUE(write_all(h, "through it", 10));
        handle_close(h);
        EXPECT_TRUE(read_is(p.r, "through it"));
        char c;
        EXPECT_FALSE(read_exact(p.r, &c, 1, kWait)) << "every write end is closed: end of file";
        pipe_close(&p);
    }
}

TEST(Handle, HandlesKeepTheirPlaceAmongMessages) {
    PipePair pp;
    Pipe p1, p2;
    ASSERT_TRUE(pipe_open(&p1) && pipe_open(&p2));
    ASSERT_EQ(0, send_str(pp.a, "first"));
    ASSERT_EQ(0, mp_connection_send_handle(pp.a, p1.w, mp_getpid())) << err();
    ASSERT_EQ(0, send_str(pp.a, "second"));
    ASSERT_EQ(0, mp_connection_send_handle(pp.a, p2.w, mp_getpid())) << err();
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    EXPECT_TRUE(ready);
    std::string s;
    ASSERT_EQ(0, recv_str(pp.b, &s));
    EXPECT_EQ("first", s);
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    EXPECT_TRUE(ready) << "a handle waiting makes the connection readable";
    mp_os_handle h1 = MP_INVALID_OS_HANDLE, h2 = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_recv_handle(pp.b, kWait, &h1)) << err();
    ASSERT_EQ(0, recv_str(pp.b, &s));
    EXPECT_EQ("second", s);
    ASSERT_EQ(0, mp_connection_recv_handle(pp.b, kWait, &h2)) << err();
    ASSERT_TRUE(write_all(h1, "1", 1) && write_all(h2, "2", 1));
    EXPECT_TRUE(read_is(p1.r, "1"));
    EXPECT_TRUE(read_is(p2.r, "2"));
    handle_close(h1);
    handle_close(h2);
    pipe_close(&p1);
    pipe_close(&p2);
}

TEST(Handle, ConnectionOverConnectionInOneProcess) {
    PipePair carrier, x;
    ASSERT_EQ(0, mp_connection_set_max_message(x.b, 12345));
    ASSERT_EQ(0, mp_connection_send_connection(carrier.a, x.b, mp_getpid())) << err();
    ASSERT_EQ(0, mp_connection_close(x.b)) << "the sender's copy is its own";
    Conn y;
    ASSERT_EQ(0, mp_connection_recv_connection(carrier.b, kWait, &y.c)) << err();
    ASSERT_NE(nullptr, y.c);
    EXPECT_TRUE(mp_connection_readable(y.c) && mp_connection_writable(y.c));
    EXPECT_EQ(12345u, mp_connection_max_message(y.c));
    std::string s;
    ASSERT_EQ(0, send_str(x.a, "to y"));
    ASSERT_EQ(0, recv_str(y.c, &s)) << err();
    EXPECT_EQ("to y", s);
    ASSERT_EQ(0, send_str(y.c, "from y"));
    ASSERT_EQ(0, recv_str(x.a, &s)) << err();
    EXPECT_EQ("from y", s);
    // A received duplex pipe end can carry handles in turn.
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    ASSERT_EQ(0, mp_connection_send_handle(y.c, p.w, mp_getpid())) << err();
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_recv_handle(x.a, kWait, &h)) << err();
    ASSERT_TRUE(write_all(h, "ok", 2));
    EXPECT_TRUE(read_is(p.r, "ok"));
    handle_close(h);
    pipe_close(&p);
}

TEST(Handle, OneWayPipeEndsAsConnections) {
    PipePair carrier, one(false);
    ASSERT_EQ(0, mp_connection_send_connection(carrier.a, one.a, mp_getpid())) << err();
    ASSERT_EQ(0, mp_connection_send_connection(carrier.a, one.b, mp_getpid())) << err();
    Conn r, w;
    ASSERT_EQ(0, mp_connection_recv_connection(carrier.b, kWait, &r.c)) << err();
    ASSERT_EQ(0, mp_connection_recv_connection(carrier.b, kWait, &w.c)) << err();
    EXPECT_TRUE(mp_connection_readable(r.c) && !mp_connection_writable(r.c));
    EXPECT_TRUE(!mp_connection_readable(w.c) && mp_connection_writable(w.c));
    std::string s;
    ASSERT_EQ(0, send_str(w.c, "one way"));
    ASSERT_EQ(0, recv_str(r.c, &s)) << err();
    EXPECT_EQ("one way", s);
}

TEST(Handle, SocketConnectionsAndSocketsInOneProcess) {
    for (mp_family f : socket_families()) {
        SCOPED_TRACE(mp_family_name(f));
        SocketPair sp(f);
        ASSERT_TRUE(sp.ok);
        PipePair carrier;
        ASSERT_EQ(0, mp_connection_send_connection(carrier.a, sp.server.c, mp_getpid())) << err();
        Conn got;
        ASSERT_EQ(0, mp_connection_recv_connection(carrier.b, kWait, &got.c)) << err();
        std::string s;
        ASSERT_EQ(0, send_str(sp.client.c, "hi"));
        ASSERT_EQ(0, recv_str(got.c, &s)) << err();
        EXPECT_EQ("hi", s);
        if (f == MP_AF_PIPE) continue; // a named pipe, not a socket
        mp_os_handle fd = MP_INVALID_OS_HANDLE, rs = MP_INVALID_OS_HANDLE;
        ASSERT_EQ(0, mp_connection_fileno(sp.server.c, &fd));
        ASSERT_EQ(0, mp_connection_send_socket(carrier.a, fd, mp_getpid())) << err();
        ASSERT_EQ(0, mp_connection_recv_socket(carrier.b, kWait, &rs)) << err();
        Conn raw;
        ASSERT_EQ(0, mp__connection_from_os_handle(rs, kSocketKind, true, true, &raw.c)) << err();
        ASSERT_EQ(0, send_str(raw.c, "raw socket"));
        ASSERT_EQ(0, recv_str(sp.client.c, &s)) << err();
        EXPECT_EQ("raw socket", s);
    }
}

#ifndef _WIN32
// An AF_UNIX socket connection carries the fds in-band, as CPython's sendfds: one byte
// holding the count, with the fd attached.
TEST(Handle, AfUnixCarriesHandlesInBandOnCPythonsWire) {
    mp_os_handle sv[2];
    ASSERT_EQ(0, mp__os_net_socketpair(sv)) << err();
    Conn a, raw;
    ASSERT_EQ(0, mp__connection_from_os_handle(sv[0], kSocketKind, true, true, &a.c)) << err();
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    ASSERT_EQ(0, mp_connection_send_handle(a.c, p.w, 0)) << err();
    char byte = 0;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct iovec iov = {&byte, 1};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    ASSERT_EQ(1, recvmsg(static_cast<int>(sv[1]), &m, MSG_CMSG_CLOEXEC));
    EXPECT_EQ(1, byte);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    ASSERT_NE(nullptr, c);
    EXPECT_EQ(SCM_RIGHTS, c->cmsg_type);
    ASSERT_EQ(CMSG_LEN(sizeof(int)), c->cmsg_len);
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    ASSERT_TRUE(write_all(fd, "x", 1));
    EXPECT_TRUE(read_is(p.r, "x"));
    close(fd);
    // And the other way: a CPython-style byte + fd arrives as a handle.
    int cfd = static_cast<int>(p.w);
    byte = 1;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int));
    c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &cfd, sizeof cfd);
    ASSERT_EQ(1, sendmsg(static_cast<int>(sv[1]), &m, 0));
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_recv_handle(a.c, kWait, &h)) << err();
    ASSERT_TRUE(write_all(h, "y", 1));
    EXPECT_TRUE(read_is(p.r, "y"));
    handle_close(h);
    // A connection over an AF_UNIX socket, and a buffered end refused.
    ASSERT_EQ(0, mp__connection_from_os_handle(sv[1], kSocketKind, true, true, &raw.c)) << err();
    PipePair x;
    ASSERT_EQ(0, mp_connection_send_connection(a.c, x.b, 0)) << err();
    Conn y;
    ASSERT_EQ(0, mp_connection_recv_connection(raw.c, kWait, &y.c)) << err();
    ASSERT_EQ(0, send_str(y.c, "via unix"));
    std::string s;
    ASSERT_EQ(0, recv_str(x.a, &s)) << err();
    EXPECT_EQ("via unix", s);
    // AF_UNIX reads no more ahead by default (a read would drop handles); forced on, a
    // handle receive is refused.
    EXPECT_FALSE(mp_connection_buffered(raw.c));
    EXPECT_EQ(MP_READ_AHEAD_AUTO, mp_connection_read_ahead(raw.c));
    ASSERT_EQ(0, mp_connection_set_buffered(raw.c, true));
    EXPECT_EQ(MP_ESTATE, mp_connection_recv_handle(raw.c, 0, &h));
    pipe_close(&p);
}

TEST(Handle, AfInetAndOneWayPipesCannotCarryHandles) {
    SocketPair sp(MP_AF_INET);
    ASSERT_TRUE(sp.ok);
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    EXPECT_EQ(MP_ENOTSUP, mp_connection_send_handle(sp.client.c, p.w, 0));
    mp_os_handle h = 7;
    EXPECT_EQ(MP_ENOTSUP, mp_connection_recv_handle(sp.server.c, 0, &h));
    EXPECT_EQ(MP_INVALID_OS_HANDLE, h);
    PipePair one(false);
    EXPECT_EQ(MP_ENOTSUP, mp_connection_send_handle(one.b, p.w, 0));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "one-way")) << err();
    EXPECT_EQ(MP_ENOTSUP, mp_connection_recv_handle(one.a, 0, &h));
    pipe_close(&p);
}

// CPython's reduction.send_handle / recv_handle over an AF_UNIX connection to our
// Listener: the wire is the same, so fds cross both ways.
const char kPyHandlePeer[] = R"(
import os, signal, sys
signal.alarm(30)
from multiprocessing.connection import Client
from multiprocessing import reduction
c = Client(sys.argv[1], family='AF_UNIX', authkey=None)
fd = reduction.recv_handle(c)
os.write(fd, b'python wrote')
os.close(fd)
r, w = os.pipe()
os.write(w, b'from python')
os.close(w)
reduction.send_handle(c, r, os.getppid())
os.close(r)
c.send_bytes(b'done')
sys.exit(0 if c.recv_bytes() == b'bye' else 5)
)";

// Runs python3 with args; its exit code, -1000 when it did not end within timeout (it
// is killed), -2000 when it could not be started.
int run_python(const std::vector<std::string> &args, double timeout) {
    std::vector<char *> argv;
    argv.push_back(const_cast<char *>("python3"));
    for (const auto &s : args) argv.push_back(const_cast<char *>(s.c_str()));
    argv.push_back(nullptr);
    pid_t pid;
    if (posix_spawnp(&pid, "python3", nullptr, nullptr, argv.data(), environ) != 0) return -2000;
    double end = now() + timeout;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        if (now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
            return -1000;
        }
        sleep_for(0.01);
    }
}

TEST(HandleInterop, CPythonSendsAndReceivesHandles) {
    if (run_python({"-c", "import multiprocessing.reduction"}, kWait) != 0)
        GTEST_SKIP() << "python3 with multiprocessing is not available";
    mp_listener_opts o;
    memset(&o, 0, sizeof o);
    o.family = MP_AF_UNIX;
    o.no_auth = true;
    mp_listener *l = nullptr;
    ASSERT_EQ(0, mp_listener_new(nullptr, &o, &l)) << err();
    std::string address = mp_listener_address(l);
    int py_rc = -1;
    std::thread py([&] { py_rc = run_python({"-c", kPyHandlePeer, address}, kWait); });
    Conn c;
    int rc = mp_listener_accept(l, kWait, &c.c);
    mp_listener_free(l);
    if (rc == 0) {
        Pipe p;
        EXPECT_TRUE(pipe_open(&p));
        EXPECT_EQ(0, mp_connection_send_handle(c.c, p.w, 0)) << err();
        handle_close(p.w);
        p.w = MP_INVALID_OS_HANDLE;
        EXPECT_TRUE(read_is(p.r, "python wrote"));
        pipe_close(&p);
        mp_os_handle h = MP_INVALID_OS_HANDLE;
        EXPECT_EQ(0, mp_connection_recv_handle(c.c, kWait, &h)) << err();
        EXPECT_TRUE(read_is(h, "from python"));
        handle_close(h);
        std::string s;
        EXPECT_EQ(0, recv_str(c.c, &s)) << err();
        EXPECT_EQ("done", s);
        EXPECT_EQ(0, send_str(c.c, "bye"));
    } else {
        ADD_FAILURE() << "accept: " << err();
    }
    py.join();
    EXPECT_EQ(0, py_rc);
}
#else
// Windows duplicates handles into the receiver: a one-way pipe carries them too.
TEST(Handle, OneWayPipeCarriesHandlesOnWindows) {
    PipePair one(false);
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    ASSERT_EQ(0, mp_connection_send_handle(one.b, p.w, mp_getpid())) << err();
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_recv_handle(one.a, kWait, &h)) << err();
    ASSERT_TRUE(write_all(h, "w", 1));
    EXPECT_TRUE(read_is(p.r, "w"));
    handle_close(h);
    // Without a pid the handle waits in the sender until taken (CPython's DupHandle).
    ASSERT_EQ(0, mp_connection_send_handle(one.b, p.w, 0)) << err();
    ASSERT_EQ(0, mp_connection_recv_handle(one.a, kWait, &h)) << err();
    ASSERT_TRUE(write_all(h, "v", 1));
    EXPECT_TRUE(read_is(p.r, "v"));
    handle_close(h);
    // A socket needs the receiver's pid.
    SocketPair sp(MP_AF_INET);
    ASSERT_TRUE(sp.ok);
    mp_os_handle fd = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_fileno(sp.server.c, &fd));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_socket(one.b, fd, 0));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_connection(one.b, sp.server.c, 0));
    // A handle sent to a process that does not exist.
    EXPECT_NE(0, mp_connection_send_handle(one.b, p.w, 0x7ffffff0));
    pipe_close(&p);
}
#endif

// ---- errors ---------------------------------------------------------------------------

TEST(Handle, ErrorsAreClearCodes) {
    PipePair pp;
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    mp_os_handle h = 5;
    mp_connection *got = reinterpret_cast<mp_connection *>(1);
    // NULL and invalid arguments.
    EXPECT_EQ(MP_EINVAL, mp_connection_send_handle(nullptr, p.w, 0));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_handle(nullptr, 0, &h));
    EXPECT_EQ(MP_INVALID_OS_HANDLE, h);
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_handle(pp.a, 0, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_connection(pp.a, nullptr, 0));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_connection(pp.a, 0, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_connection(nullptr, 0, &got));
    EXPECT_EQ(nullptr, got);
    // A bad handle: invalid, or a number that is not open.
    EXPECT_EQ(MP_EBADF, mp_connection_send_handle(pp.a, MP_INVALID_OS_HANDLE, mp_getpid()));
    Pipe gone;
    ASSERT_TRUE(pipe_open(&gone));
    mp_os_handle stale = gone.w;
    pipe_close(&gone);
    EXPECT_EQ(MP_EBADF, mp_connection_send_handle(pp.a, stale, mp_getpid())) << err();
    EXPECT_EQ(MP_ETIMEDOUT, mp_connection_recv_handle(pp.b, 0, &h)) << "a failed send sent nothing";
    EXPECT_EQ(MP_EBADF, mp_connection_send_socket(pp.a, MP_INVALID_OS_HANDLE, mp_getpid()));
    // Nothing there: a timeout, nothing taken.
    EXPECT_EQ(MP_ETIMEDOUT, mp_connection_recv_handle(pp.b, 0.05, &h));
    EXPECT_EQ(MP_ETIMEDOUT, mp_connection_recv_connection(pp.b, -1, &got));
    // The wrong kind: a message where a handle is expected is consumed and dropped, and
    // the connection goes on.
    ASSERT_EQ(0, send_str(pp.a, "not a handle"));
    ASSERT_EQ(0, send_str(pp.a, "next"));
    EXPECT_EQ(MP_EPROTO, mp_connection_recv_handle(pp.b, kWait, &h)) << err();
    EXPECT_EQ(MP_INVALID_OS_HANDLE, h);
    std::string s;
    ASSERT_EQ(0, recv_str(pp.b, &s)) << err();
    EXPECT_EQ("next", s);
    std::string big(50000, 'b'); // fits in the pipe, past any envelope
    ASSERT_EQ(0, send_str(pp.a, big));
    ASSERT_EQ(0, send_str(pp.a, "after big"));
    EXPECT_EQ(MP_EPROTO, mp_connection_recv_connection(pp.b, kWait, &got)) << err();
    ASSERT_EQ(0, recv_str(pp.b, &s)) << err();
    EXPECT_EQ("after big", s);
    // A handle where a connection is expected, and the other way round.
    ASSERT_EQ(0, mp_connection_send_handle(pp.a, p.w, mp_getpid())) << err();
    EXPECT_EQ(MP_EPROTO, mp_connection_recv_connection(pp.b, kWait, &got)) << err();
    EXPECT_EQ(nullptr, got);
    PipePair x;
    ASSERT_EQ(0, mp_connection_send_connection(pp.a, x.b, mp_getpid())) << err();
    EXPECT_EQ(MP_EPROTO, mp_connection_recv_handle(pp.b, kWait, &h)) << err();
    if (kWindows) {
        // The wire says what it carries: a handle is not a socket.
        ASSERT_EQ(0, mp_connection_send_handle(pp.a, p.w, mp_getpid())) << err();
        EXPECT_EQ(MP_EPROTO, mp_connection_recv_socket(pp.b, kWait, &h)) << err();
    }
    // Still aligned: a handle goes through.
    ASSERT_EQ(0, mp_connection_send_handle(pp.a, p.w, mp_getpid())) << err();
    ASSERT_EQ(0, mp_connection_recv_handle(pp.b, kWait, &h)) << err();
    handle_close(h);
    // Read-only and write-only ends.
    PipePair one(false);
    EXPECT_EQ(MP_EPERM, mp_connection_send_handle(one.a, p.w, mp_getpid()));
    EXPECT_EQ(MP_EPERM, mp_connection_recv_handle(one.b, 0, &h));
    // A closed connection, a closed connection to send, the peer gone.
    PipePair cl;
    ASSERT_EQ(0, mp_connection_close(cl.a));
    EXPECT_EQ(MP_ECLOSED, mp_connection_send_handle(cl.a, p.w, mp_getpid()));
    EXPECT_EQ(MP_ECLOSED, mp_connection_recv_handle(cl.a, 0, &h));
    EXPECT_EQ(MP_ECLOSED, mp_connection_send_connection(pp.a, cl.a, mp_getpid()));
    EXPECT_EQ(MP_ECLOSED, mp_connection_recv_connection(cl.a, 0, &got));
    EXPECT_EQ(MP_EOF, mp_connection_recv_handle(cl.b, kWait, &h)) << err();
    EXPECT_EQ(MP_EPIPE, mp_connection_send_handle(cl.b, p.w, mp_getpid())) << err();
    pipe_close(&p);
}

TEST(Handle, NoHandleLeaks) {
    PipePair pp;
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    auto round = [&] {
        mp_os_handle h = MP_INVALID_OS_HANDLE;
        ASSERT_EQ(0, mp_connection_send_handle(pp.a, p.w, mp_getpid())) << err();
        ASSERT_EQ(0, mp_connection_recv_handle(pp.b, kWait, &h)) << err();
        handle_close(h);
        PipePair x;
        Conn y;
        ASSERT_EQ(0, mp_connection_send_connection(pp.b, x.b, mp_getpid())) << err();
        ASSERT_EQ(0, mp_connection_recv_connection(pp.a, kWait, &y.c)) << err();
        // Refused transfers close what came.
        mp_connection *got = nullptr;
        ASSERT_EQ(0, mp_connection_send_handle(pp.a, p.w, mp_getpid())) << err();
        EXPECT_EQ(MP_EPROTO, mp_connection_recv_connection(pp.b, kWait, &got));
        ASSERT_EQ(0, mp_connection_send_connection(pp.a, x.a, mp_getpid())) << err();
        EXPECT_EQ(MP_EPROTO, mp_connection_recv_handle(pp.b, kWait, &h));
        EXPECT_EQ(MP_EBADF, mp_connection_send_handle(pp.a, MP_INVALID_OS_HANDLE, mp_getpid()));
        for (mp_family f : socket_families()) {
            if (f == MP_AF_PIPE) continue;
            SocketPair sp(f);
            ASSERT_TRUE(sp.ok);
            mp_os_handle fd = MP_INVALID_OS_HANDLE, rs = MP_INVALID_OS_HANDLE;
            ASSERT_EQ(0, mp_connection_fileno(sp.server.c, &fd));
            ASSERT_EQ(0, mp_connection_send_socket(pp.a, fd, mp_getpid())) << err();
            ASSERT_EQ(0, mp_connection_recv_socket(pp.b, kWait, &rs)) << err();
            socket_close(rs);
        }
    };
    round(); // first use: lazily made state (WSAStartup, SIGPIPE) is not a leak
    long before = open_handles();
    ASSERT_GT(before, 0);
    // Wine opens and closes a handle of its own now and then (seen once in CI: one more
    // after the rounds); a leak in a round would show as at least one per round.
    long slack = 0;
#ifdef _WIN32
    slack = 2;
#endif
    const int rounds = 20;
    for (int i = 0; i < rounds; i++) round();
    long after = open_handles();
    EXPECT_LE(after, before + slack) << "before " << before << ", after " << rounds << " rounds";
    EXPECT_GE(after, before - slack);
    pipe_close(&p);
}

// ---- between processes, on every backend ------------------------------------------------

namespace {

class HandleProcess : public ProcessTest {
  protected:
    // The receiving child's pid as the library wants it (on dummy a thread id, which
    // names this process).
    static int64_t dest(mp_process *p) { return mp_process_pid(p); }
};

int64_t parent_pid() { return mp_process_pid(mp_parent_process()); }

// [0] connection, [1] int count (1 when absent): receives count handles, writes "child
// wrote" through each and closes it.
int tgt_write_through_handle(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    int64_t n = mp_args_count(a) > 1 ? mp_args_int(a, 1) : 1;
    for (int64_t i = 0; i < n; i++) {
        mp_os_handle h = MP_INVALID_OS_HANDLE;
        if (mp_connection_recv_handle(c, kCap, &h)) return 31;
        bool ok = write_all(h, "child wrote", 11);
        handle_close(h);
        if (!ok) return 32;
    }
    return 0;
}

// [0] connection: makes a pipe, writes into it, sends its read end to the parent,
// closes both ends and returns at once.
int tgt_send_handle_and_exit(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    Pipe p;
    if (!pipe_open(&p)) return 31;
    if (!write_all(p.w, "left behind", 11)) return 32;
    int rc = mp_connection_send_handle(c, p.r, parent_pid());
    pipe_close(&p);
    return rc ? 33 : 0;
}

// [0] connection: receives a connection, answers one message on it with "echo:" + it,
// then makes a pipe, sends one end to the parent, says "over z" on the other and waits
// for "ack".
int tgt_connections_both_ways(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    mp_connection *y = nullptr;
    if (mp_connection_recv_connection(c, kCap, &y)) return 31;
    std::string s;
    int rc = recv_str(y, &s, kCap);
    if (!rc) rc = send_str(y, "echo:" + s);
    mp_connection_free(y);
    if (rc) return 32;
    mp_connection *z1 = nullptr, *z2 = nullptr;
    if (mp_pipe(true, &z1, &z2)) return 33;
    rc = mp_connection_send_connection(c, z2, parent_pid());
    mp_connection_free(z2);
    if (!rc) rc = send_str(z1, "over z");
    if (!rc) rc = recv_str(z1, &s, kCap);
    mp_connection_free(z1);
    if (rc) return 34;
    return s == "ack" ? 0 : 35;
}

// [0] connection, [1] int socket: receives a connection (a socket when [1] is 1, wrapped
// in one) and echoes one message on it.
int tgt_echo_on_received(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    mp_connection *y = nullptr;
    if (mp_args_int(a, 1)) {
        mp_os_handle s = MP_INVALID_OS_HANDLE;
        if (mp_connection_recv_socket(c, kCap, &s)) return 31;
        if (mp__connection_from_os_handle(s, kSocketKind, true, true, &y)) return 32;
    } else if (mp_connection_recv_connection(c, kCap, &y)) {
        return 33;
    }
    std::string s;
    int rc = recv_str(y, &s, kCap);
    if (!rc) rc = send_str(y, "echo:" + s);
    mp_connection_free(y);
    return rc ? 34 : 0;
}

} // namespace

INSTANTIATE_TEST_SUITE_P(Backends, HandleProcess, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// Sent for the child's pid, then without one (Windows: the child takes it out of this
// process, as CPython's DupHandle with pid None; posix ignores the pid).
TEST_P(HandleProcess, ChildWritesThroughAReceivedPipeHandle) {
    PipePair pp;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), pp.b)) << err();
    a.i(2);
    mp_process *p = start(tgt_write_through_handle, a.get());
    ASSERT_NE(nullptr, p);
    for (int64_t pid : {dest(p), int64_t(0)}) {
        Pipe out;
        ASSERT_TRUE(pipe_open(&out));
        ASSERT_EQ(0, mp_connection_send_handle(pp.a, out.w, pid)) << err();
        handle_close(out.w);
        out.w = MP_INVALID_OS_HANDLE;
        EXPECT_TRUE(read_is(out.r, "child wrote")) << "pid " << pid;
        pipe_close(&out);
    }
    EXPECT_EQ(0, join_code(p));
}

// The handle lives in the kernel (posix) or in the receiver (Windows) once sent: the
// parent takes it after the child has exited.
TEST_P(HandleProcess, HandleFromAChildThatHasExited) {
    PipePair pp;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), pp.b)) << err();
    mp_process *p = start(tgt_send_handle_and_exit, a.get());
    ASSERT_NE(nullptr, p);
    ASSERT_EQ(0, join_code(p));
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_recv_handle(pp.a, kWait, &h)) << err();
    EXPECT_TRUE(read_is(h, "left behind"));
    handle_close(h);
}

TEST_P(HandleProcess, ConnectionsSentBothWays) {
    PipePair carrier, x;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), carrier.b)) << err();
    mp_process *p = start(tgt_connections_both_ways, a.get());
    ASSERT_NE(nullptr, p);
    ASSERT_EQ(0, mp_connection_send_connection(carrier.a, x.b, dest(p))) << err();
    ASSERT_EQ(0, mp_connection_close(x.b)) << "the child's copy does not depend on ours";
    std::string s;
    ASSERT_EQ(0, send_str(x.a, "ping"));
    ASSERT_EQ(0, recv_str(x.a, &s)) << err();
    EXPECT_EQ("echo:ping", s);
    Conn z;
    ASSERT_EQ(0, mp_connection_recv_connection(carrier.a, kWait, &z.c)) << err();
    ASSERT_EQ(0, recv_str(z.c, &s)) << err();
    EXPECT_EQ("over z", s);
    ASSERT_EQ(0, send_str(z.c, "ack"));
    EXPECT_EQ(0, join_code(p));
}

TEST_P(HandleProcess, SocketConnectionSentToAChild) {
    for (mp_family f : socket_families()) {
        for (int raw = 0; raw < 2; raw++) {
            if (raw && f == MP_AF_PIPE) continue; // a named pipe is no socket
            SCOPED_TRACE(std::string(mp_family_name(f)) + (raw ? " raw socket" : " connection"));
            SocketPair sp(f);
            ASSERT_TRUE(sp.ok);
            PipePair carrier;
            Args a;
            ASSERT_EQ(0, mp_args_add_connection(a.get(), carrier.b)) << err();
            a.i(raw);
            mp_process *p = start(tgt_echo_on_received, a.get());
            ASSERT_NE(nullptr, p);
            if (raw) {
                mp_os_handle fd = MP_INVALID_OS_HANDLE;
                ASSERT_EQ(0, mp_connection_fileno(sp.server.c, &fd));
                ASSERT_EQ(0, mp_connection_send_socket(carrier.a, fd, dest(p))) << err();
            } else {
                ASSERT_EQ(0, mp_connection_send_connection(carrier.a, sp.server.c, dest(p)))
                    << err();
            }
            ASSERT_EQ(0, mp_connection_close(sp.server.c));
            std::string s;
            ASSERT_EQ(0, send_str(sp.client.c, "hello socket"));
            ASSERT_EQ(0, recv_str(sp.client.c, &s)) << err();
            EXPECT_EQ("echo:hello socket", s);
            EXPECT_EQ(0, join_code(p));
        }
    }
}

// The carrier itself a socket connection (posix: the in-band AF_UNIX path).
TEST_P(HandleProcess, HandleOverASocketConnection) {
    for (mp_family f : socket_families()) {
        if (!kWindows && f != MP_AF_UNIX) continue; // only AF_UNIX carries fds on posix
        SCOPED_TRACE(mp_family_name(f));
        SocketPair sp(f);
        ASSERT_TRUE(sp.ok);
        Args a;
        ASSERT_EQ(0, mp_args_add_connection(a.get(), sp.server.c)) << err();
        mp_process *p = start(tgt_write_through_handle, a.get());
        ASSERT_NE(nullptr, p);
        Pipe out;
        ASSERT_TRUE(pipe_open(&out));
        ASSERT_EQ(0, mp_connection_send_handle(sp.client.c, out.w, dest(p))) << err();
        handle_close(out.w);
        out.w = MP_INVALID_OS_HANDLE;
        EXPECT_TRUE(read_is(out.r, "child wrote"));
        EXPECT_EQ(0, join_code(p));
        pipe_close(&out);
    }
}
