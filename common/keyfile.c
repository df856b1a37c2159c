/*
 * keyfile: a private key file is checked on the descriptor it is read
 * from (see keyfile.h).
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
keyfile_check(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	uid_t euid;

	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "%s: permissions %04o are too open for "
		    "a private key (chmod 600 %s)", path,
		    (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	/* The effective uid: the one the kernel checked the open against. */
	euid = geteuid();
	if (st.st_uid != euid && st.st_uid != 0) {
		snprintf(err, errlen, "%s: owned by uid %lu, not by uid %lu "
		    "(the user reading it) or root", path,
		    (unsigned long)st.st_uid, (unsigned long)euid);
		return -1;
	}
	return 0;
}

FILE *
keyfile_open(const char *path, char *err, size_t errlen)
{
	FILE *f;
	int fd, flags;

	/* O_NONBLOCK only for the open: a FIFO would wait for a writer. */
	if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) ==
	    -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (keyfile_check(fd, path, err, errlen) == -1)
		goto fail;
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1 ||
	    (f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	return f;
fail:
	close(fd);
	return NULL;
}
