"""Residual field of a trained run on a regular (x, y) grid at chosen times: npz + PNG heat maps."""
import numpy as np
import torch

from .burgers import exact_solution
from .errors import PinnfastError
from .evaluate import evaluate_residuals


def domain_box(network):
    """The (lo, hi) box that the network's input normalisation maps to [−1, 1]."""
    lo = ((-1 - network.in_shift) / network.in_scale).tolist()
    hi = ((1 - network.in_shift) / network.in_scale).tolist()
    return lo, hi


def residual_field(problem, times, grid=200, exact_nu=None, chunk_size=1 << 18):
    """Evaluate (u, v, r_u, r_v) on a grid × grid mesh of the domain's (x, y) at each time in ``times``."""
    if grid < 2:
        raise PinnfastError(f"--grid must be at least 2, got {grid}")
    lo, hi = domain_box(problem.network)
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    mesh_x, mesh_y = np.meshgrid(xs, ys, indexing="xy")
    times = np.asarray(times, dtype=float)
    points = np.stack([np.broadcast_to(mesh_x, (len(times), grid, grid)),
                       np.broadcast_to(mesh_y, (len(times), grid, grid)),
                       np.broadcast_to(times[:, None, None], (len(times), grid, grid))], -1).reshape(-1, 3)
    fields = evaluate_residuals(problem.network, torch.tensor(points, dtype=torch.float32), problem.nu.detach(),
                                chunk_size=chunk_size).numpy().reshape(len(times), grid, grid, 4)
    result = {"x": xs, "y": ys, "t": times, "u": fields[..., 0], "v": fields[..., 1], "r_u": fields[..., 2],
              "r_v": fields[..., 3], "nu": problem.nu.item()}
    if exact_nu is not None:
        u_exact, v_exact = exact_solution(points[:, 0], points[:, 1], points[:, 2], exact_nu)
        result["u_exact"] = u_exact.reshape(len(times), grid, grid)
        result["v_exact"] = v_exact.reshape(len(times), grid, grid)
    return result


def plot_field(field, png_path):
    """One row per time: |r| = sqrt(r_u² + r_v²) (log colour scale) and, with an exact solution, the error
    |(u, v) − exact| (log colour scale); one scale for all |r| panels and one for all error panels. Returns the
    (closed) figure."""
    from .plots import MaxNLocator, extend_below, log_norm, plt, readable_log_ticks

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
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return fig
