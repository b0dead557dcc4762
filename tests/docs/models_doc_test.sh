#!/usr/bin/env bash
# docs/models.md shows what the registry's models are: its numbers table is segnet-architectures'
# output as printed (one row per models::BuiltinModels entry), and every registry name has a row
# in its table of types. Regenerate the block with build/examples/segnet-architectures.
#   models_doc_test.sh ARCHITECTURES_PROGRAM DOCS_MODELS_MD
set -euo pipefail
program="$1"
page="$2"
printed="$("$program")"
python3 - "$page" <<PY || exit 1
import sys
page = open(sys.argv[1]).read()
printed = """$printed"""
if printed.strip() not in page:
    sys.exit("models_doc_test: %s does not show segnet-architectures' table as printed: regenerate it" % sys.argv[1])
for line in printed.splitlines():
    if line.startswith("| ") and not line.startswith("| model "):
        name = line.split("|")[1].strip()
        if "| \`%s\` |" % name not in page:
            sys.exit("models_doc_test: %s has no row for the model '%s' in its table of types" % (sys.argv[1], name))
print("models_doc_test: ok")
PY
