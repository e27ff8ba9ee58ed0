"""Restricted torch-checkpoint unpickler: round trips and refusal of foreign globals."""

import collections
import pickle
import zipfile

import numpy as np
import pytest

from ecos_jax.features.torch_pickle import UnsafeCheckpointError, load_torch_checkpoint

_MAGIC = 0x1950A86A20F9469CFC6C
_SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}


def _system_payload(marker) -> bytes:
    """A protocol-0 pickle whose REDUCE calls os.system to create `marker`."""
    command = f"touch '{marker}'"
    return b"cos\nsystem\n(S" + repr(command).encode() + b"\ntR."


def _legacy_file(path, object_pickle: bytes, *, sys_info=_SYS_INFO) -> None:
    with open(path, "wb") as f:
        f.write(pickle.dumps(_MAGIC, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps(sys_info, protocol=2))
        f.write(object_pickle)
        f.write(pickle.dumps([], protocol=2))


def _zip_file(path, data_pkl: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


def test_payload_is_live_under_plain_pickle(tmp_path):
    # Guards the refusal tests below: the payload really runs code when trusted.
    marker = tmp_path / "plain_marker"
    pickle.loads(_system_payload(marker))
    assert marker.exists()


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_refuses_os_system_and_runs_nothing(tmp_path, fmt):
    marker = tmp_path / "marker"
    path = tmp_path / f"evil_{fmt}.pth"
    if fmt == "legacy":
        _legacy_file(path, _system_payload(marker))
    else:
        _zip_file(path, _system_payload(marker))
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load global 'os\.system'"):
        load_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_refuses_global_hidden_inside_a_state_dict(tmp_path, fmt):
    marker = tmp_path / "marker"
    # OrderedDict([('w', <os.system call>)]) built by hand: the allowed OrderedDict
    # global first, then the forbidden one as a value.
    inner = _system_payload(marker)[:-1]  # drop STOP
    payload = b"ccollections\nOrderedDict\n(tR" + b"S'w'\n" + inner + b"s."
    path = tmp_path / f"evil_nested_{fmt}.pth"
    if fmt == "legacy":
        _legacy_file(path, payload)
    else:
        _zip_file(path, payload)
    with pytest.raises(UnsafeCheckpointError, match=r"os\.system"):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_refuses_global_in_legacy_header(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil_header.pth"
    with open(path, "wb") as f:
        f.write(_system_payload(marker))
    with pytest.raises(UnsafeCheckpointError, match=r"os\.system"):
        load_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module_name",
    ["builtins eval", "torch load", "numpy.core.multiarray _reconstruct", "collections deque"],
)
def test_refuses_other_globals(tmp_path, module_name):
    module, name = module_name.split()
    path = tmp_path / "other.pth"
    _zip_file(path, f"c{module}\n{name}\n(tR.".encode())
    with pytest.raises(UnsafeCheckpointError, match=f"'{module}.{name}'"):
        load_torch_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).bytes(100))
    with pytest.raises(UnsafeCheckpointError, match="not a torch checkpoint"):
        load_torch_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_torch_checkpoint(tmp_path / "absent.pth")


def test_truncated_legacy_file(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "full.pth"
    torch.save({"w": torch.ones(100)}, path, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(UnsafeCheckpointError, match="truncated"):
        load_torch_checkpoint(cut)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_round_trip_of_torch_save(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    state = collections.OrderedDict(
        f32=torch.randn(3, 4, 5, generator=gen),
        f64=torch.randn(7, dtype=torch.float64, generator=gen),
        f16=torch.randn(2, 3, generator=gen).half(),
        bf16=torch.randn(4, generator=gen).bfloat16(),
        i64=torch.arange(10),
        scalar=torch.tensor(3, dtype=torch.int64),
        empty=torch.zeros(0, 3),
        transposed=base.t(),  # non-contiguous strides
        offset_view=base[2:4, 1:],  # shares `base`'s storage at an offset
        base=base,
        param=torch.nn.Parameter(torch.randn(2, 2, generator=gen)),
    )
    path = tmp_path / "state.pth"
    torch.save({"state_dict": state, "epoch": 3}, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_torch_checkpoint(path)
    assert loaded["epoch"] == 3
    assert list(loaded["state_dict"]) == list(state)
    for key, tensor in state.items():
        got = loaded["state_dict"][key]
        want = tensor.detach().float().numpy() if key == "bf16" else tensor.detach().numpy()
        assert got.shape == tuple(tensor.shape), key
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(np.asarray(got, want.dtype), want, err_msg=key)


def test_zip_byteorder_big_is_refused(tmp_path):
    path = tmp_path / "big.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("archive/byteorder", "big")
    with pytest.raises(UnsafeCheckpointError, match="little-endian"):
        load_torch_checkpoint(path)


def _tensor_pickle(*, numel: int, size: int, stride: int = 1) -> bytes:
    """Protocol-0 pickle of {'w': tensor of `size` and `stride` over a FloatStorage of `numel`}."""
    return (
        b"(dS'w'\nctorch._utils\n_rebuild_tensor_v2\n("
        b"(S'storage'\nctorch\nFloatStorage\nS'0'\nS'cpu'\nI%d\ntQ"
        b"I0\n(I%d\nt(I%d\ntI00\nccollections\nOrderedDict\n(tRtRs." % (numel, size, stride)
    )


def _zip_with_storage(path, data_pkl: bytes, storage: np.ndarray) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/data/0", storage.astype("<f4").tobytes())


def test_hand_written_zip_checkpoint_loads(tmp_path):
    path = tmp_path / "ok.pth"
    _zip_with_storage(path, _tensor_pickle(numel=4, size=4), np.arange(4))
    np.testing.assert_array_equal(load_torch_checkpoint(path)["w"], np.arange(4, dtype="f4"))


@pytest.mark.parametrize(
    "numel, size, stride, match",
    [
        # A tensor that reaches past its storage must not read foreign memory.
        pytest.param(4, 10, 1, "reaches element 9 of a storage of 4", id="view_outside_storage"),
        pytest.param(8, 4, 1, "has 16 bytes, expected 32", id="storage_size_mismatch"),
        # size 10**9 with stride 0 would allocate gigabytes from a 4-element storage.
        pytest.param(4, 10**9, 0, "more elements than its storage", id="broadcast_view"),
    ],
)
def test_tensor_not_backed_by_its_4_element_storage_is_refused(
    tmp_path, numel, size, stride, match
):
    path = tmp_path / "bad_view.pth"
    _zip_with_storage(path, _tensor_pickle(numel=numel, size=size, stride=stride), np.zeros(4))
    with pytest.raises(UnsafeCheckpointError, match=match):
        load_torch_checkpoint(path)


def test_build_cannot_modify_allowlisted_functions(tmp_path):
    path = tmp_path / "build.pth"
    _zip_file(path, b"ctorch._utils\n_rebuild_tensor_v2\n(dS'__defaults__'\n(I1\ntsb.")
    with pytest.raises(UnsafeCheckpointError, match="tries to modify _rebuild_tensor_v2"):
        load_torch_checkpoint(path)


def test_calling_a_storage_type_is_a_clear_error(tmp_path):
    path = tmp_path / "call_storage.pth"
    _zip_file(path, b"ctorch\nFloatStorage\n(I1\ntR.")
    with pytest.raises(UnsafeCheckpointError, match="malformed checkpoint"):
        load_torch_checkpoint(path)
