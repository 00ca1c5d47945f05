// What the manager tests share (manager_test.cc, manager_types_test.cc,
// manager_life_test.cc, manager_sync_test.cc, manager_interop_test.cc): owners of values,
// proxies and managers, value helpers, and ManagerTest, the fixture that owns the
// managers a test starts on its backend.
#ifndef MP_TESTS_MANAGER_FIXTURE_H
#define MP_TESTS_MANAGER_FIXTURE_H

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "shm_fixture.h" // show(), and the fixture

namespace mpt {

struct ValFree {
    void operator()(mp_value *v) const { mp_value_free(v); }
};
using Val = std::unique_ptr<mp_value, ValFree>;

struct ProxyFree {
    void operator()(mp_proxy *p) const { mp_proxy_free(p); }
};
using Proxy = std::unique_ptr<mp_proxy, ProxyFree>;

struct ManagerFree {
    void operator()(mp_manager *m) const { mp_manager_free(m); }
};
using Manager = std::unique_ptr<mp_manager, ManagerFree>;

// ---- value helpers ------------------------------------------------------------------

// A non-NULL pointer for out-parameters that a failing call must reset to NULL.
template <class T> T *junk() {
    static char c;
    return reinterpret_cast<T *>(&c);
}

inline Val I(int64_t v) { return Val(mp_value_int(v)); }
inline Val S(const char *s) { return Val(mp_value_str(s)); }

// A tuple (or list) of new values, which it takes.
inline mp_value *tuple_of(std::initializer_list<mp_value *> items) {
    mp_value *t = mp_value_tuple_new();
    for (mp_value *v : items) mp_value_list_append(t, v);
    return t;
}
inline mp_value *list_of(std::initializer_list<mp_value *> items) {
    mp_value *t = mp_value_list_new();
    for (mp_value *v : items) mp_value_list_append(t, v);
    return t;
}
inline Val tup(std::initializer_list<mp_value *> items) { return Val(tuple_of(items)); }
inline Val lst(std::initializer_list<mp_value *> items) { return Val(list_of(items)); }

// Python's repr, near enough to compare values and to read in a failure message.
inline std::string repr(const mp_value *v) {
    char buf[64];
    std::string out;
    switch (mp_value_get_type(v)) {
    case MP_VALUE_NONE:
        return "None";
    case MP_VALUE_BOOL:
        return mp_value_as_bool(v) ? "True" : "False";
    case MP_VALUE_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)mp_value_as_int(v));
        return buf;
    case MP_VALUE_FLOAT:
        snprintf(buf, sizeof buf, "%.17g", mp_value_as_float(v));
        return std::string(buf) + (strpbrk(buf, ".eEn") ? "" : ".0");
    case MP_VALUE_STR: {
        size_t n = 0;
        const char *s = mp_value_as_str(v, &n);
        return "'" + std::string(s ? s : "", n) + "'";
    }
    case MP_VALUE_BYTES:
        return "b" + show(v).substr(6);
    case MP_VALUE_TUPLE:
    case MP_VALUE_LIST:
    case MP_VALUE_SET:
    case MP_VALUE_FROZENSET: {
        mp_value_type t = mp_value_get_type(v);
        const char *open = t == MP_VALUE_TUPLE ? "(" : t == MP_VALUE_LIST ? "[" : "{";
        const char *close = t == MP_VALUE_TUPLE ? ")" : t == MP_VALUE_LIST ? "]" : "}";
        out = open;
        for (size_t i = 0; i < mp_value_len(v); i++)
            out += (i ? ", " : "") + repr(mp_value_item(v, i));
        if (t == MP_VALUE_TUPLE && mp_value_len(v) == 1) out += ",";
        return out + close;
    }
    case MP_VALUE_DICT:
        out = "{";
        for (size_t i = 0; i < mp_value_len(v); i++)
            out += (i ? ", " : "") + repr(mp_value_dict_key(v, i)) + ": " +
                   repr(mp_value_dict_value(v, i));
        return out + "}";
    case MP_VALUE_OBJECT:
        return std::string("<object ") +
               (mp_value_object_module(v) ? mp_value_object_module(v) : "?") + "." +
               (mp_value_object_name(v) ? mp_value_object_name(v) : "?") + ">";
    }
    return "?";
}
inline std::string repr(const Val &v) { return repr(v.get()); }

inline std::string last_msg() {
    const char *m = mp_last_error_message();
    return m ? m : "";
}
inline bool has(const std::string &hay, const std::string &needle) {
    return hay.find(needle) != std::string::npos;
}
// The code's name and the detail, for failure messages.
inline std::string why(int rc) { return std::string(mp_err_name(rc)) + " " + err(); }

// A manager that is gone: the codes manager.h allows (and ECLOSED for a proxy whose
// manager this process freed).
inline bool gone_code(int rc) {
    return rc == MP_EPIPE || rc == MP_ENOENT || rc == MP_ECLOSED || rc == MP_ETIMEDOUT;
}

// ---- the fixture --------------------------------------------------------------------

class ManagerTest : public ProcessTest {
  protected:
    void TearDown() override {
        // Managers first: their servers are children that the base checks are gone.
        for (mp_manager *m : managers_) mp_manager_free(m);
        managers_.clear();
        ProcessTest::TearDown();
    }

