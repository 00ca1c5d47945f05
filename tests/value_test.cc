// mp_value and its pickle codec (issue 3, scope 3). Not per start method: these run
// under the "common" label. Python interop needs python3 and is skipped without it
// and on Windows (the cross build runs under Wine, with no Python beside it).
#include <multiproc.h>

#include <gtest/gtest.h>

#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#define LIT(s) std::string(s, sizeof(s) - 1)

namespace {

struct VFree {
    void operator()(mp_value *v) const { mp_value_free(v); }
};
using VP = std::unique_ptr<mp_value, VFree>;

// Terse builders for expected values (each returns a new value; containers take them).
mp_value *N() { return mp_value_none(); }
mp_value *B(bool b) { return mp_value_bool(b); }
mp_value *I(int64_t i) { return mp_value_int(i); }
mp_value *F(double d) { return mp_value_float(d); }
mp_value *S(const std::string &s) { return mp_value_strn(s.data(), s.size()); }
mp_value *Y(const std::string &s) { return mp_value_bytes(s.data(), s.size()); }
mp_value *L(std::initializer_list<mp_value *> items) {
    mp_value *l = mp_value_list_new();
    for (mp_value *it : items) EXPECT_EQ(0, mp_value_list_append(l, it));
    return l;
}
mp_value *T(std::initializer_list<mp_value *> items) {
    mp_value *t = mp_value_tuple_new();
    for (mp_value *it : items) EXPECT_EQ(0, mp_value_list_append(t, it));
    return t;
}
mp_value *D(std::initializer_list<std::pair<mp_value *, mp_value *>> items) {
    mp_value *d = mp_value_dict_new();
    for (auto &kv : items) EXPECT_EQ(0, mp_value_dict_set(d, kv.first, kv.second));
    return d;
}
mp_value *O(const char *mod, const char *name, mp_value *args) {
    return mp_value_object_new(mod, name, args);
}
// A set (SET) or frozenset (FS) of the items, added in this order.
mp_value *SET(std::initializer_list<mp_value *> items) {
    mp_value *s = mp_value_set_new();
    for (mp_value *it : items) EXPECT_EQ(0, mp_value_set_add(s, it));
    return s;
}
mp_value *FS(std::initializer_list<mp_value *> items) {
    mp_value *s = mp_value_frozenset_new();
    for (mp_value *it : items) EXPECT_EQ(0, mp_value_set_add(s, it));
    return s;
}

std::string dumps(const mp_value *v) {
    void *buf = nullptr;
    size_t len = 0;
    int rc = mp_value_dumps(v, &buf, &len);
    EXPECT_EQ(0, rc) << mp_last_error_message();
    std::string s(static_cast<const char *>(buf), len);
    mp_value_buf_free(buf);
    return s;
}

int loads(const std::string &s, VP *out, const mp_value_limits *lim = nullptr) {
    mp_value *v = reinterpret_cast<mp_value *>(1);
    int rc = mp_value_loads(s.data(), s.size(), lim, &v);
    if (rc) {
        EXPECT_EQ(nullptr, v) << "*out must be NULL on failure";
    }
    out->reset(rc ? nullptr : v);
    return rc;
}

VP roundtrip(const mp_value *v) {
    VP back;
    std::string p = dumps(v);
    EXPECT_EQ(0, loads(p, &back)) << mp_last_error_message();
    return back;
}

std::string hex(const std::string &s) {
    static const char *d = "0123456789abcdef";
    std::string h;
    for (unsigned char c : s) {
        h += d[c >> 4];
        h += d[c & 15];
    }
    return h;
}

[[maybe_unused]] std::string unhex(const std::string &h) {
    std::string s;
    for (size_t i = 0; i + 1 < h.size(); i += 2) s += (char)std::stoi(h.substr(i, 2), nullptr, 16);
    return s;
}

// A value exercising every type and some nesting.
mp_value *sample() {
    return D({{S("none"), N()},
              {S("bools"), L({B(true), B(false)})},
              {S("ints"), L({I(0), I(255), I(256), I(65535), I(65536), I(-1), I(INT32_MAX),
                             I(INT32_MIN), I((int64_t)INT32_MAX + 1), I(INT64_MAX), I(INT64_MIN)})},
              {S("floats"), T({F(1.5), F(-0.0), F(1e300), F(INFINITY)})},
              {S("str"), S(std::string("h\xc3\xa9llo\0x", 8))},
              {S("bytes"), Y(std::string("\0\x01\xff", 3))},
              {I(7), T({})},
              {T({I(1), S("k")}),
               L({T({I(1)}), T({I(1), I(2)}), T({I(1), I(2), I(3)}), T({I(1), I(2), I(3), I(4)})})},
              {S("nested"), L({L({L({D({})})})})},
              {S("obj"), O("datetime", "date", T({I(2020), I(1), I(2)}))}});
}

} // namespace

// ---- the value API ---------------------------------------------------------------

TEST(Value, ScalarsAndAccessors) {
    VP n(N()), b(B(true)), i(I(-42)), f(F(2.5)), s(mp_value_str("abc")),
        y(Y(std::string("a\0b", 3)));
    EXPECT_EQ(MP_VALUE_NONE, mp_value_get_type(n.get()));
    EXPECT_EQ(MP_VALUE_BOOL, mp_value_get_type(b.get()));
    EXPECT_EQ(MP_VALUE_INT, mp_value_get_type(i.get()));
    EXPECT_EQ(MP_VALUE_FLOAT, mp_value_get_type(f.get()));
    EXPECT_EQ(MP_VALUE_STR, mp_value_get_type(s.get()));
    EXPECT_EQ(MP_VALUE_BYTES, mp_value_get_type(y.get()));
    EXPECT_EQ(MP_VALUE_NONE, mp_value_get_type(nullptr));
    EXPECT_STREQ("dict", mp_value_type_name(MP_VALUE_DICT));
    EXPECT_EQ(-42, mp_value_as_int(i.get()));
    EXPECT_EQ(1, mp_value_as_int(b.get()));
    EXPECT_EQ(0, mp_value_as_int(s.get()));
    EXPECT_EQ(2.5, mp_value_as_float(f.get()));
    EXPECT_EQ(-42.0, mp_value_as_float(i.get()));
    EXPECT_TRUE(mp_value_as_bool(b.get()));
    EXPECT_FALSE(mp_value_as_bool(n.get()));
    EXPECT_TRUE(mp_value_as_bool(s.get()));
    size_t len = 99;
    EXPECT_STREQ("abc", mp_value_as_str(s.get(), &len));
    EXPECT_EQ(3u, len);
    EXPECT_EQ(nullptr, mp_value_as_str(i.get(), &len));
    EXPECT_EQ(0u, len);
    const void *p = mp_value_as_bytes(y.get(), &len);
    ASSERT_NE(nullptr, p);
    EXPECT_EQ(std::string("a\0b", 3), std::string((const char *)p, len));
    EXPECT_EQ(3u, mp_value_len(y.get()));
    VP e(Y(""));
    EXPECT_NE(nullptr, mp_value_as_bytes(e.get(), &len));
    EXPECT_EQ(0u, len);
    EXPECT_FALSE(mp_value_as_bool(e.get()));
    EXPECT_EQ(nullptr, mp_value_str(nullptr));
    EXPECT_EQ(nullptr, mp_value_bytes(nullptr, 3));
    VP z(mp_value_bytes(nullptr, 0));
    EXPECT_NE(nullptr, z.get());
}

TEST(Value, ContainersOwnWhatTheyAreGiven) {
    VP l(L({I(1), S("two")}));
    EXPECT_EQ(2u, mp_value_len(l.get()));
    EXPECT_EQ(1, mp_value_as_int(mp_value_item(l.get(), 0)));
    EXPECT_EQ(nullptr, mp_value_item(l.get(), 2));
    // A failed constructor nests: the append reports MP_ENOMEM and nothing leaks.
    EXPECT_EQ(MP_ENOMEM, mp_value_list_append(l.get(), nullptr));
    // Appending to a non-sequence frees the item (ASan would report a leak).
    VP i(I(3));
    EXPECT_EQ(MP_EINVAL, mp_value_list_append(i.get(), S("lost")));
    EXPECT_EQ(MP_EINVAL, mp_value_list_append(nullptr, S("lost")));
    EXPECT_EQ(MP_EINVAL, mp_value_dict_set(l.get(), S("k"), I(1)));
    EXPECT_EQ(MP_EINVAL, mp_value_dict_set(nullptr, nullptr, I(1)));
    VP t(T({}));
    EXPECT_EQ(0, mp_value_list_append(t.get(), N()));
    EXPECT_EQ(1u, mp_value_len(t.get()));
    mp_value_free(nullptr);
}

TEST(Value, DictKeepsOrderAndReplaces) {
    VP d(mp_value_dict_new());
    ASSERT_EQ(0, mp_value_dict_set_str(d.get(), "b", I(1)));
    ASSERT_EQ(0, mp_value_dict_set(d.get(), I(5), S("five")));
    ASSERT_EQ(0, mp_value_dict_set_str(d.get(), "a", I(2)));
    ASSERT_EQ(0, mp_value_dict_set_str(d.get(), "b", I(3))); // replaces, keeps its place
    ASSERT_EQ(3u, mp_value_len(d.get()));
    EXPECT_STREQ("b", mp_value_as_str(mp_value_dict_key(d.get(), 0), nullptr));
    EXPECT_EQ(3, mp_value_as_int(mp_value_dict_value(d.get(), 0)));
    EXPECT_EQ(5, mp_value_as_int(mp_value_dict_key(d.get(), 1)));
    EXPECT_STREQ("a", mp_value_as_str(mp_value_dict_key(d.get(), 2), nullptr));
    EXPECT_EQ(2, mp_value_as_int(mp_value_dict_get_str(d.get(), "a")));
    EXPECT_STREQ("five", mp_value_as_str(mp_value_dict_get_int(d.get(), 5), nullptr));
    EXPECT_EQ(nullptr, mp_value_dict_get_str(d.get(), "zz"));
    EXPECT_EQ(nullptr, mp_value_dict_get_int(d.get(), 6));
    VP k(T({I(1), I(2)}));
    ASSERT_EQ(0, mp_value_dict_set(d.get(), mp_value_copy(k.get()), B(true)));
    EXPECT_TRUE(mp_value_as_bool(mp_value_dict_get(d.get(), k.get())));
    EXPECT_EQ(nullptr, mp_value_dict_key(d.get(), 4));
}

