"""pinnfast: fast physics-informed neural networks (modified MLP + learning-rate annealing)."""
import re

from setuptools import setup

VERSION = re.search(r'__version__ = "(.+)"', open("pinnfast/_version.py", encoding="utf-8").read()).group(1)

setup(
    name="pinnfast",
    version=VERSION,
    description="Fast PINNs: modified MLP, learning-rate annealing, forward Taylor jets and fused Triton kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["pinnfast", "pinnfast.kernels"],
    # The Triton code lives in the top-level folder kernels/ and installs as pinnfast.kernels.
    package_dir={"pinnfast": "pinnfast", "pinnfast.kernels": "kernels"},
    package_data={"pinnfast": ["data/*.npz"]},
    # The main job needs only these: the CPU path never imports triton (no macOS/Windows wheels) or the test tools.
    install_requires=["torch>=2.11", "numpy", "matplotlib", "tqdm"],
    extras_require={
        "triton": ["triton>=3.6"],
        "test": ["triton>=3.6", "pytest", "pytest-benchmark"],
    },
    entry_points={"console_scripts": ["pinnfast = pinnfast.cli:command"]},
)
