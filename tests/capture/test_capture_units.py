"""Redaction rules, body handling, configuration parsing, hook merging and error accounting."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from hyperdx.opentelemetry.capture import (
    REDACTED,
    CaptureConfig,
    capture_errors,
    instrumentor_kwargs,
    merge_kwargs,
)
from hyperdx.opentelemetry.capture._engine import guarded
from hyperdx.opentelemetry.capture.body import (
    Tee,
    body_attributes,
    decode,
    find_header,
    header_attributes,
    is_text,
)
from hyperdx.opentelemetry.capture.redact import DEFAULT_PATTERNS, Redactor, scanner_pattern

R = Redactor()


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "X-Auth-Token",
        "X-CSRF-Token",
        "X-Session-Id",
    ],
)
def test_sensitive_headers_redacted(name: str) -> None:
    assert R.header(name, "v") == REDACTED


@pytest.mark.parametrize("name", ["content-type", "accept", "user-agent", "host", "x-request-id"])
def test_ordinary_headers_kept(name: str) -> None:
    assert R.header(name, "v, w") == "v, w"


def test_header_attributes_join_never_split() -> None:
    attrs = header_attributes(
        "http.request.header",
        [("Accept", "a, b"), ("X-Multi", "1"), ("x-multi", "2"), (b"Cookie", b"sid=1")],
        R,
    )
    assert attrs == {
        "http.request.header.accept": "a, b",
        "http.request.header.x-multi": "1, 2",
        "http.request.header.cookie": REDACTED,
    }


def test_header_attributes_firsts_are_find_headers_values() -> None:
    """The first values collected in the attributes' pass are what ``find_header`` finds: the
    first occurrence, decoded, even of a secret header; absent headers stay None."""
    items = [
        (b"Content-Type", b"application/json"),
        (b"cookie", b"sid=1"),
        (b"content-type", b"text/plain"),
        ("X-Size", 12),
    ]
    prefix = "http.response.header"
    firsts: dict[str, str | None] = dict.fromkeys(
        f"{prefix}.{n}" for n in ("content-type", "cookie", "x-size", "content-length")
    )
    attrs = header_attributes(prefix, items, R, {}, None, firsts)
    assert firsts == {
        f"{prefix}.{n}": find_header(items, n)
        for n in ("content-type", "cookie", "x-size", "content-length")
    }
    assert firsts[f"{prefix}.content-type"] == "application/json"
    assert firsts[f"{prefix}.cookie"] == "sid=1" and attrs[f"{prefix}.cookie"] == REDACTED
    assert firsts[f"{prefix}.content-length"] is None
    assert attrs[f"{prefix}.content-type"] == "application/json, text/plain"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Passwd",
        "pwd",
        "client_secret",
        "access_token",
        "apiKey",
        "api-key",
        "api key",
        "Authorization",
        "credentials",
        "sessionid",
        "cookie",
        "creditCard",
        "card_number",
        "cvv",
        "ssn",
        "private_key",
    ],
)
def test_secret_keys(key: str) -> None:
    assert R.is_secret_key(key)


def test_url_and_query() -> None:
    url = "https://bob:hunter2@api.example.com/p/a%20b?a=1&token=abc&x=%20y&API_KEY=k#frag"
    assert R.url(url) == (
        f"https://bob:{REDACTED}@api.example.com/p/a%20b?a=1&token={REDACTED}&x=%20y"
        f"&API_KEY={REDACTED}#frag"
    )
    assert R.url("http://h/p?a=1&b") == "http://h/p?a=1&b"  # untouched, byte for byte
    assert R.target("/p?session=1&q=2") == f"/p?session={REDACTED}&q=2"


def test_json_nested_and_lists() -> None:
    doc = {"a": 1, "password": "x", "b": {"token": {"deep": 1}, "c": [{"ssn": "1"}, 2]}}
    out = json.loads(R.json_text(json.dumps(doc), complete=True))
    assert out == {
        "a": 1,
        "password": REDACTED,
        "b": {"token": REDACTED, "c": [{"ssn": REDACTED}, 2]},
    }
    text = '{"a": 1}'
    assert R.json_text(text, complete=True) is text  # nothing secret: original text kept


def test_truncated_json_is_scrubbed_lexically() -> None:
    full = json.dumps({"user": "bob", "password": "hunter2", "more": {"token": "t" * 50}})
    cut = full[:-20]
    out = R.json_text(cut, complete=False)
    assert "hunter2" not in out and "ttt" not in out and '"user": "bob"' in out
    # a value cut in the middle of a secret string
    out = R.json_text('{"a": "b", "api_key": "abcd', complete=False)
    assert "abcd" not in out and REDACTED in out


def _scanner_texts() -> list[str]:
    """Texts where scanners could disagree: secret words overlapping each other
    (``secretoken``), inside and across quotes, escaped quotes, truncation, free text."""
    import random

    rng = random.Random(9)
    words = [
        "password",
        "passwd",
        "pwd",
        "secretoken",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "session",
        "sessn",
        "cookie",
        "credit card",
        "card_number",
        "cvv",
        "cvc",
        "ssn",
        "private key",
        "signature",
        "jwt",
        "csrf",
        "xsrf",
        "PassWord",
        "user",
        "name",
        "note",
        "tokenauth",
        "pwdsecret",
        "sig",
        "api",
        "card",
        "credit",
        "\u00e9",
    ]
    glue = ['"', '": ', '", "', ": ", "=", "&", " ", '\\"', "{", "}", "[", ",", "<", ">", "\n"]
    texts = []
    for _ in range(400):
        parts = [
            rng.choice(words if rng.random() < 0.6 else glue) for _ in range(rng.randint(1, 14))
        ]
        texts.append("".join(parts))
    for _ in range(200):
        doc = {
            rng.choice(words): rng.choice([rng.choice(words), 1, {rng.choice(words): "v"}, [1]])
            for _ in range(rng.randint(1, 6))
        }
        whole = json.dumps(doc)
        texts += [whole, whole[: rng.randint(1, len(whole))]]
    return texts


def test_grouped_scanner_finds_what_the_plain_alternation_finds() -> None:
    """The built-in scanner is grouped by first letter for speed: every redaction result is the
    same as with the plain alternation of the patterns (the rule it stands for)."""
    import re

    grouped = Redactor()
    plain = Redactor()
    plain._builtin = re.compile("|".join(f"(?:{p})" for p in DEFAULT_PATTERNS))
    assert grouped._builtin.pattern == scanner_pattern(DEFAULT_PATTERNS) != plain._builtin.pattern
    for text in _scanner_texts():
        low = text.lower()
        # matches at exactly the same positions
        assert [i for i in range(len(low)) if grouped._builtin.match(low, i)] == [
            i for i in range(len(low)) if plain._builtin.match(low, i)
        ]
        assert grouped.json_text(text, complete=True) == plain.json_text(text, complete=True)
        assert grouped.json_text(text, complete=False) == plain.json_text(text, complete=False)
        assert grouped.text(text) == plain.text(text)
        assert grouped.mentions_secret(text) == plain.mentions_secret(text)
    assert (
        grouped.json_text('{"secretoken": 1, "a": 2}') == f'{{"secretoken": "{REDACTED}", "a": 2}}'
    )


def test_scanner_pattern_groups_only_plain_leading_letters() -> None:
    assert scanner_pattern(("ab", "ac", "a?x", "b|c", "^d")) == "a(?:b|c)|(?:a?x)|(?:b|c)|(?:^d)"
    assert scanner_pattern(("token",)) == "token"


def test_text_and_xml() -> None:
    out = R.text("user=bob&password=p1 token: p2 <secret>p3</secret> <name>ok</name>")
    assert "p1" not in out and "p2" not in out and "p3" not in out
    assert "user=bob" in out and "<name>ok</name>" in out


def test_user_patterns_and_opt_out() -> None:
    custom = Redactor(extra_patterns=("^x-tenant$", "iban"))
    assert custom.header("X-Tenant", "t") == REDACTED
    assert json.loads(custom.json_text('{"IBAN": "DE1"}', True)) == {"IBAN": REDACTED}
    off = Redactor(enabled=False)
    assert off.header("Authorization", "Bearer x") == "Bearer x"
    assert off.url("http://h/?token=1") == "http://h/?token=1"


def test_body_attributes_rules() -> None:
    assert body_attributes("b", b"\x00\x01", 2, "image/png", R, 10) == {"b.size": 2}
    assert body_attributes("b", b"", 0, "text/plain", R, 10) == {}
    attrs = body_attributes("b", b"0123456789", 50, "text/plain", R, 10)
    assert attrs == {"b": "0123456789", "b.size": 50, "b.truncated": True}
    # a multi-byte character cut by the cap is dropped, the rest decodes
    euro = "€€€".encode()  # 9 bytes
    assert body_attributes("b", euro[:4], 9, "text/plain; charset=utf-8", R, 4)["b"] == "€"
    assert decode(b"caf\xe9", "iso-8859-1", True) == "café"
    assert decode(b"caf\xe9", None, True) == "caf\ufffd"  # invalid UTF-8 replaced
    assert decode(b"x", "no-such-charset", True) == "x"


@pytest.mark.parametrize(
    ("media", "text"),
    [
        ("application/json", True),
        ("application/vnd.api+json", True),
        ("application/x-www-form-urlencoded", True),
        ("text/html", True),
        ("application/xml", True),
        ("application/soap+xml", True),
        ("multipart/form-data", False),
        ("application/octet-stream", False),
        ("application/protobuf", False),
        ("image/png", False),
        ("", False),
    ],
)
def test_text_content_types(media: str, text: bool) -> None:
    assert is_text(media) is text


def test_tee_caps_and_counts() -> None:
    tee = Tee(5)
    for chunk in (b"abc", b"defg", b"", "hi"):
        tee.feed(chunk)
    assert (tee.data, tee.size) == (b"abcde", 9)


def _from_env(env: dict[str, str]) -> CaptureConfig:
    """The capture settings exactly as configure_opentelemetry() derives them."""
    from hyperdx.opentelemetry.configuration import capture_config
    from hyperdx.opentelemetry.options import resolve

    return capture_config(resolve(env=env))


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", ""])
def test_env_off_values(raw: str) -> None:
    assert _from_env({"HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE": raw}).enabled is False


def test_env_defaults_and_values() -> None:
    default = _from_env({})
    assert (default.enabled, default.max_body_bytes, default.redact) == (False, 4096, True)
    cfg = _from_env(
        {
            "HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE": "1",
            "HYPERDX_CAPTURE_BODY_MAX_BYTES": "100",
            "HYPERDX_CAPTURE_REDACT": "false",
            "HYPERDX_CAPTURE_REDACT_PATTERNS": "iban, tenant",
        }
    )
    assert (cfg.enabled, cfg.max_body_bytes, cfg.redact, cfg.extra_patterns) == (
        True,
        100,
        False,
        ("iban", "tenant"),
    )
    assert cfg.excluded_endpoints == (
        "http://localhost:4318/v1/traces",
        "http://localhost:4318/v1/logs",
        "http://localhost:4318/v1/metrics",
    )


def test_env_bad_values_warn_naming_the_variable_and_keep_capture_off() -> None:
    from hyperdx.opentelemetry.options import ConfigurationError, resolve

    settings = resolve(
        env={
            "HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE": "maybe",
            "HYPERDX_CAPTURE_BODY_MAX_BYTES": "4k",
        }
    )
    assert settings.capture_enabled.value is False
    assert any("HYPERDX_ENABLE_ADVANCED_NETWORK_CAPTURE='maybe'" in w for w in settings.warnings)
    assert any("HYPERDX_CAPTURE_BODY_MAX_BYTES='4k'" in w for w in settings.warnings)
    with pytest.raises(ConfigurationError, match="HYPERDX_CAPTURE_REDACT_PATTERNS"):
        resolve(env={"HYPERDX_CAPTURE_REDACT_PATTERNS": "(unclosed"})


def test_kwargs_are_hooks_only() -> None:
    on = CaptureConfig(enabled=True)
    for name in (
        "flask",
        "django",
        "fastapi",
        "starlette",
        "requests",
        "httpx",
        "urllib",
        "urllib3",
        "aiohttp-client",
    ):
        kwargs = instrumentor_kwargs(name, on)
        assert kwargs, name
        assert set(kwargs) <= {
            "request_hook",
            "response_hook",
            "async_request_hook",
            "async_response_hook",
            "server_request_hook",
            "client_request_hook",
            "client_response_hook",
            "trace_configs",
        }, name
        assert instrumentor_kwargs(name, CaptureConfig()) == {}
    assert instrumentor_kwargs("sqlite3", on) == {}


def test_merge_chains_user_hooks() -> None:
    calls: list[str] = []
    merged = merge_kwargs(
        {"request_hook": lambda *a: calls.append("user"), "excluded_urls": "health"},
        {"request_hook": lambda *a: calls.append("ours"), "trace_configs": [1]},
    )
    merged["request_hook"](None, None)
    assert calls == ["user", "ours"]
    assert merged["excluded_urls"] == "health" and merged["trace_configs"] == [1]
    assert merge_kwargs({"trace_configs": [0]}, {"trace_configs": [1]})["trace_configs"] == [0, 1]


def test_errors_counted_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    @guarded("unit.site")
    def broken() -> None:
        raise KeyError("SECRET-should-not-be-logged")

    before = capture_errors()
    with caplog.at_level(logging.WARNING, logger="hyperdx.opentelemetry"):
        for _ in range(3):
            assert broken() is None
    assert capture_errors() == before + 3
    records = [r for r in caplog.records if "unit.site" in r.getMessage()]
    assert len(records) == 1
    assert "SECRET" not in records[0].getMessage()


_ENVIRONS = [
    {"wsgi.url_scheme": "http", "HTTP_HOST": "h:8000", "PATH_INFO": "/items/7", "SCRIPT_NAME": ""},
    {"wsgi.url_scheme": "http", "SERVER_NAME": "h", "SERVER_PORT": "80", "PATH_INFO": "/"},
    {"wsgi.url_scheme": "https", "SERVER_NAME": "h", "SERVER_PORT": "8443", "PATH_INFO": "/a"},
    {"wsgi.url_scheme": "https", "SERVER_NAME": "h", "SERVER_PORT": "443", "PATH_INFO": ""},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "h", "SCRIPT_NAME": "/app", "PATH_INFO": "/x;y=1,2"},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "h", "PATH_INFO": "/caf\xe9 x", "QUERY_STRING": "a=1"},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "h", "SCRIPT_NAME": "/a b", "PATH_INFO": "/%2F?#"},
    {"wsgi.url_scheme": "http", "HTTP_HOST": "", "SERVER_NAME": "h", "SERVER_PORT": "81"},
]


@pytest.mark.parametrize("environ", _ENVIRONS)
def test_request_url_is_wsgirefs(environ: dict[str, str]) -> None:
    """The fast URL rebuild gives wsgiref's string, quoting included."""
    from wsgiref.util import request_uri

    from hyperdx.opentelemetry.capture.wsgi import request_url

    for query in ("", "token=x&b=2"):
        env = {**environ, "QUERY_STRING": query} if query else environ
        assert request_url(env) == request_uri(env, include_query=True)


