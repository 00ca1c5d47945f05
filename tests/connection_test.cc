// Connections: framing, Pipe, receive limits, EOF and closed errors, poll, wait, and
// connections passed to children on every backend. Every blocking receive is preceded
// by a poll with a timeout, so a bug fails the test instead of hanging it.
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "conn_helpers.h"
#include "targets.h"

extern "C" {
// Internal framing helpers (core/connection_internal.h), linked from the static library.
size_t mp__conn_frame_encode(uint64_t n, unsigned char hdr[12]);
int mp__conn_frame_decode(const unsigned char *p, size_t avail, uint64_t *size, size_t *hdrlen);
}

using namespace mpt;

namespace {

// A connection reading the raw read end of an OS pipe, so a test can write crafted
// bytes to p.w.
struct RawReader {
    Pipe p;
    mp_connection *c = nullptr;
    RawReader() {
        EXPECT_TRUE(pipe_open(&p));
        EXPECT_EQ(0, mp__connection_from_os_handle(p.r, kPipeKind, true, false, &c)) << err();
        p.r = MP_INVALID_OS_HANDLE; // owned by c
    }
    ~RawReader() {
        mp_connection_free(c);
        pipe_close(&p);
    }
};

} // namespace

// ---- framing ---------------------------------------------------------------------

TEST(ConnectionFrame, SmallHeaderIsFourBytesBigEndian) {
    unsigned char h[12];
    ASSERT_EQ(4u, mp__conn_frame_encode(0, h));
    EXPECT_EQ(0, memcmp(h, "\0\0\0\0", 4));
    ASSERT_EQ(4u, mp__conn_frame_encode(0x01020304, h));
    EXPECT_EQ(0, memcmp(h, "\x01\x02\x03\x04", 4));
    ASSERT_EQ(4u, mp__conn_frame_encode(0x7fffffff, h));
    EXPECT_EQ(0, memcmp(h, "\x7f\xff\xff\xff", 4));
}

