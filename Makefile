# tcp-reverse-proxy: libcommon.a and four programs, built into build/<os>/<arch>/
# (with the integration tests' tools, from tests/tools/, in its tests/tools/).
#
#   make                      build for this machine
#   make build-linux-amd64    linux/amd64 (and build-linux-arm64, build-linux-armhf)
#   make build                every platform this machine can build (linux/amd64, arm64,
#                             armhf), saying which it skipped and why
#   make test                 unit tests (cmocka) and integration tests (pytest)
#   make test SANITIZE=1      the same, built with AddressSanitizer and UBSan
#   make DEBUG=1              a build that checks our invariants (assert)
#   make demo                 a whole tunnel on loopback, one request through it
#   make bench                the tunnel against a direct connection, OpenSSH, stunnel and HAProxy
#   make fuzz                 each libFuzzer target (tests/fuzz/) for FUZZ_SECONDS (60)
#   make deps                 install the Debian packages the build and tests need
#   make deps-cross           install the cross compilers, foreign libraries and qemu-user
#   make install              programs, units, man pages, example configs (PREFIX, DESTDIR)
#   make uninstall            remove them again (configuration in /etc is kept)
#   make deb                  a Debian package, in build/deb/
#   make clean

HOST_OS := $(shell uname -s | tr A-Z a-z)
HOST_ARCH := $(strip $(patsubst armv7l,armhf,$(patsubst aarch64,arm64,$(patsubst x86_64,amd64,\
	$(shell uname -m)))))
OS ?= $(HOST_OS)
ARCH ?= $(HOST_ARCH)

# Our own invariants are assert()ed in the sanitizer and DEBUG=1 builds;
# the default build, the one that ships, leaves them out (NDEBUG).
ifeq ($(SANITIZE),1)
VARIANT := -sanitize
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASSERTS :=
else ifeq ($(DEBUG),1)
VARIANT := -debug
SANFLAGS :=
ASSERTS :=
else
VARIANT :=
SANFLAGS :=
ASSERTS := -DNDEBUG
endif

BUILD := build/$(OS)/$(ARCH)$(VARIANT)
OBJ := $(BUILD)/obj

# Platforms: linux/ARCH for each of ARCHES.  One of them is this machine's;
# the others ("foreign") are built with Debian's cross compilers against
# Debian's multiarch libraries, which 'make deps-cross' installs (see
# common/NOTES.md, "Cross builds").  Debian 12's libevent-dev is not
# Multi-Arch: same (its event2/event-config.h differs per architecture), so
# the foreign libevent-dev cannot be installed beside the host's: deps-cross
# installs the foreign libevent runtime libraries (those are Multi-Arch: same)
# and unpacks the foreign libevent-dev .deb into build/cross/ARCH/ (headers,
# .pc files made relative with ${pcfiledir}, .so links to the installed
# libraries), which the foreign build's pkg-config looks in first.
ARCHES := amd64 arm64 armhf
FOREIGN_ARCHES := $(filter-out $(HOST_ARCH),$(ARCHES))
TRIPLET_amd64 := x86_64-linux-gnu
TRIPLET_arm64 := aarch64-linux-gnu
TRIPLET_armhf := arm-linux-gnueabihf
TRIPLET := $(TRIPLET_$(ARCH))
CROSS_LIBEVENT := libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 \
	libevent-openssl-2.1-7 libevent-pthreads-2.1-7
CROSS_LIB_PKGS := libssl-dev libsodium-dev $(CROSS_LIBEVENT)

PKG_CONFIG := pkg-config
ifneq ($(ARCH),$(HOST_ARCH))
ifeq ($(TRIPLET),)
$(error ARCH=$(ARCH): not one of $(ARCHES))
endif
# (override: a CC or AR given for the host build, on make's command line,
# reaches this sub-make too.)
override CC := $(TRIPLET)-gcc
override AR := $(TRIPLET)-ar
# (In the command itself: make 4.3 does not export variables to $(shell).)
PKG_CONFIG := env -u PKG_CONFIG_PATH -u PKG_CONFIG_SYSROOT_DIR \
	PKG_CONFIG_LIBDIR=$(abspath build/cross/$(ARCH))/usr/lib/$(TRIPLET)/pkgconfig:/usr/lib/$(TRIPLET)/pkgconfig:/usr/share/pkgconfig \
	pkg-config
