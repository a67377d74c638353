"""Wavelet sub-bands fused with the image, early (one CNN) or late (two CNNs).

Question: on BreastMNIST, do the sub-bands of a 2D discrete wavelet transform added to the
ultrasound image change what the review's plain CNN reaches (test AUC, accuracy, malignant
sensitivity), and does it matter whether they join the image at the input or after separate
feature extractors? Texture (speckle, echo pattern) separates lesions in ultrasound, and the
reviewed studies feed wavelet bands to CNNs for it.
Design (scoping review, wavelet + CNN fusion): `dwt(wavelet='haar', level=1)` in
preprocessing appends LL, LH, HL and HH (each 14x14, repeated back to 28x28) to the image.
`:fusion=early` (default): the plain CNN on the 5 channels. `:fusion=late`: model
`two_branch`, one plain CNN on the image and one on the 4 bands, pooled features concatenated
before the classifier (twice the plain CNN's backbone). `:wavelet=db2`, `:level=2` vary the
transform (level 2 adds the level-2 bands: 1 + 1 + 3 x 2 channels). `:fusion=twin` is the
late fusion's capacity control: the same two CNNs and head (an `ensemble` with
combine='concat'), both on the image alone. Everything else is the plain recipe
(medjax.configs.review); augmentation (random_affine) moves the image and its bands together,
though a decimated DWT is not shift-invariant, so a moved band is not exactly the band of the
moved image.
Data: BreastMNIST (546/78/156 at 28 px) by default; `:data=phantom` needs no files.
Command:
    python -m medjax.run --config experiments/review/dwt_fusion.py:fusion=early,seed=0 --workdir runs/review/dwt_early0
    python -m medjax.run --config experiments/review/dwt_fusion.py:fusion=late,seed=0 --workdir runs/review/dwt_late0
    python -m medjax.run --config experiments/review/dwt_fusion.py:fusion=twin,seed=0 --workdir runs/review/dwt_twin0
    python -m medjax.run --config experiments/review/dwt_fusion.py:runlocal,data=phantom --workdir /tmp/x
Result (BreastMNIST test set, seeds 0-2, mean +- SD; 2-core AMD EPYC CPU shared with other jobs):
early (72,722 parameters) AUC 0.897 +- 0.009, accuracy 0.859 +- 0.006, malignant sensitivity
0.643 +- 0.063; late (144,722) AUC 0.910 +- 0.019, accuracy 0.880 +- 0.019, sensitivity
0.762 +- 0.041; the plain CNN (72,146) 0.903 +- 0.007, 0.865 +- 0.019, 0.643 +- 0.041. The
capacity control `:fusion=twin` (144,290, no bands) AUC 0.917 +- 0.027, accuracy 0.895 +- 0.036,
sensitivity 0.746 +- 0.099. Early fusion changes nothing; late fusion finds more malignant
lesions than the plain CNN (about 5 more of 42 per seed), but the twin CNNs without any
wavelet band do as well: the gain is the second network, not the wavelet bands.
"""

from medjax.configs.review import review_config
from medjax.errors import ConfigError

FUSIONS = ("early", "late", "twin")


def get_config(arg=None):
    c, arg = review_config(arg, fusion="early", wavelet="haar", level=1)
    if arg.fusion not in FUSIONS:
        raise ConfigError(f"config argument fusion={arg.fusion!r}; valid: {', '.join(FUSIONS)}")
    if arg.fusion == "twin":
        # The late fusion's capacity control: its two CNNs, both on the image, no bands.
        c.model.name = "ensemble"
        c.model.members = ("cnn", "cnn")
        c.model.combine = "concat"
        return c.lock()
    c.data.preprocess = (
        *c.data.preprocess,
        f"dwt(wavelet={arg.wavelet!r}, level={arg.level}, channels=1)",
    )
    if arg.fusion == "late":
        c.model.name = "two_branch"
        c.model.branches = ("cnn", "cnn")
        c.model.branch_channels = c.data.channels
    return c.lock()
