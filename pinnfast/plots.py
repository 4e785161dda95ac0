"""PNG figures: the training history of a run (ν, losses and λ against step)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training(metrics_csv, png_path):
    """Three panels from a run's metrics CSV: ν, the losses (log scale) and λ_d against step."""
    table = np.genfromtxt(metrics_csv, delimiter=",", names=True)
    table = np.atleast_1d(table)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    axes[0].plot(table["step"], table["nu"])
    axes[0].set(xlabel="step", ylabel="ν", title="viscosity")
    for name in ("loss", "loss_r", "loss_d"):
        axes[1].semilogy(table["step"], table[name], label=name)
    axes[1].set(xlabel="step", title="losses")
    axes[1].legend()
    axes[2].plot(table["step"], table["lambda_d"])
    axes[2].set(xlabel="step", ylabel="λ_d", title="data-loss weight")
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
