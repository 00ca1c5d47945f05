#include "helpers.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#ifdef _WIN32
#include <windows.h>
#else
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
#endif

namespace mpt {

#ifdef _WIN32
static const char kPathSeparators[] = "\\/";
#else
static const char kPathSeparators[] = "/";
#endif

double now() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

void sleep_for(double seconds) {
    if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

std::string kv(const std::vector<std::pair<std::string, std::string>> &items) {
    std::string s;
    for (const auto &it : items) s += it.first + "=" + it.second + "\n";
    return s;
}

uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

std::map<std::string, std::string> parse_kv(const std::string &s) {
    std::map<std::string, std::string> m;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line)) {
        size_t eq = line.find('=');
        if (eq != std::string::npos) m[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return m;
}

bool write_msg(mp_os_handle h, const std::string &s) {
    std::string frame(4, '\0');
    uint32_t n = (uint32_t)s.size();
    for (int i = 0; i < 4; i++) frame[i] = (char)((n >> (8 * i)) & 0xff);
    frame += s;
    return write_all(h, frame.data(), frame.size());
}

bool read_msg(mp_os_handle h, std::string *out, double timeout) {
    double deadline = now() + timeout;
    unsigned char hdr[4];
    out->clear();
    if (!read_exact(h, hdr, 4, timeout)) return false;
    uint32_t n = hdr[0] | (hdr[1] << 8) | (hdr[2] << 16) | ((uint32_t)hdr[3] << 24);
    if (n > (64u << 20)) return false;
    out->resize(n);
    double left = deadline - now();
    return read_exact(h, &(*out)[0], n, left > 0 ? left : 0);
}

bool read_exact(mp_os_handle h, void *buf, size_t n, double timeout) {
    double deadline = now() + timeout;
    unsigned char *p = (unsigned char *)buf;
    size_t got = 0;
    while (got < n) {
        double left = deadline - now();
        if (wait_readable(h, left > 0 ? left : 0) != 1) return false;
#ifdef _WIN32
        DWORD avail = 0, r = 0;
        if (!PeekNamedPipe((HANDLE)h, NULL, 0, NULL, &avail, NULL) || avail == 0)
            return false; /* broken pipe: end of file */
        DWORD want = (DWORD)(n - got < avail ? n - got : avail);
        if (!ReadFile((HANDLE)h, p + got, want, &r, NULL) || r == 0) return false;
        got += r;
#else
        ssize_t r = read((int)h, p + got, n - got);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return false;
        got += (size_t)r;
#endif
    }
    return true;
}

std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string dev_shm_files_in_use() {
#ifdef _WIN32
    return "";
#else
    std::set<std::string> found;
    std::istringstream maps(read_file("/proc/self/maps"));
    for (std::string line; std::getline(maps, line);) {
        size_t at = line.find(" /dev/shm/");
        if (at != std::string::npos) found.insert(line.substr(at + 1));
    }
    if (DIR *d = opendir("/proc/self/fd")) {
        while (struct dirent *de = readdir(d)) {
            char link[300], target[512];
            snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
            ssize_t n = readlink(link, target, sizeof target - 1);
            if (n > 0) {
                target[n] = 0;
                if (strncmp(target, "/dev/shm/", 9) == 0) found.insert(target);
            }
        }
        closedir(d);
    }
    std::string out;
    for (const std::string &f : found) out += (out.empty() ? "" : " ") + f;
    return out;
#endif
}

#ifdef _WIN32

int64_t current_thread_id() { return (int64_t)GetCurrentThreadId(); }

bool pipe_open(Pipe *p) {
    HANDLE r, w;
    if (!CreatePipe(&r, &w, NULL, 1 << 16)) return false;
    p->r = (mp_os_handle)r;
    p->w = (mp_os_handle)w;
    return true;
}

void handle_close(mp_os_handle h) {
    if (h != MP_INVALID_OS_HANDLE && h != 0) CloseHandle((HANDLE)h);
}

bool write_all(mp_os_handle h, const void *buf, size_t n) {
    const char *p = (const char *)buf;
    while (n > 0) {
        DWORD w = 0;
        if (!WriteFile((HANDLE)h, p, (DWORD)(n > (1u << 20) ? (1u << 20) : n), &w, NULL))
            return false;
        p += w;
        n -= w;
    }
    return true;
}

int wait_readable(mp_os_handle h, double timeout) {
    double deadline = now() + timeout;
    for (;;) {
        DWORD avail = 0;
        if (!PeekNamedPipe((HANDLE)h, NULL, 0, NULL, &avail, NULL))
            return GetLastError() == ERROR_BROKEN_PIPE ? 1 : -1;
        if (avail > 0) return 1;
        if (now() >= deadline) return 0;
        Sleep(2);
    }
}

int wait_sentinel(mp_os_handle h, double timeout) {
    DWORD ms = timeout <= 0 ? 0 : (DWORD)(timeout * 1000.0);
    DWORD r = WaitForSingleObject((HANDLE)h, ms);
    if (r == WAIT_OBJECT_0) return 1;
    if (r == WAIT_TIMEOUT) return 0;
    return -1;
}

bool process_running(int64_t pid) {
    HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
    if (!h) return false;
    bool running = WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
    CloseHandle(h);
    return running;
}

bool wait_process_gone(int64_t pid, double timeout) {
    HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
    if (!h) return true;
    DWORD r = WaitForSingleObject(h, (DWORD)(timeout * 1000.0));
    CloseHandle(h);
    return r == WAIT_OBJECT_0;
}

void force_kill(int64_t pid) {
    HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, (DWORD)pid);
    if (h) {
        TerminateProcess(h, 1);
        CloseHandle(h);
    }
}

std::vector<int64_t> zombie_children() { return {}; }
std::vector<std::pair<int64_t, std::string>> running_children() { return {}; }
std::vector<int64_t> forkserver_pids() { return {}; }
bool kill_forkservers(std::vector<int64_t> *killed) {
    if (killed) killed->clear();
    return true;
}

std::string self_exe() {
    char buf[MAX_PATH * 4];
    DWORD n = GetModuleFileNameA(NULL, buf, sizeof buf);
    return std::string(buf, n);
}

int run_self_with_env(const std::vector<std::pair<std::string, std::string>> &env, double timeout) {
    std::vector<std::pair<std::string, std::string>> saved;
    for (const auto &e : env) {
        char old[4096];
        DWORD n = GetEnvironmentVariableA(e.first.c_str(), old, sizeof old);
        saved.emplace_back(e.first, n > 0 && n < sizeof old ? std::string(old, n) : "\x01");
        SetEnvironmentVariableA(e.first.c_str(), e.second.c_str());
    }
    std::string exe = self_exe();
    std::string cmd = "\"" + exe + "\"";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    int code = -1000;
    if (CreateProcessA(exe.c_str(), &cmd[0], NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) {
        if (WaitForSingleObject(pi.hProcess, (DWORD)(timeout * 1000.0)) == WAIT_OBJECT_0) {
            DWORD c = 0;
            GetExitCodeProcess(pi.hProcess, &c);
            code = (int)c;
        } else {
            TerminateProcess(pi.hProcess, 1);
            WaitForSingleObject(pi.hProcess, INFINITE);
        }
        CloseHandle(pi.hProcess);
        CloseHandle(pi.hThread);
    }
    for (const auto &s : saved)
        SetEnvironmentVariableA(s.first.c_str(), s.second == "\x01" ? NULL : s.second.c_str());
    return code;
}

void disable_crash_reports() { SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX); }

int exitcode_terminated() { return -15; }
int exitcode_killed() { return -15; }
int exitcode_segfault() { return (int)0xC0000005u; }

#else /* posix */

int64_t current_thread_id() { return (int64_t)syscall(SYS_gettid); }

bool pipe_open(Pipe *p) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    p->r = fds[0];
    p->w = fds[1];
    return true;
}

