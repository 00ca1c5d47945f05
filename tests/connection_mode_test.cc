// Connections beyond the defaults: buffered receiving (read-ahead for an end with one
// owner) on pipes and sockets, and on Windows the message-mode pipes CPython uses (no
// length header on the wire, ERROR_MORE_DATA for long messages, empty messages seen by
// wait, the AF_PIPE handshake). Every blocking receive is bounded by a poll first.
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "conn_helpers.h"
#include "targets.h"

#ifdef _WIN32
#include <winsock2.h>
#include <windows.h>
#else
#include <unistd.h>
#endif

using namespace mpt;

namespace {

// A duplex pair: an mp_pipe, or a socket pair wrapped as connections (a byte stream on
// every platform, so read-ahead is exercised on Windows too).
void make_ends(bool socket, ConnPair *e) {
    if (!socket) {
        ASSERT_EQ(0, mp_pipe(true, &e->a, &e->b)) << err();
        return;
    }
    mp_os_handle h[2];
    ASSERT_EQ(0, mp__os_net_socketpair(h)) << err();
    ASSERT_EQ(0, mp__connection_from_os_handle(h[0], kSocketKind, true, true, &e->a)) << err();
    ASSERT_EQ(0, mp__connection_from_os_handle(h[1], kSocketKind, true, true, &e->b)) << err();
}

// Writes raw bytes to a stream end in one call, so one read on the other side can
// take them all.
bool raw_stream_write(mp_connection *c, bool socket, const void *p, size_t n) {
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    if (mp_connection_fileno(c, &h)) return false;
#ifdef _WIN32
    (void)socket;
    return send(static_cast<SOCKET>(h), static_cast<const char *>(p), static_cast<int>(n), 0) ==
           static_cast<int>(n);
#else
    // A duplex mp_pipe writes through its second handle; a socket pair's end is one.
    if (!socket) return false;
    return write(static_cast<int>(h), p, n) == static_cast<ssize_t>(n);
#endif
}

int wait_readable(mp_connection *c, double timeout = kWait) {
    bool ready = false;
    int rc = mp_connection_poll(c, timeout, &ready);
    if (rc) return rc;
    return ready ? 0 : MP_ETIMEDOUT;
}

// Sizes that cross the read-ahead buffer's edges: empty, tiny, around 8 KiB, large.
std::vector<size_t> mixed_sizes() {
    std::vector<size_t> v;
    for (int i = 0; i < 120; i++) v.push_back(static_cast<size_t>((i * 37) % 300));
    for (size_t s : {8187u, 8188u, 8191u, 8192u, 8193u, 20000u, 70000u, 1u << 20}) v.push_back(s);
    for (int i = 0; i < 40; i++) v.push_back(static_cast<size_t>(i % 5));
    return v;
}

} // namespace

TEST(ConnectionBuffered, SwitchesAndArgumentErrors) {
    ConnPair e;
    make_ends(false, &e);
    EXPECT_EQ(!kWindows, mp_connection_buffered(e.a)) << "on by default (read_ahead_test.cc)";
    EXPECT_EQ(MP_EINVAL, mp_connection_set_buffered(nullptr, true));
    EXPECT_FALSE(mp_connection_buffered(nullptr));
    EXPECT_EQ(0, mp_connection_set_buffered(e.a, true)) << err();
    EXPECT_EQ(!kWindows, mp_connection_buffered(e.a)); // Windows pipes read whole messages
    EXPECT_EQ(0, mp_connection_set_buffered(e.a, false)) << err();
    EXPECT_FALSE(mp_connection_buffered(e.a));
    mp_connection_close(e.a);
    EXPECT_EQ(MP_ECLOSED, mp_connection_set_buffered(e.a, true));
}

