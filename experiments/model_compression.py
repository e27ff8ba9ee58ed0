"""Task (b), adaptive model compression. A teacher, trained once per client domain on the
pool's labeled images, is distilled into the small CNN on S; no labels on S are needed.

Run: `python -m experiments.model_compression --workdir=DIR` (the config is
experiments/configs/model_compression.py; add `--config=PATH:VARIANT` for a variant).
The outputs are those of every downstream task (see `experiments.downstream`).
"""

from experiments import downstream

if __name__ == "__main__":
    downstream.main("model_compression")
