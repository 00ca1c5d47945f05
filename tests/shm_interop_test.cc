// Interop with a real python3 (multiprocessing.shared_memory): blocks and lists that
// Python creates are attached here (in a child of every start method), and ours are
// attached by Python; each side reads what the other wrote. The peer is
// tests/interop/shm_peer.py.
//
// gh-82300 (Python < 3.13 registers attached blocks with its resource tracker, which
// unlinks them when Python exits): the peer unregisters the blocks it attached before
// it exits, and when Python creates, Python unlinks. The test checks that our block is
// still there after Python has gone.
#include <cstring>
#include <string>
#include <vector>

#include "python_peer.h"
#include "shm_fixture.h"

using namespace mpt;

namespace {

enum { kOk = 0, kBad = 90, kFail = 1 };

// The peer's constants (shm_peer.py).
const char kPyText[] = "written by python";
const char kCText[] = "written by C";

class ShmInteropTest : public ShmFixture {};

INSTANTIATE_TEST_SUITE_P(Backends, ShmInteropTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

#ifndef _WIN32

// PY_ITEMS of the peer, and with the C side's changes (C_CHANGES).
const std::vector<std::string> kPyItems = {
    "int:-5", "float:1.250000",          "False", "str:snow \xe2\x98\x83", "bytes:0001",
    "None",   "int:4611686018427387904", "str:py"};
std::vector<std::string> py_items_changed() {
    std::vector<std::string> v = kPyItems;
    v[0] = "int:42";
    v[3] = "str:cc";
    v[5] = "float:3.500000";
    v[7] = "str:12345678";
    return v;
}

// C_ITEMS of the peer, as we create them, and with Python's changes (PY_CHANGES).
mp_value *c_items() {
    mp_value *l = mp_value_list_new();
    mp_value_list_append(l, mp_value_int(7));
    mp_value_list_append(l, mp_value_float(2.5));
    mp_value_list_append(l, mp_value_bool(true));
    mp_value_list_append(l, mp_value_str("py"));
    mp_value_list_append(l, mp_value_bytes("b\0y", 3));
    mp_value_list_append(l, mp_value_none());
    mp_value_list_append(l, mp_value_str("h\xc3\xa9llo"));
    mp_value_list_append(l, mp_value_int(INT64_MIN));
    mp_value_list_append(l, mp_value_int(INT64_MAX));
    mp_value_list_append(l, mp_value_str(""));
    mp_value_list_append(l, mp_value_bool(false));
    return l;
}
const std::vector<std::string> kCItemsChanged = {"int:99",
                                                 "float:-1.500000",
                                                 "True",
                                                 "str:Py!",
                                                 "bytes:620079",
                                                 "int:3",
                                                 "str:h\xc3\xa9llo",
                                                 "int:" + std::to_string((long long)INT64_MIN),
                                                 "int:" + std::to_string((long long)INT64_MAX),
                                                 "str:",
                                                 "False"};

// [0] str python's block, [1] str python's list: checks PY_TEXT and PY_ITEMS, writes
// C_TEXT at 1000 and C_CHANGES (also one that does not fit its slot: MP_ETOOBIG).
int tgt_use_python_blocks(mp_args *a) {
    const char *ns = mp_args_str(a, 0), *nl = mp_args_str(a, 1);
    if (!ns || !nl) return kBad;
    mp_shm_opts o = {};
    o.name = ns;
    mp_shm *s = nullptr;
    mp_shareable_list *l = nullptr;
    if (mp_shm_open(&o, &s) != 0) return 20;
    if (mp_shareable_list_attach(nl, &l) != 0) {
        mp_shm_free(s);
        return 21;
    }
    int rc = kOk;
    if (mp_shm_size(s) != 4096 || memcmp(mp_shm_buf(s), kPyText, sizeof kPyText - 1) != 0)
        rc = 22;
    else if (!list_diff(l, kPyItems).empty())
        rc = 23;
    if (rc == kOk) {
        memcpy(static_cast<char *>(mp_shm_buf(s)) + 1000, kCText, sizeof kCText - 1);
        mp_value *v42 = mp_value_int(42), *cc = mp_value_str("cc"), *f = mp_value_float(3.5),
                 *s8 = mp_value_str("12345678"), *s9 = mp_value_str("123456789");
        if (mp_shareable_list_set(l, 0, v42) != 0 || mp_shareable_list_set(l, 3, cc) != 0 ||
            mp_shareable_list_set(l, 5, f) != 0)
            rc = 24;
        else if (mp_shareable_list_set(l, 7, s9) != MP_ETOOBIG)
            rc = 25; // Python's slot for "py" is 8 bytes
        else if (mp_shareable_list_set(l, 7, s8) != 0)
            rc = 26;
        mp_value_free(v42);
        mp_value_free(cc);
        mp_value_free(f);
        mp_value_free(s8);
        mp_value_free(s9);
    }
    mp_shareable_list_free(l);
    mp_shm_free(s);
    return rc;
}

// [0] str our block: checks Python's PY_TEXT at 1000.
int tgt_check_python_wrote(mp_args *a) {
    mp_shm_opts o = {};
    o.name = mp_args_str(a, 0);
    mp_shm *s = nullptr;
    if (!o.name || mp_shm_open(&o, &s) != 0) return kBad;
    int rc = memcmp(static_cast<char *>(mp_shm_buf(s)) + 1000, kPyText, sizeof kPyText - 1) == 0
                 ? kOk
                 : kFail;
    mp_shm_free(s);
    return rc;
}

// [0] str python's block: checks PY_TEXT at 0, writes C_TEXT at 1000.
int tgt_attach_write_c_text(mp_args *a) {
    mp_shm_opts o = {};
    o.name = mp_args_str(a, 0);
    mp_shm *s = nullptr;
    if (!o.name || mp_shm_open(&o, &s) != 0) return 20;
    int rc = kOk;
    if (strcmp(mp_shm_name(s), o.name) != 0 ||
        memcmp(mp_shm_buf(s), kPyText, sizeof kPyText - 1) != 0)
        rc = 22;
    else
        memcpy(static_cast<char *>(mp_shm_buf(s)) + 1000, kCText, sizeof kCText - 1);
    mp_shm_free(s);
    return rc;
}

bool python_shm_usable(std::string *why) {
    static int state = 0; // 0 unknown, 1 yes, 2 no
    if (state == 0)
        state =
            python_runs("import multiprocessing.shared_memory, multiprocessing.resource_tracker")
                ? 1
                : 2;
    *why = "python3 with multiprocessing.shared_memory is not available";
    return state == 1;
}

#define REQUIRE_PYTHON_SHM()                                 \
    do {                                                     \
        std::string why_;                                    \
        if (!python_shm_usable(&why_)) GTEST_SKIP() << why_; \
    } while (0)

} // namespace

TEST_P(ShmInteropTest, PythonCreatesWeAttach) {
    REQUIRE_PYTHON_SHM();
    PyPeer py;
    ASSERT_TRUE(py.start({MP_TEST_SHM_PEER, "create"}, true));
    std::string line;
    ASSERT_TRUE(py.line(&line, kWait)) << "the python peer did not start";
    ASSERT_EQ(0u, line.find("NAMES ")) << line;
    size_t sp = line.find(' ', 6);
    ASSERT_NE(std::string::npos, sp) << line;
    std::string ns = learn(line.substr(6, sp - 6)), nl = learn(line.substr(sp + 1));
    EXPECT_EQ(0u, ns.find("psm_")) << ns;
    Args a;
    a.s(ns.c_str()).s(nl.c_str());
    mp_process *p = start(tgt_use_python_blocks, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p))
        << "20/21: attach failed; 22: the block's size or text; 23: the list's "
           "items; 24: a set; 25: no MP_ETOOBIG past Python's slot; 26: a "
           "str that fits its slot was refused";
    // Our child attached (tracked) and ended: Python's blocks must still be there.
    EXPECT_TRUE(dev_shm_has(ns) && dev_shm_has(nl)) << "our child's exit unlinked Python's blocks";
    // Here too: the parent attaches the list and sees the child's changes.
    mp_shareable_list *l = nullptr;
    ASSERT_EQ(0, mp_shareable_list_attach(nl.c_str(), &l)) << err();
    EXPECT_EQ("", list_diff(l, py_items_changed()));
    mp_shareable_list_free(l);
    ASSERT_TRUE(py.send("check\n"));
    ASSERT_TRUE(py.line(&line, kWait)) << "no verdict from python";
    EXPECT_EQ("OK", line) << "python read something else than we wrote";
    EXPECT_EQ(0, py.wait(kWait));
    EXPECT_FALSE(dev_shm_has(ns) || dev_shm_has(nl)) << "python unlinked both";
}

