"""Figures: every plotting function writes a PNG for tiny synthetic inputs (no training), with shared scales."""
import numpy as np
import pytest

from pinnfast.plots import (format_nu, plot_field, plot_gradients, plot_reproduce_curves, plot_reproduce_fields,
                            plot_training)

BURGERS = ("loss", "loss_r", "loss_d", "lambda_d", "nu", "lr")
ANNEALED = ("loss", "loss_r", "loss_d", "lambda_d", "imbalance_d", "nu", "lr")
FORWARD = ("loss", "loss_r", "loss_ic", "loss_bc", "lambda_ic", "lambda_bc", "lr")


def write_metrics(folder, columns, steps, nu_warmup=0):
    """A metrics.csv like the trainer's: decaying losses, growing λ, ν frozen then settling near 0.0201."""
    folder.mkdir(parents=True, exist_ok=True)
    step = np.arange(1, steps + 1)
    values = {"step": step, "loss": 10 / step, "lr": 1e-3 * 0.9 ** (step / 1000)}
    for name in columns:
        if name.startswith("loss_"):
            values[name] = 1 / step ** 1.5
        elif name.startswith("lambda_"):
            values[name] = 1 + np.log1p(step)
        elif name.startswith("imbalance_"):  # measured at annealing steps only, as the trainer writes it
            values[name] = np.where(step % 10 == 1, 20 + np.log1p(step), np.nan)
    if "nu" in columns:
        moving = np.clip(step - nu_warmup, 0, None)
        values["nu"] = 0.0201 + 0.03 * np.exp(-moving / 10) + 1e-5 * np.sin(step)
    header = ("step",) + tuple(columns)
    path = folder / "metrics.csv"
    np.savetxt(path, np.column_stack([values[n] for n in header]), delimiter=",", header=",".join(header),
               comments="")
    return path


def burgers_summary(steps, warmup, window, nu_true):
    return dict(problem="burgers", model="m4", steps=steps, data="/somewhere/burgers_obs.csv", nu=0.0201,
                nu_std=5e-5, nu_warmup=warmup, nu_window=window, nu_true=nu_true)


CASES = {  # name: (columns, steps, summary)
    "burgers_truth": (BURGERS, 300, burgers_summary(300, 50, [201, 300], 0.02)),
    "burgers_no_truth": (BURGERS, 300, burgers_summary(300, 50, [201, 300], None)),
    "burgers_short_window": (BURGERS, 53, burgers_summary(53, 50, [51, 53], 0.02)),
    "burgers_in_warmup": (BURGERS, 30, burgers_summary(30, 50, None, 0.02)),
    "burgers_one_row": (BURGERS, 1, burgers_summary(1, 0, [1, 1], 0.02)),
    "burgers_one_row_in_warmup": (BURGERS, 1, burgers_summary(1, 50, None, None)),
    "burgers_annealed": (ANNEALED, 300, burgers_summary(300, 50, [201, 300], 0.02)),
    "forward": (FORWARD, 40, dict(problem="klein-gordon", model="m2", steps=40)),
    "forward_one_row": (FORWARD, 1, dict(problem="helmholtz", model="m1", steps=1)),
    "no_summary": (BURGERS, 40, None),
}


@pytest.mark.parametrize("case", CASES)
def test_plot_training_writes_png(tmp_path, case):
    columns, steps, summary = CASES[case]
    warmup = (summary or {}).get("nu_warmup", 0)
    csv = write_metrics(tmp_path / "run", columns, steps, warmup)
    png = tmp_path / "training.png"
    plot_training(csv, png, summary)
    assert png.stat().st_size > 1000


