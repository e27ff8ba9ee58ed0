"""What the sharded steps communicate, read from their compiled HLO.

`hlo_collectives` walks the text of a compiled XLA program (`jit(...).lower(...).compile()
.as_text()`) from its entry computation through every computation it calls and lists the
collectives (all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute, and
their asynchronous `-start` forms), each with the bytes one device contributes and where
it runs:

  once           outside any loop: runs once per call
  per_iteration  in the body of a `while` loop (a Lloyd iteration), outside a branch
  conditional    inside a branch of a `conditional` (e.g. reseeding an empty cluster):
                 runs only when that branch is taken

`kmeans_iteration_bytes` and `scoring_bytes` compile the library's sharded KMeans and
coverage programs for given sizes (no data is made: the arguments are shapes) and return
that list, so the claim that one Lloyd iteration communicates `K·(D+1)+1` floats whatever N
is a measured figure (`kmeans_bytes_formula`), and so is the client's `R` int32 counts
(`scoring_bytes_formula`).

The bytes are logical payloads (what one device puts into the collective), not wire bytes:
how a ring or tree all-reduce moves them depends on the interconnect.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "Collective",
    "Communication",
    "hlo_collectives",
    "kmeans_bytes_formula",
    "kmeans_iteration_bytes",
    "scoring_bytes",
    "scoring_bytes_formula",
]

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip

# `%name = <shape> <opcode>(` at the start of an instruction line.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?P<shape>.+?)\s+(?P<op>[\w\-]+)\(")
# `%name (params) -> result {` or `ENTRY %name (...) -> ... {`: a computation's header.
_HEADER = re.compile(r"^(?P<entry>ENTRY\s+)?%?(?P<name>[\w.\-]+)\s*\(.*\{\s*$")
_ARRAY = re.compile(r"\b(?P<dtype>[a-z]+\d*)\[(?P<dims>[\d,]*)\]")
_GROUPS = re.compile(r"replica_groups=\{\{(?P<first>[\d,]*)\}")
_GROUPS_IOTA = re.compile(r"replica_groups=\[(?P<num>\d+),(?P<size>\d+)\]")


class Collective(NamedTuple):
    """One collective of a compiled program."""

    kind: str  # e.g. "all-reduce" (an async `-start` is reported under its base name)
    bytes: int  # what one device contributes, summed over the collective's operands
    shapes: tuple[str, ...]  # the arrays it produces (an all-gather: the gathered result)
    where: str  # "once", "per_iteration" or "conditional" (see the module doc)


class Communication(NamedTuple):
    """The collectives of one compiled program, and their bytes by where they run."""

    collectives: tuple[Collective, ...]

    def _bytes(self, where: str) -> int:
        return sum(c.bytes for c in self.collectives if c.where == where)

    @property
    def once(self) -> int:
        """Bytes of the collectives that run once per call."""
        return self._bytes("once")

    @property
    def per_iteration(self) -> int:
        """Bytes of the collectives that run in every iteration of a loop."""
        return self._bytes("per_iteration")

    @property
    def conditional(self) -> int:
        """Bytes of the collectives that run only when their branch is taken."""
        return self._bytes("conditional")

    @property
    def total(self) -> int:
        """Bytes of a call with no loop iteration and no branch counted twice: the sum."""
        return sum(c.bytes for c in self.collectives)


def _split_computations(text: str) -> tuple[dict[str, list[str]], str]:
    comps: dict[str, list[str]] = {}
    entry, current = None, None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header and not line.startswith(" "):
            current = header["name"]
            comps[current] = []
            if header["entry"]:
                entry = current
        elif current is not None:
            if line.strip() == "}":
                current = None
            else:
                comps[current].append(line)
    if entry is None:
        raise ValueError("hlo_text has no ENTRY computation; pass compile().as_text().")
    return comps, entry


def _called(line: str) -> list[tuple[str, str]]:
    """(computation, role) pairs an instruction calls; role: body, branch or other."""
    out = []
    for attr, role in (
        ("body", "body"),
        ("condition", "other"),
        ("true_computation", "branch"),
        ("false_computation", "branch"),
        ("to_apply", "other"),
        ("calls", "other"),
    ):
        for m in re.finditer(rf"\b{attr}=%?([\w.\-]+)", line):
            out.append((m.group(1), role))
    for attr, role in (("branch_computations", "branch"), ("called_computations", "other")):
        for m in re.finditer(rf"\b{attr}=\{{([^}}]*)\}}", line):
            out += [(name.strip().lstrip("%"), role) for name in m.group(1).split(",") if name]
    return out


def _arrays(shape: str) -> list[tuple[str, int]]:
    """(text, bytes) of every array in a (possibly tuple) HLO shape, layouts ignored."""
    out = []
    for m in _ARRAY.finditer(shape):
        if m["dtype"] not in _BYTES:
            continue
        dims = [int(d) for d in m["dims"].split(",") if d]
        out.append((f"{m['dtype']}[{m['dims']}]", _BYTES[m["dtype"]] * math.prod(dims)))
    return out


def _group_size(line: str) -> int:
    if m := _GROUPS.search(line):
        return max(1, len([d for d in m["first"].split(",") if d]))
    if m := _GROUPS_IOTA.search(line):
        return int(m["size"])
    return 1


def _collective(op: str, shape: str, line: str, where: str) -> Collective | None:
    base = op.removesuffix("-start")
    if base not in COLLECTIVES or op.endswith("-done"):
        return None
    arrays = _arrays(shape)
    if op.endswith("-start") and base in ("all-gather", "collective-permute", "all-to-all"):
        # Async starts return (operands, outputs[, contexts]): the operands are the first half.
        arrays = arrays[: max(1, len(arrays) // 2)]
        operand_bytes = sum(b for _, b in arrays)
    else:
        result_bytes = sum(b for _, b in arrays)
        size = _group_size(line)
        operand_bytes = {
            "all-gather": result_bytes // size,
            "reduce-scatter": result_bytes * size,
        }.get(base, result_bytes)
    return Collective(base, int(operand_bytes), tuple(t for t, _ in arrays), where)


def hlo_collectives(hlo_text: str) -> Communication:
    """The collectives of a compiled program's HLO text, in program order.

    Args:
      hlo_text: `jax.jit(f).lower(*args).compile().as_text()`.

    Returns:
      `Communication` listing every collective reachable from the entry computation, once
      per place it appears, tagged `once`, `per_iteration` or `conditional`.

    Examples:
      >>> hlo = '''ENTRY %main (p: f32[8]) -> f32[8] {
      ...   %p = f32[8]{0} parameter(0)
      ...   ROOT %s = f32[8]{0} all-reduce(%p), replica_groups={{0,1}}, to_apply=%add
      ... }'''
      >>> hlo_collectives(hlo).collectives[0]
      Collective(kind='all-reduce', bytes=32, shapes=('f32[8]',), where='once')
    """
    comps, entry = _split_computations(hlo_text)
    found: list[Collective] = []

    def walk(name: str, where: str, stack: tuple[str, ...]) -> None:
        if name in stack or name not in comps:
            return
        for line in comps[name]:
            m = _INSTRUCTION.match(line)
            if m is None:
                continue
            c = _collective(m["op"], m["shape"], line, where)
            if c is not None:
                found.append(c)
            for callee, role in _called(line):
                inner = where
                if role == "branch":
                    inner = "conditional"
                elif role == "body" and where == "once":
                    inner = "per_iteration"
                walk(callee, inner, (*stack, name))

    walk(entry, "once", ())
    return Communication(tuple(found))


def kmeans_bytes_formula(*, dim: int, k: int) -> int:
    """Bytes one Lloyd iteration all-reduces: K·D sums, K counts and the inertia, float32."""
    return 4 * (int(k) * (int(dim) + 1) + 1)


def scoring_bytes_formula(*, num_centroids: int) -> int:
    """Bytes the client's scoring all-reduces: one int32 count per centroid."""
    return 4 * int(num_centroids)


