/*
 * output: the files one run of gen-cert writes into DIR, all or none.
 *
 * Every file is made by open(O_CREAT | O_EXCL) with its final mode, so a
 * private key is never readable by others, not even for a moment, and
 * nothing is written through an existing file or a symbolic link planted
 * in its place.  Without --force a file that exists is a refusal.  Under
 * --force each file is written beside its old one under a temporary name
 * (DIR/.NAME.XXXXXXXX), and only when every file of the run is written and
 * synced are they renamed over the old ones; until then the old files are
 * untouched.  When anything fails before that, the files this run made
 * are removed again (and DIR, if it made it), so no half of a key pair is
 * left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "gen-cert.h"
#include "log.h"

#define TMP_TRIES 16		/* temporary names tried before giving up */

void
output_init(struct output *out, const char *dir, int force)
{
	memset(out, 0, sizeof(*out));
	out->dir = dir;
	out->force = force;
}

int
output_add(struct output *out, const char *name, mode_t mode)
{
	struct output_file *of;
	size_t len = strlen(out->dir);
	int n;

	if (out->n == OUTPUT_FILES_MAX) {
		log_warnx("internal error: more than %d output files",
		    OUTPUT_FILES_MAX);
		return -1;
	}
	if (len == 0) {
		log_warnx("empty output directory name");
		return -1;
	}
	of = &out->file[out->n];

	/* "cert" and "cert/" both give "cert/NAME"; "/" gives "/NAME". */
	while (len > 1 && out->dir[len - 1] == '/')
		len--;
	n = snprintf(of->path, sizeof(of->path), "%.*s%s%s", (int)len,
	    out->dir, out->dir[len - 1] == '/' ? "" : "/", name);
	if (n < 0 || (size_t)n >= sizeof(of->path)) {
		log_warnx("%s: path too long", out->dir);
		return -1;
	}
	of->mode = mode;
	out->n++;
	return 0;
}

int
output_prepare(struct output *out)
{
	struct output_file *of;
	struct stat st;
	size_t i;
	int rc = 0;

	if (mkdir(out->dir, 0755) == 0) {
		out->made_dir = 1;
	} else if (errno != EEXIST) {
		log_warn("cannot make directory %s", out->dir);
		return -1;
	} else if (stat(out->dir, &st) == -1) {
		log_warn("%s", out->dir);
		return -1;
	} else if (!S_ISDIR(st.st_mode)) {
		log_warnx("%s exists and is not a directory", out->dir);
		return -1;
	}

	/* Every file first, so that a refusal leaves the old pair whole. */
	for (i = 0; i < out->n; i++) {
		of = &out->file[i];
		if (lstat(of->path, &st) == -1) {
			if (errno == ENOENT)
				continue;
			log_warn("%s", of->path);
			rc = -1;
		} else if (S_ISDIR(st.st_mode)) {
			log_warnx("%s is a directory", of->path);
			rc = -1;
		} else if (!out->force) {
			log_warnx("%s exists (use --force to replace it)",
			    of->path);
			rc = -1;
		}
	}
	return rc;
}

/*
 * Under force: fill of->tmp with DIR/.NAME.XXXXXXXX (random hex) beside
 * of->path.  Returns 0 or -1 (logged).
 */
static int
tmp_name(struct output_file *of)
{
	const char *name = strrchr(of->path, '/') + 1;	/* output_add put it */
	char tmp[sizeof(of->tmp)];	/* not of->tmp: gcc sees an overlap */
	unsigned char r[4];
	int n;

	if (RAND_bytes(r, sizeof(r)) != 1) {
		log_warnx("%s: no random bytes for a temporary name",
		    of->path);
		return -1;
	}
	n = snprintf(tmp, sizeof(tmp), "%.*s.%s.%02x%02x%02x%02x",
	    (int)(name - of->path), of->path, name, r[0], r[1], r[2], r[3]);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		log_warnx("%s: path too long", of->path);
		return -1;
	}
	memcpy(of->tmp, tmp, (size_t)n + 1);
	return 0;
}