// Keys compare as in Python: {1: 'int', 1.0: 'float', True: 'bool'} is {1: 'bool'}
// there, so it is here too (the first key stays, the last value wins), and nothing
// is lost when Python reads it.
TEST(Value, DictKeysCompareAsPython) {
    VP m(D({{I(1), S("int")}, {F(1.0), S("float")}, {B(true), S("bool")}}));
    ASSERT_EQ(1u, mp_value_len(m.get()));
    EXPECT_EQ(MP_VALUE_INT, mp_value_get_type(mp_value_dict_key(m.get(), 0)));
    EXPECT_STREQ("bool", mp_value_as_str(mp_value_dict_value(m.get(), 0), nullptr));
    VP z(D({{F(-0.0), S("a")}, {I(0), S("b")}, {B(false), S("c")}, {F(0.0), S("d")}}));
    ASSERT_EQ(1u, mp_value_len(z.get()));
    EXPECT_EQ(MP_VALUE_FLOAT, mp_value_get_type(mp_value_dict_key(z.get(), 0)));
    EXPECT_TRUE(std::signbit(mp_value_as_float(mp_value_dict_key(z.get(), 0))))
        << "the first key stays";
    EXPECT_STREQ("d", mp_value_as_str(mp_value_dict_value(z.get(), 0), nullptr));
    // Lookups cross the number types both ways.
    VP t(D({{B(true), S("t")}, {F(2.0), S("two")}, {I(3), S("three")}, {F(2.5), S("half")}}));
    EXPECT_STREQ("t", mp_value_as_str(mp_value_dict_get_int(t.get(), 1), nullptr));
    EXPECT_STREQ("two", mp_value_as_str(mp_value_dict_get_int(t.get(), 2), nullptr));
    VP three(F(3.0)), one(F(1.0)), half(F(2.5)), two5(I(2));
    EXPECT_STREQ("three", mp_value_as_str(mp_value_dict_get(t.get(), three.get()), nullptr));
    EXPECT_STREQ("t", mp_value_as_str(mp_value_dict_get(t.get(), one.get()), nullptr));
    EXPECT_STREQ("half", mp_value_as_str(mp_value_dict_get(t.get(), half.get()), nullptr));
    EXPECT_EQ(4u, mp_value_len(t.get()));
    // Exactly, as Python: 2**63 - 1 is not the float 2**63; str is never bytes.
    VP x(D({{I(INT64_MAX), S("i")},
            {F(9223372036854775807.0), S("f")},
            {I(INT64_MIN), S("m")},
            {F(-9223372036854775808.0), S("mf")},
            {S("a"), N()},
            {Y("a"), N()},
            {F(INFINITY), N()}}));
    EXPECT_EQ(6u, mp_value_len(x.get())) << "INT64_MIN == -2.0**63 exactly";
    // NaN equals no other NaN (Python: a key is found only as the same object).
    VP nan(D({{F(NAN), I(1)}, {F(NAN), I(2)}}));
    EXPECT_EQ(2u, mp_value_len(nan.get()));
    VP n1(F(NAN));
    EXPECT_EQ(nullptr, mp_value_dict_get(nan.get(), n1.get()));
    // Many NaN keys stay linear (they hash by identity, as in Python, not all alike),
    // also when a hostile pickle is full of them.
    VP nans(mp_value_dict_new());
    for (int i = 0; i < 100000; i++) ASSERT_EQ(0, mp_value_dict_set(nans.get(), F(NAN), I(i)));
    EXPECT_EQ(100000u, mp_value_len(nans.get()));
    std::string p = "\x80\x05}(";
    for (int i = 0; i < 100000; i++) p += std::string("G\x7f\xf8\0\0\0\0\0\0N", 10);
    VP back;
    ASSERT_EQ(0, loads(p + "u.", &back)) << mp_last_error_message();
    EXPECT_EQ(100000u, mp_value_len(back.get()));
    // Object keys hash their args too: date(n) keys do not all collide. Objects compare
    // as mp_value_equal does (Python would ask the class).
    VP dates(mp_value_dict_new());
    for (int i = 0; i < 50000; i++)
        ASSERT_EQ(0, mp_value_dict_set(dates.get(), O("datetime", "date", T({I(2000), I(1), I(i)})),
                                       I(i)));
    ASSERT_EQ(
        0, mp_value_dict_set(dates.get(), O("datetime", "date", T({I(2000), I(1), I(7)})), I(-7)));
    EXPECT_EQ(50000u, mp_value_len(dates.get()));
    VP d7(O("datetime", "date", T({I(2000), I(1), I(7)})));
    EXPECT_EQ(-7, mp_value_as_int(mp_value_dict_get(dates.get(), d7.get())));
    // Tuples compare item by item, frozensets as sets (in any order).
    VP tk(D({{T({I(1), F(2.0)}), S("a")},
             {T({F(1.0), I(2)}), S("b")},
             {T({I(1), I(2), I(3)}), S("c")}}));
    EXPECT_EQ(2u, mp_value_len(tk.get()));
    EXPECT_STREQ("b", mp_value_as_str(mp_value_dict_value(tk.get(), 0), nullptr));
    VP fk(D({{FS({I(1), S("x"), T({})}), S("a")},
             {FS({T({}), F(1.0), S("x")}), S("b")},
             {FS({}), S("e")}}));
    ASSERT_EQ(2u, mp_value_len(fk.get()));
    EXPECT_STREQ("b", mp_value_as_str(mp_value_dict_value(fk.get(), 0), nullptr));
    VP probe(FS({S("x"), T({}), B(true)}));
    EXPECT_STREQ("b", mp_value_as_str(mp_value_dict_get(fk.get(), probe.get()), nullptr));
    // The same with a hash index (more than a few keys).
    VP big(mp_value_dict_new());
    for (int i = 0; i < 100; i++) ASSERT_EQ(0, mp_value_dict_set(big.get(), I(i), I(i)));
    for (int i = 0; i < 100; i++) ASSERT_EQ(0, mp_value_dict_set(big.get(), F(i), I(-i)));
    ASSERT_EQ(0, mp_value_dict_set(big.get(), B(true), S("true")));
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(0, mp_value_dict_set(big.get(), FS({I(i), I(i + 1)}), I(i)));
        ASSERT_EQ(0, mp_value_dict_set(big.get(), FS({F(i + 1), F(i)}), I(-i)));
    }
    ASSERT_EQ(200u, mp_value_len(big.get()));
    EXPECT_EQ(MP_VALUE_INT, mp_value_get_type(mp_value_dict_key(big.get(), 50)));
    EXPECT_EQ(-50, mp_value_as_int(mp_value_dict_get_int(big.get(), 50)));
    EXPECT_STREQ("true", mp_value_as_str(mp_value_dict_get_int(big.get(), 1), nullptr));
    VP fp(FS({I(8), I(7)}));
    EXPECT_EQ(-7, mp_value_as_int(mp_value_dict_get(big.get(), fp.get())));
    VP c(mp_value_copy(big.get()));
    EXPECT_TRUE(mp_value_equal(big.get(), c.get()));
}

// Keys and set items must be hashable in Python's sense: a dict refuses the others as
// Python raises TypeError, and so do dumps (a key changed after it went in) and loads.
TEST(Value, UnhashableKeysAreRefused) {
    VP d(mp_value_dict_new());
    EXPECT_EQ(MP_EINVAL, mp_value_dict_set(d.get(), L({}), I(1)));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "unhashable type: 'list'"))
        << mp_last_error_message();
    EXPECT_EQ(MP_EINVAL, mp_value_dict_set(d.get(), D({}), I(1)));
    EXPECT_EQ(MP_EINVAL, mp_value_dict_set(d.get(), SET({}), I(1)));
    EXPECT_EQ(MP_EINVAL, mp_value_dict_set(d.get(), T({I(1), T({L({})})}), I(1)));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "inside")) << mp_last_error_message();
    VP s(mp_value_set_new());
    EXPECT_EQ(MP_EINVAL, mp_value_set_add(s.get(), L({})));
    EXPECT_EQ(MP_EINVAL, mp_value_set_add(s.get(), SET({})));
    EXPECT_EQ(0u, mp_value_len(d.get()));
    EXPECT_EQ(0u, mp_value_len(s.get()));
    VP lk(L({}));
    EXPECT_EQ(nullptr, mp_value_dict_get(d.get(), lk.get()));
    EXPECT_FALSE(mp_value_set_contains(s.get(), lk.get()));
    // Hashable: scalars, tuples and frozensets of them, objects (Python decides).
    ASSERT_EQ(
        0, mp_value_dict_set(d.get(), T({N(), FS({T({S("x")})}), O("m", "C", T({L({})}))}), I(1)));
    ASSERT_EQ(0, mp_value_set_add(s.get(), FS({FS({})})));
    // A key changed through a borrowed pointer after it went in: dumps refuses it.
    ASSERT_EQ(0, mp_value_dict_set(d.get(), T({I(5)}), I(2)));
    ASSERT_EQ(0, mp_value_list_append(mp_value_dict_key(d.get(), 1), L({I(1)})));
    void *buf = (void *)1;
    size_t len = 7;
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(d.get(), &buf, &len));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "unhashable")) << mp_last_error_message();
    EXPECT_EQ(nullptr, buf);
    ASSERT_EQ(0, mp_value_set_add(s.get(), T({})));
    ASSERT_EQ(0, mp_value_list_append(mp_value_item(s.get(), 1), D({})));
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(s.get(), &buf, &len));
    VP val(D({{S("ok"), T({SET({}), L({})})}}));
    EXPECT_EQ(0, mp_value_dumps(val.get(), &buf, &len)) << "values need not hash";
    mp_value_buf_free(buf);
    // A frozenset's items must hash wherever the frozenset is.
    VP fz(FS({T({})}));
    ASSERT_EQ(0, mp_value_list_append(mp_value_item(fz.get(), 0), SET({})));
    VP inval(L({mp_value_copy(fz.get())}));
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(inval.get(), &buf, &len));
    VP outer(SET({}));
    mp_value *fz2 = mp_value_frozenset_new();
    ASSERT_EQ(0, mp_value_set_add(fz2, T({})));
    ASSERT_EQ(0, mp_value_set_add(outer.get(), fz2));
    ASSERT_EQ(0, mp_value_list_append(mp_value_item(fz2, 0), L({})));
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(outer.get(), &buf, &len))
        << "a list in a frozenset in a set";
}