// Every kind of receive, interleaved, over a stream of mixed sizes written by another
// thread: the read-ahead never loses, reorders or merges a message.
TEST(ConnectionBuffered, MixedReceivesKeepEveryMessage) {
    for (bool socket : {false, true}) {
        SCOPED_TRACE(socket ? "socket pair" : "pipe");
        ConnPair e;
        make_ends(socket, &e);
        ASSERT_EQ(0, mp_connection_set_buffered(e.b, true)) << err();
        const std::vector<size_t> sizes = mixed_sizes();
        int wrc = 0;
        std::thread writer([&] {
            for (size_t i = 0; i < sizes.size() && !wrc; i++)
                wrc = send_str(e.a, pattern(sizes[i], static_cast<unsigned>(i)));
        });
        std::vector<char> small(256);
        for (size_t i = 0; i < sizes.size(); i++) {
            const std::string want = pattern(sizes[i], static_cast<unsigned>(i));
            ASSERT_EQ(0, wait_readable(e.b)) << "message " << i << " " << err();
            std::string got;
            if (i % 3 == 0) {
                ASSERT_EQ(0, recv_str(e.b, &got)) << "message " << i << " " << err();
            } else {
                size_t len = 0;
                void *whole = nullptr;
                int rc = mp_connection_recv_bytes_into(e.b, small.data(), small.size(), 10, &len,
                                                       i % 3 == 1 ? &whole : nullptr);
                ASSERT_EQ(len, want.size()) << "message " << i;
                if (want.size() <= small.size() - 10) {
                    ASSERT_EQ(0, rc) << err();
                    got.assign(small.data() + 10, len);
                } else {
                    ASSERT_EQ(MP_ETOOBIG, rc) << err();
                    if (whole)
                        got.assign(static_cast<const char *>(whole), len);
                    else
                        got = want; // dropped as asked; the next message checks the boundary
                    mp_connection_free_bytes(whole);
                }
            }
            ASSERT_TRUE(got == want) << "message " << i << " of " << want.size() << " bytes";
        }
        writer.join();
        EXPECT_EQ(0, wrc) << err();
        EXPECT_FALSE(mp_connection_closed(e.b));
    }
}

// Two messages sent before the first receive: a buffered stream end takes both in one
// read, so the second is only in our buffer. poll and wait must still report it, the
// held bytes block passing the connection to a child, and turning buffering off keeps
// them for the next receive.
TEST(ConnectionBuffered, HeldBytesAreReadyAndPinTheConnection) {
    for (bool socket : {false, true}) {
        SCOPED_TRACE(socket ? "socket pair" : "pipe");
        ConnPair e;
        make_ends(socket, &e);
        ASSERT_EQ(0, mp_connection_set_buffered(e.b, true));
        const bool stream = socket || !kWindows; // Windows pipes read one message a call
        if (socket) {
            // Both frames in one write, so they arrive together.
            const char two[] = "\0\0\0\5first\0\0\0\6second";
            ASSERT_TRUE(raw_stream_write(e.a, true, two, sizeof two - 1));
        } else {
            // Both are in the pipe before the first read.
            ASSERT_EQ(0, send_str(e.a, "first"));
            ASSERT_EQ(0, send_str(e.a, "second"));
        }
        std::string s;
        ASSERT_EQ(0, recv_str(e.b, &s)) << err();
        EXPECT_EQ("first", s);
        bool ready = false;
        ASSERT_EQ(0, mp_connection_poll(e.b, 0, &ready)) << err();
        EXPECT_TRUE(ready);
        mp_waitable w[2] = {mp_waitable_connection(e.a), mp_waitable_connection(e.b)};
        bool r[2];
        size_t nready = 0;
        ASSERT_EQ(0, mp_wait(w, 2, 0, r, &nready)) << err();
        EXPECT_FALSE(r[0]);
        EXPECT_TRUE(r[1]);
        EXPECT_EQ(1u, nready);
        if (stream) {
            Args a;
            EXPECT_EQ(MP_ESTATE, mp_args_add_connection(a.get(), e.b))
                << "a connection holding read-ahead bytes must not be passed";
        }
        EXPECT_EQ(0, mp_connection_set_buffered(e.b, false)) << err();
        ASSERT_EQ(0, mp_connection_poll(e.b, 0, &ready)) << err();
        EXPECT_TRUE(ready) << "held bytes stay after turning buffering off";
        ASSERT_EQ(0, recv_str(e.b, &s)) << err();
        EXPECT_EQ("second", s);
        EXPECT_EQ(0, mp_connection_set_buffered(e.b, false)) << err();
        EXPECT_EQ(MP_ETIMEDOUT, wait_readable(e.b, 0.05));
    }
}