TEST(ConnectionFrame, LargeHeaderIsMinusOneAndEightBytes) {
    unsigned char h[12];
    ASSERT_EQ(12u, mp__conn_frame_encode(0x80000000ull, h));
    EXPECT_EQ(0, memcmp(h, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\0", 12));
    ASSERT_EQ(12u, mp__conn_frame_encode(0x0102030405060708ull, h));
    EXPECT_EQ(0, memcmp(h, "\xff\xff\xff\xff\x01\x02\x03\x04\x05\x06\x07\x08", 12));
}

TEST(ConnectionFrame, DecodeRoundTripsAndAsksForMore) {
    const uint64_t sizes[] = {0, 1, 64, 0x7fffffff, 0x80000000ull, 3ull << 30, 1ull << 40};
    for (uint64_t n : sizes) {
        unsigned char h[12];
        size_t hl = mp__conn_frame_encode(n, h), want = 0;
        uint64_t got = 99;
        EXPECT_EQ(MP_EAGAIN, mp__conn_frame_decode(h, 3, &got, &want));
        if (hl == 12) {
            EXPECT_EQ(MP_EAGAIN, mp__conn_frame_decode(h, 4, &got, &want));
            EXPECT_EQ(12u, want);
        }
        ASSERT_EQ(0, mp__conn_frame_decode(h, hl, &got, &want)) << n;
        EXPECT_EQ(n, got);
        EXPECT_EQ(hl, want);
    }
}

TEST(ConnectionFrame, NegativeLengthIsAProtocolError) {
    uint64_t n;
    size_t hl;
    EXPECT_EQ(MP_EPROTO,
              mp__conn_frame_decode((const unsigned char *)"\xff\xff\xff\xfe", 4, &n, &hl));
    EXPECT_EQ(MP_EPROTO, mp__conn_frame_decode((const unsigned char *)"\x80\0\0\0", 4, &n, &hl));
}

TEST(ConnectionFrame, WireBytesAreCPythons) {
    RawReader r;
    mp_connection *w = nullptr;
    // A writer on the raw pipe's write end, to see the exact bytes on the wire.
    Pipe p;
    ASSERT_TRUE(pipe_open(&p));
    ASSERT_EQ(0, mp__connection_from_os_handle(p.w, kPipeKind, false, true, &w)) << err();
    p.w = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_send_bytes(w, "abc", 3)) << err();
    ASSERT_EQ(0, mp_connection_send_bytes(w, nullptr, 0)) << err();
    char buf[11] = {0};
    ASSERT_TRUE(read_exact(p.r, buf, 11, kWait));
    EXPECT_EQ(0, memcmp(buf,
                        "\0\0\0\x03"
                        "abc"
                        "\0\0\0\0",
                        11));
    mp_connection_free(w);
    pipe_close(&p);
}

// ---- pipes, sending and receiving --------------------------------------------------

TEST(Connection, DuplexBothWays) {
    PipePair pp(true);
    ASSERT_TRUE(pp.a && pp.b);
    EXPECT_TRUE(mp_connection_readable(pp.a) && mp_connection_writable(pp.a));
    EXPECT_TRUE(mp_connection_readable(pp.b) && mp_connection_writable(pp.b));
    ASSERT_EQ(0, send_str(pp.a, "ping")) << err();
    std::string s;
    ASSERT_EQ(0, recv_str(pp.b, &s)) << err();
    EXPECT_EQ("ping", s);
    ASSERT_EQ(0, send_str(pp.b, "pong")) << err();
    ASSERT_EQ(0, recv_str(pp.a, &s)) << err();
    EXPECT_EQ("pong", s);
}

TEST(Connection, OneWayEnds) {
    PipePair pp(false);
    ASSERT_TRUE(pp.a && pp.b);
    EXPECT_TRUE(mp_connection_readable(pp.a));
    EXPECT_FALSE(mp_connection_writable(pp.a));
    EXPECT_FALSE(mp_connection_readable(pp.b));
    EXPECT_TRUE(mp_connection_writable(pp.b));
    EXPECT_EQ(MP_EPERM, send_str(pp.a, "x"));
    std::string s;
    EXPECT_EQ(MP_EPERM, recv_str(pp.b, &s));
    ASSERT_EQ(0, send_str(pp.b, "one way")) << err();
    ASSERT_EQ(0, recv_str(pp.a, &s)) << err();
    EXPECT_EQ("one way", s);
}

TEST(Connection, ZeroLengthMessages) {
    PipePair pp;
    ASSERT_EQ(0, mp_connection_send_bytes(pp.a, nullptr, 0)) << err();
    ASSERT_EQ(0, mp_connection_send_bytes(pp.a, "", 0)) << err();
    for (int i = 0; i < 2; i++) {
        bool ready = false;
        ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
        ASSERT_TRUE(ready);
        void *p = nullptr;
        size_t n = 7;
        ASSERT_EQ(0, mp_connection_recv_bytes(pp.b, 0, &p, &n)) << err();
        EXPECT_NE(nullptr, p);
        EXPECT_EQ(0u, n);
        mp_connection_free_bytes(p);
    }
    char buf[4];
    size_t n = 9;
    ASSERT_EQ(0, mp_connection_send_bytes(pp.a, nullptr, 0));
    ASSERT_EQ(0, mp_connection_recv_bytes_into(pp.b, buf, sizeof buf, 4, &n, nullptr)) << err();
    EXPECT_EQ(0u, n);
}

TEST(Connection, SendBytesRange) {
    PipePair pp;
    const char *m = "0123456789";
    ASSERT_EQ(0, mp_connection_send_bytes_range(pp.a, m, 10, 2, 3)) << err();
    ASSERT_EQ(0, mp_connection_send_bytes_range(pp.a, m, 10, 7, -1)) << err();
    ASSERT_EQ(0, mp_connection_send_bytes_range(pp.a, m, 10, 10, -1)) << err();
    std::string s;
    ASSERT_EQ(0, recv_str(pp.b, &s));
    EXPECT_EQ("234", s);
    ASSERT_EQ(0, recv_str(pp.b, &s));
    EXPECT_EQ("789", s);
    ASSERT_EQ(0, recv_str(pp.b, &s));
    EXPECT_EQ("", s);
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(pp.a, m, 10, -1, 2));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(pp.a, m, 10, 11, -1));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(pp.a, m, 10, 5, 6));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(
                             pp.a, m, 10, 0, -2 - (int64_t)1e12 + (int64_t)1e12 + 1 + 100));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(pp.a, nullptr, 10, 0, 1));
    // Only -1 means "to the end" (Python's None); any other negative size is refused.
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(pp.a, m, 10, 0, -2));
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes_range(pp.a, m, 10, 3, INT64_MIN));
    bool ready = true;
    ASSERT_EQ(0, mp_connection_poll(pp.b, 0, &ready));
    EXPECT_FALSE(ready) << "a refused send wrote nothing";
}

TEST(Connection, ManySmallMessagesKeepOrder) {
    PipePair pp;
    for (int i = 0; i < 200; i++) ASSERT_EQ(0, send_str(pp.a, "m" + std::to_string(i)));
    for (int i = 0; i < 200; i++) {
        std::string s;
        ASSERT_EQ(0, recv_str(pp.b, &s));
        ASSERT_EQ("m" + std::to_string(i), s);
    }
}

