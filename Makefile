# Two commands set up everything on a fresh machine: `make explore` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test explore clean bench bench-quick

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

explore: $(STAMP)
	@echo "The web explorer arrives with its own issue; until then, gdlab fit shows what runs:"
	@$(VENV)/bin/gdlab fit --help

# Every benchmark at full size beside its peers (torch==2.13.0 exactly: a local CPU wheel here),
# then docs/benchmarks.md regenerated from benchmarks/results/*.json.
BENCHES := $(sort $(wildcard benchmarks/bench_*.py))

bench: $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0
	@for b in $(BENCHES); do echo "== $$b"; $(PY) $$b || exit 1; done
	$(PY) benchmarks/report.py

# Toy sizes, seconds each: checks the scripts run (tests/test_benchmarks.py does the same in `make test`).
bench-quick: $(STAMP)
	@for b in $(BENCHES); do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
