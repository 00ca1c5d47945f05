// SharedMemory and ShareableList (multiprocessing.shared_memory) on every start method:
// generated and given names, sizes, attach/create errors, close/unlink, children that
// attach by name or receive the block as an argument, list items of every kind, bad
// input. Every test checks that nothing it made is left in /dev/shm (shm_fixture.h).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "shm_fixture.h"

using namespace mpt;

namespace {

enum { kOk = 0, kBad = 90, kFail = 1 };

// ---- values -------------------------------------------------------------------------

struct Val {
    mp_value *v = nullptr;
    explicit Val(mp_value *x = nullptr) : v(x) {}
    ~Val() { mp_value_free(v); }
    Val(const Val &) = delete;
    Val &operator=(const Val &) = delete;
};

// The list the tests share: one item of every kind, and the edge cases of each.
const char *const kHello = "h\xc3\xa9llo"; // 5 characters, 6 bytes: fits Python's 8-byte slot
mp_value *sample_items() {
    mp_value *l = mp_value_list_new();
    mp_value_list_append(l, mp_value_int(7));
    mp_value_list_append(l, mp_value_float(2.5));
    mp_value_list_append(l, mp_value_bool(true));
    mp_value_list_append(l, mp_value_str("py"));
    mp_value_list_append(l, mp_value_bytes("b\0y", 3));
    mp_value_list_append(l, mp_value_none());
    mp_value_list_append(l, mp_value_str(kHello));
    mp_value_list_append(l, mp_value_int(INT64_MIN));
    mp_value_list_append(l, mp_value_int(INT64_MAX));
    mp_value_list_append(l, mp_value_str(""));
    mp_value_list_append(l, mp_value_bool(false));
    mp_value_list_append(l, mp_value_str("py"));
    return l;
}
const std::vector<std::string> &sample_shown() {
    static const std::vector<std::string> v = {"int:7",
                                               "float:2.500000",
                                               "True",
                                               "str:py",
                                               "bytes:620079",
                                               "None",
                                               std::string("str:") + kHello,
                                               "int:" + std::to_string((long long)INT64_MIN),
                                               "int:" + std::to_string((long long)INT64_MAX),
                                               "str:",
                                               "False",
                                               "str:py"};
    return v;
}

// ---- targets -------------------------------------------------------------------------

// Checks the parent's text at 0 and writes "child was here" at 1000 of a block.
int check_and_reply(mp_shm *s, const char *name) {
    if (!s || !mp_shm_buf(s) || mp_shm_size(s) < 2048) return kBad + 1;
    const char *buf = static_cast<const char *>(mp_shm_buf(s));
    std::string want = std::string("parent:") + name;
    if (memcmp(buf, want.c_str(), want.size() + 1) != 0) return kFail;
    memcpy(static_cast<char *>(mp_shm_buf(s)) + 1000, "child was here", 15);
    return kOk;
}

// [0] str name: attaches by name, check_and_reply, closes.
int tgt_attach_by_name(mp_args *a) {
    const char *name = mp_args_str(a, 0);
    if (!name) return kBad;
    mp_shm_opts o = {};
    o.name = name;
    mp_shm *s = nullptr;
    int rc = mp_shm_open(&o, &s);
    if (rc != 0) return 10 - rc; // 17: MP_ENOENT
    if (strcmp(mp_shm_name(s), name) != 0) {
        mp_shm_free(s);
        return kBad + 2;
    }
    rc = check_and_reply(s, name);
    if (mp_shm_close(s) != 0) rc = kFail + 1;
    mp_shm_free(s);
    return rc;
}

// [0] shm, [1] str its name: check_and_reply on the block received as an argument.
int tgt_shm_arg(mp_args *a) {
    mp_shm *s = mp_args_shm(a, 0);
    const char *name = mp_args_str(a, 1);
    if (!s || !name) return kBad;
    if (!mp_shm_name(s) || strcmp(mp_shm_name(s), name) != 0) return kBad + 2;
    return check_and_reply(s, name);
}

// [0] backend, [1] shm, [2] str its name: passes the block it received on to a
// grandchild running tgt_shm_arg; its code, or 80 + a step that failed.
int tgt_relay_shm(mp_args *a) {
    const char *backend = mp_args_str(a, 0), *name = mp_args_str(a, 2);
    mp_shm *s = mp_args_shm(a, 1);
    mp_context *ctx = backend ? mp_get_context(backend) : nullptr;
    mp_args *ga = nullptr;
    if (!ctx || !s || !name || mp_args_new(&ga) != 0) return 80;
    int rc = 81;
    mp_process *g = nullptr;
    mp_process_opts o = {};
    o.target = tgt_shm_arg;
    o.args = ga;
    if (mp_args_add_shm(ga, s) == 0 && mp_args_add_str(ga, name) == 0) {
        int code = -1;
        if (mp_process_new(ctx, &o, &g) != 0 || mp_process_start(g) != 0)
            rc = 82;
        else if (mp_process_join(g, kWait) != 0 || mp_process_exitcode(g, &code) != 0)
            rc = 83;
        else
            rc = code;
    }
    mp_process_free(g);
    mp_args_free(ga);
    return rc;
}

// [0] str list name: attaches, checks the sample, sets [0] = 42, [3] = "cc".
int tgt_list_attach(mp_args *a) {
    const char *name = mp_args_str(a, 0);
    if (!name) return kBad;
    mp_shareable_list *l = nullptr;
    int rc = mp_shareable_list_attach(name, &l);
    if (rc != 0) return 10 - rc;
    rc = list_diff(l, sample_shown()).empty() ? kOk : kFail;
    Val i42(mp_value_int(42)), cc(mp_value_str("cc"));
    if (rc == kOk &&
        (mp_shareable_list_set(l, 0, i42.v) != 0 || mp_shareable_list_set(l, 3, cc.v) != 0))
        rc = kFail + 1;
    mp_shareable_list_free(l);
    return rc;
}

} // namespace

