// Read-ahead by default (MP_READ_AHEAD_AUTO): an end reads ahead while it has one reader
// and stops for good, in every process holding it, once it may have another (passed to
// a child on any start method, sent over a connection, inherited by a fork, its handle
// taken). What was read ahead before is never lost: a pass is refused until it has been
// received, and a fork child leaves it to its parent. Every blocking receive is bounded.
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "conn_helpers.h"
#include "targets.h"

#ifdef _WIN32
#include <winsock2.h>
#else
#include <unistd.h>
#endif
#ifdef __linux__
#include <fstream>
#endif

using namespace mpt;

namespace {

// A duplex socket pair wrapped as connections: a byte stream on every platform (Windows
// pipes are message-mode and never read ahead).
void socket_ends(ConnPair *e) {
    mp_os_handle h[2];
    ASSERT_EQ(0, mp__os_net_socketpair(h)) << err();
    ASSERT_EQ(0, mp__connection_from_os_handle(h[0], kSocketKind, true, true, &e->a)) << err();
    ASSERT_EQ(0, mp__connection_from_os_handle(h[1], kSocketKind, true, true, &e->b)) << err();
}

// Writes raw bytes on a socket end in one call (the end's handle is taken, so it reads
// no more ahead: it only writes here).
bool raw_send(mp_connection *c, const std::string &bytes) {
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    if (mp_connection_fileno(c, &h)) return false;
#ifdef _WIN32
    return send(static_cast<SOCKET>(h), bytes.data(), static_cast<int>(bytes.size()), 0) ==
           static_cast<int>(bytes.size());
#else
    return write(static_cast<int>(h), bytes.data(), bytes.size()) ==
           static_cast<ssize_t>(bytes.size());
#endif
}

// A message that says which it is: its index (4 bytes, little endian), then a pattern
// seeded by the index. check_msg gives the index, or -1 for anything torn or foreign.
std::string make_msg(uint32_t i, size_t n) {
    std::string s(4, '\0');
    for (int k = 0; k < 4; k++) s[k] = static_cast<char>(i >> (8 * k));
    return s + pattern(n, i);
}

int64_t check_msg(const std::string &s) {
    if (s.size() < 4) return -1;
    uint32_t i = 0;
    for (int k = 0; k < 4; k++)
        i |= static_cast<uint32_t>(static_cast<unsigned char>(s[k])) << (8 * k);
    return s.compare(4, std::string::npos, pattern(s.size() - 4, i)) == 0 ? i : -1;
}

// Sizes around the read-ahead buffer (8 KiB) and small ones, so a read-ahead would
// take several messages, or part of one, in a single read.
size_t msg_size(uint32_t i) {
    static const size_t big[] = {8180, 8200, 20000, 3000};
    return i % 7 == 6 ? big[(i / 7) % 4] : (i * 53) % 200;
}

constexpr uint32_t kTurns = 120;

// [0] the shared receiving end, [1] a duplex baton end. Strict turns with the parent:
// on each "go" it receives one message from the shared end and answers with what it
// was ("<index>" or "bad"). Before the first turn it reports whether its copy reads
// ahead ("ra=0" / "ra=1"). Exit codes 40+ name what failed.
int tgt_turn_reader(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    mp_connection *baton = mp_args_connection(a, 1);
    if (!c || !baton) return 40;
    std::string first = mp_connection_buffered(c) ? "ra=1" : "ra=0";
    if (mp_connection_read_ahead(c) != MP_READ_AHEAD_AUTO) first = "mode";
    if (send_str(baton, first)) return 41;
    for (;;) {
        std::string go;
        if (recv_str(baton, &go, kCap)) return 42;
        if (go == "end") return 0;
        std::string m;
        int rc = recv_str(c, &m, kCap);
        std::string ans = rc ? "err" : (check_msg(m) < 0 ? "bad" : std::to_string(check_msg(m)));
        if (send_str(baton, ans)) return 43;
    }
}

// Linux: the read system calls this thread made so far (/proc/thread-self/io).
#ifdef __linux__
long thread_reads() {
    std::ifstream f("/proc/thread-self/io");
    std::string k;
    long v = -1;
    while (f >> k >> v)
        if (k == "syscr:") return v;
    return -1;
}
#endif

} // namespace

