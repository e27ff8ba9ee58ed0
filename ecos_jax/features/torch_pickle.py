"""Reads PyTorch checkpoint files without torch and without trusting them.

A torch `.pth` file is a pickle, and unpickling runs whatever callables the file names.
This module unpickles with an allowlist: the tensor-rebuild functions, the typed storage
classes and `collections.OrderedDict`. Each allowed name resolves to a local, side-effect
free stand-in (tensors become NumPy arrays); any other global raises
`UnsafeCheckpointError` before anything is called.

Two on-disk formats are read:

* legacy (torch < 1.6 and `_use_new_zipfile_serialization=False`): five pickles in a
  row (magic number, protocol version, sys info, the object, the list of storage keys),
  then for every key an int64 element count and the raw little-endian bytes;
* zip (torch >= 1.6): `<prefix>/data.pkl` plus one `<prefix>/data/<key>` blob per
  storage.

In both, tensors reference their storages through persistent ids
`('storage', storage_type, key, location, numel[, view_metadata])`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np

__all__ = ["UnsafeCheckpointError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: Typed storage class names torch pickles, mapped to their little-endian NumPy dtype.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "UntypedStorage": np.dtype("u1"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a global outside the allowlist, or its structure is malformed."""


class _StorageType(NamedTuple):
    """Stand-in for a `torch.<X>Storage` class: only its dtype matters."""

    name: str
    dtype: np.dtype


def _rebuild_tensor(
    storage: np.ndarray, storage_offset: int, size: tuple, stride: tuple
) -> np.ndarray:
    """Builds a C-contiguous copy of the strided view `storage[offset; size; stride]`."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise UnsafeCheckpointError("tensor rebuild: the storage is not a loaded storage.")
    size = tuple(size)
    stride = tuple(stride)
    ints = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in ints):
        raise UnsafeCheckpointError(
            f"tensor rebuild: bad offset/size/stride {storage_offset}, {size}, {stride}."
        )
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.shape[0]:
        raise UnsafeCheckpointError(
            f"tensor rebuild: view reaches element {last} of a storage of {storage.shape[0]}."
        )
    if np.prod(size, dtype=np.float64) > storage.shape[0]:
        # Only stride-0 (broadcast) views can do this; refusing them bounds memory use.
        raise UnsafeCheckpointError(
            f"tensor rebuild: {size} has more elements than its storage of {storage.shape[0]}."
        )
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(s * item for s in stride),
        writeable=False,
    )
    return np.array(view, copy=True, order="C")


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *extra
):
    """Allowlisted stand-in for `torch._utils._rebuild_tensor_v2` (grad flags dropped)."""
    del requires_grad, backward_hooks, extra
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *extra):
    """Allowlisted stand-in for `torch._utils._rebuild_parameter`: the data itself."""
    del requires_grad, backward_hooks, extra
    if not isinstance(data, np.ndarray):
        raise UnsafeCheckpointError("parameter rebuild: the data is not a tensor.")
    return data


def _ignore(*args, **kwargs) -> None:
    """Tensor rebuild during the legacy format's first pass: nothing to build yet."""
    del args, kwargs


class _Sealed:
    """An allowlisted callable that pickle's BUILD opcode cannot modify."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args):
        return self.fn(*args)

    def __setattr__(self, name, value):
        raise UnsafeCheckpointError(f"the checkpoint tries to modify {self.fn.__name__}.")

    def __setstate__(self, state):
        raise UnsafeCheckpointError(f"the checkpoint tries to modify {self.fn.__name__}.")


_REBUILD_TENSOR = _Sealed(_rebuild_tensor)
_REBUILD_TENSOR_V2 = _Sealed(_rebuild_tensor_v2)
_REBUILD_PARAMETER = _Sealed(_rebuild_parameter)
_IGNORE = _Sealed(_ignore)

#: The complete allowlist: (module, name) -> local stand-in.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _REBUILD_TENSOR,
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD_TENSOR_V2,
    ("torch._utils", "_rebuild_parameter"): _REBUILD_PARAMETER,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_ALLOWED_GLOBALS` and delegates persistent ids."""

    def __init__(self, file, *, source: str, persistent_load=None, probe: bool = False):
        super().__init__(file)
        self._source = source
        self._persistent = persistent_load
        self._probe = probe

    def find_class(self, module: str, name: str):
        try:
            obj = _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._source}: refusing to load global '{module}.{name}'. Only tensor "
                "data is read from checkpoints (torch tensor-rebuild functions, storage "
                "types and collections.OrderedDict); this file names something else, so it "
                "is either not a plain state dict or it was crafted to run code."
            ) from None
        if self._probe and obj in (_REBUILD_TENSOR, _REBUILD_TENSOR_V2, _REBUILD_PARAMETER):
            return _IGNORE
        return obj

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafeCheckpointError(f"{self._source}: unexpected persistent id {pid!r}.")
        return self._persistent(pid)


