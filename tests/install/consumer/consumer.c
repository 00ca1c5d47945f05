/* Starts one child on "spawn" and checks its exit code: 0 when all went well. */
#include <multiproc.h>

#include <stdio.h>
#include <string.h>

static int child(mp_args *a) { return (int)mp_args_int(a, 0); }

int main(int argc, char **argv) {
    if (mp_init(&argc, &argv) != 0) return 10;
    /* The installed headers and library are the same version. */
    if (strcmp(mp_version(), MP_VERSION_STRING) != 0) return 15;
    mp_context *ctx = mp_get_context("spawn");
    if (!ctx) return 11;
    mp_args *args = NULL;
    if (mp_args_new(&args) != 0 || mp_args_add_int(args, 42) != 0) return 12;
    mp_process *p = NULL;
    mp_process_opts o = {.target = child, .args = args};
    int code = -1;
    int rc = mp_process_new(ctx, &o, &p);
    if (!rc) rc = mp_process_start(p);
    if (!rc) rc = mp_process_join(p, 60.0);
    if (!rc) rc = mp_process_exitcode(p, &code);
    mp_process_free(p);
    mp_args_free(args);
    if (rc) {
        fprintf(stderr, "consumer: %s (%s)\n", mp_err_name(rc), mp_last_error_message());
        return 13;
    }
    printf("consumer: child exit code %d\n", code);
    return code == 42 ? 0 : 14;
}