TEST(Value, SetsAndFrozensets) {
    VP s(mp_value_set_new());
    EXPECT_EQ(MP_VALUE_SET, mp_value_get_type(s.get()));
    EXPECT_STREQ("set", mp_value_type_name(MP_VALUE_SET));
    EXPECT_STREQ("frozenset", mp_value_type_name(MP_VALUE_FROZENSET));
    EXPECT_FALSE(mp_value_as_bool(s.get()));
    ASSERT_EQ(0, mp_value_set_add(s.get(), I(1)));
    ASSERT_EQ(0, mp_value_set_add(s.get(), S("a")));
    ASSERT_EQ(0, mp_value_set_add(s.get(), F(1.0))); // equal to 1: the first stays
    ASSERT_EQ(0, mp_value_set_add(s.get(), B(true)));
    ASSERT_EQ(0, mp_value_set_add(s.get(), Y("a")));
    ASSERT_EQ(3u, mp_value_len(s.get()));
    EXPECT_TRUE(mp_value_as_bool(s.get()));
    EXPECT_EQ(MP_VALUE_INT, mp_value_get_type(mp_value_item(s.get(), 0)));
    EXPECT_STREQ("a", mp_value_as_str(mp_value_item(s.get(), 1), nullptr));
    EXPECT_EQ(MP_VALUE_BYTES, mp_value_get_type(mp_value_item(s.get(), 2)));
    EXPECT_EQ(nullptr, mp_value_item(s.get(), 3));
    VP tr(B(true)), two(I(2)), a(S("a"));
    EXPECT_TRUE(mp_value_set_contains(s.get(), tr.get()));
    EXPECT_TRUE(mp_value_set_contains(s.get(), a.get()));
    EXPECT_FALSE(mp_value_set_contains(s.get(), two.get()));
    EXPECT_FALSE(mp_value_set_contains(two.get(), two.get()));
    EXPECT_FALSE(mp_value_set_contains(nullptr, two.get()));
    // Built with set_add only; errors free what they were given.
    EXPECT_EQ(MP_EINVAL, mp_value_list_append(s.get(), I(9)));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "mp_value_set_add"));
    EXPECT_EQ(MP_EINVAL, mp_value_set_add(two.get(), I(9)));
    EXPECT_EQ(MP_EINVAL, mp_value_set_add(nullptr, I(9)));
    EXPECT_EQ(MP_ENOMEM, mp_value_set_add(s.get(), nullptr));
    EXPECT_EQ(3u, mp_value_len(s.get()));
    // Many items: the index keeps adding linear, and equal numbers stay one item.
    VP big(mp_value_frozenset_new());
    for (int i = 0; i < 5000; i++) ASSERT_EQ(0, mp_value_set_add(big.get(), I(i)));
    for (int i = 0; i < 5000; i++) ASSERT_EQ(0, mp_value_set_add(big.get(), F(i)));
    EXPECT_EQ(5000u, mp_value_len(big.get()));
    VP f4999(F(4999.0));
    EXPECT_TRUE(mp_value_set_contains(big.get(), f4999.get()));
    // Copies and deep equality (in order, types strict).
    VP c(mp_value_copy(big.get()));
    EXPECT_EQ(MP_VALUE_FROZENSET, mp_value_get_type(c.get()));
    EXPECT_TRUE(mp_value_equal(big.get(), c.get()));
    VP s12(SET({I(1), I(2)})), s21(SET({I(2), I(1)})), f12(FS({I(1), I(2)}));
    EXPECT_FALSE(mp_value_equal(s12.get(), s21.get())) << "mp_value_equal compares in order";
    EXPECT_FALSE(mp_value_equal(s12.get(), f12.get())) << "types are strict";
    // Through the codec: a set stays a set, a frozenset a frozenset, as dict keys too.
    VP v(L({SET({}), FS({}), mp_value_copy(s12.get()),
            D({{FS({I(1), T({S("x")})}), SET({FS({I(2)})})}, {FS({}), N()}})}));
    VP back = roundtrip(v.get());
    EXPECT_TRUE(mp_value_equal(v.get(), back.get()));
    VP bigback = roundtrip(big.get());
    EXPECT_TRUE(mp_value_equal(big.get(), bigback.get()));
}

TEST(Value, BigDictUsesItsIndex) {
    VP d(mp_value_dict_new());
    const int n = 20000;
    for (int i = 0; i < n; i++) ASSERT_EQ(0, mp_value_dict_set(d.get(), I(i), I(i * 2)));
    for (int i = 0; i < n; i += 2) ASSERT_EQ(0, mp_value_dict_set(d.get(), I(i), I(-i)));
    for (int i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        ASSERT_EQ(0, mp_value_dict_set_str(d.get(), k, I(i)));
    }
    ASSERT_EQ((size_t)2 * n, mp_value_len(d.get()));
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(i % 2 ? i * 2 : -i, mp_value_as_int(mp_value_dict_get_int(d.get(), i)));
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        ASSERT_EQ(i, mp_value_as_int(mp_value_dict_get_str(d.get(), k)));
    }
    EXPECT_EQ(n - 1, mp_value_as_int(mp_value_dict_key(d.get(), n - 1)));
    VP c(mp_value_copy(d.get()));
    EXPECT_TRUE(mp_value_equal(d.get(), c.get()));
    EXPECT_EQ(7, mp_value_as_int(mp_value_dict_get_str(c.get(), "k7")));
}

TEST(Value, EqualAndCopy) {
    VP a(sample()), b(sample());
    EXPECT_TRUE(mp_value_equal(a.get(), b.get()));
    VP c(mp_value_copy(a.get()));
    EXPECT_TRUE(mp_value_equal(a.get(), c.get()));
    ASSERT_EQ(0, mp_value_dict_set_str(c.get(), "extra", N()));
    EXPECT_FALSE(mp_value_equal(a.get(), c.get()));
    VP one(I(1)), onef(F(1.0)), tr(B(true));
    EXPECT_FALSE(mp_value_equal(one.get(), onef.get()));
    EXPECT_FALSE(mp_value_equal(one.get(), tr.get()));
    VP nan1(F(NAN)), nan2(F(NAN));
    EXPECT_TRUE(mp_value_equal(nan1.get(), nan2.get()));
    VP z1(F(0.0)), z2(F(-0.0));
    EXPECT_TRUE(mp_value_equal(z1.get(), z2.get()));
    EXPECT_TRUE(mp_value_equal(nullptr, nullptr));
    EXPECT_FALSE(mp_value_equal(one.get(), nullptr));
    VP o(O("m", "n", T({I(1)})));
    ASSERT_EQ(0, mp_value_object_set_state(o.get(), D({{S("a"), I(1)}})));
    VP oc(mp_value_copy(o.get()));
    EXPECT_TRUE(mp_value_equal(o.get(), oc.get()));
    EXPECT_STREQ("m", mp_value_object_module(oc.get()));
    EXPECT_STREQ("n", mp_value_object_name(oc.get()));
    EXPECT_EQ(1u, mp_value_len(mp_value_object_args(oc.get())));
    EXPECT_EQ(1u, mp_value_len(mp_value_object_state(oc.get())));
    EXPECT_FALSE(mp_value_object_is_newobj(oc.get()));
    EXPECT_EQ(nullptr, mp_value_object_module(one.get()));
}

TEST(Value, DeepValuesFreeWithoutRecursion) {
    mp_value *root = mp_value_list_new(), *cur = root;
    for (int i = 0; i < 200000; i++) {
        mp_value *n = mp_value_list_new();
        ASSERT_EQ(0, mp_value_list_append(cur, n));
        cur = n;
    }
    // Too deep to encode or copy (bounded recursion), fine to free.
    void *buf;
    size_t len;
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(root, &buf, &len));
    EXPECT_EQ(nullptr, buf);
    EXPECT_EQ(nullptr, mp_value_copy(root));
    mp_value_free(root);
}

// ---- the codec: our own round trips ----------------------------------------------

TEST(ValueCodec, RoundTripsEveryType) {
    std::vector<mp_value *> vals = {N(),
                                    B(true),
                                    B(false),
                                    I(0),
                                    I(-1),
                                    I(255),
                                    I(256),
                                    I(65535),
                                    I(65536),
                                    I(INT32_MAX),
                                    I(INT32_MIN),
                                    I((int64_t)INT32_MIN - 1),
                                    I((int64_t)1 << 40),
                                    I(-((int64_t)1 << 40)),
                                    I(INT64_MAX),
                                    I(INT64_MIN),
                                    F(0.1),
                                    F(-0.0),
                                    F(INFINITY),
                                    F(-INFINITY),
                                    F(NAN),
                                    S(""),
                                    S("x"),
                                    S(std::string(255, 'a')),
                                    S(std::string(256, 'b')),
                                    S(std::string(70000, 'c')),
                                    S(std::string("nul\0inside", 10)),
                                    S("\xed\xa0\x80"),
                                    Y(""),
                                    Y(std::string(300, '\xff')),
                                    Y(std::string(100000, '\0')),
                                    T({}),
                                    T({N()}),
                                    L({}),
                                    D({}),
                                    sample(),
                                    O("collections", "OrderedDict", nullptr)};
    for (mp_value *v : vals) {
        VP owned(v);
        VP back = roundtrip(v);
        EXPECT_TRUE(mp_value_equal(v, back.get()))
            << "type " << mp_value_type_name(mp_value_get_type(v));
    }
}

