// Isolation: children started by spawn, forkserver, apr and win32 inherit only stdio and
// the handles passed to them; fork children inherit everything, as in Python.
#include <string>
#include <vector>

#include "fixture.h"
#include "targets.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

using namespace mpt;

namespace {

#ifdef _WIN32

// What the value `v` names in the calling process, compared with the named event `name`
// (which the test process holds open): "absent" (no handle of that value), "inherited"
// (the very event), "other-object" (the value was reused for something else).
std::string check_handle(intptr_t v, const char *name) {
    HANDLE h = (HANDLE)v;
    DWORD flags = 0;
    if (!GetHandleInformation(h, &flags)) return "absent";
    HANDLE named = OpenEventA(SYNCHRONIZE | EVENT_MODIFY_STATE, FALSE, name);
    if (!named) return "error:OpenEvent " + std::to_string((unsigned long)GetLastError());
    std::string r;
    typedef BOOL(WINAPI * compare_fn)(HANDLE, HANDLE);
    HMODULE kb = GetModuleHandleA("kernelbase.dll");
    compare_fn cmp = kb ? (compare_fn)(void *)GetProcAddress(kb, "CompareObjectHandles") : nullptr;
    if (cmp) {
        r = cmp(h, named) ? "inherited" : "other-object";
    } else {
        // The event is manual-reset and not signalled: the same object turns ready when
        // set through the other handle; anything else does not follow it.
        bool before = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
        SetEvent(named);
        bool after = WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
        ResetEvent(named);
        r = before && after ? "inherited" : "other-object";
    }
    CloseHandle(named);
    return r;
}

// [0] out, [1] int handle value, [2] str event name: writes check_handle's verdict.
int tgt_check_handle(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    const char *name = mp_args_str(a, 2);
    if (out == MP_INVALID_OS_HANDLE || !name || mp_args_type(a, 1) != MP_ARG_INT)
        return kTgtBadArgs;
    return write_msg(out, check_handle((intptr_t)mp_args_int(a, 1), name)) ? 0 : kTgtIoError;
}

#else

std::string fd_target(int fd, int pid = 0) {
    char buf[512];
    std::string path = (pid ? "/proc/" + std::to_string(pid) : std::string("/proc/self")) + "/fd/" +
                       std::to_string(fd);
    ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, (size_t)n) : std::string("?");
}

// [0] out, then any OS handles: writes one line "<fd> <what it is>" for every open fd
// other than stdio, the handles it was passed and its parent's sentinel (the library
// keeps that one, for mp_parent_process). Excludes the directory it lists with.
int tgt_list_fds(mp_args *a) {
    mp_os_handle out = mp_args_os_handle(a, 0);
    if (out == MP_INVALID_OS_HANDLE) return kTgtBadArgs;
    std::vector<int> known = {0, 1, 2};
    for (size_t i = 0; i < mp_args_count(a); i++)
        if (mp_args_type(a, i) == MP_ARG_OS_HANDLE) known.push_back((int)mp_args_os_handle(a, i));
    mp_os_handle ps = MP_INVALID_OS_HANDLE;
    if (mp_parent_process() && mp_process_sentinel(mp_parent_process(), &ps) == 0)
        known.push_back((int)ps);
    DIR *d = opendir("/proc/self/fd");
    if (!d) return kTgtIoError;
    std::string s;
    while (struct dirent *e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd == dirfd(d)) continue;
        bool k = false;
        for (int x : known) k |= x == fd;
        if (!k) s += std::to_string(fd) + " " + fd_target(fd) + "\n";
    }
    closedir(d);
    return write_msg(out, s) ? 0 : kTgtIoError;
}

