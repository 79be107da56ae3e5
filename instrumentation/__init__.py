"""App-side instrumentation: one call sets up OTLP export and the installed OpenInference instrumentors.

```python
from tracehouse.instrumentation import chain, setup, step, tagged

setup(service_name="support-bot")          # OTLP to OTEL_EXPORTER_OTLP_ENDPOINT or 127.0.0.1:4317

@chain                                     # a CHAIN span per call, parent of the LLM calls inside
def answer(question: str) -> str: ...

with tagged(user="u-42", session="s-9", feature="support", prompt_version="v3"):
    answer("Where is my order?")
```

Only the plain install's packages are used (OpenTelemetry SDK, OTLP exporters, openinference-instrumentation).
"""

from tracehouse.instrumentation._context import ContextSpanProcessor, tagged
from tracehouse.instrumentation._provider import (
    MAX_EXPORT_BATCH_SIZE,
    MAX_QUEUE_SIZE,
    enabled_instrumentors,
    flush,
    setup,
    shutdown,
)
from tracehouse.instrumentation._steps import Step, chain, step

__all__ = [
    "MAX_EXPORT_BATCH_SIZE",
    "MAX_QUEUE_SIZE",
    "ContextSpanProcessor",
    "Step",
    "chain",
    "enabled_instrumentors",
    "flush",
    "setup",
    "shutdown",
    "step",
    "tagged",
]
