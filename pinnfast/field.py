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
    """One row per time: |r| = sqrt(r_u² + r_v²) (log colour scale) and, with an exact solution, the error."""
    from matplotlib.colors import LogNorm

    from .plots import plt

    exact = "u_exact" in field
    rows, cols = len(field["t"]), 2 if exact else 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4.2 * rows), squeeze=False, constrained_layout=True)
    extent = (field["x"][0], field["x"][-1], field["y"][0], field["y"][-1])
    for k, t in enumerate(field["t"]):
        magnitude = np.hypot(field["r_u"][k], field["r_v"][k])
        image = axes[k, 0].imshow(magnitude, origin="lower", extent=extent, norm=LogNorm(), cmap="magma")
        axes[k, 0].set(title=f"|r| at t = {t:.3g} (ν = {field['nu']:.4g})", xlabel="x", ylabel="y")
        fig.colorbar(image, ax=axes[k, 0])
        if exact:
            error = np.hypot(field["u"][k] - field["u_exact"][k], field["v"][k] - field["v_exact"][k])
            image = axes[k, 1].imshow(error, origin="lower", extent=extent, cmap="viridis")
            axes[k, 1].set(title=f"|(u, v) − exact| at t = {t:.3g}", xlabel="x", ylabel="y")
            fig.colorbar(image, ax=axes[k, 1])
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
