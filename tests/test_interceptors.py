"""Interceptors: each checked against a per-event reference written from Flume's
documentation, on batches with shared and per-event headers; then a chain in a real agent
(seq -> interceptors -> memory -> logger) read back from the logger's lines."""
from __future__ import annotations

import re
import socket

import pytest
from hypothesis import given, settings, strategies as st

from e2e_support import write_config
from fastsync.agent.component import Place, parse_config
from fastsync.agent.interceptors import INTERCEPTORS, _name_groups
from fastsync.agent.properties import Prop
from fastsync.event import Event, EventBatch


def make(kind: str, **props):
    cls = INTERCEPTORS.lookup(kind)
    place = Place("test.properties", "a1.sources.r1.interceptors.i1",
                  {k.replace("__", "."): Prop(str(v), 1) for k, v in props.items()})
    return cls("i1", parse_config(cls.Config, place))


EVENTS = [Event(b"GET /a 200", {"host": "h1", "x": "1"}), Event(b"POST /b 500", {}),
          Event(b"\xff\xfe binary 200", {"x": "3"}), Event(b"", {"id": "keep-me"})]


def batch(events=EVENTS, shared=None):
    b = EventBatch.from_events(events)
    return b.with_headers(**(shared or {}))


def test_static_keeps_existing_by_default_and_overwrites_when_told():
    out = make("static", key="x", value="v").intercept(batch()).events()
    assert [e.headers["x"] for e in out] == ["1", "v", "3", "v"]
    out = make("static", key="x", value="v", preserveExisting="false").intercept(batch()).events()
    assert [e.headers["x"] for e in out] == ["v"] * 4
    # a header shared by the batch stays one value (no per-event column)
    b = make("static", key="dc", value="east").intercept(batch())
    assert b.headers["dc"] == "east"


def test_timestamp_and_host():
    import time
    before = int(time.time() * 1000)
    out = make("timestamp").intercept(batch()).events()
    stamps = {int(e.headers["timestamp"]) for e in out}
    assert len(stamps) == 1 and before <= stamps.pop() <= int(time.time() * 1000)
    pre = make("timestamp", preserveExisting="true", headerName="x").intercept(batch()).events()
    assert [e.headers["x"] for e in pre][0::2] == ["1", "3"]
    ip = socket.gethostbyname(socket.gethostname())
    assert {e.headers["host"] for e in make("host").intercept(batch()).events()} == {ip}
    named = make("host", useIP="false", hostHeader="hn", preserveExisting="true").intercept(batch()).events()
    # as Flume's getCanonicalHostName: the reverse lookup of the host's address
    assert {e.headers["hn"] for e in named} == {socket.gethostbyaddr(ip)[0]}


def test_remove_header_by_name_list_and_regex():
    b = batch(shared={"keep": "k", "drop_a": "1", "drop_b": "2"})
    assert set(make("remove_header", withName="x").intercept(b).headers) == {"host", "id", "keep", "drop_a", "drop_b"}
    assert set(make("remove_header", fromList="host , x").intercept(b).headers) == {"id", "keep", "drop_a", "drop_b"}
    assert set(make("remove_header", matching="drop_.*").intercept(b).headers) == {"host", "x", "id", "keep"}


def test_uuid_adds_unique_ids_keeping_existing():
    out = make("uuid", prefix="p-").intercept(batch()).events()
    ids = [e.headers["id"] for e in out]
    assert ids[3] == "keep-me" and len(set(ids)) == 4
    assert all(re.fullmatch(r"p-[0-9a-f-]{36}", i) for i in ids[:3])


@pytest.mark.parametrize("exclude", [False, True])
def test_regex_filter_keeps_or_drops_matches_with_their_headers(exclude):
    out = make("regex_filter", regex=r"\s200$", excludeEvents=str(exclude).lower()).intercept(batch()).events()
    matching = [e for e in EVENTS if re.search(rb"\s200$", e.body)]
    want = [e for e in EVENTS if e not in matching] if exclude else matching
    assert out == want


