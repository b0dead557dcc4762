#!/usr/bin/env python3
"""Writes a weights-only copy of a segnet training checkpoint.

`segnet-train` writes DIR/last.safetensors with the optimizer state (SGD momentum or Adam
moments, tensors named `optimizer.*`) so that `--resume` continues exactly; that doubles the
file. DIR/best.safetensors is already weights-only. This script drops the `optimizer.*`
tensors and keeps everything else (weights, batch-norm statistics, the metadata that names
the model, classes, ignore label and normalisation), so the result loads in segnet-evaluate,
segnet-segment and `load_checkpoint` like a best checkpoint.

    python3 scripts/strip_optimizer_state.py runs/camvid-segnet-basic/last.safetensors \
        models/segnet-basic-camvid.safetensors

Standard library only. The output is written to a temporary file and renamed into place.
"""
import json
import os
import struct
import sys


def fail(message):
    sys.exit(f"strip_optimizer_state: {message}")


def main():
    if len(sys.argv) != 3:
        fail("usage: strip_optimizer_state.py IN.safetensors OUT.safetensors")
    source, target = sys.argv[1], sys.argv[2]
    try:
        with open(source, "rb") as f:
            blob = f.read()
    except OSError as e:
        fail(f"cannot read '{source}': {e.strerror}")
    if len(blob) < 8:
        fail(f"'{source}' is not a safetensors file (shorter than its 8-byte header length)")
    (header_length,) = struct.unpack("<Q", blob[:8])
    if header_length > len(blob) - 8:
        fail(f"'{source}': header length {header_length} runs past the end of the file")
    try:
        header = json.loads(blob[8:8 + header_length])
    except ValueError as e:
        fail(f"'{source}': header is not JSON ({e})")
    data = blob[8 + header_length:]
    metadata = header.pop("__metadata__", None)
    if not metadata or metadata.get("format", "").split("-")[0:2] != ["segnet", "checkpoint"]:
        fail(f"'{source}' is not a segnet checkpoint (metadata 'format' missing)")

    kept = {}
    payload = bytearray()
    dropped = 0
    # Keep the file's tensor order (by offset) so the output is deterministic.
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        if name.startswith("optimizer."):
            dropped += 1
            continue
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(data):
            fail(f"'{source}': tensor '{name}' has offsets [{begin}, {end}) outside the data")
        kept[name] = {"dtype": entry["dtype"], "shape": entry["shape"],
                      "data_offsets": [len(payload), len(payload) + end - begin]}
        payload += data[begin:end]
    out_header = {"__metadata__": metadata, **kept}
    encoded = json.dumps(out_header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # keep the data 8-byte aligned, as the format suggests

    temporary = target + ".tmp"
    with open(temporary, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        f.write(payload)
    os.replace(temporary, target)
    print(f"{target}: {len(kept)} tensors kept, {dropped} optimizer tensors dropped, "
          f"{os.path.getsize(target)} bytes")


if __name__ == "__main__":
    main()