class ShmTest : public ShmFixture {};

INSTANTIATE_TEST_SUITE_P(Backends, ShmTest, ::testing::ValuesIn(all_backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             return info.param;
                         });

// ---- SharedMemory ----------------------------------------------------------------------

TEST_P(ShmTest, CreateWithAGeneratedName) {
    Shm a, b;
    ASSERT_EQ(0, shm_create("", 4096, &a)) << err();
    ASSERT_EQ(0, shm_create("", 4096, &b)) << err();
    std::string na = learn(a.name()), nb = learn(b.name());
    ASSERT_FALSE(na.empty());
    EXPECT_NE(na, nb) << "two generated names are equal";
    EXPECT_EQ(std::string::npos, na.find('/')) << "the name is given without '/': " << na;
    if (kPosixShm) {
        EXPECT_EQ(0u, na.find("psm_")) << "Python's prefix: " << na;
        EXPECT_TRUE(dev_shm_has(na)) << na;
    }
    EXPECT_EQ(4096u, mp_shm_size(a.s));
    EXPECT_EQ(4096u, mp_shm_requested_size(a.s));
    char *p = a.buf();
    ASSERT_NE(nullptr, p);
    bool zero = true;
    for (size_t i = 0; i < 4096; i++) zero = zero && p[i] == 0;
    EXPECT_TRUE(zero) << "a new block is zero-filled";
    p[0] = 'x';
    p[4095] = 'y';
    EXPECT_EQ(0, mp_shm_unlink(a.s)) << err();
    EXPECT_EQ(0, mp_shm_unlink(b.s)) << err();
    if (kPosixShm) {
        EXPECT_FALSE(dev_shm_has(na)) << "unlink left " << na;
        EXPECT_EQ(MP_ENOENT, mp_shm_unlink(a.s)) << "a second unlink";
    }
    EXPECT_EQ('y', a.buf()[4095]) << "unlink keeps the mapping";
}

TEST_P(ShmTest, CreateWithAGivenNameAndAttach) {
    std::string name = fresh_name("given");
    Shm c;
    ASSERT_EQ(0, shm_create(name, 8192, &c)) << err();
    EXPECT_EQ(name, c.name());
    if (kPosixShm) {
        EXPECT_TRUE(dev_shm_has(name)) << "posix names are /dev/shm/<name>";
    }
    strcpy(c.buf(), "from the creator");
    {
        Shm a;
        ASSERT_EQ(0, shm_attach(name, &a)) << err();
        EXPECT_EQ(name, a.name());
        EXPECT_EQ(mp_shm_size(c.s), mp_shm_size(a.s));
        EXPECT_EQ(mp_shm_size(a.s), mp_shm_requested_size(a.s)) << "attached: the mapped size";
        EXPECT_STREQ("from the creator", a.buf());
        strcpy(a.buf() + 100, "from the attacher");
        EXPECT_STREQ("from the attacher", c.buf() + 100) << "two mappings of one block";
    }
    // Creating it again fails and must not truncate or reset the block.
    Shm again;
    EXPECT_EQ(MP_EEXIST, shm_create(name, 4096, &again)) << err();
    EXPECT_EQ(nullptr, again.s);
    EXPECT_EQ(MP_EEXIST, shm_create(name, 16384, &again));
    {
        Shm a;
        ASSERT_EQ(0, shm_attach(name, &a)) << err();
        EXPECT_STREQ("from the creator", a.buf()) << "a refused create reset the block";
        EXPECT_EQ(mp_shm_size(c.s), mp_shm_size(a.s)) << "a refused create resized the block";
    }
    EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
    Shm late;
    if (kPosixShm) {
        EXPECT_EQ(MP_ENOENT, shm_attach(name, &late)) << "attach after unlink";
        EXPECT_EQ(nullptr, late.s);
    } else {
        // Windows: unlink does nothing; the name lives while a handle is open.
        EXPECT_EQ(0, shm_attach(name, &late)) << err();
    }
    EXPECT_STREQ("from the creator", c.buf()) << "unlink keeps the creator's mapping";
}

