"""The downstream experiments' figures: accuracy per client domain, against the budget,
and against ε (mean ± std over seeds, from the same rows as `results.md`)."""

from __future__ import annotations

from pathlib import Path

from experiments import common
from experiments.reports import METHOD_NAMES, REFERENCE_METHODS, pick, seed_stats

__all__ = ["plot_accuracy", "plot_budget", "plot_epsilon", "pyplot", "save_figure"]


def plot_accuracy(config, rows, path: Path) -> None:
    """The results table as bars: every method per client domain and on average, at the
    report budget and ε (mean ± std over seeds)."""
    plt = pyplot()
    budget, eps = int(config.report_budget), float(config.report_epsilon)
    groups = list(config.client_domains) + (["avg"] if len(config.client_domains) > 1 else [])
    width = 0.8 / len(config.methods)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 2.5), 3.6))
    for i, method in enumerate(config.methods):
        method_rows = pick(rows, method, budget, eps)
        stats = [
            seed_stats(pick(method_rows, method, domain=g))
            if g != "avg"
            else seed_stats(method_rows)
            for g in groups
        ]
        ax.bar(
            [j + (i - (len(config.methods) - 1) / 2) * width for j in range(len(groups))],
            [100 * m for m, _ in stats],
            width,
            yerr=[100 * sd for _, sd in stats],
            capsize=2,
            label=METHOD_NAMES[method],
            color=f"C{i}",
        )
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlabel("client domain")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{config.task} ({config.data.source}, B={budget}, ε={eps:g})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)


def plot_budget(config, rows, path: Path) -> None:
    """Accuracy (domain average, mean ± std over seeds) against the budget."""
    plt = pyplot()
    eps = float(config.report_epsilon)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for i, method in enumerate(config.methods):
        if method in REFERENCE_METHODS:
            mean, _ = seed_stats(pick(rows, method, 0, eps))
            ax.axhline(100 * mean, ls="--", lw=1, label=METHOD_NAMES[method], color=f"C{i}")
            continue
        stats = [seed_stats(pick(rows, method, b, eps)) for b in config.budgets]
        _errorbar(ax, config.budgets, stats, label=METHOD_NAMES[method], color=f"C{i}")
    ax.set_xlabel("budget B")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{config.task} ({config.data.source}, ε={eps:g})", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_epsilon(config, rows, path: Path) -> None:
    """ECOS accuracy against ε at the report budget; non-private baselines as lines."""
    plt = pyplot()
    budget = int(config.report_budget)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    stats = [seed_stats(pick(rows, "ecos", budget, float(e))) for e in config.epsilons]
    for i, method in enumerate(config.methods):
        if method == "ecos":
            _errorbar(ax, config.epsilons, stats, label="ECOS", color=f"C{i}")
            continue
        mean, _ = seed_stats(pick(rows, method, budget, float(config.report_epsilon)))
        ax.axhline(100 * mean, ls="--", lw=1, label=METHOD_NAMES[method], color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("ε of the score release (δ = 1e-5)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{config.task} ({config.data.source}, B={budget})", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _errorbar(ax, xs, stats, *, label: str, color: str) -> None:
    """One method's accuracy (%) against `xs`, mean ± std over seeds."""
    ax.errorbar(
        list(xs),
        [100 * m for m, _ in stats],
        yerr=[100 * s for _, s in stats],
        marker="o",
        capsize=3,
        label=label,
        color=color,
    )


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, *, dpi: int = 120) -> None:
    """Lays out `fig`, writes it to `path` as PNG atomically, and closes it."""
    fig.tight_layout()
    common.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), binary=True)
    pyplot().close(fig)
