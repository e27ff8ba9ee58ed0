# The two commands of the README: `make main` and `make test`.
PY := .venv/bin/python
export PYTHONHASHSEED := 0

.PHONY: install install-test main test test-fast test-multidevice test-slow bench lint notebooks

install:
	@bash scripts/install.sh

install-test:
	@bash scripts/install.sh --test

## The main job: install, then a real ECOS experiment with its results table and plots.
main: install
	$(PY) -m experiments.sampling_quality --workdir=workdir/sampling_quality

## The whole default test suite (what CI runs): lint, unit tests, multi-device tests.
test: install-test
	$(PY) -m ruff check ecos_jax experiments tests
	$(PY) -m ruff format --check ecos_jax experiments tests
	$(PY) -m pytest -n 2 --timeout=900 tests
	JAX_NUM_CPU_DEVICES=8 $(PY) -m pytest -p no:cacheprovider --timeout=900 tests/multidevice -o addopts="-ra --strict-markers"

## Slow tests (benchmark-scale KMeans vs scikit-learn, full-size data builds): not in CI.
test-slow: install-test
	$(PY) -m pytest --timeout=3600 -m slow tests

bench: install-test
	$(PY) -m experiments.bench_kmeans
