"""Executes the notebooks in place on the committed results/ (`make notebooks`).

The kernels run in notebooks/, as Jupyter runs them; no timings are recorded, so a
re-execution on the same results changes nothing but what the results changed.
Usage: python scripts/execute_notebooks.py [NOTEBOOK ...] (default: every notebook).
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def main(paths: list[str]) -> None:
    for path in [Path(p) for p in paths] or sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        ).execute()
        nbformat.write(nb, path)
        print(f"executed {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
