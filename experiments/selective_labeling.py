"""Task (a), selective manual labeling: the cloud picks S, human labelers label it (junk
images of the unrelated domains are rejected but cost budget), the student trains on it.

  python -m experiments.selective_labeling --workdir=DIR \
      [--config=experiments/configs/selective_labeling.py[:VARIANT]]

What it writes to DIR: `experiments.downstream`.
"""

from experiments import downstream

if __name__ == "__main__":
    downstream.main("selective_labeling")
