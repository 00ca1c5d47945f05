// What the manager tests share (manager_test.cc, manager_life_test.cc,
// manager_sync_test.cc): owners of values, proxies and managers, and tuples built inline.
#ifndef MP_TESTS_MANAGER_FIXTURE_H
#define MP_TESTS_MANAGER_FIXTURE_H

#include <initializer_list>
#include <memory>

#include "fixture.h"

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

// A tuple of new values, which it takes.
inline Val tup(std::initializer_list<mp_value *> items) {
    mp_value *t = mp_value_tuple_new();
    for (mp_value *v : items) mp_value_list_append(t, v);
    return Val(t);
}

} // namespace mpt

#endif
