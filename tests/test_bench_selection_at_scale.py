"""The selection-at-scale benchmark runs at a tiny size and prints its figures."""

import json
import math

from experiments import bench_selection_at_scale


def test_tiny_run_prints_figures(capsys):
    bench_selection_at_scale.main(
        ["--rows=3000", "--dim=8", "--clusters=20", "--budget=300", "--repeats=1"]
    )
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["sharded_select_1dev_equal"] is True
    for name in ("ranking_s", "select_s", "sharded_select_1dev_s"):
        assert figures[name] > 0, name
    # A difference of two timings: at this size it may be noise around zero.
    assert math.isfinite(figures["kmeans_iteration_s"])
