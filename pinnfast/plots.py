"""PNG figures: the training history of a run, the ``reproduce`` comparison figures (fields, curves) and the
per-layer gradient histograms of ``diagnose``.

Every function writes its PNG and returns the (closed) figure, so that tests can inspect its colour scales.
"""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator  # noqa: E402

from .pde import symbol  # noqa: E402
from .runfolder import metrics_table, write_file  # noqa: E402

TERMS = {"r": "residual", "d": "data", "bc": "boundary", "ic": "initial"}
QUANTITIES = {"nu": "viscosity"}  # panel titles of learned unknowns: "viscosity ν"
TRAINING_WIDTH = 11.0  # inches


# ----------------------------------------------------------------- helpers
def _finite(values):
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def _smoothed(steps, values, log=True):
    """Running mean (of log values for log axes) for long noisy curves; None when the curve is short."""
    n = len(values)
    if n < 400:
        return None
    width = n // 100
    data = np.log(np.clip(values, 1e-300, None)) if log else values
    data = np.where(np.isfinite(data), data, np.nanmean(data))
    kernel = np.ones(width) / width
    mean = np.convolve(data, kernel, mode="valid")
    x = steps[width // 2: width // 2 + len(mean)]
    return x, (np.exp(mean) if log else mean)


def _curve(ax, steps, values, label, log=True, **style):
    """One history line; long runs: the raw values faint and a running mean on top."""
    values = _finite(values)
    marker = "o" if len(values) < 20 else None
    plot = ax.semilogy if log else ax.plot
    smooth = _smoothed(steps, values, log)
    if smooth is None:
        return plot(steps, values, label=label, marker=marker, ms=3, **style)[0]
    line = plot(steps, values, lw=0.4, alpha=0.25, **{k: v for k, v in style.items() if k != "lw"})[0]
    return plot(*smooth, label=label, **dict(style, color=line.get_color()))[0]


def _step_ticks(nbins="auto"):
    return MaxNLocator(nbins=nbins, steps=[1, 2, 5, 10], integer=True, min_n_ticks=1)


class _PlainLogFormatter(LogFormatterSciNotation):
    """Labels the ticks matplotlib would label on a log axis, as plain numbers (0.03, 2, 40) not 3×10⁻²."""

    def __call__(self, x, pos=None):
        return f"{x:g}".replace("-", "\N{MINUS SIGN}") if super().__call__(x, pos) else ""


def readable_log_ticks(axis, lo, hi):
    """Plain-number labels on a log ``axis`` (an x/y Axis) spanning less than two decades [lo, hi]."""
    if lo > 0 and hi / lo < 100:
        axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
        axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _tidy_axes(ax):
    """Integer steps on x; plain numbers on a log y-axis of less than two decades."""
    ax.xaxis.set_major_locator(_step_ticks())
    if ax.get_yscale() == "log":
        readable_log_ticks(ax.yaxis, *ax.get_ylim())


def _term_label(column, prefix):
    """``loss_bc`` → ``L_bc (boundary)``, ``lambda_d`` → ``λ_d (data)``."""
    term = column[len(prefix):]
    symbol = "L" if prefix == "loss_" else "λ"
    return f"{symbol}_{term} ({TERMS[term]})" if term in TERMS else f"{symbol}_{term}"


def _decimals(spread):
    """Decimal places that show the first significant digit of ``spread``."""
    return max(0, -math.floor(math.log10(spread))) if spread and math.isfinite(spread) and spread > 0 else None


def format_nu(nu, spread=None, nu_true=None, name="nu"):
    """``ν = 0.02010 ± 0.00005 (+0.50 % vs true 0.02)``: ν (or the unknown ``name``) to the precision of its
    spread."""
    digits, who = _decimals(spread), symbol(name)
    if digits is None:
        text = f"{who} = {nu:.5g}"
    else:
        digits_nu = max(digits, 3 - math.floor(math.log10(abs(nu)))) if nu else digits
        text = f"{who} = {nu:.{digits_nu}f} ± {spread:.{digits}f}"
    if nu_true:
        error = 100 * (nu - nu_true) / nu_true
        text += f" ({error:+.{1 if abs(error) >= 10 else 2}f} % vs true {nu_true:g})"
    return text


def log_norm(arrays, decades):
    """One LogNorm for all ``arrays``: top = their maximum, bottom = smallest positive value, at most
    ``decades`` below the top (smaller values are drawn in the lowest colour)."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=float)).ravel() for a in arrays])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return LogNorm(1e-16, 1.0, clip=True)
    top = values.max()
    bottom = max(values.min(), top * 10.0 ** -decades)
    return LogNorm(bottom, top if top > bottom else bottom * 10, clip=True)


def extend_below(arrays, norm):
    """The colour bar's ``extend``: "min" when some value lies below the scale's bottom (drawn in its lowest
    colour), else "neither"."""
    return "min" if any(np.any(np.abs(np.asarray(a)) < norm.vmin) for a in arrays) else "neither"


# ----------------------------------------------------------------- training history
def plot_training(metrics_csv, png_path, summary=None):
    """Training history of a run: losses and loss weights λ against step (log scale) and each learned unknown
    (Burgers: ν) in a panel of its own.

    ``summary`` is the run's result dict. Keys used: ``problem``, ``model``, ``steps``, ``data`` (its basename
    goes in the title), and for each unknown, e.g. ν, ``nu`` (reported value), ``nu_sigma`` (its error bar;
    else ``nu_spread``, else ``nu_std``, the jitter over the averaging window), ``nu_window`` ([first, last] step
    of the window, or None), ``nu_warmup`` (steps with ν frozen) and ``nu_true`` (None when unknown). Missing keys
    are left out of the figure.
    """
    summary = dict(summary or {})
    table = metrics_table(metrics_csv)
    names = table.dtype.names
    steps = np.asarray(table["step"], dtype=float)
    unknowns = _unknown_columns(names)
    panels = {name: f"unknown {name}" for name in unknowns}  # apart from the "loss" and "lambda" panels
    height = 4.2 + 4 * len(unknowns)
    fig, axes = plt.subplot_mosaic([["loss", "lambda"]] + [[panels[name]] * 2 for name in unknowns],
                                   figsize=(TRAINING_WIDTH, height), height_ratios=[1] + [1.25] * len(unknowns),
                                   gridspec_kw=_training_margins(height, len(unknowns)))

    ax = axes["loss"]
    if "loss" in names:
        _curve(ax, steps, table["loss"], "total (weighted sum)", color="black", lw=1, ls="--", zorder=3)
    for name in (n for n in names if n.startswith("loss_")):
        _curve(ax, steps, table[name], _term_label(name, "loss_"), lw=1)
    ax.set(xlabel="step", ylabel="loss (log scale)", title="losses")
    ax.legend(fontsize=8)

    ax = axes["lambda"]
    for name in (n for n in names if n.startswith("lambda_")):
        line = _curve(ax, steps, table[name], _term_label(name, "lambda_"), lw=1)
        term = name[len("lambda_"):]
        known = np.isfinite(table[f"imbalance_{term}"]) if f"imbalance_{term}" in names else []
        if np.any(known):  # measured at annealing steps only
            _curve(ax, steps[known], table[f"imbalance_{term}"][known], f"imbalance max|∇L_r| / mean|∇L_{term}|",
                   lw=0.8, ls=":", color=line.get_color())
    ax.set(xlabel="step", ylabel="weight λ, ratio (log scale)", title="loss weights λ and the imbalance ratio")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)

    for name in unknowns:
        members = [_finite(table[n]) for n in names if _member_of(n, name)]
        _plot_nu(axes[panels[name]], steps, _finite(table[name]), summary, members, name)
    for ax in axes.values():
        _tidy_axes(ax)
    fig.suptitle(_training_title(metrics_csv, summary, unknowns), fontsize=12, y=1 - 0.12 / height)
    _save(fig, png_path, 110)
    plt.close(fig)
    return fig


def _training_margins(height, n_unknowns):
    """The training figure's margins, fixed in inches (matplotlib's constrained layout finds about the same in
    0.8 s, a seventh of the main job's time outside training): the title above, the y labels on the left, the
    unknown's legend below its panel, and between rows an x label and the next title (and a legend when several
    unknowns' panels are stacked)."""
    left, right, top, between_columns = 0.75, 0.4, 0.7, 0.85
    bottom = 1.0 if n_unknowns else 0.6
    between_rows = 0.8 if n_unknowns <= 1 else 1.35
    rows = 1 + n_unknowns
    axes_height = (height - top - bottom - between_rows * (rows - 1)) / rows
    axes_width = (TRAINING_WIDTH - left - right - between_columns) / 2
    return dict(left=left / TRAINING_WIDTH, right=1 - right / TRAINING_WIDTH, top=1 - top / height,
                bottom=bottom / height, hspace=between_rows / axes_height, wspace=between_columns / axes_width)


