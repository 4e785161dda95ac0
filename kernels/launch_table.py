"""Tile and warps per kernel configuration: written by `python3 benchmarks/sm90_static.py --search`."""
LAUNCH_TABLE = {}
