"""The HTTP source (Flume's JSONHandler) through the agent CLI with real requests: 200 only
after the commit, 400 for malformed input (the agent keeps running), 503 when the channel
is full, 413 over the size limit; strict Content-Length, deep JSON, HTTPS with a PKCS12
keystore or PEM files, and the listener's limits (backlog, maxConnections, idleTimeout)."""
from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.error
import urllib.request
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from e2e_support import free_port, get_json, poll, wait_for_port, write_config
from tls_support import self_signed_certificate
from fastsync.agent.sources.http import BadRequest, parse_json_events
from socket_clients import hold_connections, listen_backlog, simultaneous
from test_syslog import logged_events


def post(port: int, data: bytes, content_type: str = "application/json; charset=utf-8",
         scheme: str = "http", context: ssl.SSLContext | None = None) -> tuple[int, str]:
    req = urllib.request.Request("%s://127.0.0.1:%d/" % (scheme, port), data=data, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def http_agent(tmp_path, agent, sink: bool = True, args: tuple = (), **extra):
    port = free_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1",
           "a1.sources.r1.type": "org.apache.flume.source.http.HTTPSource", "a1.sources.r1.port": port,
           "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory"}
    if sink:
        cfg.update({"a1.sinks": "k1", "a1.sinks.k1.type": "logger", "a1.sinks.k1.channel": "c1",
                    "a1.sinks.k1.maxBytesToLog": 64})
    cfg.update(extra)
    p = agent("a1", write_config(tmp_path, cfg), *args)
    wait_for_port(port, timeout=15, alive=p.alive)
    return p, port


