/* White-box hooks of the shared arenas (core/block.c), for tests (plain C, also
 * included from C++). */
#ifndef MP_CORE_ARENA_HOOK_H
#define MP_CORE_ARENA_HOOK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The size of this process's next arena and the most any grows to (bytes, powers of
 *  two, at least 64 KiB); 0 keeps a value. The default is 256 KiB growing to 64 MiB. */
void mp__arena_set_sizes(size_t first, size_t max);
/** How many arenas this process maps, how many of them it allocates from, and the
 *  slots in use in those (by any process). */
void mp__arena_stats(size_t *mapped, size_t *own, uint64_t *live);

#ifdef __cplusplus
}
#endif
#endif
