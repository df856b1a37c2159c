/*
 * Unit tests for common/keyfile.c: what a private key file must be before
 * it is read.
 *
 * Read top to bottom: the modes accepted and refused, what is not a
 * regular file, the owner, then keyfile_open.  Each test works in its own
 * temporary directory, removed after it (pass or fail).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyfile.h"

#define DIR_TEMPLATE "/tmp/trp-test-keyfile-XXXXXX"
#define OTHER_UID 12345

/* The running test's directory, and the path of the file "key" in it. */
static char dir[sizeof(DIR_TEMPLATE)];
static char key[sizeof(DIR_TEMPLATE) + 16];

static int
make_dir(void **state)
{
	(void)state;
	memcpy(dir, DIR_TEMPLATE, sizeof(DIR_TEMPLATE));
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(key, sizeof(key), "%s/key", dir);
	return 0;
}

static int
remove_dir(void **state)
{
	char path[sizeof(key)];

	(void)state;
	(void)unlink(key);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	(void)unlink(path);
	snprintf(path, sizeof(path), "%s/sub", dir);
	(void)rmdir(path);
	return rmdir(dir);
}

/* A new file "key" with mode (exactly: no umask), open. */
static int
key_with_mode(mode_t mode)
{
	int fd;

	(void)unlink(key);
	fd = open(key, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "key\n", 4), 4);
	assert_int_equal(fchmod(fd, mode), 0);
	return fd;
}

/* keyfile_check on "key" at mode; returns its result, err filled. */
static int
check_mode(mode_t mode, char *err, size_t errlen)
{
	int fd = key_with_mode(mode);
	int rc;

	err[0] = '\0';
	rc = keyfile_check(fd, key, err, errlen);
	assert_int_equal(close(fd), 0);
	return rc;
}

/* --- modes --- */

static void
test_owner_only_modes_are_accepted(void **state)
{
	const mode_t good[] = { 0600, 0400, 0700 };
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (check_mode(good[i], err, sizeof(err)) != 0)
			fail_msg("mode %04o refused: %s", (unsigned)good[i], err);
}

static void
test_mode_0644_is_refused_naming_the_file(void **state)
{
	char err[512], want[512];

	(void)state;
	assert_int_equal(check_mode(0644, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: permissions 0644 are too open for "
	    "a private key (chmod 600 %s)", key, key);
	assert_string_equal(err, want);
}

static void
test_any_group_or_other_bit_is_refused(void **state)
{
	const mode_t bad[] = { 0640, 0620, 0610, 0604, 0602, 0601, 0660 };
	char err[512], want[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (check_mode(bad[i], err, sizeof(err)) != -1)
			fail_msg("mode %04o accepted", (unsigned)bad[i]);
		snprintf(want, sizeof(want), "permissions %04o are too open",
		    (unsigned)bad[i]);
		if (strstr(err, want) == NULL)
			fail_msg("mode %04o: \"%s\"", (unsigned)bad[i], err);
	}
}

/* A systemd credential (a file on the device of $CREDENTIALS_DIRECTORY)
 * may show the group's read bit: the mask of the ACL entry by which
 * systemd lets the service's user read it.  Nothing else is relaxed, and
 * without the variable, for a directory on another device, or for a key
 * outside that directory on the same device, 0440 is refused as before. */
static void
test_a_credential_may_show_the_acl_mask_as_group_read(void **state)
{
	const mode_t bad[] = { 0460, 0450, 0444, 0442, 0441, 0470 };
	char err[512];
	size_t i;

	(void)state;
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", dir, 1), 0);
	if (check_mode(0440, err, sizeof(err)) != 0)
		fail_msg("a credential at 0440 refused: %s", err);
	if (check_mode(0400, err, sizeof(err)) != 0)
		fail_msg("a credential at 0400 refused: %s", err);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (check_mode(bad[i], err, sizeof(err)) != -1)
			fail_msg("a credential at %04o accepted", (unsigned)bad[i]);

	/* Another directory of the same file system: not a credential. */
	{
		char other[sizeof(key) + 8];

		snprintf(other, sizeof(other), "%s/creds", dir);
		assert_int_equal(mkdir(other, 0700), 0);
		assert_int_equal(setenv("CREDENTIALS_DIRECTORY", other, 1), 0);
		assert_int_equal(check_mode(0440, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "permissions 0440 are too open"));
		assert_int_equal(rmdir(other), 0);
	}
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "/proc", 1), 0);
	assert_int_equal(check_mode(0440, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "permissions 0440 are too open"));
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", "relative", 1), 0);
	assert_int_equal(check_mode(0440, err, sizeof(err)), -1);
	assert_int_equal(unsetenv("CREDENTIALS_DIRECTORY"), 0);
	assert_int_equal(check_mode(0440, err, sizeof(err)), -1);
}