    // Options with every call bounded.
    static mp_manager_opts opts(double timeout = kCap) {
        mp_manager_opts o = {};
        o.timeout = timeout;
        return o;
    }

    // A new manager on this backend (owned by the fixture), not started.
    mp_manager *make(const mp_manager_opts &o, bool sync = true) {
        mp_manager *m = nullptr;
        int rc = sync ? mp_sync_manager_new(ctx(), &o, &m) : mp_manager_new(ctx(), &o, &m);
        if (rc != 0 || !m) {
            ADD_FAILURE() << "mp_" << (sync ? "sync_" : "") << "manager_new: " << why(rc);
            return nullptr;
        }
        managers_.push_back(m);
        return m;
    }
    // make + the types registered + start; nullptr (and a failure) on error.
    mp_manager *launch(const mp_manager_opts &o = opts(),
                       std::initializer_list<const mp_manager_type *> types = {},
                       bool sync = true) {
        mp_manager *m = make(o, sync);
        if (!m) return nullptr;
        for (const mp_manager_type *t : types) {
            int rc = mp_manager_register(m, t);
            if (rc != 0) {
                ADD_FAILURE() << "mp_manager_register: " << why(rc);
                return nullptr;
            }
        }
        int rc = mp_manager_start(m);
        if (rc != 0) {
            ADD_FAILURE() << "mp_manager_start: " << why(rc);
            return nullptr;
        }
        return m;
    }
    // Frees a manager of the fixture now.
    void free_manager(mp_manager *m) {
        managers_.erase(std::remove(managers_.begin(), managers_.end(), m), managers_.end());
        mp_manager_free(m);
    }
    // Leaves a manager to the end of the process (it is still in use by a stuck thread).
    void forget(mp_manager *m) {
        managers_.erase(std::remove(managers_.begin(), managers_.end(), m), managers_.end());
    }

    // The objects the server holds; SIZE_MAX (and a failure) on error.
    static size_t objects(mp_manager *m) {
        size_t n = 0;
        int rc = mp_manager_number_of_objects(m, &n);
        if (rc != 0) {
            ADD_FAILURE() << "mp_manager_number_of_objects: " << why(rc);
            return SIZE_MAX;
        }
        return n;
    }
    // Waits until the server holds n objects (a decref may reach it after the call that
    // dropped the reference returned); the count it saw last.
    static size_t objects_become(mp_manager *m, size_t n) {
        size_t got = SIZE_MAX;
        eventually([&] {
            got = SIZE_MAX;
            return mp_manager_number_of_objects(m, &got) == 0 && got == n;
        });
        return got;
    }

    // Shorthands that fail the test on error.
    static Proxy dict(mp_manager *m, const mp_value *init = nullptr) {
        mp_proxy *p = nullptr;
        int rc = mp_manager_dict(m, init, &p);
        EXPECT_EQ(0, rc) << "mp_manager_dict: " << why(rc);
        return Proxy(p);
    }
    static Proxy list(mp_manager *m, const mp_value *init = nullptr) {
        mp_proxy *p = nullptr;
        int rc = mp_manager_list(m, init, &p);
        EXPECT_EQ(0, rc) << "mp_manager_list: " << why(rc);
        return Proxy(p);
    }
    static Proxy create(mp_manager *m, const char *type, const mp_value *args = nullptr,
                        const mp_value *kwds = nullptr) {
        mp_proxy *p = nullptr;
        int rc = mp_manager_create(m, type, args, kwds, &p);
        EXPECT_EQ(0, rc) << "mp_manager_create(" << type << "): " << why(rc);
        return Proxy(p);
    }
    static Proxy sync(mp_manager *m, const char *type, int value = 0) {
        mp_proxy *p = nullptr;
        int rc = mp_manager_sync(m, type, value, &p);
        EXPECT_EQ(0, rc) << "mp_manager_sync(" << type << "): " << why(rc);
        return Proxy(p);
    }

    // p.method(*args) as a repr, or "error <name>: <detail>".
    static std::string call(mp_proxy *p, const char *method, const Val &args = Val(),
                            const Val &kwds = Val()) {
        mp_value *out = junk<mp_value>();
        int rc = mp_proxy_call(p, method, args.get(), kwds.get(), &out);
        if (rc != 0) {
            std::string e = std::string("error ") + mp_err_name(rc) + ": " + last_msg();
            if (out != nullptr) e += " (and *result was not reset to NULL)";
            return e;
        }
        Val v(out);
        return repr(v);
    }
    // d[key] as a repr, or "error <name>".
    static std::string getitem(mp_proxy *p, const Val &key) {
        mp_value *out = junk<mp_value>();
        int rc = mp_proxy_getitem(p, key.get(), &out);
        if (rc != 0) return std::string("error ") + mp_err_name(rc);
        return repr(Val(out));
    }
    static size_t len(mp_proxy *p) {
        size_t n = 12345;
        int rc = mp_proxy_len(p, &n);
        EXPECT_EQ(0, rc) << "mp_proxy_len: " << why(rc);
        return n;
    }
    static std::string getvalue(mp_proxy *p) {
        mp_value *out = junk<mp_value>();
        int rc = mp_proxy_getvalue(p, &out);
        if (rc != 0) return std::string("error ") + mp_err_name(rc) + ": " + last_msg();
        return repr(Val(out));
    }

  private:
    std::vector<mp_manager *> managers_;
};

} // namespace mpt

#endif
