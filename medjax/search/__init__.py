"""Genetic architecture search: evolve the keys of an experiment listed in config.search.space.

python -m medjax.search --config experiments/review/search_cnn.py --workdir DIR
"""
