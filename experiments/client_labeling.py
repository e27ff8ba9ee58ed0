"""Task (c), automated client labeling: ECOS and every baseline, trained and evaluated.

  python -m experiments.client_labeling --workdir=DIR \
      [--config=experiments/configs/client_labeling.py[:VARIANT]]

Writes to DIR: config.json, metrics.jsonl (one row per run), results.md (the paper's
tables), accuracy.png (the table as bars), accuracy_vs_budget.png / accuracy_vs_epsilon.png
when the config sweeps them, and runs/<domain>/<run>/ (TensorBoard events, metrics.jsonl,
checkpoint, result.json).
The last stdout line is the JSON summary. See `experiments.downstream`.
"""

from pathlib import Path

from experiments import common, downstream

_DEFAULT_CONFIG = str(Path(__file__).resolve().parent / "configs" / "client_labeling.py")

if __name__ == "__main__":
    common.main(downstream.run, _DEFAULT_CONFIG)
