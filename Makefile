# cellbox build. `make` builds everything into build/; `make SAN=1` builds an
# ASan+UBSan variant into build-san/; `make test` runs the whole suite.
CC       ?= gcc
SAN      ?= 0
BUILD    ?= $(if $(filter 1,$(SAN)),build-san,build)

WARN     := -std=gnu17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wswitch-enum -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -Isrc/lib -Isrc/daemon
ifeq ($(SAN),1)
CFLAGS   += -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
else
CFLAGS   += -O2 -g -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=2
LDFLAGS  += -pie -Wl,-z,relro,-z,now
endif
CFLAGS   += $(WARN) -MMD -MP

DAEMON_LIBS := -luv -lsqlite3 -ljansson -lhttp_parser -lwslay -lseccomp -larchive -lcrypto -lpthread
CLI_LIBS    := -ljansson -lhttp_parser -lwslay

LIB_SRCS    := $(wildcard src/lib/*.c)
DAEMON_SRCS := $(filter-out src/daemon/main.c,$(wildcard src/daemon/*.c src/daemon/api/*.c))
CLI_SRCS    := $(wildcard src/cli/*.c)
INIT_SRCS   := $(wildcard src/init/*.c) src/lib/proto.c src/lib/util.c
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
TOOL_SRCS   := $(wildcard tests/tools/*.c)
BENCH_SRCS  := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_OBJS    := $(call obj,$(LIB_SRCS))
DAEMON_OBJS := $(call obj,$(DAEMON_SRCS))
CLI_OBJS    := $(call obj,$(CLI_SRCS))
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TOOL_BINS   := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
BENCH_BINS  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

# cellbox-init is static and depends on libc only. musl keeps it small; fall
# back to a static glibc build when musl-gcc is not installed.
INIT_CC     := $(shell command -v musl-gcc >/dev/null 2>&1 && echo musl-gcc || echo $(CC))
INIT_CFLAGS := -std=gnu17 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
               -O2 -g -D_GNU_SOURCE -Isrc/lib -fstack-protector-strong

all: $(BUILD)/cellboxd $(BUILD)/cellbox $(BUILD)/cellbox-init $(UNIT_BINS) $(TOOL_BINS) $(BENCH_BINS) \
     $(BUILD)/bench/noop

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libcellbox.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libcellboxd.a: $(DAEMON_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/cellboxd: $(call obj,src/daemon/main.c) $(BUILD)/libcellboxd.a $(BUILD)/libcellbox.a
	$(CC) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS)

$(BUILD)/cellbox: $(CLI_OBJS) $(BUILD)/libcellbox.a
	$(CC) $(LDFLAGS) -o $@ $^ $(CLI_LIBS)

$(BUILD)/cellbox-init: $(INIT_SRCS) $(wildcard src/init/*.h) src/lib/proto.h src/lib/util.h
	@mkdir -p $(dir $@)
	$(INIT_CC) $(INIT_CFLAGS) -static -o $@ $(INIT_SRCS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/runner.h $(BUILD)/libcellboxd.a $(BUILD)/libcellbox.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libcellboxd.a $(BUILD)/libcellbox.a $(DAEMON_LIBS)

$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/libcellbox.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libcellbox.a $(DAEMON_LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libcellbox.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libcellbox.a $(DAEMON_LIBS)

# bench_runtime's floor probe: a program without libc (bench/probes/noop.c).
$(BUILD)/bench/noop: bench/probes/noop.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -static -nostdlib -o $@ $<

test: all
	scripts/test.sh

clean:
	rm -rf build build-san

.PHONY: all test clean
.SECONDARY:
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

PREFIX ?= /usr/local
install: $(BUILD)/cellboxd $(BUILD)/cellbox $(BUILD)/cellbox-init
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/bash_completion.d
	install -m 0755 $(BUILD)/cellboxd $(BUILD)/cellbox $(BUILD)/cellbox-init $(DESTDIR)$(PREFIX)/bin/
	[ ! -f contrib/completion/cellbox.bash ] || install -m 0644 contrib/completion/cellbox.bash $(DESTDIR)/etc/bash_completion.d/cellbox
.PHONY: install