TEST(ValueCodec, BigContainersAndFrames) {
    VP l(mp_value_list_new());
    for (int i = 0; i < 20000; i++)
        ASSERT_EQ(0, mp_value_list_append(l.get(), I((int64_t)i * 1000003)));
    VP d(mp_value_dict_new());
    for (int i = 0; i < 3000; i++)
        ASSERT_EQ(0, mp_value_dict_set(d.get(), S("key" + std::to_string(i)),
                                       L({I(i), S(std::string(50, 'v'))})));
    VP big(L({mp_value_copy(l.get()), mp_value_copy(d.get()), Y(std::string(200000, 'z')), I(1)}));
    for (mp_value *v : {l.get(), d.get(), big.get()}) {
        std::string p = dumps(v);
        ASSERT_GT(p.size(), (size_t)65536);
        EXPECT_EQ('\x80', p[0]);
        EXPECT_EQ('\x05', p[1]);
        EXPECT_EQ('\x95', p[2]); // FRAME
        VP back;
        ASSERT_EQ(0, loads(p, &back)) << mp_last_error_message();
        EXPECT_TRUE(mp_value_equal(v, back.get()));
    }
}

TEST(ValueCodec, ExactBytesAsCPython) {
    // pickle.dumps(x, 5), with pickletools.optimize dropping CPython's unused memo ops.
    VP n(N());
    EXPECT_EQ(std::string("\x80\x05N.", 4), dumps(n.get()));
    VP l(L({I(1), I(300), I(-5)}));
    EXPECT_EQ("8005950e000000000000005d284b014d2c014afbffffff652e", hex(dumps(l.get())));
    VP t(T({S("a"), B(true), F(1.5)}));
    EXPECT_EQ("8005950f000000000000008c016188473ff8000000000000872e", hex(dumps(t.get())));
    VP d(D({{S("k"), L({Y("x"), N()})}}));
    EXPECT_EQ("8005950d000000000000007d8c016b5d284301784e65732e", hex(dumps(d.get())));
    VP st(SET({I(1), I(2)})), fz(FS({I(3)})), fk(D({{FS({I(1)}), SET({})}})), fe(FS({}));
    EXPECT_EQ("80059508000000000000008f284b014b02902e", hex(dumps(st.get())));
    EXPECT_EQ("8005950500000000000000284b03912e", hex(dumps(fz.get())));
    EXPECT_EQ("80059508000000000000007d284b01918f732e", hex(dumps(fk.get())));
    EXPECT_EQ("800528912e", hex(dumps(fe.get())));
}

TEST(ValueCodec, DepthLimitOnDumps) {
    mp_value *root = mp_value_list_new(), *cur = root;
    for (int i = 1; i < MP_VALUE_MAX_DEPTH; i++) {
        mp_value *n = mp_value_list_new();
        ASSERT_EQ(0, mp_value_list_append(cur, n));
        cur = n;
    }
    VP owned(root);
    VP back = roundtrip(root); // exactly MP_VALUE_MAX_DEPTH deep: fine
    EXPECT_TRUE(mp_value_equal(root, back.get()));
    ASSERT_EQ(0, mp_value_list_append(cur, mp_value_list_new()));
    void *buf;
    size_t len;
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(root, &buf, &len));
}

TEST(ValueCodec, DumpsRefusesBadInput) {
    void *buf = (void *)1;
    size_t len = 9;
    VP bad(mp_value_strn("\xff\xfe", 2));
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(bad.get(), &buf, &len));
    EXPECT_EQ(nullptr, buf);
    EXPECT_EQ(0u, len);
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "UTF-8"));
    VP obj(O("m", "f", L({})));
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(obj.get(), &buf, &len));
    EXPECT_EQ(MP_EINVAL, mp_value_dumps(nullptr, &buf, &len));
    mp_value_buf_free(nullptr);
}

// ---- the codec: hostile and malformed input --------------------------------------

namespace {
std::string P(std::initializer_list<int> bytes) {
    std::string s;
    for (int b : bytes) s += (char)b;
    return s;
}
std::string with_proto(const std::string &body) { return std::string("\x80\x05", 2) + body; }
} // namespace

TEST(ValueCodec, EveryTruncationFails) {
    VP s(sample());
    std::vector<std::string> pickles = {dumps(s.get())};
    // Hand-made: memo ops, GET, MARK/TUPLE, LONG1, SETITEM, set ops, a frame.
    std::string body =
        P({']', '(', 'K',  1,   0x94, 0x8a, 2,   0x34, 0x12, 'h', 0,   0x8f, 0x94, '(',
           'K', 9,   0x90, '(', 'N',  't',  'e', '}',  'N',  'N', 's', 'a',  '.'});
    pickles.push_back(with_proto(P({0x95, (int)body.size(), 0, 0, 0, 0, 0, 0, 0}) + body));
    for (const std::string &p : pickles) {
        VP v;
        ASSERT_EQ(0, loads(p, &v)) << mp_last_error_message();
        for (size_t i = 0; i < p.size(); i++) {
            VP t;
            int rc = loads(p.substr(0, i), &t);
            EXPECT_EQ(MP_EPROTO, rc) << "prefix " << i << ": " << mp_last_error_message();
        }
    }
}

TEST(ValueCodec, MalformedInputGivesPreciseErrors) {
    struct Case {
        std::string pickle;
        int rc;
        const char *needle;
    };
    const std::string huge8 = P({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f});
    std::vector<Case> cases = {
        {"", MP_EPROTO, "empty"},
        {with_proto(P({0xff})), MP_EPROTO, "unknown opcode"},
        {P({0x80, 9, 'N', '.'}), MP_EPROTO, "protocol 9"},
        {with_proto("N"), MP_EPROTO, "truncated"},
        {with_proto(P({0x8d}) + huge8 + "x."), MP_ETOOBIG, "str length"},
        {with_proto(P({0x8e}) + huge8 + "x."), MP_ETOOBIG, "bytes length"},
        {with_proto(P({'X', 0xff, 0xff, 0xff, 0x00, 'a', '.'})), MP_EPROTO, "only"},
        {with_proto(P({0x95}) + huge8 + "N."), MP_EPROTO, "frame"},
        {with_proto(P({0x95, 2, 0, 0, 0, 0, 0, 0, 0, 'M', 1, 2, '.'})), MP_EPROTO, "frame ends"},
        {with_proto(P({0x8b, 0xff, 0xff, 0xff, 0xff, '.'})), MP_EPROTO, "negative"},
        {with_proto(P({0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, '.'})), MP_ETOOBIG, "64 bits"},
        {with_proto(P({0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, '.'})), MP_ETOOBIG, "64 bits"},
        {"I99999999999999999999\n.", MP_ETOOBIG, "64 bits"},
        {"I12x\n.", MP_EPROTO, "decimal"},
        {with_proto("NN."), MP_EPROTO, "2 values"},
        {with_proto("."), MP_EPROTO, "0 values"},
        {with_proto("N.junk"), MP_EPROTO, "after STOP"},
        {with_proto("(N."), MP_EPROTO, "MARK"},
        {with_proto("Nt."), MP_EPROTO, "without a MARK"},
        {with_proto("Na."), MP_EPROTO, "needs 2 values"},
        {with_proto("NNa."), MP_EPROTO, "APPEND to a NoneType"},
        {with_proto("]NNs."), MP_EPROTO, "SETITEM to a list"},
        {with_proto("}(Nu."), MP_EPROTO, "odd number"},
        {with_proto(P({'h', 3, '.'})), MP_EPROTO, "never stored"},
        {with_proto(P({'N', 'q', 5, '.'})), MP_EPROTO, "skips ahead"},
        {with_proto(P({'r', 0, 0, 0, 0, '.'})), MP_EPROTO, "empty stack"},
        {with_proto(P({']', 0x94, 'h', 0, 'a', '.'})), MP_EPROTO, "cycle"},
        {with_proto(P({'X', 2, 0, 0, 0, 0xc3, 0x28, '.'})), MP_EPROTO, "UTF-8"},
        {with_proto("N0."), MP_EPROTO, "POP"},
        {with_proto(P({0x97, '.'})), MP_EPROTO, "not supported"},
        // protocols 0 and 1: text arguments, Python 2 strings
        {"S'py2\n.", MP_EPROTO, "must be quoted"},
        {"S'\n.", MP_EPROTO, "must be quoted"},
        {"S\"py2'\n.", MP_EPROTO, "must be quoted"},
        {"S'caf\\xe9'\n.", MP_EPROTO, "non-ASCII"},
        {"S'caf\xe9'\n.", MP_EPROTO, "non-ASCII"},
        {"S'a\\x4'\n.", MP_EPROTO, "\\x escape"},
        {"S'a\\'\n.", MP_EPROTO, "lone backslash"},
        {"U\x02\x80"
         "a.",
         MP_EPROTO, "non-ASCII"},
        {"T\xff\xff\xff\xff.", MP_EPROTO, "negative BINSTRING"},
        {LIT("T\x05\x00\x00\x00"
             "abc"),
         MP_EPROTO, "truncated"},
        {"Vabc", MP_EPROTO, "truncated"},
        {"Vab\\u12\n.", MP_EPROTO, "\\u escape"},
        {"Vab\\u12g4\n.", MP_EPROTO, "\\u escape"},
        {"V\\U00110000\n.", MP_EPROTO, "U+10FFFF"},
        {"Fabc\n.", MP_EPROTO, "not a number"},
        {"F1_0\n.", MP_EPROTO, "not a number"},
        {"F 1.5\n.", MP_EPROTO, "not a number"},
        {"F1.5 \n.", MP_EPROTO, "not a number"},
        {"F.\n.", MP_EPROTO, "not a number"},
        {"F1e\n.", MP_EPROTO, "not a number"},
        {"F0x10\n.", MP_EPROTO, "not a number"},
        {"Fnan(1)\n.", MP_EPROTO, "not a number"},
        {"F1e999\n.", MP_EPROTO, "float range"},
        {"F-1e999\n.", MP_EPROTO, "float range"},
        {"F" + std::string(300, '1') + "\n.", MP_EPROTO, "longer than 256"},
        {"I010\n.", MP_EPROTO, "leading zero"},
        {"I0x10\n.", MP_EPROTO, "leading zero"},
        {"I1_0\n.", MP_EPROTO, "decimal"},
        {"I\n.", MP_EPROTO, "empty"},
        {"L12x\n.", MP_EPROTO, "decimal"},
        {"LL\n.", MP_EPROTO, "empty"},
        {"L99999999999999999999L\n.", MP_ETOOBIG, "64 bits"},
        {"L9223372036854775808L\n.", MP_ETOOBIG, "64 bits"},
        {"I" + std::string(5000, '7') + "\n.", MP_ETOOBIG, "64 bits"},
        // keys and set items Python cannot hash
        {with_proto("}]Ns."), MP_EPROTO, "unhashable"},
        {with_proto("}(]N)Nu."), MP_EPROTO, "unhashable"},
        {with_proto("(]\x91."), MP_EPROTO, "unhashable"},
        {with_proto("\x8f(}\x90."), MP_EPROTO, "unhashable"},
        {with_proto("(\x8f\x85\x91."), MP_EPROTO, "unhashable"},
        {"\x80\x02"
         "c__builtin__\nfrozenset\n]]a\x85R.",
         MP_EPROTO, "unhashable"},
        // a memo reference to the arguments of set() after they became the set
        {LIT("\x80\x02"
             "c__builtin__\nset\n]q\x00K\x01"
             "a\x85Rh\x00."),
         MP_EPROTO, "constructor"},
        {LIT("\x80\x02"
             "c__builtin__\nset\n]K\x01"
             "a\x85q\x00Rh\x00."),
         MP_EPROTO, "constructor"},
        {with_proto("K\x01K\x02\x93."), MP_EPROTO, "two str"},
        {with_proto(P({0x8f, '(', 'K', 1, 'e', '.'})), MP_EPROTO, "APPENDS to a set"},
        {with_proto(P({']', '(', 'K', 1, 0x90, '.'})), MP_EPROTO, "ADDITEMS to a list"},
        {with_proto("]Nb."), MP_EPROTO, "BUILD on a list"},
    };
    for (const Case &c : cases) {
        VP v;
        int rc = loads(c.pickle, &v);
        EXPECT_EQ(c.rc, rc) << hex(c.pickle) << ": " << mp_last_error_message();
        EXPECT_NE(nullptr, strstr(mp_last_error_message(), c.needle))
            << hex(c.pickle) << ": \"" << mp_last_error_message() << "\" lacks \"" << c.needle
            << "\"";
    }
    mp_value *v = nullptr;
    EXPECT_EQ(MP_EINVAL, mp_value_loads(nullptr, 3, nullptr, &v));
    EXPECT_EQ(MP_EINVAL, mp_value_loads("N.", 2, nullptr, nullptr));
}

