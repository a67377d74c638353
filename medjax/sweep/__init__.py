"""Ablation studies and sweeps: many runs of one experiment file, their statistics and plots.

python -m medjax.sweep --config experiments/ablations/NAME.py[:args] --workdir DIR
python -m medjax.sweep --summarize DIR
"""

from medjax.sweep.grid import load_sweep, product

__all__ = ["load_sweep", "product"]
