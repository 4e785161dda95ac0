"""pinnfast: fast physics-informed neural networks (modified MLP + learning-rate annealing)."""
from setuptools import setup

setup(
    name="pinnfast",
    version="0.1.0",
    description="Fast PINNs: modified MLP, learning-rate annealing, forward Taylor jets and fused Triton kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["pinnfast", "pinnfast.kernels"],
    # The Triton code lives in the top-level folder kernels/ and installs as pinnfast.kernels.
    package_dir={"pinnfast": "pinnfast", "pinnfast.kernels": "kernels"},
    package_data={"pinnfast": ["data/*.npz"]},
    install_requires=["torch>=2.11", "numpy", "matplotlib", "tqdm"],
    extras_require={
        "triton": ["triton>=3.6"],
        "test": ["triton>=3.6", "pytest", "pytest-benchmark"],
    },
    entry_points={"console_scripts": ["pinnfast = pinnfast.cli:main"]},
)
