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
#   make deps                 install the Debian packages the build and tests need
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
	libcmocka-dev python3 python3-pytest curl openssl

.PHONY: all build build-linux-amd64 test test-unit test-integration demo bench deps clean

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
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

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

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
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
	    TRP_RELAY_WORKERS=$$w $(PYTHON) -m pytest -q tests/integration \
	    $(PYTEST_ARGS); done

demo: deps
	@$(MAKE) --no-print-directory -s all
	@TRP_BIN_DIR=$(abspath $(BUILD)) sh tests/demo.sh

# Same load through direct, OpenSSH, stunnel, HAProxy and the tunnel; BENCH_QUICK=1 for a smoke run.
BENCH_PKGS := openssh-client openssh-server stunnel4 haproxy procps
bench: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BENCH_PKGS)"
	TRP_BIN_DIR=$(abspath $(BUILD)) BENCH_QUICK=$(BENCH_QUICK) bash bench/run.sh

clean:
	rm -rf build

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)
