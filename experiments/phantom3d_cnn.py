"""Can a small 3D CNN find faint lesions in noisy MRI-like volumes? (the 3D default run)

Question: does the whole medjax path work on volumes (data, preprocessing, a 3D model,
evaluation, explanations, prediction and export), with no download?
Data: the built-in phantom3d source: 512/128/256 generated volumes of 16 x 32 x 32 voxels,
lesion absent (0) or present (1), with Rician (MRI) noise.
Command:
    python -m medjax.run --config experiments/phantom3d_cnn.py --workdir runs/phantom3d
    python -m medjax.run --config experiments/phantom3d_cnn.py:runlocal --workdir /tmp/smoke3d
Result (seed 0, 2-core AMD EPYC CPU shared with other jobs, 8.2 min): test AUC 0.999
[0.998, 1.000], ACC 0.961 [0.938, 0.980]; the validation-fitted temperature 0.10 lowered the
test ECE from 0.132 to 0.042 (the model was under-confident).
"""

from medjax.configs import apply_runlocal, get_base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, runlocal=False, modality="mri")
    c = get_base_config()
    c.data.source = "phantom3d"
    c.data.modality = arg.modality
    c.data.depth = 16
    c.data.image_size = 32
    c.data.num_train, c.data.num_val, c.data.num_test = 512, 128, 256
    c.data.augment = ("random_flip(axis='both')",)
    c.model.name = "cnn3d"
    c.model.widths = (8, 16, 32)
    c.model.convs_per_stage = 1
    c.train.batch_size = 32
    c.train.num_epochs = 10.0
    c.eval.batch_size = 64
    c.optimizer.schedule = "cosine"
    if arg.runlocal:
        apply_runlocal(c)
        c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
        c.train.batch_size = 16
    return c.lock()
