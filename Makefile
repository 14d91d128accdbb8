# Ward - one GNU Makefile for the whole tree.
#   make                 build build/bin/{wardctl,...}
#   make test            run every test (unit + integration)
#   make SANITIZE=address,undefined test   the same under ASan + UBSan
#   make fuzz            build and briefly run the fuzz targets (clang)
#   make bench           run the benchmarks in bench/ (builds build/bench/audit_store_bench,
#                        build/bench/fixed_rate, build/bench/trail_io and the bench-only
#                        build/bench-noaudit/bin/ward-proxy first)
#   make demo            wardd + a shop mesh on loopback and a narrated tour (examples/demo/);
#                        the mesh runs until Ctrl-C or `make demo-stop`
#   make install         the binaries to $(DESTDIR)$(PREFIX)/bin, the manual pages (docs/man)
#                        to $(DESTDIR)$(PREFIX)/share/man/man{1,5}; PREFIX=/usr/local by default
#   make uninstall       removes what install installed (same PREFIX and DESTDIR)
#   V=1                  show commands

CC       ?= cc
PKGS     := openssl libuv lua5.4 libcjson libpcre2-8 yaml-0.1
TEST_PKGS := cmocka

# Debian packages the build and the tests need (make deps installs missing ones).
DEB_BUILD := build-essential pkg-config libssl-dev libuv1-dev liblua5.4-dev libcjson-dev \
             libpcre2-dev libyaml-dev libcmocka-dev
DEB_TEST  := curl openssl python3 python3-cryptography clang libclang-rt-14-dev wrk rsyslog rsyslog-gnutls \
             redis-server redis-tools groff-base man-db
# Peers the benchmarks compare against (make bench installs them).
DEB_BENCH := nginx libnginx-mod-http-lua haproxy

ifneq ($(SANITIZE),)
BUILD    ?= build/sanitize
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT      ?= -O1 -g
else
BUILD    ?= build
SANFLAGS :=
OPT      ?= -O2 -g
endif

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
CFLAGS   += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SANFLAGS) $(BENCH_DEFS) -I. -MMD -MP \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
LDFLAGS  += $(SANFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_DIRS := common lua policy authz identity audit proxy
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(sort $(wildcard $(d)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libward.a

CMDS     := $(notdir $(wildcard cmd/*))
BINS     := $(CMDS:%=$(BUILD)/bin/%)

UNIT_SRCS := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
UNIT_HELPERS := $(sort $(wildcard tests/unit/helpers/*.c))

.PHONY: all deps test unit integration fuzz bench demo demo-stop install uninstall clean format
all: $(BINS)

# Per-binary sources: cmd/<name>/*.c
define CMD_RULE
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(sort $(wildcard cmd/$(1)/*.c))) $(LIB)
	@mkdir -p $$(dir $$@)
	@echo "  LD      $$@"
	$(Q)$(CC) $(LDFLAGS) -o $$@ $$^ $(LDLIBS)
endef
$(foreach c,$(CMDS),$(eval $(call CMD_RULE,$(c))))

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(UNIT_HELPERS:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS) $(shell pkg-config --cflags $(TEST_PKGS)) $(LDFLAGS) -o $@ $< \
	    $(UNIT_HELPERS:%.c=$(BUILD)/obj/%.o) $(LIB) $(LDLIBS) $(shell pkg-config --libs $(TEST_PKGS))

# Benchmark programs: bench/<name>.c linked like the unit tests.
BENCH_BINS := $(BUILD)/bench/audit_store_bench $(BUILD)/bench/fixed_rate $(BUILD)/bench/trail_io
$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  BENCH   $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# A bench-only ward-proxy whose request path leaves out the audit ring calls
# (-DWARD_BENCH_NO_AUDIT, cmd/ward-proxy/wp.h), in its own BUILD folder, for
# bench/audit_store_bench.sh's audit on/off comparison. Never installed.
NOAUDIT := build/bench-noaudit
ifneq ($(BUILD),$(NOAUDIT))
.PHONY: $(NOAUDIT)/bin/ward-proxy
$(NOAUDIT)/bin/ward-proxy:
	$(Q)$(MAKE) --no-print-directory BUILD=$(NOAUDIT) BENCH_DEFS=-DWARD_BENCH_NO_AUDIT $@
endif

deps:
	@missing=""; for p in $(DEB_BUILD) $(DEB_TEST) $(EXTRA_DEBS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

unit: $(UNIT_BINS)
integration: $(BINS)

test: deps
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)BUILD=$(BUILD) ./tests/run.sh $(UNIT_BINS)

fuzz: deps
	$(Q)$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk FUZZ_SECONDS=$(or $(FUZZ_SECONDS),20)

bench: all $(BENCH_BINS) $(NOAUDIT)/bin/ward-proxy
	$(Q)$(MAKE) --no-print-directory deps EXTRA_DEBS="$(DEB_BENCH)"
	$(Q)./bench/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BUILD=$(BUILD) ./examples/demo/run.sh

demo-stop:
	$(Q)BUILD=$(BUILD) ./examples/demo/run.sh --stop

# Installation (GNU conventions: PREFIX, DESTDIR for staging, BINDIR, MANDIR).
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
MAN1     := $(sort $(wildcard docs/man/*.1))
MAN5     := $(sort $(wildcard docs/man/*.5))
INSTALL  ?= install

install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	$(INSTALL) -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(CMDS)) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN1))) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5)))

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
