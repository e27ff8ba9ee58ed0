"""Task (c), automated client labeling, with ECOS and every baseline.

The client labels S itself with Private-kNN on its own features; that release and ECOS's
are composed, and the tables report the total ε. Usage:

  python -m experiments.client_labeling --workdir=DIR [--config=CONFIG_FILE:VARIANT]

with CONFIG_FILE experiments/configs/client_labeling.py by default. Outputs as listed in
`experiments.downstream`.
"""

from experiments import downstream

if __name__ == "__main__":
    downstream.main("client_labeling")