TEST_P(ShmInteropTest, WeCreatePythonAttaches) {
    REQUIRE_PYTHON_SHM();
    Shm s;
    ASSERT_EQ(0, shm_create("", 4096, &s)) << err();
    std::string ns = learn(s.name());
    memcpy(s.buf(), kCText, sizeof kCText - 1);
    mp_value *items = c_items();
    mp_shareable_list *l = nullptr;
    ASSERT_EQ(0, mp_shareable_list_new(items, nullptr, &l)) << err();
    mp_value_free(items);
    std::string nl = learn(mp_shm_name(mp_shareable_list_shm(l)));
    {
        PyPeer py;
        ASSERT_TRUE(py.start({MP_TEST_SHM_PEER, "attach", ns, nl}, true));
        std::string line;
        ASSERT_TRUE(py.line(&line, kWait)) << "no verdict from python";
        EXPECT_EQ("OK", line) << "python read something else than we wrote";
        EXPECT_EQ(0, py.wait(kWait));
    }
    EXPECT_TRUE(dev_shm_has(ns) && dev_shm_has(nl))
        << "python's exit unlinked our blocks (its unregister failed: gh-82300)";
    EXPECT_EQ(0, memcmp(s.buf() + 1000, kPyText, sizeof kPyText - 1))
        << "python's write is not visible";
    EXPECT_EQ("", list_diff(l, kCItemsChanged)) << "python's list changes are not visible";
    // A child of this backend sees Python's write by name too.
    Args a;
    a.s(ns.c_str());
    mp_process *p = start(tgt_check_python_wrote, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p));
    EXPECT_EQ(0, mp_shm_unlink(s.s)) << err();
    EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l))) << err();
    mp_shareable_list_free(l);
}

