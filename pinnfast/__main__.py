"""``python -m pinnfast``: the command line (as the ``pinnfast`` script)."""
import sys

from .cli import command

sys.exit(command())
