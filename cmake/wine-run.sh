#!/bin/sh
# The mingw build's CMAKE_CROSSCOMPILING_EMULATOR: runs a Windows program under Wine
# (the tests, and gtest_discover_tests listing their cases).
#
# The first program of a Wine session starts wineserver and Wine's own services
# (services.exe, explorer.exe, rpcss.exe...), which inherit that program's stdout and
# stderr and keep them open until the session ends, seconds after its last program.
# ctest reads a test's output until no process holds it, so a test that started the
# session would last until the session ends: 3 s more for each of a row of short tests,
# or the rest of the run. So the session is started here with no output attached, and
# kept for 30 s after its last program, which spans the gaps between tests.
lock="${TMPDIR:-/tmp}/mp-wine-session-$(id -u).lock"
(
    flock 9
    # Exit status 0: no session was running and this started its server. Neither
    # the server nor the services may keep the lock (fd 9).
    if wineserver -p30 </dev/null >/dev/null 2>&1 9>&-; then
        wine hostname </dev/null >/dev/null 2>&1 9>&-
    fi
) 9>"$lock"
exec wine "$@"
