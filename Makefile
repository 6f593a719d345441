# citypulse - build, test and run. `make help` lists the targets.
#
# make                 build/citypulsed and build/citypulse-sim
# make SANITIZE=address,undefined   the same with ASan+UBSan (objects in build/san)
# make deps            install every Debian package the build, the tests and `make run` need
# make test            deps, sanitized build, every test; ends with "N passed, N failed"
# make run             deps, build, local mosquitto + daemon + simulated city on loopback
# make bench           benchmarks (tests/bench), figures as ratios to a baseline run alongside
# make fuzz            libFuzzer harnesses, longer runs
# make install         binary, unit, config example, man page (PREFIX, DESTDIR)

PREFIX   ?= /usr/local
DESTDIR  ?=
WERROR   ?= 1
SANITIZE ?=
VERSION  := 0.1.0

CC       ?= cc
PKGS     := libuv libmosquitto jansson sqlite3 libmicrohttpd zlib librrd libcurl
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef \
            -Wpointer-arith -Wcast-qual -Wwrite-strings -Wvla -Wimplicit-fallthrough -fno-common
ifeq ($(WERROR),1)
WARN     += -Werror
endif
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -D_GNU_SOURCE $(WARN) -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE -MMD -MP \
            -Iinclude -Idaemon -Idrivers -DCP_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += -pie -Wl,-z,relro,-z,now
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread

ifneq ($(SANITIZE),)
BUILD    ?= build/san
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all -U_FORTIFY_SOURCE -O1
LDFLAGS  += -fsanitize=$(SANITIZE)
else
BUILD    ?= build
endif

DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
DRIVER_SRC := $(wildcard drivers/*.c)
LIB_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(DAEMON_SRC) $(DRIVER_SRC)) $(BUILD)/daemon/dashboard_blob.o
MAIN_OBJ   := $(BUILD)/daemon/main.o
SIM_SRC    := $(wildcard tests/sim/*.c)
SIM_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(SIM_SRC))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
GOLDEN_BIN := $(BUILD)/tests/golden

# Debian 12 packages: build, tests (broker, clients, sqlite3 CLI, curl, python3 for output checks), run.
# Debian 12 packages. To build and `make run`: the libraries, the broker, the CLI clients.
DEB_RUN_PKGS := make gcc libc6-dev pkg-config libuv1-dev libmosquitto-dev libjansson-dev libsqlite3-dev \
                libmicrohttpd-dev zlib1g-dev librrd-dev libcurl4-openssl-dev rrdtool mosquitto \
                mosquitto-clients sqlite3 curl python3 procps ca-certificates
# For `make test` on top: cmocka, libFuzzer (clang), TLS certificates, rrdcached, Chromium for the
# dashboard, promtool, systemd-analyze, man.
DEB_TEST_PKGS := libcmocka-dev openssl clang rrdcached systemd man-db chromium prometheus
DEB_PKGS := $(DEB_RUN_PKGS) $(DEB_TEST_PKGS)
# For `make bench` on top: the HTTP baseline (nginx serving the same bytes) and the load generator.
DEB_BENCH_PKGS := nginx-light wrk

.PHONY: all deps deps-run test check unit e2e run bench fuzz fuzzers install clean help tests

all: $(BUILD)/citypulsed $(BUILD)/citypulse-sim

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The dashboard page, embedded with .incbin.
$(BUILD)/daemon/dashboard_blob.o: daemon/dashboard_blob.S daemon/dashboard.html
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

# The simulator is a stand-alone program that defines its own feature macros.
$(BUILD)/tests/sim/%.o: tests/sim/%.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -D_GNU_SOURCE,$(CFLAGS)) -c -o $@ $<

$(BUILD)/libcitypulse.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/citypulsed: $(MAIN_OBJ) $(BUILD)/libcitypulse.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/citypulse-sim: $(SIM_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -lmosquitto -lm

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libcitypulse.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libcitypulse.a $(LDLIBS) -lcmocka

$(GOLDEN_BIN): tests/drivers/golden.c $(BUILD)/libcitypulse.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libcitypulse.a $(LDLIBS) -lcmocka

tests: $(UNIT_BIN) $(GOLDEN_BIN) $(BUILD)/citypulsed $(BUILD)/citypulse-sim fuzzers

# libFuzzer harnesses (clang): every driver, the config parser, the ODSQL planner.
FUZZ_CC     := clang
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -Iinclude -Idaemon -Idrivers $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_BIN    := $(BUILD)/fuzz/fuzz_decode $(BUILD)/fuzz/fuzz_config $(BUILD)/fuzz/fuzz_odsql \
               $(BUILD)/fuzz/fuzz_http_query
fuzzers: $(FUZZ_BIN)
$(BUILD)/fuzz/fuzz_decode: tests/fuzz/fuzz_decode.c $(DRIVER_SRC) drivers/drivers.def $(wildcard include/citypulse/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_decode.c $(DRIVER_SRC) -ljansson -lm
$(BUILD)/fuzz/fuzz_config: tests/fuzz/fuzz_config.c daemon/config.c daemon/route.c daemon/log.c daemon/netaddr.c $(DRIVER_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ -ljansson -lmosquitto -lm
$(BUILD)/fuzz/fuzz_odsql: tests/fuzz/fuzz_odsql.c daemon/odsql.c daemon/dataset.c daemon/buf.c drivers/drv_util.c drivers/tz.c \
                          daemon/odsql.h daemon/dataset.h daemon/buf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) -lsqlite3 -ljansson -lm
# The query string: http.c (percent-decoding) links libmicrohttpd and libuv, only the decoder is called.
$(BUILD)/fuzz/fuzz_http_query: tests/fuzz/fuzz_http_query.c daemon/http.c daemon/log.c daemon/netaddr.c daemon/odsql.c \
		daemon/dataset.c daemon/buf.c drivers/drv_util.c drivers/tz.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $^ -lsqlite3 -ljansson -lmicrohttpd -luv -lm

# Benchmarks: optimised build (no sanitizers); figures go to the README.
build/bench/bench_drivers: tests/bench/bench_drivers.c $(DRIVER_SRC) drivers/drivers.def
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -g -Iinclude -Idrivers -o $@ tests/bench/bench_drivers.c $(DRIVER_SRC) -ljansson -lm
build/bench/nullsub: tests/bench/nullsub.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o $@ $< -lmosquitto
bench: deps
	$(call install_missing,$(DEB_BENCH_PKGS))
	$(MAKE) --no-print-directory all build/bench/bench_drivers build/bench/nullsub
	build/bench/bench_drivers tests/drivers 1
	bash tests/bench/run.sh
	bash tests/bench/rss.sh
	bash tests/bench/coldstart.sh
	bash tests/bench/http.sh
	bash tests/bench/export.sh

FUZZ_SECS ?= 300
fuzz: deps
	$(MAKE) --no-print-directory SANITIZE=address,undefined fuzzers
	BUILD=build/san bash tests/fuzz/run.sh fuzz_decode $(FUZZ_SECS)
	BUILD=build/san bash tests/fuzz/run.sh fuzz_config $(FUZZ_SECS)
	BUILD=build/san bash tests/fuzz/run.sh fuzz_odsql $(FUZZ_SECS)
	BUILD=build/san bash tests/fuzz/run.sh fuzz_http_query $(FUZZ_SECS)

# Installs only what is missing (idempotent); `apt-get update` first when something is.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "deps: all Debian packages present"; fi
endef

deps:
	$(call install_missing,$(DEB_PKGS))

deps-run:
	$(call install_missing,$(DEB_RUN_PKGS))

# Every test, under ASan+UBSan.
test: deps
	$(MAKE) -j$$(nproc) --no-print-directory SANITIZE=address,undefined tests
	@BUILD=build/san bash tests/run.sh

check: tests
	@BUILD=$(BUILD) bash tests/run.sh unit

run: deps-run
	$(MAKE) -j$$(nproc) --no-print-directory all
	@bash tests/run_demo.sh

install: all
	install -D -m 0755 build/citypulsed $(DESTDIR)$(PREFIX)/sbin/citypulsed
	install -D -m 0644 config/citypulse.conf $(DESTDIR)/etc/citypulse/citypulse.conf.example
	install -D -m 0644 systemd/citypulsed.service $(DESTDIR)/lib/systemd/system/citypulsed.service
	install -D -m 0644 systemd/citypulse.sysusers $(DESTDIR)/usr/lib/sysusers.d/citypulse.conf
	install -D -m 0644 systemd/citypulse.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/citypulse.conf
	install -D -m 0644 daemon/citypulsed.8 $(DESTDIR)$(PREFIX)/share/man/man8/citypulsed.8

clean:
	rm -rf build

help:
	@sed -n '3,12p' Makefile

-include $(shell find build -name '*.d' 2>/dev/null)
