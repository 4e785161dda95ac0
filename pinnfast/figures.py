"""The figures besides the training history: ``reproduce``'s comparisons (prediction vs exact fields, training
curves per run), the residual field of a trained network, and ``diagnose``'s per-layer gradient histograms.

Every function writes its PNG and returns the (closed) figure, so that tests can inspect its colour scales.
"""
import numpy as np
from matplotlib import pyplot as plt
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import MaxNLocator

from .plot_common import TERMS, curve, finite, readable_log_ticks, save_png, term_label, tidy_axes
from .runfolder import metrics_table


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
    save_png(fig, png_path, 90)
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
            curve(axes[0], steps, table["loss_r"], label, color=color, lw=1)
        lambdas = [n for n in table.dtype.names if n.startswith("lambda_")]
        for j, name in enumerate(lambdas):
            curve(axes[1], steps, table[name], f"{label}: {term_label(name, 'lambda_')}", color=color, lw=1,
                   ls=styles[j % len(styles)])
        if with_nu and "nu" in table.dtype.names:
            axes[2].plot(steps, finite(table["nu"]), color=color, lw=1, marker="o" if len(steps) < 20 else None,
                         ms=3, label=label)
    axes[0].set(xlabel="step", ylabel="residual loss L_r (log scale)", title="residual loss")
    axes[1].set(xlabel="step", ylabel="weight λ (log scale)", title="loss weights λ")
    if with_nu:
        if nu_true is not None:
            axes[2].axhline(nu_true, color="black", ls="--", lw=1.2, label=f"true ν = {nu_true:g}")
        axes[2].set(xlabel="step", ylabel="ν", title="viscosity ν")
        axes[2].ticklabel_format(axis="y", useOffset=False)
    for ax in axes:
        tidy_axes(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{problem_name}: training curves", fontsize=12)
    save_png(fig, png_path, 100)
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
    save_png(fig, png_path, 100)
    plt.close(fig)
    return fig


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
    save_png(fig, png_path, 90)
    plt.close(fig)
    return fig