static void large_message(bool duplex, size_t size) {
    PipePair pp(duplex);
    mp_connection *rd = pp.a, *wr = duplex ? pp.a : pp.b;
    mp_connection *peer = duplex ? pp.b : nullptr;
    std::string big = pattern(size, 7);
    int send_rc = -999;
    std::thread t(
        [&] { send_rc = mp_connection_send_bytes(duplex ? peer : wr, big.data(), big.size()); });
    std::string got;
    int rc = recv_str(rd, &got);
    t.join();
    (void)wr;
    ASSERT_EQ(0, send_rc) << err();
    ASSERT_EQ(0, rc) << err();
    ASSERT_EQ(big.size(), got.size());
    EXPECT_TRUE(big == got) << "payload differs";
}

TEST(Connection, LargeMessage64MiBDuplex) { large_message(true, 64u << 20); }
TEST(Connection, LargeMessage64MiBOneWay) { large_message(false, (64u << 20) + 3); }

TEST(Connection, LargeMessageIntoCallerBuffer) {
    PipePair pp;
    const size_t n = (8u << 20) + 11;
    std::string big = pattern(n, 3);
    std::thread t([&] { mp_connection_send_bytes(pp.a, big.data(), big.size()); });
    std::vector<char> buf(n + 16);
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    ASSERT_TRUE(ready);
    size_t len = 0;
    int rc = mp_connection_recv_bytes_into(pp.b, buf.data(), buf.size(), 16, &len, nullptr);
    t.join();
    ASSERT_EQ(0, rc) << err();
    ASSERT_EQ(n, len);
    EXPECT_EQ(0, memcmp(buf.data() + 16, big.data(), n));
}

// ---- limits ------------------------------------------------------------------------

// CPython's _bad_message_length: a duplex end receives no more but can still send.
TEST(Connection, MaxlengthExceededEndsReceivingOnADuplexEnd) {
    PipePair pp;
    ASSERT_EQ(0, send_str(pp.a, std::string(100, 'x')));
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    void *p = (void *)1;
    size_t n = 5;
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(pp.b, 99, &p, &n));
    EXPECT_EQ(nullptr, p);
    EXPECT_EQ(0u, n);
    EXPECT_FALSE(mp_connection_closed(pp.b));
    EXPECT_FALSE(mp_connection_readable(pp.b));
    EXPECT_TRUE(mp_connection_writable(pp.b));
    EXPECT_EQ(MP_EPERM, mp_connection_recv_bytes(pp.b, 0, &p, &n))
        << "receiving after a bad length";
    ASSERT_EQ(0, send_str(pp.b, "still writable")) << err();
    std::string s;
    ASSERT_EQ(0, recv_str(pp.a, &s)) << err();
    EXPECT_EQ("still writable", s);
}

// ... and a read-only end is closed.
TEST(Connection, MaxlengthExceededClosesAReadOnlyEnd) {
    PipePair pp(false);
    ASSERT_EQ(0, send_str(pp.b, std::string(100, 'x')));
    void *p = (void *)1;
    size_t n = 5;
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.a, kWait, &ready));
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(pp.a, 99, &p, &n));
    EXPECT_TRUE(mp_connection_closed(pp.a))
        << "Python closes a read-only end on a bad message length";
    EXPECT_EQ(MP_ECLOSED, mp_connection_recv_bytes(pp.a, 0, &p, &n));
}