TEST(ReadAhead, OnByDefaultAndTheModes) {
    for (bool sock : {false, true}) {
        SCOPED_TRACE(sock ? "socket pair" : "pipe");
        ConnPair e;
        if (sock)
            socket_ends(&e);
        else
            ASSERT_EQ(0, mp_pipe(true, &e.a, &e.b)) << err();
        // Windows pipes read whole messages; posix socket pairs are AF_UNIX, where a
        // read-ahead would drop a handle sent in-band.
        const bool stream = sock ? kWindows : !kWindows;
        EXPECT_EQ(MP_READ_AHEAD_AUTO, mp_connection_read_ahead(e.a));
        EXPECT_EQ(stream, mp_connection_buffered(e.a));
        EXPECT_EQ(stream, mp_connection_buffered(e.b));
        ASSERT_EQ(0, mp_connection_set_read_ahead(e.a, MP_READ_AHEAD_OFF)) << err();
        EXPECT_EQ(MP_READ_AHEAD_OFF, mp_connection_read_ahead(e.a));
        EXPECT_FALSE(mp_connection_buffered(e.a));
        ASSERT_EQ(0, mp_connection_set_read_ahead(e.a, MP_READ_AHEAD_AUTO)) << err();
        EXPECT_EQ(stream, mp_connection_buffered(e.a));
        ASSERT_EQ(0, mp_connection_set_buffered(e.a, false)) << err();
        EXPECT_EQ(MP_READ_AHEAD_OFF, mp_connection_read_ahead(e.a));
        ASSERT_EQ(0, mp_connection_set_buffered(e.a, true)) << err();
        EXPECT_EQ(MP_READ_AHEAD_ON, mp_connection_read_ahead(e.a));
        EXPECT_EQ(sock || !kWindows, mp_connection_buffered(e.a));
        // Taking the handle stops AUTO (the caller may poll it with the OS), not ON.
        mp_os_handle h;
        ASSERT_EQ(0, mp_connection_fileno(e.a, &h)) << err();
        ASSERT_EQ(0, mp_connection_fileno(e.b, &h)) << err();
        EXPECT_EQ(sock || !kWindows, mp_connection_buffered(e.a));
        EXPECT_FALSE(mp_connection_buffered(e.b));
        ASSERT_EQ(0, mp_connection_set_read_ahead(e.a, MP_READ_AHEAD_AUTO)) << err();
        EXPECT_FALSE(mp_connection_buffered(e.a)) << "a shared end stays off in AUTO";
        // Bad input.
        EXPECT_EQ(MP_EINVAL, mp_connection_set_read_ahead(e.a, static_cast<mp_read_ahead>(7)));
        EXPECT_EQ(MP_EINVAL, mp_connection_set_read_ahead(nullptr, MP_READ_AHEAD_ON));
        EXPECT_EQ(MP_EINVAL, mp_connection_set_buffered(nullptr, true));
        EXPECT_FALSE(mp_connection_buffered(nullptr));
        EXPECT_EQ(MP_READ_AHEAD_AUTO, mp_connection_read_ahead(nullptr));
        mp_connection_close(e.a);
        EXPECT_EQ(MP_ECLOSED, mp_connection_set_read_ahead(e.a, MP_READ_AHEAD_ON));
        EXPECT_FALSE(mp_connection_buffered(e.a));
    }
}