def test_environ_header_attributes_match_the_generic_path() -> None:
    """Cached per-environ-key header attributes equal header_attributes(environ_headers(...)),
    twice (cold and warm cache), secrets redacted."""
    from hyperdx.opentelemetry.capture import _engine_for
    from hyperdx.opentelemetry.capture.wsgi import environ_header_attributes, environ_headers

    engine = _engine_for(CaptureConfig(enabled=True))
    environ = {
        "REQUEST_METHOD": "POST",
        "HTTP_HOST": "h",
        "HTTP_AUTHORIZATION": "Bearer s3cr3t",
        "HTTP_X_API_KEY": "k3y",
        "HTTP_COOKIE": "sid=1",
        "HTTP_ACCEPT": "a, b",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "",
        "HTTP_CONTENT_TYPE": "text/plain",
        "wsgi.input": object(),
    }
    expected = header_attributes("http.request.header", environ_headers(environ), R)
    assert expected["http.request.header.content-type"] == "application/json, text/plain"
    for _ in range(2):
        got = environ_header_attributes(engine, environ)
        assert got == expected
        assert "s3cr3t" not in repr(got) and "k3y" not in repr(got)


@pytest.mark.parametrize(
    "endpoints",
    [
        ("http://h:8000/v1/traces", "http://h/v1/logs"),
        ("https://h:8443/a", "http://other:4318/v1/traces"),
        ("http://h",),  # no path: a prefix inside the host name, only the full check is right
    ],
)
def test_exclusion_precheck_never_misses_an_excluded_url(endpoints: tuple[str, ...]) -> None:
    """The origin pre-check only skips URLs that cannot start with an excluded endpoint."""
    from hyperdx.opentelemetry.capture._engine import Engine
    from hyperdx.opentelemetry.capture.wsgi import _may_be_excluded, request_url

    engine = Engine(CaptureConfig(enabled=True, excluded_endpoints=endpoints))
    extra = [
        {"wsgi.url_scheme": "http", "HTTP_HOST": "h:8000", "PATH_INFO": "/v1/traces"},
        {"wsgi.url_scheme": "http", "HTTP_HOST": "h", "PATH_INFO": "/v1/logs/x"},
        {"wsgi.url_scheme": "https", "HTTP_HOST": "h:8443", "PATH_INFO": "/a"},
        {"wsgi.url_scheme": "http", "HTTP_HOST": "h:80", "SCRIPT_NAME": "x", "PATH_INFO": "/"},
        {"wsgi.url_scheme": "http", "HTTP_HOST": "h/v1", "PATH_INFO": "/logs"},
        {"wsgi.url_scheme": "http", "HTTP_HOST": "hx", "PATH_INFO": "/"},
    ]
    excluded = 0
    for environ in _ENVIRONS + extra:
        if engine.is_excluded(request_url(environ)):
            excluded += 1
            assert _may_be_excluded(engine, environ), environ
    assert excluded >= 2