def test_an_annealed_run_has_one_panel_per_unknown_and_its_error_bar(tmp_path):
    """The imbalance ratio is drawn beside λ, not as an unknown; the title shows ν ± its error bar (nu_sigma)."""
    csv = write_metrics(tmp_path / "run", ANNEALED, 300, 50)
    summary = dict(burgers_summary(300, 50, [201, 300], 0.02), nu_sigma=0.0004)
    fig = plot_training(csv, tmp_path / "training.png", summary)
    titles = [ax.get_title() for ax in fig.axes]
    assert not any("imbalance" in title and title.startswith("unknown") for title in titles), titles
    assert titles.count("viscosity ν") == 1
    assert "ν = 0.02010 ± 0.0004 " in fig._suptitle.get_text()


def test_plot_training_diverged_run(tmp_path):
    """The CLI plots a run that stopped on a non-finite loss: its last CSV row holds nan/inf."""
    csv = write_metrics(tmp_path / "run", BURGERS, 120, 20)
    with open(csv, "a") as handle:
        handle.write("121,nan,inf,nan,12.0,nan,0.001\n")
    png = tmp_path / "training.png"
    plot_training(csv, png, burgers_summary(121, 20, [21, 120], 0.02))
    assert png.stat().st_size > 1000


def test_plot_training_title_and_inset(tmp_path):
    csv = write_metrics(tmp_path / "run", BURGERS, 300, 50)
    fig = plot_training(csv, tmp_path / "training.png", burgers_summary(300, 50, [201, 300], 0.02))
    title = fig._suptitle.get_text()
    assert "burgers_obs.csv" in title and "m4" in title and "ν = 0.02010 ± 0.00005" in title
    assert "+0.50 % vs true 0.02" in title
    nu_axes = [ax for ax in fig.axes if ax.get_ylabel() == "ν" and ax.get_title() == "viscosity ν"]
    inset = nu_axes[0].child_axes[0]
    lo, hi = inset.get_ylim()
    assert hi - lo < 0.01 * 0.0201  # zoomed: a 0.5 % difference spans most of the inset
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes if ax not in nu_axes[0].child_axes)


def test_format_nu():
    assert format_nu(0.0201, 5e-5, 0.02) == "ν = 0.02010 ± 0.00005 (+0.50 % vs true 0.02)"
    assert format_nu(0.0201) == "ν = 0.0201"
    assert format_nu(0.0201, 0.0) == "ν = 0.0201"


def grid_fields(labels, n=21):
    axis = np.linspace(-1, 1, n)
    x, y = np.meshgrid(axis, axis, indexing="xy")
    exact = np.sin(np.pi * x) * np.sin(4 * np.pi * y)
    return {label: (exact * (1 + 0.5 * k) + 0.1 * k, exact, (axis, axis)) for k, label in enumerate(labels)}


def test_reproduce_fields_share_one_colour_scale(tmp_path):
    png = tmp_path / "fields.png"
    fields = grid_fields(["m1", "m4, ν0=0.01", "m3"])
    fig = plot_reproduce_fields("helmholtz", fields, png)
    assert png.stat().st_size > 1000
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 9
    field_limits = {(im.norm.vmin, im.norm.vmax) for k, im in enumerate(images) if k % 3 != 2}
    error_limits = {(im.norm.vmin, im.norm.vmax) for k, im in enumerate(images) if k % 3 == 2}
    assert len(field_limits) == 1 and len(error_limits) == 1
    (vmin, vmax), = field_limits
    widest = max(np.abs(a).max() for prediction, exact, _ in fields.values() for a in (prediction, exact))
    assert vmin == -vmax == -widest  # both signs: one symmetric scale over every prediction and exact panel
    labels = [ax.get_ylabel() for ax in fig.axes if not ax.images]  # the two colour bars
    assert "u" in labels and any("u_exact" in label for label in labels)


