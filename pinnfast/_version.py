"""The package version, in one place: setup.py reads it, ``pinnfast.__version__`` and ``--version`` show it."""
__version__ = "0.2.0"
