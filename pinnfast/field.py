"""Residual field of a trained run on a regular (x, y) grid at chosen times: npz + PNG heat maps."""
import numpy as np
import torch

from .burgers import exact_solution
from .errors import PinnfastError
from .evaluate import evaluate_residuals
from .models import domain_box


def residual_field(problem, times, grid=200, exact_nu=None, chunk_size=1 << 18, shard=False):
    """Evaluate (u, v, r_u, r_v) on a grid × grid mesh of the domain's (x, y) at each time in ``times``. The points
    are generated chunk by chunk; ``shard=True`` splits them over the ranks of a torch.distributed run."""
    if grid < 2:
        raise PinnfastError(f"--grid must be at least 2, got {grid}")
    lo, hi = domain_box(problem.network)
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    times = np.asarray(times, dtype=float)
    axes = [torch.tensor(axis, dtype=torch.float32) for axis in (xs, ys, times)]

    def points(start, stop):  # point k is (x_i, y_j, t_l) with k = (l · grid + j) · grid + i
        k = torch.arange(start, stop)
        return torch.stack([axes[0][k % grid], axes[1][k // grid % grid], axes[2][k // (grid * grid)]], 1)

    fields = evaluate_residuals(problem.network, points, problem.nu.detach(), n=len(times) * grid * grid,
                                chunk_size=chunk_size, shard=shard).numpy().reshape(len(times), grid, grid, 4)
    result = {"x": xs, "y": ys, "t": times, "u": fields[..., 0], "v": fields[..., 1], "r_u": fields[..., 2],
              "r_v": fields[..., 3], "nu": problem.nu.item()}
    if exact_nu is not None:
        mesh_x, mesh_y = np.meshgrid(xs, ys, indexing="xy")
        result["u_exact"], result["v_exact"] = exact_solution(mesh_x, mesh_y, times[:, None, None], exact_nu)
    return result
