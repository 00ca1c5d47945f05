/* Function identity on ELF systems: a target travels as (module, offset from the
 * module's load base, build identity). Under ASLR a re-executed child loads everything
 * elsewhere, so a raw pointer means nothing there; the build identity makes sure the
 * offset points at the same code, never at whatever another build has there. */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/os.h"

typedef struct find_ctx {
    uintptr_t addr;   /* by address */
    const char *name; /* or by module name ("" = the main program) */
    bool found;
    char module[4096];
    uintptr_t base;
    char build[128];
    bool exec_ok; /* addr lies in an executable segment */
} find_ctx;

static void hex(char *out, size_t cap, const unsigned char *p, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 <= cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", p[i]);
}

static void module_build(struct dl_phdr_info *info, const char *path, char *out, size_t cap) {
    out[0] = '\0';
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            size_t namesz = (nh->n_namesz + 3) & ~(size_t)3,
                   descsz = (nh->n_descsz + 3) & ~(size_t)3;
            const unsigned char *name = p + sizeof *nh, *desc = name + namesz;
            if (desc + nh->n_descsz > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                memcpy(out, "id:", 3);
                hex(out + 3, cap - 3, desc, nh->n_descsz);
                return;
            }
            p = desc + descsz;
        }
    }
    /* No build-id: the file's size and modification time stand in for it. */
    struct stat st;
    if (stat(path, &st) == 0)
        snprintf(out, cap, "st:%lld:%lld.%09ld", (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    find_ctx *c = arg;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    bool match = false;
    if (c->name) {
        match = strcmp(name, c->name) == 0;
    } else {
        for (int i = 0; i < info->dlpi_phnum && !match; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            match = ph->p_type == PT_LOAD && c->addr >= lo && c->addr < lo + ph->p_memsz;
        }
    }
    if (!match) return 0;
    c->found = true;
    c->base = info->dlpi_addr;
    snprintf(c->module, sizeof c->module, "%s", name);
    if (c->addr) {
        for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && c->addr >= lo &&
                c->addr < lo + ph->p_memsz)
                c->exec_ok = true;
        }
    }
    module_build(info, name[0] ? name : mp__os_self_exe(), c->build, sizeof c->build);
    return 1;
}

int mp__os_fn_to_ref(void *fn, mp__fnref *out) {
    memset(out, 0, sizeof *out);
    find_ctx c = {.addr = (uintptr_t)fn};
    dl_iterate_phdr(find_cb, &c);
    if (!c.found || !c.exec_ok)
        return mp__err(MP_ERESOLVE, "target %p is not a function of any loaded module", fn);
    out->module = mp__strdup(c.module);
    out->build = mp__strdup(c.build);
    out->offset = (uint64_t)((uintptr_t)fn - c.base);
    if (!out->module || !out->build) {
        mp__fnref_clear(out);
        return mp__err(MP_ENOMEM, "target: out of memory");
    }
    return 0;
}

int mp__os_ref_to_fn(const mp__fnref *ref, void **out) {
    *out = NULL;
    if (!ref->module) return mp__err(MP_ERESOLVE, "target: no module named");
    find_ctx c = {.name = ref->module};
    dl_iterate_phdr(find_cb, &c);
    if (!c.found && ref->module[0]) {
        /* Loaded by the parent at run time (dlopen): load it here too. */
        if (!dlopen(ref->module, RTLD_NOW | RTLD_GLOBAL))
            return mp__err(MP_ERESOLVE, "target: cannot load module %s: %s", ref->module,
                           dlerror());
        dl_iterate_phdr(find_cb, &c);
    }
    const char *shown = ref->module[0] ? ref->module : "the main program";
    if (!c.found)
        return mp__err(MP_ERESOLVE, "target: module %s is not loaded in the child", shown);
    if (!ref->build || strcmp(c.build, ref->build) != 0)
        return mp__err(
            MP_ERESOLVE,
            "target: %s in the child is not the parent's build (%s here, %s in the parent); "
            "was the executable replaced, or set_executable pointed at another program?",
            shown, c.build[0] ? c.build : "unknown", ref->build ? ref->build : "unknown");
    void *fn = (void *)(c.base + (uintptr_t)ref->offset);
    find_ctx check = {.addr = (uintptr_t)fn};
    dl_iterate_phdr(find_cb, &check);
    if (!check.exec_ok || strcmp(check.module, c.module) != 0)
        return mp__err(MP_ERESOLVE, "target: offset %#llx is outside the code of %s",
                       (unsigned long long)ref->offset, shown);
    *out = fn;
    return 0;
}
