# Two commands set up everything on a fresh machine: `make explore` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test explore clean

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

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
