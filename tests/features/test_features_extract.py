"""Batched extraction (one compile, padded last batch) and the on-disk feature cache."""

import json
import stat

import numpy as np
import pytest

from ecos_jax.features import extract
from ecos_jax.features.extract import (
    FeatureCacheKey,
    FeatureExtractor,
    PretrainedExtractor,
    cache_path,
    cached_features,
    extract_features,
)

KEY = FeatureCacheKey(dataset="digits", version="1.0.0", split="train", domain="mnist")


class CountingExtractor:
    """A deterministic fake φ that counts how often it really computes."""

    def __init__(self, name="fake", dim=4):
        self.name, self.dim, self.calls = name, dim, 0

    def __call__(self, images):
        self.calls += 1
        flat = images.reshape(images.shape[0], -1).astype(np.float32)
        return flat[:, : self.dim] / 255.0 + self.calls  # a recompute would differ


def _images(n=6, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_fake_satisfies_protocol():
    assert isinstance(CountingExtractor(), FeatureExtractor)
    assert not isinstance(object(), FeatureExtractor)


def test_cache_hit_returns_identical_array_without_recomputing(tmp_path):
    phi, images = CountingExtractor(), _images()
    first = cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    second = cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 1
    assert second.dtype == np.float32
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "changed",
    [
        KEY._replace(dataset="svhn"),
        KEY._replace(version="1.0.1"),
        KEY._replace(split="test"),
        KEY._replace(domain="usps"),
    ],
)
def test_changed_key_recomputes(tmp_path, changed):
    phi, images = CountingExtractor(), _images()
    cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    cached_features(phi, images, cache_key=changed, cache_dir=tmp_path)
    assert phi.calls == 2
    assert cache_path(tmp_path, KEY, "fake") != cache_path(tmp_path, changed, "fake")


def test_changed_extractor_name_recomputes(tmp_path):
    images = _images()
    a, b = CountingExtractor("net-32px-float32"), CountingExtractor("net-64px-float32")
    cached_features(a, images, cache_key=KEY, cache_dir=tmp_path)
    cached_features(b, images, cache_key=KEY, cache_dir=tmp_path)
    assert (a.calls, b.calls) == (1, 1)
    assert len(list(tmp_path.rglob("*.npz"))) == 2


