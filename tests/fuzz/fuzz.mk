# fuzz.mk - build the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang into build/fuzz/ and run each for FUZZ_SECONDS
#   make fuzz [FUZZ_SECONDS=20]            (the top Makefile calls: make -f tests/fuzz/fuzz.mk)
#   make -f tests/fuzz/fuzz.mk build       build only
#   make -f tests/fuzz/fuzz.mk TARGETS=fuzz_common   one target
#   make -f tests/fuzz/fuzz.mk FUZZ_ARGS=-jobs=2 ...   extra libFuzzer flags
# A crash, leak, sanitizer report or timeout makes the run exit non-zero; the
# reproducer is left as build/fuzz/artifacts/<target>/crash-* (and the like).

FUZZ_SECONDS ?= 20
FUZZ_CC      ?= clang
FUZZ_ARGS    ?=
FUZZ_BUILD   := build/fuzz
PKGS         := openssl libuv lua5.4 libcjson libpcre2-8 yaml-0.1

SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
FCFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) $(SAN) -I. -MMD -MP \
           $(shell pkg-config --cflags $(PKGS))
FLDLIBS := $(shell pkg-config --libs $(PKGS)) -lpthread -lm

LIB_SRCS := $(foreach d,common lua policy authz identity audit proxy,$(sort $(wildcard $(d)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
TARGETS  := $(patsubst tests/fuzz/%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
BINS     := $(TARGETS:%=$(FUZZ_BUILD)/%)
# Seeds of a target: SEEDS_<target> plus tests/fuzz/corpus/<target>/*; a
# libFuzzer dictionary tests/fuzz/<target>.dict is used when present.
SEEDS_fuzz_policy := $(wildcard examples/policies/*.yaml examples/policies/*.yml \
                                examples/policies/*.json)

.PHONY: run build
# Every target runs even if another one crashed; then one verdict for all.
run: $(TARGETS:%=run-%)
	@failed=""; for t in $(TARGETS); do \
	    [ "$$(cat $(FUZZ_BUILD)/$$t.status 2>/dev/null)" = 0 ] || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "FUZZ FAILED:$$failed"; exit 1; fi; \
	echo "  FUZZ    all $(words $(TARGETS)) targets ran $(FUZZ_SECONDS)s without a crash"

build: $(BINS)

# Library code gets coverage instrumentation (fuzzer-no-link); only the target links libFuzzer's main.
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	@$(FUZZ_CC) $(FCFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

# prelude.c embeds prelude.lua with .incbin
$(FUZZ_BUILD)/obj/policy/prelude.o: $(wildcard policy/*.lua)

$(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/tests/fuzz/%.o $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(FUZZ_CC) $(SAN) -fsanitize=fuzzer -o $@ $^ $(FLDLIBS)

# The working corpus lives in build/fuzz/corpus/<target> and grows across runs;
# the seeds are read-only inputs. -max_total_time bounds the run. The exit
# status goes to build/fuzz/<target>.status (`run` turns it into the verdict).
run-%: $(FUZZ_BUILD)/%
	@rm -f $(FUZZ_BUILD)/$*.status
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/artifacts/$* $(FUZZ_BUILD)/seeds/$*
	@rm -f $(FUZZ_BUILD)/seeds/$*/*
	@for s in $(SEEDS_$*) $(wildcard tests/fuzz/corpus/$*/*); do \
	    cp "$$s" "$(FUZZ_BUILD)/seeds/$*/$$(echo "$$s" | tr / _)"; done
	@echo "  FUZZ    $* for $(FUZZ_SECONDS)s ($$(ls $(FUZZ_BUILD)/seeds/$* | wc -l) seeds)"
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(FUZZ_BUILD)/$* -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -max_len=8192 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$*/ \
	    $(if $(wildcard tests/fuzz/$*.dict),-dict=tests/fuzz/$*.dict) $(FUZZ_ARGS) \
	    $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/seeds/$* \
	    > $(FUZZ_BUILD)/$*.log 2>&1; \
	rc=$$?; echo $$rc > $(FUZZ_BUILD)/$*.status; \
	if [ $$rc -ne 0 ]; then \
	    grep -E '^(fuzz_[a-z]+:|SUMMARY:|==[0-9]+==ERROR)|runtime error' $(FUZZ_BUILD)/$*.log | head -n 5; \
	    tail -n 25 $(FUZZ_BUILD)/$*.log; \
	    echo "  FUZZ    $*: CRASH (exit $$rc); full log: $(FUZZ_BUILD)/$*.log"; \
	    ls $(FUZZ_BUILD)/artifacts/$*/ 2>/dev/null | sed 's|^|  artifact: $(FUZZ_BUILD)/artifacts/$*/|'; \
	else \
	    echo "  FUZZ    $*: no crash in $(FUZZ_SECONDS)s"; \
	fi

.SECONDARY:
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