_SCOPES = [
    {"scheme": "http", "path": "/v1/traces", "headers": [(b"host", b"h:8000")]},
    {"scheme": "http", "path": "/v1/logs/x", "headers": [(b"Host", b"h")]},
    {"scheme": "https", "path": "/a", "headers": [(b"host", b"h:8443")]},
    {"scheme": "http", "root_path": "x", "path": "/", "headers": [(b"host", b"h:80")]},
    {"scheme": "http", "path": "/logs", "headers": [(b"host", b"h/v1")]},
    {"scheme": "http", "path": "/", "headers": [(b"host", b"hx")]},
    {"scheme": "http", "path": "/v1/traces", "headers": [], "server": ("h", 8000)},
    {"scheme": "http", "path": "/v1/traces", "headers": [(b"host", b"")], "server": ("h", 8000)},
    {"scheme": "http:/", "path": "/v1/traces", "headers": [(b"host", b"h:8000")]},
    {"scheme": "http", "path": "/v1/traces", "headers": [(b"host", b"h:8000"), (b"host", b"x")]},
    {"scheme": "http", "path": "/v1/logs", "query_string": b"a=1", "headers": [(b"host", b"h")]},
]


@pytest.mark.parametrize(
    "endpoints",
    [
        ("http://h:8000/v1/traces", "http://h/v1/logs"),
        ("https://h:8443/a", "http://other:4318/v1/traces"),
        ("http://h",),  # no path: a prefix inside the host name, only the full check is right
    ],
)
def test_asgi_exclusion_precheck_never_misses_an_excluded_url(endpoints: tuple[str, ...]) -> None:
    """ASGI's origin pre-check (on the Host found in the headers' pass) only skips URLs that
    cannot start with an excluded endpoint, and some are skipped."""
    from hyperdx.opentelemetry.capture._engine import Engine
    from hyperdx.opentelemetry.capture.asgi import _may_be_excluded, _url

    engine = Engine(CaptureConfig(enabled=True, excluded_endpoints=endpoints))
    skipped = 0
    for scope in _SCOPES:
        host = find_header(scope["headers"], "host")
        if engine.is_excluded(_url(scope)):
            assert _may_be_excluded(engine, scope, host), scope
        skipped += not _may_be_excluded(engine, scope, host)
    assert skipped or engine.excluded_origins is None


