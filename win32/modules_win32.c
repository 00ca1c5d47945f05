/* Function identity on Windows: a target travels as (module path, offset from the
 * module base, build identity). The child maps the same module and checks that it
 * is the same build before it computes an address: a mismatch is MP_ERESOLVE with a
 * message naming the module, never a jump to a wrong address. */
#include "win32.h"

#include <stdio.h>
#include <string.h>

/* What identifies a build of a PE image. Everything here comes from the headers the
 * loader maps verbatim, so the in-memory copy and the file on disk agree. */
struct pe_info {
    DWORD stamp;      /* TimeDateStamp: 0 for deterministic links, hence the rest */
    DWORD image_size; /* SizeOfImage */
    DWORD checksum;
    DWORD entry; /* AddressOfEntryPoint */
    bool is_dll;
    uint64_t sections_hash; /* FNV-1a of the section table */
    WORD nsections;
    const IMAGE_SECTION_HEADER *sections;
};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Parses PE headers held in n readable bytes at p; false when they are not a PE
 * image for this architecture. */
static bool pe_parse(const unsigned char *p, size_t n, struct pe_info *out) {
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)p;
    if (n < sizeof *dos || dos->e_magic != IMAGE_DOS_SIGNATURE || dos->e_lfanew <= 0) return false;
    size_t off = (size_t)dos->e_lfanew;
    if (off > n || n - off < sizeof(IMAGE_NT_HEADERS)) return false;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(p + off);
    if (nt->Signature != IMAGE_NT_SIGNATURE ||
        nt->OptionalHeader.Magic != IMAGE_NT_OPTIONAL_HDR_MAGIC)
        return false;
    size_t sec_off =
        off + offsetof(IMAGE_NT_HEADERS, OptionalHeader) + nt->FileHeader.SizeOfOptionalHeader;
    size_t nsec = nt->FileHeader.NumberOfSections;
    if (sec_off > n || (n - sec_off) / sizeof(IMAGE_SECTION_HEADER) < nsec) return false;

    memset(out, 0, sizeof *out);
    out->stamp = nt->FileHeader.TimeDateStamp;
    out->image_size = nt->OptionalHeader.SizeOfImage;
    out->checksum = nt->OptionalHeader.CheckSum;
    out->entry = nt->OptionalHeader.AddressOfEntryPoint;
    out->is_dll = (nt->FileHeader.Characteristics & IMAGE_FILE_DLL) != 0;
    out->nsections = (WORD)nsec;
    out->sections = (const IMAGE_SECTION_HEADER *)(p + sec_off);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < nsec; i++) {
        const IMAGE_SECTION_HEADER *s = &out->sections[i];
        DWORD f[6] = {s->VirtualAddress,   s->Misc.VirtualSize, s->SizeOfRawData,
                      s->PointerToRawData, s->Characteristics,  0};
        h = fnv1a(h, s->Name, sizeof s->Name);
        h = fnv1a(h, f, sizeof f);
    }
    out->sections_hash = h;
    return true;
}

/* The headers of a mapped module: bounded by SizeOfHeaders, which the loader maps
 * in full. */
static bool pe_parse_module(HMODULE mod, struct pe_info *out) {
    const unsigned char *base = (const unsigned char *)mod;
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
    if (dos->e_magic != IMAGE_DOS_SIGNATURE || dos->e_lfanew <= 0 || dos->e_lfanew > 0x10000)
        return false;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE) return false;
    return pe_parse(base, nt->OptionalHeader.SizeOfHeaders, out);
}

/* Is [offset, offset+1) inside an executable section? Guards against data
 * addresses and against an offset that a different build would place elsewhere. */
static bool pe_offset_is_code(const struct pe_info *pe, uint64_t offset) {
    if (offset >= pe->image_size) return false;
    for (WORD i = 0; i < pe->nsections; i++) {
        const IMAGE_SECTION_HEADER *s = &pe->sections[i];
        DWORD size = s->Misc.VirtualSize ? s->Misc.VirtualSize : s->SizeOfRawData;
        if ((s->Characteristics & IMAGE_SCN_MEM_EXECUTE) && offset >= s->VirtualAddress &&
            offset - s->VirtualAddress < size)
            return true;
    }
    return false;
}

/* "pe:<stamp>:<image size>:<checksum>:<entry>:<sections hash>:<file size>:<mtime>".
 * The file's size and write time catch rebuilds that a deterministic link would
 * otherwise hide behind identical headers. */
