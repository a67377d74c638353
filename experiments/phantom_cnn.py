"""Can a small CNN find faint lesions in speckled ultrasound-like images? (the default run)

Question: does the whole medjax path (data, preprocessing, augmentation, model, optimizer,
checkpoints, evaluation, run card) work end to end, with no download?
Data: the built-in phantom source: 2048/512/512 generated 28 px images, lesion absent (0) or
present (1), with ultrasound speckle noise.
Command:
    python -m medjax.run --config experiments/phantom_cnn.py --workdir runs/phantom
    python -m medjax.run --config experiments/phantom_cnn.py:runlocal --workdir /tmp/smoke
Result (seed 0, 2-core Xeon CPU, jax 0.12.0.1, 1.1 min): test AUC 0.950 [0.931, 0.966],
ACC 0.803 [0.770, 0.838].
"""

from medjax.configs import apply_runlocal, get_base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, modality="ultrasound")
    c = get_base_config()
    c.data.source = "phantom"
    c.data.modality = arg.modality
    c.data.augment = ("random_flip(axis='both')", "random_affine(rotate=15, shift=0.05)")
    c.model.name = "cnn"
    c.model.widths = (32, 64, 128)
    c.train.batch_size = 64
    c.train.num_epochs = 12.0
    c.optimizer.schedule = "cosine"
    if arg.runlocal:
        apply_runlocal(c)
    return c.lock()
