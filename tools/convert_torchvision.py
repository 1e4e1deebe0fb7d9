#!/usr/bin/env python
"""Convert a torchvision ResNet ``.pth`` state dict into a MindSpore ``.ckpt`` with the
model-zoo / fastreid_ms names, for MODEL.BACKBONE.PRETRAIN_PATH.

    python tools/convert_torchvision.py resnet50-0676ba61.pth resnet50_torchvision.ckpt

Needs PyTorch (only here: fastreid_ms itself never imports it). Without PyTorch, save the
state dict as .npz or .safetensors on a machine that has it; fastreid_ms reads both directly.
Renaming: ``downsample`` -> ``down_sample_layer``, norm ``weight`` / ``bias`` / ``running_mean``
/ ``running_var`` -> ``gamma`` / ``beta`` / ``moving_mean`` / ``moving_variance``, ``fc`` ->
``end_point``; ``num_batches_tracked`` is dropped. The checkpoint records that its weights
follow torchvision's numerics (``weights_convention``), so that loading it into a backbone of
MODEL.BACKBONE.CONVENTION modelzoo warns; train it with MODEL.BACKBONE.CONVENTION torchvision.
"""
import argparse
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

EXIT_USER_ERROR = 2

TORCH_MISSING = (
    "PyTorch is not installed, and reading a .pth file needs it. Install torch on this machine "
    "(pip install torch) and rerun, or on a machine with torch save the state dict without "
    "pickle, e.g. numpy.savez('resnet50.npz', **{k: v.numpy() for k, v in sd.items()}) or "
    "safetensors.torch.save_file(sd, 'resnet50.safetensors'), and give that file as "
    "MODEL.BACKBONE.PRETRAIN_PATH.")


def convert_names(state):
    """{torchvision name: array} -> [(our name, array)], dropping ``num_batches_tracked``."""
    from fastreid_ms.modeling.backbones.pretrained import torchvision_to_ours
    out = []
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        out.append((torchvision_to_ours(name), value))
    return out


def load_torch_state(path):
    """The state dict of a .pth file as {name: float32 numpy array} (needs torch)."""
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError(TORCH_MISSING) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__}).")
    return {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}


def write_checkpoint(named_arrays, output):
    """Save [(name, array)] as a MindSpore checkpoint (marked as torchvision weights),
    atomically."""
    import numpy as np
    import mindspore as ms
    from fastreid_ms.modeling.backbones.pretrained import CONVENTION_KEY
    from fastreid_ms.utils.file_io import atomic_path
    entries = [{"name": n, "data": ms.Tensor(np.asarray(a, dtype=np.float32))}
               for n, a in named_arrays]
    with atomic_path(output) as tmp:
        ms.save_checkpoint(entries, tmp, append_dict={CONVENTION_KEY: "torchvision"})
        # save_checkpoint appends .ckpt to a name without it (the temporary name)
        if os.path.exists(tmp + ".ckpt"):
            os.replace(tmp + ".ckpt", tmp)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="torchvision ResNet state dict (.pth)")
    parser.add_argument("output", help="MindSpore checkpoint to write (.ckpt)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.input):
        print(f"error: {args.input} does not exist.", file=sys.stderr)
        return EXIT_USER_ERROR
    if not args.output.endswith(".ckpt"):
        print(f"error: the output {args.output} must end in .ckpt.", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        state = load_torch_state(args.input)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    named = convert_names(state)
    write_checkpoint(named, args.output)
    print(f"wrote {len(named)} parameters to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