static int build_identity(const struct pe_info *pe, const wchar_t *path, char **out) {
    WIN32_FILE_ATTRIBUTE_DATA fa;
    *out = NULL;
    if (!GetFileAttributesExW(path, GetFileExInfoStandard, &fa))
        return mp__os_err("GetFileAttributesExW(module)");
    uint64_t size = ((uint64_t)fa.nFileSizeHigh << 32) | fa.nFileSizeLow;
    uint64_t mtime =
        ((uint64_t)fa.ftLastWriteTime.dwHighDateTime << 32) | fa.ftLastWriteTime.dwLowDateTime;
    char buf[160];
    snprintf(buf, sizeof buf, "pe:%08lx:%lx:%lx:%lx:%016llx:%llu:%llu", (unsigned long)pe->stamp,
             (unsigned long)pe->image_size, (unsigned long)pe->checksum, (unsigned long)pe->entry,
             (unsigned long long)pe->sections_hash, (unsigned long long)size,
             (unsigned long long)mtime);
    *out = mp__strdup(buf);
    return *out ? 0 : mp__err(MP_ENOMEM, "out of memory for a module identity");
}

int mp__os_fn_to_ref(void *fn, mp__fnref *out) {
    HMODULE mod = NULL;
    wchar_t *wpath = NULL;
    struct pe_info pe;
    int rc;

    memset(out, 0, sizeof *out);
    if (fn == NULL) return mp__err(MP_ERESOLVE, "target is NULL");
    /* UNCHANGED_REFCOUNT: the caller's module stays loaded while its function is
     * being started, so there is no reference to take or leak. */
    if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                                GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                            (LPCWSTR)fn, &mod))
        return mp__err(MP_ERESOLVE,
                       "target %p is not inside a loaded module (a heap or stack "
                       "address?); a child could not find it",
                       fn);
    if (!pe_parse_module(mod, &pe)) {
        rc = mp__err(MP_ERESOLVE, "target %p: its module has no readable PE headers", fn);
        goto fail;
    }
    uint64_t offset = (uint64_t)((uintptr_t)fn - (uintptr_t)mod);
    if (!pe_offset_is_code(&pe, offset)) {
        rc = mp__err(MP_ERESOLVE, "target %p is not in an executable section of its module", fn);
        goto fail;
    }
    wpath = mp__win_module_path(mod);
    if (wpath == NULL) {
        rc = MP_ERESOLVE;
        goto fail;
    }
    out->module = mp__win_to_utf8(wpath);
    if (out->module == NULL) {
        rc = mp__err(MP_ENOMEM, "out of memory for a module path");
        goto fail;
    }
    rc = build_identity(&pe, wpath, &out->build);
    if (rc < 0) goto fail;
    out->offset = offset;
    mp__free(wpath);
    return 0;

fail:
    mp__free(wpath);
    mp__fnref_clear(out);
    memset(out, 0, sizeof *out);
    return rc;
}

/* Re-records the current error under code with a prefix. */
static int rewrap(int code, const char *prefix, const char *module) {
    return mp__err_wrap(code, "target module %s %s", module, prefix);
}

/* Reads the first bytes of a module file, enough for its headers, so a module that
 * is not loaded yet can be checked before LoadLibrary runs any of its code. */
static int read_file_head(const wchar_t *path, unsigned char *buf, size_t cap, size_t *n) {
    *n = 0;
    HANDLE f = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) return mp__os_err("CreateFileW(module)");
    while (*n < cap) {
        DWORD got = 0;
        if (!ReadFile(f, buf + *n, (DWORD)(cap - *n), &got, NULL)) {
            int rc = mp__os_err("ReadFile(module)");
            CloseHandle(f);
            return rc;
        }
        if (got == 0) break;
        *n += got;
    }
    CloseHandle(f);
    return 0;
}

static bool file_id(const wchar_t *path, BY_HANDLE_FILE_INFORMATION *out) {
    HANDLE f = CreateFileW(path, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, 0, NULL);
    if (f == INVALID_HANDLE_VALUE) return false;
    BOOL ok = GetFileInformationByHandle(f, out);
    CloseHandle(f);
    return ok != 0;
}

/* The main module when path names this program's file under another spelling (a
 * hard link, a short name, another drive mapping): the child was started through
 * mp_set_executable with an alias of the parent's program. NULL otherwise. */
