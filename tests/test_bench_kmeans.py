"""The KMeans benchmark runs end to end at a tiny size and reports its figures."""

import json

import pytest

from experiments import bench_kmeans


def test_benchmark_reports_all_figures(capsys):
    bench_kmeans.main(
        ["--n=3000", "--d=16", "--k=12", "--iters=3", "--repeats=1", "--gemm-size=256"]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ours_gflops", "faiss_gflops", "sklearn_gflops", "ratio_vs_faiss"):
        assert out[key] > 0
    assert out["inertia_rel_diff_vs_faiss"] < 1e-3
    # The fractions of the device's GEMM rate, measured in the same run.
    assert out["gemm_fp32_gflops"] > 0 and out["gemm_bf16_gflops"] > 0
    # The fraction is rounded to 3 decimals from the unrounded rates; the JSON's rates are
    # rounded to 2 and 1 decimals, which at this tiny size moves their ratio by up to
    # 0.005/ours + 0.05/gemm of itself (a slow GEMM under load makes that term large).
    ours, gemm = out["ours_gflops"], out["gemm_fp32_gflops"]
    rounding = 5e-4 + (ours / gemm) * (0.005 / ours + 0.05 / gemm) * 1.01
    assert out["ours_fraction_of_gemm_fp32"] == pytest.approx(ours / gemm, abs=rounding)
    # The low-precision run (bf16 on CPU) and its exactness against the float32 run.
    assert out["low_precision"] == "bf16" and out["low_gemm"] == "bf16"
    assert out["low_speedup_vs_fp32"] > 0 and out["low_fraction_of_gemm_low"] > 0
    assert out["low_assignments_equal"] and out["low_inertia_equal"]
    assert out["low_centroids_equal"]


def test_benchmark_breakdown_and_no_low_precision(capsys):
    bench_kmeans.main(
        [
            "--n=2000",
            "--d=8",
            "--k=10",
            "--iters=2",
            "--repeats=1",
            "--gemm-size=128",
            "--chunk-size=256",
            "--low-precision=none",
            "--skip-sklearn",
            "--breakdown",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "low_precision" not in out and out["sklearn_gflops"] is None
    breakdown = out["breakdown"]
    assert breakdown["chunk_size"] == 256
    for piece in ("gemm_min", "assign", "stats", "iteration"):
        assert breakdown[f"{piece}_ms"] > 0 and breakdown[f"{piece}_gflops"] > 0


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
