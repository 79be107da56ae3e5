"""Redaction throughput in MB/s per core (one thread), all built-in detectors on.

Three workloads, generated deterministically:
- prompts: realistic LLM prompt text (chat turns as JSON message arrays and plain text: prose,
  pasted code and logs, numbers, dates, prices, versions); one message in ten carries PII or a key;
- corpus: the labelled test corpus (tests/data/redaction), where every document carries PII;
- stage: the whole Redactor over SpanBatches of LLM spans (attributes, resource, events);
- chats: the stage over multi-turn chats whose calls resend their history (what remembering clean values
  across batches is for), with and without that memory;
- encodings: what seeing through encoded forms costs (JSON \\u00XX escapes, URL %XX, whole-value
  base64): prompts and the stage with each decoding switched off, and prompts where one in ten
  carries an escaped or base64 value (the worst realistic case: every such value gets a view).

    .venv/bin/python bench/bench_redact.py
"""

from __future__ import annotations

import base64
import json
import random
import sys
import time
from pathlib import Path

from tracehouse.collector.batch import SpanBatch
from tracehouse.collector.stages.redact import Redactor, parse_settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "data" / "redaction"))

import make_corpus  # noqa: E402

PROSE = (
    "the model should answer in a friendly tone and keep the summary under three sentences while "
    "mentioning any follow up actions that the customer asked for in the previous message as well as "
    "the context retrieved from the knowledge base about billing plans refunds and account settings "
    "please make sure the answer is accurate and cites the relevant documentation section when possible"
).split()
CODE = [
    "def handler(event, context):\n    items = fetch(event['id'], limit=100)\n    return {'count': len(items)}",
    "for i in range(10):\n    time.sleep(0.5)\n    print(f'retry {i} of 10')",
    "SELECT user_id, count(*) FROM orders WHERE created_at > '2024-05-01' GROUP BY 1 LIMIT 50;",
    "const res = await fetch(`/api/v2/items?page=${page}`, { method: 'GET' });",
    "2024-05-01T12:34:56.789Z INFO worker-3 processed 1532 jobs in 4.21s (p99 812ms)",
    'Traceback (most recent call last):\n  File "app.py", line 42, in <module>\nValueError: bad input',
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(PROSE) for _ in range(rng.randint(8, 24))]
    extra = rng.random()
    if extra < 0.15:
        words.insert(rng.randrange(len(words)), f"{rng.randint(1, 2025)}")
    elif extra < 0.25:
        words.insert(rng.randrange(len(words)), f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
    elif extra < 0.32:
        words.insert(rng.randrange(len(words)), f"${rng.randint(1, 999)}.{rng.randint(0, 99):02d}")
    elif extra < 0.36:
        words.insert(rng.randrange(len(words)), f"v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}")
    return " ".join(words).capitalize() + "."


def _pii(rng: random.Random) -> str:
    kind = rng.choice(list(make_corpus.GENERATORS))
    embed, value = make_corpus.GENERATORS[kind](rng)
    return embed if kind == "secret" else rng.choice(make_corpus.TEMPLATES[kind]).format(value)


def _message(rng: random.Random) -> str:
    parts = [_sentence(rng) for _ in range(rng.randint(3, 12))]
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts)), "```\n" + rng.choice(CODE) + "\n```")
    if rng.random() < 0.1:
        parts.insert(rng.randrange(len(parts)), _pii(rng))
    return " ".join(parts)


def prompt_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        if rng.random() < 0.6:
            turns = [{"role": "system", "content": _message(rng)}]
            turns += [
                {"role": rng.choice(["user", "assistant"]), "content": _message(rng)} for _ in range(rng.randint(1, 4))
            ]
            texts.append(json.dumps(turns))
        else:
            texts.append(_message(rng))
    return texts