@pytest.mark.parametrize(
    ("limits", "attrs"),
    [
        ({}, {"a": "x", "http.url": "http://h/", "n": 3, "t": True, "f": 1.5}),
        ({}, {"b": "moved to the end", "z": "new"}),
        ({"max_span_attributes": 4}, {"c": "1", "d": "2", "e": "3"}),  # over: oldest dropped
        ({"max_attribute_length": 3}, {"c": "long value", "d": "ok"}),  # truncated by the SDK
        ({}, {"c": b"bytes", "d": ["x", "y"]}),  # cleaned by the SDK
        ({}, {"": "empty key", "d": "x"}),
        ({}, {}),
    ],
)
def test_set_attributes_stores_what_the_sdk_stores(
    limits: dict[str, int], attrs: dict[str, Any]
) -> None:
    """The capture's attribute write leaves a span exactly as ``span.set_attributes`` does:
    same values, same order, same dropped count; an ended span is left alone either way."""
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from hyperdx.opentelemetry import fast_span
    from hyperdx.opentelemetry.capture._engine import set_attributes

    assert fast_span.ENABLED  # else this compares the SDK with itself
    tracer = TracerProvider(span_limits=SpanLimits(**limits)).get_tracer("t")
    start = {"a": "old", "b": "first", "k": 1}
    results = []
    for write in (lambda s, a: s.set_attributes(a), set_attributes):
        span: Any = tracer.start_span("s", attributes=start)
        write(span, dict(attrs))
        stored = span._attributes
        results.append((list(stored._dict.items()), stored.dropped))
        span.end()
        write(span, {"late": "x"})
        assert "late" not in span.attributes
    assert results[0] == results[1]
