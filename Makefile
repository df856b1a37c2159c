# tcp-reverse-proxy: libcommon.a and four programs, built into build/<os>/<arch>/
# (with the integration tests' tools, from tests/tools/, in its tests/tools/).
#
#   make                      build for this machine
#   make build-linux-amd64    the same, for linux/amd64 explicitly
#   make build                every platform this machine can build
#   make test                 unit tests (cmocka) and integration tests (pytest)
#   make test SANITIZE=1      the same, built with AddressSanitizer and UBSan
#   make DEBUG=1              a build that checks our invariants (assert)
#   make demo                 a whole tunnel on loopback, one request through it
#   make bench                the tunnel against a direct connection, OpenSSH, stunnel and HAProxy
#   make fuzz                 each libFuzzer target (tests/fuzz/) for FUZZ_SECONDS (60)
#   make deps                 install the Debian packages the build and tests need
#   make install              programs, units, man pages, example configs (PREFIX, DESTDIR)
#   make uninstall            remove them again (configuration in /etc is kept)
#   make deb                  a Debian package, in build/deb/
#   make clean

HOST_OS := $(shell uname -s | tr A-Z a-z)
HOST_ARCH := $(patsubst aarch64,arm64,$(patsubst x86_64,amd64,$(shell uname -m)))
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

CC ?= cc
PKGS := openssl libevent libevent_openssl libsodium
# Lazy (=): pkg-config runs only when something is compiled, after 'deps'.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))
CMOCKA_LIBS = $(shell pkg-config --libs cmocka)

CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
	-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-format-truncation -Icommon -pthread $(SANFLAGS) \
	$(ASSERTS)
# (-Wno-format-truncation: log labels and messages are cut on purpose.)
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

.PHONY: all build build-linux-amd64 test test-unit test-integration demo bench deps clean \
	fuzz fuzz-build install uninstall deb

all: $(BINS)

build-linux-amd64:
	@if [ "$(HOST_OS)/$(HOST_ARCH)" != linux/amd64 ]; then \
	    echo "make: this machine is $(HOST_OS)/$(HOST_ARCH); cross-building linux/amd64 is not supported yet" >&2; exit 2; fi
	@$(MAKE) --no-print-directory OS=linux ARCH=amd64 all

# Every platform this machine can build: for now, the machine's own.
build:
	@$(MAKE) --no-print-directory all
	@echo "built $(BINS)"

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

# --version names the commit (common/version.c).  The stamp is rewritten
# only when the commit changes, so that only version.o is rebuilt then.
# (make deb passes it in: the package is built from a copy without .git.)
ifndef TRP_COMMIT
TRP_COMMIT := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
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
	ar rcs $@ $^

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

test: deps
	@$(MAKE) --no-print-directory test-unit test-integration

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The suite runs once per relay worker count (one event loop; two threads).
RELAY_WORKERS ?= 1 2

test-integration: $(BINS) $(TOOLS)
	@set -e; for w in $(RELAY_WORKERS); do \
	    echo "== integration tests, relay-server --workers $$w"; \
	    TRP_BIN_DIR=$(abspath $(BUILD)) TRP_SANITIZE=$(SANITIZE) \
	    TRP_RELAY_WORKERS=$$w $(PYTHON) -m pytest -q --durations=10 tests/integration \
	    $(PYTEST_ARGS); done

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
	ar rcs $@ $^

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

install: $(BINS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(CONFDIR)
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
	cd build/deb/src && TRP_COMMIT='$(TRP_COMMIT)' dpkg-buildpackage -us -uc -b
	@ls build/deb/*.deb

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
-include $(shell find $(FUZZ_OBJ) -name '*.d' 2>/dev/null)
