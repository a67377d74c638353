"""The review's baseline: a plain small CNN, the network every other design in
experiments/review/ is compared against on the same data, budget and seeds.

Question: what does a single small CNN reach on BreastMNIST (or PneumoniaMNIST) with the
review recipe (medjax.configs.review), so that each hybrid design's gain is measured against it?
Data: BreastMNIST (breast ultrasound, 546/78/156, malignant 27%) by default; `:data=
pneumoniamnist` or `:data=phantom` (generated, no files).
Command:
    python -m medjax.run --config experiments/review/plain_cnn.py:seed=0 --workdir runs/review/plain0
    python -m medjax.run --config experiments/review/plain_cnn.py:runlocal,data=phantom --workdir /tmp/x
Result: see the README's "The review's designs" (mean +- SD over seeds 0-2).
"""

from medjax.configs.review import review_config


def get_config(arg=None):
    c, _ = review_config(arg)
    return c.lock()