def _parse_storage_pid(pid, *, source: str) -> tuple[_StorageType, str, int, Any]:
    """Validates `('storage', type, key, location, numel[, view])`; returns its parts."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        raise UnsafeCheckpointError(f"{source}: malformed storage reference {pid!r}.")
    storage_type, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) == 6 else None
    if not isinstance(storage_type, _StorageType):
        raise UnsafeCheckpointError(f"{source}: storage reference without a storage type.")
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise UnsafeCheckpointError(f"{source}: malformed storage reference {pid!r}.")
    return storage_type, key, numel, view


def _load_legacy(data: bytes, *, source: str) -> Any:
    """Reads the legacy (non-zip) torch format from its bytes."""
    f = io.BytesIO(data)

    def plain_load():
        return _RestrictedUnpickler(f, source=source).load()

    try:
        magic = plain_load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError, TypeError) as e:
        raise UnsafeCheckpointError(
            f"{source}: not a torch checkpoint (neither a zip archive nor a legacy pickle): {e}"
        ) from None
    if magic != _LEGACY_MAGIC:
        raise UnsafeCheckpointError(f"{source}: bad magic number; not a torch checkpoint.")
    protocol = plain_load()
    if protocol != _LEGACY_PROTOCOL:
        raise UnsafeCheckpointError(f"{source}: unsupported legacy protocol {protocol!r}.")
    sys_info = plain_load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise UnsafeCheckpointError(f"{source}: only little-endian checkpoints are supported.")

    # Pass 1 over the object pickle only records the storages' types and sizes (tensor
    # rebuilds return None), because the storage bytes come after it and their layout
    # depends on the element size.
    object_start = f.tell()
    declared: dict[str, tuple[_StorageType, int]] = {}

    def record_storage(pid):
        storage_type, key, numel, _view = _parse_storage_pid(pid, source=source)
        if declared.setdefault(key, (storage_type, numel)) != (storage_type, numel):
            raise UnsafeCheckpointError(f"{source}: storage {key!r} declared twice differently.")

    _RestrictedUnpickler(f, source=source, persistent_load=record_storage, probe=True).load()
    object_end = f.tell()
    keys = plain_load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UnsafeCheckpointError(f"{source}: malformed storage key list.")

    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in declared:
            raise UnsafeCheckpointError(f"{source}: storage {key!r} is not referenced.")
        storage_type, numel = declared[key]
        header = f.read(8)
        if len(header) != 8:
            raise UnsafeCheckpointError(f"{source}: truncated before storage {key!r}.")
        count = int(np.frombuffer(header, "<i8")[0])
        if count != numel:
            raise UnsafeCheckpointError(
                f"{source}: storage {key!r} holds {count} elements, expected {numel}."
            )
        nbytes = count * storage_type.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise UnsafeCheckpointError(f"{source}: truncated inside storage {key!r}.")
        arrays[key] = np.frombuffer(raw, storage_type.dtype)
    missing = sorted(set(declared) - set(arrays))
    if missing:
        raise UnsafeCheckpointError(f"{source}: storages {missing} have no data.")

    def storage_view(pid):
        _storage_type, key, numel, view = _parse_storage_pid(pid, source=source)
        if view is None:
            return arrays[key]
        if not (
            isinstance(view, tuple)
            and len(view) == 3
            and all(isinstance(v, int) and v >= 0 for v in view[1:])
            and view[1] + view[2] <= numel
        ):
            raise UnsafeCheckpointError(f"{source}: malformed storage view {view!r}.")
        return arrays[key][view[1] : view[1] + view[2]]

    # Pass 2 builds the object with the storages in hand.
    objects = io.BytesIO(data[object_start:object_end])
    return _RestrictedUnpickler(objects, source=source, persistent_load=storage_view).load()


def _load_zip(path: str, *, source: str) -> Any:
    """Reads the zip torch format (`<prefix>/data.pkl` + `<prefix>/data/<key>`)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise UnsafeCheckpointError(
                f"{source}: a zip archive without exactly one '<prefix>/data.pkl'; "
                "not a torch checkpoint."
            )
        prefix = pkl[0][: -len("data.pkl")]
        byteorder_name = prefix + "byteorder"
        if byteorder_name in names and archive.read(byteorder_name).strip() != b"little":
            raise UnsafeCheckpointError(f"{source}: only little-endian checkpoints are supported.")
        loaded: dict[str, np.ndarray] = {}

        def persistent_load(pid):
            storage_type, key, numel, _view = _parse_storage_pid(pid, source=source)
            if key not in loaded:
                try:
                    raw = archive.read(f"{prefix}data/{key}")
                except KeyError:
                    raise UnsafeCheckpointError(
                        f"{source}: storage blob {key!r} is missing."
                    ) from None
                dtype = storage_type.dtype
                if storage_type.name == "UntypedStorage":
                    numel_bytes = numel
                else:
                    numel_bytes = numel * dtype.itemsize
                if len(raw) != numel_bytes:
                    raise UnsafeCheckpointError(
                        f"{source}: storage {key!r} has {len(raw)} bytes, expected {numel_bytes}."
                    )
                loaded[key] = np.frombuffer(raw, dtype)
            return loaded[key]

        with archive.open(pkl[0]) as f:
            data = f.read()
        unpickler = _RestrictedUnpickler(
            io.BytesIO(data), source=source, persistent_load=persistent_load
        )
        return unpickler.load()


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Loads a torch checkpoint (legacy or zip format) as NumPy arrays, safely.

    Only tensors, storages, `OrderedDict`s and plain pickle containers (dict, list,
    tuple, str, numbers) are reconstructed. Any other global in the file raises
    `UnsafeCheckpointError` and nothing named by the file is ever called.

    Args:
      path: the `.pth` / `.pt` file.

    Returns:
      The checkpoint object with every tensor replaced by a C-contiguous `np.ndarray`
      (for a state dict: an `OrderedDict[str, np.ndarray]`).

    Raises:
      FileNotFoundError: the file does not exist.
      UnsafeCheckpointError: a disallowed global, or a malformed / truncated file.

    References:
      Hong et al., ECOS, NeurIPS 2022 (arXiv:2210.12575): the shared frozen extractor φ.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, source=path)
        with open(path, "rb") as f:
            data = f.read()
        return _load_legacy(data, source=path)
    except UnsafeCheckpointError:
        raise
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as e:
        raise UnsafeCheckpointError(
            f"{path}: malformed checkpoint ({type(e).__name__}: {e})."
        ) from None
