"""The TFDS builder of the offline Digits benchmark, and a verified cache around it.

One ``GeneratorBasedBuilder`` (``ecos_digits``) with one config per domain and size: the
features are ``Tensor``s (no TensorFlow needed to encode) written as ``array_record``, read
back with ``as_data_source`` as NumPy dicts. TFDS writes into an ``incomplete.*`` folder
and renames it when done; on top of that, ``prepare_domain`` records a manifest (file sizes
and SHA-256) after a successful build and checks it before every first use in a process,
so an interrupted build, a truncated or altered record file, or a missing or malformed
manifest is rebuilt instead of read. Processes that prepare the same config at once build it
one at a time, under a lock file next to the config's folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import pathlib
import shutil
import sys
import warnings
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ecos_jax.data import domains as domains_lib
from ecos_jax.data.paths import resolve_data_dir

__all__ = [
    "MANIFEST",
    "DigitsDomainConfig",
    "EcosDigits",
    "cache_problem",
    "domain_config",
    "prepare_domain",
]

MANIFEST = "ecos_manifest.json"
_verified: set[tuple[str, tuple]] = set()


@dataclasses.dataclass(eq=False)
class DigitsDomainConfig(tfds.core.BuilderConfig):
    """One domain at one size and generation seed."""

    domain: str = ""
    num_train: int = 0
    num_test: int = 0
    seed: int = 0


def domain_config(
    domain: str, *, num_train: int | None = None, num_test: int | None = None, seed: int = 0
) -> DigitsDomainConfig:
    """The config of ``domain``: full size and seed 0 by default (the named config).

    Args:
      domain: one of ``ecos_jax.data.domains.ALL_DOMAINS``.
      num_train: train examples (None: the full size).
      num_test: test examples (None: the full size).
      seed: generation seed.

    Returns:
      The registered config for the default full benchmark, else a custom config whose
      name spells out its sizes and seed (so each variant caches in its own folder).

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575), Digits benchmark.
    """
    spec = domains_lib.check_domain(domain)
    full_train, full_test = spec.full_counts
    num_train = full_train if num_train is None else int(num_train)
    num_test = full_test if num_test is None else int(num_test)
    domains_lib.check_count(domain, "train", num_train)
    domains_lib.check_count(domain, "test", num_test)
    if (num_train, num_test, seed) == (full_train, full_test, 0):
        return _FULL_CONFIGS[domain]
    return DigitsDomainConfig(
        name=f"{domain}_train{num_train}_test{num_test}_seed{seed}",
        description=spec.description,
        domain=domain,
        num_train=num_train,
        num_test=num_test,
        seed=int(seed),
    )


_FULL_CONFIGS = {
    name: DigitsDomainConfig(
        name=name,
        description=spec.description,
        domain=name,
        num_train=spec.full_counts[0],
        num_test=spec.full_counts[1],
        seed=0,
    )
    for name, spec in domains_lib.DOMAIN_SPECS.items()
}


class EcosDigits(tfds.core.GeneratorBasedBuilder):
    """Offline multi-domain Digits: real MNIST/optdigits plus generated styles and junk."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Seven offline domains, uint8 28x28x3 images with example ids."
    }
    BUILDER_CONFIGS: ClassVar[list[DigitsDomainConfig]] = list(_FULL_CONFIGS.values())
    # TFDS 4.9.10 derives this through `importlib_resources`, a backport it only installs on
    # Python < 3.9; a plain path sidesteps it (there is no checksums file to find anyway).
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.builder_config.description,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 3), dtype=np.uint8),
                    "label": tfds.features.Scalar(dtype=np.int64),
                    "domain": tfds.features.Text(),
                    "id": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is generated from installed packages
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split: str, num: int):
        config = self.builder_config
        arrays = domains_lib.generate_domain(config.domain, split, num=num, seed=config.seed)
        for image, label, example_id in zip(*arrays, strict=True):
            yield (
                int(example_id),
                {
                    "image": image,
                    "label": int(label),
                    "domain": config.domain,
                    "id": int(example_id),
                },
            )


def _record_files(version_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in version_dir.iterdir() if ".array_record-" in p.name)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(builder: EcosDigits) -> None:
    version_dir = pathlib.Path(builder.data_dir)
    manifest = {
        "version": str(builder.version),
        "config": {
            k: getattr(builder.builder_config, k)
            for k in ("domain", "num_train", "num_test", "seed")
        },
        "num_examples": {s: builder.info.splits[s].num_examples for s in domains_lib.SPLITS},
        "files": {
            p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in _record_files(version_dir)
        },
    }
    tmp = version_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, version_dir / MANIFEST)


def _is_int(value) -> bool:
    """Whether ``value`` is a JSON integer (true/false load as bool, a subclass of int)."""
    return type(value) is int


def _manifest_shape_problem(manifest) -> str | None:
    """What is malformed in a parsed manifest (not a dict, missing or mistyped fields)."""
    if not isinstance(manifest, dict):
        return f"{MANIFEST} holds JSON of type {type(manifest).__name__}, not an object"
    counts = manifest.get("num_examples")
    if not isinstance(counts, dict) or not all(_is_int(n) for n in counts.values()):
        return f"num_examples {counts!r} is not an object of int counts per split"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return f"files {files!r} is not an object of file entries"
    for name, entry in files.items():
        if not (
            isinstance(entry, dict)
            and _is_int(entry.get("size"))
            and isinstance(entry.get("sha256"), str)
        ):
            return f"the entry of {name} is not an object with an int size and a str sha256"
    return None