#ifdef __linux__
// The point of the default: a burst of small messages costs one read system call, not
// two per message (counted by the kernel for this thread, not timed).
TEST(ReadAhead, DefaultReadsSmallMessagesInFewSystemCalls) {
    ASSERT_GE(thread_reads(), 0) << "no /proc/thread-self/io";
    for (mp_read_ahead mode : {MP_READ_AHEAD_AUTO, MP_READ_AHEAD_OFF}) {
        SCOPED_TRACE(mode == MP_READ_AHEAD_AUTO ? "default" : "off");
        PipePair p;
        ASSERT_EQ(0, mp_connection_set_read_ahead(p.b, mode)) << err();
        const int n = 50;
        for (int i = 0; i < n; i++) ASSERT_EQ(0, send_str(p.a, make_msg(i, 10))) << err();
        long before = thread_reads();
        for (int i = 0; i < n; i++) {
            char buf[64];
            size_t len = 0;
            ASSERT_EQ(0, mp_connection_recv_bytes_into(p.b, buf, sizeof buf, 0, &len, nullptr));
            ASSERT_EQ(i, check_msg(std::string(buf, len)));
        }
        long reads = thread_reads() - before; // counts the /proc read itself too
        if (mode == MP_READ_AHEAD_AUTO)
            EXPECT_LE(reads, 5) << "50 messages of 14 bytes fit in one read";
        else
            EXPECT_GE(reads, 2 * n) << "a header, then a payload";
    }
}
#endif

// Held bytes are never lost: a pass is refused while some are held, the refusal stops
// the read-ahead, and once they are received the pass goes through.
TEST(ReadAhead, HeldBytesRefuseAPassUntilReceived) {
    for (bool sock : {false, true}) {
        SCOPED_TRACE(sock ? "socket pair" : "pipe");
        ConnPair e;
        if (sock)
            socket_ends(&e);
        else
            ASSERT_EQ(0, mp_pipe(true, &e.a, &e.b)) << err();
        const bool stream = sock ? kWindows : !kWindows; // reads ahead by default
        if (sock) {
            // The three frames in one write, so that they arrive together.
            std::string frames;
            for (uint32_t i = 0; i < 3; i++) {
                std::string m = make_msg(i, 20);
                frames += std::string("\0\0\0", 3) + static_cast<char>(m.size()) + m;
            }
            ASSERT_TRUE(raw_send(e.a, frames));
        } else {
            for (uint32_t i = 0; i < 3; i++) ASSERT_EQ(0, send_str(e.a, make_msg(i, 20)));
        }
        std::string s;
        ASSERT_EQ(0, recv_str(e.b, &s)) << err();
        EXPECT_EQ(0, check_msg(s));
        Args a;
        int rc = mp_args_add_connection(a.get(), e.b);
        if (stream) {
            EXPECT_EQ(MP_ESTATE, rc);
            EXPECT_NE(nullptr, strstr(mp_last_error_message(), "read ahead")) << err();
            EXPECT_FALSE(mp_connection_buffered(e.b)) << "a refused pass stops the read-ahead";
            ASSERT_EQ(0, recv_str(e.b, &s)) << err();
            EXPECT_EQ(1, check_msg(s));
            ASSERT_EQ(0, recv_str(e.b, &s)) << err();
            EXPECT_EQ(2, check_msg(s));
            EXPECT_EQ(0, mp_args_add_connection(a.get(), e.b)) << err();
        } else {
            EXPECT_EQ(0, rc) << err();
            for (int64_t want : {1, 2}) {
                ASSERT_EQ(0, recv_str(e.b, &s)) << err();
                EXPECT_EQ(want, check_msg(s));
            }
        }
        bool ready = true;
        ASSERT_EQ(0, mp_connection_poll(e.b, 0, &ready)) << err();
        EXPECT_FALSE(ready);
    }
}

