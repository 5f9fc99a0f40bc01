"""Wall-clock time of the zoo command issue 6 names, run through the real entry point.

python benchmarks/zoo_timing.py          # → results/zoo-timing.json (target: under 5 minutes)
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ARGS = ["zoo", "--epochs", "1", "--train-subset", "5000", "--sample-quality", "2000", "--quiet"]


def main() -> None:
    out = RESULTS / "runs" / "zoo"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aezoo", *ARGS, "--out", str(out)], check=True)
    seconds = time.perf_counter() - started
    models = len(json.loads((out / "zoo.json").read_text())["rows"])
    result = {
        "command": "aezoo " + " ".join(ARGS),
        "seconds": round(seconds, 1),
        "models": models,
        "machine": f"{platform.machine()}, 2-core CPU",
    }
    (RESULTS / "zoo-timing.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(out / "zoo.md", RESULTS / "zoo.md")  # the README's "zoo at a glance" table
    print(f"{result['command']}: {seconds:.0f} s for {models} models")


if __name__ == "__main__":
    main()
