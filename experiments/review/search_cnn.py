"""Evolved architectures (the review's "genetic DCNN" studies): a genetic algorithm chooses the
plain CNN's depth, widths, kernel size, convolutions per stage, pooling, activation, dropout
and learning rate, by validation AUC.

Question: does a small architecture search find a CNN that beats the hand-set plain CNN
(experiments/review/plain_cnn.py) on BreastMNIST, and is the gain still there on the test
split, read once for the best candidate only?
Design: the evolved-DCNN studies of the scoping review: a population of CNNs encoded as
genomes, tournament selection, crossover and mutation over a few generations, fitness the
validation metric, the winner retrained as a plain config (DIR/best_config.py). Candidates
train for `:epochs=N` (default 5) of the review recipe's 20, so a search fits a CPU budget;
medjax.search's search.max_params adds a parameter budget as a second objective.
Data: BreastMNIST (546/78/156, malignant 27%) by default; `:data=pneumoniamnist` or
`:data=phantom` (generated, no files). `:runlocal` is the smoke mode: population 3,
2 generations, 12-step candidates of widths up to (4, 8, 16).
Command:
    python -m medjax.search --config experiments/review/search_cnn.py --workdir runs/review/search
    python -m medjax.run --config runs/review/search/best_config.py --workdir runs/review/best0
    python -m medjax.search --config experiments/review/search_cnn.py:runlocal,data=phantom \
        --workdir /tmp/search
Result (BreastMNIST, the default search: population 6, 3 generations, 5-epoch candidates,
search.seed 0; 16 runs trained, 2 repeats answered from the cache; 7.3 min of CPU time, 35 min
wall on the 2-core CPU shared with other jobs): the best candidate, found in generation 0, is
widths (32, 64, 128), 5x5 kernels, 2 convs a stage, max pooling, relu, dropout 0.4, learning
rate 3e-4 (795,554 parameters; the plain CNN's (16, 32, 64) has 72,146): validation AUC 0.936
and test AUC 0.895 (accuracy 0.865) at 5 epochs, where the plain CNN at the same 5 epochs
(this file without the search) reached validation 0.917, test 0.867. Retrained with the review
recipe's 20 epochs (best_config.py, --config.train.num_epochs=20, seeds 0-2): test AUC 0.900
+- 0.018, accuracy 0.865 +- 0.032, malignant sensitivity 0.690 +- 0.048 (validation AUC 0.969
+- 0.006, the split it was chosen on), against the plain CNN's 0.903 +- 0.007, 0.865 +- 0.019,
0.643 +- 0.041: no gain in AUC that 3 seeds and 156 test images can show.
"""

from medjax.configs.review import review_config

SPACE = (
    "model.widths=[(16, 32), (32, 64), (16, 32, 64), (32, 64, 128), (16, 32, 64, 128)]",
    "model.kernel_size=[3, 5]",
    "model.convs_per_stage=[1, 2]",
    "model.pool=['max', 'avg']",
    "model.activation=['relu', 'gelu', 'silu']",
    "model.dropout=[0.0, 0.2, 0.4]",
    "optimizer.learning_rate=[0.0003, 0.001, 0.003]",
)


def get_config(arg=None):
    c, arg = review_config(arg, epochs=5.0)
    c.train.num_epochs = arg.epochs
    c.search.space = SPACE
    c.search.population = 6
    c.search.generations = 3
    c.search.tournament = 2
    c.search.elitism = 1
    if arg.runlocal:  # a search in under a minute on 2 cores: small nets, fewer extras
        c.search.space = ("model.widths=[(4, 8), (8, 16), (4, 8, 16)]", *SPACE[1:])
        c.search.population, c.search.generations = 3, 2
        c.log.plots = c.log.tensorboard = False
        c.eval.bootstrap_samples = 20
        c.eval.gap_check = False
    return c.lock()
