"""The KMeans benchmark runs end to end at a tiny size and reports its figures."""

import json

from experiments import bench_kmeans


def test_benchmark_reports_all_figures(capsys):
    bench_kmeans.main(["--n=3000", "--d=16", "--k=12", "--iters=3", "--repeats=1"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ours_gflops", "faiss_gflops", "sklearn_gflops", "ratio_vs_faiss"):
        assert out[key] > 0
    assert out["inertia_rel_diff_vs_faiss"] < 1e-3


def test_scale_point_runs_small(capsys):
    bench_kmeans.main(
        [
            "--scale-only",
            "--scale-n=4000",
            "--scale-d=8",
            "--scale-k=20",
            "--scale-budget=300",
            "--scale-clients=200",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= out["kmeans_iters"] <= 20 and out["peak_rss_gib"] > 0
