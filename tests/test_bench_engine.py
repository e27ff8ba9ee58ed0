"""bench_engine runs end to end at a tiny size and reports what it measured."""

from experiments import bench_engine


def test_bench_engine_reports_both_paths_the_ratio_and_the_breakdown(capsys):
    result = bench_engine.main(
        [
            "--runs=2",
            "--steps=3",
            "--batch=8",
            "--width=0.0625",
            "--images=16",
            "--bank=40",
            "--repeats=1",
            "--skip-old",
        ]
    )
    c = result["compare"]
    assert c["sequential_s"] > 0 and c["vmapped_s"] > 0
    assert c["ratio_vs_sequential"] > 0
    assert c["max_param_deviation"] < 1e-3  # 3 steps: the runs agree to float tolerance
    bd = result["breakdown"]
    assert {"conv0 forward", "conv0 kernel grad", "max_pool0 backward"} <= set(bd["ops_ms"])
    assert 0 < bd["fraction_of_gemm"] < 1.5
    assert result["batching"]["native_img_s"] > 0
    out = capsys.readouterr().out
    assert "vmapped runs (fit_runs)" in out and "of a 2048² fp32 GEMM" in out
