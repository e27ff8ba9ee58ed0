"""Montage and build entry points on a small build."""

import numpy as np
import pytest
from PIL import Image

from ecos_jax.data import ALL_DOMAINS, DIGIT_DOMAINS, SourceUnavailableError, build, domains, show

SMALL = (300, 60)


def test_show_writes_one_montage_per_domain_and_a_combined_one(small_data_dir, tmp_path):
    argv = ["--out", str(tmp_path), "--data_dir", str(small_data_dir), "--per_class", "4"]
    argv += ["--num_train", str(SMALL[0]), "--num_test", str(SMALL[1])]
    assert show.main(argv) == 0
    for domain in ALL_DOMAINS:
        with Image.open(tmp_path / f"montage_{domain}.png") as image:
            assert image.height == 10 * 28 * 2  # a row per class, upscaled twice
    with Image.open(tmp_path / "montage_digits.png") as image:
        assert image.height == len(DIGIT_DOMAINS) * 28 * 2
        pixels = np.asarray(image)
    assert pixels.std() > 20


def test_class_rows_put_each_class_in_its_row():
    images = np.zeros((50, 4, 4, 3), np.uint8)
    labels = np.arange(50) % 10
    images[:] = (labels * 20)[:, None, None, None]
    rows = show.class_rows(images, labels, per_class=3, rng=np.random.default_rng(0))
    assert rows.shape == (10, 3, 4, 4, 3)
    np.testing.assert_array_equal(rows[:, :, 0, 0, 0], np.repeat(np.arange(10)[:, None] * 20, 3, 1))


def test_build_cli_reports_and_fails_clearly_for_a_missing_source(tmp_path, monkeypatch, capsys):
    argv = ["--data_dir", str(tmp_path), "--num_train", "20", "--num_test", "10"]
    assert build.main([*argv, "--domains", "optdigits"]) == 0
    assert "built 1 domains" in capsys.readouterr().out

    def unavailable(*args, **kwargs):
        raise SourceUnavailableError("install the Debian package dataset-fashion-mnist")

    monkeypatch.setattr(domains.sources, "fashion_mnist", unavailable)
    assert build.main([*argv, "--domains", "fashion_mnist"]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="fashion_mnist skipped"):
        seconds = build.build_benchmark(data_dir=str(tmp_path), num_train=20, num_test=10)
    assert "fashion_mnist" not in seconds and "optdigits" in seconds
