"""Normalize stage: each span's LLM attributes, whatever convention wrote them, into the typed columns
of schema/0002_llm_columns.sql, one meaning per column.

Conventions (one mapper module each, see `registry`): OpenInference, OTel GenAI (current), OTel GenAI
deprecated forms with OpenLLMetry/traceloop, Vercel AI SDK (`ai.*`).

Precedence: when a span carries several conventions, each column takes the value of the first mapper,
in the order OpenInference > GenAI current > GenAI deprecated/OpenLLMetry > Vercel AI SDK, that found
one. The raw attributes are never changed.

Token semantics (`tokens`): InputTokens includes cached tokens; CacheReadTokens and CacheWriteTokens
are breakdowns of it, ReasoningTokens of OutputTokens; TotalTokens = Input + Output when not given. An
input count smaller than its cache breakdown is an exclusive (Anthropic-style) count and is converted.

Canonical messages: InputMessages and OutputMessages are JSON arrays of

    {"role": "system" | "developer" | "user" | "assistant" | "tool" | <other, lower-cased>,
     "content": [part, ...],                       # always present, may be empty
     "tool_calls": [{"id": str, "name": str, "arguments": <JSON value, or the raw string
                     when it is not a JSON object/array>}, ...],     # only when the message has some
     "tool_call_id": str,                          # on tool results
     "name": str}                                  # tool or participant name, when given

    part: {"type": "text", "text": str}
        | {"type": "reasoning", "text": str}
        | {"type": "image" | "audio" | "video" | "file", "url": str, "mime_type": str}  # url/mime optional;
                                                                  # inline base64 is replaced by its size
        | {"type": "document", "id": str, "text": str, "score": float, "metadata": ...}  # retriever output
        | {"type": <other>, "text": str}                                                  # text optional

Tool results nested in a message (Anthropic `tool_result` blocks, GenAI `tool_call_response` parts,
Vercel `tool-result` parts) become their own `tool` messages; an AI SDK result's `{"type", "value"}` wrapper
is taken off (`vercel.tool_output`). A message written in two forms side by side (its text as one string
and as parts; a tool call among the parts and in the message's call list) is kept once; what one form
writes twice, two equal parts or two alike calls, is kept as written (`messages.repeats_parts`,
`messages.merge_tool_calls`). The system and developer messages that open the conversation are
lifted out of InputMessages into SystemPrompt (text, joined with blank lines, after GenAI
`gen_ai.system_instructions`); one later in the conversation stays where it sat. ToolCalls is the JSON
list of the tool calls in the output messages
(on a TOOL span: the call the span executed); Tools the JSON list of definitions
`{"type", "name", "description"?, "parameters"?}`. Past 256 messages, the first 8 and the latest are
kept with a `{"role": "truncated", ...}` marker between; long texts are cut with a note (see `limits`).

Identity (`identity`): user, session, feature and tenant come from `tracehouse.*` attributes
(tracehouse.instrumentation.attributes), the conventions' own attributes and the span's metadata object.
The tenant is what the app claims: with API keys configured, the pipeline replaces it with the key's
(processing.with_key_tenant, the one place that decides it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tracehouse.collector.stages.normalize.stage import RedactedCuts, normalize

if TYPE_CHECKING:
    from tracehouse.collector.config import Config
    from tracehouse.collector.stages import Stage


def build(config: Config, before_cut: Callable[[str], str] | None = None) -> Stage:
    """The stage: normalization has no settings, every collector runs it. `before_cut`, the redactor's scan
    of one text when redaction is on, is what a value goes through before normalization cuts it
    (values.BEFORE_CUT)."""
    return normalize if before_cut is None else RedactedCuts(before_cut)


__all__ = ["RedactedCuts", "build", "normalize"]
