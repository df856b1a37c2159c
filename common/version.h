/*
 * version: what --version prints.  The program's version and the commit it
 * was built from (the Makefile passes TRP_COMMIT: `git describe --always
 * --dirty`, "unknown" outside a git checkout), then the versions of
 * OpenSSL, libevent and libsodium as the libraries report them at run
 * time: the ones the program runs with, which a distribution's update may
 * have changed since the build.
 */
#ifndef VERSION_H
#define VERSION_H

#include <stdio.h>

#define TRP_VERSION "0.1.0"

/* Write the version lines of progname to f. */
void version_print(FILE *f, const char *progname);

#endif