// A closed end is neither readable nor writable (Python's readable/writable report
// the end's mode even then; the error forms say MP_ECLOSED), whether the program
// closed it or the library did (a read-only end after a bad message length, an end
// whose peer went in the middle of a message).
TEST(Connection, QueriesOnAClosedEnd) {
    {
        PipePair pp;
        bool b = false;
        ASSERT_EQ(0, mp_connection_is_readable(pp.a, &b)) << err();
        EXPECT_TRUE(b);
        ASSERT_EQ(0, mp_connection_is_writable(pp.a, &b)) << err();
        EXPECT_TRUE(b);
        ASSERT_EQ(0, mp_connection_close(pp.a));
        EXPECT_TRUE(mp_connection_closed(pp.a));
        EXPECT_FALSE(mp_connection_readable(pp.a));
        EXPECT_FALSE(mp_connection_writable(pp.a));
        b = true;
        EXPECT_EQ(MP_ECLOSED, mp_connection_is_readable(pp.a, &b));
        EXPECT_FALSE(b);
        b = true;
        EXPECT_EQ(MP_ECLOSED, mp_connection_is_writable(pp.a, &b));
        EXPECT_FALSE(b);
        EXPECT_EQ(MP_EINVAL, mp_connection_is_readable(nullptr, &b));
        EXPECT_EQ(MP_EINVAL, mp_connection_is_writable(pp.b, nullptr));
    }
    {
        // The library closes a read-only end after a bad message length.
        PipePair pp(false);
        ASSERT_EQ(0, send_str(pp.b, std::string(100, 'x')));
        bool ready = false;
        ASSERT_EQ(0, mp_connection_poll(pp.a, kWait, &ready));
        void *p = nullptr;
        size_t n = 0;
        EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(pp.a, 99, &p, &n));
        ASSERT_TRUE(mp_connection_closed(pp.a));
        EXPECT_FALSE(mp_connection_readable(pp.a)) << "closed by the library";
        bool b = true;
        EXPECT_EQ(MP_ECLOSED, mp_connection_is_readable(pp.a, &b));
        EXPECT_EQ(MP_ECLOSED, mp_connection_is_writable(pp.a, &b));
    }
    {
        // An end that reads and writes (its flags; only reading is used here) whose
        // peer went in the middle of a message is closed by the library: it must not
        // still say it can send.
        Pipe raw;
        ASSERT_TRUE(pipe_open(&raw));
        mp_connection *c = nullptr;
        ASSERT_EQ(0, mp__connection_from_os_handle(raw.r, kPipeKind, true, true, &c)) << err();
        raw.r = MP_INVALID_OS_HANDLE; // owned by c
        ASSERT_TRUE(write_all(raw.w,
                              "\0\0\0\x64"
                              "abc",
                              7)); // announces 100 bytes, sends 3
        handle_close(raw.w);
        raw.w = MP_INVALID_OS_HANDLE;
        EXPECT_TRUE(mp_connection_writable(c));
        void *p = nullptr;
        size_t n = 0;
        EXPECT_EQ(MP_EOF, mp_connection_recv_bytes(c, 0, &p, &n));
        ASSERT_TRUE(mp_connection_closed(c));
        EXPECT_FALSE(mp_connection_writable(c)) << "closed by the library";
        bool b = true;
        EXPECT_EQ(MP_ECLOSED, mp_connection_is_writable(c, &b));
        EXPECT_FALSE(b);
        mp_connection_free(c);
        pipe_close(&raw);
    }
    {
        // After a bad length a duplex end is open: it sends, it no longer receives.
        PipePair pp;
        ASSERT_EQ(0, send_str(pp.a, std::string(100, 'x')));
        bool ready = false;
        ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
        void *p = nullptr;
        size_t n = 0;
        EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(pp.b, 99, &p, &n));
        bool b = true;
        ASSERT_EQ(0, mp_connection_is_readable(pp.b, &b)) << err();
        EXPECT_FALSE(b);
        ASSERT_EQ(0, mp_connection_is_writable(pp.b, &b)) << err();
        EXPECT_TRUE(b);
    }
}

TEST(Connection, MaxlengthExactlyFits) {
    PipePair pp;
    ASSERT_EQ(0, send_str(pp.a, std::string(100, 'x')));
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    void *p = nullptr;
    size_t n = 0;
    ASSERT_EQ(0, mp_connection_recv_bytes(pp.b, 100, &p, &n)) << err();
    EXPECT_EQ(100u, n);
    mp_connection_free_bytes(p);
}

TEST(Connection, ConnectionMaximum) {
    PipePair pp;
    EXPECT_EQ(MP_CONNECTION_DEFAULT_MAX_MESSAGE, mp_connection_max_message(pp.b));
    ASSERT_EQ(0, mp_connection_set_max_message(pp.b, 10));
    ASSERT_EQ(0, send_str(pp.a, std::string(10, 'x')));
    ASSERT_EQ(0, send_str(pp.a, std::string(11, 'x')));
    std::string s;
    ASSERT_EQ(0, recv_str(pp.b, &s)) << err();
    EXPECT_EQ(MP_ETOOBIG, recv_str(pp.b, &s));
    EXPECT_FALSE(mp_connection_readable(pp.b));
}

// A crafted header announcing 3 GiB (the -1 + 8-byte form): refused by the default
// maximum before anything is allocated.
TEST(Connection, HugeHeaderRefusedWithoutAllocating) {
    RawReader r;
    ASSERT_TRUE(write_all(r.p.w, "\xff\xff\xff\xff\0\0\0\0\xc0\0\0\0", 12));
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(r.c, 0, &p, &n));
    EXPECT_TRUE(mp_connection_closed(r.c));
}

TEST(Connection, HugeHeaderWithMaxlength) {
    RawReader r;
    ASSERT_EQ(0, mp_connection_set_max_message(r.c, 0)); // no connection maximum
    ASSERT_TRUE(write_all(r.p.w, "\xff\xff\xff\xff\x7f\0\0\0\0\0\0\0", 12));
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes(r.c, 1 << 20, &p, &n));
}

TEST(Connection, NegativeHeaderIsProtocolError) {
    RawReader r;
    ASSERT_TRUE(write_all(r.p.w, "\xff\xff\xff\xfe", 4));
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_EPROTO, mp_connection_recv_bytes(r.c, 0, &p, &n));
    EXPECT_TRUE(mp_connection_closed(r.c));
}

