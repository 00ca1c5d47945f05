// Helpers of the connection tests (connection_test.cc, connection_mode_test.cc,
// handle_test.cc): owned pairs of ends, bounded string receives, and the library's
// internal constructors for connections over raw handles.
#ifndef MP_TESTS_CONN_HELPERS_H
#define MP_TESTS_CONN_HELPERS_H

#include <cstdint>
#include <string>

#include "fixture.h"

extern "C" {
// Internal (core/connection_internal.h, core/os_net.h), linked from the static library.
int mp__connection_from_os_handle(mp_os_handle h, int kind, bool readable, bool writable,
                                  mp_connection **out);
int mp__os_net_socketpair(mp_os_handle h[2]);
}

namespace mpt {

constexpr int kSocketKind = 1; // MP__CONN_SOCKET
constexpr int kPipeKind = 2;   // MP__CONN_PIPE

// Two connection ends, freed with the scope.
struct ConnPair {
    mp_connection *a = nullptr, *b = nullptr;
    ConnPair() = default;
    ~ConnPair() {
        mp_connection_free(a);
        mp_connection_free(b);
    }
    ConnPair(const ConnPair &) = delete;
    ConnPair &operator=(const ConnPair &) = delete;
};

// Both ends of an mp_pipe, freed with the scope.
struct PipePair : ConnPair {
    explicit PipePair(bool duplex = true) { EXPECT_EQ(0, mp_pipe(duplex, &a, &b)) << err(); }
};

// poll (bounded) then recv_bytes into a string; the error code otherwise. No GoogleTest
// here: children call it too.
inline int recv_str(mp_connection *c, std::string *out, double timeout = kWait) {
    bool ready = false;
    int rc = mp_connection_poll(c, timeout, &ready);
    if (rc) return rc;
    if (!ready) return MP_ETIMEDOUT;
    void *p = nullptr;
    size_t n = 0;
    rc = mp_connection_recv_bytes(c, 0, &p, &n);
    if (rc) return rc;
    out->assign(static_cast<const char *>(p), n);
    mp_connection_free_bytes(p);
    return 0;
}

inline int send_str(mp_connection *c, const std::string &s) {
    return mp_connection_send_bytes(c, s.data(), s.size());
}

// n pseudo-random bytes, the same for the same seed.
inline std::string pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        s[i] = static_cast<char>(x >> 24);
    }
    return s;
}

} // namespace mpt

#endif
