/* hello-c: a tiny C program whose build is bitwise reproducible.
 * No __DATE__/__TIME__, no absolute paths in the binary (see the Makefile). */
#include <stdio.h>
#include "greeting.h"

int main(int argc, char **argv)
{
    const char *who = argc > 1 ? argv[1] : "world";
    printf("%s, %s!\n", greeting(), who);
    return 0;
}
