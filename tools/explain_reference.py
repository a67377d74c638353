"""Reference explanations from pytorch-grad-cam and captum, for tests/test_explain_reference.py.

Run with a Python that has torch, torchvision, grad-cam and captum (tools/torch-reference.txt;
medjax itself needs none of them):

    python tools/explain_reference.py --model resnet18 --image-size 96 --out DIR

writes DIR/weights.pth (a random torchvision model, as tools/torch_reference.py makes it),
DIR/input.npy (NCHW float32), DIR/targets.npy, DIR/logits.npy, and one DIR/<method>.npy
(N, H, W) per method: gradcam and gradcam_pp (pytorch-grad-cam at layer4, or for DenseNet at
the ReLU after `features`, where medjax records its last stage: see DenseNetForward),
integrated_gradients (captum, zero baseline, --ig-steps Gauss-Legendre points, summed over
channels), saliency (captum, |gradient|, max over channels), occlusion (captum, an --window
square over all channels moved by --stride, zero baseline) and, for ResNet, guided_backprop
(captum, max |.| over channels); --cam-only: only the two Grad-CAM maps.
"""

import argparse
import pathlib

import numpy as np
import torch
import torchvision
from captum.attr import GuidedBackprop, IntegratedGradients, Occlusion, Saliency
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch_reference import randomise


class DenseNetForward(torch.nn.Module):
    """torchvision's DenseNet forward with its final ReLU as a module inside `features`
    (relu5), where medjax records its last stage, and not applied a second time: ReLU twice is
    the same function, but the second one's zero derivative at 0 would mask the gradient
    pytorch-grad-cam reads at relu5."""

    def __init__(self, densenet):
        super().__init__()
        densenet.features.add_module("relu5", torch.nn.ReLU())
        self.features, self.classifier = densenet.features, densenet.classifier

    def forward(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(pooled, 1))


def with_target_layer(model, name: str):
    """(model to explain, its Grad-CAM layer)."""
    if name.startswith("densenet"):
        model = DenseNetForward(model)
        return model, model.features.relu5
    return model, model.layer4[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--cam-only", action="store_true", help="only the Grad-CAM maps")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = getattr(torchvision.models, args.model)(weights=None, num_classes=args.num_classes)
    gen = torch.Generator().manual_seed(args.seed + 1)
    size = (3, args.image_size, args.image_size)
    randomise(model, torch.randn((8, *size), generator=gen), args.seed)
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "weights.pth")
    model, layer = with_target_layer(model, args.model)
    for m in model.modules():  # captum's guided backprop hooks cannot see in-place ReLUs
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    x = torch.randn((args.batch, *size), generator=gen)
    with torch.no_grad():
        logits = model(x)
    targets = (torch.arange(args.batch) * 3 + 1) % args.num_classes
    maps = {}
    for name, cls in [("gradcam", GradCAM), ("gradcam_pp", GradCAMPlusPlus)]:
        with cls(model=model, target_layers=[layer]) as cam:
            maps[name] = cam(x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    if not args.cam_only:
        maps.update(attributions(model, x, targets, args))
    np.save(args.out / "input.npy", x.numpy())
    np.save(args.out / "targets.npy", targets.numpy())
    np.save(args.out / "logits.npy", logits.numpy())
    for name, m in maps.items():
        np.save(args.out / f"{name}.npy", np.asarray(torch.as_tensor(m).detach(), np.float32))


def attributions(model, x, targets, args) -> dict:
    maps = {}
    ig = IntegratedGradients(model).attribute(
        x, baselines=0.0, target=targets, n_steps=args.ig_steps, method="gausslegendre"
    )
    maps["integrated_gradients"] = ig.sum(1)
    maps["saliency"] = Saliency(model).attribute(x, target=targets, abs=True).amax(1)
    occ = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(3, args.window, args.window),
        strides=(3, args.stride, args.stride),
        baselines=0.0,
        target=targets,
    )
    maps["occlusion"] = occ[:, 0]
    if args.model.startswith("resnet"):
        maps["guided_backprop"] = GuidedBackprop(model).attribute(x, target=targets).abs().amax(1)
    return maps


if __name__ == "__main__":
    main()
