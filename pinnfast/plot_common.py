"""What the figures share: matplotlib drawing to files (Agg), history curves (a running mean over long noisy
runs), tick labels for steps and short log axes, the loss terms' labels, and writing a PNG atomically."""
import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator  # noqa: E402

from .runfolder import write_file  # noqa: E402

TERMS = {"r": "residual", "d": "data", "bc": "boundary", "ic": "initial"}


def finite(values):
    """The values as floats, non-finite ones as NaN (gaps in a curve)."""
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


def curve(ax, steps, values, label, log=True, **style):
    """One history line; long runs: the raw values faint and a running mean on top."""
    values = finite(values)
    marker = "o" if len(values) < 20 else None
    plot = ax.semilogy if log else ax.plot
    smooth = _smoothed(steps, values, log)
    if smooth is None:
        return plot(steps, values, label=label, marker=marker, ms=3, **style)[0]
    line = plot(steps, values, lw=0.4, alpha=0.25, **{k: v for k, v in style.items() if k != "lw"})[0]
    return plot(*smooth, label=label, **dict(style, color=line.get_color()))[0]


def step_ticks(nbins="auto"):
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


def tidy_axes(ax):
    """Integer steps on x; plain numbers on a log y-axis of less than two decades."""
    ax.xaxis.set_major_locator(step_ticks())
    if ax.get_yscale() == "log":
        readable_log_ticks(ax.yaxis, *ax.get_ylim())


def term_label(column, prefix):
    """``loss_bc`` → ``L_bc (boundary)``, ``lambda_d`` → ``λ_d (data)``."""
    term = column[len(prefix):]
    symbol = "L" if prefix == "loss_" else "λ"
    return f"{symbol}_{term} ({TERMS[term]})" if term in TERMS else f"{symbol}_{term}"


def save_png(fig, png_path, dpi):
    """The figure as a PNG at ``png_path``, written atomically (a failed write names the file)."""
    write_file(png_path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
