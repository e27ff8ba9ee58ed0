"""ecos_jax: ECOS (Efficient Collaborative Open-source Sampling) in JAX.

References:
  Hong, Lyu, Zhou, Spranger. "Outsourcing Training without Uploading Data via
  Efficient Collaborative Open-Source Sampling." NeurIPS 2022. arXiv:2210.12575.
"""

__version__ = "0.1.0"
