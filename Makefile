# leadmgmt: lead management inside PostgreSQL (PGXS build)
#
#   make demo     bootstrap, build, throwaway cluster, demo data, funnel
#   make test     bootstrap, build with -Werror, every test suite
#   make bench    benchmarks (never part of make test)
#   make conformance  the behavioural aggregates against ClickHouse itself
#                 (installs chdb, the embedded ClickHouse, from npm if missing)
#   make fuzz     libFuzzer on src/core and sqlsmith on the extension, long
#                 (FUZZ_SECONDS per target, FUZZ_QUERIES; see scripts/fuzz.sh)
#   make bench-scale  one node vs two postgres_fdw shards (bench/scale.sh)
#   make test-matrix  make test on PostgreSQL 15, 17 and 18, each in a cached
#                 Debian root (scripts/matrix.sh; root, debootstrap)
#   make deb      build the postgresql-NN-leadmgmt packages in each root and
#                 test them installed (scripts/deb.sh)
#   make dist     leadmgmt-$(EXTVERSION).zip for PGXN, from git archive HEAD
#   make torture  concurrent load with kills and restarts, then invariant
#                 checks (test/torture/run.sh; TORTURE_SECONDS=300,
#                 TORTURE_CLIENTS=8, TORTURE_PROFILE=mixed|busy)
#
# Plain `make && make install` is the usual PGXS build for packagers; it does
# not force -Werror on anyone's compiler.

EXTENSION   = leadmgmt
EXTVERSION  = 1.1.0

MODULE_big  = leadmgmt
SRCS        = $(sort $(wildcard src/*.c)) $(sort $(wildcard src/pg/*.c)) $(sort $(wildcard src/core/*.c))
OBJS        = $(SRCS:.c=.o)

# The install script is assembled from one file per capability, in the same
# order as doc/ (see doc/design.md).  Every released version's script is
# kept frozen in sql/released/ (installed so that CREATE EXTENSION ... VERSION
# and the upgrade test can use it), and sql/updates/ holds the upgrade
# scripts from each released version to the next.  Once EXTVERSION has a
# frozen copy, the parts must assemble to exactly that copy (make
# check-release): changing the SQL surface means a new version and an
# upgrade script.
SQL_PARTS   = $(sort $(wildcard sql/parts/*.sql))
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
RELEASED    = $(sort $(wildcard sql/released/$(EXTENSION)--*.sql))
DATA        = $(filter-out %/$(EXTENSION)--$(EXTVERSION).sql,$(RELEASED)) \
              $(sort $(wildcard sql/updates/$(EXTENSION)--*--*.sql))

REGRESS     ?= $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --outputdir=test/out --encoding=UTF8
ISOLATION     ?= $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/out/isolation --encoding=UTF8

ICU_CFLAGS := $(shell pkg-config --cflags icu-uc icu-i18n 2>/dev/null)
ICU_LIBS   := $(shell pkg-config --libs icu-uc icu-i18n 2>/dev/null)
PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/src/core $(ICU_CFLAGS)
PG_CFLAGS   = -Wall -Wmissing-prototypes
SHLIB_LINK  = $(ICU_LIBS)

EXTRA_CLEAN = test/out src/core/testing/build

# PG_CONFIG picks the PostgreSQL version (15 or newer).  Without it: the
# newest Debian-packaged server whose dev package is installed, else
# pg_config from PATH (scripts/pg-config.sh, which the test scripts share).
PG_CONFIG ?= $(or $(shell sh scripts/pg-config.sh 2>/dev/null),pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else ifeq ($(filter deps demo test fuzz test-matrix deb deb-test dist conformance,$(MAKECMDGOALS)),)
$(error pg_config not found: run "make deps" (or scripts/bootstrap.sh) first)
endif

$(DATA_built): $(SQL_PARTS) Makefile
	@mkdir -p $(dir $@)
	cat $(SQL_PARTS) > $@

# The released copy of EXTVERSION, if any, must be what the parts assemble to.
check-release: $(DATA_built)
	@frozen=sql/released/$(EXTENSION)--$(EXTVERSION).sql; \
	if [ -f $$frozen ] && ! cmp -s $$frozen $(DATA_built); then \
		echo "$(EXTVERSION) is released and sql/parts no longer assemble to $$frozen:"; \
		echo "bump EXTVERSION and add sql/updates/$(EXTENSION)--$(EXTVERSION)--<new>.sql"; \
		exit 1; \
	fi; \
	for u in $(wildcard sql/updates/$(EXTENSION)--*--*.sql); do \
		to=$${u##*--}; to=$${to%.sql}; \
		if [ $$to != $(EXTVERSION) ] && [ ! -f sql/released/$(EXTENSION)--$$to.sql ]; then \
			echo "$$u leads to $$to, which is neither released nor EXTVERSION"; exit 1; \
		fi; \
	done; \
	echo "release check: $(EXTVERSION) ok"

.PHONY: deps demo test test-core bench bench-scale fuzz check-release test-matrix deb dist conformance torture
deps:
	scripts/bootstrap.sh

demo:
	scripts/demo.sh

test:
	scripts/test.sh

test-matrix:
	scripts/matrix.sh test

deb:
	scripts/matrix.sh deb

dist:
	scripts/dist.sh

test-core:
	$(MAKE) -C src/core/testing check

bench:
	bench/run.sh

# the behavioural aggregates against the real ClickHouse engine (chdb via npm)
conformance:
	conformance/run.sh

fuzz:
	scripts/bootstrap.sh
	scripts/build.sh
	scripts/fuzz.sh
bench-scale:
	bench/scale.sh

torture:
	scripts/bootstrap.sh
	scripts/build.sh
	test/torture/run.sh
