# leadmgmt: lead management inside PostgreSQL (PGXS build)
#
#   make demo     bootstrap, build, throwaway cluster, demo data, funnel
#   make test     bootstrap, build with -Werror, every test suite
#   make bench    benchmarks (never part of make test)
#   make bench-scale  one node vs two postgres_fdw shards (bench/scale.sh)
#
# Plain `make && make install` is the usual PGXS build for packagers; it does
# not force -Werror on anyone's compiler.

EXTENSION   = leadmgmt
EXTVERSION  = 0.1.0

MODULE_big  = leadmgmt
SRCS        = $(sort $(wildcard src/*.c)) $(sort $(wildcard src/core/*.c))
OBJS        = $(SRCS:.c=.o)

# The install script is assembled from one file per capability, in the same
# order as doc/ (see sql/parts/README).  Released versions are frozen copies.
SQL_PARTS   = $(sort $(wildcard sql/parts/*.sql))
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --outputdir=test/out --encoding=UTF8
ISOLATION      = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/out/isolation --encoding=UTF8

ICU_CFLAGS := $(shell pkg-config --cflags icu-uc icu-i18n 2>/dev/null)
ICU_LIBS   := $(shell pkg-config --libs icu-uc icu-i18n 2>/dev/null)
PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/src/core $(ICU_CFLAGS)
PG_CFLAGS   = -Wall -Wmissing-prototypes
SHLIB_LINK  = $(ICU_LIBS)

EXTRA_CLEAN = test/out src/core/testing/build

# The Debian PostgreSQL 15 we target; override on the command line if needed.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else ifeq ($(filter deps demo test,$(MAKECMDGOALS)),)
$(error pg_config not found: run "make deps" (or scripts/bootstrap.sh) first)
endif

$(DATA_built): $(SQL_PARTS) Makefile
	@mkdir -p $(dir $@)
	cat $(SQL_PARTS) > $@

.PHONY: deps demo test test-core bench bench-scale
deps:
	scripts/bootstrap.sh

demo:
	scripts/demo.sh

test:
	scripts/test.sh

test-core:
	$(MAKE) -C src/core/testing check

bench:
	bench/run.sh

bench-scale:
	bench/scale.sh
