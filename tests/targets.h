// Targets the tests start. They run in children (or threads, on dummy), without
// GoogleTest: they report through their exit code or an OS-handle pipe in their args.
#ifndef MP_TESTS_TARGETS_H
#define MP_TESTS_TARGETS_H

#include <multiproc.h>

#include <string>

namespace mpt {

// Exit codes a target uses to say what went wrong on its side.
enum {
    kTgtBadArgs = 90,
    kTgtIoError = 91,
    kTgtNoContext = 201,
    kTgtNewFailed = 202,
    kTgtStartFailed = 203,
    kTgtJoinFailed = 204,
    kTgtExitcodeFailed = 205,
    kTgtNotReady = 206,
    kTgtCapReached = 99,
};

// returns args[0] (int).
int tgt_return_arg(mp_args *a);
// The Blocker protocol: [0] release (read end), [1] ready (write end), [2] int code,
// [3] double cap seconds.
int tgt_block(mp_args *a);
// [0] out handle: writes self_report().
int tgt_report_self(mp_args *a);
// What a child sees of itself: pid, name, daemon, method, parent pid/name/sentinel.
std::string self_report();
// posix: raise(args[0]).
int tgt_raise(mp_args *a);
// Writes to address 16.
int tgt_segv(mp_args *a);
// [0] out handle, then any values: writes describe_args(a, 1) to out, and through every
// OS handle among the values the message "hello <index>".
int tgt_echo_args(mp_args *a);
// A canonical text for args[from..]: one line per value.
std::string describe_args(const mp_args *a, size_t from);
// "<len>:<hex>" (short) or "<len>:fnv<hash>" (long).
std::string describe_blob(const void *p, size_t n);
// [0] read handle, [1] write handle: reads one message, writes back "echo:" + it.
int tgt_relay(mp_args *a);
// [0] backend, [1] int: starts a grandchild returning args[1] and returns its exit
// code + 10.
int tgt_nested(mp_args *a);
// [0] out, [1] backend: reports itself, the default names of two new children, then
// starts the first (tgt_report_self) and joins it.
int tgt_name_children(mp_args *a);
// [0] out, [1] backend, [2] int daemon: starts a grandchild running tgt_sleeper
// (daemon as given) and then sleeps up to its cap (never returns in a passing test).
int tgt_start_sleeper_then_sleep(mp_args *a);
// [0] out, [1] ready write end or absent: writes "pid=<pid>" to out, 'R' to ready,
// sleeps up to 60 s, writes "finished" and returns 97.
int tgt_sleeper(mp_args *a);
// [0] out: writes "watching", waits (up to 30 s) for the parent's sentinel, then writes
// "parent-gone" or "timeout"/"error:...".
int tgt_watch_parent(mp_args *a);
// [0] out, [1] backend: starts tgt_watch_parent (not daemonic) and sleeps up to 60 s.
int tgt_start_watcher_then_sleep(mp_args *a);
// [0] out, [1] backend, [2] int with_daemon: starts a daemonic tgt_sleeper (when
// with_daemon, and waits until it runs) and a non-daemonic tgt_slow_worker, returns 0
// without joining either.
int tgt_daemon_cleanup(mp_args *a);
// [0] out, [1] double delay: sleeps delay, writes "done pid=<pid>", returns 0.
int tgt_slow_worker(mp_args *a);

} // namespace mpt

#endif