TEST(ConnectionBuffered, PeerClosingMidMessageIsEof) {
    ConnPair e;
    make_ends(true, &e);
    ASSERT_EQ(0, mp_connection_set_buffered(e.b, true));
    // The header announces 100 bytes; 10 come, then the peer goes.
    const unsigned char frame[14] = {0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    ASSERT_TRUE(raw_stream_write(e.a, true, frame, sizeof frame));
    mp_connection_close(e.a);
    ASSERT_EQ(0, wait_readable(e.b));
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_EOF, mp_connection_recv_bytes(e.b, 0, &p, &n)) << err();
    EXPECT_TRUE(mp_connection_closed(e.b));
}

namespace {

class ConnectionModeProcess : public ProcessTest {};

// [0] connection, [1] count: checks the connection arrived without read-ahead (the
// parent's object reads the same end), turns buffering on and echoes count messages prefixed "echo:". Exit codes 30+ name what failed.
int tgt_buffered_echo(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    if (mp_connection_buffered(c)) return 31;
    if (mp_connection_set_buffered(c, true)) return 32;
    for (int64_t i = 0; i < mp_args_int(a, 1); i++) {
        bool ready = false;
        if (mp_connection_poll(c, kCap, &ready) || !ready) return 33;
        void *p = nullptr;
        size_t n = 0;
        if (mp_connection_recv_bytes(c, 0, &p, &n)) return 34;
        std::string s = "echo:" + std::string(static_cast<char *>(p), n);
        mp_connection_free_bytes(p);
        if (mp_connection_send_bytes(c, s.data(), s.size())) return 35;
    }
    return 0;
}

} // namespace

INSTANTIATE_TEST_SUITE_P(Backends, ConnectionModeProcess, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// A buffered end holding nothing can be passed; the child's connection starts unbuffered
// (the child turns it on) and the parent keeps its own end buffered while they talk.
TEST_P(ConnectionModeProcess, BufferedEndsTalkToAChild) {
    ConnPair e;
    make_ends(false, &e);
    ASSERT_EQ(0, mp_connection_set_buffered(e.a, true));
    ASSERT_EQ(0, mp_connection_set_buffered(e.b, true));
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), e.b)) << err();
    a.i(4);
    mp_process *p = start(tgt_buffered_echo, a.get());
    ASSERT_NE(nullptr, p);
    const std::string msgs[] = {"hello", "", pattern(9000, 3), pattern(1u << 20, 4)};
    for (const auto &m : msgs) {
        ASSERT_EQ(0, send_str(e.a, m)) << err();
        std::string s;
        ASSERT_EQ(0, recv_str(e.a, &s)) << err();
        EXPECT_TRUE(s == "echo:" + m) << "size " << s.size();
    }
    EXPECT_EQ(0, join_code(p));
}

#ifdef _WIN32

namespace {

// One overlapped ReadFile/WriteFile on a raw handle: the Windows error (0 on success).
DWORD raw_io(HANDLE h, bool write, void *buf, DWORD n, DWORD *done) {
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    *done = 0;
    BOOL ok = write ? WriteFile(h, buf, n, nullptr, &ov) : ReadFile(h, buf, n, nullptr, &ov);
    DWORD e = ok ? 0 : GetLastError();
    if (ok || e == ERROR_IO_PENDING || e == ERROR_MORE_DATA) {
        if (WaitForSingleObject(ov.hEvent, static_cast<DWORD>(kWait * 1000)) != WAIT_OBJECT_0) {
            CancelIoEx(h, &ov);
            e = WAIT_TIMEOUT;
        }
        e = GetOverlappedResult(h, &ov, done, TRUE) ? 0 : (e == WAIT_TIMEOUT ? e : GetLastError());
    }
    CloseHandle(ov.hEvent);
    return e;
}

HANDLE handle_of(mp_connection *c) {
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    EXPECT_EQ(0, mp_connection_fileno(c, &h));
    return reinterpret_cast<HANDLE>(h);
}

} // namespace

