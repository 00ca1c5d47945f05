/* The one OS-layer function the codec uses (the dict hash seed), for the libFuzzer
 * build that compiles the codec without the OS layer. A fixed seed keeps runs
 * reproducible. */
#include <stddef.h>
#include <string.h>

int mp__os_random(void *buf, size_t n);

int mp__os_random(void *buf, size_t n) {
    memset(buf, 0x5a, n);
    return 0;
}