def test_reproduce_fields_positive_exact_field(tmp_path):
    axis = np.linspace(0, 1, 11)
    fields = {"m4": (np.full((11, 11), -0.1), np.full((11, 11), 0.5), (axis, axis)),
              "m3": (np.full((11, 11), 0.5), np.full((11, 11), 0.5), (axis, axis))}  # m3: zero error everywhere
    png = tmp_path / "fields.png"
    fig = plot_reproduce_fields("klein-gordon", fields, png)
    assert png.stat().st_size > 1000
    image = fig.axes[0].images[0]  # exact of one sign: a sequential map over [−0.1, 0.5], not centred on 0
    assert image.get_cmap().name == "viridis" and (image.norm.vmin, image.norm.vmax) == (-0.1, 0.5)
    plot_reproduce_fields("klein-gordon", {"m3": fields["m3"]}, png)  # one row, a constant field
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("columns, nu_true", [(BURGERS, 0.02), (BURGERS, None), (FORWARD, None)])
def test_reproduce_curves(tmp_path, columns, nu_true):
    runs = {"m1": tmp_path / "m1", "m4, ν0=0.01": tmp_path / "m4_nu0_0.01", "one row": tmp_path / "short"}
    for label, folder in runs.items():
        write_metrics(folder, columns, 1 if label == "one row" else 120, nu_warmup=20)
    png = tmp_path / "curves.png"
    fig = plot_reproduce_curves("burgers", runs, png, nu_true=nu_true)
    assert png.stat().st_size > 1000
    assert len(fig.axes) == (3 if "nu" in columns else 2)
    assert all(ax.get_xlabel() == "step" and ax.get_ylabel() for ax in fig.axes)


def fake_field(times, exact, grid=12):
    axis = np.linspace(-1, 1, grid)
    rng = np.random.default_rng(0)
    shape = (len(times), grid, grid)
    field = {"x": axis, "y": axis, "t": np.asarray(times, float), "nu": 0.0201,
             "u": rng.normal(size=shape), "v": rng.normal(size=shape),
             "r_u": rng.normal(size=shape) * np.arange(1, len(times) + 1)[:, None, None], "r_v": np.zeros(shape)}
    if exact:
        field.update(u_exact=field["u"] + 0.01 * rng.normal(size=shape), v_exact=field["v"].copy())
    return field


@pytest.mark.parametrize("times, exact", [([0.0, 0.5, 1.0], True), ([0.0, 0.5], False), ([0.3], True)])
def test_plot_field_shares_scales(tmp_path, times, exact):
    png = tmp_path / "field.png"
    fig = plot_field(fake_field(times, exact), png)
    assert png.stat().st_size > 1000
    images = [ax.images[0] for ax in fig.axes if ax.images]
    columns = 2 if exact else 1
    assert len(images) == columns * len(times)
    for col in range(columns):
        limits = {(im.norm.vmin, im.norm.vmax) for im in images[col::columns]}
        assert len(limits) == 1
    assert len([ax for ax in fig.axes if not ax.images]) == columns  # one labelled colour bar per column


def test_plot_gradients_rows_of_different_networks_share_one_axis(tmp_path):
    """M1 and M3 rows (4 and 6 layers), each with its own log10 edges: all panels span the union of the edges."""
    rng = np.random.default_rng()

    def histograms(layers, lo, hi):
        edges = np.linspace(lo, hi, 5 * (hi - lo) + 1)
        return dict(layers=np.asarray(layers), terms=np.asarray(["r", "bc"]), log10_edges=edges,
                    counts=rng.integers(0, 50, (len(layers), 2, len(edges) - 1)),
                    zeros=np.zeros((len(layers), 2), dtype=int))

    rows = {"m1, step 0": histograms(["input_layer", "hidden.0", "hidden.1", "output"], -6, 2),
            "m3, step 0": histograms(["encoder_u", "encoder_v", "input_layer", "gates.0", "gates.1", "output"], -8, 1)}
    png = tmp_path / "gradients.png"
    fig = plot_gradients(rows, png, "helmholtz")
    assert png.stat().st_size > 1000
    panels = [ax for ax in fig.get_axes() if ax.axison]
    assert [ax.get_title() for ax in panels] == [*rows["m1, step 0"]["layers"], *rows["m3, step 0"]["layers"]]
    assert all(ax.get_xlim() == pytest.approx((1e-8, 1e2)) for ax in panels)
