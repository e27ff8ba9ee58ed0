"""The five digit domains really differ: a linear classifier on pixels tells them apart."""

import itertools

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecos_jax.data import DIGIT_DOMAINS, prepare_domain

SMALL = (300, 60)


def _domain_images(data_dir, read_all):
    out = {}
    for domain in DIGIT_DOMAINS:
        built = prepare_domain(domain, data_dir=data_dir, num_train=SMALL[0], num_test=SMALL[1])
        out[domain] = read_all(built, "train")[0]
    return out


def _pixel_features(images: np.ndarray) -> np.ndarray:
    """Per image: 16-bin histograms of each channel, channel means and stds, colourfulness,
    mean absolute horizontal and vertical gradients (all computed from the pixels)."""
    x = images.astype(np.float64) / 255
    hists = [
        np.stack([np.histogram(im[..., c], bins=16, range=(0, 1))[0] for im in x]) / 784
        for c in range(3)
    ]
    grey = x.mean(-1)
    colourfulness = np.abs(x - x.mean(-1, keepdims=True)).mean((1, 2))
    gradients = [np.abs(np.diff(grey, axis=a)).mean((1, 2))[:, None] for a in (1, 2)]
    return np.concatenate([*hists, x.mean((1, 2)), x.std((1, 2)), colourfulness, *gradients], 1)


def test_logistic_regression_separates_digit_domains(small_data_dir, read_all):
    images = _domain_images(small_data_dir, read_all)
    x = _pixel_features(np.concatenate(list(images.values())))
    y = np.repeat(np.arange(len(images)), [len(v) for v in images.values()])
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: len(y) * 2 // 3], order[len(y) * 2 // 3 :]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = model.fit(x[train], y[train]).score(x[test], y[test])
    print(f"domain classifier accuracy on held-out images: {accuracy:.3f} (chance 0.2)")
    assert accuracy > 0.8


def test_pixel_statistics_differ_between_domains(small_data_dir, read_all):
    images = _domain_images(small_data_dir, read_all)
    stats = {}
    for domain, x in images.items():
        x = x.astype(np.float64)
        colourfulness = np.abs(x - x.mean(axis=-1, keepdims=True)).mean()
        stats[domain] = np.array([x.mean(), x.std(), colourfulness])
        print(domain, np.round(stats[domain], 1))
    # Grey domains have no colour; the photo and font domains do.
    for grey in ("mnist", "optdigits"):
        assert stats[grey][2] == 0
    for colour in ("fontdigits", "mnist_blend", "streetdigits"):
        assert stats[colour][2] > 5
    for a, b in itertools.combinations(DIGIT_DOMAINS, 2):
        assert np.abs(stats[a] - stats[b]).max() > 3, (a, b)