static HMODULE main_module_alias(const wchar_t *path) {
    BY_HANDLE_FILE_INFORMATION a, b;
    wchar_t *self = mp__win_module_path(NULL);
    bool same = self != NULL && file_id(self, &a) && file_id(path, &b) &&
                a.dwVolumeSerialNumber == b.dwVolumeSerialNumber &&
                a.nFileIndexHigh == b.nFileIndexHigh && a.nFileIndexLow == b.nFileIndexLow;
    mp__free(self);
    return same ? GetModuleHandleW(NULL) : NULL;
}

/* Checks that a module not loaded here is a DLL of the same build, from its file. */
static int check_unloaded(const mp__fnref *ref, const wchar_t *wpath) {
    enum { HEAD = 64 * 1024 };
    unsigned char *head = mp__malloc(HEAD);
    struct pe_info pe;
    char *ident = NULL;
    size_t n;
    int rc;

    if (head == NULL) return mp__err(MP_ENOMEM, "out of memory reading a module");
    rc = read_file_head(wpath, head, HEAD, &n);
    if (rc < 0) {
        rc = rewrap(MP_ERESOLVE, "cannot be opened in the child", ref->module);
        goto done;
    }
    if (!pe_parse(head, n, &pe)) {
        rc = mp__err(MP_ERESOLVE, "target module %s is not a PE image", ref->module);
        goto done;
    }
    /* Loading another program as a library would run it without its CRT start-up:
     * a target living in an .exe only resolves in that very program. */
    if (!pe.is_dll) {
        rc = mp__err(MP_ERESOLVE,
                     "target is in the program %s, but the child runs %s; start the "
                     "child with that program (mp_set_executable) or move the target "
                     "into a DLL",
                     ref->module, mp__os_self_exe() ? mp__os_self_exe() : "another program");
        goto done;
    }
    rc = build_identity(&pe, wpath, &ident);
    if (rc < 0) goto done;
    if (strcmp(ident, ref->build) != 0)
        rc = mp__err(MP_ERESOLVE,
                     "target module %s is a different build in the child "
                     "(parent: %s, child: %s)",
                     ref->module, ref->build, ident);
done:
    mp__free(ident);
    mp__free(head);
    return rc;
}

int mp__os_ref_to_fn(const mp__fnref *ref, void **out) {
    wchar_t *wpath = NULL;
    char *ident = NULL;
    struct pe_info pe;
    int rc;

    *out = NULL;
    if (ref == NULL || ref->module == NULL || ref->build == NULL)
        return mp__err(MP_ERESOLVE, "target reference is incomplete");
    wpath = mp__win_to_wide(ref->module);
    if (wpath == NULL) {
        rc = mp__err(MP_ERESOLVE, "target module path is not valid UTF-8: %s", ref->module);
        goto fail;
    }
    HMODULE mod = GetModuleHandleW(wpath);
    if (mod == NULL) mod = main_module_alias(wpath);
    if (mod == NULL) {
        rc = check_unloaded(ref, wpath);
        if (rc < 0) goto fail;
        /* Stays loaded: the target runs from it for the rest of the child's life. */
        mod = LoadLibraryExW(wpath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
        if (mod == NULL) {
            DWORD e = GetLastError();
            mp__win_err(e, "LoadLibraryExW");
            rc = rewrap(MP_ERESOLVE, "cannot be loaded in the child", ref->module);
            goto fail;
        }
    }
    /* Checked again on the mapped image: the file may have been replaced between
     * the check and the load, and a module found by name was never checked. */
    if (!pe_parse_module(mod, &pe)) {
        rc = mp__err(MP_ERESOLVE, "target module %s has no readable PE headers", ref->module);
        goto fail;
    }
    rc = build_identity(&pe, wpath, &ident);
    if (rc < 0) {
        rc = rewrap(MP_ERESOLVE, "cannot be checked in the child", ref->module);
        goto fail;
    }
    if (strcmp(ident, ref->build) != 0) {
        rc = mp__err(MP_ERESOLVE,
                     "target module %s is a different build in the child "
                     "(parent: %s, child: %s)",
                     ref->module, ref->build, ident);
        goto fail;
    }
    if (!pe_offset_is_code(&pe, ref->offset)) {
        rc = mp__err(MP_ERESOLVE, "target offset 0x%llx is outside the code of module %s",
                     (unsigned long long)ref->offset, ref->module);
        goto fail;
    }
    *out = (void *)((uintptr_t)mod + (uintptr_t)ref->offset);
    mp__free(ident);
    mp__free(wpath);
    return 0;

fail:
    mp__free(ident);
    mp__free(wpath);
    return rc;
}
