"""Generate the labelled redaction corpus (corpus.jsonl) deterministically from a fixed seed.

The corpus is stored gzip-compressed (corpus.jsonl.gz, fixed mtime so the bytes are reproducible): it
is full of realistic-looking fake keys, which secret scanners would otherwise flag in the repository.
Each line is {"text": ..., "labels": [[type, start, end], ...]} with character offsets. Positives are
embedded in realistic prompt text (chat turns, support tickets, pasted logs and code, JSON message
arrays as instrumentations record them); every document also carries unlabelled hard negatives
(order numbers, timestamps, UUIDs, versions, prices, Luhn-failing ids, code, hashes, git SHAs, ...),
so a detector that fires on them loses precision.

    python tests/data/redaction/make_corpus.py          # rewrites corpus.jsonl.gz next to this file
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import string
import sys
import uuid
from pathlib import Path

SEED = 20250501
DOCS_PER_TYPE = 450
NEGATIVE_DOCS = 600
OUT = Path(__file__).with_name("corpus.jsonl.gz")

FIRST = "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil trent victor walter yusuf zoe ana jose maria chen wei li hiroshi yuki priya arjun fatima omar".split()  # noqa: E501
LAST = "smith jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis robinson walker young allen king wright scott nguyen kim patel".split()  # noqa: E501
DOMAINS = "gmail.com yahoo.com outlook.com example.com acme-corp.io mail.example.org company.co.uk uni-heidelberg.de startup.ai fastmail.fm proton.me sub.domain.example.net web.de orange.fr".split()  # noqa: E501
WORDS = "the a to and of in is it you that for on with as this be are was have not at by from or but can will my your please help order account issue need thanks could would should about when what how why which there their they them our we us me".split()  # noqa: E501

FILLER = [
    "Hi, I need some help with my account.",
    "Can you summarize the conversation below?",
    "Please draft a polite reply to the customer.",
    "The user reported an issue after the last update.",
    "Thanks in advance for your help!",
    "Extract the key fields from this ticket and return JSON.",
    "You are a helpful support assistant. Answer concisely.",
    "Here is the log output from the failing job:",
    "Translate the following message into French.",
    "Classify the sentiment of this review.",
    "Let me know if anything else is needed.",
    "I tried restarting but it still fails.",
    "Our team meeting moved to Thursday.",
    "Résumé: the café on the corner closes early — naïve question, but why?",
    "请帮我总结一下这个问题。",
]


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError


def luhn_fail(prefix: str, length: int, rng: random.Random) -> str:
    valid = luhn_complete(prefix, length, rng)
    return valid[:-1] + str((int(valid[-1]) + rng.randint(1, 9)) % 10)


def group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(digits[i : i + size])
        i += size
    return sep.join(out)


# --- positives ------------------------------------------------------------------------------------


def gen_email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{rng.randint(1, 99)}",
            f"{first[0]}{last}",
            f"{first}_{last}",
            f"{first}+{rng.choice(['news', 'work', 'test'])}",
            f"{first}.{last}.{rng.randint(1970, 2005)}",
        ]
    )
    if rng.random() < 0.1:
        local = local.capitalize()
    return f"{local}@{rng.choice(DOMAINS)}"


def gen_phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    n2 = lambda: str(rng.randint(2, 9))  # noqa: E731
    area, exch = n2() + d(2), n2() + d(2)
    while area[1:] == "11":
        area = n2() + d(2)
    while exch[1:] == "11":
        exch = n2() + d(2)
    line = d(4)
    forms = [
        f"+1{area}{exch}{line}",
        f"+1 {area}-{exch}-{line}",
        f"+1 ({area}) {exch}-{line}",
        f"({area}) {exch}-{line}",
        f"{area}-{exch}-{line}",
        f"{area}.{exch}.{line}",
        f"1-800-{exch}-{line}",
        f"+44 20 {d(4)} {d(4)}",
        f"+44 7{d(3)} {d(6)}",
        f"+44 (0)20 {d(4)} {d(4)}",
        f"+447{d(9)}",
        f"020 {d(4)} {d(4)}",
        f"07{d(3)} {d(6)}",
        f"+49 30 {d(8)}",
        f"+49 151 {d(8)}",
        f"030 {d(8)}",
        f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"0{rng.randint(1, 7)} {d(2)} {d(2)} {d(2)} {d(2)}",
        f"06.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
        f"+91 9{d(4)} {d(5)}",
        f"+61 4{d(2)} {d(3)} {d(3)}",
        f"04{d(2)} {d(3)} {d(3)}",
        f"+86 138 {d(4)} {d(4)}",
        f"+81 3-{d(4)}-{d(4)}",
        f"090-{d(4)}-{d(4)}",
        f"+34 6{d(2)} {d(3)} {d(3)}",
        f"+39 06 {d(4)} {d(4)}",
        f"+55 11 9{d(4)}-{d(4)}",
    ]
    return rng.choice(forms)


CARD_BRANDS = [
    (lambda r: "4", 16, [4, 4, 4, 4]),
    (lambda r: "4", 16, [4, 4, 4, 4]),
    (lambda r: str(r.randint(51, 55)), 16, [4, 4, 4, 4]),
    (lambda r: str(r.randint(2221, 2720)), 16, [4, 4, 4, 4]),
    (lambda r: r.choice(["34", "37"]), 15, [4, 6, 5]),
    (lambda r: r.choice(["6011", "65"]), 16, [4, 4, 4, 4]),
    (lambda r: str(r.randint(3528, 3589)), 16, [4, 4, 4, 4]),
    (lambda r: r.choice(["36", "38", "300", "305"]), 14, [4, 6, 4]),
    (lambda r: "62", 16, [4, 4, 4, 4]),
    (lambda r: "62", 19, [4, 4, 4, 4, 3]),
]


def gen_card(rng: random.Random) -> str:
    prefix, length, sizes = rng.choice(CARD_BRANDS)
    digits = luhn_complete(prefix(rng), length, rng)
    sep = rng.choice(["", " ", " ", "-"])
    return digits if not sep else group(digits, sizes, sep)


IBAN_FORMATS = {  # country: BBAN layout (n digits, a upper letters, c alphanumeric)
    "DE": "18n",
    "GB": "4a14n",
    "FR": "10n11c2n",
    "ES": "20n",
    "IT": "1a10n12c",
    "NL": "4a10n",
    "BE": "12n",
    "CH": "5n12c",
    "AT": "16n",
    "PL": "24n",
    "SE": "20n",
    "IE": "4a14n",
    "PT": "21n",
    "DK": "14n",
    "NO": "11n",
}


def _bban(layout: str, rng: random.Random) -> str:
    out, num = [], ""
    for ch in layout:
        if ch.isdigit():
            num += ch
            continue
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[ch]
        out.append("".join(rng.choice(pool) for _ in range(int(num))))
        num = ""
    return "".join(out)


def iban_with_check(country: str, bban: str, check: int | None = None) -> str:
    if check is None:
        number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
        check = 98 - number % 97
    return f"{country}{check:02d}{bban}"


def gen_iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_FORMATS))
    iban = iban_with_check(country, _bban(IBAN_FORMATS[country], rng))
    if rng.random() < 0.6:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def gen_ssn(rng: random.Random) -> str:
    area = rng.randint(1, 899)
    while area == 666:
        area = rng.randint(1, 899)
    sep = "-" if rng.random() < 0.85 else " "
    return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def gen_ip(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return f"{rng.choice([10, 172, 192])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if kind < 0.7:
        first = rng.choice([n for n in range(11, 224) if n != 127])  # loopback is not personal data
        return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    groups[0] = rng.choice(["2001", "2a00", "2600", "fe80", "2607", "2a03"])
    if kind < 0.85:
        return ":".join(groups)
    keep = rng.randint(2, 4)
    return ":".join(groups[:keep]) + "::" + ":".join(groups[-rng.randint(1, 2) :])


def _rand(rng: random.Random, pool: str, n: int) -> str:
    return "".join(rng.choice(pool) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"


def _jwt(rng: random.Random) -> str:
    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
    header = enc({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"})
    payload = enc(
        {"sub": str(rng.randint(1, 10**9)), "iat": rng.randint(1_600_000_000, 1_800_000_000), "name": rng.choice(FIRST)}
    )
    return f"{header}.{payload}.{_rand(rng, B64URL, 43)}"


def _pem(rng: random.Random) -> str:
    kind = rng.choice(
        ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]
    )
    lines = [_rand(rng, ALNUM + "+/", 64) for _ in range(rng.randint(3, 8))] + [_rand(rng, ALNUM + "+/", 20) + "=="]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


def gen_secret(rng: random.Random) -> tuple[str, str, str]:
    """(text to embed, the secret inside it that must disappear, context label)."""
    kind = rng.randrange(16)
    if kind == 0:
        key = "sk-" + _rand(rng, ALNUM, 48)
        return f"OPENAI_API_KEY={key}", key, "env"
    if kind == 1:
        key = "sk-proj-" + _rand(rng, B64URL, 156)
        return f"my key is {key}", key, "text"
    if kind == 2:
        key = "sk-ant-api03-" + _rand(rng, B64URL, 93) + "AA"
        return f'anthropic.Anthropic(api_key="{key}")', key, "code"
    if kind == 3:
        key = "AKIA" + _rand(rng, string.ascii_uppercase + "234567", 16)
        return f"aws_access_key_id = {key}", key, "ini"
    if kind == 4:
        key = "ghp_" + _rand(rng, ALNUM, 36)
        return f"git clone https://{key}@github.com/acme/app.git", key, "cmd"
    if kind == 5:
        key = "github_pat_" + _rand(rng, ALNUM, 22) + "_" + _rand(rng, ALNUM, 59)
        return f"token: {key}", key, "yaml"
    if kind == 6:
        key = f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**12, 10**13)}-{_rand(rng, ALNUM, 24)}"
        return f"SLACK_BOT_TOKEN={key}", key, "env"
    if kind == 7:
        key = f"https://hooks.slack.com/services/T{_rand(rng, string.ascii_uppercase + string.digits, 8)}/B{_rand(rng, string.ascii_uppercase + string.digits, 8)}/{_rand(rng, ALNUM, 24)}"  # noqa: E501
        return f"post alerts to {key}", key, "text"
    if kind == 8:
        key = rng.choice(["sk_live_", "sk_test_", "rk_live_"]) + _rand(rng, ALNUM, 24)
        return f"stripe.api_key = '{key}'", key, "code"
    if kind == 9:
        key = "AIza" + _rand(rng, B64URL, 35)
        return f"https://maps.googleapis.com/maps/api/geocode/json?address=x&key={key}", key, "url"
    if kind == 10:
        key = _jwt(rng)
        return f"the session token {key} expired", key, "text"
    if kind == 11:
        key = _pem(rng)
        return f"Here is my deploy key:\n{key}\nwhy does ssh reject it?", key, "pem"
    if kind == 12:
        token = rng.choice([_rand(rng, ALNUM, 40), _jwt(rng), "ya29." + _rand(rng, B64URL, 60)])
        return (
            rng.choice(
                [
                    f"curl -H 'Authorization: Bearer {token}' https://api.example.com/v1/items",
                    f'headers = {{"Authorization": "Bearer {token}"}}',
                    f"Authorization: Bearer {token}",
                ]
            ),
            token,
            "header",
        )
    if kind == 13:
        user, pw = rng.choice(FIRST), _rand(rng, ALNUM + "!$*", rng.randint(8, 16))
        token = base64.b64encode(f"{user}:{pw}".encode()).decode()
        return f"Authorization: Basic {token}", token, "header"
    if kind == 14:
        pw = _rand(rng, ALNUM + "!$*", rng.randint(8, 20))
        scheme = rng.choice(["postgres", "postgresql", "mysql", "redis", "mongodb+srv", "amqp", "https"])
        user = rng.choice(["app", "admin", "svc_reports", ""]) if scheme == "redis" else rng.choice(["app", "admin"])
        return f"DATABASE_URL={scheme}://{user}:{pw}@db-{rng.randint(1, 9)}.internal.example.com:5432/prod", pw, "url"
    key = "whsec_" + _rand(rng, ALNUM, 32)
    return f"STRIPE_WEBHOOK_SECRET={key}", key, "env"


GENERATORS = {
    "email": lambda r: (gen_email(r),) * 2,
    "phone": lambda r: (gen_phone(r),) * 2,
    "card": lambda r: (gen_card(r),) * 2,
    "iban": lambda r: (gen_iban(r),) * 2,
    "ssn": lambda r: (gen_ssn(r),) * 2,
    "ip": lambda r: (gen_ip(r),) * 2,
    "secret": lambda r: gen_secret(r)[:2],
}

TEMPLATES = {
    "email": [
        "my email is {}",
        "contact {} for details",
        "<{}>",
        "mailto:{}",
        "send the invoice to {}, thanks",
        "From: {}",
    ],
    "phone": ["call me at {}", "my number is {}.", "Phone: {}", "tel {} (mobile)", "reach the office on {}"],
    "card": ["my card number is {}", "card: {} exp 09/27 cvv 123", "charged to {}", "pay with {} please"],
    "iban": ["IBAN: {}", "please wire it to {} by Friday", "account {}", "bank details: {} (BIC DEUTDEFF)"],
    "ssn": ["SSN {}", "my social is {}", "ssn: {}", "social security number {} on file"],
    "ip": ["request from {}", "client_ip={}", "ssh into {} and restart", "blocked {} after 5 attempts", "[{}]:443"],
    "secret": ["{}"],
}

# --- hard negatives -------------------------------------------------------------------------------


def negatives(rng: random.Random) -> list[str]:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    hexs = lambda n: "".join(rng.choice("0123456789abcdef") for _ in range(n))  # noqa: E731
    ts = rng.randint(1_600_000_000, 1_800_000_000)
    country = rng.choice(sorted(IBAN_FORMATS))
    bban = _bban(IBAN_FORMATS[country], rng)
    good = iban_with_check(country, bban)
    bad_check = (int(good[2:4]) + rng.randint(1, 50)) % 97 + 2
    return [
        f"order #{d(8)}",
        f"ORD-{rng.randint(2019, 2025)}-{d(6)}",
        f"invoice INV-{d(6)}",
        f"ticket {rng.choice(string.ascii_uppercase)}{d(2)}-{d(5)}",
        f"tracking 1Z{_rand(rng, string.ascii_uppercase + string.digits, 16)}",
        f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",  # noqa: E501
        f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{d(3)}",  # noqa: E501
        f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2019, 2025)}",
        f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2019, 2025)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",  # noqa: E501
        f"[{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}]",
        f"epoch {ts}",
        f"ts_ms={ts}{d(3)}",
        f"ts_ns={ts}{d(9)}",
        str(uuid.UUID(int=rng.getrandbits(128))),
        f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
        f"version {rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 9)}",
        f"python {rng.randint(2, 3)}.{rng.randint(6, 13)}.{rng.randint(0, 12)}",
        f"Chrome/{rng.randint(90, 130)}.0.{rng.randint(4000, 6999)}.{rng.randint(10, 200)}",
        f"build {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        f"10.0.{rng.randint(10000, 22631)}.{rng.randint(1, 999)}",
        f"${rng.randint(1, 9)},{d(3)}.{d(2)}",
        f"€ {rng.randint(1, 999)},{d(2)}",
        f"USD {rng.randint(1, 99)},{d(3)}.{d(2)}",
        f"{rng.randint(1, 9)} {d(3)} {d(3)},{d(2)} €",
        f"id {luhn_fail(rng.choice(['4', '5', '6', '1', '9']), 16, rng)}",
        f"ref {group(luhn_fail(rng.choice(['4', '51', '37']), 16, rng), [4, 4, 4, 4], ' ')}",
        f"account no. {d(10)}",
        f"x = [{rng.randint(1, 9)}, {rng.randint(10, 99)}, {rng.randint(100, 999)}]",
        f"for i in range({rng.randint(10, 1000)}):",
        "std::vector<int> v; v.push_back(1);",
        f"a[::{rng.randint(2, 5)}]",
        f"ptr=0x{hexs(12)}",
        f"SELECT * FROM orders WHERE id = {d(7)} LIMIT 100 OFFSET {d(3)};",
        f"sha256:{hexs(64)}",
        f"md5 {hexs(32)}",
        f"commit {hexs(40)}",
        f"git checkout {hexs(7)}",
        base64.b64encode(rng.randbytes(24)).decode(),
        f"@{rng.choice(FIRST)}",
        f"{rng.choice(FIRST)}@localhost",
        f"npm i react@{rng.randint(16, 19)}.{rng.randint(0, 3)}.{rng.randint(0, 9)}",
        f"icon@{rng.randint(2, 3)}x.png",
        "git@github.com:acme/app.git",
        "@app.route('/health')",
        f"ZIP {d(5)}",
        f"ISBN 978-{rng.randint(0, 9)}-{d(2)}-{d(6)}-{rng.randint(0, 9)}",
        f"{rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}",
        f"{rng.randint(1, 9)},{d(3)},{d(3)} rows",
        f"+{rng.randint(1, 30)}% week over week",
        f"{rng.randint(1, 50)}-{rng.randint(51, 99)} items",
        f"CAS {rng.randint(50, 9999)}-{d(2)}-{rng.randint(0, 9)}",
        f"{rng.choice(['000', '666', '9' + d(2)])}-{d(2)}-{d(4)}",
        f"{rng.randint(100, 899)}-00-{d(4)}",
        f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
        f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "127.0.0.1",
        "0.0.0.0:8080",
        f"v{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        f"OID 1.3.6.1.4.1.{rng.randint(100, 99999)}",
        ":".join(f"{rng.randint(0, 255):02X}" for _ in range(6)),
        f"{country}{bad_check:02d}{bban}",
        f"ISO{rng.randint(1000, 9999)}",
        "sk-learn",
        "sk-your-api-key-here",
        "sk_live_...",
        f"pk_live_{_rand(rng, ALNUM, 24)}",
        "AKIA",
        "Authorization: Bearer $OPENAI_API_KEY",
        "Authorization: Bearer <YOUR_TOKEN>",
        "the Bearer token goes in the Authorization header",
        "Basic usage is shown below",
        "-----BEGIN PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "http://localhost:8080/api/v1/items?page=2",
        "ssh://git@github.com/acme/app",
        f"https://example.com/search?q=test&page={rng.randint(1, 9)}",
        "eyJhbGciOi",
        f"room {rng.randint(100, 999)}, floor {rng.randint(1, 40)}",
        f"{rng.randint(1, 9)}x{rng.randint(1, 9)} grid",
        f"PN {d(4)} {d(4)} {d(4)}",
        f"sort code {d(2)}-{d(2)}-{d(2)}, account {d(8)}",
        f"{rng.randint(0, 23):02d} {rng.randint(0, 59):02d} {rng.randint(0, 59):02d}",
        f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}-beta.{rng.randint(1, 9)}",
        f"elapsed 00:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{d(3)}",
        "dead:beef",
        f"#{hexs(6)}",
        "HTTP/1.1 200 OK",
        f"web-{hexs(10)}-{_rand(rng, string.ascii_lowercase + string.digits, 5)}",
        f"arn:aws:iam::{d(12)}:role/deploy",
        f"sha1:{hexs(40)}",
        f"{rng.randint(0, 3)}.{d(15)}",
        f"{rng.randint(1, 9)}.{d(8)}e{rng.randint(-30, 30)}",
        f"{rng.randint(2019, 2025)}-W{rng.randint(1, 52):02d}",
        f"call ext. {d(4)}",
        f"{d(3)} {d(3)} {d(3)} {d(3)}",
        f"lot {d(2)}-{d(3)}-{d(4)}",
        f"{d(4)}-{d(4)}-{d(4)}",
        f"+{rng.randint(1, 9)}.{d(2)} pts",
        f"u{hexs(4)}",
        f"key_{_rand(rng, ALNUM, 32)}",
    ]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build_doc(rng: random.Random, items: list[tuple[str | None, str, str]]) -> dict:
    """items: (type or None for a negative, text to embed, the labelled value inside it)."""
    pieces: list[tuple[str | None, str, str]] = []
    for item in items:
        pieces.append((None, rng.choice(FILLER) + " " + _words(rng, rng.randint(3, 12)) + " ", ""))
        pieces.append(item)
        pieces.append((None, " " + _words(rng, rng.randint(2, 8)) + ". ", ""))
    style = rng.random()
    if style < 0.55:
        sep = rng.choice(["", "\n"])
        text = sep.join(piece for _, piece, _ in pieces)
        labels, position = [], 0
        for piece_type, piece, value in pieces:
            if piece_type is not None:
                start = text.index(value, position)
                labels.append([piece_type, start, start + len(value)])
            position += len(piece) + len(sep)
    else:
        # A JSON message array, as OpenInference's input.value or gen_ai.input.messages records it.
        split = rng.randint(1, max(1, len(pieces) - 1))
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "\n".join(p for _, p, _ in pieces[:split])},
            {"role": "assistant", "content": "\n".join(p for _, p, _ in pieces[split:])},
        ]
        ascii_only = rng.random() < 0.5
        text = json.dumps(messages, ensure_ascii=ascii_only)
        labels, position = [], 0
        for piece_type, _, value in pieces:
            if piece_type is None:
                continue
            escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
            start = text.index(escaped, position)
            labels.append([piece_type, start, start + len(escaped)])
            position = start + len(escaped)
    return {"text": text, "labels": labels}


def make_corpus(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for kind, generate in GENERATORS.items():
        for _ in range(DOCS_PER_TYPE):
            embed, value = generate(rng)
            if kind != "secret":
                embed = rng.choice(TEMPLATES[kind]).format(value)
            items = [(kind, embed, value)]
            negs = negatives(rng)
            items += [(None, neg, "") for neg in rng.sample(negs, rng.randint(2, 5))]
            if rng.random() < 0.3:
                other = rng.choice([k for k in GENERATORS if k != "secret"])
                other_value = GENERATORS[other](rng)[0]
                items.append((other, rng.choice(TEMPLATES[other]).format(other_value), other_value))
            rng.shuffle(items)
            docs.append(build_doc(rng, items))
    for _ in range(NEGATIVE_DOCS):
        negs = negatives(rng)
        docs.append(build_doc(rng, [(None, neg, "") for neg in rng.sample(negs, rng.randint(4, 10))]))
    rng.shuffle(docs)
    return docs


def render(docs: list[dict]) -> str:
    return "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)


def load(path: Path = OUT) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]


def main() -> int:
    text = render(make_corpus())
    OUT.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    print(f"wrote {OUT} ({len(text.encode()) / 1e6:.2f} MB, sha256 {digest})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
