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
