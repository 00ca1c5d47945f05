#include "python_peer.h"

#ifndef _WIN32

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

extern char **environ;

namespace mpt {

PyPeer::~PyPeer() {
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
}

bool PyPeer::start(const std::vector<std::string> &args, bool with_stdin) {
    int i[2] = {-1, -1}, o[2];
    if (with_stdin && pipe2(i, O_CLOEXEC) != 0) return false;
    if (pipe2(o, O_CLOEXEC) != 0) {
        if (with_stdin) {
            close(i[0]);
            close(i[1]);
        }
        return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (with_stdin) posix_spawn_file_actions_adddup2(&fa, i[0], 0);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    std::vector<char *> argv;
    argv.push_back(const_cast<char *>("python3"));
    for (auto &s : args) argv.push_back(const_cast<char *>(s.c_str()));
    argv.push_back(nullptr);
    int rc = posix_spawnp(&pid, "python3", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (with_stdin) {
        close(i[0]);
        in = i[1];
    }
    close(o[1]);
    out = o[0];
    if (rc != 0) pid = -1;
    return rc == 0;
}

bool PyPeer::send(const std::string &s) { return write_all(in, s.data(), s.size()); }

bool PyPeer::line(std::string *s, double timeout) {
    double end = now() + timeout;
    for (;;) {
        size_t nl = buffered.find('\n');
        if (nl != std::string::npos) {
            *s = buffered.substr(0, nl);
            buffered.erase(0, nl + 1);
            return true;
        }
        double left = end - now();
        if (left <= 0) return false;
        struct pollfd p = {out, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(left * 1000) + 1) <= 0) continue;
        char buf[512];
        ssize_t n = read(out, buf, sizeof buf);
        if (n <= 0) return false;
        buffered.append(buf, static_cast<size_t>(n));
    }
}

int PyPeer::wait(double timeout) {
    double end = now() + timeout;
    while (pid > 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            pid = -1;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        }
        if (now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
            pid = -1;
            return -1000;
        }
        sleep_for(0.01);
    }
    return -1000;
}

bool python_runs(const std::string &code) {
    PyPeer py;
    return py.start({"-c", code}) && py.wait(kWait) == 0;
}

} // namespace mpt

#endif
