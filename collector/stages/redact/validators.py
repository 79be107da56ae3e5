"""Checks that turn a pattern match into a detection: checksums, number plans and shapes.

Patterns only find things that look right; these functions decide whether they are real,
which is what keeps order numbers, timestamps and version strings out of the redaction counts.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json

# Country -> IBAN length (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# ITU country calling codes are prefix-free: 1 and 7 are one digit, these are two digits,
# and every other valid code is three digits under one of THREE_DIGIT_ZONES.
TWO_DIGIT_CC = frozenset(
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
    "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98".split()
)
THREE_DIGIT_ZONES = frozenset("21 22 23 24 25 26 29 35 37 38 42 50 59 67 68 69 80 85 87 88 96 97 99".split())

# National significant number lengths for common countries; others get a generic 4..14 range.
NSN_LENGTHS: dict[str, tuple[int, int]] = {
    "1": (10, 10), "7": (10, 10), "20": (8, 10), "27": (9, 9), "30": (10, 10), "31": (9, 9), "32": (8, 9),
    "33": (9, 9), "34": (9, 9), "36": (8, 9), "39": (6, 11), "40": (9, 9), "41": (9, 9), "43": (4, 13),
    "44": (9, 10), "45": (8, 8), "46": (7, 9), "47": (8, 8), "48": (9, 9), "49": (6, 13), "51": (8, 9),
    "52": (10, 10), "54": (10, 11), "55": (10, 11), "56": (9, 9), "57": (10, 10), "60": (8, 10),
    "61": (9, 9), "62": (8, 12), "63": (8, 10), "64": (8, 10), "65": (8, 8), "66": (8, 9), "81": (9, 10),
    "82": (8, 10), "84": (9, 10), "86": (10, 11), "90": (10, 10), "91": (10, 10), "92": (9, 10),
    "351": (9, 9), "352": (6, 11), "353": (7, 9), "358": (5, 12), "380": (9, 9), "852": (8, 8),
    "971": (8, 9), "972": (8, 9), "966": (8, 9), "234": (8, 10), "254": (9, 9),
}  # fmt: skip

# Test and advertising SSNs that were never issued (and are widely pasted as examples).
_INVALID_SSNS = frozenset({"078051120", "219099999", "123456789"})

# File extensions that follow '@' in asset names (icon@2x.png) but are not top-level domains.
NOT_TLDS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff avif heic css js mjs cjs jsx tsx json map woff woff2 ttf otf "
    "lock toml yml yaml txt csv log html htm xml wasm".split()
)

_ASCII_DIGIT_VALUES = bytes(range(256)).replace(b"0123456789", bytes(range(10)))
_LETTER_DIGITS = {ord(ch): str(i) for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)}
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


_LUHN_DOUBLE = bytes((2 * d if d < 5 else 2 * d - 9) for d in range(10)) + bytes(246)


def luhn_ok(digits: str) -> bool:
    data = digits.encode().translate(_ASCII_DIGIT_VALUES)
    total = sum(data[-1::-2]) + sum(data[-2::-2].translate(_LUHN_DOUBLE))
    return total % 10 == 0


def card_network_ok(digits: str) -> bool:
    """True when the issuer prefix belongs to a card network that issues numbers of this length."""
    n = len(digits)
    p2 = int(digits[:2])
    p4 = int(digits[:4])
    first = digits[0]
    if first == "4":
        return n in (13, 16, 19)
    if first == "5":
        if 51 <= p2 <= 55:
            return n == 16
        return 12 <= n <= 19  # Maestro 50, 56-59
    if first == "2":
        return (2221 <= p4 <= 2720 and n == 16) or (2200 <= p4 <= 2204 and 16 <= n <= 19)
    if first == "3":
        if p2 in (34, 37):
            return n == 15
        if 300 <= int(digits[:3]) <= 305 or p2 in (36, 38, 39):
            return 14 <= n <= 19
        if 3528 <= p4 <= 3589:
            return 16 <= n <= 19
        return False
    if first == "6":
        return 16 <= n <= 19
    return False


def iban_ok(compact: str) -> bool:
    """Country length and the ISO 7064 mod 97-10 check over an uppercase IBAN without spaces."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int(rearranged.translate(_LETTER_DIGITS)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    if area == "000" or area == "666" or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _INVALID_SSNS


def calling_code(digits: str) -> str | None:
    """The ITU country calling code that starts an E.164 number, or None if unassigned."""
    if not digits or digits[0] == "0":
        return None
    if digits[0] in "17":
        return digits[0]
    two = digits[:2]
    if two in TWO_DIGIT_CC:
        return two
    if two in THREE_DIGIT_ZONES and len(digits) >= 3:
        return digits[:3]
    return None


def e164_ok(digits: str) -> bool:
    if not 8 <= len(digits) <= 15:
        return False
    cc = calling_code(digits)
    if cc is None:
        return False
    nsn = len(digits) - len(cc)
    low, high = NSN_LENGTHS.get(cc, (4, 14))
    if not low <= nsn <= high:
        return False
    if cc == "1":
        return nanp_ok(digits[1:4], digits[4:7])
    return True


def nanp_ok(area: str, exchange: str) -> bool:
    """North American numbering plan: NXX-NXX, N in 2-9, no N11 service codes."""
    return area[0] in "23456789" and exchange[0] in "23456789" and area[1:] != "11" and exchange[1:] != "11"


def ipv4_ok(text: str) -> bool:
    """What ipaddress.IPv4Address accepts (four decimal octets <= 255, no leading zeros), less loopback
    (127/8) and 0.0.0.0; written out because building the object costs several microseconds."""
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not 0 < len(part) <= 3 or not part.isascii() or not part.isdigit() or int(part) > 255:
            return False
        if part[0] == "0" and len(part) > 1:
            return False
    return parts[0] != "127" and text != "0.0.0.0"


def ipv6_ok(text: str) -> bool:
    if text.count(":") < 2 or sum(1 for group in text.split(":") if group) < 2:
        return False
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def _b64url_json(segment: bytes) -> object:
    padded = segment + b"=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def jwt_ok(token: bytes) -> bool:
    """A JWT's header decodes to a JSON object naming its algorithm or type."""
    header, _, rest = token.partition(b".")
    payload = rest.partition(b".")[0]
    if not set(header) <= _B64URL or not set(payload) <= _B64URL:
        return False
    try:
        decoded = _b64url_json(header)
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


def basic_credentials_ok(token: bytes) -> bool:
    """HTTP Basic credentials are base64 of `user:password` in printable text."""
    if len(token) % 4:
        return False
    try:
        decoded = base64.b64decode(token, validate=True)
    except (ValueError, binascii.Error):
        return False
    return b":" in decoded and decoded.isascii() and all(32 <= b < 127 for b in decoded)


def looks_random(body: bytes, min_len: int = 16) -> bool:
    """Generated keys mix character classes; identifiers like sk-your-key-here do not."""
    if len(body) < min_len:
        return False
    has_digit = any(48 <= b <= 57 for b in body)
    has_upper = any(65 <= b <= 90 for b in body)
    has_lower = any(97 <= b <= 122 for b in body)
    return has_digit + has_upper + has_lower >= 2
