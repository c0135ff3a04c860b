# p2pci: the two commands a newcomer needs are `make demo` and `make test`.
# On Debian, run as root they install the Debian packages they need (scripts/prereqs.sh says which);
# as another user they print the one `apt-get install` line to run and stop.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
FUZZ_SECONDS ?= 60

.PHONY: venv test test-attacks test-big unit lint demo bench bench-quick sybil-table realworld dist clean docker prereqs-run upgrade-deps fuzz fuzz-cov mutate

venv: $(STAMP)

# The exact versions in requirements.lock (tested by CI), then p2pci itself without dependencies.
$(STAMP): pyproject.toml $(LOCK)
	@bash scripts/prereqs.sh venv
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$$(grep '^pip==' $(LOCK))"
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Refresh requirements.lock on purpose: newest versions allowed by pyproject.toml, in a fresh venv.
upgrade-deps:
	@bash scripts/prereqs.sh venv
	@PY=$(PY) bash scripts/upgrade-deps.sh $(LOCK)

prereqs-run:
	@bash scripts/prereqs.sh run

# Makes sure a Docker engine answers (installs and starts one when root and none runs).
docker: prereqs-run
	@bash scripts/ensure-docker.sh

lint: venv
	$(BIN)/ruff check p2pci tests bench
	$(BIN)/mypy --strict p2pci

# pytest exit 5 (no tests collected) is a failure, not a success.
test: venv docker
	@$(BIN)/python -m pytest -m "not big" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The end-to-end attack scenarios alone (tests/e2e/test_trust.py: hostile peers against real
# daemons; `make test` runs them too).
test-attacks: venv docker
	@$(BIN)/python -m pytest -m attacks $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# Outputs of 50,000 files through a real mesh to REPRODUCED, every file fetched and checked
# (tests/e2e/test_big_outputs.py; minutes: `make test` runs the same with 5,000 files).
test-big: venv docker
	@$(BIN)/python -m pytest -m big -s $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The unit tests alone: no Docker, no network (what the stock-Debian CI step runs).
unit: venv
	@$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# Coverage-guided fuzzing (atheris): every decoder of outside bytes for FUZZ_SECONDS each.
fuzz: venv
	$(BIN)/python -m tests.fuzz run --seconds $(FUZZ_SECONDS)

# Line coverage of the decoders reached by the seed corpora plus what fuzzing found.
fuzz-cov: venv
	$(BIN)/python -m tests.fuzz coverage

# Mutation testing (mutmut) of p2pci/core; MUTATE=<files> picks the modules.
mutate: venv
	$(BIN)/python scripts/mutate.py $(MUTATE)

demo: venv docker
	@$(BIN)/python -m p2pci.demo

bench: venv docker
	$(BIN)/python -m bench

bench-quick: venv docker
	$(BIN)/python -m bench --quick

# The Sybil table of docs/security.md on the real node machine: 36 cells x SYBIL_JOBS jobs (about
# 5 ms of CPU per job, so 30 CPU minutes for 10 000 per cell), one line per 500 jobs appended to
# bench/sybil_table.jsonl; an interrupted run resumes where it stopped. Then prints the table.
SYBIL_JOBS ?= 10000
sybil-table: venv
	nice -n 10 $(BIN)/python -m bench.sybil_machine --table --jobs $(SYBIL_JOBS)
	$(BIN)/python -m bench.sybil_machine --report

# Real upstream projects through `p2pci try` and a 4-worker mesh of real daemons; rewrites the table in
# docs/realworld.md (not in `make test`, which runs its cjson-make row: tests/integration/test_realworld_case.py).
realworld: venv docker
	$(BIN)/python -m bench.realworld

dist: venv
	@bash scripts/make-dist.sh

clean:
	rm -rf $(VENV) .demo dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz mutants .mutmut-cache
