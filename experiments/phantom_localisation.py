"""Do a small CNN's explanations point at the phantom lesion it was trained to find?

Question: on phantom images whose lesion masks are known (medjax.data.phantom.phantom_masks),
do saliency and CAM maps put their peak and their energy on the lesion, far above random maps
and above a centre-bias map, and does deleting pixels in their order lower the lesion
probability faster than random orderings (RISE deletion AUC)?
Data: the built-in phantom source, 28 px, lesion absent (0) or present (1), MRI (Rician) noise;
the lesions are 2-4 px in radius, 2-9 % of the image.
Command:
    python tools/localisation_bench.py --workdir runs/phantom_localisation
Result: see the README, "Do the explanations point at the lesion?".
"""

from medjax.configs import apply_runlocal, get_base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, steps=300, train=1024, modality="mri", runlocal=False)
    c = get_base_config()
    c.data.source = "phantom"
    c.data.modality = arg.modality
    c.data.num_train, c.data.num_val, c.data.num_test = arg.train, 256, 256
    c.model.name = "cnn"
    c.model.widths = (16, 32)
    c.train.batch_size = 64
    c.train.num_steps = arg.steps
    c.train.log_every_steps = 50
    c.train.eval_every_epochs = 4.0
    c.train.checkpoint_every_minutes = 60.0
    c.eval.bootstrap_samples = 100
    c.eval.gap_check = False
    if arg.runlocal:
        apply_runlocal(c)
    return c.lock()