// Sent over a connection: the sender's object stops reading ahead, the receiver's copy
// starts without; bytes held refuse the send until received.
TEST(ReadAhead, SendingAConnectionSwitchesBothOff) {
    PipePair carrier;
    PipePair x;
    const bool stream = !kWindows;
    ASSERT_EQ(0, send_str(x.a, make_msg(0, 5))) << err();
    ASSERT_EQ(0, send_str(x.a, make_msg(1, 5))) << err();
    std::string s;
    ASSERT_EQ(0, recv_str(x.b, &s)) << err();
    int rc = mp_connection_send_connection(carrier.a, x.b, mp_getpid());
    if (stream) {
        EXPECT_EQ(MP_ESTATE, rc) << err();
        ASSERT_EQ(0, recv_str(x.b, &s)) << err();
        EXPECT_EQ(1, check_msg(s));
        ASSERT_EQ(0, mp_connection_send_connection(carrier.a, x.b, mp_getpid())) << err();
    } else {
        ASSERT_EQ(0, rc) << err();
        ASSERT_EQ(0, recv_str(x.b, &s)) << err();
    }
    EXPECT_FALSE(mp_connection_buffered(x.b));
    mp_connection *got = nullptr;
    ASSERT_EQ(0, mp_connection_recv_connection(carrier.b, kWait, &got)) << err();
    EXPECT_FALSE(mp_connection_buffered(got));
    EXPECT_EQ(MP_READ_AHEAD_AUTO, mp_connection_read_ahead(got));
    // Two readers of one end, taking turns: each message whole, in order.
    for (uint32_t i = 2; i < 40; i++) ASSERT_EQ(0, send_str(x.a, make_msg(i, (i * 53) % 200)));
    for (uint32_t i = 2; i < 40; i++) {
        ASSERT_EQ(0, recv_str(i % 2 ? got : x.b, &s)) << err();
        EXPECT_EQ(static_cast<int64_t>(i), check_msg(s));
    }
    mp_connection_free(got);
}

namespace {
class ReadAheadProcess : public ProcessTest {};

// [0] the end, [1] an int: mode expected of the child's copy; echoes one message.
int tgt_report_mode(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 50;
    if (mp_connection_buffered(c)) return 51;
    if (mp_connection_read_ahead(c) != MP_READ_AHEAD_AUTO) return 52;
    std::string s;
    if (recv_str(c, &s, kCap)) return 53;
    return send_str(c, "echo:" + s) ? 54 : 0;
}

// [0] raw pointer of the parent's receiving end (fork: the same image), [1] which case:
// 0, the parent held whole messages: this copy reads the next one from the pipe;
// 1, the parent held part of a message: this copy refuses to receive.
int tgt_inherited_end(mp_args *a) {
    auto *c = reinterpret_cast<mp_connection *>(static_cast<intptr_t>(mp_args_int(a, 0)));
    if (mp_connection_buffered(c)) return 60;
    std::string s;
    int rc = recv_str(c, &s, kCap);
    if (mp_args_int(a, 1) == 1) return rc == MP_ESTATE ? 0 : 61;
    if (rc) return 62;
    return check_msg(s) == 10 ? 0 : 63;
}
} // namespace

INSTANTIATE_TEST_SUITE_P(Backends, ReadAheadProcess, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// Passing an end to a child stops the read-ahead of the parent's object and the child's
// copy starts without; the other end of the pipe keeps its own.
TEST_P(ReadAheadProcess, PassingSwitchesBothEndsOff) {
    PipePair p;
    const bool stream = !kWindows;
    EXPECT_EQ(stream, mp_connection_buffered(p.b));
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), p.b)) << err();
    EXPECT_FALSE(mp_connection_buffered(p.b));
    EXPECT_EQ(MP_READ_AHEAD_AUTO, mp_connection_read_ahead(p.b));
    mp_process *proc = start(tgt_report_mode, a.get());
    ASSERT_NE(nullptr, proc);
    ASSERT_EQ(0, send_str(p.a, "hi")) << err();
    std::string s;
    ASSERT_EQ(0, recv_str(p.a, &s)) << err();
    EXPECT_EQ("echo:hi", s);
    EXPECT_EQ(0, join_code(proc));
    // p.a was not passed; a fork (fork, apr) inherits it too, spawn and threads do not.
    if (backend() == "spawn" || backend() == "forkserver" || dummy()) {
        EXPECT_EQ(stream, mp_connection_buffered(p.a));
    }
}

// Explicitly on stays on in the parent after a pass (the caller vouches for it); the
// child's copy starts in the default mode, without read-ahead.
TEST_P(ReadAheadProcess, ForcedOnStaysOnAfterAPass) {
    PipePair p;
    ASSERT_EQ(0, mp_connection_set_read_ahead(p.b, MP_READ_AHEAD_ON)) << err();
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), p.b)) << err();
    EXPECT_EQ(!kWindows, mp_connection_buffered(p.b));
    mp_process *proc = start(tgt_report_mode, a.get());
    ASSERT_NE(nullptr, proc);
    ASSERT_EQ(0, send_str(p.a, "x")) << err();
    std::string s;
    ASSERT_EQ(0, recv_str(p.a, &s)) << err();
    EXPECT_EQ("echo:x", s);
    EXPECT_EQ(0, join_code(proc));
}

