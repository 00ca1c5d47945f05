// A python3 process for the interop tests (listener_test.cc, shm_interop_test.cc): its
// stdout (and, when asked, its stdin) on pipes to the test, read line by line with a
// timeout. Posix only: there is no python under Wine.
#ifndef MP_TESTS_PYTHON_PEER_H
#define MP_TESTS_PYTHON_PEER_H

#ifndef _WIN32

#include <sys/types.h>

#include <string>
#include <vector>

namespace mpt {

struct PyPeer {
    pid_t pid = -1;
    int in = -1, out = -1;
    std::string buffered;
    PyPeer() = default;
    PyPeer(const PyPeer &) = delete;
    PyPeer &operator=(const PyPeer &) = delete;
    // Kills it if it still runs.
    ~PyPeer();
    // Starts python3 with args; with_stdin: its stdin is a pipe from send (else it
    // inherits this process's).
    bool start(const std::vector<std::string> &args, bool with_stdin = false);
    bool send(const std::string &s);
    // One line of its stdout within timeout.
    bool line(std::string *s, double timeout);
    // Its exit code; -1000 (and it is killed) when it does not end within timeout.
    int wait(double timeout);
};

// True when python3 runs code (-c) and exits 0 within kWait.
bool python_runs(const std::string &code);

} // namespace mpt

#endif

#endif