TEST(Connection, PeerGoneMidMessageIsEof) {
    RawReader r;
    ASSERT_TRUE(write_all(r.p.w,
                          "\0\0\0\x64"
                          "0123456789",
                          14));
    handle_close(r.p.w);
    r.p.w = MP_INVALID_OS_HANDLE;
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_EOF, mp_connection_recv_bytes(r.c, 0, &p, &n));
    EXPECT_TRUE(mp_connection_closed(r.c)) << "a torn message leaves the stream unusable";
}

TEST(Connection, RecvBytesIntoTooShortDeliversTheMessage) {
    PipePair pp;
    std::string m = pattern(100, 1);
    ASSERT_EQ(0, send_str(pp.a, m));
    ASSERT_EQ(0, send_str(pp.a, m));
    ASSERT_EQ(0, send_str(pp.a, "after"));
    char buf[64];
    size_t n = 0;
    void *whole = nullptr;
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes_into(pp.b, buf, sizeof buf, 0, &n, &whole));
    EXPECT_EQ(100u, n);
    ASSERT_NE(nullptr, whole);
    EXPECT_EQ(0, memcmp(whole, m.data(), 100));
    mp_connection_free_bytes(whole);
    EXPECT_FALSE(mp_connection_closed(pp.b));
    // Without a taker the message is still consumed; offset counts against the room.
    EXPECT_EQ(MP_ETOOBIG, mp_connection_recv_bytes_into(pp.b, buf, sizeof buf, 60, &n, nullptr));
    EXPECT_EQ(100u, n);
    ASSERT_EQ(0, mp_connection_recv_bytes_into(pp.b, buf, sizeof buf, 59, &n, nullptr)) << err();
    EXPECT_EQ(5u, n);
    EXPECT_EQ(0, memcmp(buf + 59, "after", 5));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_bytes_into(pp.b, buf, sizeof buf, 65, &n, nullptr));
}

// ---- end of file, closed connections, bad input -------------------------------------

TEST(Connection, EofAfterPeerClose) {
    for (bool duplex : {true, false}) {
        PipePair pp(duplex);
        mp_connection *rd = pp.a, *wr = duplex ? pp.a : pp.b, *other = duplex ? pp.b : pp.b;
        (void)wr;
        ASSERT_EQ(0, send_str(other, "last"));
        ASSERT_EQ(0, mp_connection_close(other));
        std::string s;
        ASSERT_EQ(0, recv_str(rd, &s)) << err();
        EXPECT_EQ("last", s);
        bool ready = false;
        ASSERT_EQ(0, mp_connection_poll(rd, kWait, &ready));
        EXPECT_TRUE(ready) << "end of file is readable";
        EXPECT_EQ(MP_EOF, recv_str(rd, &s));
        EXPECT_FALSE(mp_connection_closed(rd)) << "EOF does not close our end (as Python)";
        EXPECT_EQ(MP_EOF, recv_str(rd, &s));
    }
}

TEST(Connection, SendToClosedPeerIsEpipe) {
    for (bool duplex : {true, false}) {
        PipePair pp(duplex);
        mp_connection *wr = duplex ? pp.b : pp.b;
        ASSERT_EQ(0, mp_connection_close(pp.a));
        // The first write may still succeed on some systems; a later one must fail.
        int rc = 0;
        for (int i = 0; i < 4 && rc == 0; i++) rc = send_str(wr, std::string(1000, 'x'));
        EXPECT_EQ(MP_EPIPE, rc) << mp_err_name(rc) << " " << err();
    }
}

TEST(Connection, ClosedConnectionErrors) {
    PipePair pp;
    ASSERT_EQ(0, mp_connection_close(pp.a));
    EXPECT_EQ(0, mp_connection_close(pp.a)) << "twice is fine";
    EXPECT_EQ(0, mp_connection_close(nullptr));
    mp_connection_free(nullptr);
    EXPECT_TRUE(mp_connection_closed(pp.a));
    EXPECT_EQ(MP_ECLOSED, send_str(pp.a, "x"));
    std::string s;
    void *p = nullptr;
    size_t n = 0;
    EXPECT_EQ(MP_ECLOSED, mp_connection_recv_bytes(pp.a, 0, &p, &n));
    char buf[4];
    EXPECT_EQ(MP_ECLOSED, mp_connection_recv_bytes_into(pp.a, buf, 4, 0, &n, nullptr));
    bool ready = true;
    EXPECT_EQ(MP_ECLOSED, mp_connection_poll(pp.a, 0, &ready));
    EXPECT_FALSE(ready);
    mp_os_handle h = 0;
    EXPECT_EQ(MP_ECLOSED, mp_connection_fileno(pp.a, &h));
    EXPECT_EQ(MP_INVALID_OS_HANDLE, h);
    mp_waitable w = mp_waitable_connection(pp.a);
    EXPECT_EQ(MP_ECLOSED, mp_wait(&w, 1, 0, &ready, nullptr));
    Args a;
    EXPECT_EQ(MP_ECLOSED, mp_args_add_connection(a.get(), pp.a));
}

