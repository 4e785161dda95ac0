"""PNG figures: the training history of a run (ν, losses and λ against step)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training(metrics_csv, png_path):
    """Panels from a run's metrics CSV against step: the losses (log scale), the weights λ and, if learned, ν."""
    table = np.atleast_1d(np.genfromtxt(metrics_csv, delimiter=",", names=True))
    names = table.dtype.names
    panels = 3 if "nu" in names else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.6), constrained_layout=True)
    for name in (n for n in names if n.startswith("loss")):
        axes[0].semilogy(table["step"], table[name], label=name)
    axes[0].set(xlabel="step", title="losses")
    axes[0].legend()
    for name in (n for n in names if n.startswith("lambda_")):
        axes[1].semilogy(table["step"], table[name], label=name)
    axes[1].set(xlabel="step", title="loss weights λ")
    axes[1].legend()
    if "nu" in names:
        axes[2].plot(table["step"], table["nu"])
        axes[2].set(xlabel="step", ylabel="ν", title="viscosity")
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
