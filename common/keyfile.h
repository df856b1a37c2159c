/*
 * keyfile: the checks a private key file must pass before it is read,
 * like OpenSSH's StrictModes: a regular file, no permission bit for group
 * or others, owned by the user reading it or by root.
 *
 * A key that others may read is no longer secret, and a key file that
 * another user owns (or may write) is that user's key: they can read it,
 * or replace it with one of their own between two starts.  Refusing it at
 * start says so while someone is watching, instead of running with it.
 *
 * One exception: a file of systemd's credentials directory (on the device
 * of $CREDENTIALS_DIRECTORY, see systemd.exec(5), LoadCredential=) may
 * show the group's read bit, which there is the mask of the ACL entry that
 * lets the service's user read it (no group can).
 *
 * The check is on an open descriptor, the one the key is then read from:
 * checking the path and opening it afterwards would leave a moment in
 * which the file could be swapped.
 */
#ifndef KEYFILE_H
#define KEYFILE_H

#include <stddef.h>
#include <stdio.h>

/*
 * Check the file open at fd, named path in messages.  Returns 0, or -1
 * with one of these in err (path first):
 *   "PATH: not a regular file"
 *   "PATH: permissions 0644 are too open for a private key (chmod 600 PATH)"
 *   "PATH: owned by uid N, not by uid M (the user reading it) or root"
 */
int keyfile_check(int fd, const char *path, char *err, size_t errlen);

/*
 * Open path for reading and keyfile_check it.  Returns the stream to read
 * the key from, or NULL with a message naming the file in err.  A FIFO
 * does not block the open: it is refused as not a regular file.
 */
FILE *keyfile_open(const char *path, char *err, size_t errlen);

#endif
