"""Recall and precision of every built-in detector on the labelled corpus (tests/data/redaction).

Recall counts a labelled value as found only when one detection of the same type covers all of it
(nothing of the value survives); precision counts a detection as right only when it overlaps a
labelled value of its type, so hits on the hard negatives (order numbers, timestamps, UUIDs,
versions, prices, Luhn-failing ids, code, hashes, git SHAs, ...) count against it.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from tracehouse.collector.stages.redact import Scanner
from tracehouse.collector.stages.redact.detectors import TYPES

DATA = Path(__file__).parent / "data" / "redaction"
sys.path.insert(0, str(DATA))

import make_corpus  # noqa: E402

MIN_RECALL = 0.99
MIN_PRECISION = 0.98
MIN_POSITIVES = 300


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, float]]:
    scanner = Scanner()
    labelled, found, detected, correct = Counter(), Counter(), Counter(), Counter()
    for doc in make_corpus.load():
        detections = scanner.detect(doc["text"])
        labels = doc["labels"]
        for kind, start, end in labels:
            labelled[kind] += 1
            if any(k == kind and s <= start and e >= end for k, s, e in detections):
                found[kind] += 1
        for kind, start, end in detections:
            detected[kind] += 1
            if any(k == kind and start < e and end > s for k, s, e in labels):
                correct[kind] += 1
    return {
        kind: {
            "positives": labelled[kind],
            "recall": found[kind] / labelled[kind] if labelled[kind] else 0.0,
            "detections": detected[kind],
            "precision": correct[kind] / detected[kind] if detected[kind] else 0.0,
        }
        for kind in TYPES
    }


def test_corpus_is_reproducible_from_its_script():
    assert make_corpus.render(make_corpus.make_corpus()).encode() == make_corpus.gzip.decompress(
        make_corpus.OUT.read_bytes()
    ), "corpus.jsonl.gz is stale: run tests/data/redaction/make_corpus.py"


def test_corpus_has_hundreds_of_positives_per_type_and_negative_only_documents():
    docs = make_corpus.load()
    counts = Counter(kind for doc in docs for kind, _, _ in doc["labels"])
    assert all(counts[kind] >= MIN_POSITIVES for kind in TYPES), counts
    assert sum(1 for doc in docs if not doc["labels"]) >= 500


@pytest.mark.parametrize("kind", TYPES)
def test_recall_and_precision(scores, kind):
    score = scores[kind]
    print(f"{kind}: {score}")
    assert score["recall"] >= MIN_RECALL, score
    assert score["precision"] >= MIN_PRECISION, score