TEST(ValueCodec, LimitsAreEnforced) {
    VP deep(L({L({L({L({})})})}));
    std::string p = dumps(deep.get());
    VP v;
    mp_value_limits lim = {};
    lim.max_depth = 4;
    EXPECT_EQ(0, loads(p, &v, &lim)) << mp_last_error_message();
    lim.max_depth = 3;
    EXPECT_EQ(MP_ETOOBIG, loads(p, &v, &lim));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "depth"));

    VP many(L({I(1), I(2), I(3), I(4)}));
    p = dumps(many.get());
    lim = {};
    lim.max_items = 6; // the list, four ints and the MARK
    EXPECT_EQ(0, loads(p, &v, &lim)) << mp_last_error_message();
    lim.max_items = 5;
    EXPECT_EQ(MP_ETOOBIG, loads(p, &v, &lim));

    VP str(S(std::string(1000, 's')));
    p = dumps(str.get());
    lim = {};
    lim.max_str = 1000;
    EXPECT_EQ(0, loads(p, &v, &lim));
    lim.max_str = 999;
    EXPECT_EQ(MP_ETOOBIG, loads(p, &v, &lim));
    lim = {};
    lim.max_size = p.size() - 1;
    EXPECT_EQ(MP_ETOOBIG, loads(p, &v, &lim));

    // Nesting one level per MARK: the C stack is never used for depth.
    std::string marks = "\x80\x05";
    for (int i = 0; i < 100000; i++) marks += "(";
    EXPECT_EQ(MP_EPROTO, loads(marks + ".", &v));
    std::string lists = "\x80\x05";
    for (int i = 0; i < 100000; i++) lists += "]";
    for (int i = 0; i < 99999; i++) lists += "a";
    EXPECT_EQ(MP_ETOOBIG, loads(lists + ".", &v));
}

TEST(ValueCodec, MemoBombIsBounded) {
    // l0 = [s]; l1 = [l0, l0]; l2 = [l1, l1] ... doubles each step through GET copies.
    std::string p = "\x80\x05"
                    "\x8c\x04"
                    "abcd";
    p += P({']', 'h', 0}); // the str is never memoized: expect an error
    VP v;
    EXPECT_EQ(MP_EPROTO, loads(p + "a.", &v));
    p = with_proto(P({0x8c, 4, 'a', 'b', 'c', 'd', 0x94}));
    for (int i = 0; i < 40; i++) {
        // [memo[i], memo[i]] memoized as i+1
        p += P({']', '(', 'j', i, 0, 0, 0, 'j', i, 0, 0, 0, 'e', 0x94});
    }
    p += ".";
    mp_value_limits lim = {};
    lim.max_items = 100000;
    int rc = loads(p, &v, &lim);
    EXPECT_EQ(MP_ETOOBIG, rc) << mp_last_error_message();
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "memo copies count"))
        << mp_last_error_message();
    lim.max_size = 1 << 16;
    lim.max_items = SIZE_MAX;
    rc = loads(p, &v, &lim);
    EXPECT_EQ(MP_ETOOBIG, rc) << mp_last_error_message(); // the strings' bytes
}

TEST(ValueCodec, SharedReferencesAreCopied) {
    // a = [1]; [a, a, {'k': a}] as CPython lays it out (memo, then GETs)
    std::string p = with_proto(P({']',  0x94, '(', ']', 0x94, 'K', 1, 'a', 'h', 1,  '}',
                                  0x94, 0x8c, 1,   'k', 0x94, 'h', 1, 's', 'e', '.'}));
    VP v;
    ASSERT_EQ(0, loads(p, &v)) << mp_last_error_message();
    VP want(L({L({I(1)}), L({I(1)}), D({{S("k"), L({I(1)})}})}));
    EXPECT_TRUE(mp_value_equal(want.get(), v.get()));
    // A memoized global is reused after REDUCE consumed it (no use after free).
    p = LIT("\x80\x02"
            "c__builtin__\nset\nq\x00]\x85R"
            "h\x00)R"
            "\x86.");
    ASSERT_EQ(0, loads(p, &v)) << mp_last_error_message();
    VP want2(T({SET({}), SET({})}));
    EXPECT_TRUE(mp_value_equal(want2.get(), v.get()));
    // A dict value replaced by a duplicate key stays valid for a later GET.
    p = with_proto(
        P({'}', 'K', 1, ']', 0x94, 'K', 7, 'a', 's', 'K', 1, 'N', 's', 'K', 2, 'h', 0, 's', '.'}));
    ASSERT_EQ(0, loads(p, &v)) << mp_last_error_message();
    VP want3(D({{I(1), N()}, {I(2), L({I(7)})}}));
    EXPECT_TRUE(mp_value_equal(want3.get(), v.get()));
}

TEST(ValueCodec, ObjectsAreInertOrRefused) {
    // pickle.dumps(datetime.date(2020,1,2), 2) shape: GLOBAL, args, REDUCE, then BUILD.
    std::string p = LIT("\x80\x02"
                        "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03}b.");
    VP v;
    ASSERT_EQ(0, loads(p, &v)) << mp_last_error_message();
    ASSERT_EQ(MP_VALUE_OBJECT, mp_value_get_type(v.get()));
    EXPECT_STREQ("os", mp_value_object_module(v.get()));
    EXPECT_STREQ("system", mp_value_object_name(v.get()));
    EXPECT_STREQ("ls", mp_value_as_str(mp_value_item(mp_value_object_args(v.get()), 0), nullptr));
    EXPECT_EQ(MP_VALUE_DICT, mp_value_get_type(mp_value_object_state(v.get())));
    mp_value_limits lim = {};
    lim.refuse_objects = true;
    EXPECT_EQ(MP_EPROTO, loads(p, &v, &lim));
    EXPECT_NE(nullptr, strstr(mp_last_error_message(), "os.system"));
    // NEWOBJ and a bare global; Python 2 names become Python 3 ones below protocol 3.
    p = with_proto(P({0x8c, 1, 'm', 0x8c, 1, 'C', 0x93, 'K', 1, 0x85, 0x81, '.'}));
    ASSERT_EQ(0, loads(p, &v)) << mp_last_error_message();
    EXPECT_TRUE(mp_value_object_is_newobj(v.get()));
    ASSERT_EQ(0, loads("\x80\x02"
                       "c__builtin__\nlong\n.",
                       &v));
    EXPECT_STREQ("builtins", mp_value_object_module(v.get()));
    EXPECT_STREQ("int", mp_value_object_name(v.get()));
    EXPECT_EQ(nullptr, mp_value_object_args(v.get()));
    // Protocol 2's constructors for bytes and sets are data, also with objects refused.
    p = LIT("\x80\x02"
            "c_codecs\nencode\nq\x00X\x04\x00\x00\x00"
            "a\xc3\xbf\x00"
            "q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.");
    ASSERT_EQ(0, loads(p, &v, &lim)) << mp_last_error_message();
    VP want(Y(std::string("a\xff\0", 3)));
    EXPECT_TRUE(mp_value_equal(want.get(), v.get()));
    ASSERT_EQ(0, loads("\x80\x02"
                       "c__builtin__\nbytes\n)R.",
                       &v, &lim))
        << mp_last_error_message();
    EXPECT_EQ(MP_VALUE_BYTES, mp_value_get_type(v.get()));
}