TEST(Connection, NullAndBadArguments) {
    mp_connection *c = (mp_connection *)1, *d = (mp_connection *)1;
    EXPECT_EQ(MP_EINVAL, mp_pipe(true, nullptr, &d));
    EXPECT_EQ(nullptr, d);
    EXPECT_EQ(MP_EINVAL, mp_pipe(true, &c, nullptr));
    EXPECT_EQ(nullptr, c);
    void *p = nullptr;
    size_t n = 0;
    bool ready;
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes(nullptr, "x", 1));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_bytes(nullptr, 0, &p, &n));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_bytes_into(nullptr, &n, 1, 0, &n, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_poll(nullptr, 0, &ready));
    EXPECT_EQ(MP_EINVAL, mp_connection_fileno(nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_set_max_message(nullptr, 1));
    EXPECT_FALSE(mp_connection_readable(nullptr));
    EXPECT_FALSE(mp_connection_writable(nullptr));
    EXPECT_TRUE(mp_connection_closed(nullptr));
    PipePair pp;
    EXPECT_EQ(MP_EINVAL, mp_connection_send_bytes(pp.a, nullptr, 3));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_bytes(pp.a, 0, nullptr, &n));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_bytes_into(pp.a, nullptr, 4, 0, &n, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv_bytes_into(pp.a, &n, 1, 0, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_poll(pp.a, 0, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_connection(nullptr, pp.a));
    Args a;
    EXPECT_EQ(MP_EINVAL, mp_args_add_connection(a.get(), nullptr));
    EXPECT_EQ(nullptr, mp_args_connection(nullptr, 0));
    EXPECT_EQ(nullptr, mp_args_connection(a.get(), 0));
    EXPECT_EQ(MP_EINVAL, mp_wait(nullptr, 1, 0, &ready, nullptr));
    mp_waitable w = mp_waitable_connection(nullptr);
    EXPECT_EQ(MP_EINVAL, mp_wait(&w, 1, 0, &ready, nullptr));
    w = mp_waitable_handle(MP_INVALID_OS_HANDLE);
    EXPECT_EQ(MP_EBADF, mp_wait(&w, 1, 0, &ready, nullptr));
    EXPECT_EQ(MP_EBADF,
              mp__connection_from_os_handle(MP_INVALID_OS_HANDLE, kPipeKind, true, true, &c));
    EXPECT_EQ(MP_EINVAL, mp_wait(nullptr, 0, MP_FOREVER, nullptr, nullptr));
}

TEST(Connection, FilenoIsTheHandle) {
    PipePair pp;
    mp_os_handle h = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_connection_fileno(pp.a, &h));
    EXPECT_NE(MP_INVALID_OS_HANDLE, h);
}

// ---- poll and wait -----------------------------------------------------------------

TEST(Connection, PollWithAndWithoutData) {
    PipePair pp;
    bool ready = true;
    ASSERT_EQ(0, mp_connection_poll(pp.b, 0, &ready));
    EXPECT_FALSE(ready);
    ASSERT_EQ(0, mp_connection_poll(pp.b, 0.05, &ready));
    EXPECT_FALSE(ready);
    ASSERT_EQ(0, send_str(pp.a, "x"));
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    EXPECT_TRUE(ready);
    ASSERT_EQ(0, mp_connection_poll(pp.b, 0, &ready));
    EXPECT_TRUE(ready) << "polling does not consume";
    std::string s;
    ASSERT_EQ(0, recv_str(pp.b, &s));
    ASSERT_EQ(0, mp_connection_poll(pp.b, 0, &ready));
    EXPECT_FALSE(ready);
    PipePair one(false);
    EXPECT_EQ(MP_EPERM, mp_connection_poll(one.b, 0, &ready));
}

TEST(Connection, PollWakesWhenDataArrivesLater) {
    PipePair pp;
    std::thread t([&] {
        sleep_for(0.05);
        send_str(pp.a, "late");
    });
    bool ready = false;
    EXPECT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    t.join();
    EXPECT_TRUE(ready);
}

