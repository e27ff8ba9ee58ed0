"""A 2-D convolution that stays one convolution per run when many runs are vmapped.

`jax.vmap` over a convolution whose kernel is batched too (one kernel per run, as when
the training runs of a sweep share one compiled step) becomes a grouped convolution,
and XLA's CPU backend expands a grouped convolution into a dense one with a
block-diagonal kernel: R runs cost R² convolutions (measured: 8 vmapped runs of the
digit CNN train 5× slower per run than one). `Conv` therefore chooses how it batches:

- "unrolled": under `vmap`, each run's convolution, and each of its two gradient
  convolutions, is the unbatched one, unrolled over the runs in the one program (a
  `lax.map` loop instead measured 7× slower: XLA's CPU gradient convolutions are 2-3×
  slower inside a while loop); the default on CPU.
- "native": JAX's own batching rule (a grouped convolution), which GPUs and TPUs run
  as one kernel; the default elsewhere.

Unbatched, both are `lax.conv_general_dilated`, and `Conv` has the parameters of
`flax.linen.Conv` (a "kernel" [kh, kw, C, F] with LeCun-normal init, no bias), so a
model built on it initialises identically to one built on `nn.Conv`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["BATCHINGS", "Conv", "conv2d", "default_batching"]

BATCHINGS = ("unrolled", "native")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def default_batching() -> str:
    """ "unrolled" on the CPU backend (grouped convolutions are dense there), else "native"."""
    return "unrolled" if jax.default_backend() == "cpu" else "native"


def _conv(x_NHWC, kernel_HWIO):
    """The plain convolution: stride 1, SAME padding, NHWC images, HWIO kernel."""
    return lax.conv_general_dilated(
        x_NHWC, kernel_HWIO, (1, 1), "SAME", dimension_numbers=_DIMENSIONS
    )


def _conv_input_grad(x_NHWC, kernel_HWIO, g_NHWF):
    """Cotangent of the images."""
    return jax.vjp(lambda x: _conv(x, kernel_HWIO), x_NHWC)[1](g_NHWF)[0]


def _conv_kernel_grad(x_NHWC, kernel_HWIO, g_NHWF):
    """Cotangent of the kernel."""
    return jax.vjp(lambda k: _conv(x_NHWC, k), kernel_HWIO)[1](g_NHWF)[0]


def _unrolled_vmap(f):
    """`f` under `vmap`: one unbatched call per run (unrolled), stacked."""
    f = jax.custom_batching.custom_vmap(f)

    @f.def_vmap
    def rule(axis_size, in_batched, *args):
        runs = [
            f(*(a[r] if batched else a for a, batched in zip(args, in_batched, strict=True)))
            for r in range(axis_size)
        ]
        return jnp.stack(runs), True

    return f


_unrolled = _unrolled_vmap(_conv)
_unrolled_input_grad = _unrolled_vmap(_conv_input_grad)
_unrolled_kernel_grad = _unrolled_vmap(_conv_kernel_grad)


@jax.custom_vjp
def _unrolled_conv(x_NHWC, kernel_HWIO):
    return _unrolled(x_NHWC, kernel_HWIO)


def _unrolled_fwd(x_NHWC, kernel_HWIO):
    return _unrolled(x_NHWC, kernel_HWIO), (x_NHWC, kernel_HWIO)


def _unrolled_bwd(residuals, g_NHWF):
    # Two batched functions, not one: when the images need no cotangent (the first
    # layer), the input gradient's result is unused and compiled away.
    x_NHWC, kernel_HWIO = residuals
    return (
        _unrolled_input_grad(x_NHWC, kernel_HWIO, g_NHWF),
        _unrolled_kernel_grad(x_NHWC, kernel_HWIO, g_NHWF),
    )


_unrolled_conv.defvjp(_unrolled_fwd, _unrolled_bwd)


def conv2d(x_NHWC: jax.Array, kernel_HWIO: jax.Array, *, batching: str = "unrolled") -> jax.Array:
    """Stride-1 SAME convolution of NHWC images with an HWIO kernel.

    Args:
      x_NHWC: images or feature maps [N, H, W, C].
      kernel_HWIO: the kernel [kh, kw, C, F].
      batching: how `vmap` batches it when the kernel is batched too: "unrolled" (one
        unbatched convolution per run) or "native" (a grouped convolution).

    Returns:
      Feature maps [N, H, W, F].

    Examples:
      >>> import jax.numpy as jnp
      >>> x, k = jnp.ones((3, 1, 4, 4, 2)), jnp.ones((3, 3, 3, 2, 5))
      >>> jax.vmap(conv2d)(x, k).shape
      (3, 1, 4, 4, 5)
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
    if batching == "native":
        return _conv(x_NHWC, kernel_HWIO)
    return _unrolled_conv(x_NHWC, kernel_HWIO)


class Conv(nn.Module):
    """`flax.linen.Conv` without bias, stride 1, SAME padding, batched as `batching` says.

    Attributes:
      features: output channels F.
      kernel_size: (kh, kw).
      batching: "unrolled", "native", or None for `default_batching()` (at trace time).
    """

    features: int
    kernel_size: tuple[int, int]
    batching: str | None = None

    @nn.compact
    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, x_NHWC.shape[-1], self.features),
            jnp.float32,
        )
        return conv2d(x_NHWC, kernel, batching=self.batching or default_batching())