TEST(ValueCodec, StressRandomMutationsNeverCrash) {
    VP s(sample());
    std::string base = dumps(s.get());
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    auto rnd = [&x]() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    int ok = 0;
    for (int i = 0; i < 20000; i++) {
        std::string m = base;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % m.size();
            switch (rnd() % 3) {
            case 0:
                m[at] = (char)rnd();
                break;
            case 1:
                m.erase(at, 1 + rnd() % 8);
                break;
            default:
                m.insert(at, 1, (char)rnd());
                break;
            }
            if (m.empty()) m = "N";
        }
        VP v;
        if (loads(m, &v) == 0) {
            ok++;
            void *buf;
            size_t len;
            if (mp_value_dumps(v.get(), &buf, &len) == 0) {
                mp_value *a2 = nullptr;
                ASSERT_EQ(0, mp_value_loads(buf, len, nullptr, &a2));
                EXPECT_TRUE(mp_value_equal(v.get(), a2));
                mp_value_free(a2);
                mp_value_buf_free(buf);
            }
        }
    }
    RecordProperty("decoded", ok);
}

// Protocols 0 and 1 as CPython's unpickler reads them: text numbers, raw-unicode-escape
// (V), Python 2 strings (S with escapes, T, U: ASCII becomes str, as Python 3's loads).
TEST(ValueCodec, TextProtocolsAndPython2Strings) {
    struct Case {
        std::string pickle;
        mp_value *want;
    };
    const Case cases[] = {
        {"I0\n.", I(0)},
        {"I-0\n.", I(0)},
        {"I+7\n.", I(7)},
        {"I000\n.", I(0)},
        {"I00\n.", B(false)},
        {"I01\n.", B(true)},
        {"I9223372036854775807\n.", I(INT64_MAX)},
        {"I-9223372036854775808\n.", I(INT64_MIN)},
        {"L5\n.", I(5)},
        {"L5L\n.", I(5)},
        {"L0L\n.", I(0)},
        {"L-9223372036854775808L\n.", I(INT64_MIN)},
        {"L00L\n.", I(0)},
        {"F0.10000000000000001\n.", F(0.1)},
        {"F1.1000000000000001\n.", F(1.1)},
        {"F1.\n.", F(1.0)},
        {"F.5\n.", F(0.5)},
        {"F+1.5\n.", F(1.5)},
        {"F1E5\n.", F(1e5)},
        {"F1e-5\n.", F(1e-5)},
        {"F-0.0\n.", F(-0.0)},
        {"F5e-324\n.", F(5e-324)},
        {"F1e-400\n.", F(0.0)},
        {"F1.7976931348623157e+308\n.", F(1.7976931348623157e308)},
        {"F2.2250738585072011e-308\n.", F(2.2250738585072011e-308)},
        {"Finf\n.", F(INFINITY)},
        {"F-Infinity\n.", F(-INFINITY)},
        {"FNaN\n.", F(NAN)},
        {"F-nan\n.", F(-NAN)},
        {"V\n.", S("")},
        {"Vabc\n.", S("abc")},
        {"V\xe9\xff\x01\n.", S("\xc3\xa9\xc3\xbf\x01")},
        {LIT("Va\x00"
             "b\n."),
         S(LIT("a\0b"))}, // Python 2 leaves NUL raw
        {"V\\u20ac\\U0001F600\\u005c\n.", S("\xe2\x82\xac\xf0\x9f\x98\x80\\")},
        {"V\\ud83d\\ude00\n.", S("\xed\xa0\xbd\xed\xb8\x80")}, // two lone surrogates, as Python 3
        {"V\\x\\\\u0041\\\n.",
         S("\\x\\\\u0041\\")}, // only \u and \U escape; "\\" is two backslashes
        {"S''\n.", S("")},
        {"S\"it's\"\n.", S("it's")},
        {"S'\\\\ \\' \\\" \\a\\b\\f\\n\\r\\t\\v'\n.", S("\\ ' \" \a\b\f\n\r\t\v")},
        {"S'\\0\\101\\1010\\x41\\x7f \\q \\8'\n.", S(LIT("\0AA0A\x7f \\q \\8"))},
        {"S'\\501'\n.", S("A")}, // octal beyond 0377 is taken modulo 256
        {"U\x03"
         "abc.",
         S("abc")},
        {LIT("T\x02\x00\x00\x00hi."), S("hi")},
        {LIT("T\x00\x00\x00\x00."), S("")},
        // Python 2's cPickle numbers its memo from 1
        {"((lp1\nI1\naI2\nag1\nt.", T({L({I(1), I(2)}), L({I(1), I(2)})})},
        {"(]q\x01"
         "K\x01"
         "ah\x01"
         "t.",
         T({L({I(1)}), L({I(1)})})},
        // Python 2's bytearray(u'...', 'latin-1'), and Python 3's _codecs.encode
        {"c__builtin__\nbytearray\np1\n(V\xff\nS'latin-1'\ntRp2\n.", Y("\xff")},
        {"c_codecs\nencode\np0\n(Vab\xff\np1\nVlatin1\np2\ntp3\nRp4\n.", Y("ab\xff")},
    };
    for (const Case &c : cases) {
        VP want(c.want), v;
        ASSERT_EQ(0, loads(c.pickle, &v)) << hex(c.pickle) << ": " << mp_last_error_message();
        EXPECT_TRUE(mp_value_equal(want.get(), v.get())) << hex(c.pickle);
        if (mp_value_get_type(want.get()) == MP_VALUE_FLOAT) {
            EXPECT_EQ(std::signbit(mp_value_as_float(want.get())),
                      std::signbit(mp_value_as_float(v.get())))
                << hex(c.pickle) << " " << mp_value_as_float(v.get());
        }
    }
    // Text arguments stay inside a frame, as CPython's framed reader has it.
    VP v;
    std::string framed = with_proto(P({0x95, 3, 0, 0, 0, 0, 0, 0, 0}) + "I12\n.");
    EXPECT_EQ(MP_EPROTO, loads(framed, &v)) << "the line ends past its frame";
    framed = with_proto(P({0x95, 5, 0, 0, 0, 0, 0, 0, 0}) + "I123\n.");
    ASSERT_EQ(0, loads(framed, &v)) << mp_last_error_message();
    EXPECT_EQ(123, mp_value_as_int(v.get()));
    // A long V is bounded by max_str as decoded (UTF-8), not as written.
    std::string lat = "V" + std::string(600, '\xe9') + "\n.";
    mp_value_limits lim = {};
    lim.max_str = 1200;
    ASSERT_EQ(0, loads(lat, &v, &lim)) << mp_last_error_message();
    EXPECT_EQ(1200u, mp_value_len(v.get()));
    lim.max_str = 1199;
    EXPECT_EQ(MP_ETOOBIG, loads(lat, &v, &lim));
    lim = {};
    lim.max_size = 1200; // the decoded bytes count against max_size too
    EXPECT_EQ(0, loads(lat, &v, &lim)) << mp_last_error_message();
    lim.max_size = 1199;
    EXPECT_EQ(MP_ETOOBIG, loads(lat, &v, &lim));
    // A locale with a decimal comma does not change how floats read.
    const char *old = setlocale(LC_NUMERIC, nullptr);
    std::string saved = old ? old : "C";
    bool comma = setlocale(LC_NUMERIC, "de_DE.UTF-8") || setlocale(LC_NUMERIC, "fr_FR.UTF-8");
    ASSERT_EQ(0, loads("F2.5\n.", &v)) << mp_last_error_message();
    EXPECT_EQ(2.5, mp_value_as_float(v.get()))
        << (comma ? "with a decimal-comma locale" : "C locale");
    EXPECT_EQ(MP_EPROTO, loads("F2,5\n.", &v));
    setlocale(LC_NUMERIC, saved.c_str());
}

// ---- interop with CPython ----------------------------------------------------------

#ifndef _WIN32
namespace {

bool have_python() { return std::system("python3 -c 'import pickle' >/dev/null 2>&1") == 0; }

std::string temp_path(const char *name) {
    return ::testing::TempDir() + "mp_value_" + std::to_string((long long)mp_getpid()) + "_" + name;
}

std::string run_python(const std::string &script, const std::string &input,
                       const std::string &python = "python3") {
    std::string sp = temp_path("script.py"), ip = temp_path("in.txt"), op = temp_path("out.txt");
    std::ofstream(sp) << script;
    std::ofstream(ip) << input;
    std::string cmd = python + " " + sp + " < " + ip + " > " + op;
    int rc = std::system(cmd.c_str());
    EXPECT_EQ(0, rc) << cmd;
    std::ifstream in(op);
    std::stringstream ss;
    ss << in.rdbuf();
    std::remove(sp.c_str());
    std::remove(ip.c_str());
    std::remove(op.c_str());
    return ss.str();
}

} // namespace
#endif