TEST(Connection, WaitOverSeveralConnections) {
    PipePair p1, p2, p3(false);
    mp_waitable w[3] = {mp_waitable_connection(p1.b), mp_waitable_connection(p2.b),
                        mp_waitable_connection(p3.a)};
    bool ready[3] = {true, true, true};
    size_t k = 9;
    EXPECT_EQ(MP_ETIMEDOUT, mp_wait(w, 3, 0.05, ready, &k));
    EXPECT_EQ(0u, k);
    EXPECT_FALSE(ready[0] || ready[1] || ready[2]);
    ASSERT_EQ(0, send_str(p2.a, "two"));
    ASSERT_EQ(0, send_str(p3.b, "three"));
    ASSERT_EQ(0, mp_wait(w, 3, kWait, ready, &k)) << err();
    // Both may not be visible at the same instant on every system: wait again if needed.
    if (k < 2) {
        bool again[3];
        ASSERT_EQ(0, mp_wait(w + 2, 1, kWait, again + 2, nullptr));
        ready[2] = ready[2] || again[2];
    }
    EXPECT_FALSE(ready[0]);
    EXPECT_TRUE(ready[1]);
    EXPECT_TRUE(ready[2]);
    std::string s;
    ASSERT_EQ(0, recv_str(p2.b, &s));
    ASSERT_EQ(0, recv_str(p3.a, &s));
    EXPECT_EQ(MP_ETIMEDOUT, mp_wait(w, 3, 0, ready, &k));
    ASSERT_EQ(0, mp_connection_close(p1.a));
    ASSERT_EQ(0, mp_wait(w, 3, kWait, ready, &k)) << "a peer's close is readable (EOF)";
    EXPECT_TRUE(ready[0]);
}

TEST(Connection, WaitWithNothingSleeps) {
    EXPECT_EQ(MP_ETIMEDOUT, mp_wait(nullptr, 0, 0.01, nullptr, nullptr));
}

// ---- connections passed to children, on every backend --------------------------------

namespace {

// [0] connection, [1] int count: echoes count messages back, prefixed "echo:"; then
// sends its pid as text and returns 0. Exit codes 30+ name what failed.
int tgt_conn_echo(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    if (strcmp(mp_args_object_type(a, 0), "connection") != 0) return 31;
    for (int64_t i = 0; i < mp_args_int(a, 1); i++) {
        bool ready = false;
        if (mp_connection_poll(c, kCap, &ready) || !ready) return 32;
        void *p = nullptr;
        size_t n = 0;
        if (mp_connection_recv_bytes(c, 0, &p, &n)) return 33;
        std::string s = "echo:" + std::string(static_cast<char *>(p), n);
        mp_connection_free_bytes(p);
        if (mp_connection_send_bytes(c, s.data(), s.size())) return 34;
    }
    return 0;
}

// [0] read end, [1] write end (one-way pipes): reads one message, writes its length.
int tgt_conn_oneway(mp_args *a) {
    mp_connection *in = mp_args_connection(a, 0), *out = mp_args_connection(a, 1);
    if (!in || !out) return 30;
    if (!mp_connection_readable(in) || mp_connection_writable(in)) return 35;
    if (mp_connection_readable(out) || !mp_connection_writable(out)) return 36;
    bool ready = false;
    if (mp_connection_poll(in, kCap, &ready) || !ready) return 32;
    void *p = nullptr;
    size_t n = 0;
    if (mp_connection_recv_bytes(in, 0, &p, &n)) return 33;
    mp_connection_free_bytes(p);
    std::string s = std::to_string(n);
    return mp_connection_send_bytes(out, s.data(), s.size()) ? 34 : 0;
}

class ConnectionProcess : public ProcessTest {};

} // namespace

INSTANTIATE_TEST_SUITE_P(Backends, ConnectionProcess, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

TEST_P(ConnectionProcess, ChildEchoesOverDuplexPipe) {
    PipePair pp;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), pp.b)) << err();
    a.i(3);
    mp_process *p = start(tgt_conn_echo, a.get());
    ASSERT_NE(nullptr, p);
    const std::string msgs[] = {"hello", "", pattern(1u << 20, 5)};
    for (const auto &m : msgs) {
        ASSERT_EQ(0, send_str(pp.a, m)) << err();
        std::string s;
        ASSERT_EQ(0, recv_str(pp.a, &s)) << err();
        EXPECT_TRUE(s == "echo:" + m) << "size " << s.size();
    }
    EXPECT_EQ(0, join_code(p));
}

TEST_P(ConnectionProcess, ChildUsesOneWayPipes) {
    PipePair to_child(false), from_child(false);
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), to_child.a));
    ASSERT_EQ(0, mp_args_add_connection(a.get(), from_child.b));
    mp_process *p = start(tgt_conn_oneway, a.get());
    ASSERT_NE(nullptr, p);
    ASSERT_EQ(0, mp_connection_send_bytes(to_child.b, pattern(70000, 2).data(), 70000));
    std::string s;
    ASSERT_EQ(0, recv_str(from_child.a, &s)) << err();
    EXPECT_EQ("70000", s);
    EXPECT_EQ(0, join_code(p));
}

