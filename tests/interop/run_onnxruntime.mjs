// Runs segnet's exported ONNX files in onnxruntime (npm's onnxruntime-node, CPU) and compares
// the logits with segnet's (onnx_reference's cases.json):
//   node run_onnxruntime.mjs DIR
// Per case: the largest absolute difference, relative to the largest logit, the share of logits
// within 0.1% of the largest, and the share of pixels whose argmax (predicted class) agrees. Fails
// when the argmax agrees on fewer pixels than the case's min_agreement (99.9% for the trained
// SegNet-Basic) or the shapes differ. The differences are reported, bounded only for a case with
// max_relative (the composites probe, which has no unpooling): a near-tied 2x2 pooling window may
// pick another maximum under different rounding, and unpooling then moves that value, which later
// layers spread (docs/interop.md).
// Exit 77 (skipped) when onnxruntime-node is not installed (cd tests/interop && npm ci --ignore-scripts).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
let ort;
try {
    ort = require("onnxruntime-node");
} catch {
    console.log("onnx_onnxruntime: onnxruntime-node is not installed (cd tests/interop && npm ci --ignore-scripts): skipped");
    process.exit(77);
}

const dir = process.argv[2];
const floats = (file) => {
    const b = readFileSync(join(dir, file));
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

/// Largest |a - b| over the largest |b|, and the share of pixels with the same argmax over classes.
export function compare(ours, theirs, classes, plane) {
    let maxDiff = 0, maxRef = 0, agree = 0, close = 0;
    for (let i = 0; i < ours.length; ++i) {
        maxDiff = Math.max(maxDiff, Math.abs(ours[i] - theirs[i]));
        maxRef = Math.max(maxRef, Math.abs(ours[i]));
    }
    for (let i = 0; i < ours.length; ++i) if (Math.abs(ours[i] - theirs[i]) <= 1e-3 * maxRef) ++close;
    for (let p = 0; p < plane; ++p) {
        let a = 0, b = 0;
        for (let c = 1; c < classes; ++c) {
            if (ours[c * plane + p] > ours[a * plane + p]) a = c;
            if (theirs[c * plane + p] > theirs[b * plane + p]) b = c;
        }
        if (a === b) ++agree;
    }
    return { maxDiff, relative: maxDiff / maxRef, agreement: agree / plane, close: close / ours.length };
}

const cases = JSON.parse(readFileSync(join(dir, "cases.json"), "utf8"));
let failed = 0;
for (const c of cases) {
    const session = await ort.InferenceSession.create(join(dir, c.onnx));
    const input = new ort.Tensor("float32", floats(`${c.name}.input.bin`), c.shape);
    const { logits } = await session.run({ image: input });
    const ours = floats(`${c.name}.logits.bin`);
    const plane = c.shape[2] * c.shape[3];
    const expected = [1, c.classes, c.shape[2], c.shape[3]];
    if (logits.dims.join("x") !== expected.join("x") || logits.data.length !== ours.length) {
        console.log(`FAILED ${c.name}: logits ${logits.dims.join("x")}, segnet's ${expected.join("x")}`);
        ++failed;
        continue;
    }
    const r = compare(ours, logits.data, c.classes, plane);
    const ok = r.agreement >= c.min_agreement && !(r.relative > (c.max_relative ?? Infinity));
    if (!ok) ++failed;
    console.log(`${ok ? "ok" : "FAILED"} ${c.name} (${c.onnx}, ${c.shape.join("x")}): max |diff| ${r.maxDiff.toExponential(2)} ` +
                `(${(100 * r.relative).toFixed(4)}% of the largest logit), argmax agrees on ${(100 * r.agreement).toFixed(4)}% of ${plane} pixels, ${(100 * r.close).toFixed(4)}% of logits within 0.1%`);
}
console.log(`onnxruntime ${ort.env.versions?.common ?? ""}: ${cases.length} cases, ${failed} failed`);
process.exit(failed ? 1 : 0);
