"""The compiled seasonal update never reads or writes outside its arrays.

numba does not check indices unless asked, so an off-by-one in the kernel (or in the
sizes the caller allocates) would corrupt memory silently. This runs the randomized
comparison of both paths in a fresh process compiled with bounds checks (its own
cache directory, so nothing compiled without them is loaded).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from tests.detection.test_seasonal_batch import chunked, per_point, random_case
from lupus_stream.detection.seasonal import SeasonalDetector

for seed in range(0, 200, 5):
    params, ts, xs = random_case(seed)
    reference = SeasonalDetector(params)
    verdicts = per_point(reference, ts, xs)
    batched = SeasonalDetector(params)
    assert repr(chunked(batched, ts, xs, seed)) == repr(verdicts), seed
print("ok")
"""


def test_random_series_run_within_bounds(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
