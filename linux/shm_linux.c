/* Named shared memory blocks on posix: shm_open + mmap, Python's flags and mode, so
 * Python's multiprocessing.shared_memory attaches ours and we theirs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/os_shm.h"

const char *mp__os_shm_prefix(void) { return "psm_"; }

int mp__os_shm_check_name(const char *name) {
    (void)name; /* what core/shared_memory.c checks is all posix needs */
    return 0;
}

static void full_name(const char *name, char *out) {
    out[0] = '/';
    memcpy(out + 1, name, strlen(name) + 1);
}

static int map_fd(int fd, const char *name, void **base, size_t *mapped) {
    struct stat st;
    if (fstat(fd, &st) != 0) return mp__os_err("shared memory: fstat");
    if (st.st_size <= 0)
        /* Python would map 0 bytes and fail too; a block being created right now by a
         * peer that has not sized it yet looks like this. */
        return mp__err(MP_EINVAL, "shared memory: block '%s' is empty", name);
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX)
        return mp__err(MP_ETOOBIG, "shared memory: block '%s' too big to map", name);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return mp__os_err("shared memory: mmap");
    *base = p;
    *mapped = (size_t)st.st_size;
    return 0;
}

int mp__os_shm_named_create(const char *name, size_t size, mp_os_handle *h, void **base,
                            size_t *mapped) {
    *h = MP_INVALID_OS_HANDLE;
    *base = NULL;
    *mapped = 0;
    char path[MP__SHM_NAME_MAX + 2];
    full_name(name, path);
    if ((uint64_t)size > (uint64_t)INT64_MAX)
        return mp__err(MP_EINVAL, "shared memory: size too big");
    int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return mp__err(MP_EEXIST, "shared memory: '%s' exists", name);
        return mp__os_err("shared memory: shm_open");
    }
    int rc = 0;
    if (ftruncate(fd, (off_t)size) != 0) rc = mp__os_err("shared memory: ftruncate");
    if (!rc) rc = map_fd(fd, name, base, mapped);
    close(fd); /* the mapping keeps the block; Python keeps the fd, nothing needs it */
    if (rc) shm_unlink(path);
    return rc;
}

int mp__os_shm_named_open(const char *name, mp_os_handle *h, void **base, size_t *mapped) {
    *h = MP_INVALID_OS_HANDLE;
    *base = NULL;
    *mapped = 0;
    char path[MP__SHM_NAME_MAX + 2];
    full_name(name, path);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == ENOENT) return mp__err(MP_ENOENT, "shared memory: no block named '%s'", name);
        return mp__os_err("shared memory: shm_open");
    }
    int rc = map_fd(fd, name, base, mapped);
    close(fd);
    return rc;
}

void mp__os_shm_named_unmap(mp_os_handle h, void *base, size_t mapped) {
    (void)h;
    if (base) munmap(base, mapped);
}

int mp__os_shm_named_unlink(const char *name) {
    char path[MP__SHM_NAME_MAX + 2];
    full_name(name, path);
    if (shm_unlink(path) == 0) return 0;
    if (errno == ENOENT) return mp__err(MP_ENOENT, "shared memory: no block named '%s'", name);
    return mp__os_err("shared memory: shm_unlink");
}
