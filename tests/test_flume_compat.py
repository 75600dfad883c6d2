"""Flume 1.11 behaviours checked without the JVM (issue 21; tests/test_flume_differential.py
runs the real Flume on the same cases): regex_extractor's optional groups, Millis
serializer and Java regex syntax; remove_header's fromListSeparator; netcat counting
characters; exec splitting on whitespace only; a listed sink with no keys; a file_roll sink
whose directory cannot be made failing over at runtime."""
from __future__ import annotations

import datetime as dt
import socket

import pytest

from e2e_support import write_config
from fastsync.agent.config import parse_agent_config
from fastsync.agent.component import Place, parse_config
from fastsync.agent.errors import ConfigError, UnknownKeysError
from fastsync.agent.interceptors import INTERCEPTORS, joda_parser
from fastsync.agent.properties import Prop, parse_properties
from fastsync.agent.sources.exec import ExecSource, ExecSourceConfig
from fastsync.agent.sources.netcat import char_counts
from fastsync.event import Event, EventBatch


def make(kind: str, **props):
    cls = INTERCEPTORS.lookup(kind)
    place = Place("test.properties", "a1.sources.r1.interceptors.i1",
                  {k.replace("__", "."): Prop(str(v), 1) for k, v in props.items()})
    return cls("i1", parse_config(cls.Config, place))


def local_ms(*args) -> str:
    return str(round(dt.datetime(*args).timestamp() * 1000))


def test_regex_extractor_optional_group_java_syntax_and_millis():
    events = [Event(b"id=42 at 2024-03-01 10:20:30 ok", {"ok": "old"}), Event(b"id=7 at 2024-07-01 00:00:01", {"ok": "old"}),
              Event(b"nothing", {"ok": "old"}), Event(b"id= at x ok", {})]
    b = EventBatch.from_events(events)
    # RE2 runs this one; the group that did not take part leaves no header (and removes the old one)
    ex = make("regex_extractor", regex=r"id=(\d*) at \S+(?: \S+)?( ok)?", serializers="a b",
              serializers__a__name="id", serializers__b__name="ok")
    got = [(e.headers.get("id"), e.headers.get("ok")) for e in ex.intercept(b).events()]
    assert got == [("42", " ok"), ("7", None), (None, "old"), ("", None)]
    # a lookahead (Java syntax RE2 lacks): Python's re, same answers as Java's engine
    look = make("regex_extractor", regex=r"id=(\d+)(?! )", serializers="a", serializers__a__name="id")
    assert [e.headers.get("id") for e in look.intercept(b).events()] == ["4", None, None, None]
    named = make("regex_extractor", regex=r"id=(?<num>\d+)\b", serializers="a", serializers__a__name="id")
    assert [e.headers.get("id") for e in named.intercept(b).events()] == ["42", "7", None, None]
    ms = make("regex_extractor", regex=r"at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", serializers="t",
              serializers__t__name="when", serializers__t__pattern="yyyy-MM-dd HH:mm:ss",
              serializers__t__type="org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer")
    assert [e.headers.get("when") for e in ms.intercept(b).events()] == [
        local_ms(2024, 3, 1, 10, 20, 30), local_ms(2024, 7, 1, 0, 0, 1), None, None]
    with pytest.raises(ConfigError, match=r"serializers\.t\.pattern: required key is missing"):
        make("regex_extractor", regex="(a)", serializers="t", serializers__t__name="x",
             serializers__t__type="org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer")
    with pytest.raises(ConfigError, match="serializer 'com.example.Mine' is not supported"):
        make("regex_extractor", regex="(a)", serializers="t", serializers__t__name="x", serializers__t__type="com.example.Mine")


def test_joda_patterns():
    assert joda_parser("dd/MMM/yyyy:HH:mm:ss Z")("10/Oct/2000:13:55:36 -0700") == "971211336000"
    assert joda_parser("yyyyMMddHHmmssSSS")("20240301102030123") == local_ms(2024, 3, 1, 10, 20, 30, 123000)
    assert joda_parser("EEE, d MMMM yyyy h:mm a")("Fri, 1 March 2024 3:05 PM") == local_ms(2024, 3, 1, 15, 5)
    assert joda_parser("yyyy-MM-dd'T'HH:mm:ssZZ")("2024-03-01T10:20:30+01:00") == "1709284830000"
    assert joda_parser("yyyy-MM-dd")("2024-02-30") is None and joda_parser("yyyy-MM-dd")("2024-03-01x") is None
    with pytest.raises(ValueError, match="letter 'w' is not supported"):
        joda_parser("yyyy ww")


def test_remove_header_from_list_separator():
    b = EventBatch.from_events([Event(b"x", {"a": "1", "b": "2", "c": "3"})])
    assert set(make("remove_header", fromList="a;b", fromListSeparator=";").intercept(b).headers) == {"c"}
    assert set(make("remove_header", fromList="a , c").intercept(b).headers) == {"b"}       # the default \s*,\s*
    assert set(make("remove_header", fromList="a|b", listSeparator=r"\|").intercept(b).headers) == {"c"}


def test_host_use_ip_false_is_the_canonical_name():
    ip = socket.gethostbyname(socket.gethostname())
    assert make("host", useIP="false").host == socket.gethostbyaddr(ip)[0]
    assert make("host").host == ip