TEST_P(ShmTest, RequestedAndRealSize) {
    std::string name = fresh_name("size");
    Shm c;
    ASSERT_EQ(0, shm_create(name, 100, &c)) << err();
    EXPECT_EQ(100u, mp_shm_requested_size(c.s));
    if (kPosixShm) {
        EXPECT_EQ(100u, mp_shm_size(c.s)) << "posix: the size fstat reports, as Python's .size";
    } else {
        EXPECT_GE(mp_shm_size(c.s), 100u);
        EXPECT_EQ(0u, mp_shm_size(c.s) % 4096) << "Windows: whole pages";
    }
    memset(c.buf(), 0xAB, 100);
    Shm a;
    ASSERT_EQ(0, shm_attach(name, &a)) << err();
    EXPECT_EQ(mp_shm_size(c.s), mp_shm_size(a.s));
    EXPECT_EQ(mp_shm_size(a.s), mp_shm_requested_size(a.s));
    EXPECT_EQ((char)0xAB, a.buf()[99]);
    EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
    // One byte is a block too; zero is not.
    std::string one = fresh_name("one");
    Shm o;
    ASSERT_EQ(0, shm_create(one, 1, &o)) << err();
    EXPECT_EQ(1u, mp_shm_requested_size(o.s));
    EXPECT_GE(mp_shm_size(o.s), 1u);
    o.buf()[0] = 1;
    EXPECT_EQ(0, mp_shm_unlink(o.s));
    std::string zero = fresh_name("zero");
    Shm z;
    EXPECT_EQ(MP_EINVAL, shm_create(zero, 0, &z)) << "size 0";
    EXPECT_EQ(nullptr, z.s);
    EXPECT_FALSE(dev_shm_has(zero)) << "a refused create left its name";
    Shm g;
    EXPECT_EQ(MP_EINVAL, shm_create("", 0, &g)) << "size 0, generated name";
    // An impossible size: a clear error, and no name left behind.
    std::string huge = fresh_name("huge");
    Shm h;
    int rc = shm_create(huge, SIZE_MAX / 2, &h);
    EXPECT_TRUE(rc == MP_EINVAL || rc == MP_ENOMEM || rc == MP_ESYS)
        << mp_err_name(rc) << " " << err();
    EXPECT_EQ(nullptr, h.s);
    EXPECT_FALSE(dev_shm_has(huge)) << "a failed create left its name";
}

TEST_P(ShmTest, AttachMissingAndCloseTwice) {
    std::string name = fresh_name("missing");
    Shm m;
    EXPECT_EQ(MP_ENOENT, shm_attach(name, &m)) << err();
    EXPECT_EQ(nullptr, m.s);
    EXPECT_FALSE(dev_shm_has(name)) << "attach created the block";

    Shm c;
    ASSERT_EQ(0, shm_create(name, 4096, &c)) << err();
    EXPECT_EQ(0, mp_shm_close(c.s)) << err();
    EXPECT_EQ(nullptr, mp_shm_buf(c.s)) << "buf is NULL once closed";
    EXPECT_EQ(0, mp_shm_close(c.s)) << "closing twice is fine";
    EXPECT_EQ(name, c.name()) << "the name stays after close";
    {
        Shm a;
        if (kPosixShm) {
            ASSERT_EQ(0, shm_attach(name, &a)) << "close must not unlink " << err();
            EXPECT_EQ(0, mp_shm_close(a.s));
        }
    }
    EXPECT_EQ(0, mp_shm_unlink(c.s)) << "unlink after close " << err();
    if (kPosixShm) {
        EXPECT_FALSE(dev_shm_has(name));
    }
}