def llm_batch(texts: list[str], seed: int = 11) -> SpanBatch:
    rng = random.Random(seed)
    batch = SpanBatch()
    resource = {"service.name": "chat-api", "service.version": "1.4.2", "deployment.environment": "prod"}
    for i, text in enumerate(texts):
        c = batch.columns
        c["Timestamp"].append(1_714_567_890_000_000_000 + i)
        c["TraceId"].append(f"{rng.getrandbits(128):032x}")
        c["SpanId"].append(f"{rng.getrandbits(64):016x}")
        c["ParentSpanId"].append("")
        c["TraceState"].append("")
        c["SpanName"].append("ChatCompletion")
        c["SpanKind"].append("Internal")
        c["ServiceName"].append("chat-api")
        c["ResourceAttributes"].append(resource)
        c["ScopeName"].append("openinference.instrumentation.openai")
        c["ScopeVersion"].append("0.1.30")
        c["SpanAttributes"].append(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini-2024-07-18",
                "llm.provider": "openai",
                "input.value": text,
                "input.mime_type": "application/json",
                "output.value": texts[(i + 1) % len(texts)][:400],
                "llm.token_count.prompt": str(rng.randint(50, 4000)),
                "llm.token_count.completion": str(rng.randint(5, 800)),
                "llm.invocation_parameters": '{"temperature": 0.2, "max_tokens": 512}',
            }
        )
        c["Duration"].append(rng.randint(10**8, 5 * 10**9))
        c["StatusCode"].append("Ok")
        c["StatusMessage"].append("")
        for name in ("Events.Timestamp", "Events.Name", "Events.Attributes"):
            c[name].append([])
        for name in ("Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes"):
            c[name].append([])
    return batch


def _mb(texts: list[str]) -> float:
    return sum(len(t.encode()) for t in texts) / 1e6


def _best(fn, repeat: int = 5, fresh=None) -> float:
    """CPU seconds of this process (per core: other work on the machine does not count), best of repeat.

    fresh: called before each run, untimed, so that no run sees values an earlier one remembered."""
    best = float("inf")
    for _ in range(repeat):
        if fresh is not None:
            fresh()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _per_4k(seconds: float, megabytes: float) -> float:
    """Microseconds per 4 KB of text."""
    return seconds * 1e6 / (megabytes * 1e6 / 4096)


def conversation_batches(conversations: int, turns: int, seed: int = 13) -> list[SpanBatch]:
    """Multi-turn chats as instrumentations record them: every call resends the history, flattened
    (llm.input_messages.{i}.message.content) and as the input.value JSON. Batch k holds call k of every
    chat, so from the second batch on most message texts were seen in an earlier batch."""
    rng = random.Random(seed)
    histories: list[list[dict[str, str]]] = [
        [{"role": "system", "content": _message(rng)}] for _ in range(conversations)
    ]
    batches = []
    for _ in range(turns):
        texts = []
        for history in histories:
            history.append({"role": "user", "content": _message(rng)})
            texts.append(json.dumps(history))
        batch = llm_batch(texts, seed=rng.randrange(1 << 30))
        for attrs, history in zip(batch.columns["SpanAttributes"], histories, strict=True):
            for i, message in enumerate(history):
                attrs[f"llm.input_messages.{i}.message.role"] = message["role"]
                attrs[f"llm.input_messages.{i}.message.content"] = message["content"]
            answer = _message(rng)
            attrs["output.value"] = answer
            attrs["llm.output_messages.0.message.content"] = answer
            history.append({"role": "assistant", "content": answer})
        batches.append(batch)
    return batches


