/* Another program built with multiproc: a child that calls mp_init like the test binary
 * but is not its build, so a target of the test binary must be refused in it. */
#include <multiproc.h>

int main(int argc, char **argv) {
    mp_init(&argc, &argv);
    return 0;
}
