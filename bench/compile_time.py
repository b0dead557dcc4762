#!/usr/bin/python3
"""Compile time and compiler peak memory of one translation unit per model (and of the model
registry), as kokkos/mdspan's comp_bench: compile time is a budget we track.

    bench/compile_time.py                     # every model, Markdown table on stdout
    bench/compile_time.py --repeat 3 --out docs/compile_time.md --models segnet fcn-basic
    bench/compile_time.py --registry          # also the with_model() TU (every model x class count)

Each TU includes <segnet/segnet.hpp>, instantiates Model<model_named_t<"name", 11>, Cpu> (the
registry's models, models::BuiltinModels) and calls forward once (so
every layer's run-time code and the shape walk are compiled), with the project's release flags
(-std=c++20 -O3 -DNDEBUG -march=native). A baseline TU (the header alone, no model) is measured
too: a model's own cost is its row minus the baseline. Time is wall-clock of `g++ -c` measured by
/usr/bin/time -v (with its peak resident memory); the best of --repeat runs is reported (the
least disturbed by other work on the machine).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The model list is the registry's (models::BuiltinModels): a small program prints it.
NAMES_TU = """#include <segnet/models/registry.hpp>
#include <cstdio>
int main() {
    for (std::string_view n : segnet::models::model_names) std::printf("%.*s\\n", int(n.size()), n.data());
}
"""

BASELINE = """#include <segnet/segnet.hpp>
int main() { return 0; }
"""

MODEL_TU = """#include <segnet/segnet.hpp>
int main() {
    segnet::Model<segnet::models::model_named_t<"%s", 11>, segnet::Cpu> model(1);
    segnet::Tensor<segnet::Cpu> x({1, 3, 32, 32});
    return int(model.forward(x, segnet::Mode::eval).size() %% 2);
}
"""

# Every model for every supported class count, as a program using with_model() compiles it.
REGISTRY_TU = """#include <segnet/segnet.hpp>
#include <cstdio>
int main(int argc, char** argv) {
    segnet::Tensor<segnet::Cpu> x({1, 3, 32, 32});
    const auto size = segnet::models::with_model(argc > 1 ? argv[1] : "segnet-basic", argc > 2 ? std::atoi(argv[2]) : 11,
        [&]<class Net>() {
            segnet::Model<Net, segnet::Cpu> model(1);
            return model.forward(x, segnet::Mode::eval).size();
        });
    std::printf("%lld\\n", (long long)size);
}
"""


def compile_once(cxx, source_text, flags):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "tu.cpp")
        with open(src, "w") as f:
            f.write(source_text)
        cmd = ["/usr/bin/time", "-v", cxx] + flags + ["-c", src, "-o", os.path.join(tmp, "tu.o")]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("compile failed:\n" + p.stderr[-4000:])
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        user = re.search(r"User time \(seconds\): ([\d.]+)", p.stderr)
        h = int(wall.group(1) or 0)
        seconds = h * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
        return seconds, float(user.group(1)), int(rss.group(1)) / 1024.0


def registry_names(cxx, flags):
    """The built-in models' names, in the registry's order."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "names.cpp"), os.path.join(tmp, "names")
        with open(src, "w") as f:
            f.write(NAMES_TU)
        p = subprocess.run([cxx] + [x for x in flags if x != "-O3"] + [src, "-o", exe], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("compile failed:\n" + p.stderr[-4000:])
        return subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()


def measure(cxx, text, flags, repeat):
    runs = [compile_once(cxx, text, flags) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--models", nargs="*", help="registry names (default: all)")
    ap.add_argument("--registry", action="store_true", help="also the with_model() TU")
    ap.add_argument("--registry-classes", help="class counts for the with_model() TU, e.g. 1,2,3 "
                    "(-DSEGNET_CLASS_COUNTS; default: the registry's list)")
    ap.add_argument("--no-native", action="store_true", help="without -march=native")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()

    flags = ["-std=c++20", "-O3", "-DNDEBUG", "-fno-math-errno", "-I" + os.path.join(ROOT, "include"),
             "-isystem", "/usr/include/stb"]
    if not args.no_native:
        flags.append("-march=native")
    names = registry_names(args.cxx, flags)
    unknown = [m for m in args.models or [] if m not in names]
    if unknown:
        sys.exit("compile_time.py: unknown model(s) %s; the models are: %s" % (", ".join(unknown), ", ".join(names)))
    chosen = [m for m in names if not args.models or m in args.models]

    version = subprocess.run([args.cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    lines = [f"Compiler: {version}; flags: -std=c++20 -O3 -DNDEBUG" + ("" if args.no_native else " -march=native")
             + f"; best of {args.repeat}; {os.cpu_count()} CPUs.", "",
             "| translation unit | wall (s) | user CPU (s) | peak memory (MiB) |", "|---|---:|---:|---:|"]

    def row(name, text):
        wall, user, mib = measure(args.cxx, text, flags, args.repeat)
        lines.append(f"| {name} | {wall:.1f} | {user:.1f} | {mib:.0f} |")
        print(lines[-1], file=sys.stderr, flush=True)

    row("`<segnet/segnet.hpp>` only (baseline)", BASELINE)
    for name in chosen:
        row(f"`Model<model_named_t<\"{name}\", 11>, Cpu>` + forward ({name})", MODEL_TU % name)
    if args.registry:
        counts = args.registry_classes
        if counts:
            flags.append("-DSEGNET_CLASS_COUNTS=" + counts)
        what = f"class counts {counts}" if counts else "the default class counts"
        row(f"`with_model()`: every model x {what}, Model + forward", REGISTRY_TU)

    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