void handle_close(mp_os_handle h) {
    if (h >= 0) close((int)h);
}

bool write_all(mp_os_handle h, const void *buf, size_t n) {
    const char *p = (const char *)buf;
    while (n > 0) {
        ssize_t w = write((int)h, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static int poll_in(int fd, double timeout) {
    double deadline = now() + timeout;
    for (;;) {
        double left = deadline - now();
        int ms = left <= 0 ? 0 : (int)(left * 1000.0) + 1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, ms);
        if (r > 0) return (pfd.revents & POLLNVAL) ? -1 : 1;
        if (r == 0) {
            if (now() >= deadline) return 0;
            continue;
        }
        if (errno != EINTR) return -1;
    }
}

int wait_readable(mp_os_handle h, double timeout) { return poll_in((int)h, timeout); }
int wait_sentinel(mp_os_handle h, double timeout) { return poll_in((int)h, timeout); }

static char proc_state(int64_t pid, int64_t *ppid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    std::string s = read_file(path);
    size_t rp = s.rfind(')');
    if (rp == std::string::npos || rp + 4 > s.size()) return 0;
    char state = s[rp + 2];
    if (ppid) *ppid = strtoll(s.c_str() + rp + 4, NULL, 10);
    return state;
}

bool process_running(int64_t pid) {
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return false;
    char st = proc_state(pid, NULL);
    return st != 0 && st != 'Z' && st != 'X';
}

bool wait_process_gone(int64_t pid, double timeout) {
    double deadline = now() + timeout;
    while (process_running(pid)) {
        if (now() >= deadline) return false;
        sleep_for(0.01);
    }
    return true;
}

void force_kill(int64_t pid) {
    if (pid > 0) kill((pid_t)pid, SIGKILL);
}

template <class F> static void each_child(F f) {
    DIR *d = opendir("/proc");
    if (!d) return;
    int64_t self = getpid();
    while (struct dirent *e = readdir(d)) {
        char *end;
        long long pid = strtoll(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        int64_t ppid = 0;
        char st = proc_state(pid, &ppid);
        if (st && ppid == self) f((int64_t)pid, st);
    }
    closedir(d);
}

std::vector<int64_t> zombie_children() {
    std::vector<int64_t> out;
    each_child([&](int64_t pid, char st) {
        if (st == 'Z') out.push_back(pid);
    });
    return out;
}

std::vector<std::pair<int64_t, std::string>> running_children() {
    std::vector<std::pair<int64_t, std::string>> out;
    each_child([&](int64_t pid, char st) {
        if (st == 'Z' || st == 'X') return;
        std::string cmd = read_file("/proc/" + std::to_string(pid) + "/cmdline");
        for (char &c : cmd)
            if (c == '\0') c = ' ';
        out.emplace_back(pid, cmd);
    });
    return out;
}

std::vector<int64_t> forkserver_pids() {
    static const std::string tag("--mp-child\0forkserver\0", 22);
    std::vector<int64_t> out;
    each_child([&](int64_t pid, char st) {
        if (st == 'Z' || st == 'X') return;
        std::string cmd = read_file("/proc/" + std::to_string(pid) + "/cmdline");
        if (cmd.find(tag) != std::string::npos) out.push_back(pid);
    });
    return out;
}

bool kill_forkservers(std::vector<int64_t> *killed) {
    std::vector<int64_t> pids = forkserver_pids();
    bool ok = true;
    for (int64_t pid : pids) kill((pid_t)pid, SIGKILL);
    for (int64_t pid : pids) ok = wait_process_gone(pid, kWait) && ok;
    if (killed) *killed = pids;
    return ok;
}

std::string self_exe() {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, (size_t)n) : std::string();
}

int run_self_with_env(const std::vector<std::pair<std::string, std::string>> &env, double timeout) {
    std::vector<std::string> vars;
    for (char **e = environ; *e; e++) {
        bool replaced = false;
        for (const auto &kvp : env)
            if (strncmp(*e, kvp.first.c_str(), kvp.first.size()) == 0 &&
                (*e)[kvp.first.size()] == '=')
                replaced = true;
        if (!replaced) vars.push_back(*e);
    }
    for (const auto &kvp : env) vars.push_back(kvp.first + "=" + kvp.second);
    std::vector<char *> envp;
    for (auto &v : vars) envp.push_back(&v[0]);
    envp.push_back(nullptr);
    std::string exe = self_exe();
    char *argv[] = {&exe[0], nullptr};
    pid_t pid;
    if (posix_spawn(&pid, exe.c_str(), NULL, NULL, argv, envp.data()) != 0) return -1000;
    double deadline = now() + timeout;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return -1000;
        if (now() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1000;
        }
        sleep_for(0.01);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -WTERMSIG(status);
}

void disable_crash_reports() {
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
}

int exitcode_terminated() { return -SIGTERM; }
int exitcode_killed() { return -SIGKILL; }
int exitcode_segfault() { return -SIGSEGV; }

#endif

std::string self_dir() {
    std::string exe = self_exe();
    size_t slash = exe.find_last_of(kPathSeparators);
    return slash == std::string::npos ? std::string() : exe.substr(0, slash + 1);
}

void pipe_close(Pipe *p) {
    handle_close(p->r);
    handle_close(p->w);
    p->r = p->w = MP_INVALID_OS_HANDLE;
}

long open_handles() {
#ifdef _WIN32
    // Handle values are multiples of 4, low ones first.
    long n = 0;
    for (uintptr_t v = 4; v < (1u << 18); v += 4) {
        DWORD flags;
        if (GetHandleInformation(reinterpret_cast<HANDLE>(v), &flags)) n++;
    }
    return n;
#else
    long n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (struct dirent *e = readdir(d))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; // the directory's own descriptor
#endif
}

} // namespace mpt