// Two readers of one shared end, the parent and a child, taking strict turns while a
// thread writes a stream of mixed sizes: every message arrives whole and in order, the
// parent getting the even ones and the child the odd ones. A read-ahead in either would
// take the other's next message, or part of it.
TEST_P(ReadAheadProcess, SharedEndReadersTakingTurnsGetWholeMessages) {
    PipePair data(false); // a receives, b sends
    PipePair baton;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), data.a)) << err();
    ASSERT_EQ(0, mp_args_add_connection(a.get(), baton.b)) << err();
    mp_process *proc = start(tgt_turn_reader, a.get());
    ASSERT_NE(nullptr, proc);
    std::string s;
    ASSERT_EQ(0, recv_str(baton.a, &s)) << err();
    EXPECT_EQ("ra=0", s) << "the child's copy must start without read-ahead";
    EXPECT_FALSE(mp_connection_buffered(data.a));
    int wrc = 0;
    std::thread writer([&] {
        for (uint32_t i = 0; i < kTurns && !wrc; i++)
            wrc = send_str(data.b, make_msg(i, msg_size(i)));
    });
    for (uint32_t i = 0; i < kTurns; i++) {
        if (i % 2 == 0) {
            ASSERT_EQ(0, recv_str(data.a, &s)) << "message " << i << ": " << err();
            ASSERT_EQ(static_cast<int64_t>(i), check_msg(s)) << "parent, message " << i;
        } else {
            ASSERT_EQ(0, send_str(baton.a, "go")) << err();
            ASSERT_EQ(0, recv_str(baton.a, &s)) << err();
            ASSERT_EQ(std::to_string(i), s) << "child, message " << i;
        }
    }
    writer.join();
    EXPECT_EQ(0, wrc) << err();
    ASSERT_EQ(0, send_str(baton.a, "end")) << err();
    EXPECT_EQ(0, join_code(proc));
}

// Inherited by a fork (not passed): the parent's object stops reading ahead, the
// child's copy leaves the bytes the parent held to the parent; where they end inside a
// message, the copy refuses to receive. Nothing is lost or received twice.
TEST_P(ReadAheadProcess, ForkInheritedEndLeavesHeldBytesToTheParent) {
    if (backend() != "fork") GTEST_SKIP() << "only a fork child inherits the parent's objects";
    for (int partial : {0, 1}) {
        SCOPED_TRACE(partial ? "a part of a message held" : "whole messages held");
        PipePair p;
        ASSERT_EQ(0, send_str(p.a, make_msg(0, 10))) << err();
        ASSERT_EQ(0, send_str(p.a, make_msg(1, partial ? 20000 : 10))) << err();
        std::string s;
        ASSERT_EQ(0, recv_str(p.b, &s)) << err(); // reads ahead into message 1
        ASSERT_EQ(0, check_msg(s));
        ASSERT_TRUE(mp_connection_buffered(p.b));
        if (!partial) {
            ASSERT_EQ(0, send_str(p.a, make_msg(10, 10))) << err();
        }
        Args a;
        a.i(static_cast<int64_t>(reinterpret_cast<intptr_t>(p.b))).i(partial);
        mp_process *proc = start(tgt_inherited_end, a.get());
        ASSERT_NE(nullptr, proc);
        EXPECT_EQ(0, join_code(proc));
        EXPECT_FALSE(mp_connection_buffered(p.b));
        ASSERT_EQ(0, recv_str(p.b, &s)) << err();
        EXPECT_EQ(1, check_msg(s)) << "the message read ahead before the fork";
        bool ready = true;
        ASSERT_EQ(0, mp_connection_poll(p.b, 0, &ready)) << err();
        EXPECT_FALSE(ready) << "nothing left: the child took message 10";
    }
}