TEST_P(ShmTest, ChildAttachesByName) {
    std::string name = fresh_name("byname");
    Shm c;
    ASSERT_EQ(0, shm_create(name, 4096, &c)) << err();
    strcpy(c.buf(), ("parent:" + name).c_str());
    Args a;
    a.s(name.c_str());
    mp_process *p = start(tgt_attach_by_name, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p)) << "1: the child did not see the parent's data; 17: MP_ENOENT";
    EXPECT_STREQ("child was here", c.buf() + 1000) << "the child's write is not visible";
    if (kPosixShm) {
        EXPECT_TRUE(dev_shm_has(name))
            << "the child's (tracked) attach unlinked our block at its exit";
    }
    EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
    // Attaching after the unlink: MP_ENOENT in the child too.
    if (kPosixShm) {
        Args b;
        b.s(name.c_str());
        mp_process *q = start(tgt_attach_by_name, b.get());
        ASSERT_NE(nullptr, q);
        EXPECT_EQ(10 - MP_ENOENT, join_code(q));
    }
}

TEST_P(ShmTest, ChildReceivesTheBlockAsAnArgument) {
    for (int untracked = 0; untracked < 2; untracked++) {
        SCOPED_TRACE(untracked ? "untracked" : "tracked");
        std::string name = fresh_name("arg");
        Shm c;
        ASSERT_EQ(0, shm_create(name, 4096, &c, untracked != 0)) << err();
        strcpy(c.buf(), ("parent:" + name).c_str());
        Args a;
        EXPECT_EQ(0, mp_args_add_shm(a.get(), c.s)) << err();
        a.s(name.c_str());
        mp_process *p = start(tgt_shm_arg, a.get());
        ASSERT_NE(nullptr, p);
        EXPECT_EQ(0, join_code(p)) << "1: the child did not see the parent's data; 91: no block; "
                                      "92: wrong name";
        a.reset();
        EXPECT_STREQ("child was here", c.buf() + 1000);
        if (kPosixShm) {
            EXPECT_TRUE(dev_shm_has(name)) << "the child's copy unlinked our block";
        }
        EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
    }
}

TEST_P(ShmTest, AGrandchildReceivesTheBlockItsParentReceived) {
    std::string name = fresh_name("relay");
    Shm c;
    ASSERT_EQ(0, shm_create(name, 4096, &c)) << err();
    strcpy(c.buf(), ("parent:" + name).c_str());
    Args a;
    a.s(backend().c_str());
    EXPECT_EQ(0, mp_args_add_shm(a.get(), c.s)) << err();
    a.s(name.c_str());
    mp_process *p = start(tgt_relay_shm, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p)) << "1: the grandchild did not see the data; 91/92: its block; 80+: "
                                  "a step of the child";
    EXPECT_STREQ("child was here", c.buf() + 1000);
    if (kPosixShm) {
        EXPECT_TRUE(dev_shm_has(name)) << "the child or grandchild unlinked our block";
    }
    EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
}

TEST_P(ShmTest, ABigBlockIsWholeInTheChild) {
    // 16 MiB written by the parent, checked by a child through the name.
    const size_t size = 16u << 20;
    std::string name = fresh_name("big");
    Shm c;
    ASSERT_EQ(0, shm_create(name, size, &c)) << err();
    ASSERT_EQ(size, mp_shm_requested_size(c.s));
    strcpy(c.buf(), ("parent:" + name).c_str());
    c.buf()[size - 1] = 'Z';
    Args a;
    a.s(name.c_str());
    mp_process *p = start(tgt_attach_by_name, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p));
    EXPECT_STREQ("child was here", c.buf() + 1000);
    EXPECT_EQ('Z', c.buf()[size - 1]);
    EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
}