TEST_P(ConnectionProcess, WaitOnConnectionsAndSentinel) {
    PipePair quiet, talk;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), talk.b));
    a.i(1);
    mp_process *p = start(tgt_conn_echo, a.get());
    ASSERT_NE(nullptr, p);
    mp_os_handle sentinel = MP_INVALID_OS_HANDLE;
    ASSERT_EQ(0, mp_process_sentinel(p, &sentinel));
    mp_waitable w[3] = {mp_waitable_connection(quiet.a), mp_waitable_connection(talk.a),
                        mp_waitable_handle(sentinel)};
    bool ready[3];
    EXPECT_EQ(MP_ETIMEDOUT, mp_wait(w, 3, 0.05, ready, nullptr));
    ASSERT_EQ(0, send_str(talk.a, "x"));
    ASSERT_EQ(0, mp_wait(w, 2, kWait, ready, nullptr)) << err();
    EXPECT_FALSE(ready[0]);
    EXPECT_TRUE(ready[1]);
    std::string s;
    ASSERT_EQ(0, recv_str(talk.a, &s));
    EXPECT_EQ("echo:x", s);
    // The child returns: its sentinel fires.
    double deadline = now() + kWait;
    bool ended = false;
    while (!ended && now() < deadline) {
        ASSERT_EQ(0, mp_wait(w + 2, 1, kWait, ready + 2, nullptr)) << err();
        ended = ready[2];
    }
    EXPECT_TRUE(ended);
    EXPECT_EQ(0, join_code(p));
}

// ---- values --------------------------------------------------------------------------

namespace {

mp_value *sample_value() {
    mp_value *d = mp_value_dict_new();
    mp_value_dict_set_str(d, "int", mp_value_int(-42));
    mp_value_dict_set_str(d, "str", mp_value_str("héllo"));
    mp_value_dict_set_str(d, "bytes", mp_value_bytes("\0\1\2", 3));
    mp_value *l = mp_value_list_new();
    mp_value_list_append(l, mp_value_float(1.5));
    mp_value_list_append(l, mp_value_none());
    mp_value_list_append(l, mp_value_bool(true));
    mp_value_dict_set_str(d, "list", l);
    return d;
}

// [0] connection: receives a value and sends back [value, "ok"].
int tgt_conn_value_echo(mp_args *a) {
    mp_connection *c = mp_args_connection(a, 0);
    if (!c) return 30;
    bool ready = false;
    if (mp_connection_poll(c, kCap, &ready) || !ready) return 32;
    mp_value *v = nullptr;
    if (mp_connection_recv(c, &v)) return 33;
    mp_value *t = mp_value_tuple_new();
    mp_value_list_append(t, v);
    mp_value_list_append(t, mp_value_str("ok"));
    int rc = mp_connection_send(c, t);
    mp_value_free(t);
    return rc ? 34 : 0;
}

} // namespace

TEST(ConnectionValue, SendRecvRoundTrip) {
    PipePair pp;
    mp_value *v = sample_value();
    ASSERT_EQ(0, mp_connection_send(pp.a, v)) << err();
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    ASSERT_TRUE(ready);
    mp_value *got = nullptr;
    ASSERT_EQ(0, mp_connection_recv(pp.b, &got)) << err();
    EXPECT_TRUE(mp_value_equal(v, got));
    mp_value_free(v);
    mp_value_free(got);
}

TEST(ConnectionValue, BadPickleLeavesConnectionUsable) {
    PipePair pp;
    ASSERT_EQ(0, send_str(pp.a, "this is not a pickle"));
    mp_value *v = mp_value_int(7);
    ASSERT_EQ(0, mp_connection_send(pp.a, v));
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.b, kWait, &ready));
    mp_value *got = nullptr;
    EXPECT_EQ(MP_EPROTO, mp_connection_recv(pp.b, &got));
    EXPECT_EQ(nullptr, got);
    EXPECT_FALSE(mp_connection_closed(pp.b));
    ASSERT_EQ(0, mp_connection_recv(pp.b, &got)) << err();
    EXPECT_TRUE(mp_value_equal(v, got));
    mp_value_free(v);
    mp_value_free(got);
    EXPECT_EQ(MP_EINVAL, mp_connection_send(pp.a, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_connection_recv(pp.b, nullptr));
}

TEST_P(ConnectionProcess, ChildEchoesAValue) {
    PipePair pp;
    Args a;
    ASSERT_EQ(0, mp_args_add_connection(a.get(), pp.b));
    mp_process *p = start(tgt_conn_value_echo, a.get());
    ASSERT_NE(nullptr, p);
    mp_value *v = sample_value();
    ASSERT_EQ(0, mp_connection_send(pp.a, v)) << err();
    bool ready = false;
    ASSERT_EQ(0, mp_connection_poll(pp.a, kWait, &ready));
    ASSERT_TRUE(ready);
    mp_value *got = nullptr;
    ASSERT_EQ(0, mp_connection_recv(pp.a, &got)) << err();
    ASSERT_EQ(MP_VALUE_TUPLE, mp_value_get_type(got));
    EXPECT_TRUE(mp_value_equal(v, mp_value_item(got, 0)));
    EXPECT_STREQ("ok", mp_value_as_str(mp_value_item(got, 1), nullptr));
    mp_value_free(v);
    mp_value_free(got);
    EXPECT_EQ(0, join_code(p));
}
