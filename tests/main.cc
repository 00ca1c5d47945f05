// The test main hands control to the library first: spawn, forkserver, apr and win32
// children re-execute this binary, and mp_init runs their target and never returns.
#include <multiproc.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

int main(int argc, char **argv) {
    int rc = mp_init(&argc, &argv);
    if (rc != 0) {
        fprintf(stderr, "mp_init: %s (%s)\n", mp_strerror(rc), mp_last_error_message());
        return 2;
    }
    // StartMethods.EnvironmentVariable runs this binary with MP_START_METHOD set and
    // this variable naming a file: report what the library chose as the default.
    if (const char *path = getenv("MP_TEST_REPORT_START_METHOD")) {
        const char *method = mp_get_start_method(false);
        mp_context *ctx = mp_get_context(NULL);
        std::string s =
            std::string(method ? method : "(null)") + " " + (ctx ? mp_context_name(ctx) : "(null)");
        FILE *f = fopen(path, "wb");
        if (!f) return 3;
        fputs(s.c_str(), f);
        fclose(f);
        return 0;
    }
#ifdef _WIN32
    // ctest learns the cases from --gtest_list_tests (CMake's gtest_discover_tests), and
    // its parser takes a "\r" before each newline for part of the suite's name.
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--gtest_list_tests") == 0) _setmode(_fileno(stdout), _O_BINARY);
#endif
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
