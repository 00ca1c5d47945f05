// The fixture of the shared-state tests (shared_test.cc, shm_test.cc, shm_lifetime_test.cc,
// shm_interop_test.cc): the per-backend ProcessTest plus a leak check of named blocks.
//
// Why "known names" rather than a plain before/after diff of /dev/shm: ctest runs the
// backends in parallel (and other programs use /dev/shm too), so a new entry cannot be
// blamed on this test by its mere appearance. Every name a test learns (given names,
// generated names it reads back, names its children report) is registered with
// learn(); at teardown each must be gone from /dev/shm, and so must any entry with this
// process's prefix. New entries of unknown origin are printed, not failed.
#ifndef MP_TESTS_SHM_FIXTURE_H
#define MP_TESTS_SHM_FIXTURE_H

#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "fixture.h"

#ifndef _WIN32
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace mpt {

// A readable form of a value for failure messages and comparisons: "int:7", "str:py"...
inline std::string show(const mp_value *v) {
    switch (mp_value_get_type(v)) {
    case MP_VALUE_NONE:
        return "None";
    case MP_VALUE_BOOL:
        return mp_value_as_bool(v) ? "True" : "False";
    case MP_VALUE_INT:
        return "int:" + std::to_string((long long)mp_value_as_int(v));
    case MP_VALUE_FLOAT:
        return "float:" + std::to_string(mp_value_as_float(v));
    case MP_VALUE_STR: {
        size_t n = 0;
        const char *s = mp_value_as_str(v, &n);
        return "str:" + std::string(s ? s : "", n);
    }
    case MP_VALUE_BYTES: {
        size_t n = 0;
        const unsigned char *p = static_cast<const unsigned char *>(mp_value_as_bytes(v, &n));
        std::string h = "bytes:";
        for (size_t i = 0; i < n; i++) {
            char b[4];
            snprintf(b, sizeof b, "%02x", p[i]);
            h += b;
        }
        return h;
    }
    default:
        return std::string("other:") + mp_value_type_name(mp_value_get_type(v));
    }
}

// "" when list l holds the shown items, else what differs.
inline std::string list_diff(mp_shareable_list *l, const std::vector<std::string> &want) {
    if (mp_shareable_list_len(l) != want.size())
        return "len " + std::to_string(mp_shareable_list_len(l));
    std::string diff;
    for (size_t i = 0; i < want.size(); i++) {
        mp_value *v = nullptr;
        int rc = mp_shareable_list_get(l, i, &v);
        std::string got = rc == 0 ? show(v) : std::string("error ") + mp_err_name(rc);
        mp_value_free(v);
        if (got != want[i])
            diff += "[" + std::to_string(i) + "] " + got + " (want " + want[i] + ") ";
    }
    return diff;
}

// Leftovers of a killed tree must be gone within this long (the brief says ~10 s; the
// poll returns as soon as they are gone, so a generous bound costs a passing run nothing).
constexpr double kLeakWait = 15.0;

#ifndef _WIN32
constexpr bool kPosixShm = true;
inline std::set<std::string> dev_shm_entries() {
    std::set<std::string> out;
    if (DIR *d = opendir("/dev/shm")) {
        while (struct dirent *e = readdir(d))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) out.insert(e->d_name);
        closedir(d);
    }
    return out;
}
inline bool dev_shm_has(const std::string &name) {
    return access(("/dev/shm/" + name).c_str(), F_OK) == 0;
}
// Removes a leftover so that one failure does not spill into later tests.
inline void dev_shm_remove(const std::string &name) { shm_unlink(("/" + name).c_str()); }
// The /dev/shm files this process maps right now (memfd mappings are not among them).
inline std::vector<std::string> self_dev_shm_mappings() {
    std::vector<std::string> out;
    std::string maps = read_file("/proc/self/maps");
    size_t pos = 0;
    while ((pos = maps.find("/dev/shm/", pos)) != std::string::npos) {
        size_t end = maps.find('\n', pos);
        out.push_back(maps.substr(pos, end == std::string::npos ? end : end - pos));
        pos += 9;
    }
    return out;
}
#else
constexpr bool kPosixShm = false;
inline std::set<std::string> dev_shm_entries() { return {}; }
inline bool dev_shm_has(const std::string &) { return false; }
inline void dev_shm_remove(const std::string &) {}
inline std::vector<std::string> self_dev_shm_mappings() { return {}; }
#endif

// The prefix of every name a test of this process gives: "mpt<pid>_".
inline std::string shm_prefix() { return "mpt" + std::to_string((long long)mp_getpid()) + "_"; }

class ShmFixture : public ProcessTest {
  protected:
    void SetUp() override {
        ProcessTest::SetUp();
        before_ = dev_shm_entries();
    }
    void TearDown() override {
        ProcessTest::TearDown(); // children first: they may still hold blocks
        if (!kPosixShm) return;
        std::set<std::string> now_ = dev_shm_entries();
        std::string prefix = shm_prefix();
        std::string leaked, unknown;
        for (const std::string &n : now_) {
            bool ours = known_.count(n) || n.compare(0, prefix.size(), prefix) == 0;
            if (ours) {
                leaked += n + " ";
                dev_shm_remove(n);
            } else if (!before_.count(n)) {
                unknown += n + " ";
            }
        }
        EXPECT_EQ("", leaked) << "blocks of this test left in /dev/shm (removed now)";
        if (!unknown.empty())
            printf("[ note ] new /dev/shm entries of unknown origin (another program or "
                   "backend running in parallel?): %s\n",
                   unknown.c_str());
    }

    // A name for a block created under a given name: unique to this process and test.
    std::string fresh_name(const char *tag) {
        std::string n = shm_prefix() + std::to_string(++counter_) + "_" + tag;
        known_.insert(n);
        return n;
    }
    // Registers a name the test learned, for the teardown check; returns it.
    std::string learn(const std::string &name) {
        known_.insert(name);
        return name;
    }

  private:
    std::set<std::string> before_, known_;
    int counter_ = 0;
};

// Owns a mp_shm for the scope of a test.
struct Shm {
    mp_shm *s = nullptr;
    ~Shm() { mp_shm_free(s); }
    char *buf() const { return static_cast<char *>(mp_shm_buf(s)); }
    std::string name() const { return mp_shm_name(s) ? mp_shm_name(s) : ""; }
};

inline int shm_create(const std::string &name, size_t size, Shm *out, bool untracked = false) {
    mp_shm_opts o = {};
    o.name = name.empty() ? nullptr : name.c_str();
    o.create = true;
    o.size = size;
    o.untracked = untracked;
    return mp_shm_open(&o, &out->s);
}

inline int shm_attach(const std::string &name, Shm *out) {
    mp_shm_opts o = {};
    o.name = name.c_str();
    return mp_shm_open(&o, &out->s);
}

} // namespace mpt

#endif
