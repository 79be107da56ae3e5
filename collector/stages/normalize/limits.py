"""Size limits for the normalized columns.

The raw attributes stay whole in SpanAttributes; these bounds only keep one pathological span from
making the typed columns (and every query over them) huge, and keep LowCardinality columns low.
"""

MAX_MESSAGES = 256  # per InputMessages / OutputMessages list; the first few and the latest are kept
MESSAGES_HEAD = 8  # how many of the first messages survive truncation (system prompt, task statement)
MAX_PARTS = 64  # content parts per message (past it, or past MAX_TOOL_CALLS, messages.cut_content notes the cut)
MAX_TOOL_CALLS = 64  # per message, and in ToolCalls
MAX_TOOLS = 128  # tool definitions in Tools
MAX_TEXT_CHARS = 131_072  # one text part, system prompt, template, tool result
MAX_SHORT_CHARS = 256  # ids, model and provider names, kinds, feature, tenant, error type, tags
MAX_TAGS = 64
MAX_ERROR_CHARS = 8_192
MAX_JSON_CHARS = 65_536  # metadata, invocation parameters, prompt variables
TTFT_CAP_NS = 2.0**64  # a time to first token, clamped before int() (a huge float is inf in ns); UInt64 caps it