TEST_P(ShmTest, BadInput) {
    mp_shm *s = nullptr;
    mp_shm_opts o = {};
    EXPECT_EQ(MP_EINVAL, mp_shm_open(nullptr, &s)) << "NULL opts";
    o.name = "x";
    EXPECT_EQ(MP_EINVAL, mp_shm_open(&o, nullptr)) << "NULL out";
    o = {};
    EXPECT_EQ(MP_EINVAL, mp_shm_open(&o, &s)) << "attach without a name";
    // '/' is refused on every platform, so that a name that works here works everywhere
    // (posix: a path separator; Windows: '\\' is the namespace separator).
    std::vector<const char *> bads = {"a/b", "/leading", "trailing/", "/", ""};
    if (kWindows) bads.push_back("a\\b");
    for (const char *bad : bads) {
        SCOPED_TRACE(std::string("name '") + bad + "'");
        o = {};
        o.name = bad;
        EXPECT_EQ(MP_EINVAL, mp_shm_open(&o, &s)) << "attach " << err();
        o.create = true;
        o.size = 64;
        EXPECT_EQ(MP_EINVAL, mp_shm_open(&o, &s)) << "create " << err();
        EXPECT_EQ(nullptr, s);
        if (s) {
            mp_shm_unlink(s);
            mp_shm_free(s);
            s = nullptr;
        }
    }
    std::string longname = shm_prefix() + std::string(400, 'n');
    learn(longname);
    o = {};
    o.name = longname.c_str();
    o.create = true;
    o.size = 64;
    int rc = mp_shm_open(&o, &s);
    EXPECT_TRUE(rc == MP_EINVAL) << "a 400-character name: " << mp_err_name(rc) << " " << err();
    EXPECT_EQ(nullptr, s);
    // NULL objects.
    EXPECT_EQ(nullptr, mp_shm_name(nullptr));
    EXPECT_EQ(0u, mp_shm_size(nullptr));
    EXPECT_EQ(0u, mp_shm_requested_size(nullptr));
    EXPECT_EQ(nullptr, mp_shm_buf(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_shm_close(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_shm_unlink(nullptr));
    mp_shm_free(nullptr);
    Args a;
    EXPECT_EQ(MP_EINVAL, mp_args_add_shm(a.get(), nullptr));
    EXPECT_EQ(MP_EINVAL, mp_args_add_shm(nullptr, nullptr));
    a.s("not a block");
    EXPECT_EQ(nullptr, mp_args_shm(a.get(), 0)) << "a str is no block";
    EXPECT_EQ(nullptr, mp_args_shm(a.get(), 3)) << "past the end";
    EXPECT_EQ(nullptr, mp_args_shm(nullptr, 0));
    // A closed block cannot travel (it has no mapping to give).
    std::string name = fresh_name("closed");
    Shm c;
    ASSERT_EQ(0, shm_create(name, 64, &c)) << err();
    EXPECT_EQ(0, mp_shm_close(c.s));
    Args b;
    rc = mp_args_add_shm(b.get(), c.s);
    EXPECT_TRUE(rc == 0 || rc == MP_ECLOSED || rc == MP_ESTATE) << mp_err_name(rc);
    EXPECT_EQ(0, mp_shm_unlink(c.s));
}

// Python (Linux) takes any name up to NAME_MAX, 255 bytes after its leading '/'; one
// byte more is refused, by us with MP_EINVAL before the OS is asked.
TEST_P(ShmTest, NamesOfUpTo255Bytes) {
    for (size_t len : {248u, 249u, 254u, 255u}) {
        SCOPED_TRACE("a name of " + std::to_string(len) + " bytes");
        std::string name = fresh_name("long");
        name += std::string(len - name.size(), 'n');
        learn(name);
        Shm c;
        ASSERT_EQ(0, shm_create(name, 4096, &c)) << err();
        EXPECT_EQ(name, c.name());
        if (kPosixShm) {
            EXPECT_TRUE(dev_shm_has(name));
        }
        Shm a;
        ASSERT_EQ(0, shm_attach(name, &a)) << err();
        EXPECT_EQ(name, a.name());
        strcpy(c.buf(), ("parent:" + name).c_str());
        if (len == 255) {
            // A child attaches it by name too (and registers it with the tracker).
            Args args;
            args.s(name.c_str());
            mp_process *p = start(tgt_attach_by_name, args.get());
            ASSERT_NE(nullptr, p);
            EXPECT_EQ(0, join_code(p));
            EXPECT_STREQ("child was here", a.buf() + 1000);
            // A shareable list under such a name.
            std::string ln = fresh_name("longlist");
            ln += std::string(255 - ln.size(), 'l');
            learn(ln);
            Val items(sample_items());
            mp_shareable_list *l = nullptr, *view = nullptr;
            ASSERT_EQ(0, mp_shareable_list_new(items.v, ln.c_str(), &l)) << err();
            ASSERT_EQ(0, mp_shareable_list_attach(ln.c_str(), &view)) << err();
            EXPECT_EQ("", list_diff(view, sample_shown()));
            mp_shareable_list_free(view);
            EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l))) << err();
            mp_shareable_list_free(l);
        }
        EXPECT_EQ(0, mp_shm_unlink(c.s)) << err();
    }
    std::string name = fresh_name("toolong");
    name += std::string(256 - name.size(), 'n');
    learn(name);
    Shm c;
    EXPECT_EQ(MP_EINVAL, shm_create(name, 4096, &c)) << "256 bytes";
    EXPECT_NE(nullptr, strstr(err().c_str(), "255")) << err();
    EXPECT_EQ(nullptr, c.s);
    EXPECT_EQ(MP_EINVAL, shm_attach(name, &c)) << "256 bytes";
}