def encoded_texts(texts: list[str], seed: int = 5) -> list[str]:
    """One text in ten rewritten with URL or JSON escapes of printable characters, or as base64."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        roll = rng.random()
        if roll < 0.04:
            text = text.replace(" ", "%20").replace("@", "%40")
        elif roll < 0.08:
            text = text.replace("@", "\\u0040").replace("<", "\\u003c")
        elif roll < 0.1:
            text = base64.b64encode(text.encode()).decode()
        out.append(text)
    return out


def _without_decoding(what: str):
    """Switch one decoding off in this process (bench only), to price it."""
    from tracehouse.collector.stages.redact import scanner as module

    if what == "escapes":
        module.may_have_escapes = lambda buf: False
    else:
        module.Scanner._scan_base64 = lambda self, values, results: None


def main() -> int:
    # One Redactor, as in a running collector (its RE2 programs warm), made to forget before each timed run
    # the values it remembered clean in the previous one: every figure but "chats" is for text never seen.
    redactor = Redactor(parse_settings({}, environ={}))

    def fresh() -> None:
        clean = getattr(redactor._scanner, "_clean", None)
        if clean is not None:
            clean.clear()

    prompts = prompt_texts(4000)
    corpus = [doc["text"] for doc in make_corpus.load()]
    print("redaction throughput, one core, all built-in detectors (text not seen before, but for chats)")
    for name, texts in (("prompts", prompts), ("corpus", corpus)):
        one_by_one = _best(lambda texts=texts: [redactor._scanner.scan(t) for t in texts], fresh=fresh)
        batched = _best(
            lambda texts=texts: [redactor._scanner.scan_values(texts[i : i + 500]) for i in range(0, len(texts), 500)],
            fresh=fresh,
        )
        size = _mb(texts)
        print(
            f"  {name:8s} {size:6.2f} MB  {size / one_by_one:7.1f} MB/s ({_per_4k(one_by_one, size):5.1f} us/4 KB) "
            f"one string per call   {size / batched:7.1f} MB/s ({_per_4k(batched, size):5.1f} us/4 KB) 500 per call"
        )
    batches = [llm_batch(prompts[i : i + 1000]) for i in range(0, len(prompts), 1000)]
    size = _attribute_mb(batches)
    elapsed = _best(lambda: [redactor(b) for b in batches], fresh=fresh)
    spans = sum(len(b) for b in batches)
    print(
        f"  stage    {size:6.2f} MB  {size / elapsed:7.1f} MB/s ({_per_4k(elapsed, size):5.1f} us/4 KB)  "
        f"{spans / elapsed:9.0f} spans/s, {elapsed * 1e6 / spans:5.1f} us/span (LLM spans, 9 attrs, "
        f"{size * 1e6 / spans / 1024:.1f} KB of text each)"
    )
    chats = conversation_batches(500, 6)
    size = _attribute_mb(chats)
    spans = sum(len(b) for b in chats)
    warm = _best(lambda: [redactor(b) for b in chats], repeat=3, fresh=fresh)
    forgetful = Redactor(parse_settings({}, environ={}))
    forgetful._scanner._clean = None  # bench only: the same stage without its memory of clean values
    cold = _best(lambda: [forgetful(b) for b in chats], repeat=3)
    print(
        f"  chats    {size:6.2f} MB  {size / warm:7.1f} MB/s ({_per_4k(warm, size):5.1f} us/4 KB)  "
        f"{spans / warm:9.0f} spans/s (6-turn chats resending their history; {spans / cold:.0f} spans/s "
        f"without remembering clean values)"
    )
    encoded = encoded_texts(prompts)
    size = _mb(encoded)
    elapsed = _best(
        lambda: [redactor._scanner.scan_values(encoded[i : i + 500]) for i in range(0, len(encoded), 500)], fresh=fresh
    )
    print(f"  encoded  {size:6.2f} MB  {size / elapsed:7.1f} MB/s 500 strings per call (1 in 10 escaped or base64)")
    print("cost of each decoding (prompts, 500 strings per call; stage):")
    size = _mb(prompts)
    spans = sum(len(b) for b in batches)
    for what in ("base64", "escapes"):
        _without_decoding(what)
        batched = _best(
            lambda: [redactor._scanner.scan_values(prompts[i : i + 500]) for i in range(0, len(prompts), 500)],
            fresh=fresh,
        )
        stage = _best(lambda: [redactor(b) for b in batches], fresh=fresh)
        print(f"  also without {what:8s} {size / batched:7.1f} MB/s   stage {spans / stage:9.0f} spans/s")
    return 0


def _attribute_mb(batches: list[SpanBatch]) -> float:
    return (
        sum(
            len(v.encode())
            for b in batches
            for column in ("SpanAttributes", "ResourceAttributes")
            for attrs in b.columns[column]
            for v in attrs.values()
        )
        / 1e6
    )


if __name__ == "__main__":
    raise SystemExit(main())
