#!/usr/bin/python3
"""Runs segnet's exported ONNX files in OpenCV's DNN module and compares the logits with
segnet's (onnx_reference's cases.json), as run_onnxruntime.mjs does for onnxruntime.
  check_opencv.py DIR
OpenCV 4.6 (Debian 12) runs only static graphs whose maps divide evenly at every pool: it reads
a Shape node only on static sizes, and its MaxUnpool importer ignores output_shape and takes
2-element pads (ONNX's are 4), so the ceil-mode size (45 -> 23 -> 45) cannot be written for it
(docs/interop.md quotes both messages). Such cases must fail to load with exactly those messages
(a test that breaks if OpenCV starts running them, or fails for another reason); the others must
agree with segnet: argmax on at least the case's min_agreement of the pixels.
Exit 77 (skipped) without OpenCV's Python module (Debian: python3-opencv)."""
import json
import os
import sys

try:
    import cv2
    import numpy as np
except ImportError:
    print("onnx_opencv: no cv2 module (apt-get install python3-opencv): skipped")
    sys.exit(77)

# What OpenCV 4.6 says about the graphs it cannot read (part of its message).
SYMBOLIC_SHAPE = "!isDynamicShape in function 'parseShape'"
UNPOOL_PADS = "(expected: 'pads.size() == 2')"


def expected_refusal(case):
    """None when OpenCV should run the case, else the message it must refuse it with."""
    if not case["onnx"].endswith(".static.onnx"):
        return SYMBOLIC_SHAPE
    h, w = case["shape"][2], case["shape"][3]
    for _ in range(case["pools"]):
        if h % 2 or w % 2:
            return UNPOOL_PADS
        h, w = h // 2, w // 2
    return None


def run(d, case):
    net = cv2.dnn.readNetFromONNX(os.path.join(d, case["onnx"]))
    x = np.fromfile(os.path.join(d, case["name"] + ".input.bin"), dtype="<f4").reshape(case["shape"])
    net.setInput(x, "image")
    return net.forward("logits")


def main():
    d = sys.argv[1]
    cases = json.load(open(os.path.join(d, "cases.json")))
    failed = 0
    for case in cases:
        refusal = expected_refusal(case)
        try:
            theirs = run(d, case)
        except cv2.error as e:
            message = str(e)
            ok = refusal is not None and refusal in message
            failed += not ok
            print("%s %s: OpenCV refuses it%s: %s" % ("ok" if ok else "FAILED", case["name"],
                                                  "" if ok else " (unexpectedly)",
                                                  refusal if ok else " ".join(message.split())))
            continue
        if refusal is not None:
            print("FAILED %s: OpenCV now runs it; update check_opencv.py and docs/interop.md" % case["name"])
            failed += 1
            continue
        ours = np.fromfile(os.path.join(d, case["name"] + ".logits.bin"), dtype="<f4").reshape(theirs.shape)
        diff = float(np.abs(theirs - ours).max())
        agreement = float((theirs.argmax(1) == ours.argmax(1)).mean())
        ok = agreement >= case["min_agreement"]
        failed += not ok
        print("%s %s (%s): max |diff| %.2e (%.4f%% of the largest logit), argmax agrees on %.4f%% of %d pixels" %
              ("ok" if ok else "FAILED", case["name"], case["onnx"], diff, 100 * diff / float(np.abs(ours).max()),
               100 * agreement, ours.shape[2] * ours.shape[3]))
    print("OpenCV %s: %d cases, %d failed" % (cv2.__version__, len(cases), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
