"""The documentation says what the code does: docs/files.md's tables list exactly the keys, columns and fields
that a tiny real run writes, and every link of README.md, BENCHMARKS.md and docs/*.md to a repository file or
heading resolves."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast import cli

ROOT = Path(__file__).resolve().parents[1]
FILES_MD = ROOT / "docs" / "files.md"
LINKED = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
TINY = ["--width", "8", "--depth", "1", "--collocation", "64", "--batch-size", "64", "--checkpoint-every", "20",
        "--nu-warmup", "10", "--average-last", "20", "--no-compile", "--quiet"]


def tables(path):
    """{heading: [(first cell without backticks, row's cells), ...]} of every markdown table under a heading."""
    found, heading = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and heading is not None:
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if set("".join(cells)) <= set("-: ") or not cells[0].startswith("`"):
                continue  # the separator, or the header row
            found.setdefault(heading, []).append((cells[0].strip("`"), cells))
    return found


def keys(heading, **names):
    """The first column of a table, with ``<name>`` placeholders replaced (a list value expands one row to several;
    an empty list drops it)."""
    out = []
    for key, _ in tables(FILES_MD)[heading]:
        expanded = [key]
        for name, values in names.items():
            values = values if isinstance(values, list) else [values]
            expanded = [k.replace(f"<{name}>", str(v)) for k in expanded for v in values] \
                if f"<{name}>" in key else expanded
            expanded = [k for k in expanded if f"<{name}>" not in k]
        out += expanded
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs on the shipped example (its ν is known): one network with kept checkpoints, and an ensemble
    with an L-BFGS finish, so that every conditional key is written by one of them."""
    root = tmp_path_factory.mktemp("docs")
    single, ensemble = root / "single", root / "ensemble"
    cli.main(["infer", "--out", str(single), "--steps", "60", "--keep-checkpoints", "0,40", *TINY])
    cli.main(["infer", "--out", str(ensemble), "--steps", "40", "--ensemble", "2", "--lbfgs-steps", "2", *TINY])
    return single, ensemble


def _result(run):
    return json.loads((run / "result.json").read_text())


def test_result_json_keys_are_documented(runs):
    single, ensemble = (_result(run) for run in runs)
    documented = keys("result.json")
    always = [key for key, cells in tables(FILES_MD)["result.json"] if cells[1] == "always"]
    assert len(documented) == len(set(documented))
    assert set(single) | set(ensemble) == set(documented)
    assert set(always) <= set(single) and set(always) <= set(ensemble)
    assert "nu_true" in single and "nu_members" in ensemble and "nu_lbfgs" in ensemble
    unknown = keys("Each unknown of a declared problem", name="nu")
    assert {key for key in set(single) | set(ensemble) if key == "nu" or key.startswith("nu_")} == set(unknown)


def test_declared_problem_result_keys_are_documented(tmp_path):
    """A declared PDE (the README's heat problem, two conditions) through Trainer.run(): the common keys, one loss
    per condition, the fit of its one condition with values, and the unknown's keys under its own name."""
    x, t = np.random.default_rng(0).random((2, 50))
    pde = pf.PDE(inputs=("x", "t"), outputs=("u",), residual=lambda d, kappa: d.u_t - kappa * d.u_xx,
                 unknowns={"kappa": pf.Unknown(0.2, positive=True, true=0.02)},
                 conditions={"d": pf.Condition({"x": x, "t": t}, values=np.sin(np.pi * x)),
                             "ends": pf.Condition(pf.Faces(x=("lo", "hi")), values=lambda d: 0 * d.x)},
                 box=((0, 0), (1, 1)), name="heat")
    config = pf.TrainConfig(steps=20, width=8, depth=1, n_collocation=32, batch_size=32, checkpoint_every=10,
                            nu_warmup=5, average_last=10)
    result = pf.Trainer(pde, config, tmp_path / "heat", "cpu").run(progress=False)
    common = [key for key in keys("result.json") if key != "nu" and not key.startswith(("nu_", "loss_d", "rmse_"))]
    per_unknown = [key for key in keys("Each unknown of a declared problem", name="kappa")
                   if not key.endswith(("_members", "_spread", "_lbfgs", "_lbfgs_error"))]
    assert set(result) == {*common, "loss_d", "loss_ends", "rmse_u", *per_unknown}


def test_metrics_and_lbfgs_columns_are_documented(runs):
    single, ensemble = runs
    header = (single / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == keys("metrics.csv", term="d", name="nu", k=[])
    header = (ensemble / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == keys("metrics.csv", term="d", name="nu", k=[0, 1])
    header = (ensemble / "lbfgs.csv").read_text().splitlines()[0].split(",")
    assert header == keys("lbfgs.csv", name="nu") + ["nu_0", "nu_1"]


def _load(path):
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # checkpoints not (yet) weights_only-safe
        return torch.load(path, weights_only=False)


def test_checkpoint_fields_are_documented(runs):
    single, _ = runs
    documented = keys("checkpoint.pt")
    assert list(_load(single / "checkpoint.pt")) == documented
    assert sorted(p.name for p in (single / "checkpoints").iterdir()) == ["step_0.pt", "step_40.pt"]
    assert list(_load(single / "checkpoints" / "step_40.pt")) == documented


def test_diagnose_and_field_outputs_are_documented(runs, tmp_path):
    single, _ = runs
    cli.main(["diagnose", "--run", str(single), "--steps", "40", "--max-iter", "3", "--out", str(tmp_path / "dg")])
    report = json.loads((tmp_path / "dg" / "diagnose.json").read_text())
    assert list(report) == keys("diagnose.json")
    assert list(report["steps"][0]) == keys("Per step", term="d")
    assert sorted(np.load(tmp_path / "dg" / "diagnose.npz")) == sorted(keys("diagnose.npz"))
    cli.main(["residual-field", "--run", str(single), "--out", str(tmp_path / "field"), "--grid", "3",
              "--times", "0.5", "--exact-nu", "0.02", "--device", "cpu"])
    assert sorted(np.load(tmp_path / "field" / "field.npz")) == sorted(keys("field.npz"))


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped (letters of any script kept), spaces → -."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")


def _anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("doc", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"[a-z]+://", link):
            assert doc.name != "BENCHMARKS.md", f"BENCHMARKS.md links outside the repository: {link}"
            continue
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists() and ROOT in target.parents, f"{doc.name}: {link} does not resolve"
        if anchor:
            assert anchor in _anchors(target), f"{doc.name}: no heading #{anchor} in {target.name}"


def test_no_citation_points_outside_the_repository():
    """The math reference cited by docstrings is docs/math.md, in the repository (the old name, upper case, was
    a file outside it)."""
    for path in [*ROOT.glob("pinnfast/*.py"), *ROOT.glob("kernels/*.py"), *LINKED]:
        assert not re.search(r"(?<!docs/)(?<!\w)MATH\.md", path.read_text()), path
