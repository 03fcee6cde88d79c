"""The codec server's hardening: no token only on loopback, bad input a 400 the UI can read,
and the session cookie that lets the Temporal UI (which cannot send a token) decode."""

import base64
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from email.message import Message

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from starter.codec import EncryptionCodec, parse_keys
from starter.codec_server import SESSION_COOKIE, build_codec_app, is_loopback
from starter.dev import free_port
from starter.processes import running
from tests.servers import binary, run_referrals

KEY = ("2026-q1", os.urandom(32))
SPEC = f"{KEY[0]}:{base64.b64encode(KEY[1]).decode()}"
UI = "http://localhost:8080"
TOKEN = "s3cret-codec-token"
SECRET = "maria.lopez@lopez-logistics.example"
HEADERS = {"Content-Type": "application/json", "Origin": UI, "Authorization": f"Bearer {TOKEN}"}
Codec = TestClient[web.Request, web.Application]


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=list(payloads)))


async def sealed(text: str) -> Payload:
    return (await EncryptionCodec(parse_keys(SPEC)).encode([plain(text)]))[0]


@pytest.fixture
async def codec_server() -> AsyncIterator[Codec]:
    app = build_codec_app(EncryptionCodec(parse_keys(SPEC)), cors_origin=UI, token=TOKEN)
    async with TestClient(TestServer(app)) as client:
        yield client


def assert_short_error(text: str) -> None:
    """One JSON line for the UI: no traceback, no key, no plaintext."""
    assert set(json.loads(text)) == {"error"}
    assert len(text) < 200
    for leak in ("Traceback", 'File "', SPEC.split(":")[1], SECRET, "maria"):
        assert leak not in text


# --- No token: loopback only --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("codec.example.com", False),
    ],
)
def test_loopback_is_127_0_0_0_8_ipv6_one_and_localhost(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def command_env(token: str | None) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if k != "REFERRALS_CODEC_TOKEN"}
    variables |= {"REFERRALS_CODEC_KEYS": SPEC, "REFERRALS_CODEC_CORS_ORIGIN": UI}
    if token is not None:
        variables["REFERRALS_CODEC_TOKEN"] = token
    return variables


@pytest.mark.parametrize(("host", "token"), [("0.0.0.0", None), ("0.0.0.0", ""), ("::", "  ")])
def test_without_a_token_the_command_refuses_to_listen_beyond_loopback(
    host: str, token: str | None
) -> None:
    # Before the fix it served (the timeout fails the test instead of hanging it).
    refused = run_referrals(
        command_env(token), "codec-server", "--host", host, "--port", "0", timeout=30
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: REFERRALS_CODEC_TOKEN is not set")
    assert repr(host) in lines[0]
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("host", "content_type", "expected"),
    [
        ("127.0.0.1:18081", "application/json", 200),
        ("localhost:18081", "application/json; charset=utf-8", 200),
        ("[::1]:18081", "application/json", 200),
        ("attacker.example:18081", "application/json", 421),  # DNS rebinding
        ("127.0.0.1.attacker.example", "application/json", 421),
        ("localhost:18081", "text/plain", 415),  # no CORS preflight for text/plain
        ("localhost:18081", "application/x-www-form-urlencoded", 415),
    ],
)
async def test_without_a_token_it_answers_loopback_names_and_json_only(
    host: str, content_type: str, expected: int
) -> None:
    app = build_codec_app(EncryptionCodec(parse_keys(SPEC)), cors_origin=UI, token=None)
    async with TestClient(TestServer(app)) as client:
        headers = {"Host": host, "Content-Type": content_type}
        answer = await client.post("/encode", data=body(plain(SECRET)), headers=headers)
        assert answer.status == expected
        if expected != 200:
            assert_short_error(await answer.text())