/* Create the file for of (its temporary under force).  Returns fd or -1. */
static int
create(const struct output *out, struct output_file *of)
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	int fd, tries;

	if (!out->force) {
		if ((fd = open(of->path, flags, of->mode)) == -1) {
			if (errno == EEXIST)
				log_warnx("%s exists (use --force to replace "
				    "it)", of->path);
			else
				log_warn("cannot create %s", of->path);
		}
		return fd;
	}
	/* O_EXCL: a name someone else took is tried again, never reused. */
	for (tries = 0; tries < TMP_TRIES; tries++) {
		if (tmp_name(of) == -1)
			return -1;
		if ((fd = open(of->tmp, flags, of->mode)) != -1)
			return fd;
		if (errno != EEXIST) {
			log_warn("cannot create %s", of->tmp);
			return -1;
		}
	}
	log_warnx("cannot create a temporary file beside %s", of->path);
	return -1;
}

FILE *
output_open(struct output *out, size_t i)
{
	struct output_file *of = &out->file[i];
	int fd;

	if ((fd = create(out, of)) == -1)
		return NULL;
	of->created = 1;
	if ((of->f = fdopen(fd, "w")) == NULL) {
		log_warn("%s", of->path);
		close(fd);
		return NULL;
	}

	/* Our own buffer, so that the key bytes stdio held can be wiped. */
	if (setvbuf(of->f, of->buf, _IOFBF, sizeof(of->buf)) != 0) {
		log_warnx("%s: cannot set up the stream buffer", of->path);
		return NULL;
	}
	return of->f;
}

/* fsync dir, so that the names of the files in it survive a crash too. */
static int
sync_dir(const char *dir)
{
	int fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		log_warn("cannot sync directory %s", dir);
		return -1;
	}
	/* EINVAL: a file system that cannot sync a directory. */
	if (fsync(fd) == -1 && errno != EINVAL) {
		log_warn("cannot sync directory %s", dir);
		rc = -1;
	}
	(void)close(fd);
	return rc;
}

/*
 * Every file of the run is written and synced: put them in place.  Each
 * rename(2) replaces its old file at once, but the set is not one step:
 * should a later rename fail, the earlier files are new already, and the
 * log says which.  What could be seen beforehand (a directory in the
 * way) output_prepare refused.
 */
static int
commit(struct output *out)
{
	struct output_file *of;
	size_t i, j;

	for (i = 0; out->force && i < out->n; i++) {
		of = &out->file[i];
		if (rename(of->tmp, of->path) == -1) {
			log_warn("cannot replace %s", of->path);
			for (j = 0; j < i; j++)
				log_warnx("%s was replaced already; run "
				    "again for a whole pair",
				    out->file[j].path);
			return -1;
		}
		of->created = 0;	/* in place: abort leaves it */
	}
	/* Without force the files are in place since output_open: a
	 * failure here still removes them. */
	if (sync_dir(out->dir) == -1)
		return -1;
	for (i = 0; i < out->n; i++)
		out->file[i].created = 0;
	return 0;
}

int
output_close(struct output *out, size_t i)
{
	struct output_file *of = &out->file[i];
	size_t j;
	int rc = 0;

	/* fsync: a key reported as written must survive a crash. */
	if (ferror(of->f) || fflush(of->f) == EOF ||
	    fsync(fileno(of->f)) == -1) {
		log_warn("cannot write %s", of->path);
		rc = -1;
	}
	if (fclose(of->f) == EOF && rc == 0) {
		log_warn("cannot write %s", of->path);
		rc = -1;
	}
	of->f = NULL;
	OPENSSL_cleanse(of->buf, sizeof(of->buf));
	if (rc == -1)
		return -1;
	of->written = 1;
	for (j = 0; j < out->n; j++)
		if (!out->file[j].written)
			return 0;
	return commit(out);
}

const char *
output_path(const struct output *out, size_t i)
{
	return out->file[i].path;
}

void
output_abort(struct output *out)
{
	struct output_file *of;
	size_t i;

	for (i = 0; i < out->n; i++) {
		of = &out->file[i];
		if (of->f != NULL)
			(void)fclose(of->f);
		of->f = NULL;
		OPENSSL_cleanse(of->buf, sizeof(of->buf));
		if (of->created && unlink(out->force ? of->tmp : of->path) ==
		    -1)
			log_warn("cannot remove %s", out->force ? of->tmp :
			    of->path);
		of->created = 0;
	}
	if (out->made_dir && rmdir(out->dir) == -1)
		log_warn("cannot remove directory %s", out->dir);
	out->made_dir = 0;
}