endif

CC ?= cc
PKGS := openssl libevent libevent_openssl libsodium
# Lazy (=): pkg-config runs only when something is compiled, after 'deps'.
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS))
CMOCKA_LIBS = $(shell $(PKG_CONFIG) --libs cmocka)

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
	-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-format-truncation -Icommon -pthread $(SANFLAGS) \
	$(ASSERTS)
# (-Wno-format-truncation: log labels and messages are cut on purpose.)
ifeq ($(ARCH),armhf)
# Large-file interfaces on 32-bit armhf, as Debian builds its libraries there:
# without them stat/fstat (keyfile.c, gen-cert, log.c) fail with EOVERFLOW on
# a file whose inode number or size does not fit 32 bits (common/NOTES.md).
CFLAGS += -D_FILE_OFFSET_BITS=64
endif
LDFLAGS += -pthread $(SANFLAGS)

PROGRAMS := entry-point relay-server reverse-proxy gen-cert
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(OBJ)/%.o)
LIBCOMMON := $(BUILD)/libcommon.a
BINS := $(PROGRAMS:%=$(BUILD)/%)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# Integration test tools: chanpeer (a raw channel client) and libfailenable.so
# (an LD_PRELOAD shim that makes one bufferevent_enable fail).
TOOLS := $(BUILD)/tests/tools/chanpeer $(BUILD)/tests/tools/libfailenable.so

# Debian's python3 carries python3-pytest; a pyenv python3 first in PATH does not.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
PYTEST_ARGS ?=

DEB_PKGS := gcc make pkg-config libssl-dev libevent-dev libsodium-dev \
	libcmocka-dev python3 python3-pytest curl openssl groff-base man-db

.PHONY: all build $(ARCHES:%=build-linux-%) build-cross-ready test test-unit \
	test-integration demo bench deps deps-cross clean fuzz fuzz-build install uninstall deb

all: $(BINS)