// ---- ShareableList ---------------------------------------------------------------------

TEST_P(ShmTest, ShareableListItemsOfEveryKind) {
    Val items(sample_items());
    mp_shareable_list *l = nullptr;
    ASSERT_EQ(0, mp_shareable_list_new(items.v, nullptr, &l)) << err();
    mp_shm *s = mp_shareable_list_shm(l);
    ASSERT_NE(nullptr, s);
    std::string name = learn(mp_shm_name(s) ? mp_shm_name(s) : "");
    if (kPosixShm) {
        EXPECT_EQ(0u, name.find("psm_")) << name;
        EXPECT_TRUE(dev_shm_has(name));
    }
    EXPECT_EQ("", list_diff(l, sample_shown()));
    // Replacing items: same kind, another kind, str and bytes within their slot.
    std::vector<std::string> want = sample_shown();
    struct Set {
        size_t i;
        mp_value *v;
        const char *shown;
    };
    const Set sets[] = {
        {0, mp_value_int(-123456789012345LL), "int:-123456789012345"},
        {1, mp_value_int(5), "int:5"},                // float slot takes an int
        {5, mp_value_float(-0.5), "float:-0.500000"}, // None slot takes a float
        {2, mp_value_none(), "None"},
        {10, mp_value_bool(true), "True"},
        {3, mp_value_str("abcdefgh"), "str:abcdefgh"}, // Python's slot for "py": 8 bytes
        {6, mp_value_str("z"), "str:z"},               // shorter
        {4, mp_value_bytes("\x01\x02", 2), "bytes:0102"},
        {9, mp_value_str("12345678"), "str:12345678"}, // "" has an 8-byte slot too
    };
    for (const Set &st : sets) {
        Val v(st.v);
        EXPECT_EQ(0, mp_shareable_list_set(l, st.i, v.v)) << "item " << st.i << " " << err();
        want[st.i] = st.shown;
    }
    EXPECT_EQ("", list_diff(l, want));
    // Growing past the slot: MP_ETOOBIG and the item unchanged.
    Val big(mp_value_str(std::string(64, 'x').c_str())),
        bigb(mp_value_bytes(std::string(64, 'y').data(), 64));
    EXPECT_EQ(MP_ETOOBIG, mp_shareable_list_set(l, 3, big.v));
    EXPECT_EQ(MP_ETOOBIG, mp_shareable_list_set(l, 4, bigb.v));
    Val nine(mp_value_str("123456789"));
    EXPECT_EQ(MP_ETOOBIG, mp_shareable_list_set(l, 3, nine.v)) << "9 bytes in an 8-byte slot";
    EXPECT_EQ("", list_diff(l, want)) << "a refused set changed the list";
    // Errors: index, unsupported kinds, NULL.
    mp_value *out = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_get(l, want.size(), &out));
    EXPECT_EQ(nullptr, out);
    Val one(mp_value_int(1)), lst(mp_value_list_new()), dct(mp_value_dict_new());
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_set(l, want.size(), one.v));
    EXPECT_EQ(MP_ENOTSUP, mp_shareable_list_set(l, 0, lst.v)) << "a list is no item";
    EXPECT_EQ(MP_ENOTSUP, mp_shareable_list_set(l, 0, dct.v)) << "a dict is no item";
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_set(l, 0, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_get(l, 0, nullptr));
    EXPECT_EQ("", list_diff(l, want));
    EXPECT_EQ(0, mp_shm_unlink(s)) << err();
    mp_shareable_list_free(l);
}

