"""The README and docs/ cannot rot: the API example runs as written, every relative link
resolves, the σ → ε table of docs/privacy.md is what the library computes, and the
README's layout names every module on disk."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]


def test_readme_api_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [link.split("#", 1)[0] for link in links if not re.match(r"[a-z]+:", link)]
    missing = [link for link in local if link and not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to missing paths: {missing}"


def _table_row(text: str, label: str) -> list[float]:
    (row,) = re.findall(rf"^\| {re.escape(label)} \|(.*)\|$", text, flags=re.MULTILINE)
    return [float(cell) for cell in row.split("|")]


def test_privacy_doc_sigma_to_epsilon_table_matches_the_library():
    from ecos_jax import DiscreteGaussianRelease, calibrate_sigma, epsilons

    text = (REPO / "docs" / "privacy.md").read_text()
    sigmas = _table_row(text, "σ")
    rdp, pld = _table_row(text, "ε (RDP)"), _table_row(text, "ε (PLD)")
    assert sigmas == [1, 2, 5, 10, 50]
    for sigma, want_rdp, want_pld in zip(sigmas, rdp, pld, strict=True):
        got = epsilons(DiscreteGaussianRelease(sigma), delta=1e-5)
        assert round(got["rdp"], 3) == want_rdp, (sigma, got)
        assert round(got["pld"], 3) == want_pld, (sigma, got)
    (rdp_sigma, pld_sigma) = re.findall(
        r"ε = 0\.58 needs σ = ([\d.]+) \(RDP\) or ([\d.]+) \(PLD\)", text
    )[0]
    assert round(calibrate_sigma(0.58, delta=1e-5), 3) == float(rdp_sigma)
    assert round(calibrate_sigma(0.58, delta=1e-5, accountant="pld"), 3) == float(pld_sigma)


def test_readme_layout_names_every_module():
    (layout,) = re.findall(r"## Layout\n\n```\n(.*?)```", README.read_text(), flags=re.DOTALL)
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout))
    on_disk = []
    for folder in ("ecos_jax", "experiments"):
        for path in sorted((REPO / folder).iterdir()):
            if path.name.startswith("_") or path.name == "__pycache__":
                continue
            if path.suffix == ".py" or (path / "__init__.py").exists() or path.name == "configs":
                on_disk.append(path.stem)
    missing = [name for name in on_disk if name not in names]
    assert not missing, f"the README's layout does not list {missing}"
