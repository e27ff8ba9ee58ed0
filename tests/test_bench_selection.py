"""The selection benchmark runs end to end at a tiny size and reports its figures."""

import json

from experiments import bench_selection


def test_benchmark_reports_both_implementations_side_by_side(capsys):
    bench_selection.main(["--n=1500", "--d=16", "--clusters=6", "--budgets=100,300,50"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["budget"] for r in out["new"]] == [100, 300, 50]
    assert all(r["seconds"] > 0 for r in out["new"])
    compiles = [r["k_center_compiles"] for r in out["new"]]
    assert compiles == sorted(compiles) and compiles[-1] >= 1
    if "old_skipped" in out:  # no git, or a shallow clone without the old revision
        assert "old" not in out
        return
    assert [r["budget"] for r in out["old"]] == [100, 300, 50]
    assert out["first_call_ratio_new_over_old"] > 0
    assert out["same_indices"] is True  # the grouped k-center picks what the loop picked


def test_skip_old_measures_the_current_tree_only(capsys):
    bench_selection.main(["--n=800", "--d=4", "--clusters=4", "--budgets=40", "--skip-old"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["old_skipped"] == "--skip-old" and "old" not in out
    assert out["new"][0]["k_center_compiles"] <= 1
