"""Packaging: the core library installs and imports without the data, plotting and
experiment stacks, every requirement is pinned, and the Makefile names real targets."""

import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# The library's stable top-level modules (`pip install -e .` must be enough for them).
CORE_MODULES = [
    "ecos_jax",
    "ecos_jax.kmeans",
    "ecos_jax.coverage",
    "ecos_jax.privacy",
    "ecos_jax.noise",
    "ecos_jax.sampling",
    "ecos_jax.protocol",
    "ecos_jax.selection",
    "ecos_jax.sharding",
    "ecos_jax.canonical",
    "ecos_jax.distances",
    "ecos_jax.metrics",
    "ecos_jax.keys",
]
# Import names of the optional stacks, and their distribution names.
OPTIONAL_IMPORTS = ["tensorflow_datasets", "matplotlib", "skimage", "tensorboardX", "sklearn"]
OPTIONAL_DISTRIBUTIONS = [
    "tensorflow-datasets",
    "matplotlib",
    "scikit-image",
    "tensorboardx",
    "scikit-learn",
    "jax-privacy",
    "ml-collections",
    "torch",
]


def _requirements(specs: list[str]) -> list[Requirement]:
    return [Requirement(s) for s in specs]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_core_modules_do_not_import_optional_dependencies():
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + f"print(json.dumps(sorted(m for m in {OPTIONAL_IMPORTS!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the core library loaded {loaded}; import them lazily"


def test_core_dependencies_exclude_the_optional_stacks():
    core = {canonicalize_name(r.name) for r in _requirements(PYPROJECT["project"]["dependencies"])}
    assert not core & set(OPTIONAL_DISTRIBUTIONS), sorted(core & set(OPTIONAL_DISTRIBUTIONS))
    for needed in ("jax", "flax", "optax", "numpy", "dp-accounting", "opendp"):
        assert needed in core, needed


def test_jax_is_plain_and_accelerators_are_extras():
    deps = _requirements(PYPROJECT["project"]["dependencies"])
    (jax_req,) = [r for r in deps if r.name == "jax"]
    assert jax_req.extras == set(), "depend on plain `jax` (it pulls the CPU jaxlib)"
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("cuda12", "tpu"):
        (req,) = _requirements(extras[extra])
        assert req.name == "jax" and req.extras == {extra}
        assert req.specifier == jax_req.specifier, (extra, str(req.specifier))


def test_extras_include_what_their_commands_need():
    extras = PYPROJECT["project"]["optional-dependencies"]

    def names(extra):
        out = set()
        for r in _requirements(extras[extra]):
            if canonicalize_name(r.name) == canonicalize_name(PYPROJECT["project"]["name"]):
                out |= {e for sub in r.extras for e in names(sub)} | {f"[{e}]" for e in r.extras}
            else:
                out.add(canonicalize_name(r.name))
        return out

    assert {"jax-privacy"} <= names("audit")
    assert {"tensorflow-datasets", "array-record", "scikit-image", "pillow"} <= names("data")
    assert {"[data]", "[audit]", "ml-collections", "tensorboardx", "matplotlib"} <= names(
        "experiments"
    )
    assert {"[experiments]", "pytest", "hypothesis", "ruff"} <= names("test")


def test_every_requirement_is_pinned_by_the_constraints():
    pins = _constraints()
    specs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        specs += extra
    for req in _requirements(specs):
        name = canonicalize_name(req.name)
        if name == canonicalize_name(PYPROJECT["project"]["name"]):
            continue
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (str(req), pins[name])
    for plugin in ("jaxlib", "jax-cuda12-plugin", "libtpu"):  # what the jax extras pull
        assert plugin in pins, plugin


def test_experiments_is_not_an_installed_package():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in ("experiments", "experiments.configs"):
        assert not any(fnmatch.fnmatch(package, p) for p in include), (package, include)
    assert any(fnmatch.fnmatch("ecos_jax.data", p) for p in include)
    # pytest imports `experiments` from the repository root instead.
    assert "." in PYPROJECT["tool"]["pytest"]["ini_options"]["pythonpath"]
    import experiments

    assert Path(experiments.__file__).resolve().parent == REPO / "experiments"


def test_makefile_phony_targets_exist():
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    (phony,) = re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE)
    defined = set(re.findall(r"^([A-Za-z0-9_-]+):(?!=)", text, flags=re.MULTILINE))
    missing = [t for t in phony.split() if t not in defined]
    assert not missing, f".PHONY names targets that do not exist: {missing}"
    for target in ("main", "test", "test-slow", "evidence", "bench", "lint", "notebooks"):
        assert target in phony.split(), target


@pytest.mark.parametrize("extra", ["experiments", "test"])
def test_install_script_installs_the_extras_of_its_targets(extra):
    script = (REPO / "scripts" / "install.sh").read_text()
    flag = {"experiments": '"")', "test": "--test)"}[extra]
    assert re.search(re.escape(flag) + r'\s+extras="\[' + extra + r'\]"', script), extra
