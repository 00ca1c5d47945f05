// Arguments reach the child intact on every backend, OS handles included.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fixture.h"
#include "targets.h"

using namespace mpt;

namespace {

std::string expect_int(int64_t v) { return "int:" + std::to_string((long long)v) + "\n"; }
std::string expect_double(double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    char buf[32];
    snprintf(buf, sizeof buf, "%016" PRIx64, bits);
    return std::string("double:") + buf + "\n";
}
std::string expect_str(const std::string &s) {
    return "str:" + describe_blob(s.data(), s.size()) + "\n";
}
std::string expect_bytes(const std::string &s) {
    return "bytes:" + describe_blob(s.data(), s.size()) + "\n";
}

int tgt_count_args(mp_args *a) { return a ? 40 + (int)mp_args_count(a) : 80; }

} // namespace

TEST_P(ProcessTest, ArgumentsRoundTrip) {
    Pipe &out = pipe();
    Pipe &h1 = pipe();
    Pipe &h2 = pipe();
    std::string big(200000, '\0');
    for (size_t i = 0; i < big.size(); i++) big[i] = (char)((i * 2654435761u) >> 13);
    const std::string nuls("\0\1\2\xff\0", 5);
    const std::string utf8 = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93";
    const std::string long_str(10000, 'x');

    std::string expected;
    Args a;
    a.h(out.w);
    for (int64_t v : {int64_t(0), int64_t(-1), int64_t(1), int64_t(1) << 40,
                      std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()}) {
        a.i(v);
        expected += expect_int(v);
    }
    for (double v : {0.0, -0.0, -2.5, 1e300, 5e-324, std::numeric_limits<double>::infinity()}) {
        a.d(v);
        expected += expect_double(v);
    }
    a.h(h1.w);
    expected += "handle:valid\n";
    for (const std::string *s : {&utf8, &long_str}) {
        a.s(s->c_str());
        expected += expect_str(*s);
    }
    a.s("");
    expected += expect_str("");
    a.b(nuls.data(), nuls.size());
    expected += expect_bytes(nuls);
    a.b(nullptr, 0);
    expected += expect_bytes("");
    a.b(big.data(), big.size());
    expected += expect_bytes(big);
    a.h(h2.w);
    expected += "handle:valid\n";
    expected += "past_end:" + std::to_string((int)MP_ARG_NONE) + "\n";

    mp_process *p = make(tgt_echo_args, a.get());
    ASSERT_NE(nullptr, p);
    a.reset(); // the process object holds its own copy
    ASSERT_EQ(0, mp_process_start(p)) << err();
    std::string got, m1, m2;
    ASSERT_TRUE(read_msg(out.r, &got, kWait)) << "no echo from the child";
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(expected, got);
    // Each handle reached the child as a working handle, in its position.
    ASSERT_TRUE(read_msg(h1.r, &m1, kWait));
    EXPECT_EQ("hello 13", m1);
    ASSERT_TRUE(read_msg(h2.r, &m2, kWait));
    EXPECT_EQ("hello 20", m2);
}

TEST_P(ProcessTest, OsHandlesBothDirections) {
    Pipe &to_child = pipe();
    Pipe &from_child = pipe();
    Args a;
    a.h(to_child.r).h(from_child.w);
    mp_process *p = start(tgt_relay, a.get());
    ASSERT_NE(nullptr, p);
    ASSERT_TRUE(write_msg(to_child.w, "ping from the parent"));
    std::string m;
    ASSERT_TRUE(read_msg(from_child.r, &m, kWait)) << "no reply from the child";
    EXPECT_EQ("echo:ping from the parent", m);
    EXPECT_EQ(0, join_code(p));
}

TEST_P(ProcessTest, NoArgumentsIsAnEmptyList) {
    mp_process *p = start(tgt_count_args, nullptr);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(40, join_code(p)) << "40 + number of arguments; 80 for a NULL list";
    Args a; // an empty list, explicitly
    mp_process *q = start(tgt_count_args, a.get());
    ASSERT_NE(nullptr, q);
    EXPECT_EQ(40, join_code(q));
    Args b;
    b.i(1).s("two");
    mp_process *r = start(tgt_count_args, b.get());
    ASSERT_NE(nullptr, r);
    EXPECT_EQ(42, join_code(r));
}
