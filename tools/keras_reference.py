"""Reference outputs of keras.applications models with random weights, for
tests/test_weights_keras.py.

    KERAS_BACKEND=numpy python tools/keras_reference.py --out DIR mobilenet_v2:224 resnet50:64

For each MODEL:SIZE[:ALPHA] (ALPHA: MobileNetV2's width; files then named MODEL_aALPHA)
writes DIR/MODEL.keras (model.save), DIR/MODEL.h5 (legacy HDF5),
DIR/MODEL_input.npy (NHWC float32, batch 2) and DIR/MODEL_logits.npy (inference, pre-softmax:
classifier_activation=None). Every batch norm gets random gamma/beta and per-channel moving
statistics, every bias a random value, so a wrong mapping (or a conv bias not folded) changes
the logits.
EfficientNet's in-model Normalization gets a random mean/variance, written to
DIR/MODEL_norm.npy ((mean, variance), the input normalisation the medjax side must apply).
`--gray MODEL` adds DIR/MODEL_gray_input.npy (N, H, W, 1) and DIR/MODEL_gray_logits.npy (the
logits of the gray image replicated to RGB); `--weights-h5 MODEL` adds DIR/MODEL.weights.h5
(model.save_weights).

Keras' numpy backend builds models about 50x faster than its jax backend (no per-shape
compilation of the initialisers) and computes convolutions with jax.lax, the rest with numpy;
the files are the same whichever backend writes them.
"""

import argparse
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "numpy")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

BUILDERS = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
    "vgg16": keras.applications.VGG16,
    "vgg19": keras.applications.VGG19,
    **{f"densenet{d}": getattr(keras.applications, f"DenseNet{d}") for d in (121, 169, 201)},
    "mobilenet_v2": keras.applications.MobileNetV2,
    **{f"efficientnet_b{i}": getattr(keras.applications, f"EfficientNetB{i}") for i in range(8)},
}


def randomise(model: keras.Model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Random He-normal kernels, biases, batch-norm affine parameters and input normalisation,
    then batch-norm statistics measured on the batch `x` (as tools/torch_reference.py): each
    channel's own mean and variance keep activations O(1) and the logits dependent on the
    input, where random statistics let constant shifts swamp it."""
    ranges = {
        "bias": (-0.1, 0.1),
        "beta": (-0.2, 0.2),
        "gamma": (0.5, 1.5),
        "mean": (0.3, 0.6),  # Normalization, on the 0..1 scale after Rescaling(1/255)
        "variance": (0.03, 0.09),
    }
    for w in model.weights:
        kind = w.path.rsplit("/", 1)[-1]
        if kind in ranges:
            w.assign(rng.uniform(*ranges[kind], w.shape).astype(np.float32))
        elif kind in ("kernel", "depthwise_kernel"):  # He normal: Keras' Glorot default
            # halves the signal's variance per ReLU layer, so VGG's biases would drown it
            fan_in = np.prod(w.shape[:-1]) if kind == "kernel" else np.prod(w.shape[:2])
            w.assign(rng.normal(0, np.sqrt(2 / fan_in), w.shape).astype(np.float32))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # its call reads copies made from the variables
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    momentum = [layer.momentum for layer in norms]
    for layer in norms:  # one pass in training mode: moving statistics = this batch's
        layer.momentum = 0.0
    model(x, training=True)
    for layer, m in zip(norms, momentum, strict=True):
        layer.momentum = m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="MODEL:SIZE[:ALPHA], MODEL a medjax name")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--gray", nargs="*", default=(), metavar="MODEL")
    parser.add_argument("--weights-h5", nargs="*", default=(), metavar="MODEL")
    args = parser.parse_args()
    jax.config.update("jax_default_matmul_precision", "highest")
    rng = np.random.default_rng(0)
    for item in args.models:
        name, size, *alpha = item.split(":")
        size = int(size)
        kwargs = {"alpha": float(alpha[0])} if alpha else {}
        model = BUILDERS[name](
            weights=None,
            input_shape=(size, size, 3),
            classes=args.num_classes,
            classifier_activation=None,
            **kwargs,
        )
        # Raw pixels for EfficientNet, which normalises them itself. The batch-norm statistics
        # come from 8 other images: from the test batch itself, the 2x2 maps of the last stage
        # at 64 px give 8 values per channel, variances near 0 and logits ill-conditioned
        # (float32 Keras 2e-4 from float64 Keras for ResNet50).
        low, high = (0, 255) if name.startswith("efficientnet") else (-1, 1)
        x = rng.uniform(low, high, (10, size, size, 3)).astype(np.float32)
        randomise(model, x[2:], rng)
        x = x[:2]
        stem = args.out / (f"{name}_a{alpha[0]}" if alpha else name)
        model.save(f"{stem}.keras")
        model.save(f"{stem}.h5")
        if name in args.weights_h5:
            model.save_weights(f"{stem}.weights.h5")
        if name.startswith("efficientnet"):
            # Found by type: a second model in the process names it "normalization_1".
            (layer,) = [la for la in model.layers if isinstance(la, keras.layers.Normalization)]
            norm = layer.get_weights()[:2]
            np.save(f"{stem}_norm.npy", np.stack(norm))
        np.save(f"{stem}_input.npy", x)
        np.save(f"{stem}_logits.npy", np.asarray(model(x, training=False)))
        if name in args.gray:
            gray = x[..., :1]
            np.save(f"{stem}_gray_input.npy", gray)
            rgb = np.repeat(gray, 3, axis=-1)
            np.save(f"{stem}_gray_logits.npy", np.asarray(model(rgb, training=False)))


if __name__ == "__main__":
    main()
