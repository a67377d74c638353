"""Pretrained-weight import (medjax.weights): the torch-free reader, the torchvision mappings.

The comparisons with torchvision itself need a Python with torch and torchvision, named by
MEDJAX_TORCH_PYTHON: without it they skip; with it set and torchvision not importable they
fail, so CI (which sets it) cannot pass by skipping them. Everything else runs without torch:
a small real torch.save fixture (tests/data, written by tools/torch_reference.py --fixture)
and torch-format files written here with zipfile and raw pickle opcodes.
"""

import functools
import pathlib
import struct
import subprocess
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.errors import ConfigError, DataError
from medjax.models import build_model
from medjax.weights import find_state_dict, load_pretrained, read_torch_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "torch_checkpoint.pth"


def build(name, num_classes, size, channels=3, activation="relu"):
    cfg = get_base_config().model
    cfg.name, cfg.stem, cfg.activation = name, "imagenet", activation
    return build_model(cfg, num_classes, size), jnp.zeros((1, size, size, channels))


def init(model, x, abstract=False):
    f = functools.partial(model.init, jax.random.key(0), x, train=False)
    return jax.eval_shape(f) if abstract else jax.jit(f)()


def logits(model, variables, x):
    with jax.default_matmul_precision("highest"):
        apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
        return np.asarray(apply(variables, jnp.asarray(x)))


