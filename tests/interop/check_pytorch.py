#!/usr/bin/env python3
"""Loads a segnet checkpoint into an equivalent PyTorch model (the snippet of docs/interop.md)
and checks that PyTorch computes the same logits as segnet, in eval and in train mode.

    /usr/bin/python3 tests/interop/check_pytorch.py DIR    # DIR written by export_reference
Exit 0: match; 1: mismatch; 77: PyTorch is not installed (CTest reports the test as skipped).
"""
import json
import struct
import sys

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError:
    print("PyTorch/NumPy not installed: skipped (apt-get install python3-torch python3-numpy)")
    sys.exit(77)


def load_safetensors(path):
    """Minimal safetensors reader (float32 only): {name: tensor}, metadata."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        begin, end = info["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(body[begin:end], dtype="<f4").copy()).reshape(info["shape"])
    return tensors, meta


class SegNetBasic(nn.Module):
    """SegNet-Basic with segnet's parameter names: encoderI = Sequential(conv, bn, relu, pool),
    decoderI = Sequential(unpool, conv, bn), classifier = 1x1 conv."""

    def __init__(self, classes=11):
        super().__init__()
        for i in range(4):
            setattr(self, f"encoder{i}", nn.Sequential(
                nn.Conv2d(3 if i == 0 else 64, 64, 7, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)))
            setattr(self, f"decoder{i}", nn.Sequential(
                nn.MaxUnpool2d(2, 2), nn.Conv2d(64, 64, 7, padding=3, bias=False), nn.BatchNorm2d(64)))
        self.classifier = nn.Conv2d(64, classes, 1)

    def forward(self, x):
        kept = []
        for i in range(4):
            enc = getattr(self, f"encoder{i}")
            x = enc[2](enc[1](enc[0](x)))
            size = x.shape
            x, idx = enc[3](x)
            kept.append((idx, size))
        for i in range(4):
            dec = getattr(self, f"decoder{i}")
            idx, size = kept[3 - i]  # decoder0 pairs with the last encoder
            x = dec[0](x, idx, output_size=size)
            x = dec[2](dec[1](x))
        return self.classifier(x)


def main():
    folder = sys.argv[1]
    state, meta = load_safetensors(f"{folder}/segnet-basic.safetensors")
    model = SegNetBasic(int(meta["classes"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only PyTorch's batch counters are absent from a segnet checkpoint.
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    assert not unexpected, unexpected
    ref, _ = load_safetensors(f"{folder}/reference.safetensors")
    worst = 0.0
    for mode in ("eval", "train"):
        model.train(mode == "train")
        with torch.no_grad():
            out = model(ref["input"])
        expected = ref[f"{mode}_logits"]
        err = ((out - expected).abs().max() / expected.abs().max()).item()
        print(f"{mode}: max |pytorch - segnet| / max |segnet| = {err:.2e}")
        worst = max(worst, err)
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