def test_netcat_counts_java_chars():
    counts = char_counts("é€😀a".encode())           # 2 + 3 + 4 + 1 bytes; 1 + 1 + 2 + 1 chars
    assert list(counts[[0, 2, 5, 9, 10]]) == [0, 1, 2, 4, 5]
    assert char_counts(b"\xe9\xe9", utf8=False)[-1] == 2


def test_exec_without_shell_splits_on_whitespace_only():
    def argv(**kw):
        place = Place("t.properties", "a1.sources.r1", {k: Prop(v, 1) for k, v in kw.items()})
        return ExecSource("r1", parse_config(ExecSourceConfig, place)).argv()
    assert argv(command="printf  'a\\nb\\n'") == ["printf", "'a\\nb\\n'"]
    assert argv(command="printf 'a b'", shell="/bin/sh -c") == ["/bin/sh", "-c", "printf 'a b'"]


SINKLESS = """\
a1.sources = r1
a1.channels = c1
a1.sinks = k1 k2
a1.sources.r1.type = seq
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
"""


def test_a_listed_sink_with_no_keys_is_left_out_or_refused_when_strict(caplog):
    cfg = parse_agent_config(parse_properties(SINKLESS, "t.properties"), "a1", "t.properties")
    assert list(cfg.sinks) == ["k1"]
    assert "t.properties:3: a1.sinks: sink 'k2' is listed but has no keys: not started, ignored" in caplog.text
    with pytest.raises(UnknownKeysError, match="sink 'k2' is listed but has no keys"):
        parse_agent_config(parse_properties(SINKLESS, "t.properties"), "a1", "t.properties", strict=True)


def test_file_roll_that_cannot_make_its_directory_fails_over(tmp_path, run_agent):
    """As Flume: the agent runs, the sink fails every delivery, its failover group moves on."""
    (tmp_path / "file").write_text("")
    good = tmp_path / "good"
    cfg = {
        "a1.sources": "r1", "a1.channels": "c1", "a1.sinks": "k1 k2", "a1.sinkgroups": "g1",
        "a1.sources.r1.type": "seq", "a1.sources.r1.totalEvents": 50, "a1.sources.r1.channels": "c1",
        "a1.channels.c1.type": "memory",
        "a1.sinks.k1.type": "file_roll", "a1.sinks.k1.channel": "c1", "a1.sinks.k1.sink.directory": tmp_path / "file" / "sub",
        "a1.sinks.k2.type": "file_roll", "a1.sinks.k2.channel": "c1", "a1.sinks.k2.sink.directory": good,
        "a1.sinkgroups.g1.sinks": "k1 k2", "a1.sinkgroups.g1.processor.type": "failover",
        "a1.sinkgroups.g1.processor.priority.k1": 10, "a1.sinkgroups.g1.processor.priority.k2": 5,
    }
    p = run_agent("a1", write_config(tmp_path, cfg), "--exit-when-done", timeout=60)
    assert p.returncode == 0, p.stderr
    assert "cannot create sink.directory" in p.stderr
    assert sorted(int(x) for f in good.iterdir() for x in f.read_text().split()) == list(range(50))


def test_regex_extractor_three_groups_some_empty():
    b = EventBatch.from_events([Event(b"a=1 b= c=3"), Event(b"a=1 c=3"), Event(b"zzz")])
    ex = make("regex_extractor", regex=r"a=(\d*) (?:b=(\d*) )?c=(\d*)", serializers="a b c",
              serializers__a__name="a", serializers__b__name="b", serializers__c__name="c")
    assert [[e.headers.get(k) for k in "abc"] for e in ex.intercept(b).events()] == [
        ["1", "", "3"], ["1", None, "3"], [None, None, None]]


def test_regex_filter_and_search_replace_run_java_syntax_with_re():
    b = EventBatch.from_events([Event(b"ab 12", {"h": "1"}), Event(b"ab 13"), Event(b"xb")])
    keep = make("regex_filter", regex=r"(?<=a)b \d(?!2)")
    assert [e.body for e in keep.intercept(b).events()] == [b"ab 13"]
    drop = make("regex_filter", regex=r"(?<=a)b", excludeEvents="true")
    assert [e.body for e in drop.intercept(b).events()] == [b"xb"]
    sr = make("search_replace", searchPattern=r"(?<=a)(?<x>b)", replaceString=r"[$1${x}\$0]")
    out = sr.intercept(b)
    assert [e.body for e in out.events()] == [b"a[bb$0] 12", b"a[bb$0] 13", b"xb"]
    assert out.events()[0].headers == {"h": "1"}
    with pytest.raises(ConfigError, match=r"regex: not a valid regex"):
        make("regex_filter", regex="(unclosed")


def test_a_regex_only_re2_reads_still_runs_there():
    """\\pL (Java and RE2 have it, Python's re not): RE2 runs it, as before."""
    b = EventBatch.from_events([Event("\u00e9t\u00e9=12".encode()), Event(b"=3")])
    ex = make("regex_extractor", regex=r"(\pL*)=(\d+)", serializers="k v", serializers__k__name="k", serializers__v__name="v")
    assert [(e.headers.get("k"), e.headers.get("v")) for e in ex.intercept(b).events()] == [("\u00e9t\u00e9", "12"), ("", "3")]
    assert [e.body for e in make("regex_filter", regex=r"^\pL").intercept(b).events()] == ["\u00e9t\u00e9=12".encode()]