def _unknown_columns(names):
    """The metrics columns of learned unknowns: not the step, a loss, a weight λ, an imbalance ratio, the learning
    rate, or an ensemble member's column (``nu_0`` beside ``nu``)."""
    return [n for n in names if n not in ("step", "loss", "lr") and not n.startswith(("loss_", "lambda_", "imbalance_"))
            and not any(_member_of(n, other) for other in names)]


def _member_of(column, name):
    return column.startswith(name + "_") and column[len(name) + 1:].isdigit()


def _error_bar(summary, name):
    """The unknown's error bar: ``_sigma`` (sub-box jackknife, with an ensemble's spread), else an ensemble's
    spread, else the jitter over the averaging window (``_std``; runs from before the error bar)."""
    for key in ("sigma", "spread", "std"):
        if summary.get(f"{name}_{key}") is not None:
            return summary[f"{name}_{key}"]
    return None


def _training_title(metrics_csv, summary, unknowns):
    parts = []
    if summary.get("data"):
        parts.append(Path(str(summary["data"])).name)
    parts.append(" ".join(str(summary[k]) for k in ("problem", "model") if summary.get(k))
                 or Path(metrics_csv).parent.name)
    learned = [name for name in unknowns if summary.get(name) is not None]
    for name in learned:
        text = format_nu(summary[name], _error_bar(summary, name), summary.get(f"{name}_true"), name)
        if f"{name}_window" in summary and summary[f"{name}_window"] is None:
            text += " (initial value: the run ended inside the warm-up)"
        parts.append(text)
    if not learned and summary.get("steps") is not None:
        parts.append(f"{summary['steps']} steps")
    return "  ·  ".join(parts)


def _plot_nu(ax, steps, nu, summary, members=(), name="nu"):
    """ν (or the unknown ``name``) against step: warm-up and averaging window shaded, reported value and truth as
    lines, a zoomed inset; an ensemble's members as thin lines, its mean as the value, its spread as the error
    bar."""
    nu_true, reported, who = summary.get(f"{name}_true"), summary.get(name), symbol(name)
    spread = _error_bar(summary, name)
    warmup, window = summary.get(f"{name}_warmup"), summary.get(f"{name}_window")
    last = steps[-1]
    if warmup:
        ax.axvspan(steps[0] - 0.5, min(warmup, last) + 0.5, color="0.6", alpha=0.25, lw=0,
                   label=f"warm-up: {who} frozen (first {warmup} steps)")
    if window is not None:
        ax.axvspan(window[0] - 0.5, window[1] + 0.5, color="tab:orange", alpha=0.18, lw=0,
                   label="averaging window (" + (f"steps {window[0]}–{window[1]})" if window[1] > window[0] else
                                                  f"step {window[0]})"))
    for k, member in enumerate(members):
        ax.plot(steps, member, color="tab:cyan", lw=0.5, alpha=0.6,
                label=f"{who} of each member" if k == 0 else None)
    ax.plot(steps, nu, color="tab:blue", lw=1, marker="o" if len(nu) < 20 else None, ms=3,
            label=f"{who} (members' mean)" if members else f"{who} (learned)")
    if reported is not None:
        ax.axhline(reported, color="tab:red", lw=1, label="reported " + format_nu(reported, spread, name=name))
    if nu_true is not None:
        ax.axhline(nu_true, color="black", ls="--", lw=1.2, label=f"true {who} = {nu_true:g}")
    ax.set(xlabel="step", ylabel=who, title=f"{QUANTITIES.get(name, 'unknown')} {who}")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.margins(x=0.01)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    if window is not None:
        _nu_inset(ax, steps, nu, window, reported, spread, nu_true, who)


def _inset_place(ax, steps, nu, lines):
    """Inset bounds (axes fraction) in the right half of ``ax``, at the top or the bottom, whichever hides fewer
    ν points (horizontal ``lines`` stay visible on the left and only break ties); when ν would still be hidden,
    the y-limits grow to clear the inset's side."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    if not y1 > y0:
        return [0.52, 0.44, 0.46, 0.5]
    points = nu[(steps >= x0 + 0.42 * (x1 - x0)) & np.isfinite(nu)]
    lines = np.asarray(lines, dtype=float)
    below, above = 0.34, 0.69  # the inset with its tick labels covers y > 0.34 (top) or y < 0.69 (bottom)

    def hidden(covered):
        share = covered((points - y0) / (y1 - y0)).mean() if points.size else 0.0
        return share, share + 0.01 * covered((lines - y0) / (y1 - y0)).sum()

    (top_share, top), (bottom_share, bottom) = hidden(lambda f: f > below), hidden(lambda f: f < above)
    if top <= bottom:
        if top_share > 0.02:
            ax.set_ylim(y0, y0 + (max(points.max(), *lines) - y0) / (below - 0.02))
        return [0.52, 0.44, 0.46, 0.5]
    if bottom_share > 0.02:
        ax.set_ylim(y1 - (y1 - min(points.min(), *lines)) / (1 - above - 0.02), y1)
    return [0.52, 0.17, 0.46, 0.5]


def _nu_inset(ax, steps, nu, window, reported, spread, nu_true, who="ν"):
    """Zoom on the averaging window: y fitted to ν (the unknown written ``who``) there, reported value ± spread as
    a band, the truth if near."""
    inside = (steps >= window[0]) & (steps <= window[1])
    values = nu[inside & np.isfinite(nu)]
    if values.size == 0:
        return
    centre = reported if reported is not None else float(values.mean())
    band = spread or 0.0
    lo, hi = min(values.min(), centre - band), max(values.max(), centre + band)
    span = hi - lo if hi > lo else max(abs(centre) * 1e-3, 1e-12)
    truth_shown = nu_true is not None and lo - 2 * span <= nu_true <= hi + 2 * span
    if truth_shown:
        lo, hi = min(lo, nu_true), max(hi, nu_true)
        span = hi - lo
    lo, hi = lo - 0.12 * span, hi + 0.12 * span

    inset = ax.inset_axes(_inset_place(ax, steps, nu, [v for v in (reported, nu_true) if v is not None]))
    inset.axvspan(window[0] - 0.5, window[1] + 0.5, color="tab:orange", alpha=0.12, lw=0)
    if band:
        inset.axhspan(centre - band, centre + band, color="tab:red", alpha=0.15, lw=0)
    inset.axhline(centre, color="tab:red", lw=1)
    if truth_shown:
        inset.axhline(nu_true, color="black", ls="--", lw=1.2)
    inset.plot(steps[inside], nu[inside], color="tab:blue", lw=0.8, marker="o" if inside.sum() < 20 else None,
               ms=3)
    inset.set_xlim(window[0] - 0.5, window[1] + 0.5)
    inset.set_ylim(lo, hi)
    inset.ticklabel_format(axis="y", useOffset=False)
    inset.tick_params(labelsize=7)
    inset.xaxis.set_major_locator(_step_ticks(4))
    inset.yaxis.set_major_locator(MaxNLocator(5))
    reference, name = (nu_true, "true") if nu_true else (centre, "reported")
    if reference:
        percent = inset.secondary_yaxis("right", functions=(lambda v: 100 * (v - reference) / reference,
                                                           lambda p: reference * (1 + p / 100)))
        percent.tick_params(labelsize=7)
        percent.set_ylabel(f"% vs {name} {who}", fontsize=7)
    inset.set_xlabel("step", fontsize=7, labelpad=1)
    inset.set_ylabel(who, fontsize=7, labelpad=1)
    note = f"averaging window: reported {who} ± error bar"
    if nu_true is not None and not truth_shown:
        note += f"; true {who} {'above' if nu_true > hi else 'below'}, off scale"
    inset.set_title(note, fontsize=7, pad=3)


# ----------------------------------------------------------------- reproduce figures
def plot_reproduce_fields(problem_name, fields, png_path):
    """One row per run: prediction, exact and |error| (Burgers: u on (x, y) at mid-time).

    ``fields`` = {label: (prediction 2-D, exact 2-D, (x_axis, y_axis))}. Prediction and exact share one colour
    scale across all rows; all |error| panels share one log scale.
    """
    rows = {label: (np.asarray(p, dtype=float), np.asarray(e, dtype=float), axes)
            for label, (p, e, axes) in fields.items()}
    labels = ("x", "t") if problem_name == "klein-gordon" else ("x", "y")
    values = [a for p, e, _ in rows.values() for a in (p, e)]
    vmin = min(np.nanmin(a) for a in values)
    vmax = max(np.nanmax(a) for a in values)
    if any(np.nanmin(e) < 0 < np.nanmax(e) for _, e, _ in rows.values()):  # exact changes sign: centre on 0
        vmax = max(-vmin, vmax)
        norm, cmap = Normalize(-vmax, vmax), "RdBu_r"
    else:
        norm, cmap = Normalize(vmin, vmax if vmax > vmin else vmin + 1), "viridis"
    errors = {label: np.abs(p - e) for label, (p, e, _) in rows.items()}
    error_norm = log_norm(errors.values(), decades=3)

    fig, axes = plt.subplots(len(rows), 3, figsize=(12.5, 3.5 * len(rows) + 0.6), squeeze=False,
                             layout="constrained")
    for row, (label, (prediction, exact, grid_axes)) in enumerate(rows.items()):
        extent = (grid_axes[0][0], grid_axes[0][-1], grid_axes[1][0], grid_axes[1][-1])
        relative = np.linalg.norm(prediction - exact) / np.linalg.norm(exact) if np.any(exact) else float("nan")
        panels = ((f"{label}: prediction", prediction, norm, cmap), ("exact", exact, norm, cmap),
                  (f"{label}: |error|\nrel. L2 error = {relative:.1e}", np.maximum(errors[label], error_norm.vmin),
                   error_norm, "magma"))
        for col, (title, data, panel_norm, panel_cmap) in enumerate(panels):
            ax = axes[row, col]
            image = ax.imshow(data, origin="lower", extent=extent, aspect="auto", norm=panel_norm, cmap=panel_cmap)
            ax.set(title=title, xlabel=labels[0], ylabel=labels[1])
            ax.xaxis.set_major_locator(MaxNLocator(5))
            if col == 0:
                field_image = image
            elif col == 2:
                error_image = image
    bar = dict(shrink=0.9 if len(rows) > 1 else 1, aspect=18 * len(rows))
    fig.colorbar(field_image, ax=axes[:, :2], label="u", **bar)
    colorbar = fig.colorbar(error_image, ax=axes[:, 2], label="|u − u_exact|  (log scale)",
                            extend=extend_below(errors.values(), error_norm), **bar)
    readable_log_ticks(colorbar.ax.yaxis, error_norm.vmin, error_norm.vmax)
    fig.suptitle(f"{problem_name}: prediction vs exact solution", fontsize=12)
    _save(fig, png_path, 90)
    plt.close(fig)
    return fig


def plot_reproduce_curves(problem_name, runs, png_path, nu_true=None):
    """Residual loss, the loss weights λ and (when learned) ν against step, one colour per run.

    ``runs`` = {label: run folder holding metrics.csv}; ``nu_true`` is drawn as a dashed line on the ν panel.
    """
    tables = {label: metrics_table(folder) for label, folder in runs.items()}
    with_nu = any("nu" in t.dtype.names for t in tables.values())
    fig, axes = plt.subplots(1, 3 if with_nu else 2, figsize=(16 if with_nu else 11, 4.4), squeeze=False,
                             layout="constrained")
    axes = axes[0]
    styles = ("-", "--", ":", "-.")
    for k, (label, table) in enumerate(tables.items()):
        color = f"C{k % 10}"
        steps = np.asarray(table["step"], dtype=float)
        if "loss_r" in table.dtype.names:
            _curve(axes[0], steps, table["loss_r"], label, color=color, lw=1)
        lambdas = [n for n in table.dtype.names if n.startswith("lambda_")]
        for j, name in enumerate(lambdas):
            _curve(axes[1], steps, table[name], f"{label}: {_term_label(name, 'lambda_')}", color=color, lw=1,
                   ls=styles[j % len(styles)])
        if with_nu and "nu" in table.dtype.names:
            axes[2].plot(steps, _finite(table["nu"]), color=color, lw=1, marker="o" if len(steps) < 20 else None,
                         ms=3, label=label)
    axes[0].set(xlabel="step", ylabel="residual loss L_r (log scale)", title="residual loss")
    axes[1].set(xlabel="step", ylabel="weight λ (log scale)", title="loss weights λ")
    if with_nu:
        if nu_true is not None:
            axes[2].axhline(nu_true, color="black", ls="--", lw=1.2, label=f"true ν = {nu_true:g}")
        axes[2].set(xlabel="step", ylabel="ν", title="viscosity ν")
        axes[2].ticklabel_format(axis="y", useOffset=False)
    for ax in axes:
        _tidy_axes(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{problem_name}: training curves", fontsize=12)
    _save(fig, png_path, 100)
    plt.close(fig)
    return fig


def plot_field(field, png_path):
    """One row per time: |r| = sqrt(r_u² + r_v²) (log colour scale) and, with an exact solution, the error
    |(u, v) − exact| (log colour scale); one scale for all |r| panels and one for all error panels. Returns the
    (closed) figure."""
    exact = "u_exact" in field
    rows, cols = len(field["t"]), 2 if exact else 1
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 0.8, 4 * rows + 0.5), squeeze=False,
                             layout="constrained")
    extent = (field["x"][0], field["x"][-1], field["y"][0], field["y"][-1])
    magnitudes = [np.hypot(field["r_u"][k], field["r_v"][k]) for k in range(rows)]
    r_norm = log_norm(magnitudes, decades=6)
    if exact:
        errors = [np.hypot(field["u"][k] - field["u_exact"][k], field["v"][k] - field["v_exact"][k])
                  for k in range(rows)]
        error_norm = log_norm(errors, decades=4)
    for k, t in enumerate(field["t"]):
        r_image = axes[k, 0].imshow(np.maximum(magnitudes[k], r_norm.vmin), origin="lower", extent=extent,
                                    norm=r_norm, cmap="magma")
        axes[k, 0].set(title=f"|r| at t = {t:.3g}", xlabel="x", ylabel="y")
        if exact:
            error_image = axes[k, 1].imshow(np.maximum(errors[k], error_norm.vmin), origin="lower", extent=extent,
                                            norm=error_norm, cmap="viridis")
            axes[k, 1].set(title=f"|(u, v) − exact| at t = {t:.3g}", xlabel="x", ylabel="y")
    for ax in axes.ravel():
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
    bar = dict(shrink=0.9 if rows > 1 else 1, aspect=18 * rows)
    colorbar = fig.colorbar(r_image, ax=axes[:, 0], label="|r| = √(r_u² + r_v²)  (log scale)",
                            extend=extend_below(magnitudes, r_norm), **bar)
    readable_log_ticks(colorbar.ax.yaxis, r_norm.vmin, r_norm.vmax)
    if exact:
        colorbar = fig.colorbar(error_image, ax=axes[:, 1], label="|(u, v) − (u, v)_exact|  (log scale)",
                                extend=extend_below(errors, error_norm), **bar)
        readable_log_ticks(colorbar.ax.yaxis, error_norm.vmin, error_norm.vmax)
    fig.suptitle(f"residual field of the trained network (ν = {field['nu']:.5g})", fontsize=12)
    _save(fig, png_path, 100)
    plt.close(fig)
    return fig


# ----------------------------------------------------------------- diagnose
def plot_gradients(rows, png_path, title):
    """Per-layer distributions of |∇_W L_r| and of each |∇_W L_i| on a log scale, the terms overlaid (the paper's
    histograms of back-propagated gradients): one row per entry of ``rows`` = {label: histograms}, one panel per
    layer. Histograms (see :func:`~pinnfast.diagnose.gradient_statistics`): ``layers``, ``terms`` (r first),
    ``log10_edges``, ``counts`` (layers, terms, bins) and ``zeros`` (layers, terms: entries left off the log axis).
    All panels share one x axis."""
    columns = max(len(h["layers"]) for h in rows.values())
    width, height = 2.9 * columns + 0.6, 2.9 * len(rows) + 0.9
    fig, axes = plt.subplots(len(rows), columns, figsize=(width, height), squeeze=False, sharex=True)
    # margins in inches, fixed: constrained layout took seconds per figure of this many panels
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, top=1 - 0.8 / height, bottom=0.5 / height,
                        hspace=0.6, wspace=0.3)
    lo = min(h["log10_edges"][0] for h in rows.values())
    hi = max(h["log10_edges"][-1] for h in rows.values())
    for row, (label, histograms) in zip(axes, rows.items()):
        edges = 10.0 ** np.asarray(histograms["log10_edges"])
        for ax, layer, counts, zeros in zip(row, histograms["layers"], histograms["counts"], histograms["zeros"]):
            for k, term in enumerate(histograms["terms"]):
                fraction = counts[k] / max(counts[k].sum() + zeros[k], 1)
                name = f"∇L_{term} ({TERMS[term]})" if term in TERMS else f"∇L_{term}"
                ax.stairs(fraction, edges, fill=True, alpha=0.35, color=f"C{k}",
                          label=name + (f", {zeros[k]} zeros off scale" if zeros[k] else ""))
                ax.stairs(fraction, edges, color=f"C{k}", lw=1)
            ax.set_title(str(layer), fontsize=9)
            ax.tick_params(labelbottom=True, labelsize=7)
        row[0].set_xscale("log")
        row[0].set_xlim(10.0 ** lo, 10.0 ** hi)
        row[0].set_ylabel("fraction of the layer's weights", fontsize=8)
        row[0].legend(fontsize=6)
        row[0].annotate(label, (0, 1.2), xycoords="axes fraction", fontsize=10, fontweight="bold")
        for ax in row[len(histograms["layers"]):]:
            ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("|gradient| (log scale)", fontsize=8)
    fig.suptitle(title, fontsize=12)
    _save(fig, png_path, 90)
    plt.close(fig)
    return fig


def _save(fig, png_path, dpi):
    """The figure as a PNG at ``png_path``, written atomically (a failed write names the file)."""
    write_file(png_path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
