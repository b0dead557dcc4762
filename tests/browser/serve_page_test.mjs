// segnet-serve's page in headless Chromium (CTest serve_browser; docs/serve.md):
//   node tests/browser/serve_page_test.mjs BUILD_DIR OUT_DIR
// Loads the page, uploads a bundled image, waits for the overlay, checks the legend (11 classes,
// shares adding up to 100 %), does the same with a compiled-in sample and a dropped file, and
// saves OUT_DIR/serve.png; then serves a Bayesian SegNet-Basic (trained one epoch on the tests'
// shapes set) with --samples 4 and checks that the page shows its uncertainty map.
// Exits 77 (CTest: skipped), saying why, when Debian's chromium, puppeteer-core (`npm ci` in
// tests/browser) or segnet-serve is missing.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const [build, out] = process.argv.slice(2);
if (!build || !out) {
  console.error("usage: node serve_page_test.mjs BUILD_DIR OUT_DIR");
  process.exit(2);
}
const skip = (why) => {
  console.log("SKIPPED: " + why);
  process.exit(77);
};
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
if (!existsSync(chromium)) skip(chromium + " not found (apt-get install chromium, or set CHROMIUM)");
let puppeteer;
try {
  puppeteer = createRequire(path.join(here, "package.json"))("puppeteer-core");
} catch {
  skip("puppeteer-core not installed (run `npm ci` in tests/browser)");
}
const serve = path.join(build, "examples", "segnet-serve");
if (!existsSync(serve)) skip("segnet-serve is not built (install libcpp-httplib-dev and pkg-config)");

let failures = 0;
const check = (condition, what, got) => {
  console.log((condition ? "ok    " : "FAIL  ") + what + (condition || got === undefined ? "" : ": got " + JSON.stringify(got)));
  if (!condition) failures++;
};

// A server on a free loopback port it prints on its first line.
const startServer = async (args) => {
  const child = spawn(serve, [...args, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  const firstLine = await new Promise((resolve) => createInterface({ input: child.stdout }).once("line", resolve));
  const port = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(firstLine)?.[1];
  if (!port) {
    console.error("segnet-serve did not start: " + firstLine);
    child.kill();
    process.exit(1);
  }
  return { child, port };
};
const { child: server, port } = await startServer(["--weights", path.join(root, "models", "segnet-basic-camvid.safetensors")]);
const work = mkdtempSync(path.join(os.tmpdir(), "serve-browser-"));

const browser = await puppeteer.launch({ executablePath: chromium, headless: true,
                                         args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1560, height: 900 });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: "networkidle0" });
  check((await page.$eval("#model", (e) => e.textContent)).startsWith("segnet-basic, 11 classes"), "the page names the model");
  check(await page.$$eval("#sample option", (o) => o.length) >= 2, "the samples are offered");
  check(await page.$eval("#uncertainty-view", (e) => e.hidden), "a model served without --samples: no uncertainty view");

  // What a finished segmentation shows: the overlay and mask decoded, the legend with shares.
  const shown = async () => {
    await page.waitForFunction(() => document.querySelector("#overlay").complete &&
                               document.querySelector("#overlay").naturalWidth > 0 &&
                               document.querySelector("#mask").naturalWidth > 0, { timeout: 120000 });
    return page.evaluate(() => ({
      overlay: [document.querySelector("#overlay").naturalWidth, document.querySelector("#overlay").naturalHeight],
      shares: [...document.querySelectorAll("#legend tr")].map((r) => parseFloat(r.querySelector(".share").textContent)),
      names: [...document.querySelectorAll("#legend tr")].map((r) => r.children[1].textContent),
      status: document.querySelector("#status").textContent,
    }));
  };
  const legendAddsUp = (s) => s.shares.length === 11 && Math.abs(s.shares.reduce((a, b) => a + b, 0) - 100) < 1;

  const input = await page.$("#file");
  await input.uploadFile(path.join(root, "data", "camvid", "val", "0016E5_08109.png"));
  const uploaded = await shown();
  check(uploaded.overlay[0] === 480 && uploaded.overlay[1] === 360, "upload: the overlay is the image's size", uploaded.overlay);
  check(uploaded.names[0] === "Sky" && legendAddsUp(uploaded), "upload: the legend lists 11 classes adding up to 100 %", uploaded.shares);
  check(/network \d+ ms/.test(uploaded.status), "upload: the time taken is shown", uploaded.status);
  await page.screenshot({ path: (mkdirSync(out, { recursive: true }), path.join(out, "serve.png")) });
  console.log("screenshot: " + path.join(out, "serve.png"));

  const sample = await page.$$eval("#sample option", (o) => o[1].value);
  await page.select("#sample", sample);
  const picked = await shown();
  check(legendAddsUp(picked), "sample " + sample + ": the legend adds up to 100 %", picked.shares);

  // A file dropped on the drop zone: a DragEvent carrying a File, as the browser builds one for a real drop.
  await page.evaluate(async (name) => {
    const blob = await (await fetch("/samples/" + encodeURIComponent(name))).blob();
    const files = new DataTransfer();
    files.items.add(new File([blob], "dropped.png", { type: "image/png" }));
    document.querySelector("#drop").dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));
  }, sample);
  const dropped = await shown();
  check(legendAddsUp(dropped) && (await page.$eval("#sample", (e) => e.value)) === "",
        "a dropped file is segmented like an upload", dropped.shares);

  // Bayesian SegNet-Basic with --samples 4: the page shows the uncertainty map beside the mask.
  const shapes = path.join(root, "tests", "data", "shapes");
  execFileSync(path.join(build, "examples", "segnet-train"),
               ["--model", "bayesian-segnet-basic", "--train", path.join(shapes, "train", "list.txt"), "--classes", "4",
                "--ignore", "-1", "--balance", "natural", "--batch", "4", "--epochs", "1", "--threads", "2", "--seed", "1",
                "--out", path.join(work, "bayes")], { stdio: "ignore" });
  const bayes = await startServer(["--weights", path.join(work, "bayes", "last.safetensors"), "--samples", "4"]);
  try {
    await page.goto(`http://127.0.0.1:${bayes.port}/`, { waitUntil: "networkidle0" });
    check((await page.$eval("#model", (e) => e.textContent)).includes("mean of 4 dropout samples"),
          "--samples 4: the page says the labels are the mean of 4 dropout samples");
    check(!(await page.$eval("#uncertainty-view", (e) => e.hidden)), "--samples 4: the uncertainty view is shown");
    await (await page.$("#file")).uploadFile(path.join(shapes, "val", "images", "0000.png"));
    await page.waitForFunction(() => document.querySelector("#uncertainty").naturalWidth > 0, { timeout: 120000 });
    const map = await page.evaluate(() => ({
      size: [document.querySelector("#uncertainty").naturalWidth, document.querySelector("#mask").naturalWidth],
      caption: document.querySelector("#uncertainty-caption").textContent,
    }));
    check(map.size[0] === map.size[1] && /4 dropout samples; .*mean 0\.\d{3}/.test(map.caption),
          "--samples 4: the uncertainty map, the mask's size, captioned with its mean", map);
  } finally {
    bayes.child.kill("SIGTERM");
  }
  check(pageErrors.length === 0, "no JavaScript errors", pageErrors);
} catch (e) {
  check(false, "the page test ran to the end", String(e));
} finally {
  await browser.close();
  server.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
}
console.log(failures ? failures + " failure(s)" : "all passed");
process.exit(failures ? 1 : 0);
