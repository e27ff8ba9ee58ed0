# The two commands of the README: `make main` and `make test`.
PY := .venv/bin/python
export PYTHONHASHSEED := 0

.PHONY: install install-test main test test-fast test-multidevice test-slow bench lint notebooks evidence

install:
	@bash scripts/install.sh

install-test:
	@bash scripts/install.sh --test

## The main job: install, then task (a) selective labeling with ECOS and every baseline.
main: install
	$(PY) -m experiments.selective_labeling --workdir=workdir/selective_labeling

## The whole default test suite (what CI runs): lint, unit tests, docstring examples, multi-device tests.
test: install-test
	$(PY) -m ruff check ecos_jax experiments tests
	$(PY) -m ruff format --check ecos_jax experiments tests
	$(PY) -m pytest -n 2 --timeout=900 tests
	$(PY) -m pytest -p no:cacheprovider --timeout=900 --doctest-modules ecos_jax -o addopts="-ra --strict-markers"
	JAX_NUM_CPU_DEVICES=8 $(PY) -m pytest -p no:cacheprovider --timeout=900 tests/multidevice -o addopts="-ra --strict-markers"

## Slow tests (benchmark-scale KMeans vs scikit-learn, full-size data builds): not in CI.
test-slow: install-test
	$(PY) -m pytest --timeout=3600 -m slow tests

## The evidence sweep behind results/ (about 1.5 h on 2 CPU cores; resumable).
evidence: install
	PYTHON=$(PY) bash scripts/run_evidence.sh workdir/evidence

bench: install-test
	$(PY) -m experiments.bench_kmeans
