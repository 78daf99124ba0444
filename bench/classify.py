"""Classifier throughput benchmark: messages per second on one core over the labelled corpus.

    python bench/classify.py [--rounds 5] [--seconds 2]

Runs, in one process (one core), two loops over every message of ``tests/data/corpus``:

- the **baseline**: bare ``email.message_from_bytes`` parsing of each message;
- the **classifier**: :func:`inbound.classify.classify_message` on each message, with the
  default configuration, no token resolver and no DNS (what the classification thread does
  apart from its look-ups).

The two alternate for ``--rounds`` rounds of about ``--seconds`` of CPU time each (so what load
elsewhere on the machine still costs, caches and frequency, hurts both alike); the median
rates per CPU second and the classifier/baseline ratio are printed.
The issue asks for at least 500 classified messages/s.
"""

from __future__ import annotations

import argparse
import email
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.config import Config  # noqa: E402
from inbound.classify import Envelope, classify_message  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "corpus"
ENVELOPE = Envelope("person@example.org", ("replies@unsubscribe.example.com",))


def corpus() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CORPUS.rglob("*")) if path.suffix in (".eml", ".txt")]


def rate(handle: Callable[[bytes], object], messages: list[bytes], seconds: float) -> float:
    """Messages per CPU second of this process handling the whole corpus repeatedly for about
    ``seconds`` of CPU time (CPU time, not wall time: other processes on the machine do not
    count against it)."""
    done = 0
    start = time.process_time()
    while True:
        for raw in messages:
            handle(raw)
        done += len(messages)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    messages = corpus()
    config = Config()

    def classify(raw: bytes) -> object:
        return classify_message(raw, ENVELOPE, config=config)

    rate(classify, messages, 0.5)  # warm-up: compiled patterns, imports
    baseline, classifier = [], []
    for _ in range(args.rounds):
        baseline.append(rate(email.message_from_bytes, messages, args.seconds))
        classifier.append(rate(classify, messages, args.seconds))
    base, cls = statistics.median(baseline), statistics.median(classifier)
    print(f"corpus: {len(messages)} messages; {args.rounds} rounds of ~{args.seconds:g} CPU s each, one core")
    print(f"baseline (email.message_from_bytes): {base:8.0f} msg per CPU s")
    print(f"classifier (classify_message):       {cls:8.0f} msg per CPU s")
    print(f"classifier/baseline: {cls / base:.2f}; target >= 500 msg/s: {'met' if cls >= 500 else 'NOT met'}")


if __name__ == "__main__":
    main()