/* --- not a regular file --- */

static void
test_a_directory_is_refused(void **state)
{
	char err[512] = "", sub[sizeof(key)], want[600];
	int fd;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	fd = open(sub, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(keyfile_check(fd, sub, err, sizeof(err)), -1);
	assert_int_equal(close(fd), 0);
	snprintf(want, sizeof(want), "%s: not a regular file", sub);
	assert_string_equal(err, want);
}

/* --- the owner --- */

static void
test_a_file_of_another_user_is_refused(void **state)
{
	char err[512], want[600];
	int fd;

	(void)state;
	if (geteuid() != 0)
		skip();		/* only root can give a file away */
	fd = key_with_mode(0600);
	assert_int_equal(fchown(fd, OTHER_UID, (gid_t)-1), 0);
	assert_int_equal(keyfile_check(fd, key, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: owned by uid %d, not by uid 0 (the "
	    "user reading it) or root", key, OTHER_UID);
	assert_string_equal(err, want);

	/* Given back to root (the reader here), it is fine again. */
	assert_int_equal(fchown(fd, 0, (gid_t)-1), 0);
	assert_int_equal(fchmod(fd, 0600), 0);	/* chown may clear bits */
	assert_int_equal(keyfile_check(fd, key, err, sizeof(err)), 0);
	assert_int_equal(close(fd), 0);
}

/* The descriptor is what counts: a file swapped in under the same name
 * after the open does not change the answer. */
static void
test_the_descriptor_is_checked_not_the_path(void **state)
{
	char err[512] = "";
	int fd = key_with_mode(0644);

	(void)state;
	assert_int_equal(close(key_with_mode(0600)), 0);	/* a new "key" */
	assert_int_equal(keyfile_check(fd, key, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "permissions 0644"));
	assert_int_equal(close(fd), 0);
}

/* --- keyfile_open --- */

static void
test_open_gives_the_stream_of_a_good_file(void **state)
{
	char err[512] = "", line[16];
	FILE *f;

	(void)state;
	assert_int_equal(close(key_with_mode(0600)), 0);
	if ((f = keyfile_open(key, err, sizeof(err))) == NULL)
		fail_msg("%s", err);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_string_equal(line, "key\n");
	assert_int_equal(fclose(f), 0);
}

static void
test_open_refuses_what_check_refuses(void **state)
{
	char err[512] = "";

	(void)state;
	assert_int_equal(close(key_with_mode(0640)), 0);
	assert_null(keyfile_open(key, err, sizeof(err)));
	assert_non_null(strstr(err, "permissions 0640 are too open"));
}

static void
test_open_refuses_a_fifo_without_waiting(void **state)
{
	char err[512] = "", fifo[sizeof(key)], want[600];

	(void)state;
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_null(keyfile_open(fifo, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: not a regular file", fifo);
	assert_string_equal(err, want);
}

static void
test_open_of_a_missing_file_names_it(void **state)
{
	char err[512] = "", want[600];

	(void)state;
	assert_null(keyfile_open(key, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: No such file or directory", key);
	assert_string_equal(err, want);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, make_dir, remove_dir)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_owner_only_modes_are_accepted),
		TEST(test_mode_0644_is_refused_naming_the_file),
		TEST(test_any_group_or_other_bit_is_refused),
		TEST(test_a_credential_may_show_the_acl_mask_as_group_read),
		TEST(test_a_directory_is_refused),
		TEST(test_a_file_of_another_user_is_refused),
		TEST(test_the_descriptor_is_checked_not_the_path),
		TEST(test_open_gives_the_stream_of_a_good_file),
		TEST(test_open_refuses_what_check_refuses),
		TEST(test_open_refuses_a_fifo_without_waiting),
		TEST(test_open_of_a_missing_file_names_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
