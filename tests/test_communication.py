"""The HLO collective parser on hand-written programs: kinds, bytes and where each runs."""

import pytest

from ecos_jax import communication as cm

# A program with a once-only all-reduce, a loop whose body all-reduces a tuple and, in a
# branch, all-gathers; plus the asynchronous and reduce-scatter forms.
PROGRAM = """\
HloModule toy

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

%reseed (p: f32[4,3]) -> (f32[16,3]) {
  %p = f32[4,3]{1,0} parameter(0)
  %g = f32[16,3]{1,0} all-gather(%p), channel_id=2, replica_groups={{0,1,2,3}}, dimensions={0}
  ROOT %t = (f32[16,3]{1,0}) tuple(%g)
}

%keep (p: f32[4,3]) -> (f32[16,3]) {
  %p = f32[4,3]{1,0} parameter(0)
  ROOT %t = (f32[16,3]{1,0}) tuple(%p)
}

%body (s: (s32[], f32[4,3])) -> (s32[], f32[4,3]) {
  %s = (s32[], f32[4,3]{1,0}) parameter(0)
  %r = (f32[4,3]{1,0}, f32[4]{0}, f32[]) all-reduce(%x, %y, %z), channel_id=1, \
replica_groups={{0,1,2,3}}, to_apply=%add
  %c = (f32[16,3]{1,0}) conditional(%q, %x, %x), branch_computations={%keep, %reseed}
  ROOT %t = (s32[], f32[4,3]{1,0}) tuple(%i, %x)
}

%cond (s: (s32[], f32[4,3])) -> pred[] {
  %s = (s32[], f32[4,3]{1,0}) parameter(0)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (x: f32[4,3]) -> f32[] {
  %x = f32[4,3]{1,0} parameter(0)
  %w = (s32[], f32[4,3]{1,0}) while(%init), condition=%cond, body=%body
  %rs = f32[2]{0} reduce-scatter(%v), replica_groups=[1,4]<=[4], dimensions={0}, to_apply=%add
  %st = f32[8]{0} all-reduce-start(%v), replica_groups={{0,1,2,3}}, to_apply=%add
  %dn = f32[8]{0} all-reduce-done(%st)
  %ag = (f32[2]{0}, f32[8]{0}) all-gather-start(%v), replica_groups={{0,1,2,3}}, dimensions={0}
  ROOT %o = f32[] all-reduce(%e), replica_groups={{0,1,2,3}}, to_apply=%add
}
"""


def test_collectives_by_place():
    comm = cm.hlo_collectives(PROGRAM)
    got = [(c.kind, c.bytes, c.where) for c in comm.collectives]
    assert got == [
        ("all-reduce", 4 * (12 + 4 + 1), "per_iteration"),
        ("all-gather", 4 * 12, "conditional"),  # the device's [4,3] block of the [16,3]
        ("reduce-scatter", 4 * 2 * 4, "once"),  # the [2] result of an [8] operand
        ("all-reduce", 4 * 8, "once"),  # the -start counts, the -done does not
        ("all-gather", 4 * 2, "once"),  # the operand half of the async tuple
        ("all-reduce", 4, "once"),
    ]
    assert comm.per_iteration == 68
    assert comm.conditional == 48
    assert comm.once == 32 + 32 + 8 + 4
    assert comm.total == comm.once + comm.per_iteration + comm.conditional


def test_rejects_text_without_entry():
    with pytest.raises(ValueError, match="ENTRY"):
        cm.hlo_collectives("HloModule nothing\n")


def test_formulas():
    assert cm.kmeans_bytes_formula(dim=128, k=256) == 4 * (256 * 129 + 1)
    assert cm.scoring_bytes_formula(num_centroids=256) == 1024
