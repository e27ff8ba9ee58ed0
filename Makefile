# The two commands of the README: `make main` and `make test`.
PY := .venv/bin/python
export PYTHONHASHSEED := 0
LINT_PATHS := ecos_jax experiments tests
# pytest's own addopts (pyproject) deselect slow tests and skip tests/multidevice.
PYTEST_PLAIN := -p no:cacheprovider --timeout=900 -o addopts="-ra --strict-markers"

.PHONY: install install-test main test lint test-unit test-doctest test-multidevice \
	test-multiprocess test-slow \
	bench evidence notebooks

## Installs the library with the `experiments` extra (data, audit, entry points) into .venv.
install:
	@bash scripts/install.sh

## Installs the library with the `test` extra (experiments + notebooks + pytest, ruff, ...).
install-test:
	@bash scripts/install.sh --test

## The main job: install, then task (a) selective labeling with ECOS and every baseline.
main: install
	$(PY) -m experiments.selective_labeling --workdir=workdir/selective_labeling

## The whole default test suite (what CI runs): lint, unit tests, docstring examples, multi-device tests.
test: lint test-unit test-doctest test-multidevice test-multiprocess

## ruff check and ruff format --check (configured in pyproject.toml).
lint: install-test
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

## The unit tests (slow tests deselected; tests/multidevice excluded), on 2 workers.
test-unit: install-test
	$(PY) -m pytest -n 2 --timeout=900 tests

## The docstring examples of the library.
test-doctest: install-test
	$(PY) -m pytest $(PYTEST_PLAIN) --doctest-modules ecos_jax

## The mesh tests, in their own process with 8 fake CPU devices.
test-multidevice: install-test
	JAX_NUM_CPU_DEVICES=8 $(PY) -m pytest $(PYTEST_PLAIN) tests/multidevice \
		--ignore=tests/multidevice/test_multiprocess.py

## Two local JAX processes (gloo) against one: their own pytest process, 10 min per test.
test-multiprocess: install-test
	JAX_NUM_CPU_DEVICES=8 $(PY) -m pytest $(PYTEST_PLAIN) --timeout=600 \
		tests/multidevice/test_multiprocess.py

## Slow tests (benchmark-scale KMeans vs scikit-learn, full-size data builds): not in CI.
test-slow: install-test
	$(PY) -m pytest --timeout=3600 -m slow tests

## The evidence sweep behind results/ (2 to 2.5 h on 2 CPU cores, results/README.md; resumable).
evidence: install
	PYTHON=$(PY) bash scripts/run_evidence.sh workdir/evidence

## KMeans vs faiss vs scikit-learn (docs/benchmarks.md).
bench: install-test
	$(PY) -m experiments.bench_kmeans

## Executes the notebooks in place on the committed results/ (results/selective_labeling/sweep,
## results/sampling_quality), without timings, as they are committed.
notebooks: install-test
	$(PY) scripts/execute_notebooks.py
