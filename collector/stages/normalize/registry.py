"""The mappers, in precedence order: for each column, the first mapper that found a value wins.

OpenInference first (the richest flat form, and what tracehouse.instrumentation emits), then the
current OTel GenAI convention, then its deprecated forms and OpenLLMetry, then the Vercel AI SDK.
Precedence only matters on spans that carry more than one convention (OpenLLMetry writes current and
deprecated GenAI keys side by side; the Vercel AI SDK writes `gen_ai.*` next to `ai.*`), and there it
picks, field by field, the most specific source that has the field.
"""

from __future__ import annotations

from tracehouse.collector.stages.normalize import genai, genai_legacy, openinference, vercel
from tracehouse.collector.stages.normalize.mapper import Mapper

MAPPERS: tuple[Mapper, ...] = (openinference.MAPPER, genai.MAPPER, genai_legacy.MAPPER, vercel.MAPPER)

# A span none of whose attribute keys (or event names) starts with one of these takes the plain-span path.
# Coarser than the mappers' own prefixes (fewer to test per key); a test checks that they cover them.
ATTRIBUTE_PREFIXES: tuple[str, ...] = ("llm.", "gen_ai.", "openinference.", "traceloop.", "ai.")
EVENT_PREFIXES: tuple[str, ...] = ("gen_ai.",)