def post(url: str, data: str) -> tuple[int, Message, str]:
    request = urllib.request.Request(url, data=data.encode(), method="POST", headers=HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def test_without_a_token_the_command_serves_on_loopback() -> None:
    port = free_port()
    command = [binary("referrals"), "codec-server", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, env=command_env(None), grace=10) as server:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, "the codec server exited: see its captured stderr"
            try:
                code, _, text = post(f"{url}/encode", body(plain(SECRET)))
                break
            except OSError:
                assert time.monotonic() < deadline, "the codec server did not start"
                time.sleep(0.2)
        assert code == 200
        code, _, text = post(f"{url}/decode", text)
        assert code == 200
        assert SECRET in base64.b64decode(json.loads(text)["payloads"][0]["data"]).decode()
        # ... and answers a ciphertext too short to hold its nonce with a 400 (it was a 500).
        truncated = Payload(
            metadata={"encoding": b"binary/encrypted", "encryption-key-id": KEY[0].encode()},
            data=b"abcd",
        )
        code, headers, text = post(f"{url}/decode", body(truncated))
        assert code == 400
        assert headers["Access-Control-Allow-Origin"] == UI
        assert_short_error(text)


# --- Bad input: a 400 the UI can read -----------------------------------------------------


def corrupt(payload: Payload, how: str) -> Payload:
    broken = Payload()
    broken.CopyFrom(payload)
    if how == "bad tag":
        broken.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
    elif how == "truncated to 4 bytes":
        broken.data = payload.data[:4]
    elif how == "truncated to 20 bytes":
        broken.data = payload.data[:20]
    elif how == "no data":
        broken.data = b""
    elif how == "unknown key id":
        broken.metadata["encryption-key-id"] = b"2019-q1"
    elif how == "no key id":
        del broken.metadata["encryption-key-id"]
    return broken


@pytest.mark.parametrize(
    "how",
    [
        "bad tag",
        "truncated to 4 bytes",
        "truncated to 20 bytes",
        "no data",
        "unknown key id",
        "no key id",
    ],
)
async def test_a_corrupted_ciphertext_is_a_400_with_cors(codec_server: Codec, how: str) -> None:
    good = await sealed(SECRET)
    answer = await codec_server.post(
        "/decode", data=body(plain("fine"), corrupt(good, how)), headers=HEADERS
    )
    assert answer.status == 400
    assert answer.headers["Access-Control-Allow-Origin"] == UI
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert_short_error(await answer.text())


@pytest.mark.parametrize("path", ["/decode", "/encode"])
@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        "[]",
        "null",
        '{"payloads": "maria"}',
        '{"payloads": [{"metadata": ["maria"]}]}',
        '{"maria": 1}',
        b"\xff\xfe maria",
        "[" * 100_000,
    ],
)
async def test_a_malformed_body_is_a_400_with_cors_that_quotes_nothing(
    codec_server: Codec, path: str, data: str | bytes
) -> None:
    answer = await codec_server.post(path, data=data, headers=HEADERS)
    assert answer.status == 400
    assert answer.headers["Access-Control-Allow-Origin"] == UI
    assert_short_error(await answer.text())


async def test_errors_outside_the_codec_still_carry_cors(codec_server: Codec) -> None:
    too_big = await codec_server.post("/encode", data=b"x" * (5 * 1024 * 1024), headers=HEADERS)
    assert too_big.status == 413
    assert too_big.headers["Access-Control-Allow-Origin"] == UI
    unauthorized = await codec_server.post(
        "/decode", data=body(plain("x")), headers={**HEADERS, "Authorization": "Bearer no"}
    )
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == UI


async def test_a_bug_is_a_500_with_cors_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    codec = EncryptionCodec(parse_keys(SPEC))

    async def broken(payloads: object) -> list[Payload]:
        raise RuntimeError(f"bug while handling {SECRET}")

    monkeypatch.setattr(codec, "decode", broken)
    app = build_codec_app(codec, cors_origin=UI, token=TOKEN)
    async with TestClient(TestServer(app)) as client:
        answer = await client.post("/decode", data=body(plain("x")), headers=HEADERS)
        assert answer.status == 500
        assert answer.headers["Access-Control-Allow-Origin"] == UI
        assert_short_error(await answer.text())
    assert "RuntimeError" in caplog.text  # the traceback is for the operator's log


# --- The Temporal UI's way in: a session cookie -------------------------------------------


async def test_the_login_page_sets_a_session_cookie_the_ui_sends(codec_server: Codec) -> None:
    form = await codec_server.get("/login")
    assert form.status == 200
    assert "<form method=post action=/login>" in await form.text()

    wrong = await codec_server.post("/login", data={"token": "guess"}, allow_redirects=False)
    assert wrong.status == 401
    assert SESSION_COOKIE not in wrong.cookies

    signed_in = await codec_server.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert signed_in.status == 303
    assert signed_in.headers["Location"] == UI
    cookie = signed_in.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value
    codec_server.session.cookie_jar.clear()  # each request below names its own cookie

    # What the UI sends with TEMPORAL_CODEC_INCLUDE_CREDENTIALS: the cookie, no token.
    ui_headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    sealed_body = body(await sealed(SECRET))
    decoded = await codec_server.post(
        "/decode",
        data=sealed_body,
        headers={**ui_headers, "Cookie": f"{SESSION_COOKIE}={cookie.value}"},
    )
    assert decoded.status == 200
    data = json.loads(await decoded.text())["payloads"][0]["data"]
    assert SECRET in base64.b64decode(data).decode()
    forged = await codec_server.post(
        "/decode",
        data=sealed_body,
        headers={**ui_headers, "Cookie": f"{SESSION_COOKIE}={cookie.value[:-1]}x"},
    )
    assert forged.status == 401