// Names of 249..255 bytes: Python takes them (NAME_MAX after its '/'), so must we, both
// ways. Python creates one we attach in a child; we create one Python attaches.
TEST_P(ShmInteropTest, LongNamesBothWays) {
    REQUIRE_PYTHON_SHM();
    for (size_t len : {249u, 255u}) {
        SCOPED_TRACE("a name of " + std::to_string(len) + " bytes");
        std::string pyname = fresh_name("pylong");
        pyname += std::string(len - pyname.size(), 'p');
        learn(pyname);
        {
            PyPeer py;
            ASSERT_TRUE(py.start({MP_TEST_SHM_PEER, "create_named", pyname}, true));
            std::string line;
            ASSERT_TRUE(py.line(&line, kWait)) << "the python peer did not start";
            ASSERT_EQ("NAMES " + pyname, line);
            Args a;
            a.s(pyname.c_str());
            mp_process *p = start(tgt_attach_write_c_text, a.get());
            ASSERT_NE(nullptr, p);
            EXPECT_EQ(0, join_code(p)) << "20: attach failed; 22: python's text";
            ASSERT_TRUE(py.send("check\n"));
            ASSERT_TRUE(py.line(&line, kWait)) << "no verdict from python";
            EXPECT_EQ("OK", line);
            EXPECT_EQ(0, py.wait(kWait));
        }
        EXPECT_FALSE(dev_shm_has(pyname)) << "python unlinked it";

        std::string cname = fresh_name("clong");
        cname += std::string(len - cname.size(), 'c');
        learn(cname);
        Shm s;
        ASSERT_EQ(0, shm_create(cname, 4096, &s)) << err();
        memcpy(s.buf(), kCText, sizeof kCText - 1);
        {
            PyPeer py;
            ASSERT_TRUE(py.start({MP_TEST_SHM_PEER, "attach_named", cname}, true));
            std::string line;
            ASSERT_TRUE(py.line(&line, kWait)) << "no verdict from python";
            EXPECT_EQ("OK", line);
            EXPECT_EQ(0, py.wait(kWait));
        }
        EXPECT_EQ(0, memcmp(s.buf() + 1000, kPyText, sizeof kPyText - 1))
            << "python's write is not visible";
        EXPECT_EQ(0, mp_shm_unlink(s.s)) << err();
    }
}

#else

} // namespace

TEST_P(ShmInteropTest, PythonPeers) {
    GTEST_SKIP() << "interop with python3 runs on Linux only (no python under Wine)";
}

#endif