# The foreign platforms, as shell words ARCH:TRIPLET.
CROSS_PAIRS := $(if $(filter linux,$(HOST_OS)),$(foreach a,$(FOREIGN_ARCHES),$(a):$(TRIPLET_$(a))))
# A shell command: what a foreign build of $$a (triplet $$t) lacks, as a
# comma-separated list, or nothing when it can be built.
CROSS_MISSING = { command -v $$t-gcc >/dev/null 2>&1 || echo $$t-gcc; \
	for p in $(CROSS_LIB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p:$$a 2>/dev/null | grep -q 'ok installed' || echo $$p:$$a; \
	done; \
	test -f build/cross/$$a/usr/lib/$$t/pkgconfig/libevent.pc || \
	    echo "libevent-dev:$$a (unpacked in build/cross/$$a)"; } | paste -sd, - | sed 's/,/, /g'

$(ARCHES:%=build-linux-%): build-linux-%:
	@if [ "$(HOST_OS)" != linux ]; then \
	    echo "make: this machine is $(HOST_OS)/$(HOST_ARCH); building linux/$* here is not supported" >&2; exit 2; fi
	@a=$*; t=$(TRIPLET_$*); if [ $$a != $(HOST_ARCH) ]; then missing=$$($(CROSS_MISSING)); \
	    if [ -n "$$missing" ]; then \
	        echo "make: cannot build linux/$$a: missing $$missing; run 'make deps-cross'" >&2; exit 2; fi; fi
	@$(MAKE) --no-print-directory OS=linux ARCH=$* all

# Every platform this machine can build: its own, then each foreign one whose
# cross compiler and libraries are here, with one line for each it skips.
build:
	@$(MAKE) --no-print-directory all
	@echo "built $(BINS)"
	@set -e; for at in $(CROSS_PAIRS); do a=$${at%%:*}; t=$${at#*:}; \
	    missing=$$($(CROSS_MISSING)); \
	    if [ -n "$$missing" ]; then \
	        echo "make build: skipped linux/$$a: missing $$missing; run 'make deps-cross'"; \
	    else $(MAKE) --no-print-directory OS=linux ARCH=$$a all; \
	        echo "built linux/$$a in build/linux/$$a$(VARIANT)/"; fi; \
	done

# For make test: each foreign platform that can be built; those that cannot
# are left out without a word (test_cross.py runs the foreign programs under
# qemu-user, and skips for each one it does not find, saying why).  None under
# SANITIZE=1: the sanitizers do not run under qemu-user, so test_cross.py
# skips in that pass and runs in the plain one.
build-cross-ready:
ifneq ($(SANITIZE),1)
	@set -e; for at in $(CROSS_PAIRS); do a=$${at%%:*}; t=$${at#*:}; \
	    if [ -z "$$($(CROSS_MISSING))" ]; then \
	        $(MAKE) --no-print-directory OS=linux ARCH=$$a all; fi; \
	done
else
	@:
endif

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

# --version names the commit (common/version.c).  The stamp is rewritten
# only when the commit changes, so that only version.o is rebuilt then.
# (make deb passes it in: the package is built from a copy without .git.)
ifndef TRP_COMMIT
# (safe.directory: 'make && sudo make install' runs git as root in a tree
# another user owns, which git otherwise refuses as "dubious ownership".)
TRP_COMMIT := $(shell git -c safe.directory='$(CURDIR)' describe --always --dirty --abbrev=12 \
	2>/dev/null || echo unknown)
endif
$(BUILD)/commit: FORCE
	@mkdir -p $(dir $@)
	@echo '$(TRP_COMMIT)' | cmp -s - $@ || echo '$(TRP_COMMIT)' > $@
$(OBJ)/common/version.o: $(BUILD)/commit
$(OBJ)/common/version.o: CFLAGS += -DTRP_COMMIT='"$(TRP_COMMIT)"'
.PHONY: FORCE
FORCE:

$(LIBCOMMON): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

# Each program is linked from the sources in its own folder and libcommon.a.
define program_rule
$(BUILD)/$(1): $(patsubst %.c,$(OBJ)/%.o,$(wildcard $(1)/*.c)) $(LIBCOMMON)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(PKG_LIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/tools/chanpeer: $(OBJ)/tests/tools/chanpeer.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# Preloaded into the relay: no sanitizer of its own (the relay brings them).
$(BUILD)/tests/tools/libfailenable.so: tests/tools/failenable.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out $(SANFLAGS),$(CFLAGS)) $(PKG_CFLAGS) -fPIC -shared \
	    -o $@ $< -ldl

# (Not dpkg -s: once foreign architectures are added, 'dpkg -s
# libssl-dev' is ambiguous and fails.  dpkg-query -W lists every installed
# architecture of a name: the host's, or "all", must be among them.)
deps:
	@native=$$(dpkg --print-architecture 2>/dev/null); \
	missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status} $${Architecture}\n' $$p 2>/dev/null | \
	        grep -Eq "ok installed ($$native|all)$$" || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:" $$missing; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
	    echo "missing Debian packages; run: sudo apt-get install -y" $$missing >&2; exit 1; \
	fi

# (The builds use every core; the tests then run one at a time.)
NPROC := $(shell nproc 2>/dev/null || echo 1)
test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) $(BINS) $(TOOLS) $(UNIT_BINS)
	@$(MAKE) --no-print-directory -j$(NPROC) build-cross-ready
	@$(MAKE) --no-print-directory -j1 test-unit test-integration

# The foreign platforms' compilers, libraries and qemu-user (common/NOTES.md,
# "Cross builds"): apt only for what is missing; then the foreign libevent-dev,
# unpacked into build/cross/ARCH/ (which needs no root, only apt's lists).
CROSS_DEB_PKGS := $(foreach a,$(FOREIGN_ARCHES),crossbuild-essential-$(a) \
	$(CROSS_LIB_PKGS:%=%:$(a))) qemu-user-static
deps-cross:
	@set -e; missing=$$(for p in $(CROSS_DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "missing Debian packages; run as root: make deps-cross (dpkg --add-architecture" \
	            "for each of $(FOREIGN_ARCHES), then apt-get install -y" $$missing")" >&2; exit 1; fi; \
	    for a in $(FOREIGN_ARCHES); do \
	        dpkg --print-foreign-architectures | grep -qx $$a || dpkg --add-architecture $$a; done; \
	    echo "installing:" $$missing; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	@set -e; for at in $(CROSS_PAIRS); do a=$${at%%:*}; t=$${at#*:}; \
	    d=build/cross/$$a; pc=$$d/usr/lib/$$t/pkgconfig; \
	    v=$$(dpkg-query -W -f='$${Version}' libevent-2.1-7:$$a); \
	    if [ -f $$d/libevent-dev.version ] && [ -f $$pc/libevent.pc ] && \
	        [ "$$(cat $$d/libevent-dev.version)" = "$$v" ]; then continue; fi; \
	    echo "unpacking libevent-dev:$$a $$v into $$d"; \
	    rm -rf $$d; mkdir -p $$d/deb; \
	    (cd $$d/deb && { apt-get download -q libevent-dev:$$a=$$v || \
	        { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get download -q libevent-dev:$$a=$$v; } || \
	        { echo "make deps-cross: no libevent-dev:$$a $$v in apt's lists; as root:" \
	            "apt-get update && apt-get install --only-upgrade libevent-2.1-7:$$a, then again" >&2; \
	          exit 1; }; }); \
	    dpkg-deb -x $$d/deb/libevent-dev_*.deb $$d; \
	    rm -rf $$d/deb; \
	    sed -i 's|^prefix=.*|prefix=$${pcfiledir}/../../..|' $$pc/*.pc; \
	    for l in $$d/usr/lib/$$t/*.so; do ln -sfn /usr/lib/$$t/$$(readlink $$l) $$l; done; \
	    rm -f $$d/usr/lib/$$t/*.a; \
	    echo "$$v" > $$d/libevent-dev.version; \
	done
	@# (Run as root, as the README says: what it unpacked belongs to the tree's owner.)
	@if [ "$$(id -u)" = 0 ] && [ -d build/cross ]; then \
	    chown --reference=. build && chown -R -h --reference=. build/cross; fi

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The suite runs once per relay worker count (one event loop; two threads).
RELAY_WORKERS ?= 1 2

# tests/integration/run.sh runs the suite once per RELAY_WORKERS, and the few
# tests marked timer_bound (they wait on the protocol's own timers, with next
# to no CPU) in a pytest of their own beside the first pass, instead of adding
# their minute to the second.  (A -m in PYTEST_ARGS overrides that split.)
TIMER_LOG := $(BUILD)/tests/timer-bound.log
test-integration: $(BINS) $(TOOLS)
	@mkdir -p $(dir $(TIMER_LOG))
	@TRP_BIN_DIR=$(abspath $(BUILD)) TRP_SANITIZE=$(SANITIZE) bash tests/integration/run.sh \
	    $(PYTHON) $(TIMER_LOG) $(RELAY_WORKERS) -- $(PYTEST_ARGS)

demo: deps
	@$(MAKE) --no-print-directory -s all
	@TRP_BIN_DIR=$(abspath $(BUILD)) sh tests/demo.sh

# Same load through direct, OpenSSH, stunnel, HAProxy and the tunnel; BENCH_QUICK=1 for a smoke run.
BENCH_PKGS := openssh-client openssh-server stunnel4 haproxy procps
bench: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BENCH_PKGS)"
	TRP_BIN_DIR=$(abspath $(BUILD)) BENCH_QUICK=$(BENCH_QUICK) bash bench/run.sh

# Fuzzing (tests/fuzz/README.md): libFuzzer targets, built with clang apart
# from everything else, against the common sources compiled again with
# -fsanitize=fuzzer-no-link,address,undefined (not the gcc libcommon.a).
# Each runs FUZZ_SECONDS on a scratch copy of its seed corpus; any crash,
# leak or timeout (FUZZ_TIMEOUT seconds on one input) fails.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_PKGS := clang libclang-rt-dev
FUZZ_BUILD := $(BUILD)/fuzz
FUZZ_OBJ := $(FUZZ_BUILD)/obj
FUZZ_SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
# The warnings of CFLAGS (clang has no -Wformat-truncation); asserts on.
FUZZ_CFLAGS := -O1 -g -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
	-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Icommon -pthread \
	$(FUZZ_SANFLAGS) -fsanitize=fuzzer-no-link
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB := $(FUZZ_BUILD)/libcommon.a

$(FUZZ_OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(COMMON_SRC:%.c=$(FUZZ_OBJ)/%.o)
	rm -f $@
	$(AR) rcs $@ $^

# (Kept: make would delete them as intermediate files.)
.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZ_OBJ)/tests/fuzz/fuzz_%.o)

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_OBJ)/tests/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SANFLAGS) -fsanitize=fuzzer -pthread -o $@ $^ \
	    $(PKG_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) $(FUZZ_PKGS)"
	@$(MAKE) --no-print-directory fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TIMEOUT) \
	    $(FUZZ_TARGETS)

# Installation (the units name /etc/tcp-reverse-proxy/ whatever PREFIX is,
# as sshd's and stunnel's do; SYSCONFDIR moves it, and the units and example
# configs say so).  Units and configs are written with the installed paths.
# A configuration file that exists already is never overwritten; uninstall
# leaves the configuration directory (and the keys in it) alone.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/tcp-reverse-proxy
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
CONFDIR := $(SYSCONFDIR)/tcp-reverse-proxy
UNITS := relay-server/relay-server.service reverse-proxy/reverse-proxy.service \
	entry-point/entry-point@.service
CONFIGS := relay-server/relay-server.conf reverse-proxy/reverse-proxy.conf \
	entry-point/entry-point-main.conf
MANPAGES := relay-server/relay-server.8 reverse-proxy/reverse-proxy.8 \
	entry-point/entry-point.8 gen-cert/gen-cert.1
INSTALL_PATHS = sed -e 's|/usr/bin/|$(BINDIR)/|g' -e 's|/etc/tcp-reverse-proxy|$(CONFDIR)|g'

# (install -d sets the mode of a directory that exists too: only new ones.)
install: $(BINS)
	@set -e; for d in $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(CONFDIR); do \
	    [ -d $$d ] || install -d -m 0755 $$d; done
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 gen-cert/gen-cert.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(filter %.8,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man8/
	@set -e; for u in $(UNITS); do \
	    echo "install $$u -> $(DESTDIR)$(UNITDIR)/$${u##*/}"; \
	    $(INSTALL_PATHS) $$u > $(DESTDIR)$(UNITDIR)/$${u##*/}; \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/}; done
	@set -e; for c in $(CONFIGS); do \
	    f=$${c##*/}; $(INSTALL_PATHS) $$c > $(DESTDIR)$(DOCDIR)/examples/$$f; \
	    chmod 0644 $(DESTDIR)$(DOCDIR)/examples/$$f; \
	    if [ -e $(DESTDIR)$(CONFDIR)/$$f ]; then \
	        echo "kept $(DESTDIR)$(CONFDIR)/$$f (exists; the new example is in $(DESTDIR)$(DOCDIR)/examples/$$f)"; \
	    else echo "install $$c -> $(DESTDIR)$(CONFDIR)/$$f"; \
	        install -m 0644 $(DESTDIR)$(DOCDIR)/examples/$$f $(DESTDIR)$(CONFDIR)/$$f; fi; done
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(PROGRAMS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(MANDIR)/man1/gen-cert.1 \
	    $(patsubst %,$(DESTDIR)$(MANDIR)/man8/%,$(notdir $(filter %.8,$(MANPAGES)))) \
	    $(patsubst %,$(DESTDIR)$(UNITDIR)/%,$(notdir $(UNITS))) \
	    $(patsubst %,$(DESTDIR)$(DOCDIR)/examples/%,$(notdir $(CONFIGS))) \
	    $(DESTDIR)$(DOCDIR)/README.md
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null
	@echo "kept $(DESTDIR)$(CONFDIR) (configuration and keys): remove it by hand if you want it gone"

# The Debian package (debian/), built by dpkg-buildpackage from a copy of the
# tree (the files git knows, or all but build/ outside a git checkout) in
# build/deb/src; the .deb and its .buildinfo/.changes land in build/deb/.
DEB_BUILD_PKGS := debhelper dpkg-dev
deb:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) $(DEB_BUILD_PKGS)"
	rm -rf build/deb
	mkdir -p build/deb/src
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard | \
	        xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
	        tar --null -T - -cf - | tar -C build/deb/src -xf -; \
	else tar --exclude=./build -cf - . | tar -C build/deb/src -xf -; fi
	@# Not this make's own variables: one set on its command line (make test
	@# SANITIZE=1) is exported and in MAKEFLAGS, and the package's make would
	@# build and ship the sanitizer build.
	cd build/deb/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SANITIZE \
	    -u DEBUG -u OS -u ARCH TRP_COMMIT='$(TRP_COMMIT)' \
	    dpkg-buildpackage -us -uc -b -Jauto
	@ls build/deb/*.deb

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_OBJ) -name '*.d' 2>/dev/null)