// What a Windows Python peer reads and writes: one message per ReadFile/WriteFile,
// with no length header.
TEST(ConnectionWinPipe, RawMessagesCarryNoHeader) {
    ConnPair e;
    make_ends(false, &e);
    DWORD flags = 0;
    ASSERT_TRUE(GetNamedPipeInfo(handle_of(e.a), &flags, nullptr, nullptr, nullptr));
    EXPECT_TRUE(flags & PIPE_TYPE_MESSAGE);
    ASSERT_EQ(0, send_str(e.a, "hello world"));
    ASSERT_EQ(0, send_str(e.a, "again"));
    char buf[256];
    DWORD n = 0;
    ASSERT_EQ(0u, raw_io(handle_of(e.b), false, buf, sizeof buf, &n));
    EXPECT_EQ("hello world", std::string(buf, n));
    ASSERT_EQ(0u, raw_io(handle_of(e.b), false, buf, sizeof buf, &n));
    EXPECT_EQ("again", std::string(buf, n));
    // And the other way: raw messages, one of them empty, arrive whole and apart.
    char abc[] = "abc";
    ASSERT_EQ(0u, raw_io(handle_of(e.b), true, abc, 3, &n));
    ASSERT_EQ(0u, raw_io(handle_of(e.b), true, abc, 0, &n));
    ASSERT_EQ(0u, raw_io(handle_of(e.b), true, abc, 2, &n));
    std::string s;
    ASSERT_EQ(0, recv_str(e.a, &s)) << err();
    EXPECT_EQ("abc", s);
    ASSERT_EQ(0, recv_str(e.a, &s)) << err();
    EXPECT_EQ("", s);
    ASSERT_EQ(0, recv_str(e.a, &s)) << err();
    EXPECT_EQ("ab", s);
}

// A message longer than the pipe's buffer is still one message: a short raw read gets
// ERROR_MORE_DATA and PeekNamedPipe sizes the rest; our receives do the same.
TEST(ConnectionWinPipe, LongMessagesComeWithMoreData) {
    ConnPair e;
    make_ends(false, &e);
    const std::string big = pattern(1u << 20, 7), mid = pattern(300000, 8), next = "next";
    int wrc = 0;
    std::thread writer([&] {
        for (const std::string *m : {&big, &mid, &next, &big})
            if (!wrc) wrc = send_str(e.a, *m);
    });
    HANDLE h = handle_of(e.b);
    std::string head(100, '\0');
    DWORD n = 0;
    ASSERT_EQ(static_cast<DWORD>(ERROR_MORE_DATA), raw_io(h, false, &head[0], 100, &n));
    EXPECT_EQ(100u, n);
    DWORD left = 0;
    ASSERT_TRUE(PeekNamedPipe(h, nullptr, 0, nullptr, nullptr, &left));
    EXPECT_EQ(big.size() - 100, left);
    std::string rest(left, '\0');
    ASSERT_EQ(0u, raw_io(h, false, &rest[0], left, &n));
    EXPECT_EQ(left, n);
    EXPECT_TRUE(head + rest == big);
    // recv_bytes_into too short: the whole message is handed over, the next one intact.
    char buf[1000];
    size_t len = 0;
    void *whole = nullptr;
    ASSERT_EQ(0, wait_readable(e.b));
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes_into(e.b, buf, sizeof buf, 0, &len, &whole));
    ASSERT_EQ(mid.size(), len);
    ASSERT_NE(nullptr, whole);
    EXPECT_TRUE(std::string(static_cast<const char *>(whole), len) == mid);
    mp_connection_free_bytes(whole);
    ASSERT_EQ(0, wait_readable(e.b));
    ASSERT_EQ(0, mp_connection_recv_bytes_into(e.b, buf, sizeof buf, 0, &len, nullptr)) << err();
    EXPECT_EQ(next, std::string(buf, len));
    // A maxlength below the message's size is refused before anything is allocated.
    ASSERT_EQ(0, wait_readable(e.b));
    void *p = nullptr;
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(e.b, 1000, &p, &len));
    // A duplex end stops receiving and stays open for sending (CPython's
    // _bad_message_length).
    EXPECT_FALSE(mp_connection_closed(e.b));
    EXPECT_FALSE(mp_connection_readable(e.b));
    EXPECT_TRUE(mp_connection_writable(e.b));
    // The refused message stays unread; closing our end lets the writer finish.
    mp_connection_free(e.b);
    e.b = nullptr;
    writer.join();
    EXPECT_TRUE(wrc == 0 || wrc == MP_EPIPE) << err();
}

