"""The built-in detectors: where each kind of PII or secret starts, what it looks like, how it is validated.

Every detector has three parts:
- a `trigger`, an RE2 fragment; all triggers are joined into one RE2 program that finds candidate
  starts in a single linear pass, so text without candidates costs one DFA scan;
- a `pattern`, a Python `re` pattern matched only anchored at a candidate start. Ambiguous repeats
  are possessive (`++`, `*+`) or bounded, so no input can make them backtrack more than linearly;
- a `validate` function that checks context, structure and checksums and returns the span to replace.

Text is UTF-8 bytes. The patterns are ASCII, so a span never splits a multi-byte character, and
they never contain a quote or a backslash except inside complete JSON escapes, so replacing a
span inside JSON keeps it valid JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tracehouse.collector.stages.redact import validators as v

Span = tuple[int, int]
Validate = Callable[[bytes, re.Match[bytes], int], Span | None]

# Which text a detector reports; also the count key and, upper-cased, the replacement label.
TYPES = ("email", "phone", "card", "iban", "ssn", "ip", "secret")

_DIGITS = b"0123456789"
_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"
_WORD = frozenset(_DIGITS + _UPPER + _LOWER + b"_")
_ALNUM = frozenset(_DIGITS + _UPPER + _LOWER)
_TOKEN = frozenset(_DIGITS + _UPPER + _LOWER + b"_-")
_HEX = frozenset(_DIGITS + b"abcdefABCDEF")
_ISDIGIT = frozenset(_DIGITS)


@dataclass(frozen=True)
class Detector:
    name: str
    type: str
    first: bytes  # bytes a match can start with, to dispatch a candidate start cheaply
    trigger: str  # RE2 syntax
    pattern: re.Pattern[bytes]
    validate: Validate
    # Also tried right after `_` (a word byte, so no boundary): a key with a prefix of its own glued to a name
    # (`key_sk-proj-...`, `MY_AKIA...`) is still a key. Not for detectors that need context (a header, a scheme).
    glued: bool = False


def _at(buf: bytes, i: int) -> int:
    """The byte at i, or 0 outside the buffer (0 is the value separator: a boundary)."""
    return buf[i] if 0 <= i < len(buf) else 0


def _number_continues(buf: bytes, end: int) -> bool:
    """True when a number goes on after end: a digit, a letter, or `.5` / `-5` style continuation."""
    nxt = _at(buf, end)
    if nxt in _WORD:
        return True
    return nxt in b".-/" and _at(buf, end + 1) in _ISDIGIT


def _number_precedes(buf: bytes, start: int, spaced: bool = False) -> bool:
    """True when start is inside a longer dotted or dashed number (1.2.3.4.5, 12-4111...), or with
    spaced=True also a space-grouped one (the tail of "4411 0992 1577 1895" is not a phone number)."""
    prev = _at(buf, start - 1)
    return (prev in b".-/" or (spaced and prev == 32)) and _at(buf, start - 2) in _ISDIGIT


# --- e-mail ---------------------------------------------------------------------------------------


def _email(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    start, end = m.span()
    while buf[start] in b".-+%":
        start += 1
    at = buf.index(b"@", start)
    local = buf[start:at]
    if not local or local.endswith(b".") or b".." in local:
        return None
    labels = m.group(1).split(b".")[:-1]
    if any(label[:1] == b"-" or label[-1:] == b"-" for label in labels):
        return None
    tld = m.group(2)
    if tld.lower().decode() in v.NOT_TLDS:
        return None
    nxt = _at(buf, end)
    # A letter or digit would continue the top-level domain; `-` or `_` cannot (a domain ends there: "--", "_x").
    if nxt in _ALNUM or nxt == 64:  # @
        return None
    if nxt == 58 and _at(buf, end + 1) in _WORD | {47, 126}:  # git@github.com:org/repo
        return None
    if buf[max(0, start - 3) : start] == b"://":  # URL userinfo, not an address
        return None
    return start, end


EMAIL = Detector(
    "email",
    "email",
    _DIGITS + _UPPER + _LOWER + b"._%+-",
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}\.[A-Za-z0-9-]",
    re.compile(rb"[A-Za-z0-9._%+-]{1,64}+@((?:[A-Za-z0-9-]{1,63}+\.(?=[A-Za-z0-9-]))++)([A-Za-z]{2,24}+)"),
    _email,
)

# --- payment cards --------------------------------------------------------------------------------

_GROUPS = re.compile(rb"[0-9]+")


def _card_layout_ok(lengths: list[int]) -> bool:
    if len(lengths) == 1:
        return True
    if lengths[0] != 4:
        return False
    if len(lengths) == 3 and lengths[1] == 6 and lengths[2] in (4, 5):  # Amex 4-6-5, Diners 4-6-4
        return True
    return all(n == 4 for n in lengths[1:-1]) and 1 <= lengths[-1] <= 4


def _card(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    text = m.group()
    if len(text) < 13 or _number_precedes(buf, p):  # the pattern takes any number: most are short
        return None
    if text.isdigit():
        groups = [text]
    else:
        if b" " in text and b"-" in text:
            return None
        groups = text.split(b" " if b" " in text else b"-")
    # A longer run may carry trailing numbers ("4111 1111 1111 1111 2024"): try shorter prefixes too.
    digits_upto = []
    count = 0
    for group in groups:
        count += len(group)
        digits_upto.append(count)
    for k in range(len(groups), 0, -1):
        if not 13 <= digits_upto[k - 1] <= 19:
            continue
        end = p + digits_upto[k - 1] + k - 1
        if k == len(groups) and _number_continues(buf, end):
            continue
        if not _card_layout_ok([len(g) for g in groups[:k]]):
            continue
        digits = b"".join(groups[:k]).decode()
        if v.card_network_ok(digits) and v.luhn_ok(digits):
            return p, end
    return None


CARD = Detector(
    "card",
    "card",
    _DIGITS,
    r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]|[0-9]{4}[ -]?[0-9]{6}[ -]?[0-9]{4}",
    re.compile(rb"[0-9]{1,19}+(?:[ -][0-9]{1,19}+){0,7}+"),
    _card,
)

# --- US social security numbers -------------------------------------------------------------------


def _ssn(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    end = m.end()
    if _number_precedes(buf, p, spaced=True) or _number_continues(buf, end):
        return None
    area, _, group, serial = (g.decode() for g in m.groups())
    return (p, end) if v.ssn_ok(area, group, serial) else None


SSN = Detector(
    "ssn",
    "ssn",
    _DIGITS,
    r"[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}",
    re.compile(rb"([0-9]{3})([- ])([0-9]{2})\2([0-9]{4})"),
    _ssn,
)

# --- phone numbers --------------------------------------------------------------------------------


def _phone_intl(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    text = m.group()
    groups = [g.span() for g in _GROUPS.finditer(text)]
    # "+44 (0)20 ..." : the (0) is the national trunk prefix, not part of the E.164 number.
    skip = {i for i, (s, e) in enumerate(groups) if text[s - 1 : s] == b"(" and text[s:e] == b"0"}
    for k in range(len(groups), 0, -1):
        end = groups[k - 1][1]
        if text[end : end + 1] == b")":
            end += 1
        part = text[:end]
        if part.count(b"(") != part.count(b")"):
            continue
        if k == len(groups) and _number_continues(buf, p + end):
            continue
        digits = "".join(text[s:e].decode() for i, (s, e) in enumerate(groups[:k]) if i not in skip)
        if len(digits) < 8:
            return None
        if v.e164_ok(digits):
            return p, p + end
    return None


PHONE_INTL = Detector(
    "phone_intl",
    "phone",
    b"+",
    r"\+[1-9][0-9 ().-]{6,24}",
    re.compile(rb"\+[1-9][0-9]{0,3}+(?:[ .-]{0,2}\(?[0-9]{1,5}+\)?){1,8}+"),
    _phone_intl,
)


def _phone_nanp(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    end = m.end()
    if _number_precedes(buf, p, spaced=True) or _number_continues(buf, end):
        return None
    area = m.group(1) or m.group(2)
    return (p, end) if v.nanp_ok(area.decode(), m.group(3).decode()) else None


PHONE_NANP = Detector(
    "phone_nanp",
    "phone",
    b"123456789(",
    r"(?:1[ .-]?)?\(?[2-9][0-9]{2}\)?[ .-]?[2-9][0-9]{2}[ .-][0-9]{4}",
    re.compile(rb"(?:1[ .-]?)?(?:\(([2-9][0-9]{2})\)|([2-9][0-9]{2}))[ .-]?([2-9][0-9]{2})[ .-]([0-9]{4})"),
    _phone_nanp,
)


def _phone_national(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    end = m.end()
    if _number_precedes(buf, p, spaced=True) or _number_continues(buf, end):
        return None
    text = m.group()
    # One separator style throughout: "01 23 45 67 89", "020 7946 0958", "(030) 1234-5678" is not.
    seps = set(re.findall(rb"[ ./-]", text.replace(b") ", b")")))
    if len(seps) > 1:
        return None
    groups = _GROUPS.findall(text)
    digits = sum(len(g) for g in groups)
    # 10-11 digits in any grouping; 12 only as area + subscriber ("0151 12345678"), since three or
    # four groups of 12 digits are far more often part, order or reference numbers.
    return (p, end) if 10 <= digits <= 11 or (digits == 12 and len(groups) == 2) else None


PHONE_NATIONAL = Detector(
    "phone_national",
    "phone",
    b"0(",
    r"\(?0[1-9][0-9]{0,3}\)?[ ./-](?:[0-9][ ./-]?){5,}[0-9]",
    re.compile(rb"(?:\(0[1-9][0-9]{0,3}+\) ?|0[1-9][0-9]{0,3}+)(?:[ ./-]?[0-9]{2,8}+){1,4}+"),
    _phone_national,
)

# --- IBAN -----------------------------------------------------------------------------------------


def _iban(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    text = m.group()
    length = v.IBAN_LENGTHS.get(text[:2].decode())
    if length is None:
        return None
    compact = text[:length]
    if compact.isalnum() and len(compact) == length:
        printed = compact  # written without spaces
    else:
        # Printed in groups of four: "DE89 3704 0044 0532 0130 00"
        printed = text[: length + (length - 1) // 4]
        if len(printed) != length + (length - 1) // 4 or printed[4::5].strip(b" ") or b"  " in printed:
            return None
        compact = printed.replace(b" ", b"")
        if len(compact) != length or not compact.isalnum():
            return None
    end = p + len(printed)
    if _at(buf, end) in _WORD:
        return None
    return (p, end) if v.iban_ok(compact.decode()) else None


IBAN = Detector(
    "iban",
    "iban",
    _UPPER,
    r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
    re.compile(rb"[A-Z]{2}[0-9]{2}[A-Z0-9 ]{8,40}+"),
    _iban,
)

# --- IP addresses ---------------------------------------------------------------------------------

_VERSION_WORDS = (b"version", b"ver.", b"release", b"build", b"firmware", b"chrome/", b"safari/")


def _ipv4(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    end = m.end()
    if _number_precedes(buf, p) or _number_continues(buf, end):
        return None
    before = buf[max(0, p - 12) : p]
    before = before[before.rfind(b"\x00") + 1 :].lower()  # this value's own text: values are NUL-joined
    if any(word in before for word in _VERSION_WORDS):
        return None
    return (p, end) if v.ipv4_ok(m.group().decode()) else None


IPV4 = Detector(
    "ipv4",
    "ip",
    _DIGITS,
    r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
    re.compile(rb"[0-9]{1,3}+(?:\.[0-9]{1,3}+){3}"),
    _ipv4,
)


def _ipv6(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    text = m.group()
    if _at(buf, p - 1) == 58 or _at(buf, p - 1) in _HEX:  # started in the middle of an address
        return None
    if text.endswith(b":") and not text.endswith(b"::"):
        text = text[:-1]
    end = p + len(text)
    if _at(buf, end) in _WORD:
        return None
    return (p, end) if v.ipv6_ok(text.decode()) else None


IPV6 = Detector(
    "ipv6",
    "ip",
    b"0123456789abcdefABCDEF:",
    r"(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::[0-9A-Fa-f]|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]",
    re.compile(rb"[0-9A-Fa-f:]{2,39}+(?:\.[0-9]{1,3}+){0,3}+"),
    _ipv6,
)

# --- secrets --------------------------------------------------------------------------------------


def _whole(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    return m.span()


def _bounded(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    """Fixed-length keys: the next byte must not continue the token."""
    return None if _at(buf, m.end()) in _TOKEN else m.span()


def _random_body(min_len: int) -> Validate:
    def check(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
        return m.span() if v.looks_random(m.group("body"), min_len) else None

    return check


def _jwt(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    return m.span() if v.jwt_ok(m.group()) else None


def _credential(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    token = m.group("tok")
    scheme = (m.group("scheme") or b"").lower()
    if scheme == b"basic" and not v.basic_credentials_ok(token.rstrip(b".")):
        return None
    if len(token) < 8 or not any(ch in _ISDIGIT for ch in token) and len(token) < 20:
        return None
    return m.span("tok")


def _bearer(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    token = m.group("tok")
    if not any(ch in _ISDIGIT for ch in token) or not any(ch in _ALNUM - _ISDIGIT for ch in token):
        return None
    return m.span("tok")


def _basic(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    return m.span("tok") if v.basic_credentials_ok(m.group("tok")) else None


def _url_password(buf: bytes, m: re.Match[bytes], p: int) -> Span | None:
    nxt = _at(buf, m.end())
    return m.span("pw") if nxt in _ALNUM or nxt == 91 else None  # host or [ipv6]


def _secret(
    name: str, first: bytes, trigger: str, pattern: bytes, validate: Validate = _whole, glued: bool = True
) -> Detector:
    return Detector(name, "secret", first, trigger, re.compile(pattern), validate, glued)


_HEADER_NAMES = rb"(?:proxy-)?authorization|x-api-key|api-key|x-auth-token|x-access-token"
_LETTERS = _UPPER + _LOWER

SECRETS = (
    _secret(
        "private_key",
        b"-",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY",
        # Body: base64, header lines and JSON escapes, possessively; then the END line if present.
        rb"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        rb"(?:[A-Za-z0-9+/=\s:,.()]|-(?!----)|\\++[nrt/])*+"
        rb"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
    ),
    _secret(
        "jwt",
        b"e",
        r"eyJ[A-Za-z0-9_-]{8,200}\.eyJ",
        rb"eyJ[A-Za-z0-9_-]{8,}+\.eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+",
        _jwt,
    ),
    _secret(
        "anthropic",
        b"s",
        r"sk-ant-",
        rb"sk-ant-(?:api|admin|oat|ort|sid)[0-9]{2}-(?P<body>[A-Za-z0-9_-]{20,}+)",
        _random_body(20),
    ),
    _secret(
        "openai",
        b"s",
        r"sk-[A-Za-z0-9_-]{20}",
        rb"sk-(?:proj-|svcacct-|admin-|None-)?(?P<body>[A-Za-z0-9_-]{20,}+)",
        _random_body(20),
    ),
    _secret(
        "stripe",
        b"srw",
        r"[sr]k_(?:live|test)_|whsec_",
        rb"(?:[sr]k_(?:live|test)_|whsec_)[A-Za-z0-9]{10,}+",
    ),
    _secret(
        "aws_access_key",
        b"A",
        r"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}",
        rb"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}",
        _bounded,
    ),
    _secret(
        "github",
        b"g",
        r"gh[pousr]_[A-Za-z0-9]{30}|github_pat_",
        rb"gh[pousr]_[A-Za-z0-9]{36,}+|github_pat_[A-Za-z0-9_]{50,}+",
    ),
    _secret("slack", b"x", r"xox[abposre]-|xapp-", rb"xox[abposre]-[A-Za-z0-9-]{10,}+|xapp-[0-9]-[A-Za-z0-9-]{10,}+"),
    _secret(
        "slack_webhook",
        b"h",
        r"https://hooks\.slack\.com/services/",
        rb"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}+",
    ),
    _secret("google_api_key", b"A", r"AIza[0-9A-Za-z_-]{30}", rb"AIza[0-9A-Za-z_-]{35}", _bounded),
    _secret(
        "url_password",
        _LETTERS,
        r"""[A-Za-z][A-Za-z0-9+.-]{0,20}://[^\s:/?#@"'\\\x00]{0,128}:[^\s/?#@"'\\\x00]{1,128}@""",
        rb"""[A-Za-z][A-Za-z0-9+.-]{0,20}+://[^\s:/?#@"'\\\x00]{0,128}+:(?P<pw>[^\s/?#@"'\\\x00]{1,128}+)@""",
        _url_password,
        glued=False,
    ),
    _secret(
        "auth_header",
        b"aApPxX",
        r"""(?i:(?:proxy-)?authorization|x-api-key|api-key|x-auth-token|x-access-token)(?:\\?["'])?[ \t]{0,5}[:=]""",
        rb"(?i:" + _HEADER_NAMES + rb""")(?:\\?["'])?[ \t]{0,5}[:=][ \t]{0,5}(?:\\?["'])?"""
        rb"(?:(?P<scheme>(?i:bearer|basic|token|digest|apikey))[ \t]{1,5})?(?P<tok>[A-Za-z0-9._~+/=-]{8,}+)",
        _credential,
        glued=False,
    ),
    _secret(
        "bearer",
        b"bB",
        r"(?i:bearer)[ \t]{1,5}[A-Za-z0-9._~+/-]{16}",
        rb"(?i:bearer)[ \t]{1,5}(?P<tok>[A-Za-z0-9._~+/-]{16,}+=*+)",
        _bearer,
        glued=False,
    ),
    _secret(
        "basic",
        b"B",
        r"Basic[ \t]{1,5}[A-Za-z0-9+/]{4}",
        rb"Basic[ \t]{1,5}(?P<tok>[A-Za-z0-9+/]{4,}+={0,2})",
        _basic,
        glued=False,
    ),
)

# Priority order: when several detectors validate at one start, the first wins.
BUILTINS: tuple[Detector, ...] = (
    *SECRETS,
    IBAN,
    EMAIL,
    CARD,
    SSN,
    PHONE_NANP,
    PHONE_INTL,
    PHONE_NATIONAL,
    IPV4,
    IPV6,
)


def dispatch_table(detectors: tuple[Detector, ...]) -> list[tuple[Detector, ...]]:
    """For each first byte, the detectors that can start with it, in priority order."""
    table: list[list[Detector]] = [[] for _ in range(256)]
    for detector in detectors:
        for byte in set(detector.first):
            table[byte].append(detector)
    return [tuple(entry) for entry in table]