TEST(ValueInterop, PythonPicklesDecode) {
#ifdef _WIN32
    GTEST_SKIP() << "no python3 beside the Windows build (Wine)";
#else
    if (!have_python()) GTEST_SKIP() << "python3 not found";
    // Python expression -> the value we expect (sets as lists, bytearray as bytes).
    std::vector<std::pair<std::string, mp_value *>> cases = {
        {"None", N()}, {"True", B(true)}, {"False", B(false)}, {"0", I(0)}, {"-1", I(-1)},
        {"300", I(300)}, {"70000", I(70000)}, {"-2**31", I(INT32_MIN)}, {"2**31", I((int64_t)1 << 31)},
        {"2**63-1", I(INT64_MAX)}, {"-2**63", I(INT64_MIN)}, {"1.5", F(1.5)}, {"-0.0", F(-0.0)},
        {"float('inf')", F(INFINITY)}, {"''", S("")}, {"'h\\u00e9llo \\u20ac \\U0001F600'", S("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80")},
        {"'\\ud800'", S("\xed\xa0\x80")}, {"'x'*300", S(std::string(300, 'x'))},
        {"'y'*70000", S(std::string(70000, 'y'))}, {"b''", Y("")},
        {"bytes(range(256))", Y([] { std::string s; for (int i = 0; i < 256; i++) s += (char)i; return s; }())},
        {"b'z'*70000", Y(std::string(70000, 'z'))}, {"bytearray(b'ab')", Y("ab")}, {"bytearray()", Y("")},
        {"()", T({})}, {"(1,)", T({I(1)})}, {"(1,2)", T({I(1), I(2)})}, {"(1,2,3)", T({I(1), I(2), I(3)})},
        {"(1,2,3,4)", T({I(1), I(2), I(3), I(4)})}, {"[]", L({})}, {"[None]", L({N()})},
        {"[[1,[2,[3]]],{}]", L({L({I(1), L({I(2), L({I(3)})})}), D({})})},
        {"{'a': 1, 2: 'b', (3,): [4]}", D({{S("a"), I(1)}, {I(2), S("b")}, {T({I(3)}), L({I(4)})}})},
        {"{1}", SET({I(1)})}, {"set()", SET({})}, {"frozenset([5])", FS({I(5)})},
        {"[{(2, 3)}, {frozenset([4])}, {frozenset()}]", L({SET({T({I(2), I(3)})}), SET({FS({I(4)})}), SET({FS({})})})},
        {"{frozenset([1, 2]): 'a', frozenset(): 'b', (1, frozenset([(2,)])): [3]}",
         D({{FS({I(1), I(2)}), S("a")}, {FS({}), S("b")}, {T({I(1), FS({T({I(2)})})}), L({I(3)})}})},
        {"{1: 'int', 1.0: 'float', True: 'bool', 2.5: None}", D({{I(1), S("bool")}, {F(2.5), N()}})},
        {"list(range(-300, 300, 7))", [] { mp_value *l = mp_value_list_new(); for (int i = -300; i < 300; i += 7) mp_value_list_append(l, I(i)); return l; }()},
        {"[2**31 - 1, 2**31, -2**31 - 1, 2**40, -2**40, 2**62, 10**18, -10**18]",
         L({I(INT32_MAX), I((int64_t)1 << 31), I((int64_t)INT32_MIN - 1), I((int64_t)1 << 40), I(-((int64_t)1 << 40)),
            I((int64_t)1 << 62), I(1000000000000000000LL), I(-1000000000000000000LL)})},
        {"[0.1, -2.5, 1e300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1/3, 123456789.125, float('-inf')]",
         L({F(0.1), F(-2.5), F(1e300), F(5e-324), F(2.2250738585072014e-308), F(1.7976931348623157e308), F(1.0 / 3),
            F(123456789.125), F(-INFINITY)})},
        {"'back\\\\slash \\\\u0041 new\\nline \\r \\x00 \\x1a \\x7f \\xff quote\\' \"'",
         S(LIT("back\\slash \\u0041 new\nline \r \0 \x1a \x7f \xc3\xbf quote' \""))},
        {"[list(range(3))]*2", L({L({I(0), I(1), I(2)}), L({I(0), I(1), I(2)})})},
        {"(lambda a: (a, a, [a]))({'k': b'v'})", T({D({{S("k"), Y("v")}}), D({{S("k"), Y("v")}}), L({D({{S("k"), Y("v")}})})})},
    };
    mp_value *od = O("collections", "OrderedDict", T({}));
    mp_value_dict_set(od, S("b"), I(1));
    mp_value_dict_set(od, S("a"), L({I(2)}));
    cases.push_back({"__import__('collections').OrderedDict([('b', 1), ('a', [2])])", od});
    // date reduces to date(b'\x07\xe4\x01\x02'); protocol 2 spells the bytes _codecs.encode
    cases.push_back({"__import__('datetime').date(2020, 1, 2)",
                     O("datetime", "date", T({Y(std::string("\x07\xe4\x01\x02", 4))}))});
    mp_value *big = mp_value_list_new();
    for (int i = 0; i < 2500; i++) mp_value_list_append(big, I(i));
    cases.push_back({"list(range(2500))", big});
    mp_value *bigd = mp_value_dict_new();
    for (int i = 0; i < 1500; i++) mp_value_dict_set(bigd, S(std::to_string(i)), I(i));
    cases.push_back({"{str(i): i for i in range(1500)}", bigd});

    std::string exprs;
    for (auto &c : cases) exprs += c.first + "\n";
    std::string out =
        run_python("import pickle, sys\n"
                   "for e in sys.stdin.read().splitlines():\n"
                   "    o = eval(e)\n"
                   "    print(' '.join(pickle.dumps(o, p).hex() for p in (0, 1, 2, 3, 4, 5)))\n",
                   exprs);
    std::istringstream lines(out);
    for (auto &c : cases) {
        std::string line;
        ASSERT_TRUE(std::getline(lines, line)) << "python gave no line for " << c.first;
        std::istringstream hx(line);
        for (int proto = 0; proto <= 5; proto++) {
            std::string h;
            ASSERT_TRUE(hx >> h);
            VP v;
            ASSERT_EQ(0, loads(unhex(h), &v))
                << c.first << " protocol " << proto << ": " << mp_last_error_message();
            EXPECT_TRUE(mp_value_equal(c.second, v.get())) << c.first << " protocol " << proto;
        }
        mp_value_free(c.second);
    }
#endif
}

// Ints beyond int64 are MP_ETOOBIG at every protocol (text, LONG1, LONG4).
TEST(ValueInterop, PythonHugeIntsAreTooBig) {
#ifdef _WIN32
    GTEST_SKIP() << "no python3 beside the Windows build (Wine)";
#else
    if (!have_python()) GTEST_SKIP() << "python3 not found";
    std::string out =
        run_python("import pickle, sys\n"
                   "for e in sys.stdin.read().splitlines():\n"
                   "    print(' '.join(pickle.dumps(eval(e), p).hex() for p in range(6)))\n",
                   "2**63\n-2**63-1\n2**64\n10**30\n-10**100\n[1, 2**70]\n{'k': 2**2000}\n");
    std::istringstream lines(out);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        std::istringstream hx(line);
        std::string h;
        for (int proto = 0; hx >> h; proto++) {
            VP v;
            EXPECT_EQ(MP_ETOOBIG, loads(unhex(h), &v)) << "line " << n << " protocol " << proto;
            EXPECT_NE(nullptr, strstr(mp_last_error_message(), "64 bits"))
                << mp_last_error_message();
        }
        n++;
    }
    EXPECT_EQ(7, n);
#endif
}

// Python -> us -> Python: what Python pickled (protocols 0-5) and we pickled again is
// what Python started with, types included: frozenset keys stay hashable frozensets,
// sets stay sets, equal number keys stay one key.
TEST(ValueInterop, PythonRoundTripsThroughUs) {
#ifdef _WIN32
    GTEST_SKIP() << "no python3 beside the Windows build (Wine)";
#else
    if (!have_python()) GTEST_SKIP() << "python3 not found";
    const char *exprs[] = {
        "{frozenset([1, 2]): 'a', frozenset(): 'b', (1, frozenset([(2,)])): [3]}",
        "{1: 'x', 2.5: 'y', True: 'z', 0: 'n', -0.0: 'm'}",
        "[{1, 2, 3}, frozenset(['a', 'b']), {frozenset([frozenset([1])]): set()}, set(), "
        "frozenset()]",
        "{(1, 2.0, 'x', b'y', None, True): frozenset([0.5, -1, 'z', b'z', ()])}",
        "{float('inf'): 1, -0.0: 2, 2**62: 3, -2**63: 4, 'k': {frozenset({('t', 1.5)}): None}}",
        "{frozenset(range(i, i + 20)): i for i in range(0, 400, 10)}",
        "set(range(3000)) | {frozenset([i]) for i in range(100)}",
        "[1, 1.5, 'str \\u20ac \\ud800', b'\\x00\\xff', (), [[]], {}, None, True, False, 2**62, "
        "-2**63]",
    };
    std::string in;
    for (const char *e : exprs) in += std::string(e) + "\n";
    std::string out =
        run_python("import pickle, sys\n"
                   "for e in sys.stdin.read().splitlines():\n"
                   "    print(' '.join(pickle.dumps(eval(e), p).hex() for p in range(6)))\n",
                   in);
    std::istringstream lines(out);
    std::string back, line;
    size_t n = 0;
    while (std::getline(lines, line)) {
        std::istringstream hx(line);
        std::string h;
        for (int proto = 0; hx >> h; proto++) {
            VP v;
            ASSERT_EQ(0, loads(unhex(h), &v))
                << exprs[n] << " protocol " << proto << ": " << mp_last_error_message();
            back +=
                std::to_string(n) + " " + std::to_string(proto) + " " + hex(dumps(v.get())) + "\n";
        }
        n++;
    }
    ASSERT_EQ(sizeof exprs / sizeof exprs[0], n);
    // sig: the value with the type of every part, comparable (== treats 1 and True,
    // set and frozenset as equal; this does not).
    std::string script =
        "import pickle, sys\n"
        "def sig(o):\n"
        "    t = type(o).__name__\n"
        "    if isinstance(o, dict): return (t, frozenset((sig(k), sig(v)) for k, v in o.items()), "
        "len(o))\n"
        "    if isinstance(o, (set, frozenset)): return (t, frozenset(sig(x) for x in o), len(o))\n"
        "    if isinstance(o, (list, tuple)): return (t, tuple(sig(x) for x in o))\n"
        "    if isinstance(o, float): return (t, o.hex())\n"
        "    return (t, o)\n"
        "exprs = " +
        [&] {
            std::string l = "[";
            for (const char *e : exprs) l += std::string(e) + ", ";
            return l + "]";
        }() +
        "\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    i, p, h = line.split()\n"
        "    got = pickle.loads(bytes.fromhex(h))\n"
        "    want = exprs[int(i)]\n"
        "    print(i, p, 'OK' if sig(got) == sig(want) else 'BAD %r' % (got,))\n";
    out = run_python(script, back);
    std::istringstream verdicts(out);
    int lines_seen = 0;
    while (std::getline(verdicts, line)) {
        lines_seen++;
        EXPECT_NE(std::string::npos, line.find(" OK")) << line;
    }
    EXPECT_EQ((int)(6 * n), lines_seen);
#endif
}