// A zero-byte read consumes an empty message (CPython's _got_empty_message): poll and
// wait see it, even with timeout 0, and the receive that follows returns it.
TEST(ConnectionWinPipe, EmptyMessagesAreSeenByPollAndWait) {
    ConnPair e;
    make_ends(false, &e);
    // Alone in the pipe, so PeekNamedPipe counts no bytes: only the zero-byte read sees it.
    ASSERT_EQ(0, send_str(e.a, ""));
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(e.b, 0, &ready)) << err();
    EXPECT_TRUE(ready);
    mp_waitable w[1] = {mp_waitable_connection(e.b)};
    bool r[1];
    ASSERT_EQ(0, mp_wait(w, 1, 0, r, nullptr)) << err();
    EXPECT_TRUE(r[0]);
    {
        // The consumed empty message is ours alone: a child given the end would miss it.
        Args a;
        EXPECT_EQ(MP_ESTATE, mp_args_add_connection(a.get(), e.b));
    }
    std::string s = "?";
    ASSERT_EQ(0, recv_str(e.b, &s)) << err();
    EXPECT_EQ("", s);
    ASSERT_EQ(0, send_str(e.a, "x"));
    ASSERT_EQ(0, recv_str(e.b, &s)) << err();
    EXPECT_EQ("x", s);
    // An empty message that arrives while wait blocks wakes it.
    std::thread later([&] {
        Sleep(100);
        send_str(e.a, "");
    });
    ASSERT_EQ(0, mp_wait(w, 1, kWait, r, nullptr)) << err();
    later.join();
    EXPECT_TRUE(r[0]);
    size_t len = 1;
    char buf[4];
    ASSERT_EQ(0, mp_connection_recv_bytes_into(e.b, buf, sizeof buf, 0, &len, nullptr)) << err();
    EXPECT_EQ(0u, len);
    EXPECT_EQ(MP_ETIMEDOUT, wait_readable(e.b, 0.05));
}

// The AF_PIPE handshake as a raw Windows peer sees it: the challenge is one message of
// exactly "#CHALLENGE#{sha256}" + 40 bytes, and a wrong answer gets "#FAILURE#".
TEST(ConnectionWinPipe, HandshakeOverAfPipeIsUnprefixed) {
    char addr[256];
    ASSERT_EQ(0, mp_arbitrary_address(MP_AF_PIPE, addr, sizeof addr)) << err();
    mp_listener_opts o;
    memset(&o, 0, sizeof o);
    o.family = MP_AF_PIPE;
    o.authkey = "key";
    o.authkey_len = 3;
    mp_listener *l = nullptr;
    ASSERT_EQ(0, mp_listener_new(addr, &o, &l)) << err();
    int arc = 0;
    std::thread server([&] {
        mp_connection *c = nullptr;
        arc = mp_listener_accept(l, kWait, &c);
        mp_connection_free(c);
    });
    std::wstring wname(addr, addr + strlen(addr));
    HANDLE h = CreateFileW(wname.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED, nullptr);
    ASSERT_NE(INVALID_HANDLE_VALUE, h);
    DWORD mode = PIPE_READMODE_MESSAGE;
    EXPECT_TRUE(SetNamedPipeHandleState(h, &mode, nullptr, nullptr));
    char buf[256];
    DWORD n = 0;
    ASSERT_EQ(0u, raw_io(h, false, buf, sizeof buf, &n));
    ASSERT_EQ(11u + 8u + 40u, n);
    EXPECT_EQ(0, memcmp(buf, "#CHALLENGE#{sha256}", 19));
    char answer[8 + 32];
    memcpy(answer, "{sha256}", 8);
    memset(answer + 8, 0, 32);
    ASSERT_EQ(0u, raw_io(h, true, answer, sizeof answer, &n));
    ASSERT_EQ(0u, raw_io(h, false, buf, sizeof buf, &n));
    EXPECT_EQ("#FAILURE#", std::string(buf, n));
    CloseHandle(h);
    server.join();
    EXPECT_EQ(MP_EAUTH, arc);
    mp_listener_free(l);
}

#endif
