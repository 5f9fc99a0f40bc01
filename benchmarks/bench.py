"""Speed and scale of every model (issue 7): `aezoo bench`, writing to benchmarks/results/.

Per model: training and evaluation images/s, peak memory, seconds per full-data epoch and to a
target quality, beside the tutorial DataLoader pipeline on the same model
(aezoo.studies.bench); then
seconds per epoch against data size and batch size. Results: bench-DEVICE[-TAG].{json,md}.

    python benchmarks/bench.py                             # everything (long: a quiet machine)
    python benchmarks/bench.py --models dense-vae,conv-ae  # some models
    python benchmarks/bench.py --quick --models dense-ae   # smoke test, seconds
    python benchmarks/bench.py --compile / --precision bf16 / --threads N / --device cuda
"""

from __future__ import annotations

import sys
from pathlib import Path

from aezoo.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", str(Path(__file__).parent / "results")]
    sys.exit(main(["bench", *argv]))