def test_regex_extractor_sets_headers_from_groups():
    i = make("regex_extractor", regex=r"^(\w+) (/\S*) (\d+)$", serializers="m p s",
             serializers__m__name="method", serializers__p__name="path", serializers__s__name="status")
    out = i.intercept(batch()).events()
    assert [(e.headers.get("method"), e.headers.get("path"), e.headers.get("status")) for e in out] == [
        ("GET", "/a", "200"), ("POST", "/b", "500"), (None, None, None), (None, None, None)]


def test_search_replace_rewrites_bodies_keeping_headers():
    out = make("search_replace", searchPattern=r"(\d{3})$", replaceString="status=$1").intercept(batch()).events()
    assert [e.body for e in out] == [b"GET /a status=200", b"POST /b status=500",
                                    "\ufffd\ufffd binary status=200".encode(), b""]
    assert [e.headers for e in out] == [e.headers for e in EVENTS]


@pytest.mark.filterwarnings("ignore::FutureWarning")     # re's "possible nested set" on odd inputs
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab()[]\\?P<>:x", max_size=12))
def test_name_groups_names_exactly_the_capturing_groups(regex):
    try:
        groups = re.compile(regex).groups
    except re.error:
        return
    named = _name_groups(regex)
    try:
        compiled = re.compile(named)
    except re.error:
        pytest.fail("%r became the invalid %r" % (regex, named))
    assert compiled.groups == groups and list(compiled.groupindex) == ["g%d" % i for i in range(groups)]


def test_chain_in_an_agent_and_config_errors(tmp_path, run_agent):
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": 40, "a1.sources.r1.batchSize": 10,
        "a1.sources.r1.channels": "c1",
        "a1.sources.r1.interceptors": "f r s",
        "a1.sources.r1.interceptors.f.type": "regex_filter", "a1.sources.r1.interceptors.f.regex": "7$",
        "a1.sources.r1.interceptors.r.type": "org.apache.flume.interceptor.SearchAndReplaceInterceptor$Builder",
        # a properties file unescapes backslashes, as Java's does: \\d in the file is \d
        "a1.sources.r1.interceptors.r.searchPattern": "^(\\\\d*)7$", "a1.sources.r1.interceptors.r.replaceString": "$1-seven",
        "a1.sources.r1.interceptors.s.type": "static", "a1.sources.r1.interceptors.s.key": "dc",
        "a1.sources.r1.interceptors.s.value": "east",
        "a1.channels.c1.type": "memory",
        "a1.sinks.k1.type": "logger", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.maxBytesToLog": 64,
    }
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    events = re.findall(r"Event: \{ headers:\{(.*?)\} body: .*? (\S+) \}", p.stderr)
    assert events == [("dc=east", "%s-seven" % (i // 10 or "")) for i in (7, 17, 27, 37)]

    cfg["a1.sources.r1.interceptors.f.regex"] = "(unclosed"
    p = run_agent("a1", write_config(tmp_path, cfg), timeout=60)
    assert p.returncode != 0
    assert re.search(r"agent\.properties:\d+: a1\.sources\.r1\.interceptors\.f\.regex: not a valid regex", p.stderr), p.stderr
    cfg["a1.sources.r1.interceptors.f.type"] = "nope"
    p = run_agent("a1", write_config(tmp_path, cfg), timeout=60)
    assert p.returncode != 0 and "unknown interceptor type 'nope'" in p.stderr


def test_validate_checks_without_starting(tmp_path, run_agent):
    """`agent --validate`: exit 0 and a summary for a good file (nothing runs: the seq
    source would otherwise log events); the located error and exit 2 for a bad one."""
    cfg = {"a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1",
           "a1.sources.r1.type": "seq", "a1.sources.r1.channels": "c1",
           "a1.sources.r1.interceptors": "t", "a1.sources.r1.interceptors.t.type": "timestamp",
           "a1.channels.c1.type": "memory", "a1.sinks.k1.type": "logger", "a1.sinks.k1.channel": "c1"}
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 0, p.stderr
    assert "agent a1 is valid: sources r1, channels c1, sinks k1" in p.stdout and "Event:" not in p.stderr
    cfg["a1.channels.c1.capacity"] = "lots"
    p = run_agent("a1", write_config(tmp_path, cfg), "--validate", timeout=30)
    assert p.returncode == 2
    assert re.search(r"agent\.properties:\d+: a1\.channels\.c1\.capacity: expected an integer, got 'lots'", p.stderr), p.stderr
