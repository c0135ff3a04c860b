# p2pci: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench bench-quick realworld dist clean docker

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Makes sure a Docker engine answers (installs and starts one when root and none runs).
docker:
	@bash scripts/ensure-docker.sh

lint: venv
	$(BIN)/ruff check p2pci tests bench
	$(BIN)/mypy --strict p2pci

# pytest exit 5 (no tests collected) is a failure, not a success.
test: venv docker
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

demo: venv docker
	@$(BIN)/python -m p2pci.demo

bench: venv docker
	$(BIN)/python -m bench

bench-quick: venv docker
	$(BIN)/python -m bench --quick

# Real upstream projects through `p2pci try`; rewrites the table in docs/realworld.md (not in `make test`).
realworld: venv docker
	$(BIN)/python -m bench.realworld

dist: venv
	@bash scripts/make-dist.sh

clean:
	rm -rf $(VENV) .demo dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