TEST_P(ShmTest, ShareableListCountAndIndex) {
    Val items(sample_items());
    mp_shareable_list *l = nullptr;
    ASSERT_EQ(0, mp_shareable_list_new(items.v, fresh_name("ci").c_str(), &l)) << err();
    Val py(mp_value_str("py")), none(mp_value_none()), seven(mp_value_int(7)),
        t(mp_value_bool(true)), absent(mp_value_str("zz")), f(mp_value_float(2.5)),
        b(mp_value_bytes("b\0y", 3)), n99(mp_value_int(99));
    size_t n = 99, i = 99;
    EXPECT_EQ(0, mp_shareable_list_count(l, py.v, &n)) << err();
    EXPECT_EQ(2u, n);
    EXPECT_EQ(0, mp_shareable_list_index(l, py.v, &i)) << err();
    EXPECT_EQ(3u, i) << "the first of two";
    EXPECT_EQ(0, mp_shareable_list_index(l, none.v, &i));
    EXPECT_EQ(5u, i);
    EXPECT_EQ(0, mp_shareable_list_index(l, seven.v, &i));
    EXPECT_EQ(0u, i);
    EXPECT_EQ(0, mp_shareable_list_index(l, t.v, &i));
    EXPECT_EQ(2u, i);
    EXPECT_EQ(0, mp_shareable_list_index(l, f.v, &i));
    EXPECT_EQ(1u, i);
    EXPECT_EQ(0, mp_shareable_list_index(l, b.v, &i));
    EXPECT_EQ(4u, i);
    EXPECT_EQ(0, mp_shareable_list_count(l, n99.v, &n));
    EXPECT_EQ(0u, n);
    EXPECT_EQ(MP_ENOENT, mp_shareable_list_index(l, absent.v, &i));
    EXPECT_EQ(0, mp_shareable_list_count(l, absent.v, &n));
    EXPECT_EQ(0u, n);
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_count(l, nullptr, &n));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_count(l, py.v, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_index(nullptr, py.v, &i));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_count(nullptr, py.v, &n));
    EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l))) << err();
    mp_shareable_list_free(l);
}

TEST_P(ShmTest, ShareableListEmptyTupleAndBadInput) {
    mp_shareable_list *l = nullptr;
    Val empty(mp_value_list_new());
    ASSERT_EQ(0, mp_shareable_list_new(empty.v, fresh_name("empty").c_str(), &l)) << err();
    EXPECT_EQ(0u, mp_shareable_list_len(l));
    mp_value *out = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_get(l, 0, &out));
    EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l)));
    mp_shareable_list_free(l);
    l = nullptr;
    // A tuple is a sequence too.
    Val tup(mp_value_tuple_new());
    mp_value_list_append(tup.v, mp_value_int(1));
    mp_value_list_append(tup.v, mp_value_str("two"));
    std::string tname = fresh_name("tuple");
    ASSERT_EQ(0, mp_shareable_list_new(tup.v, tname.c_str(), &l)) << err();
    EXPECT_EQ("", list_diff(l, {"int:1", "str:two"}));
    EXPECT_EQ(tname, mp_shm_name(mp_shareable_list_shm(l)));
    // The same name again: the block exists.
    mp_shareable_list *dup = nullptr;
    EXPECT_EQ(MP_EEXIST, mp_shareable_list_new(tup.v, tname.c_str(), &dup));
    EXPECT_EQ(nullptr, dup);
    EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l)));
    mp_shareable_list_free(l);
    l = nullptr;
    // Items that are not of the six kinds, or no sequence at all.
    Val nested(mp_value_list_new());
    mp_value_list_append(nested.v, mp_value_int(1));
    mp_value_list_append(nested.v, mp_value_list_new());
    std::string bad = fresh_name("bad");
    EXPECT_EQ(MP_ENOTSUP, mp_shareable_list_new(nested.v, bad.c_str(), &l)) << "a nested list";
    EXPECT_EQ(nullptr, l);
    EXPECT_FALSE(dev_shm_has(bad)) << "a refused list left its block";
    Val scalar(mp_value_int(3));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_new(scalar.v, bad.c_str(), &l))
        << "an int is no sequence";
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_new(nullptr, nullptr, &l));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_new(empty.v, nullptr, nullptr));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_new(empty.v, "a/b", &l)) << "a name with '/'";
    EXPECT_EQ(nullptr, l);
    EXPECT_FALSE(dev_shm_has(bad));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_attach(nullptr, &l));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_attach("x", nullptr));
    EXPECT_EQ(MP_ENOENT, mp_shareable_list_attach(fresh_name("nolist").c_str(), &l));
    EXPECT_EQ(nullptr, l);
    EXPECT_EQ(0u, mp_shareable_list_len(nullptr));
    EXPECT_EQ(nullptr, mp_shareable_list_shm(nullptr));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_get(nullptr, 0, &out));
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_set(nullptr, 0, scalar.v));
    mp_shareable_list_free(nullptr);
}

