"""ClickHouse SQL text read without a parser, where the engine's own would be a round trip too many."""

from __future__ import annotations


def split_top_level(text: str) -> list[str]:
    """`text` cut at its commas outside parentheses, quotes and backticks, each part stripped:
    `String, Array(UInt8)` or `ADD COLUMN a UInt8, MODIFY SETTING x = 1`."""
    parts: list[str] = []
    depth, start, quote, i = 0, 0, "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts
