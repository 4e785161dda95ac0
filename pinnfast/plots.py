"""PNG figures: the training history of a run (here), the ``reproduce`` comparison figures (fields, curves), the
residual field and the per-layer gradient histograms of ``diagnose`` (in :mod:`pinnfast.figures`, importable from
here too).

Every function writes its PNG and returns the (closed) figure, so that tests can inspect its colour scales.
"""
import math
from pathlib import Path

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from .figures import (extend_below, log_norm, plot_field, plot_gradients,  # noqa: F401 (importable from here)
                      plot_reproduce_curves, plot_reproduce_fields)
from .names import symbol
from .plot_common import TERMS, readable_log_ticks  # noqa: F401 (importable from here)
from .plot_common import curve, finite, save_png, step_ticks, term_label, tidy_axes
from .runfolder import metrics_table

QUANTITIES = {"nu": "viscosity"}  # panel titles of learned unknowns: "viscosity ν"
TRAINING_WIDTH = 11.0  # inches


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
        curve(ax, steps, table["loss"], "total (weighted sum)", color="black", lw=1, ls="--", zorder=3)
    for name in (n for n in names if n.startswith("loss_")):
        curve(ax, steps, table[name], term_label(name, "loss_"), lw=1)
    ax.set(xlabel="step", ylabel="loss (log scale)", title="losses")
    ax.legend(fontsize=8)

    ax = axes["lambda"]
    for name in (n for n in names if n.startswith("lambda_")):
        line = curve(ax, steps, table[name], term_label(name, "lambda_"), lw=1)
        term = name[len("lambda_"):]
        known = np.isfinite(table[f"imbalance_{term}"]) if f"imbalance_{term}" in names else []
        if np.any(known):  # measured at annealing steps only
            curve(ax, steps[known], table[f"imbalance_{term}"][known], f"imbalance max|∇L_r| / mean|∇L_{term}|",
                   lw=0.8, ls=":", color=line.get_color())
    ax.set(xlabel="step", ylabel="weight λ, ratio (log scale)", title="loss weights λ and the imbalance ratio")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)

    for name in unknowns:
        members = [finite(table[n]) for n in names if _member_of(n, name)]
        _plot_nu(axes[panels[name]], steps, finite(table[name]), summary, members, name)
    for ax in axes.values():
        tidy_axes(ax)
    fig.suptitle(_training_title(metrics_csv, summary, unknowns), fontsize=12, y=1 - 0.12 / height)
    save_png(fig, png_path, 110)
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
    inset.xaxis.set_major_locator(step_ticks(4))
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
