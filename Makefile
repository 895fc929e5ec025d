# Two commands set up everything on a fresh machine: `make explore` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test explore screenshots figures docs clean bench bench-quick

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,dask]'
	touch $(STAMP)

# On every core (pytest-xdist, at most 4 workers). --dist worksteal hands each worker a contiguous
# half of the tests (a module's tests, and its module fixtures, stay together) and moves tests
# from the end of one worker's share to a worker that ran out.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist worksteal --durations=20

# The web explorer on http://127.0.0.1:8000/ (PORT=8001 make explore for another port).
explore: $(STAMP)
	$(VENV)/bin/gdlab explore --port $${PORT:-8000}

# The README's screenshot of the explorer (needs /usr/bin/chromium: apt-get install -y chromium).
screenshots: $(STAMP)
	$(PY) scripts/explorer_screenshots.py

# The README's pictures (docs/figures/*.png), each made by the gdlab command the script prints.
figures: $(STAMP)
	$(PY) scripts/make_figures.py

# The documentation site: the guides in examples/ run at full size (their figures made afresh), the
# API reference from the docstrings, `mkdocs build --strict` into build/site/, then served on
# http://127.0.0.1:8001/ (DOCS_PORT=8002 make docs for another port). Offline: MathJax comes from a pip
# package. `make test` builds it at the guides' quick size (tests/test_docs.py).
docs: $(STAMP)
	$(PY) scripts/build_docs.py --serve 127.0.0.1:$${DOCS_PORT:-8001}

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
