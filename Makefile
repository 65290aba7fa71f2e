# zoorank: `make demo` shows the whole path once; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export HF_HUB_OFFLINE ?= 1
WORKER := $(BIN)/celery -A config worker -Q gpu,cpu -P solo -c 1 --without-gossip --without-mingle

.PHONY: install migrate static demo run worker test test-sqlite test-services bench drills drills-short fuzz clean \
	serve load scaling

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Static files with content hashes in their names and .gz/.br copies, which WhiteNoise serves
# compressed and cached for a year; collected again only when a source changed.
STATIC_ROOT := $(or $(ZOORANK_VAR_DIR),var)/static
STATIC_SOURCES := $(shell find config/static transferability/static zoo/static -type f 2>/dev/null)
static: $(STATIC_ROOT)/staticfiles.json

$(STATIC_ROOT)/staticfiles.json: $(VENV)/.installed $(STATIC_SOURCES)
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	touch $@

# Admin user, the demo zoo (build_demo_zoo), the bundled MNIST 5-9 and digits datasets;
# then one evaluation through a real worker; then the dashboard.
demo: migrate static
	$(BIN)/python manage.py demo
	@trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(WORKER) --loglevel=WARNING & worker=$$!; \
	$(BIN)/python manage.py demo --evaluate && \
	echo "Dashboard: http://127.0.0.1:$(PORT)/  (log in as admin, password above)" && \
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT) --noreload

# The web server plus one worker, on whatever the environment configures.
run: migrate static
	@trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(WORKER) --loglevel=INFO & worker=$$!; \
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT) --noreload

worker: install
	$(WORKER) --loglevel=INFO

# Production serving on this machine: gunicorn (deploy/gunicorn.conf.py; ZOORANK_WEB_WORKERS
# processes of ZOORANK_WEB_THREADS threads) with WhiteNoise serving the collected static files,
# plus one worker on both queues at a lower CPU priority (nice 10), so that pages are answered
# first. deploy/ runs the same parts as services, one worker per GPU.
# Without REDIS_URL, a Redis that answers on SERVE_REDIS_URL is used (queue and submission
# limits, one count for every gunicorn process); else it says where the limits are counted.
SERVE_WORKER := $(BIN)/celery -A config worker -Q gpu,cpu -P solo -c 1 --without-gossip --without-mingle
SERVE_REDIS_URL ?= redis://127.0.0.1:6379/0
serve: migrate static
	@if [ -z "$$REDIS_URL" ] && $(BIN)/python -c "import redis, sys; redis.Redis.from_url('$(SERVE_REDIS_URL)', socket_connect_timeout=1).ping()" 2>/dev/null; then \
		export REDIS_URL=$(SERVE_REDIS_URL); \
		echo "Redis answers at $(SERVE_REDIS_URL): the queue and the submission limits are kept there"; \
	elif [ -z "$$REDIS_URL" ]; then \
		echo "Redis does not answer: the queue is on disk, and the submission limits are counted in files under the var folder, shared by this host's processes (several hosts need REDIS_URL)"; \
	fi; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	nice -n 10 $(SERVE_WORKER) --loglevel=INFO & worker=$$!; \
	$(BIN)/gunicorn -c deploy/gunicorn.conf.py --bind 127.0.0.1:$(PORT) config.wsgi

# The suite on the embedded default (SQLite, on-disk broker), then on PostgreSQL and
# Redis when they answer (TEST_DATABASE_URL / TEST_REDIS_URL to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
test: install
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-services

test-sqlite: install
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest -q

test-services: install
	@if $(BIN)/python -c "import psycopg2, redis, sys; psycopg2.connect('$(TEST_DATABASE_URL)').close(); redis.Redis.from_url('$(TEST_REDIS_URL)').ping()" 2>/dev/null; then \
		DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest -q -m "not browser"; \
	else echo "PostgreSQL or Redis not reachable: suite ran on SQLite only"; fi

# Fault drills (drills/run.py): a worker SIGKILLed mid-extraction, a task over its time
# limit; on the embedded default, then on PostgreSQL + Redis when they answer.
drills: install
	$(BIN)/python drills/run.py

drills-short: install
	$(BIN)/python drills/run.py --short

# Every API operation with generated input, long form (make test runs 25 per operation).
fuzz: install
	ZOORANK_FUZZ_EXAMPLES=$${ZOORANK_FUZZ_EXAMPLES:-500} env -u DATABASE_URL -u REDIS_URL \
		$(BIN)/python -m pytest -q -p no:logging tests/test_api_fuzz.py

bench: install
	$(BIN)/python bench/metrics.py --quick

# 50 users for 60 s against gunicorn and one worker on a throwaway PostgreSQL database and
# Redis db (bench/load.py); then evaluation wall time with 1 and 2 workers (bench/scaling.py).
load: install
	$(BIN)/python bench/load.py

scaling: install
	$(BIN)/python bench/scaling.py

clean:
	rm -rf var
