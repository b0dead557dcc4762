#!/usr/bin/python3
"""Checks every ONNX file segnet exported (onnx_reference) with the ONNX project's own checker
and shape inference (strict, types checked: every layer's output shape the file declares must
agree with what inference derives), and that the logits are declared N x 11 x H x W (symbolic)
or 1 x 11 x H x W (the .static.onnx files).
  check_onnx.py DIR     (DIR/models/*.onnx and DIR/*.onnx)
Exit 77 (skipped) without the onnx package (Debian: python3-onnx, run by /usr/bin/python3)."""
import glob
import os
import sys

try:
    import onnx
except ImportError:
    print("onnx_checker: no onnx package (apt-get install python3-onnx): skipped")
    sys.exit(77)


def dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def check(path, static):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    # Strict: a shape the file declares (every layer's output) that inference contradicts fails.
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    declared = dims(inferred.graph.output[0])
    if len(declared) != 4 or declared[1] != 11 or static != all(isinstance(d, int) for d in declared):
        raise AssertionError("the logits are declared %s" % declared)
    ops = sorted({n.op_type for n in model.graph.node})
    print("ok %-58s opset %d, logits %s, %s" % (os.path.relpath(path, sys.argv[1]), model.opset_import[0].version,
                                               "x".join(map(str, declared)), " ".join(ops)))


def main():
    files = sorted(glob.glob(os.path.join(sys.argv[1], "models", "*.onnx")) + glob.glob(os.path.join(sys.argv[1], "*.onnx")))
    if len(files) < 20:
        print("onnx_checker: expected the 20 files of the 10 built-in networks in %s, found %d" % (sys.argv[1], len(files)))
        return 1
    failed = 0
    for path in files:
        try:
            check(path, path.endswith(".static.onnx"))
        except Exception as e:  # the checker's own exception types differ between onnx versions
            print("FAILED %s: %s" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
            failed += 1
    print("onnx %s: %d files, %d failed" % (onnx.__version__, len(files), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