def test_stale_entry_with_other_images_recomputes(tmp_path):
    phi = CountingExtractor()
    cached_features(phi, _images(seed=0), cache_key=KEY, cache_dir=tmp_path)
    cached_features(phi, _images(seed=1), cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 2
    cached_features(phi, _images(seed=1), cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 2


def test_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    phi, images = CountingExtractor(), _images()

    def savez_then_crash(file, **arrays):
        file.write(b"PK\x03\x04 partial bytes")
        raise KeyboardInterrupt("simulated crash mid-write")

    monkeypatch.setattr(extract.np, "savez", savez_then_crash)
    with pytest.raises(KeyboardInterrupt):
        cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 2
    assert len(list(tmp_path.rglob("*.npz"))) == 1


def test_corrupt_entry_is_recomputed(tmp_path):
    phi, images = CountingExtractor(), _images()
    cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    cache_path(tmp_path, KEY, phi.name).write_bytes(b"garbage")
    cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 2


def _rewrite_entry(path, features, meta):
    """Replaces the entry at `path` with these (tampered) contents, as `np.savez` writes them."""
    with open(path, "wb") as f:
        np.savez(f, features=features, meta=np.array(json.dumps(meta)))


def _flip_feature_bytes(path):
    """Flips bytes inside the stored feature data, so zip's CRC-32 check fails on read."""
    data = bytearray(path.read_bytes())
    with np.load(path) as entry:
        start = data.index(entry["features"].tobytes())
    data[start : start + 4] = bytes(b ^ 0xFF for b in data[start : start + 4])
    path.write_bytes(bytes(data))


def _good_meta(path):
    with np.load(path) as entry:
        return json.loads(str(entry["meta"]))


def _good_features(path):
    with np.load(path) as entry:
        return entry["features"]


def _with_a_nan(features):
    features = features.copy()
    features[1, 2] = np.nan
    return features


CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "crc_error": _flip_feature_bytes,
    "zero_length": lambda p: p.write_bytes(b""),
    "meta_list": lambda p: _rewrite_entry(p, _good_features(p), list(_good_meta(p).values())),
    "meta_number": lambda p: _rewrite_entry(p, _good_features(p), 3),
    "meta_string": lambda p: _rewrite_entry(p, _good_features(p), "images"),
    "meta_missing_fields": lambda p: _rewrite_entry(
        p, _good_features(p), {"images": _good_meta(p)["images"]}
    ),
    "nan_features": lambda p: _rewrite_entry(p, _with_a_nan(_good_features(p)), _good_meta(p)),
    "float64_features": lambda p: _rewrite_entry(
        p, _good_features(p).astype(np.float64), _good_meta(p)
    ),
    "wrong_shape": lambda p: _rewrite_entry(p, _good_features(p)[:, :3], _good_meta(p)),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_damaged_or_tampered_entry_is_recomputed_and_replaced(tmp_path, corruption):
    phi, images = CountingExtractor(), _images()
    reference = CountingExtractor()
    reference(images)
    fresh = reference(images)  # what the second, recomputing call returns
    cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    path = cache_path(tmp_path, KEY, phi.name)
    CORRUPTIONS[corruption](path)
    features = cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 2
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, fresh)
    # The replacement is a valid entry (a hit from now on) and nothing half-written is left.
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    np.testing.assert_array_equal(_good_features(path), fresh)
    again = cached_features(phi, images, cache_key=KEY, cache_dir=tmp_path)
    assert phi.calls == 2
    np.testing.assert_array_equal(again, fresh)


def test_entries_are_private_and_old_wide_folders_are_tightened(tmp_path):
    outside = tmp_path / "shared"
    root = outside / "features"
    folder = cache_path(root, KEY, "fake").parent
    folder.mkdir(parents=True)
    for directory in (outside, root, folder):
        directory.chmod(0o755)  # as an earlier version (or a umask of 022) left them
    cached_features(CountingExtractor(), _images(), cache_key=KEY, cache_dir=root)
    other = KEY._replace(dataset="svhn")  # a dataset folder the cache creates itself
    cached_features(CountingExtractor(), _images(), cache_key=other, cache_dir=root)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert mode(cache_path(root, KEY, "fake")) == 0o600
    assert mode(cache_path(root, other, "fake")) == 0o600
    assert mode(root) == mode(folder) == mode(cache_path(root, other, "fake").parent) == 0o700
    assert mode(outside) == 0o755  # not the cache's folder: left as it was


def test_no_cache_key_always_computes(tmp_path):
    phi = CountingExtractor()
    for _ in range(2):
        cached_features(phi, _images(), cache_key=None, cache_dir=tmp_path)
    assert phi.calls == 2
    assert list(tmp_path.iterdir()) == []


def test_wrong_extractor_output_shape_is_reported():
    class Bad(CountingExtractor):
        def __call__(self, images):
            return np.zeros((images.shape[0], self.dim + 1))

    with pytest.raises(ValueError, match=r"returned shape \(6, 5\), expected \(6, 4\)"):
        cached_features(Bad(), _images(), cache_key=None)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), TypeError, "must be uint8"),
        (np.zeros((2, 8, 8), np.uint8), ValueError, r"\[N, H, W, 3\]"),
        (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "empty"),
    ],
)
def test_bad_images_are_refused(images, error, match):
    with pytest.raises(error, match=match):
        cached_features(CountingExtractor(), images, cache_key=None)


def test_cache_key_must_be_a_feature_cache_key(tmp_path):
    with pytest.raises(TypeError, match="FeatureCacheKey"):
        cached_features(CountingExtractor(), _images(), cache_key=("a", "b"), cache_dir=tmp_path)


@pytest.fixture(scope="module")
def lite0_32px():
    return PretrainedExtractor.create("efficientnet_lite0", resolution=32, batch_size=4)


def test_pretrained_padded_batches_compile_once_and_match(lite0_32px):
    images = _images(n=10, size=28)  # batches of 4, 4, 2 (+2 padding rows)
    features = lite0_32px(images)
    assert features.shape == (10, 1280)
    assert features.dtype == np.float32
    assert lite0_32px.forward._cache_size() == 1
    one_by_one = np.concatenate([lite0_32px(images[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(features[:3], one_by_one, rtol=1e-4, atol=1e-4)
    assert lite0_32px.name == "efficientnet_lite0-32px-float32"


def test_extract_features_uses_the_cache(lite0_32px, tmp_path, monkeypatch):
    images = _images(n=5, size=28)
    first = extract_features(lite0_32px, images, cache_key=KEY, cache_dir=tmp_path)
    calls = []
    monkeypatch.setattr(
        PretrainedExtractor, "__call__", lambda self, x: calls.append(1) or np.zeros(1)
    )
    second = extract_features(lite0_32px, images, cache_key=KEY, cache_dir=tmp_path)
    assert calls == []
    np.testing.assert_array_equal(first, second)
    assert cache_path(tmp_path, KEY, "efficientnet_lite0-32px-float32").is_file()


def test_extract_features_by_name_and_bad_resolution():
    features = extract_features("mobilenet_v2", _images(n=2, size=28), resolution=32)
    assert features.shape == (2, 1280)
    assert np.all(np.isfinite(features))
    with pytest.raises(ValueError, match="resolution must be"):
        extract_features("mobilenet_v2", _images(n=2), resolution=3)
