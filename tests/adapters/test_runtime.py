"""The garbage-collector tuning of the long-running commands (in a child process: it is
process-wide and would change the rest of the test session)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import gc, weakref
from adapters.runtime import YOUNG_THRESHOLD, tune_gc

tune_gc()
assert gc.isenabled()
assert gc.get_threshold()[0] == YOUNG_THRESHOLD
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # the start-up heap is out of every collection

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: reference counting alone never frees it
alive = weakref.ref(a)
del a, b
batch = [[] for _ in range(YOUNG_THRESHOLD + 1000)]  # one large batch of live objects
assert alive() is None, "the collector ran by itself and freed the cycle"
print("ok", len(batch))
"""


def test_tuned_collector_still_frees_cycles_by_itself() -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
