"""Hostile HTTP input against one real endpoint on Ray Serve (127.0.0.1): the right status, no
traceback in any answer, no unbounded buffering, and the replica still serving afterwards.

One endpoint (with token auth, a 4 KiB body limit and a 2 s request timeout) serves every test
of the module, so the module pays for one deploy per path: every test runs behind the ingress and
again on the one-hop path (``fast_path=True``), where the replica makes the same checks.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse

import pytest
import requests

import ainative as ai
from ainative import errors

TOKEN_ENV = "AINATIVE_TEST_SERVE_TOKEN"
TOKEN = "test-token-" + "x" * 24
MAX_BYTES = 4096
TIMEOUT_S = 2.0


def hostile_model():
    """A factory: the input says what the model does."""
    def model(x):
        if x == "nan":
            return float("nan")
        if x == "set":
            return {1, 2}
        if x == "raise":
            raise RuntimeError("secret-db-password in the model's exception")
        if isinstance(x, dict) and "sleep" in x:
            time.sleep(float(x["sleep"]))
            return "slept"
        return x * 2
    return model


@pytest.fixture(scope="module")
def serve_up(ray_local):
    import os

    from ray import serve

    os.environ[TOKEN_ENV] = TOKEN
    yield ray_local
    serve.shutdown()
    os.environ.pop(TOKEN_ENV, None)


@pytest.fixture(scope="module", params=[False, True], ids=["ingress", "fast_path"])
def endpoint(serve_up, request):
    """The endpoint behind the ingress, then the same on the one-hop path: every test of the
    module runs on both and expects the same answers."""
    fast = request.param
    handle = ai.Endpoint(hostile_model, name="hardened-fast" if fast else "hardened",
                         resources=ai.Resources(cpus=0.5), max_request_bytes=MAX_BYTES,
                         request_timeout_s=TIMEOUT_S, auth=ai.TokenAuth(secret_env=TOKEN_ENV),
                         fast_path=fast).deploy(timeout_s=120)
    yield handle
    handle.delete()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post(endpoint, payload, *, headers=AUTH, timeout=30):
    return requests.post(endpoint.url, json=payload, headers=headers, timeout=timeout)


def assert_serving(endpoint, within_s: float = 15.0) -> None:
    """The replica answers an ordinary request again (it may first finish a slow one)."""
    deadline = time.monotonic() + within_s
    while True:
        answer = post(endpoint, 21)
        if answer.status_code == 200:
            assert answer.json() == {"result": 42}
            return
        assert time.monotonic() < deadline, f"not serving: {answer.status_code} {answer.text}"
        time.sleep(0.1)


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and "secret-db-password" not in text


def connect(endpoint) -> tuple[http.client.HTTPConnection, str]:
    url = urllib.parse.urlsplit(endpoint.url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30), url.path


def test_auth_over_http_and_the_handle(endpoint, monkeypatch):
    assert post(endpoint, 1).json() == {"result": 2}
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                    {"Authorization": TOKEN}):
        answer = post(endpoint, 1, headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert endpoint.headers() == AUTH
    assert endpoint.predict(4) == 8                       # the handle carries the token
    monkeypatch.setenv(TOKEN_ENV, "a-different-token-of-enough-length")
    with pytest.raises(errors.EndpointError) as caught:
        endpoint.predict(4)
    assert caught.value.details["status_code"] == 401
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(errors.ConfigError, match=TOKEN_ENV):
        endpoint.predict(4)


def test_non_post_gets_405_with_allow(endpoint):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        answer = requests.request(method, endpoint.url, headers=AUTH, timeout=30)
        assert answer.status_code == 405, method
        assert answer.headers["Allow"] == "POST"
    assert_serving(endpoint)


def test_nested_json_bomb_is_400(endpoint):
    body = b"[" * 2048
    answer = requests.post(endpoint.url, data=body, headers={**AUTH, "Content-Type":
                                                             "application/json"}, timeout=30)
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]
    assert_no_traceback(answer.text)
    assert_serving(endpoint)


def test_chunked_oversize_body_is_413_without_reading_it_all(endpoint):
    conn, path = connect(endpoint)
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(256):                  # up to 16 MiB, far past the 4 KiB limit
            sent += 65536
            yield b"1" * 65536

    try:
        conn.request("POST", path, body=chunks(), headers=AUTH, encode_chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        pass                                  # the server answered and closed mid-upload
    answer = conn.getresponse()
    assert answer.status == 413
    assert "max_request_bytes=4096" in json.loads(answer.read())["error"]
    conn.close()
    assert_serving(endpoint)


def test_slow_client_is_cut_off_in_bounded_time(endpoint):
    url = urllib.parse.urlsplit(endpoint.url)
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall((f"POST {url.path} HTTP/1.1\r\nHost: {url.hostname}\r\n"
                      f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                      "Content-Length: 1000\r\n\r\n[1,").encode())
        reply = b""
        deadline = started + 4 * TIMEOUT_S + 5
        sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"1,")             # a trickle, far slower than the body needs
            except OSError:
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break                           # closed by the server
            reply += data
            if b"\r\n\r\n" in reply:
                break
    elapsed = time.monotonic() - started
    assert elapsed < 4 * TIMEOUT_S + 5, f"the slow client held the request for {elapsed:.1f}s"
    if reply:
        assert reply.split(b" ")[1] in (b"408", b"504"), reply[:200]
    assert_serving(endpoint)


@pytest.mark.parametrize("value", ["nan", "set"])
def test_result_that_is_not_json_is_500_with_an_error_id(endpoint, value):
    answer = post(endpoint, value)
    body = answer.json()
    assert answer.status_code == 500 and "cannot be encoded as JSON" in body["error"]
    assert len(body["error_id"]) == 12 and answer.headers["X-Error-Id"] == body["error_id"]
    assert_no_traceback(answer.text)
    assert_serving(endpoint)


def test_model_exception_is_500_with_an_id_and_no_traceback(endpoint):
    answer = post(endpoint, "raise")
    body = answer.json()
    assert answer.status_code == 500 and "RuntimeError" in body["error"]
    assert len(body["error_id"]) == 12
    assert_no_traceback(answer.text)
    with pytest.raises(errors.EndpointError) as caught:
        endpoint.predict("raise")
    assert caught.value.details["status_code"] == 500
    assert_no_traceback(str(caught.value))
    assert_serving(endpoint)


def test_slow_model_is_504_at_the_request_timeout(endpoint):
    started = time.monotonic()
    answer = post(endpoint, {"sleep": TIMEOUT_S + 1.0})
    elapsed = time.monotonic() - started
    assert answer.status_code == 504 and len(answer.json()["error_id"]) == 12
    assert elapsed < TIMEOUT_S + 0.9, f"answered after {elapsed:.2f}s"
    assert_serving(endpoint)


def test_handle_caller_gives_up_at_its_own_timeout(endpoint):
    # predict(timeout_s=...) bounds the caller's wait below the endpoint's request timeout; the
    # abandoned request does not stop the next one from being answered.
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        endpoint.predict({"sleep": TIMEOUT_S - 0.5}, timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT_S - 0.5, f"gave up after {elapsed:.2f}s"
    assert endpoint.predict(21) == 42