def _row_sharded(mesh: Mesh, shape: tuple[int, ...], dtype) -> jax.ShapeDtypeStruct:
    from ecos_jax.sharding import _axis

    return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, P(_axis(mesh))))


def kmeans_iteration_bytes(
    mesh: Mesh, *, num_rows: int, dim: int, k: int, num_iters: int = 10, chunk_size: int = 4096
) -> Communication:
    """The collectives of `sharding.sharded_kmeans` for N = `num_rows` rows on `mesh`.

    Compiles the same program `sharded_kmeans` runs (unweighted, `num_iters` Lloyd
    iterations) from shapes alone; `.per_iteration` is what one iteration communicates.
    """
    from ecos_jax.sharding import _sharded_kmeans_fn, padded_num_rows

    n_pad = padded_num_rows(num_rows, mesh)
    fn = _sharded_kmeans_fn(
        mesh,
        k=int(k),
        num_iters=int(num_iters),
        tol=1e-4,
        chunk_size=int(chunk_size),
        weighted=False,
    )
    args = (
        _row_sharded(mesh, (n_pad, int(dim)), jnp.float32),
        _row_sharded(mesh, (n_pad,), jnp.bool_),
        jax.ShapeDtypeStruct((int(k), int(dim)), jnp.float32),
    )
    return hlo_collectives(fn.lower(*args).compile().as_text())


def scoring_bytes(
    mesh: Mesh, *, num_client_rows: int, dim: int, num_centroids: int, method: str = "voronoi"
) -> Communication:
    """The collectives of `sharding.sharded_coverage_scores` for M client rows on `mesh`."""
    from ecos_jax.sharding import _sharded_coverage_fn, padded_num_rows

    m_pad = padded_num_rows(num_client_rows, mesh)
    fn = _sharded_coverage_fn(mesh, method=method, static_kwargs=())
    args = (
        _row_sharded(mesh, (m_pad, int(dim)), jnp.float32),
        _row_sharded(mesh, (m_pad,), jnp.bool_),
        jax.ShapeDtypeStruct((int(num_centroids), int(dim)), jnp.float32),
        jax.ShapeDtypeStruct((int(num_centroids),), jnp.float32),
    )
    return hlo_collectives(fn.lower(*args).compile().as_text())
