/*
 * keyfile: a private key file is checked on the descriptor it is read
 * from (see keyfile.h).
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether st (opened as path) is a file of the service manager's
 * credentials directory ($CREDENTIALS_DIRECTORY, a file system of its own
 * mounted for the unit): the file the path names, directly in that
 * directory, and on its device.  (The device alone would let in a
 * group-readable key anywhere else on the same file system, which matters
 * where the directory is no mount of its own.) */
static int
is_credential(const struct stat *st, const char *path)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char *rdir = NULL, *rpath = NULL, *slash;
	struct stat dst, pst;
	int yes = 0;

	if (dir == NULL || dir[0] != '/')
		return 0;
	if ((rdir = realpath(dir, NULL)) == NULL ||
	    (rpath = realpath(path, NULL)) == NULL)
		goto done;
	if (stat(rpath, &pst) == -1 || pst.st_dev != st->st_dev ||
	    pst.st_ino != st->st_ino)
		goto done;	/* the path no longer names what was opened */
	if (stat(rdir, &dst) == -1 || !S_ISDIR(dst.st_mode) ||
	    dst.st_dev != st->st_dev)
		goto done;
	slash = strrchr(rpath, '/');	/* realpath's answer is absolute */
	*slash = '\0';
	yes = strcmp(rpath, rdir) == 0;
done:
	free(rdir);
	free(rpath);
	return yes;
}

int
keyfile_check(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;
	mode_t refused = S_IRWXG | S_IRWXO;
	uid_t euid;

	if (fstat(fd, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return -1;
	}
	/* systemd's LoadCredential= writes a credential 0400 and lets the
	 * service's user read it with an ACL entry where the file system has
	 * ACLs (tmpfs; on ramfs it chowns instead): the ACL's mask then shows
	 * as the group's read bit, with no group able to read it.  There the
	 * group may have "r"; never "w", and others nothing. */
	if (is_credential(&st, path))
		refused = S_IWGRP | S_IXGRP | S_IRWXO;
	if (st.st_mode & refused) {
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