def cache_problem(builder: EcosDigits) -> str | None:
    """Why the prepared files of ``builder`` cannot be trusted, or None when they check out.

    A missing, unreadable or malformed manifest is a problem like any mismatch.
    """
    version_dir = pathlib.Path(builder.data_dir)
    try:
        manifest = json.loads((version_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"no readable {MANIFEST} (the build did not finish)"
    problem = _manifest_shape_problem(manifest)
    if problem is not None:
        return problem
    config = builder.builder_config
    expected = {"train": config.num_train, "test": config.num_test}
    if manifest["num_examples"] != expected:
        return f"example counts {manifest['num_examples']} != {expected}"
    files = {p.name: p for p in _record_files(version_dir)}
    if set(files) != set(manifest["files"]):
        return f"record files {sorted(files)} != manifest {sorted(manifest['files'])}"
    stamp = tuple((n, p.stat().st_size, p.stat().st_mtime_ns) for n, p in sorted(files.items()))
    if (str(version_dir), stamp) in _verified:
        return None
    for name, path in files.items():
        size = manifest["files"][name]["size"]
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, its manifest says {size}"
        if _sha256(path) != manifest["files"][name]["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest"
    _verified.add((str(version_dir), stamp))
    return None


@contextlib.contextmanager
def _quiet_tfds():
    """Silences TFDS's log lines about custom configs and unbuilt folders."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


def _quiet_builder(config: DigitsDomainConfig, root: pathlib.Path) -> EcosDigits:
    """The builder, constructed without TFDS's log lines."""
    with _quiet_tfds():
        return EcosDigits(config=config, data_dir=str(root), file_format="array_record")


def _build_quietly(builder: EcosDigits, domain: str) -> None:
    """Builds with one status line instead of TFDS's progress bars and log lines."""
    print(
        f"building ecos_digits/{builder.builder_config.name} (once; cached in {builder.data_dir})",
        file=sys.stderr,
        flush=True,
    )
    tfds.disable_progress_bar()
    try:
        with _quiet_tfds(), contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(file_format="array_record")
    finally:
        tfds.enable_progress_bar()


def _is_trusted(builder: EcosDigits) -> bool:
    """Whether ``builder`` is prepared and its files match their manifest, checked unlocked."""
    try:
        with _quiet_tfds():
            return builder.is_prepared() and cache_problem(builder) is None
    except OSError:  # files vanishing under a rebuild by another process: not (yet) trusted
        return False


@contextlib.contextmanager
def _exclusive_lock(path: pathlib.Path):
    """Holds an exclusive inter-process lock (``flock``) on ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never deleted: unlinked while one process holds it, a second could lock a fresh file
    # of the same name and both would build at once.
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
        yield


def prepare_domain(
    domain: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
) -> EcosDigits:
    """A built and verified ``EcosDigits`` builder for one domain (built on first use).

    Args:
      domain: one of ``ecos_jax.data.domains.ALL_DOMAINS``.
      data_dir: TFDS data dir (None: ``$ECOS_DATA_DIR``, else ``~/.cache/ecos_jax/tfds``).
      num_train: train examples (None: full size). Small values make fast test builds.
      num_test: test examples (None: full size).
      seed: generation seed.

    Returns:
      The builder; read it with ``builder.as_data_source()``. A cached build is reused only
      when its manifest matches the record files; otherwise it is deleted and rebuilt. Safe
      to call from several processes at once (e.g. ``pytest -n``): one builds, under an
      exclusive lock on ``<data_dir>/ecos_digits/<config name>.lock``, the others wait and
      reuse its build.

    Raises:
      ecos_jax.data.sources.SourceUnavailableError: when the domain's source is not
        installed (e.g. Fashion-MNIST without its Debian package).

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv 2210.12575), Digits benchmark.
    """
    config = domain_config(domain, num_train=num_train, num_test=num_test, seed=seed)
    root = resolve_data_dir(data_dir)
    builder = _quiet_builder(config, root)
    if _is_trusted(builder):
        return builder  # the common case: no lock needed to read a finished build
    # Another process may be building (or rebuilding) the same config: build under a lock,
    # and look again once holding it, since that process may have finished the build.
    with _exclusive_lock(root / EcosDigits.name / f"{config.name}.lock"):
        builder = _quiet_builder(config, root)
        with _quiet_tfds():
            prepared = builder.is_prepared()
        if prepared:
            problem = cache_problem(builder)
            if problem is None:
                return builder
            warnings.warn(
                f"rebuilding {builder.data_dir}: cached files are not trustworthy ({problem})",
                stacklevel=2,
            )
            shutil.rmtree(builder.data_dir)
            builder = _quiet_builder(config, root)
        _build_quietly(builder, domain)
        _write_manifest(builder)
    problem = cache_problem(builder)
    if problem is not None:
        raise RuntimeError(f"fresh build of {builder.data_dir} failed its check: {problem}")
    return builder