// Python 2's pickles (pickle and cPickle, protocols 0-2) decode as Python 3 loads them:
// ASCII str becomes str, unicode str, int and long int, sets sets.
TEST(ValueInterop, Python2PicklesDecode) {
#ifdef _WIN32
    GTEST_SKIP() << "no python beside the Windows build (Wine)";
#else
    // on PATH, or a pyenv 2.7 (as tests/CMakeLists.txt finds the 3.12/3.13 ones)
    std::string py2;
    if (FILE *f =
            popen("for p in python2.7 python2 \"$HOME\"/.pyenv/versions/2.7*/bin/python2.7; do "
                  "$p -c 'import cPickle' 2>/dev/null && { echo \"$p\"; break; }; done",
                  "r")) {
        char buf[512] = {0};
        if (fgets(buf, sizeof buf, f)) py2 = std::string(buf, strcspn(buf, "\n"));
        pclose(f);
    }
    if (py2.empty()) GTEST_SKIP() << "no python2 here";
    std::vector<std::pair<std::string, mp_value *>> cases = {
        {"None", N()},
        {"True", B(true)},
        {"False", B(false)},
        {"0", I(0)},
        {"-1", I(-1)},
        {"300", I(300)},
        {"2**31", I((int64_t)1 << 31)},
        {"-2**31-1", I((int64_t)INT32_MIN - 1)},
        {"2**62", I((int64_t)1 << 62)},
        {"2**63-1", I(INT64_MAX)},
        {"-2**63", I(INT64_MIN)},
        {"5L", I(5)},
        {"-(2L**40)", I(-((int64_t)1 << 40))},
        {"0.1", F(0.1)},
        {"1.1", F(1.1)},
        {"-0.0", F(-0.0)},
        {"float('inf')", F(INFINITY)},
        {"1e300", F(1e300)},
        {"5e-324", F(5e-324)},
        {"1.0/3", F(1.0 / 3)},
        {"u'h\\xe9\\u20ac\\U0001F600\\\\ \\n \\x00 \\r'",
         S(LIT("h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\ \n \0 \r"))},
        {"u''", S("")},
        {"'abc'", S("abc")},
        {"''", S("")},
        {"'it\\'s \"q\" \\t\\n\\x01\\\\'", S("it's \"q\" \t\n\x01\\")},
        {"'x' * 300", S(std::string(300, 'x'))},
        {"u'y' * 70000", S(std::string(70000, 'y'))},
        {"()", T({})},
        {"(1, 'a', u'b')", T({I(1), S("a"), S("b")})},
        {"[]", L({})},
        {"[[1, [2]], {}]", L({L({I(1), L({I(2)})}), D({})})},
        {"[{'a': 1}, {u'b': 2.5}, {3: None}, {(4,): [5]}]", // Python 2 dicts have no order
         L({D({{S("a"), I(1)}}), D({{S("b"), F(2.5)}}), D({{I(3), N()}}),
            D({{T({I(4)}), L({I(5)})}})})},
        {"set([1])", SET({I(1)})},
        {"frozenset([2])", FS({I(2)})},
        {"set()", SET({})},
        {"{frozenset([1]): 2}", D({{FS({I(1)}), I(2)}})},
        {"bytearray('x\\xff')", Y("x\xff")},
        {"(lambda a: (a, a, [a]))({'k': [1]})",
         T({D({{S("k"), L({I(1)})}}), D({{S("k"), L({I(1)})}}), L({D({{S("k"), L({I(1)})}})})})},
        {"range(1500)",
         [] {
             mp_value *l = mp_value_list_new();
             for (int i = 0; i < 1500; i++) mp_value_list_append(l, I(i));
             return l;
         }()},
    };
    std::string exprs;
    for (auto &c : cases) exprs += c.first + "\n";
    std::string out = run_python("import pickle, cPickle, sys, binascii\n"
                                 "for e in sys.stdin.read().splitlines():\n"
                                 "    o = eval(e)\n"
                                 "    sys.stdout.write(' '.join(binascii.hexlify(m.dumps(o, p)) "
                                 "for m in (pickle, cPickle) for p in (0, 1, 2)) + '\\n')\n",
                                 exprs, py2);
    std::istringstream lines(out);
    for (auto &c : cases) {
        std::string line;
        ASSERT_TRUE(std::getline(lines, line)) << "python2 gave no line for " << c.first;
        std::istringstream hx(line);
        std::string h;
        for (int k = 0; hx >> h; k++) {
            VP v;
            const char *how = k < 3 ? "pickle" : "cPickle";
            ASSERT_EQ(0, loads(unhex(h), &v)) << c.first << " " << how << " protocol " << k % 3
                                              << ": " << mp_last_error_message();
            EXPECT_TRUE(mp_value_equal(c.second, v.get()))
                << c.first << " " << how << " protocol " << k % 3;
        }
        mp_value_free(c.second);
    }
    // A Python 2 str that is not ASCII: Python 3 refuses it (without an encoding), so do we.
    out = run_python("import cPickle, binascii, sys\n"
                     "sys.stdout.write(' '.join(binascii.hexlify(cPickle.dumps('caf\\xe9', p)) for "
                     "p in (0, 1, 2)))\n",
                     "", py2);
    std::istringstream hx(out);
    std::string h;
    int k = 0;
    for (; hx >> h; k++) {
        VP v;
        EXPECT_EQ(MP_EPROTO, loads(unhex(h), &v)) << "protocol " << k;
        EXPECT_NE(nullptr, strstr(mp_last_error_message(), "non-ASCII")) << mp_last_error_message();
    }
    EXPECT_EQ(3, k);
#endif
}

TEST(ValueInterop, PythonLoadsOurPickles) {
#ifdef _WIN32
    GTEST_SKIP() << "no python3 beside the Windows build (Wine)";
#else
    if (!have_python()) GTEST_SKIP() << "python3 not found";
    std::vector<std::pair<mp_value *, std::string>> cases = {
        {N(), "None"},
        {B(true), "True"},
        {B(false), "False"},
        {I(0), "0"},
        {I(-5), "-5"},
        {I(65536), "65536"},
        {I(INT64_MAX), "9223372036854775807"},
        {I(INT64_MIN), "-9223372036854775808"},
        {I((int64_t)1 << 32), "4294967296"},
        {F(0.1), "0.1"},
        {F(-INFINITY), "-inf"},
        {S("h\xc3\xa9llo"), "'h\\xe9llo'"},
        {S(std::string("a\0b", 3)), "'a\\x00b'"},
        {Y(std::string("\0\xff", 2)), "b'\\x00\\xff'"},
        {T({}), "()"},
        {T({I(1)}), "(1,)"},
        {T({I(1), I(2), I(3), I(4), I(5)}), "(1, 2, 3, 4, 5)"},
        {L({}), "[]"},
        {L({N(), L({S("x")}), T({I(1), I(2)})}), "[None, ['x'], (1, 2)]"},
        {D({{S("a"), I(1)}, {I(2), S("b")}, {T({I(3)}), D({})}}), "{'a': 1, 2: 'b', (3,): {}}"},
        {O("datetime", "date", T({I(2020), I(1), I(2)})), "datetime.date(2020, 1, 2)"},
        {O("collections", "OrderedDict", T({})), "OrderedDict []"},
        {O("builtins", "int", nullptr), "<class 'int'>"},
        {S(std::string(70000, 'q')), "70000"},
        {Y(std::string(100000, 'w')), "100000"},
        {SET({I(1), I(2)}), "{1, 2}"},
        {SET({}), "set()"},
        {FS({I(3)}), "frozenset({3})"},
        {D({{FS({I(1)}), SET({FS({})})}}), "{frozenset({1}): {frozenset()}}"},
        {D({{T({FS({}), F(0.5)}), N()}}), "{(frozenset(), 0.5): None}"},
    };
    // Keys equal by Python's == are one key here too: Python reads as many as we hold.
    mp_value *keys = D({{I(1), S("int")},
                        {F(1.0), S("float")},
                        {B(true), S("bool")},
                        {F(-0.0), S("negzero")},
                        {I(0), S("zero")},
                        {B(false), S("false")},
                        {F(0.5), S("half")}});
    EXPECT_EQ(3u, mp_value_len(keys));
    cases.push_back({keys, "{1: 'bool', -0.0: 'false', 0.5: 'half'}"});
    mp_value *big = mp_value_list_new();
    for (int i = 0; i < 2500; i++) mp_value_list_append(big, I(i));
    cases.push_back({big, "2500"});
    mp_value *od = O("collections", "OrderedDict", T({}));
    mp_value_dict_set(od, S("b"), I(1));
    mp_value_dict_set(od, S("a"), L({I(2)}));
    cases.push_back({od, "OrderedDict [('b', 1), ('a', [2])]"});
    mp_value *ul = O("collections", "UserList", T({}));
    mp_value_list_append(ul, I(5));
    mp_value_object_set_state(ul, D({{S("data"), L({I(7)})}}));
    cases.push_back({ul, "UserList [7]"});
    std::string in;
    for (auto &c : cases) in += hex(dumps(c.first)) + "\n";
    std::string out = run_python(
        "import pickle, sys\n"
        "for h in sys.stdin.read().split():\n"
        "    o = pickle.loads(bytes.fromhex(h))\n"
        "    if type(o).__name__ == 'OrderedDict': print('OrderedDict', ascii(list(o.items())))\n"
        "    elif type(o).__name__ == 'UserList': print('UserList', ascii(o.data))\n"
        "    else: print(len(o) if isinstance(o, (str, bytes, list)) and len(o) > 1000 else "
        "ascii(o))\n",
        in);
    std::istringstream lines(out);
    for (auto &c : cases) {
        std::string line;
        ASSERT_TRUE(std::getline(lines, line));
        EXPECT_EQ(c.second, line);
        mp_value_free(c.first);
    }
#endif
}
