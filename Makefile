# Two entry points for a fresh machine with only python3: `make demo` and `make test`.
# Both create .venv when it is missing and install with the pins in constraints.txt.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-zoo test-realworld bench bench-latency install browser docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,models,export,docs]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/octify convert examples/model.py --alpha 0.5

# Chromium for the HTML report's browser test, where the system's packages have it (else skipped).
browser:
	@scripts/install-browser.sh

# The documentation site (docs/, mkdocs.yml) into build/site. --strict: a broken link or anchor, a page
# missing from the nav or a docstring the API pages cannot render fails it. (The variable silences
# mkdocs-material's banner about its successor.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

# The docs build and the whole suite (what CI runs), with the slowest tests listed at the end.
test: $(STAMP) browser docs
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=25

# The edit loop: everything but the model zoo and the whole-network checks (markers in pyproject.toml).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not zoo and not slow and not realworld" --durations=10

test-zoo: $(STAMP)
	$(BIN)/python -m pytest -q -m zoo

test-realworld: $(STAMP)
	$(BIN)/python -m pytest -q -m realworld --durations=10

bench: $(STAMP)
	$(BIN)/python benchmarks/layer.py

bench-latency: $(STAMP)
	$(BIN)/python benchmarks/latency.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
