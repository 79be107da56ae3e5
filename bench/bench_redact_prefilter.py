"""Where the redaction stage's time goes, and what a Hyperscan prefilter in front of the RE2 pass buys.

Part 1 (breakdown): the stage over the LLM spans of bench_redact (4 batches of 1,000 spans), split into the
one RE2 pass of the built-in triggers (candidate starts only), the detectors' patterns and validators at
those candidates, the rest of the scanner (dedup, clean-value memory, join/encode, escapes, base64, rewrite)
and the rest of the stage (walking columns and attribute maps, policies, counts).

Part 2 (prefilter): one Hyperscan database of the same triggers (alone, a superset, or with the finder's
boundary in front, exact: --patterns) scans the joined text of a call; the RE2 pass and the validators then
run only over the values Hyperscan flagged, on the same buffer (so every neighbour and budget is as today).
The redacted outputs are compared byte for byte with today's on the corpus, the prompts and the stage's
batches, then both are timed (CPU time, best of N, runs interleaved).

    .venv/bin/python bench/bench_redact_prefilter.py [--repeat 15] [--patterns alone|boundary|both]

Needs `.venv/bin/pip install hyperscan==0.9.1`; bench only, the stage does not use it (measured: it does not
pay, see README "Redaction").
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import bench_redact as br

from tracehouse.collector.stages.redact import Redactor, parse_settings
from tracehouse.collector.stages.redact.detectors import BUILTINS
from tracehouse.collector.stages.redact.finder import BOUNDARY, starts_at

ROOT = Path(__file__).resolve().parent.parent


def _cpu(fn, repeat: int, fresh=None) -> float:
    return br._best(fn, repeat=repeat, fresh=fresh)


def _pair(fa, fb, repeat: int, fresh_a, fresh_b) -> tuple[float, float]:
    """CPU seconds of a and b, best of repeat each, runs interleaved so that a busy spell hits both alike."""
    ta = tb = float("inf")
    for _ in range(repeat):
        ta = min(ta, _cpu(fa, 1, fresh_a))
        tb = min(tb, _cpu(fb, 1, fresh_b))
    return ta, tb


class Prefilter:
    """The built-in triggers in one Hyperscan block-mode database: which stretches of a joined buffer
    (NUL-separated values) can hold a candidate start at all."""

    def __init__(self, detectors=BUILTINS, boundary: bool = False) -> None:
        """boundary: each trigger with the finder's boundary in front (exact), else the trigger alone (a
        superset: every finder match ends with a trigger match); alone is the faster database here."""
        import hyperscan

        self.hs = hyperscan
        exprs, flags, self.prefiltered, self.failed = [], [], [], []
        for d in detectors:
            # RE2's \s is [\t\n\f\r ]; Hyperscan's (PCRE's) adds \v, which would make a negated class narrower.
            expr = (BOUNDARY + "(?:" + d.trigger + ")" if boundary else d.trigger).replace(r"\s", r"\t\n\f\r ").encode()
            flag = 0
            try:
                probe = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                probe.compile(expressions=[expr], ids=[0], elements=1, flags=[flag])
            except hyperscan.error:
                flag = hyperscan.HS_FLAG_PREFILTER
                try:
                    probe = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                    probe.compile(expressions=[expr], ids=[0], elements=1, flags=[flag])
                    self.prefiltered.append(d.name)
                except hyperscan.error:
                    self.failed.append(d.name)
                    continue
            exprs.append(expr)
            flags.append(flag)
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self.db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
        self.matches = 0

    def ranges(self, buf: bytes) -> list[tuple[int, int]] | None:
        """Sorted, disjoint [start, end) stretches to run the RE2 pass over: from the NUL before a flagged
        value (its boundary) to the NUL after it. None: no prefilter (a trigger Hyperscan cannot take)."""
        if self.failed:
            return None
        ends: list[int] = []
        self.db.scan(buf, match_event_handler=_collect, context=ends)
        self.matches += len(ends)
        out: list[tuple[int, int]] = []
        last_end = -1
        for to in ends:  # reported in order of end offset
            if to <= last_end:
                continue
            start = buf.rfind(b"\x00", 0, to - 1)
            start = 0 if start < 0 else start
            end = buf.find(b"\x00", to)
            end = len(buf) if end < 0 else end
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
            last_end = end
        return out


def _collect(id_: int, start: int, end: int, flags: int, ends: list[int]) -> None:
    ends.append(end)


def install(scanner, prefilter: Prefilter) -> None:
    """Make this scanner run its built-in pass only over what the prefilter flags (bench only)."""
    finder = scanner._finder
    from re2 import _re2

    match = finder._regex._regexp.Match
    unanchored = _re2.RE2.Anchor.UNANCHORED

    def builtin_hits(buf: bytes):
        ranges = prefilter.ranges(buf)
        if ranges is None:
            return original(buf)
        if not ranges:
            return []
        state = {"i": 0}

        def starts(b: bytes, pos: int) -> tuple[int, ...]:
            i = state["i"]
            while i < len(ranges) and pos >= ranges[i][1]:
                i += 1
            state["i"] = i
            if i == len(ranges):
                return ()
            lo, hi = ranges[i]
            if pos < lo:
                pos = lo
            # The first trigger match at or after pos within this stretch; none: on to the next stretch.
            while True:
                s = match(unanchored, b, pos, hi)[0][0]
                if s >= 0:
                    return starts_at(b, s)  # the boundary logic as today, from the match's start
                i += 1
                state["i"] = i
                if i == len(ranges):
                    return ()
                pos, hi = ranges[i]

        finder.starts = starts
        try:
            return original(buf)
        finally:
            del finder.starts

    original = scanner._builtin_hits
    scanner._builtin_hits = builtin_hits


def breakdown(repeat: int) -> dict[str, float]:
    redactor = Redactor(parse_settings({}, environ={}))
    scanner = redactor._scanner
    prompts = br.prompt_texts(4000)
    batches = [br.llm_batch(prompts[i : i + 1000]) for i in range(0, 4000, 1000)]
    size = br._attribute_mb(batches)
    spans = sum(len(b) for b in batches)

    def fresh() -> None:
        scanner._clean.clear()

    bufs: list[bytes] = []
    original = scanner._builtin_hits

    def recording(buf: bytes):
        bufs.append(buf)
        return original(buf)

    scanner._builtin_hits = recording
    fresh()
    for b in batches:
        redactor(b)
    scanner._builtin_hits = original
    stage = _cpu(lambda: [redactor(b) for b in batches], repeat, fresh)
    # The scanner's share: the stage again with scan_values answering from a recording of its results.
    recorded: list[tuple[list[str], list]] = []
    plain_scan = scanner.scan_values

    def recording_scan(values):
        results = plain_scan(values)
        recorded.append((list(values), results))
        return results

    scanner.scan_values = recording_scan
    fresh()
    for b in batches:
        redactor(b)
    replay = iter(())

    def replaying(values):
        return next(replay)

    def rewind() -> None:
        nonlocal replay
        replay = iter([results for _, results in recorded])

    scanner.scan_values = replaying
    without_scan = _cpu(lambda: [redactor(b) for b in batches], repeat, rewind)
    del scanner.scan_values
    scan = stage - without_scan
    hits = _cpu(lambda: [original(buf) for buf in bufs], repeat)
    starts = scanner._finder.starts

    def re2_only() -> int:
        n = 0
        for buf in bufs:
            candidates = starts(buf, 0)
            while candidates:
                n += 1
                pos = candidates[-1] + 1
                candidates = starts(buf, pos) if pos < len(buf) else ()
        return n

    re2_pass = _cpu(re2_only, repeat)
    candidates = re2_only()
    scanned = sum(map(len, bufs)) / 1e6
    per4k = lambda s: br._per_4k(s, size)  # noqa: E731
    print(
        f"stage breakdown: {spans} LLM spans, {size:.2f} MB of attribute text, {scanned:.2f} MB scanned "
        f"(distinct values >= 6 chars), {candidates} candidate starts"
    )
    rows = [
        ("whole stage", stage),
        ("  scanner.scan_values", scan),
        ("    built-in hits (RE2 pass + patterns/validators)", hits),
        ("      RE2 trigger pass alone", re2_pass),
        ("      patterns + validators at candidates", hits - re2_pass),
        ("    rest of scanner (dedup, memory, join/encode, escapes, base64, rewrite)", scan - hits),
        ("  rest of stage (columns, maps, policies, counts)", stage - scan),
    ]
    for name, seconds in rows:
        print(
            f"  {name:76s} {per4k(seconds):6.2f} us/4 KB {seconds * 1e6 / spans:6.2f} us/span "
            f"{100 * seconds / stage:5.1f}%"
        )
    return {"stage": stage, "re2": re2_pass}


def compare(repeat: int, boundary: bool) -> None:
    prefilter = Prefilter(boundary=boundary)
    print(
        f"hyperscan database ({'boundary + trigger' if boundary else 'triggers alone'}): "
        f"{len(BUILTINS) - len(prefilter.failed)} of {len(BUILTINS)} triggers "
        f"(prefilter-mode: {prefilter.prefiltered or 'none'}; not compiled: {prefilter.failed or 'none'})"
    )
    today = Redactor(parse_settings({}, environ={}))
    fast = Redactor(parse_settings({}, environ={}))
    install(fast._scanner, prefilter)
    prompts = br.prompt_texts(4000)
    corpus = [doc["text"] for doc in br.make_corpus.load()]
    encoded = br.encoded_texts(prompts)
    for name, texts in (("corpus", corpus), ("prompts", prompts), ("encoded", encoded)):
        for scanner in (today._scanner, fast._scanner):
            scanner._clean.clear()
        a = [today._scanner.scan_values(texts[i : i + 500]) for i in range(0, len(texts), 500)]
        b = [fast._scanner.scan_values(texts[i : i + 500]) for i in range(0, len(texts), 500)]
        assert a == b, f"{name}: outputs differ"
        one_a = [today._scanner.scan(t) for t in texts[:1000]]
        one_b = [fast._scanner.scan(t) for t in texts[:1000]]
        assert one_a == one_b, f"{name}: outputs differ one string per call"
        assert [today._scanner.detect(t) for t in texts[:1000]] == [fast._scanner.detect(t) for t in texts[:1000]]
    batches = [br.llm_batch(prompts[i : i + 1000]) for i in range(0, 4000, 1000)]
    chats = br.conversation_batches(200, 4)
    for group in (batches, chats):
        for scanner in (today._scanner, fast._scanner):
            scanner._clean.clear()
        for batch in group:
            x, y = today(copy.deepcopy(batch)), fast(copy.deepcopy(batch))
            assert x.columns == y.columns, "stage outputs differ"
    print("outputs identical: corpus, prompts, encoded (500 per call, one by one, detect), stage batches, chats")

    def fresher(redactor):
        return lambda: redactor._scanner._clean.clear()

    size = br._attribute_mb(batches)
    spans = sum(len(b) for b in batches)
    print("                     today                        with the Hyperscan prefilter")
    for name, texts in (("prompts", prompts), ("corpus", corpus)):
        mb = br._mb(texts)
        ta, tb = _pair(
            lambda texts=texts: [today._scanner.scan_values(texts[i : i + 500]) for i in range(0, len(texts), 500)],
            lambda texts=texts: [fast._scanner.scan_values(texts[i : i + 500]) for i in range(0, len(texts), 500)],
            repeat,
            fresher(today),
            fresher(fast),
        )
        print(
            f"  {name:8s} 500/call {br._per_4k(ta, mb):7.2f} us/4 KB                 {br._per_4k(tb, mb):7.2f} us/4 KB"
            f"  ({100 * (tb - ta) / ta:+.0f}%)"
        )
    ta, tb = _pair(
        lambda: [today(b) for b in batches], lambda: [fast(b) for b in batches], repeat, fresher(today), fresher(fast)
    )
    print(
        f"  stage             {br._per_4k(ta, size):7.2f} us/4 KB {ta * 1e6 / spans:6.2f} us/span"
        f"  {br._per_4k(tb, size):7.2f} us/4 KB {tb * 1e6 / spans:6.2f} us/span  ({100 * (tb - ta) / ta:+.0f}%)"
    )
    # The Hyperscan pass alone over the stage's joined buffers.
    bufs: list[bytes] = []
    original = fast._scanner._builtin_hits

    def recording(buf: bytes):
        bufs.append(buf)
        return original(buf)

    fast._scanner._builtin_hits = recording
    fast._scanner._clean.clear()
    for b in batches:
        fast(b)
    fast._scanner._builtin_hits = original
    hs_pass = _cpu(lambda: [prefilter.ranges(buf) for buf in bufs], repeat)
    flagged = [prefilter.ranges(buf) for buf in bufs]
    flagged_bytes = sum(e - s for r in flagged for s, e in r)
    print(
        f"  hyperscan pass alone over the stage's buffers: {br._per_4k(hs_pass, size):.2f} us/4 KB; it flags "
        f"{flagged_bytes / 1e6:.2f} of {sum(map(len, bufs)) / 1e6:.2f} MB for the RE2 pass"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure, best taken (CPU time)")
    parser.add_argument("--skip-breakdown", action="store_true", help="only the prefilter comparison")
    parser.add_argument(
        "--patterns",
        choices=("alone", "boundary", "both"),
        default="both",
        help="Hyperscan database: the triggers alone (a superset), with the finder's boundary (exact), or both",
    )
    args = parser.parse_args()
    if not args.skip_breakdown:
        breakdown(args.repeat)
    for boundary in {"alone": (False,), "boundary": (True,), "both": (False, True)}[args.patterns]:
        compare(args.repeat, boundary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