def raw_exchange(port: int, head: bytes, timeout: float = 10.0) -> bytes:
    """Send `head` (request line and headers, no body) and read the answer until the server
    closes; AssertionError if it does not answer within timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except socket.timeout:
            raise AssertionError("no answer within %gs to %r (got %r)" % (timeout, head, got)) from None
        return got


def test_events_with_headers_then_malformed_input_keeps_the_agent_running(tmp_path, agent):
    p, port = http_agent(tmp_path, agent)
    events = [{"headers": {"host": "web1", "n": str(i)}, "body": "hello \u00e9 %d" % i} for i in range(3)]
    events.append({"body": "no headers"})
    assert post(port, json.dumps(events).encode()) == (200, "")
    for bad, words in ((b"{not json", "not JSON"), (b'{"body": "x"}', "expected a JSON array"),
                       (b'[{"body": {}}]', "event 0: body"), (b'[{"headers": ["a"], "body": "x"}]', "headers must map")):
        code, text = post(port, bad)
        assert code == 400 and words in text, (bad, code, text)
    assert post(port, json.dumps([{"body": "after"}]).encode("utf-16"), "application/json; charset=utf-16") == (200, "")
    poll(lambda: p.stderr.count("Event: ") >= 5, 15, message="5 events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    logged = re.findall(r"Event: \{ headers:\{(.*?)\} body: .*? (\S.*?) \}", p.stderr)
    assert [h for h, _ in logged][:3] == ["host=web1, n=0", "host=web1, n=1", "host=web1, n=2"]
    assert logged[3][0] == "" and logged[4][0] == ""
    assert "hello" in logged[0][1] and logged[4][1].endswith(".a.f.t.e.r")      # UTF-16 bytes


def test_full_channel_is_503_and_size_limits_413(tmp_path, agent):
    # no sink: the channel fills up
    p, port = http_agent(tmp_path, agent, sink=False, **{
        "a1.channels.c1.capacity": 10, "a1.channels.c1.transactionCapacity": 10, "a1.channels.c1.keep-alive": 0.2,
        "a1.sources.r1.maxRequestSize": 2000})
    one = json.dumps([{"body": "x" * 10}] * 5).encode()
    assert post(port, one)[0] == 200 and post(port, one)[0] == 200
    code, text = post(port, one)
    assert code == 503 and "channel refused" in text
    code, text = post(port, json.dumps([{"body": "y"}] * 11).encode())
    assert code == 413 and "more than one channel transaction holds" in text
    code, text = post(port, json.dumps([{"body": "z" * 3000}]).encode())
    assert code == 413 and "maxRequestSize" in text
    req = urllib.request.Request("http://127.0.0.1:%d/" % port)
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("GET accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405
    assert p.alive()
    assert p.stop(timeout=20) == 0, p.stderr


def test_bind_defaults_to_loopback_and_bad_handler_is_refused(tmp_path, run_agent):
    port = free_port()
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sources.r1.type": "http", "a1.sources.r1.port": port,
           "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory",
           "a1.sources.r1.handler": "org.example.XmlHandler"}
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 2 and "handler 'org.example.XmlHandler' is not supported" in p.stderr
    from fastsync.agent.sources.http import HttpSourceConfig
    assert HttpSourceConfig(port=port).bind == "127.0.0.1"


def test_json_handler_takes_numbers_and_booleans_as_their_text_and_bodies_in_the_request_charset(tmp_path, agent):
    """As Flume 1.11's JSONHandler (Gson into Map<String, String>): numbers and true/false are
    their JSON text as written, null is no header / an empty body; UTF-16 bodies are Java's
    UTF-16 bytes (big-endian, with a BOM), UTF-32 big-endian. Objects or arrays in their
    place, a header name given twice, another charset: 400, the agent keeps running."""
    p, port = http_agent(tmp_path, agent, **{"a1.sinks.k1.maxBytesToLog": 200})
    assert post(port, b'[{"headers": {"n": 1, "f": 1.50, "b": true, "e": -2E+3, "z": null}, "body": 1.50},'
                      b' {"body": false}, {"headers": {"a": "b"}, "body": null}]') == (200, "")
    assert post(port, '[{"headers": {"h": 7}, "body": "h\u00e9"}]'.encode("utf-16"),
                "application/json; charset=UTF-16") == (200, "")
    assert post(port, '[{"body": "h\u00e9"}]'.encode("utf-16-be"), "application/json; charset=utf-16") == (200, "")
    assert post(port, '[{"body": "x"}]'.encode("utf-32"), "application/json; charset=UTF-32") == (200, "")
    for bad, words in ((b'[{"headers": {"a": {"b": "c"}}, "body": "x"}]', "event 0: header 'a': expected a string"),
                       (b'[{"body": [1]}]', "event 0: body: expected a string, number or true/false, got an array"),
                       (b'[{"headers": {"a": "1", "a": "2"}}]', "header 'a' is given twice")):
        code, text = post(port, bad)
        assert code == 400 and words in text, (bad, code, text)
    code, text = post(port, b'[{"body": "x"}]', "application/json; charset=ISO-8859-1")
    assert code == 400 and "charset iso-8859-1 is not supported" in text, text
    poll(lambda: p.stderr.count("Event: ") >= 6, 15, message="6 events logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert logged_events(p.stderr) == [
        ({"n": "1", "f": "1.50", "b": "true", "e": "-2E+3"}, b"1.50"), ({}, b"false"), ({"a": "b"}, b""),
        ({"h": "7"}, b"\xfe\xff\x00h\x00\xe9"), ({}, b"\xfe\xff\x00h\x00\xe9"), ({}, b"\x00\x00\x00x")]


# -- fuzzing: any request body is either a batch or a clean 400 --
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_events = st.lists(st.fixed_dictionaries({}, optional={"headers": st.dictionaries(st.text(max_size=8), _json, max_size=3)
                                                       | _json, "body": _json}), max_size=5)
_doc = st.one_of(st.binary(max_size=300), _events.map(lambda d: json.dumps(d).encode()),
                 _json.map(lambda d: json.dumps(d).encode()), st.sampled_from([b"[" * 5000, b'[{"body": "\\ud800"}]',
                 b'[{"headers": {"\\udfff": 1}}]', b"\xef\xbb\xbf[]", b"[1e999999, -0, NaN]"]))
_charsets = st.sampled_from(["utf-8", "UTF-16", "utf-32", "latin-1", "nonsense", ""])


@settings(max_examples=60, deadline=timedelta(seconds=10), database=None)
@given(_doc, _charsets)
def test_fuzz_parse_json_events_is_a_batch_or_a_bad_request(data, charset):
    try:
        batch = parse_json_events(data, charset)
    except BadRequest as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    doc = json.loads(data.decode({"utf-16": "utf-16-be", "utf-32": "utf-32-be"}.get(charset.lower(), charset)
                                 if not data.startswith((b"\xfe\xff", b"\xff\xfe")) else charset), parse_int=str)
    assert isinstance(doc, list) and len(batch) == len(doc)


def test_fuzzed_requests_leave_the_agent_up_and_answering(tmp_path, agent):
    """Fuzzed request bodies and charsets over real HTTP: every one is answered 200 or 400,
    and a sound request afterwards is stored."""
    p, port = http_agent(tmp_path, agent)

    @settings(max_examples=40, deadline=timedelta(seconds=10), database=None)
    @given(_doc, _charsets)
    def send(data, charset):
        code, text = post(port, data, "application/json; charset=" + charset if charset else "application/json")
        assert code in (200, 400), (code, text)

    send()
    assert post(port, b'[{"headers": {"after": "fuzz"}, "body": "still up"}]') == (200, "")
    poll(lambda: "after=fuzz" in p.stderr or not p.alive(), 20, message="the request after the fuzz")
    assert p.alive() and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stop(timeout=20) == 0, p.stderr[-3000:]


def test_content_length_must_be_a_non_negative_integer(tmp_path, agent):
    """Content-Length -1 (or any non-number) used to read the body to the end of the stream,
    past maxRequestSize; now it is answered 400 from the headers alone, nothing read."""
    mport = free_port()
    p, port = http_agent(tmp_path, agent, args=("--metrics-port", str(mport)), **{"a1.sources.r1.maxRequestSize": 1000})
    bad = ["-1", "abc", "+5", "1e3", "0x10", "5_0", "\u0662"]
    for value in bad:
        head = ("POST / HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n" % value).encode()
        answer = raw_exchange(port, head)
        assert answer.startswith(b"HTTP/1.0 400 ") and b"Content-Length must be one non-negative integer" in answer, (value, answer)
    # two different lengths (request smuggling) are refused as well
    answer = raw_exchange(port, b"POST / HTTP/1.0\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 "), answer
    assert post(port, json.dumps([{"body": "fine"}]).encode()) == (200, "")
    assert get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]["EventReadFail"] == str(len(bad) + 1)
    poll(lambda: p.stderr.count("Event: ") >= 1, 15, message="the good event logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert p.stderr.count("Event: ") == 1


def test_json_nested_too_deeply_is_answered_400(tmp_path, agent):
    mport = free_port()
    p, port = http_agent(tmp_path, agent, args=("--metrics-port", str(mport)))
    code, text = post(port, b"[" * 100_000 + b"]" * 100_000)
    assert code == 400 and "nested too deeply" in text, (code, text)
    code, text = post(port, b'[{"headers": ' + b'{"a": ' * 50_000 + b'""' + b"}" * 50_001 + b"]")
    assert code == 400, (code, text)
    assert get_json("http://127.0.0.1:%d/metrics" % mport)["SOURCE.r1"]["EventReadFail"] == "2"
    assert post(port, json.dumps([{"body": "after"}]).encode()) == (200, "")
    poll(lambda: p.stderr.count("Event: ") >= 1, 15, message="the good event logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert "Traceback" not in p.stderr


def test_500_simultaneous_clients_are_all_answered(tmp_path, agent):
    p, port = http_agent(tmp_path, agent, **{"a1.channels.c1.capacity": 1000, "a1.channels.c1.transactionCapacity": 10})
    assert listen_backlog(port) >= 1024
    n = 500
    requests = []
    for i in range(n):
        body = json.dumps([{"headers": {"n": str(i)}, "body": "client %d" % i}]).encode()
        requests.append(b"POST / HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    answers = simultaneous(port, requests)
    failed = [a for a in answers if not (isinstance(a, bytes) and a.startswith(b"HTTP/1.0 200 "))]
    assert not failed, "%d of %d failed, e.g. %r" % (len(failed), n, failed[:3])
    poll(lambda: p.stderr.count("Event: ") >= n, 30, message="%d events logged" % n)
    assert p.stop(timeout=20) == 0, p.stderr
    assert sorted(map(int, re.findall(r"headers:\{n=(\d+)\}", p.stderr))) == list(range(n))


def test_connections_past_max_connections_get_503_and_idle_ones_are_closed(tmp_path, agent):
    mport = free_port()
    p, port = http_agent(tmp_path, agent, args=("--metrics-port", str(mport)),
                         **{"a1.sources.r1.maxConnections": 2, "a1.sources.r1.idleTimeout": 1000})
    # these two take both slots, the next one is refused at once
    held = hold_connections(mport, 2, lambda: socket.create_connection(("127.0.0.1", port), timeout=10))
    answer = raw_exchange(port, b"")
    assert answer.startswith(b"HTTP/1.0 503 ") and b"too many connections (maxConnections 2)" in answer, answer
    for s in held:      # they sent nothing: closed after idleTimeout
        with s:
            assert s.recv(100) == b""
    assert post(port, json.dumps([{"body": "slot free again"}]).encode()) == (200, "")
    poll(lambda: p.stderr.count("Event: ") >= 1, 15, message="the event logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert "refused 1 connection(s)" in p.stderr and "maxConnections is 2" in p.stderr


def make_tls_files(tmp_path, password: bytes = b"changeit"):
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem encrypted with password, keystore.p12)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    key, cert = self_signed_certificate()
    pem, keypem, p12 = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "keystore.p12"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keypem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(password)))
    p12.write_bytes(pkcs12.serialize_key_and_certificates(b"fastsync", key, cert, None,
                                                          serialization.BestAvailableEncryption(password)))
    return pem, keypem, p12


@pytest.mark.parametrize("store", ["pkcs12", "pem"])
def test_https_with_a_keystore_or_pem_files(tmp_path, agent, store):
    pem, keypem, p12 = make_tls_files(tmp_path)
    keys = ({"a1.sources.r1.keystore": p12, "a1.sources.r1.keystorePassword": "changeit",
             "a1.sources.r1.keystore-type": "PKCS12"} if store == "pkcs12"
            else {"a1.sources.r1.ssl.certfile": pem, "a1.sources.r1.ssl.keyfile": keypem,
                  "a1.sources.r1.keystorePassword": "changeit"})
    p, port = http_agent(tmp_path, agent, **{"a1.sources.r1.ssl": "true"}, **keys)
    client = ssl.create_default_context(cafile=str(pem))       # verifies the certificate and 127.0.0.1
    assert post(port, json.dumps([{"body": "over tls"}]).encode(), scheme="https", context=client) == (200, "")
    with pytest.raises(urllib.error.URLError) as refused:        # a client that does not trust it
        post(port, b"[]", scheme="https", context=ssl.create_default_context())
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP gets no answer
        post(port, json.dumps([{"body": "in clear"}]).encode())
    poll(lambda: p.stderr.count("Event: ") >= 1, 15, message="the event logged")
    assert p.stop(timeout=20) == 0, p.stderr
    assert p.stderr.count("Event: ") == 1 and "over tls" in p.stderr


def test_tls_configuration_errors_name_the_key(tmp_path, run_agent):
    pem, keypem, p12 = make_tls_files(tmp_path)
    base = {"a1.sources": "r1", "a1.channels": "c1", "a1.sources.r1.type": "http", "a1.sources.r1.port": free_port(),
            "a1.sources.r1.channels": "c1", "a1.channels.c1.type": "memory", "a1.sources.r1.ssl": "true"}
    cases = [
        ({"a1.sources.r1.keystore": p12, "a1.sources.r1.keystorePassword": "wrong"},
         "a1.sources.r1.keystore", "cannot load the TLS key and certificate"),
        ({"a1.sources.r1.keystore": p12, "a1.sources.r1.keystore-type": "JKS"}, "a1.sources.r1.keystore-type", "only PKCS12"),
        ({}, "a1.sources.r1.ssl", "needs either keystore or ssl.certfile"),
        # an encrypted key without its password: an error, not a prompt on the terminal
        ({"a1.sources.r1.ssl.certfile": pem, "a1.sources.r1.ssl.keyfile": keypem}, "a1.sources.r1.ssl.certfile", "cannot load"),
    ]
    for i, (keys, key, words) in enumerate(cases):
        p = run_agent("a1", write_config(tmp_path, {**base, **keys}, name="bad%d.properties" % i), "--validate", timeout=30)
        assert p.returncode == 2 and key in p.stderr and words in p.stderr, (keys, p.stderr)
        assert "Traceback" not in p.stderr and "changeit" not in p.stderr