// A str slot must hold UTF-8 as Python's decode('utf8') takes it (no encoded surrogates):
// Python raises UnicodeDecodeError, we MP_EPROTO; writing such a str is MP_EINVAL, as
// Python's encode('utf8') refuses it.
TEST_P(ShmTest, ShareableListStrSlotMustBeUtf8) {
    Val items(mp_value_list_new());
    mp_value_list_append(items.v, mp_value_str("abcd"));
    mp_value_list_append(items.v, mp_value_bytes("abcd", 4));
    mp_shareable_list *l = nullptr;
    ASSERT_EQ(0, mp_shareable_list_new(items.v, fresh_name("utf8").c_str(), &l)) << err();
    // Two items: the data area starts after the count and three offsets.
    unsigned char *slot0 =
        static_cast<unsigned char *>(mp_shm_buf(mp_shareable_list_shm(l))) + 4 * 8;
    unsigned char *slot1 = slot0 + 8;
    ASSERT_EQ(0, memcmp(slot0, "abcd", 4));
    const std::vector<std::string> bad = {"ab\xff",
                                          "\xc3",
                                          "ab\xc3",
                                          "\xed\xa0\x80" /* U+D800 */,
                                          "\xc0\x80" /* overlong NUL */,
                                          "\xf4\x90\x80\x80" /* above U+10FFFF */,
                                          "\x80x"};
    for (const std::string &b : bad) {
        SCOPED_TRACE("bytes " + show(Val(mp_value_bytes(b.data(), b.size())).v));
        memset(slot0, 0, 8);
        memcpy(slot0, b.data(), b.size());
        memset(slot1, 0, 8);
        memcpy(slot1, b.data(), b.size());
        mp_value *out = reinterpret_cast<mp_value *>(1);
        EXPECT_EQ(MP_EPROTO, mp_shareable_list_get(l, 0, &out)) << show(out);
        EXPECT_EQ(nullptr, out);
        EXPECT_NE(nullptr, strstr(err().c_str(), "UTF-8")) << err();
        ASSERT_EQ(0, mp_shareable_list_get(l, 1, &out)) << "a bytes slot takes any bytes " << err();
        EXPECT_EQ(show(Val(mp_value_bytes(b.data(), b.size())).v), show(out));
        mp_value_free(out);
        // index/count read every item: the bad one is an error there too
        Val one(mp_value_int(1));
        size_t n = 0;
        EXPECT_EQ(MP_EPROTO, mp_shareable_list_count(l, one.v, &n));
        // Writing a str the reader could not decode is refused; the slot is unchanged.
        Val s(mp_value_strn(b.data(), b.size()));
        EXPECT_EQ(MP_EINVAL, mp_shareable_list_set(l, 1, s.v)) << err();
        EXPECT_EQ(0, memcmp(slot1, b.data(), b.size())) << "a refused set wrote";
    }
    // Valid UTF-8 of every length reads back, and repairs the slot.
    Val good(mp_value_str("\xf0\x9f\x98\x80"));
    ASSERT_EQ(0, mp_shareable_list_set(l, 0, good.v)) << err();
    EXPECT_EQ("", list_diff(l, {"str:\xf0\x9f\x98\x80", show(Val(mp_value_bytes("\x80x", 2)).v)}));
    EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l))) << err();
    mp_shareable_list_free(l);
    // Creating a list with such a str: refused, nothing left behind.
    Val badl(mp_value_list_new());
    mp_value_list_append(badl.v, mp_value_strn("\xed\xa0\x80", 3));
    std::string name = fresh_name("utf8bad");
    EXPECT_EQ(MP_EINVAL, mp_shareable_list_new(badl.v, name.c_str(), &l)) << err();
    EXPECT_EQ(nullptr, l);
    EXPECT_FALSE(dev_shm_has(name));
}

TEST_P(ShmTest, ShareableListAttachedInAChild) {
    Val items(sample_items());
    std::string name = fresh_name("list");
    mp_shareable_list *l = nullptr;
    ASSERT_EQ(0, mp_shareable_list_new(items.v, name.c_str(), &l)) << err();
    // A second view in this process sees the same items.
    mp_shareable_list *view = nullptr;
    ASSERT_EQ(0, mp_shareable_list_attach(name.c_str(), &view)) << err();
    EXPECT_EQ("", list_diff(view, sample_shown()));
    Args a;
    a.s(name.c_str());
    mp_process *p = start(tgt_list_attach, a.get());
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(0, join_code(p)) << "1: the child read other items; 2: its set failed; 17: MP_ENOENT";
    std::vector<std::string> want = sample_shown();
    want[0] = "int:42";
    want[3] = "str:cc";
    EXPECT_EQ("", list_diff(l, want)) << "the child's changes are not visible";
    EXPECT_EQ("", list_diff(view, want));
    if (kPosixShm) {
        EXPECT_TRUE(dev_shm_has(name)) << "the child's attach unlinked the list";
    }
    mp_shareable_list_free(view);
    EXPECT_EQ(0, mp_shm_unlink(mp_shareable_list_shm(l))) << err();
    mp_shareable_list_free(l);
}
