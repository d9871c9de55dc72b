# luasip — build, test and run. `make run` and `make test` do all set-up on
# a fresh Debian machine (they install missing packages with apt-get).

VERSION   := 0.1.0-dev
RUNTIMES  := lua5.4 luajit
BUILD     ?= build
CFLAGS    ?= -O2 -g
WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror=implicit-function-declaration
ARGS      ?=

CORE_SRC  = csrc/lcore.c csrc/lclass.c csrc/lloop.c csrc/lagent.c csrc/lmsg.c csrc/lua_ua.c csrc/lsiptags.c \
             csrc/lstun.c csrc/ldigest.c csrc/lfiles.c \
             csrc/loop/loop.c csrc/sip/agent.c csrc/sip/sofialog.c csrc/sip/ua.c csrc/sip/stun.c \
             csrc/sip/credentials.c \
             $(SERVER_SRC) $(STORE_SRC) $(MEDIA_SRC) $(SIMPLE_SRC)
# The server roles over nta (request dispatch, stateful proxy).
SERVER_SRC := csrc/lrequest.c csrc/sip/proxy.c
# Stores: SQLite with a writer thread (location, later presence, voicemail).
STORE_SRC  := csrc/store/sqlite.c csrc/lstore.c
# The media engine (RTP/RTCP, codecs, jitter buffer, tones, recording).
MEDIA_SRC  := csrc/lmedia.c csrc/media/rtp.c csrc/media/sdpmap.c csrc/media/codec.c \
              csrc/media/jitter.c csrc/media/tone.c csrc/media/recorder.c csrc/media/clip.c csrc/media/tts.c csrc/media/conf.c csrc/media/sdes.c \
              csrc/media/session.c