def state_pickle(tensors, wrap=None):
    """torch.save's pickle of a state dict {key: (storage class, storage key, storage numel,
    offset, size, stride)}, written opcode by opcode as torch writes it, wrapped in a dict
    under `wrap` if given."""
    out = bytearray(b"\x80\x02")

    def text(s):
        out.extend(b"X" + struct.pack("<I", len(s.encode())) + s.encode())

    def ints(values):
        out.extend(b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t")

    if wrap:
        out.extend(b"}")
        text(wrap)
    out.extend(b"ccollections\nOrderedDict\n)R(")
    for key, (kind, storage, numel, offset, size, stride) in tensors.items():
        text(key)
        out.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((")
        text("storage")
        out.extend(f"ctorch\n{kind}\n".encode())
        text(storage)
        text("cpu")
        out.extend(b"J" + struct.pack("<i", numel) + b"tQJ" + struct.pack("<i", offset))
        ints(size)
        ints(stride)
        out.extend(b"\x89ccollections\nOrderedDict\n)RtR")  # requires_grad, hooks
    out.extend(b"u" + (b"s" if wrap else b"") + b".")
    return bytes(out)


def write_torch_zip(path, state, wrap=None, pickle_bytes=None):
    """`state` ({key: float32/int64 array}) in torch.save's zip layout, without torch (the
    pickle is `pickle_bytes` if given)."""
    tensors, storages = {}, []
    for key, a in state.items():
        a = np.ascontiguousarray(a).reshape(a.shape)  # (ascontiguousarray makes 0-d arrays 1-d)
        kind = {"float32": "FloatStorage", "int64": "LongStorage"}[a.dtype.name]
        strides = [s // a.itemsize for s in a.strides]
        tensors[key] = (kind, str(len(storages)), a.size, 0, a.shape, strides)
        storages.append(a.tobytes())
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes or state_pickle(tensors, wrap))
        z.writestr("archive/byteorder", "little")
        for i, raw in enumerate(storages):
            z.writestr(f"archive/data/{i}", raw)
    return str(path)


def resnet18_state(num_classes=1000, seed=0):
    """Random torchvision resnet18 state-dict tensors, as numpy arrays."""
    rng, sd = np.random.default_rng(seed), {}

    def conv(key, o, i, k):
        sd[f"{key}.weight"] = rng.normal(0, (2 / (i * k * k)) ** 0.5, (o, i, k, k))

    def bn(key, c):
        names = ("weight", "bias", "running_mean", "running_var")
        for name, (low, high) in zip(names, [(0.5, 1.5), (-1, 1), (-1, 1), (1, 3)], strict=True):
            sd[f"{key}.{name}"] = rng.uniform(low, high, c)
        sd[f"{key}.num_batches_tracked"] = np.array(7, np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for i, c in enumerate((64, 128, 256, 512), start=1):
        for j in range(2):
            key = f"layer{i}.{j}"
            conv(f"{key}.conv1", c, cin, 3), bn(f"{key}.bn1", c)
            conv(f"{key}.conv2", c, c, 3), bn(f"{key}.bn2", c)
            if cin != c:
                conv(f"{key}.downsample.0", c, cin, 1), bn(f"{key}.downsample.1", c)
            cin = c
    sd["fc.weight"] = rng.normal(0, 0.05, (num_classes, 512))
    sd["fc.bias"] = rng.normal(size=num_classes)
    return {k: v if v.dtype == np.int64 else v.astype(np.float32) for k, v in sd.items()}


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A resnet18 checkpoint (1000 classes) wrapped Lightning-style, keys prefixed 'model.'."""
    state = {f"model.{k}": v for k, v in resnet18_state().items()}
    return write_torch_zip(tmp_path_factory.mktemp("w") / "r18.ckpt", state, wrap="state_dict")


def test_reader_reads_a_real_torch_checkpoint():
    obj = read_torch_file(str(FIXTURE))
    assert obj["epoch"] == 3 and "argparse.Namespace" in repr(obj["args"])  # inert, never built
    sd = find_state_dict(obj, str(FIXTURE))
    ar = np.arange(20, dtype=np.float32)
    expect = {
        "a": ar[:12].reshape(3, 4),
        "t": ar[:12].reshape(3, 4).T,  # a transposed view: strides (1, 4)
        "s": ar[5:11].reshape(2, 3),  # storage offset 5
        "s2": ar[::4],  # stride 4 into the same storage
        "h": np.arange(6, dtype=np.float16),
        "b": np.arange(6).astype(ml_dtypes.bfloat16),
        "l": np.arange(5, dtype=np.int64),
        "u": np.arange(4, dtype=np.uint16),  # _rebuild_tensor_v3 over an untyped storage
        "m": np.array([True, False]),
        "p": np.full(2, 0.5, np.float32),  # an nn.Parameter
        "z": np.array(2.5, np.float32),
    }
    assert sorted(sd) == sorted(expect)
    for key, want in expect.items():
        assert sd[key].dtype == want.dtype and sd[key].shape == want.shape, key
        np.testing.assert_array_equal(sd[key], want)


def test_reader_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "ran"
    command = f"touch '{marker}'".encode()
    evil = b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(command)) + command + b"\x85R."
    path = write_torch_zip(tmp_path / "evil.pth", {}, pickle_bytes=evil)
    with pytest.raises(DataError, match=r"os\.system"):
        load_pretrained(path, "resnet18", {})
    assert not marker.exists()
    entry = b"\x80\x02}X\x01\x00\x00\x00wcbuiltins\neval\nX\x03\x00\x00\x001+1\x85Rs."
    path = write_torch_zip(tmp_path / "entry.pth", {}, pickle_bytes=entry)
    with pytest.raises(DataError, match=r"'w' is built by the pickled global builtins\.eval"):
        find_state_dict(read_torch_file(path), path)


def test_reader_rejects_unreadable_files(tmp_path):
    cases = {"text.pth": b"not a checkpoint", "cut.pth": FIXTURE.read_bytes()[:3000]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "nopkl.pth", "w") as z:
        z.writestr("archive/version", "3")
    with zipfile.ZipFile(FIXTURE) as src, zipfile.ZipFile(tmp_path / "nodata.pth", "w") as z:
        for item in src.namelist():  # drop one storage
            if not item.endswith("/data/0"):
                z.writestr(item, src.read(item))
    for name, problem in [
        ("text.pth", "not a torch.save zip file"),
        ("cut.pth", r"truncated or not a complete torch.save archive \(3,000 bytes\); download"),
        ("nopkl.pth", "no single <name>/data.pkl"),
        ("nodata.pth", "has no entry torch_checkpoint/data/0: damaged file"),
        ("missing.pth", "does not exist"),
    ]:
        with pytest.raises(DataError, match=problem) as info:
            load_pretrained(str(tmp_path / name), "resnet18", {})
        assert name in str(info.value)


def test_resnet18_file_maps_and_keeps_matching_head(resnet18_file):
    model, x = build("resnet18", 1000, 32)
    variables, notes = load_pretrained(resnet18_file, "resnet18", init(model, x, abstract=True))
    sd = resnet18_state()
    params, stats = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(
        params["stem_conv"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0)
    )
    bn = stats["stage2_block0"]["proj_norm"]["BatchNorm_0"]
    np.testing.assert_array_equal(bn["var"], sd["layer2.0.downsample.1.running_var"])
    np.testing.assert_array_equal(params["head"]["kernel"], sd["fc.weight"].T)
    assert not any("re-initialised" in n for n in notes)


def test_head_reinitialised_for_other_class_count(resnet18_file):
    model, x = build("resnet18", 10, 32)
    like = init(model, x, abstract=True)
    with pytest.raises(ValueError, match="initialised values"):
        load_pretrained(resnet18_file, "resnet18", like)
    # A freshly initialised head (the rest may stay abstract: it all comes from the file).
    head = {"kernel": np.full((512, 10), 0.25, np.float32), "bias": np.zeros(10, np.float32)}
    like["params"]["head"] = head
    variables, notes = load_pretrained(resnet18_file, "resnet18", like)
    assert any("head re-initialised" in n and "1000 classes, the model 10" in n for n in notes)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], head["kernel"])
    want = resnet18_state()["conv1.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(variables["params"]["stem_conv"]["kernel"], want)


def test_grayscale_stem_sums_rgb_kernel(resnet18_file):
    """A 1-channel model answers a gray image as the RGB model answers it replicated."""
    rgb_model, x3 = build("resnet18", 1000, 32)
    gray_model, x1 = build("resnet18", 1000, 32, channels=1)
    rgb, _ = load_pretrained(resnet18_file, "resnet18", init(rgb_model, x3, abstract=True))
    gray, notes = load_pretrained(resnet18_file, "resnet18", init(gray_model, x1, abstract=True))
    assert any("summed over its input channels" in n for n in notes)
    image = np.random.default_rng(1).normal(size=(2, 32, 32, 1)).astype(np.float32)
    want = logits(rgb_model, rgb, np.repeat(image, 3, axis=-1))
    np.testing.assert_allclose(
        logits(gray_model, gray, image), want, atol=1e-4 * np.abs(want).max()
    )


def test_mismatches_name_the_parameter_and_the_fix(tmp_path, resnet18_file):
    model, x = build("resnet34", 1000, 32)
    with pytest.raises(ConfigError, match=r"stage1_block2.*not in the file.*'resnet18'"):
        load_pretrained(resnet18_file, "resnet34", init(model, x, abstract=True))
    r18 = init(*build("resnet18", 1000, 32), abstract=True)
    state = resnet18_state()
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:, :, :1, :1]
    path = write_torch_zip(tmp_path / "shape.pth", state)
    with pytest.raises(
        ConfigError,
        match=r"stage1_block0/conv1/kernel has shape \(3, 3, 64, 64\).*\(1, 1, 64, 64\)",
    ):
        load_pretrained(path, "resnet18", r18)
    path = write_torch_zip(
        tmp_path / "extra.pth", resnet18_state() | {"aux.weight": np.ones(2, np.float32)}
    )
    with pytest.raises(ConfigError, match=r"tensors torchvision's resnet18 lacks: 'aux\.weight'"):
        load_pretrained(path, "resnet18", r18)
    with pytest.raises(ConfigError, match=r"lacks 'conv1\.weight'"):
        load_pretrained(str(FIXTURE), "resnet18", r18)
    model, x = build("resnet18", 1000, 32)
    small = init(model.clone(small_stem=True), x, abstract=True)
    with pytest.raises(
        ConfigError, match=r"stem_conv/kernel has shape \(3, 3, 3, 64\).*stem = 'imagenet'"
    ):
        load_pretrained(resnet18_file, "resnet18", small)
    with pytest.raises(ConfigError, match="no torchvision weight import for model 'vit'"):
        load_pretrained(resnet18_file, "vit", r18)


# ---- comparisons with torchvision (MEDJAX_TORCH_PYTHON) ----


# (model, image size, medjax activation, tools/torch_reference.py arguments). Max |logit diff|
# / max |logit| measured with torch 2.14.1, on CPU: resnet18 1.5e-6 (gray stem 2.7e-6),
# resnet50 4.5e-5 (torch's own float32 logits are 2.8e-5 from float64's), vgg11 1.5e-6,
# vgg11_bn 2.2e-6, alexnet 1.4e-6, densenet121 4.0e-6, mobilenet_v2 1.1e-5,
# efficientnet_b0 4.6e-6, efficientnet_v2_s 4.7e-5.
CASES = [
    ("resnet18", 64, "relu", []),
    ("resnet50", 64, "relu", []),
    ("vgg11", 32, "relu", ["--dtype", "float16"]),  # 16-bit files: 250 MB instead of 500
    ("vgg11_bn", 32, "relu", ["--dtype", "bfloat16"]),
    ("alexnet", 64, "relu", ["--dtype", "float16"]),
    ("densenet121", 64, "relu", []),
    ("mobilenet_v2", 64, "relu6", []),
    ("efficientnet_b0", 64, "silu", []),
    ("efficientnet_v2_s", 64, "silu", []),  # batch-norm eps 1e-3, as torchvision's
]


@pytest.mark.parametrize("name,size,activation,extra", CASES, ids=[c[0] for c in CASES])
def test_logits_match_torchvision(torch_python, tmp_path, name, size, activation, extra):
    script = ROOT / "tools" / "torch_reference.py"
    args = [
        "--model",
        name,
        "--num-classes",
        "10",
        "--image-size",
        str(size),
        "--out",
        str(tmp_path),
    ]
    subprocess.run([torch_python, str(script), *args, *extra], check=True)
    path = str(tmp_path / "weights.pth")
    for channels, prefix in [(3, ""), (1, "gray_")] if name == "resnet18" else [(3, "")]:
        model, x = build(name, 10, size, channels, activation)
        variables, notes = load_pretrained(path, name, init(model, x, abstract=True))
        assert not any("re-initialised" in n for n in notes)
        image = np.load(tmp_path / f"{prefix}input.npy").transpose(0, 2, 3, 1)
        want = np.load(tmp_path / f"{prefix}logits.npy")
        got = logits(model, variables, image)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
