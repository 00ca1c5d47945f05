/* A shared library for the forkserver preload tests: it records the process that
 * loaded it (its constructor runs once, in the forkserver when preloaded there). */
#include <unistd.h>

__attribute__((visibility("default"))) long mp_preload_probe_init_pid;

__attribute__((constructor)) static void probe_init(void) {
    mp_preload_probe_init_pid = (long)getpid();
}

__attribute__((visibility("default"))) int mp_preload_probe_magic(void) { return 0x5eed; }
