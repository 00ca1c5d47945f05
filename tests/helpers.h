// Test helpers shared by the test process and the children it starts (targets run
// in children, so everything here must work without GoogleTest).
#ifndef MP_TESTS_HELPERS_H
#define MP_TESTS_HELPERS_H

#include <multiproc.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mpt {

// Anything that should happen is given this long; a passing test never waits it out.
constexpr double kWait = 30.0;
// A child blocked waiting for the test gives up after this (only when a test failed).
constexpr double kCap = 60.0;

double now();
// Native id of the calling thread (gettid / GetCurrentThreadId).
int64_t current_thread_id();
void sleep_for(double seconds);

// Waits (polling) until pred holds; false at the deadline.
template <class F> bool eventually(F pred, double timeout = kWait) {
    double end = now() + timeout;
    while (!pred()) {
        if (now() > end) return false;
        sleep_for(0.005);
    }
    return true;
}

// An anonymous pipe, both ends non-inheritable (the library transfers what it needs).
struct Pipe {
    mp_os_handle r = MP_INVALID_OS_HANDLE;
    mp_os_handle w = MP_INVALID_OS_HANDLE;
};
bool pipe_open(Pipe *p);
void pipe_close(Pipe *p);
void handle_close(mp_os_handle h);

bool write_all(mp_os_handle h, const void *buf, size_t n);
// 1: readable (data or end of file), 0: timed out, -1: error.
int wait_readable(mp_os_handle h, double timeout);
// Exactly n bytes within timeout; false on timeout, end of file or error.
bool read_exact(mp_os_handle h, void *buf, size_t n, double timeout);
// Length-prefixed messages (u32 little endian + bytes); one write, so never torn
// when short (< PIPE_BUF).
bool write_msg(mp_os_handle h, const std::string &s);
bool read_msg(mp_os_handle h, std::string *out, double timeout);

// The handles (posix: descriptors) this process has open. Windows: probed handle by
// handle (GetProcessHandleCount says 0 under Wine).
long open_handles();

// The 64-bit FNV-1a hash of n bytes (children report it for the parent to compare).
uint64_t fnv1a(const void *p, size_t n);

// "k=v\n" lines, the format children report in.
std::string kv(const std::vector<std::pair<std::string, std::string>> &items);
std::map<std::string, std::string> parse_kv(const std::string &s);

// 1: the sentinel is ready, 0: timed out, -1: error (poll on posix, wait on Windows).
int wait_sentinel(mp_os_handle h, double timeout);

// True when the process still runs (a zombie counts as ended).
bool process_running(int64_t pid);
// Waits until the process no longer runs; false if it still runs at the deadline.
bool wait_process_gone(int64_t pid, double timeout);
// SIGKILL / TerminateProcess by pid, for cleaning up after a failed test.
void force_kill(int64_t pid);

// Linux: zombie children of this process / children still running (pid and command
// line). Empty elsewhere.
std::vector<int64_t> zombie_children();
std::vector<std::pair<int64_t, std::string>> running_children();

// Linux: this process's forkserver processes (children whose command line holds
// "--mp-child\0forkserver"). Empty elsewhere.
std::vector<int64_t> forkserver_pids();
// Linux: SIGKILLs every forkserver of this process and waits until each has died (it
// stays a zombie until the library's next start on forkserver reaps it). The pids
// killed; false if one still ran after kWait.
bool kill_forkservers(std::vector<int64_t> *killed = nullptr);

// Absolute path of this test executable.
std::string self_exe();
// Runs this executable with extra environment variables and no arguments; its exit
// code, or -1000 when it could not be run or did not end within timeout.
int run_self_with_env(const std::vector<std::pair<std::string, std::string>> &env, double timeout);

// In a child about to crash on purpose: no core file, no crash dialog.
void disable_crash_reports();

// Exit codes the library reports (Python's convention).
int exitcode_terminated(); // -SIGTERM; -15 on Windows too
int exitcode_killed();     // -SIGKILL; -15 on Windows (TerminateProcess, as Python)
int exitcode_segfault();   // -SIGSEGV; (int)0xC0000005 on Windows

std::string read_file(const std::string &path);
// Directory of this test executable, with a trailing separator.
std::string self_dir();
// The /dev/shm files this process maps or holds open (posix: from /proc/self/maps and
// /proc/self/fd), space-separated; "" when none, and always "" on Windows. Unlike a
// listing of /dev/shm it is not disturbed by tests of other backends running alongside.
std::string dev_shm_files_in_use();

} // namespace mpt

#endif
