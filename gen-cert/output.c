/*
 * output: the files one run of gen-cert writes into DIR, all or none.
 *
 * Every file is made by open(O_CREAT | O_EXCL) with its final mode, so a
 * private key is never readable by others, not even for a moment, and
 * nothing is written through an existing file or a symbolic link planted
 * in its place.  --force removes the old file just before.  When anything
 * fails, the files this run made are removed again (and DIR, if it made
 * it), so no half of a key pair is left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "gen-cert.h"
#include "log.h"

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

FILE *
output_open(struct output *out, size_t i)
{
	struct output_file *of = &out->file[i];
	int fd;

	/* Unlink, then O_EXCL: whatever appears in between is refused. */
	if (out->force && unlink(of->path) == -1 && errno != ENOENT) {
		log_warn("cannot remove %s", of->path);
		return NULL;
	}
	fd = open(of->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    of->mode);
	if (fd == -1) {
		if (errno == EEXIST)
			log_warnx("%s exists (use --force to replace it)",
			    of->path);
		else
			log_warn("cannot create %s", of->path);
		return NULL;
	}
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

int
output_close(struct output *out, size_t i)
{
	struct output_file *of = &out->file[i];
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
	return rc;
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
		if (of->created && unlink(of->path) == -1)
			log_warn("cannot remove %s", of->path);
		of->created = 0;
	}
	if (out->made_dir && rmdir(out->dir) == -1)
		log_warn("cannot remove directory %s", out->dir);
	out->made_dir = 0;
}