# SIMPLE bodies: PIDF and isComposing over expat.
SIMPLE_SRC := csrc/lsimple.c csrc/simple/pidf.c
RL_SRC    := csrc/lreadline.c
HEADERS   := $(wildcard csrc/*.h csrc/*/*.h)
LUA_FILES := $(wildcard lua/luasip/*.lua)

# Evaluated when a recipe runs, i.e. after `deps` has installed pkg-config
# and the -dev packages.
SOFIA_CFLAGS = $(shell pkg-config --cflags sofia-sip-ua libcrypto sqlite3 spandsp sndfile speexdsp espeak-ng opus libsrtp2 expat)
SOFIA_LIBS   = $(shell pkg-config --libs sofia-sip-ua libcrypto sqlite3 spandsp sndfile speexdsp espeak-ng opus libsrtp2 expat) -lpthread -lm
EDIT_CFLAGS  = $(shell pkg-config --cflags libedit)
EDIT_LIBS    = $(shell pkg-config --libs libedit)
LUA_CFLAGS_lua5.4 = $(shell pkg-config --cflags lua5.4)
LUA_CFLAGS_luajit = $(shell pkg-config --cflags luajit)

MODULE_CFLAGS = $(CFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -fPIC -DLUASIP_VERSION='"$(VERSION)"'

.PHONY: all deps build test check run asan-test fuzz fuzz-build bench soak clean rock rock-install docs

all: build

deps:
	@sh tools/deps.sh

build: $(foreach rt,$(RUNTIMES),$(BUILD)/$(rt)/luasip/core.so $(BUILD)/$(rt)/luasip/readline.so $(BUILD)/$(rt)/bin/luasip)

# One module build per runtime: $(1) runtime, $(2) its Lua CFLAGS.
define runtime_rules
$(BUILD)/$(1)/luasip/core.so: $(CORE_SRC) $(HEADERS) Makefile
	@mkdir -p $$(@D)
	$$(CC) $$(MODULE_CFLAGS) $(2) $$(SOFIA_CFLAGS) -Icsrc -shared -o $$@ $(CORE_SRC) $$(SOFIA_LIBS) $$(LDFLAGS)

$(BUILD)/$(1)/luasip/readline.so: $(RL_SRC) csrc/compat.h Makefile
	@mkdir -p $$(@D)
	$$(CC) $$(MODULE_CFLAGS) $(2) $$(EDIT_CFLAGS) -Icsrc -shared -o $$@ $(RL_SRC) $$(EDIT_LIBS) $$(LDFLAGS)

# The `luasip` command run from the source tree.
$(BUILD)/$(1)/bin/luasip: bin/luasip Makefile
	@mkdir -p $$(@D)
	@printf '#!/bin/sh\nexec env LUA_PATH="%s/lua/?.lua;%s/lua/?/init.lua;;" LUA_PATH_5_4="%s/lua/?.lua;%s/lua/?/init.lua;;" LUA_CPATH="%s/$(BUILD)/$(1)/?.so;;" LUA_CPATH_5_4="%s/$(BUILD)/$(1)/?.so;;" $(1) "%s/bin/luasip" "$$$$@"\n' \
	  "$$(CURDIR)" "$$(CURDIR)" "$$(CURDIR)" "$$(CURDIR)" "$$(CURDIR)" "$$(CURDIR)" "$$(CURDIR)" > $$@
	@chmod +x $$@
endef
$(eval $(call runtime_rules,lua5.4,$$(LUA_CFLAGS_lua5.4)))
$(eval $(call runtime_rules,luajit,$$(LUA_CFLAGS_luajit)))

test: deps
	@$(MAKE) --no-print-directory build
	@sh tools/check.sh $(BUILD) $(RUNTIMES)

# Specs only, on what is already built.
check: build
	@sh tools/check.sh $(BUILD) $(RUNTIMES)

# The API reference, from the doc comments (LDoc, config.ld). The specs
# fail when docs/ is not what this makes.
docs: deps
	@sh tools/docs.sh docs

run: deps
	@$(MAKE) --no-print-directory build
	$(BUILD)/lua5.4/bin/luasip examples/pbx.lua $(ARGS)

# AddressSanitizer + UndefinedBehaviorSanitizer: the same specs against an
# instrumented core; any report fails the run.
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
asan-test: deps
	@$(MAKE) --no-print-directory build BUILD=build-asan CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined"
	@LUASIP_ASAN=1 sh tools/check.sh build-asan $(RUNTIMES)
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=15

# libFuzzer targets (spec/fuzz/*_fuzz.c), one per parser the project
# writes; each runs FUZZ_SECONDS from the seeds in spec/fuzz/corpus/<name>.
FUZZERS      := sofialog message proxy credentials rtp sdpmap sdes pidf
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GNU_SOURCE -Icsrc
fuzz-build: $(foreach f,$(FUZZERS),$(BUILD)/fuzz/$(f))
$(BUILD)/fuzz/sofialog: spec/fuzz/sofialog_fuzz.c csrc/sip/sofialog.c csrc/sip/sofialog.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(SOFIA_CFLAGS) -o $@ spec/fuzz/sofialog_fuzz.c csrc/sip/sofialog.c $(SOFIA_LIBS)

$(BUILD)/fuzz/message: spec/fuzz/message_fuzz.c csrc/lmsg.c csrc/lclass.c csrc/lcore.h csrc/compat.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(LUA_CFLAGS_lua5.4) $(SOFIA_CFLAGS) -o $@ spec/fuzz/message_fuzz.c csrc/lmsg.c csrc/lclass.c $(SOFIA_LIBS) $(shell pkg-config --libs lua5.4)

$(BUILD)/fuzz/proxy: spec/fuzz/proxy_fuzz.c csrc/sip/proxy.c csrc/sip/proxy.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(SOFIA_CFLAGS) -o $@ spec/fuzz/proxy_fuzz.c csrc/sip/proxy.c $(SOFIA_LIBS)

$(BUILD)/fuzz/credentials: spec/fuzz/credentials_fuzz.c csrc/sip/credentials.c csrc/sip/credentials.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -o $@ spec/fuzz/credentials_fuzz.c csrc/sip/credentials.c

$(BUILD)/fuzz/rtp: spec/fuzz/rtp_fuzz.c csrc/media/rtp.c csrc/media/rtp.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -o $@ spec/fuzz/rtp_fuzz.c csrc/media/rtp.c

$(BUILD)/fuzz/sdpmap: spec/fuzz/sdpmap_fuzz.c csrc/media/sdpmap.c csrc/media/sdpmap.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(SOFIA_CFLAGS) -o $@ spec/fuzz/sdpmap_fuzz.c csrc/media/sdpmap.c $(SOFIA_LIBS)

$(BUILD)/fuzz/sdes: spec/fuzz/sdes_fuzz.c csrc/media/sdes.c csrc/media/sdes.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(SOFIA_CFLAGS) -o $@ spec/fuzz/sdes_fuzz.c csrc/media/sdes.c $(SOFIA_LIBS)

$(BUILD)/fuzz/pidf: spec/fuzz/pidf_fuzz.c csrc/simple/pidf.c csrc/simple/pidf.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ spec/fuzz/pidf_fuzz.c csrc/simple/pidf.c -lexpat

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@for f in $(FUZZERS); do \
	  mkdir -p $(BUILD)/fuzz/corpus-$$f; \
	  echo "== fuzzing $$f for $(FUZZ_SECONDS) s"; \
	  $(BUILD)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(BUILD)/fuzz/corpus-$$f spec/fuzz/corpus/$$f > $(BUILD)/fuzz/$$f.log 2>&1; rc=$$?; \
	  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)" $(BUILD)/fuzz/$$f.log; \
	  if [ $$rc != 0 ]; then tail -n 40 $(BUILD)/fuzz/$$f.log; \
	    echo "fuzz: $$f failed; add the crash input under spec/regress/"; exit 1; fi; \
	done

bench: deps
	@$(MAKE) --no-print-directory build
	@bash bench/run.sh $(BENCH_ARGS)

# Long-running load with flat memory/handle checks (SOAK_SECONDS, SOAK_RATE).
soak: deps
	@$(MAKE) --no-print-directory build
	@bash bench/soak.sh

clean:
	rm -rf build build-asan

# ---- luarocks (rockspec/luasip-scm-1.rockspec, build type make) ----------
# luarocks passes CFLAGS, LIBFLAG, LUA_INCDIR, LUA and the INST_* dirs.
LIBFLAG    ?= -shared
LUA_INCDIR ?= /usr/include/lua5.4
rock:
	@mkdir -p build/rock/luasip
	$(CC) $(MODULE_CFLAGS) -I$(LUA_INCDIR) $(SOFIA_CFLAGS) -Icsrc $(LIBFLAG) -o build/rock/luasip/core.so $(CORE_SRC) $(SOFIA_LIBS)
	$(CC) $(MODULE_CFLAGS) -I$(LUA_INCDIR) $(EDIT_CFLAGS) -Icsrc $(LIBFLAG) -o build/rock/luasip/readline.so $(RL_SRC) $(EDIT_LIBS)

rock-install:
	install -d $(INST_LIBDIR)/luasip $(INST_LUADIR)/luasip
	install -m 644 build/rock/luasip/core.so build/rock/luasip/readline.so $(INST_LIBDIR)/luasip/
	install -m 644 $(LUA_FILES) $(INST_LUADIR)/luasip/