// Descriptors opened the way careless code does: without close-on-exec.
struct Leaky {
    std::vector<int> fds;
    Leaky() {
        int p[2], s[2];
        fds.push_back(open("/dev/null", O_RDONLY));
        if (pipe(p) == 0) fds.insert(fds.end(), {p[0], p[1]});
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0) fds.insert(fds.end(), {s[0], s[1]});
        if (fds[0] >= 0) fds.push_back(fcntl(fds[0], F_DUPFD, 300)); // F_DUPFD: no close-on-exec
    }
    ~Leaky() {
        for (int fd : fds)
            if (fd >= 0) close(fd);
    }
    bool ok() const {
        for (int fd : fds)
            if (fd < 0 || (fcntl(fd, F_GETFD) & FD_CLOEXEC)) return false;
        return fds.size() == 6;
    }
    // "<fd> <target>" lines as tgt_list_fds would write them.
    std::vector<std::string> lines() const {
        std::vector<std::string> v;
        for (int fd : fds) v.push_back(std::to_string(fd) + " " + fd_target(fd));
        return v;
    }
};

#endif

} // namespace

TEST_P(ProcessTest, InheritsOnlyStdioAndPassedHandles) {
    if (dummy()) GTEST_SKIP() << "dummy children are threads: they share every handle";
#ifdef _WIN32
    std::string name = "mp_tests_isolation_" + std::to_string((long long)mp_getpid());
    SECURITY_ATTRIBUTES sa = {(DWORD)sizeof sa, nullptr, TRUE};
    HANDLE ev = CreateEventA(&sa, TRUE, FALSE, name.c_str());
    ASSERT_NE(nullptr, ev) << GetLastError();
    struct CloseEv {
        HANDLE h;
        ~CloseEv() { CloseHandle(h); }
    } close_ev{ev};
    DWORD flags = 0;
    ASSERT_TRUE(GetHandleInformation(ev, &flags));
    ASSERT_TRUE(flags & HANDLE_FLAG_INHERIT) << "the test needs an inheritable handle";
    ASSERT_EQ("inherited", check_handle((intptr_t)ev, name.c_str())) << "the check itself";
    Pipe &out = pipe();
    Args a;
    a.h(out.w).i((int64_t)(intptr_t)ev).s(name.c_str());
    mp_process *p = start(tgt_check_handle, a.get());
    ASSERT_NE(nullptr, p);
    std::string verdict;
    ASSERT_TRUE(read_msg(out.r, &verdict, kWait)) << "no report from the child";
    EXPECT_EQ(0, join_code(p));
    EXPECT_NE("inherited", verdict)
        << "an inheritable handle the child was not given reached it (value " << (intptr_t)ev
        << ")";
    EXPECT_EQ(std::string::npos, verdict.find("error")) << verdict;
#else
    Leaky leaky;
    ASSERT_TRUE(leaky.ok()) << "could not open descriptors without close-on-exec";
    bool fork = backend() == "fork";
    if (backend() == "forkserver") {
        // A server started before these descriptors existed could not leak them: make
        // the next start bring up a new one while they are open.
        ASSERT_TRUE(kill_forkservers()) << "the forkserver did not die";
    }
    Pipe &out = pipe();
    Pipe &passed = pipe();
    Args a;
    a.h(out.w).h(passed.r);
    mp_process *p = start(tgt_list_fds, a.get());
    ASSERT_NE(nullptr, p);
    std::string fds;
    ASSERT_TRUE(read_msg(out.r, &fds, kWait)) << "no report from the child";
    EXPECT_EQ(0, join_code(p));
    SCOPED_TRACE("descriptors the child had besides stdio and its arguments:\n" + fds);
    for (const std::string &l : leaky.lines()) {
        bool present = fds.find(l + "\n") != std::string::npos;
        if (fork) {
            EXPECT_TRUE(present) << "a fork child inherits every descriptor (as Python's): " << l;
        } else {
            EXPECT_FALSE(present) << "leaked into the child: " << l;
        }
    }
    if (!fork) {
        EXPECT_EQ("", fds) << "the child holds descriptors it was not given";
    }
    if (backend() == "forkserver") {
        std::vector<int64_t> servers = forkserver_pids();
        ASSERT_EQ(1u, servers.size()) << "one forkserver expected";
        for (int fd : leaky.fds)
            EXPECT_NE(fd_target(fd), fd_target(fd, (int)servers[0]))
                << "the forkserver holds the parent's descriptor " << fd;
    }
#endif
}
