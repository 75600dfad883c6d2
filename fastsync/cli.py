"""The `fastsync` command: one entry point, one subcommand per job."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from fastsync import __version__

EXIT_CONFIG = 2


def log():
    """The command's logger (logging, json, faulthandler and the signal helpers are imported
    where used: `fastsync sync` starts ~10 ms sooner without them)."""
    import logging
    return logging.getLogger("fastsync")


class CliError(Exception):
    """A one-line user error: printed as `fastsync: error: ...`, exit code `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def setup_logging(level: str | None) -> None:
    if level is None:       # called from Python (fastsync.transfer.api): logging is the program's to set up
        return
    import logging
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s")


def parse_defines(defines: list[str] | None) -> dict[str, str]:
    out = {}
    for d in defines or []:
        key, sep, value = d.partition("=")
        if not sep:
            raise CliError("-D%s: expected -Dkey=value" % d, EXIT_CONFIG)
        out[key] = value
    return out


def cmd_agent(args) -> int:
    from fastsync.agent import ConfigError, load_agent_config

    defines = parse_defines(args.define)
    if not args.conf_file and not args.zkConnString:
        raise CliError("agent: give the configuration: -f FILE, or -z HOSTS for ZooKeeper's znode BASE/NAME", EXIT_CONFIG)
    if args.conf_file and args.zkConnString and args.ha_group is None:
        raise CliError("agent: -f and -z name two configurations: give one (both only with --ha-group, whose "
                       "ZooKeeper -z is then)", EXIT_CONFIG)
    if args.ha_group is not None:
        _check_ha_flags(args)
    # Flume's -Dflume.root.logger=LEVEL,console and -Dflume.monitoring.type=http -Dflume.monitoring.port=P
    level = defines.get("flume.root.logger", args.log_level).split(",")[0]
    setup_logging(level)
    port = args.metrics_port
    if port is None and defines.get("flume.monitoring.type", "").lower() == "http":
        try:
            port = int(defines.get("flume.monitoring.port", "41414"))
        except ValueError:
            raise CliError("-Dflume.monitoring.port: expected a port number, got %r" % defines["flume.monitoring.port"], EXIT_CONFIG)
    zk = watcher = None
    try:
        if not args.conf_file:       # the configuration is a znode's (fastsync.agent.zkconfig)
            zk, watcher, config = _zk_agent_config(args)
        else:
            config = load_agent_config(args.conf_file, args.name, strict=args.strict)
    except ConfigError as exc:
        # --strict: one line per unknown key
        raise CliError("\nfastsync: error: ".join(map(str, getattr(exc, "problems", [exc]))), EXIT_CONFIG) from None
    if args.validate:
        print("%s: agent %s is valid: sources %s, channels %s, sinks %s" % (
            zk.where if zk else args.conf_file, args.name, " ".join(config.sources) or "-", " ".join(config.channels),
            " ".join(config.sinks) or "-"))
        return 0
    try:
        return _run_agent(args, config, port, watcher)
    finally:
        if zk is not None:
            zk.close()


def _zk_agent_config(args):
    """(ZkConfig, its watcher or None with --no-reload-conf, the AgentConfig) for -z/-p. The
    connection is closed here unless a watcher uses it (the caller closes it then)."""
    from fastsync.agent.zkconfig import ZkConfig, ZkConfigWatcher
    from fastsync.zk import ZkError
    zk = None
    try:
        zk = ZkConfig(args.zkConnString, args.zkBasePath, args.name).connect(args.zk_wait, args.zk_session_timeout)
        text, version = zk.read()
    except ZkError as exc:
        if zk is not None:
            zk.close()
        raise CliError(str(exc)) from None
    try:
        config = zk.parse(text, args.strict)
    except BaseException:
        zk.close()
        raise
    log().info("agent %s: configuration from %s (version %d)%s", args.name, zk.where, version,
             "" if args.no_reload_conf or args.validate else ", watched for changes")
    watcher = None
    if not (args.no_reload_conf or args.validate):
        watcher = ZkConfigWatcher(zk, text, version, args.strict)
    else:
        zk.close()      # read once, as Flume's static ZooKeeper provider
    return zk, watcher, config


def _run_agent(args, config, port, watcher) -> int:
    from fastsync.agent import Agent, ConfigError
    from fastsync.agent.errors import ChannelException
    from fastsync.agent.metrics import MetricsServer

    agent = Agent(config)
    if args.ha_group:       # an HA member starts as a standby: sources only once it leads
        agent.ha, agent.sources_on = _join_ha_group(args), False
    import faulthandler

    from fastsync.signals import stop_on_signals
    stop = stop_on_signals(lambda signum: log().info("received %s, stopping", signal.Signals(signum).name))
    # kill -QUIT prints every thread's stack to stderr and goes on, as a JVM's thread dump
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)
    server = None
    if port is not None:
        try:
            server = MetricsServer(port, agent.metrics if watcher is None else lambda: _merged(agent.metrics(), watcher.metrics()))
        except OSError as exc:
            raise CliError("--metrics-port %d: %s" % (port, exc.strerror)) from None
        server.start()
    try:
        run = agent.run(stop, args.exit_when_done, args.drain_timeout,
                        reload_interval=None if args.no_reload_conf else args.reload_interval, strict=args.strict,
                        watcher=watcher)
    except ConfigError as exc:      # found only when starting, e.g. a sink's table does not exist
        raise CliError(str(exc), EXIT_CONFIG) from None
    except (OSError, ChannelException) as exc:
        raise CliError(str(exc)) from None
    finally:
        if server:
            server.stop()
        if agent.ha is not None:
            agent.ha.close()
    if args.exit_when_done:
        print("agent %s: %d events delivered in %.3f s: %.0f events/s"
              % (args.name, run.delivered, run.seconds, run.delivered / run.seconds if run.seconds else 0.0), flush=True)
    return 0 if run.drained or not args.exit_when_done else 1


def _merged(metrics: dict, more: dict) -> dict:
    """Two /metrics dicts as one; an entry both have (AGENT.<name> of an HA member on a znode)
    gets the keys of both."""
    for key, values in more.items():
        metrics[key] = {**metrics.get(key, {}), **values}
    return metrics


def _check_ha_flags(args) -> None:
    from fastsync.agent.ha import check_group
    from fastsync.zk import ZkError, split_connect
    if not args.zkConnString:
        raise CliError("--ha-group %s: needs -z/--zkConnString, the ZooKeeper the group elects its leader in" % args.ha_group,
                       EXIT_CONFIG)
    problem = check_group(args.ha_group)
    if problem:
        raise CliError("--ha-group %r: %s" % (args.ha_group, problem), EXIT_CONFIG)
    if args.zk_session_timeout <= 0:
        raise CliError("--zk-session-timeout %g: must be more than 0 seconds" % args.zk_session_timeout, EXIT_CONFIG)
    try:
        split_connect(args.zkConnString, "-z")
    except ZkError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None


def _join_ha_group(args):
    """The started HaMember of --ha-group on -z (ZooKeeper unreachable: a one-line error, exit 1)."""
    from fastsync.agent.ha import HaMember
    from fastsync.zk import ZkError, connect, join_path, split_connect
    hosts, chroot = split_connect(args.zkConnString, "-z")
    try:
        client = connect(hosts, "-z", wait=args.zk_wait, session_timeout=args.zk_session_timeout)
    except ZkError as exc:
        raise CliError(str(exc)) from None
    return HaMember(client, join_path(chroot, args.zkBasePath, "ha", args.ha_group), args.name, args.ha_group).start()


def cmd_bench_channel(args) -> int:
    from fastsync.bench import bench_channel, format_channel_result

    try:
        result = bench_channel(args.channel, args.events, args.batch, args.size, args.producers,
                               args.consumers, args.capacity, args.dir, args.fsync_policy)
    except OSError as exc:
        raise CliError("--dir %s: %s" % (args.dir or "(temp dir)", exc)) from None
    import json
    print(json.dumps(result) if args.json else format_channel_result(result))
    return 0


def cmd_bench_agent(args) -> int:
    from fastsync.bench_agent import run

    setup_logging(args.log_level)
    return run(args.conf_file, args.name, args.seconds, args.interval, args.json, args.plot)


def cmd_channel_inspect(args) -> int:
    from fastsync.agent.channels.file import inspect
    from fastsync.agent.channels.wal import CorruptLogError

    data_dirs = args.data_dirs.replace(",", " ").split()
    if not data_dirs:
        raise CliError("--data-dirs: name at least one directory", EXIT_CONFIG)
    try:
        r = inspect(args.checkpoint_dir, data_dirs, args.backup_checkpoint_dir)
    except FileNotFoundError as exc:
        raise CliError("%s: no such directory" % exc.filename, EXIT_CONFIG) from None
    except (CorruptLogError, OSError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        import json
        print(json.dumps(r))
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_checkpoint"])) if r["last_checkpoint"] else "none"
        print("committed events waiting: %d" % r["events"])
        print("segments: %d (%d bytes)" % (r["segments"], r["bytes"]))
        print("last checkpoint: %s%s" % (when, " (%s)" % r["checkpoint"] if r["checkpoint"] else ""))
        print("records checked: %d, corrupt: %d" % (r["records_checked"], len(r["corrupt_records"])))
        for c in r["corrupt_records"]:
            print("  corrupt record: %s at byte %d: %s" % (c["file"], c["offset"], c["reason"]))
        for t in r["torn_tail"]:
            print("  torn tail (uncommitted, cut at the next start): %s at byte %d, %d bytes" % (t["file"], t["offset"], t["bytes"]))
    return 0 if r["ok"] else 1


def cmd_import(args) -> int:
    run_import_args(args)
    return 0


def run_import_args(args) -> dict:
    from fastsync.transfer.connect import ConnectError, build_url, resolve_password
    from fastsync.transfer.importer import ImportError_, ImportJob, run_import

    setup_logging(args.log_level)
    if args.fmt is None:
        args.fmt = "text"            # Sqoop's default, with or without --as-textfile
    text = _text_options(args)
    text.time_zone = _time_zone(args.time_zone)
    if bool(args.table) == bool(args.query):
        raise CliError("give one of --table or --query", EXIT_CONFIG)
    if getattr(args, "sqoop_avro_schema", False) and args.fmt != "avro":
        raise CliError("--sqoop-avro-schema: only with --as-avrodatafile", EXIT_CONFIG)
    if args.query and not args.target_dir and not getattr(args, "kafka_topic", None):
        raise CliError("--query needs --target-dir", EXIT_CONFIG)
    if getattr(args, "kafka_topic", None):
        if args.target_dir or args.warehouse_dir:
            raise CliError("--kafka-topic replaces --target-dir/--warehouse-dir: give one", EXIT_CONFIG)
    elif not args.target_dir:
        if not args.warehouse_dir:
            raise CliError("give --target-dir or --warehouse-dir", EXIT_CONFIG)
        args.target_dir = os.path.join(args.warehouse_dir, args.table)
    _check_cluster_password(args)
    try:
        password = resolve_password(args.password, args.password_file, args.P)
        url = build_url(args.connect, args.username, password)
        if getattr(args, "sqoop_relaxed_isolation", None):
            from fastsync.transfer.sqoopflags import relaxed
            url = relaxed(url)
    except ConnectError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    job = ImportJob(url=url, table=args.table or "query", target_dir=args.target_dir, query=args.query,
                    boundary_query=args.boundary_query, split_strategy=args.split_strategy,
                    columns=[c.strip() for c in args.columns.split(",")] if args.columns else None,
                    where=args.where, split_by=args.split_by, mappers=args.num_mappers, fetch_size=args.fetch_size,
                    fmt=args.fmt, compression=args.compression_codec, compress=args.compress, delete_target_dir=args.delete_target_dir,
                    retries=args.retries, fields_terminated_by=text.fields_terminated_by, text=text, append=args.append,
                    incremental=args.incremental, check_column=args.check_column, last_value=args.last_value,
                    merge_key=args.merge_key, kafka_topic=getattr(args, "kafka_topic", None),
                    kafka_brokers=getattr(args, "kafka_brokers", "localhost:9092"),
                    kafka_key=getattr(args, "kafka_key", None), kafka_format=getattr(args, "kafka_format", "json"),
                    kafka_config=_kafka_config(getattr(args, "kafka_config", None), getattr(args, "kafka_brokers", None)),
                    fast_path=args.fast_path, cluster=args.cluster, password_file=args.password_file,
                    sqoop_avro=getattr(args, "sqoop_avro_schema", False), **_sqoop_import_fields(args))
    if getattr(args, "job_only", False):      # fastsync.read_table: the job, read by the caller
        return job
    try:
        r = run_import(job, progress=getattr(args, "progress", None), before_publish=getattr(args, "before_publish", None))
    except ImportError_ as exc:
        raise CliError(str(exc)) from None
    if getattr(args, "api", False):          # called by fastsync.transfer.api: the figures, no summary line
        return r
    print("imported %d rows from %s into %s (%d splits) in %.3f s: %.0f rows/s"
          % (r["rows"], args.table or "the query", r["target_dir"], r["splits"], r["seconds"], r["rows_per_s"]), flush=True)
    if getattr(args, "validate_counts", False):       # --validate: Sqoop's row counts, table vs output
        _validated("import", _with_engine(url, lambda e: _count_rows(e, args.table)), r["rows"], args)
    if "last_value" in r:
        print("incremental import complete; next time run with: --incremental %s --check-column %s --last-value %s"
              % (args.incremental, args.check_column, r["last_value"]), flush=True)
    return r


def _sqoop_import_fields(args) -> dict:
    """ImportJob's fields set by Sqoop flags (sqoopflags.apply)."""
    return {"split_limit": getattr(args, "split_limit", None),
            "autoreset_to_one_mapper": getattr(args, "autoreset_to_one_mapper", False),
            "hive_delims": getattr(args, "hive_delims", None),
            "allow_text_splitter": getattr(args, "allow_text_splitter", False)}


def _count_rows(engine, table: str) -> int:
    import sqlalchemy as sa

    from fastsync import dbio
    t = dbio.reflect(engine, table)
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()


def _validated(kind: str, source: int, target: int, args) -> None:
    from fastsync.transfer.sqoopflags import SqoopFlagError, validate
    try:
        print("%s validation: %s" % (kind, validate(kind, source, target, args.validation_log_only)), file=sys.stderr)
    except SqoopFlagError as exc:
        raise CliError(str(exc)) from None


def _kafka_config(path: str | None, brokers: str | None) -> dict:
    """--kafka-config: librdkafka producer settings from a properties file (as Kafka's
    --producer.config: security.protocol, sasl.mechanism, sasl.username, sasl.password,
    ssl.*), so no secret is on the command line; checked by librdkafka here, before any split
    runs. Messages never show a password or secret value."""
    if not path:
        return {}
    from fastsync.agent.errors import ConfigError
    from fastsync.agent.properties import parse_properties
    from fastsync.kafkaio import without_secrets
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            conf = {k: p.value.strip() for k, p in parse_properties(f.read(), path).items()}
    except OSError as exc:
        raise CliError("--kafka-config %s: %s" % (path, exc.strerror), EXIT_CONFIG) from None
    except (ConfigError, UnicodeDecodeError) as exc:
        raise CliError("--kafka-config %s" % exc, EXIT_CONFIG) from None
    from confluent_kafka import KafkaException, Producer
    try:
        Producer({**conf, "bootstrap.servers": brokers or "localhost:9092"})   # checks the settings, then is gone
    except KafkaException as exc:
        raise CliError("--kafka-config %s: %s" % (path, without_secrets(exc.args[0].str(), conf)), EXIT_CONFIG) from None
    return conf


def _text_options(args, prefix: str = ""):
    """TextOptions from the text flags (import's, or export's --input-* ones)."""
    from fastsync.transfer.textfile import TextOptions, unescape
    names = ("fields_terminated_by", "lines_terminated_by", "enclosed_by", "optionally_enclosed_by", "escaped_by",
             "null_string", "null_non_string")
    text = TextOptions(*(unescape(getattr(args, prefix + n)) for n in names))
    for n in names[:2]:
        value = getattr(text, n)
        if len(value) != 1:
            raise CliError("--%s: expected one character, got %r" % ((prefix + n).replace("_", "-"), value), EXIT_CONFIG)
    return text


def _time_zone(zone: str | None) -> str:
    """--time-zone (default: the local zone, as Sqoop's JVM), checked here, so every split
    (also a cluster's worker) writes timestamptz values in the client's zone."""
    import zoneinfo

    from fastsync.transfer.textfile import local_zone
    zone = zone or local_zone()
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CliError("--time-zone %s: no such time zone (an IANA name such as UTC or Europe/Paris)" % zone
                       if zone else "--time-zone: empty", EXIT_CONFIG) from None
    return zone


def cmd_export(args) -> int:
    from fastsync.transfer.exporter import ExportError, ExportJob, run_export

    setup_logging(args.log_level)
    text = _text_options(args, "input_")
    _check_cluster_password(args)
    url = _connect_url(args)
    job = ExportJob(url=url, table=args.table, export_dir=args.export_dir,
                    columns=_names(args.columns), mappers=args.num_mappers, text=text,
                    staging_table=args.staging_table, clear_staging_table=args.clear_staging_table,
                    update_key=_names(args.update_key), update_mode=args.update_mode, batch=args.batch,
                    fast_path=args.fast_path, cluster=args.cluster, password_file=args.password_file)
    if args.clear_staging_table and not args.staging_table:
        raise CliError("--clear-staging-table needs --staging-table", EXIT_CONFIG)
    try:
        r = run_export(job, progress=getattr(args, "progress", None))
    except ExportError as exc:
        raise CliError("export into %s failed: %s" % (args.table, exc)) from None
    if getattr(args, "api", False):          # called by fastsync.transfer.api: the figures, no summary line
        return r
    print("exported %d rows from %d files in %s into %s (%d writers) in %.3f s: %.0f rows/s"
          % (r["rows"], r["files"], args.export_dir, args.table, r["writers"], r["seconds"], r["rows_per_s"]), flush=True)
    if getattr(args, "validate_counts", False):       # --validate: Sqoop's row counts, files vs table
        _validated("export", r["rows"], _with_engine(url, lambda e: _count_rows(e, args.table)), args)
    return 0


def _check_cluster_password(args) -> None:
    """--cluster tcp://: a password the workers could get only through the task graph is refused."""
    if not args.cluster:
        return
    from fastsync.transfer.cluster import password_refusal
    from fastsync.transfer.connect import ConnectError, translate_url
    try:
        in_url = translate_url(args.connect).password is not None
    except ConnectError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    problem = password_refusal(args.cluster, args.password, args.password_file, args.P, in_url)
    if problem:
        raise CliError(problem, EXIT_CONFIG)


def cluster_address(text: str) -> str:
    """--cluster's value, checked: tcp://HOST:PORT or local:N."""
    from fastsync.transfer.cluster import parse
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cluster_flag(p, what: str) -> None:
    p.add_argument("--cluster", type=cluster_address, metavar="ADDRESS",
                   help="run %s as tasks on a Dask cluster: tcp://HOST:PORT (a running scheduler; the password only "
                        "from --password-file, read by each worker) or local:N (N worker processes started for the "
                        "run)" % what)


def _input_text_flags(p, output: bool = False) -> None:
    """Export's --input-* text flags; with `output`, also import's text flags for writing
    (unset: as read)."""
    for flag, default, what in (("fields-terminated-by", ",", "field separator"), ("lines-terminated-by", "\\n", "line end"),
                                ("enclosed-by", "", "character around fields"),
                                ("optionally-enclosed-by", "", "character around some fields"),
                                ("escaped-by", "", "escape character"), ("null-string", "null", "NULL in a string column"),
                                ("null-non-string", "null", "NULL in other columns")):
        p.add_argument("--input-" + flag, default=default, help="text files: " + what)
        if output:
            p.add_argument("--" + flag, help="text output: %s (default: as --input-%s)" % (what, flag))


def cmd_merge(args) -> int:
    from fastsync.transfer.merger import MergeError, MergeJob, run_merge
    from fastsync.transfer.textfile import TextOptions

    setup_logging(args.log_level)
    for name in TextOptions.__dataclass_fields__:            # unset output text flags: as read
        if hasattr(args, "input_" + name) and getattr(args, name) is None:     # (time_zone has no flag here)
            setattr(args, name, getattr(args, "input_" + name))
    job = MergeJob(new_data=args.new_data, onto=args.onto, target_dir=args.target_dir, merge_key=args.merge_key,
                   columns=_names(args.columns), text=_text_options(args, "input_"), out_text=_text_options(args),
                   delete_target_dir=args.delete_target_dir)
    try:
        r = run_merge(job, progress=getattr(args, "progress", None))
    except MergeError as exc:
        raise CliError(str(exc)) from None
    if getattr(args, "api", False):          # called by fastsync.transfer.api: the figures, no summary line
        return r
    print("merged %d rows (%d replaced, %d added) from %s onto %s into %s in %.3f s: %.0f rows/s"
          % (r["rows"], r["replaced"], r["added"], args.new_data, args.onto, r["target_dir"], r["seconds"],
             r["rows_per_s"]), flush=True)
    return 0


def _names(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def cmd_job(args) -> int:
    import shlex

    from fastsync.redact import masked_argv
    from fastsync.transfer.jobs import JobError

    store = None
    try:
        store = _metastore(args.meta_connect)
        if args.create:
            rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
            if not rest or rest[0] != "import":
                raise CliError("job --create %s: give the tool after --, e.g. -- import --connect ... --table ..." % args.create,
                               EXIT_CONFIG)
            parse_args(rest)          # refuse a job that could never run
            store.create(args.create, rest)
            print("saved job %s" % args.create)
        elif args.list:
            for name in store.names():
                print(name)
        elif args.show:      # masked: a job saved by an older version may hold a password
            print(shlex.join(["fastsync"] + masked_argv(store.get(args.show))))
        elif args.delete:
            store.delete(args.delete)
        elif args.exec:
            with store.running(args.exec, wait=args.wait):    # zk://: the job's lock, held to the end
                argv = store.get(args.exec)
                extra = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
                run_args = parse_args(argv + extra)
                run_args.before_publish = lambda: store.check_held(args.exec)
                r = run_import_args(run_args)
                if "last_value" in r and r["last_value"] is not None:
                    store.set_last_value(args.exec, r["last_value"])    # only now that the output is published
    except JobError as exc:
        raise CliError(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    return 0


def _metastore(url: str | None):
    import sqlalchemy as sa

    from fastsync.redact import hide_password
    from fastsync.transfer.jobs import Metastore
    if url and url.startswith("zk://"):
        from fastsync.transfer.zkjobs import ZkMetastore
        return ZkMetastore(url)
    try:
        return Metastore(url)
    except (sa.exc.SQLAlchemyError, ValueError, OSError) as exc:   # ValueError: a URL that is not one
        msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError("--meta-connect %s: %s" % (hide_password(url or "(default)"), hide_password(msg))) from None


def cmd_import_all_tables(args) -> int:
    import copy

    import sqlalchemy as sa
    if not args.warehouse_dir:
        raise CliError("import-all-tables needs --warehouse-dir", EXIT_CONFIG)
    url = _connect_url(args)
    excluded = {t.strip() for t in args.exclude_tables.split(",") if t.strip()}

    def tables(engine):
        insp = sa.inspect(engine)
        return [(t, len(insp.get_pk_constraint(t).get("constrained_columns") or [])) for t in insp.get_table_names()]
    todo = [(t, pk) for t, pk in _with_engine(url, tables) if t not in excluded]
    # checked for every table before any is imported
    bad = [t for t, pk in todo if pk != 1 and args.num_mappers > 1 and not args.split_by]
    if bad and not args.autoreset_to_one_mapper:
        raise CliError("table %s has no single-column primary key: use --autoreset-to-one-mapper or -m 1" % ", ".join(bad))
    for name, _ in todo:
        one = copy.copy(args)
        one.table, one.target_dir = name, None
        if name in bad:
            one.num_mappers = 1
        run_import_args(one)
    return 0


def _connect_url(args):
    from fastsync.transfer.connect import ConnectError, build_url, resolve_password
    try:
        return build_url(args.connect, args.username, resolve_password(args.password, args.password_file, args.P))
    except ConnectError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None


def _with_engine(url, fn):
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    try:
        return fn(engine)
    except sa.exc.SQLAlchemyError as exc:
        msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise CliError("%s: %s" % (url.render_as_string(hide_password=True), msg)) from None
    finally:
        engine.dispose()


def cmd_list_tables(args) -> int:
    for name in table_names(args):
        print(name)
    return 0


def table_names(args) -> list[str]:
    import sqlalchemy as sa
    return _with_engine(_connect_url(args), lambda e: sa.inspect(e).get_table_names())


def cmd_list_databases(args) -> int:
    import sqlalchemy as sa
    url = _connect_url(args)
    queries = {"postgresql": "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
               "mysql": "SHOW DATABASES", "mariadb": "SHOW DATABASES", "sqlite": "SELECT name FROM pragma_database_list"}
    q = queries.get(url.get_backend_name())
    if q is None:
        raise CliError("list-databases: not supported for %s" % url.get_backend_name())

    def run(engine):
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(q))]
    for name in _with_engine(url, run):
        print(name)
    return 0


def cmd_eval(args) -> int:
    cols, rows = eval_query(args)
    if cols is None:
        print("%d row(s) affected" % rows)
        return 0
    cells = [[("NULL" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(line)
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print(line)
    for r in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |")
    print(line)
    return 0


def eval_query(args) -> tuple:
    """(column names, rows) of --query; (None, rows affected) for a statement without rows."""
    import sqlalchemy as sa

    def run(engine):
        with engine.begin() as conn:
            res = conn.execute(sa.text(args.query))
            if not res.returns_rows:
                return None, res.rowcount
            return list(res.keys()), [list(r) for r in res.fetchall()]
    return _with_engine(_connect_url(args), run)


def _connection_flags(p) -> None:
    p.add_argument("--connect", required=True, help="SQLAlchemy URL, or jdbc:postgresql|mysql|mariadb://… or jdbc:sqlite:PATH")
    p.add_argument("--username", help="user name (overrides the URL's)")
    p.add_argument("--password", help="visible to other users in the process list: prefer --password-file, -P or FASTSYNC_PASSWORD")
    p.add_argument("--password-file", help="file holding the password")
    p.add_argument("-P", action="store_true", help="prompt for the password")


def _import_flags(im, all_tables: bool = False) -> None:
    """The flags of import and import-all-tables."""
    _connection_flags(im)
    if not all_tables:
        im.add_argument("--table", help="the table to import ([schema.]name)")
    if not all_tables:
        im.add_argument("-e", "--query", help="free-form SELECT with $CONDITIONS instead of --table (needs --split-by with -m > 1)")
    if not all_tables:
        im.add_argument("--boundary-query", help="SELECT returning the min and max of --split-by (with --query)")
    im.add_argument("--columns", help="comma-separated columns to import")
    im.add_argument("--where", help="SQL condition rows must meet")
    im.add_argument("--split-by", help="column the table is split on (default: the primary key)")
    im.add_argument("-m", "--num-mappers", type=positive, default=4, help="parallel splits (processes)")
    im.add_argument("--split-strategy", choices=["minmax", "quantile"], default="minmax",
                    help="minmax: equal key ranges (Sqoop); quantile: equal row counts from the key's quantiles, any orderable key")
    im.add_argument("--fetch-size", type=positive, default=10000, help="rows per read and per record batch")
    im.add_argument("--target-dir", help="output directory, a path or URL: file://, hdfs://, s3://, ... (published atomically, "
                                         "with _SUCCESS)")
    im.add_argument("--warehouse-dir", help="parent directory (a path or URL); the output goes to WAREHOUSE/TABLE")
    im.add_argument("--delete-target-dir", action="store_true",
                    help="replace an existing target directory (only once the import succeeded)")
    im.add_argument("--as-parquetfile", dest="fmt", action="store_const", const="parquet", help="write Parquet files")
    im.add_argument("--as-textfile", action="store_true",
                    help="Sqoop's delimited text, the default (no header; values written as Sqoop writes them)")
    im.add_argument("--as-avrodatafile", dest="fmt", action="store_const", const="avro", help="write Avro data files")
    im.add_argument("--sqoop-avro-schema", action="store_true",
                    help="with --as-avrodatafile: Sqoop 1.4.7's Avro schema and values (int/long/float kept, numerics as "
                         "strings, dates and timestamps as milliseconds in the local zone / --time-zone, sqlType attributes)")
    im.add_argument("--format", dest="fmt", choices=["parquet", "csv", "text", "arrow", "jsonl", "avro"],
                    help="csv: standard CSV with a header; text: as --as-textfile")
    im.add_argument("-z", "--compress", action="store_true",
                    help="compress text, csv and jsonl files (gzip unless --compression-codec says)")
    im.add_argument("--compression-codec", choices=["snappy", "zstd", "gzip", "lz4", "none"],
                    help="Parquet: snappy by default; Avro: snappy, gzip (deflate) or none; "
                         "text, csv, jsonl: gzip, zstd or lz4 (implies -z)")
    im.add_argument("--fields-terminated-by", default=",", help="field separator (text and csv; \\t etc. understood)")
    im.add_argument("--lines-terminated-by", default="\\n", help="text: line end")
    im.add_argument("--enclosed-by", default="", help="text: character around every field")
    im.add_argument("--optionally-enclosed-by", default="", help="text: character around fields that need it")
    im.add_argument("--escaped-by", default="", help="text: escape character")
    im.add_argument("--null-string", default="null", help="text: NULL in a string column")
    im.add_argument("--null-non-string", default="null", help="text: NULL in other columns")
    im.add_argument("--time-zone", help="text: the zone timestamp-with-time-zone values are written in (default: the "
                                        "local zone, TZ, as Sqoop; UTC for UTC)")
    im.add_argument("--retries", type=int, default=1, help="times a failed split is retried alone")
    im.add_argument("--append", action="store_true", help="add part files to an existing --target-dir")
    im.add_argument("--incremental", choices=["append", "lastmodified"],
                    help="only rows whose --check-column exceeds --last-value; append adds them as new parts, "
                         "lastmodified merges them (--merge-key) or adds them (--append)")
    im.add_argument("--check-column", help="column compared with --last-value")
    im.add_argument("--merge-key", help="lastmodified: imported rows replace the target's rows with the same key")
    im.add_argument("--last-value", help="the largest --check-column value already imported")
    if not all_tables:
        im.add_argument("--kafka-topic", help="send the rows to this Kafka topic instead of files")
        im.add_argument("--kafka-brokers", default="localhost:9092", help="bootstrap servers for --kafka-topic")
        im.add_argument("--kafka-key", help="column whose value keys each message")
        im.add_argument("--kafka-config", metavar="FILE",
                        help="librdkafka producer settings for --kafka-topic, key=value lines (security.protocol, "
                             "sasl.mechanism, sasl.username, sasl.password, ssl.*)")
        im.add_argument("--kafka-format", choices=["json", "avro", "arrow"], default="json",
                        help="json or avro: one message per row; arrow: one Arrow IPC record batch per message")
    im.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                    help="read every table through SQLAlchemy's generic path, also where a native reader exists "
                         "(PostgreSQL binary COPY, MySQL/MariaDB text rows)")
    _cluster_flag(im, "the splits")
    im.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number, got %r" % text) from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %d" % v)
    return v


def _agent_flags(a) -> None:
    a.add_argument("-n", "--name", required=True, help="agent name: the prefix of its keys in the file")
    a.add_argument("-f", "--conf-file", help="Flume properties file")
    a.add_argument("-z", "--zkConnString", metavar="HOSTS",
                   help="HOST:PORT[,HOST:PORT...]: without -f, read the configuration from ZooKeeper (znode BASE/NAME) "
                        "and watch it, as flume-ng's -z; the ensemble of --ha-group too")
    _zk_flags(a, with_connect=False)
    a.add_argument("-c", "--conf", help="accepted for flume-ng compatibility; unused")
    a.add_argument("-D", dest="define", action="append", metavar="KEY=VALUE",
                   help="flume-ng system properties: flume.monitoring.type/port, flume.root.logger")
    a.add_argument("--reload-interval", type=float, default=30.0,
                   help="seconds between checks of the configuration file for changes (Flume: 30)")
    a.add_argument("--no-reload-conf", action="store_true", help="never reload the configuration file (as flume-ng's)")
    a.add_argument("--validate", action="store_true",
                   help="check the configuration (every component's keys, types and bindings) and exit without starting")
    a.add_argument("--strict", action="store_true",
                   help="a key the agent does not use (a misspelling, a component listed nowhere) is an error (exit 2), not a warning")
    a.add_argument("--exit-when-done", action="store_true",
                   help="exit once every finite source is exhausted and every channel is drained")
    a.add_argument("--metrics-port", type=int, help="serve Flume's JSON metrics at http://127.0.0.1:PORT/metrics")
    a.add_argument("--drain-timeout", type=float, default=30.0, help="seconds sinks may drain channels at shutdown")
    a.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    # active/standby (fastsync.agent.ha), on the ZooKeeper of -z
    a.add_argument("--ha-group", metavar="NAME", help="active/standby: the agents of group NAME (needs -z) elect a leader "
                   "under <base>/ha/NAME; only the leader runs its sources, every agent its channels and sinks")
    a.set_defaults(func=cmd_agent)


def _zk_flags(p, with_connect: bool = True) -> None:
    """ZooKeeper's flags of `agent -z` and of `zk ...`: -z (unless the caller adds it), -p, the waits."""
    if with_connect:
        p.add_argument("-z", "--zkConnString", required=True, metavar="HOSTS",
                       help="the ZooKeeper ensemble, HOST:PORT[,HOST:PORT...] (a /chroot may follow the last port)")
    p.add_argument("-p", "--zkBasePath", default="/flume", metavar="BASE",
                   help="the znode under which each agent's configuration is BASE/NAME (Flume's default /flume)")
    p.add_argument("--zk-wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for ZooKeeper to answer at start before giving up")
    p.add_argument("--zk-session-timeout", type=float, default=6.0, metavar="SECONDS",
                   help="the ZooKeeper session timeout asked for (default 6; the server bounds it to 2-20 ticks): "
                        "a killed --ha-group leader is replaced after about this long")


def cmd_zk(args) -> int:
    from fastsync.agent import ConfigError
    from fastsync.agent.config import agent_config_from_text, read_config_file
    from fastsync.agent.zkconfig import ZkConfig
    from fastsync.zk import ZkError

    setup_logging(args.log_level)
    if args.zk == "put-config":
        try:       # --validate's checks first, on the text uploaded: an invalid file never reaches the znode
            text = read_config_file(args.conf_file)
            agent_config_from_text(text, args.conf_file, args.name, strict=args.strict)
        except ConfigError as exc:
            raise CliError("\nfastsync: error: ".join(map(str, getattr(exc, "problems", [exc]))), EXIT_CONFIG) from None
    zk = None
    try:
        zk = ZkConfig(args.zkConnString, args.zkBasePath, args.name).connect(args.zk_wait, args.zk_session_timeout)
        if args.zk == "put-config":
            print("%s: agent %s uploaded to %s (version %d)" % (args.conf_file, args.name, zk.where, zk.put(text)))
        else:
            sys.stdout.write(zk.read()[0])
    except ZkError as exc:
        raise CliError(str(exc)) from None
    finally:
        if zk is not None:
            zk.close()
    return 0


def _zk_command_flags(z) -> None:
    zsub = z.add_subparsers(dest="zk", required=True)
    put = zsub.add_parser("put-config", help="validate an agent's properties file and upload it to BASE/NAME")
    get = zsub.add_parser("get-config", help="print the properties text of BASE/NAME")
    for p in (put, get):
        p.add_argument("-n", "--name", required=True, help="agent name: its znode is BASE/NAME")
        _zk_flags(p)
        p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")
        p.set_defaults(func=cmd_zk)
    put.add_argument("-f", "--conf-file", required=True, help="the Flume properties file uploaded")
    put.add_argument("--strict", action="store_true",
                     help="a key the agent does not use is an error, as agent --strict --validate")


def _bench_flags(b) -> None:
    bsub = b.add_subparsers(dest="bench", required=True)
    c = bsub.add_parser("channel", help="producer/consumer throughput of a channel")
    c.add_argument("--channel", default="memory", choices=["memory", "file"], help="the channel measured")
    c.add_argument("--events", type=positive, default=10_000_000, help="events put through the channel")
    c.add_argument("--batch", type=positive, default=1000, help="events per transaction")
    c.add_argument("--size", type=positive, default=100, help="body bytes per event")
    c.add_argument("--producers", type=positive, default=1, help="threads putting events")
    c.add_argument("--consumers", type=positive, default=1, help="threads taking events")
    c.add_argument("--capacity", type=positive, help="channel capacity in events (default: 100 batches)")
    c.add_argument("--dir", help="file channel: where its checkpoint and data directories go (default: the temp dir)")
    c.add_argument("--fsync-policy", default="commit", choices=["commit", "interval"], help="file channel: fsyncPolicy")
    c.add_argument("--json", action="store_true", help="one JSON object on stdout")
    c.set_defaults(func=cmd_bench_channel)
    ba = bsub.add_parser("agent", help="run an agent, sample its counters: events/s and MB/s per source and sink, channel fill")
    ba.add_argument("-n", "--name", required=True, help="agent name: the prefix of its keys in the file")
    ba.add_argument("-f", "--conf-file", required=True, help="Flume properties file")
    ba.add_argument("--seconds", type=float, default=10.0,
                    help="run this long at most (it ends earlier once finite sources are exhausted and channels drained)")
    ba.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    ba.add_argument("--json", action="store_true", help="the summary and the samples as one JSON object on stdout")
    ba.add_argument("--plot", metavar="OUT.png", help="draw events/s and channel fill over time into this PNG (needs matplotlib)")
    ba.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")
    ba.set_defaults(func=cmd_bench_agent)


def _database_flags(fn):
    def flags(lp) -> None:
        _connection_flags(lp)
        if fn is cmd_eval:
            lp.add_argument("-e", "--query", required=True, help="the SQL statement")
        lp.set_defaults(func=fn)
    return flags


def _import_command_flags(im) -> None:
    _import_flags(im)
    im.set_defaults(func=cmd_import)


def _export_flags(ex) -> None:
    _connection_flags(ex)
    ex.add_argument("--table", required=True, help="the target table ([schema.]name); it must exist")
    ex.add_argument("--export-dir", required=True, help="directory of part files, a path or URL (file://, hdfs://, s3://, ...): "
                                                        ".parquet, .arrow, .csv, .txt, .jsonl, .avro "
                                                        "(text, csv and jsonl also .gz, .zst, .lz4)")
    ex.add_argument("--columns", help="comma-separated columns to export (text files: their order in the file)")
    ex.add_argument("-m", "--num-mappers", type=positive, default=4, help="parallel writers into the staging table")
    ex.add_argument("--staging-table", help="load here first (default: a copy of the table's columns, dropped afterwards)")
    ex.add_argument("--clear-staging-table", action="store_true", help="empty --staging-table before loading")
    ex.add_argument("--update-key", help="comma-separated key columns: update rows with these keys instead of inserting")
    ex.add_argument("--update-mode", choices=["updateonly", "allowinsert"], default="updateonly",
                    help="updateonly: only rows whose key exists; allowinsert: upsert")
    ex.add_argument("--batch", action="store_true", help="load through the driver's executemany, not COPY / LOAD DATA")
    ex.add_argument("--no-fast-path", dest="fast_path", action="store_false", help="same as --batch")
    _cluster_flag(ex, "the part files' loads")
    _input_text_flags(ex)
    ex.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")
    ex.set_defaults(func=cmd_export)


def _merge_flags(mg) -> None:
    for flag, what in (("--new-data", "directory of the newer part files (a path or URL)"),
                       ("--onto", "directory of the older part files (a path or URL)"),
                       ("--target-dir", "output directory, a path or URL (must not exist; published atomically, with _SUCCESS)"),
                       ("--merge-key", "column whose values identify a row")):
        mg.add_argument(flag, required=True, help=what)
    mg.add_argument("--delete-target-dir", action="store_true", help="replace an existing --target-dir (only once the merge succeeded)")
    mg.add_argument("--columns", help="Sqoop text files: the comma-separated field names, in order")
    _input_text_flags(mg, output=True)
    mg.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")
    mg.set_defaults(func=cmd_merge)


def _import_all_flags(ia) -> None:
    _import_flags(ia, all_tables=True)
    ia.add_argument("--exclude-tables", default="", help="comma-separated tables to skip")
    ia.add_argument("--autoreset-to-one-mapper", action="store_true",
                    help="import tables without a single-column primary key with -m 1 instead of failing")
    ia.set_defaults(func=cmd_import_all_tables, table=None, query=None, boundary_query=None)


def _job_flags(jb) -> None:
    act = jb.add_mutually_exclusive_group(required=True)
    act.add_argument("--create", metavar="NAME", help="save the command after -- as NAME")
    act.add_argument("--exec", metavar="NAME", help="run NAME (arguments after -- are added)")
    act.add_argument("--list", action="store_true", help="list the saved jobs")
    act.add_argument("--show", metavar="NAME", help="print the command NAME runs")
    act.add_argument("--delete", metavar="NAME", help="delete the job NAME")
    jb.add_argument("--meta-connect", help="metastore URL (default: sqlite:///~/.fastsync/metastore.db), or "
                                           "zk://host:port[,host:port...]/path for a shared one in ZooKeeper")
    jb.add_argument("--wait", action="store_true",
                    help="--exec on a zk:// metastore: wait while another run holds the job (default: fail at once)")
    jb.add_argument("rest", nargs=argparse.REMAINDER, help="-- import ...")
    jb.set_defaults(func=cmd_job)


def _channel_flags(ch) -> None:
    chsub = ch.add_subparsers(dest="channel_command", required=True)
    i = chsub.add_parser("inspect", help="a file channel's committed events, segments and checkpoint; "
                                         "checks every record's CRC (exit 1 if any is corrupt)")
    i.add_argument("--checkpoint-dir", required=True, help="the channel's checkpointDir")
    i.add_argument("--data-dirs", required=True, help="the channel's dataDirs, comma-separated")
    i.add_argument("--backup-checkpoint-dir", help="the channel's backupCheckpointDir, if it uses dual checkpoints")
    i.add_argument("--json", action="store_true", help="one JSON object on stdout")
    i.set_defaults(func=cmd_channel_inspect)


def _sync_flags(p) -> None:
    from fastsync.sync.command import add_flags
    add_flags(p)


def cmd_avro_client(args) -> int:
    """flume-ng avro-client: the lines of a file (or stdin) as events to an avro source, with
    the headers of a properties file, `batch-size` lines per call."""
    from fastsync.agent.properties import parse_properties
    from fastsync.client import ClientConfigError, EventDeliveryError, RpcClient
    from fastsync.event import EventBatch

    def read_props(path: str, flag: str) -> dict[str, str]:
        try:
            with open(path, encoding="utf-8") as f:
                return {k: p.value for k, p in parse_properties(f.read(), path).items()}
        except OSError as exc:
            raise CliError("%s %s: %s" % (flag, path, exc.strerror or exc), EXIT_CONFIG) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError("%s %s: %s" % (flag, path, exc), EXIT_CONFIG) from None

    if args.rpcProps:
        props = read_props(args.rpcProps, "--rpcProps")
    elif args.host and args.port:
        props = {"hosts": "h1", "hosts.h1": "%s:%d" % (args.host, args.port)}
    else:
        raise CliError("give --host and --port, or --rpcProps", EXIT_CONFIG)
    headers = read_props(args.headerFile, "--headerFile") if args.headerFile else {}
    try:
        client = RpcClient.from_properties(props)
    except ClientConfigError as exc:
        raise CliError(("--rpcProps %s: " % args.rpcProps if args.rpcProps else "") + str(exc), EXIT_CONFIG) from None
    try:
        src = open(args.filename, "rb") if args.filename else sys.stdin.buffer
    except OSError as exc:
        raise CliError("--filename %s: %s" % (args.filename, exc.strerror or exc), EXIT_CONFIG) from None
    sent = 0
    with client, src:
        lines: list[bytes] = []
        for line in src:
            # a line without its end (\n or \r\n), as Flume's line reader gives it
            lines.append(line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line)
            if len(lines) == client.batch_size:
                try:
                    client.send(EventBatch.from_bodies(lines, headers))
                except EventDeliveryError as exc:
                    raise CliError("%d events sent, then: %s" % (sent, exc)) from None
                sent += len(lines)
                lines = []
        if lines:
            try:
                client.send(EventBatch.from_bodies(lines, headers))
            except EventDeliveryError as exc:
                raise CliError("%d events sent, then: %s" % (sent, exc)) from None
            sent += len(lines)
    print("fastsync avro-client: %d events sent" % sent, file=sys.stderr)
    return 0


def _avro_client_flags(a) -> None:
    a.add_argument("-H", "--host", help="host of the avro source")
    a.add_argument("-p", "--port", type=int, help="port of the avro source")
    a.add_argument("-F", "--filename", help="file whose lines are sent as events (default: stdin)")
    a.add_argument("-R", "--headerFile", help="properties file of headers every event carries (key=value lines)")
    a.add_argument("-P", "--rpcProps", help="client properties file (hosts, client.type, batch-size, ssl, ...); "
                   "instead of --host/--port")
    a.set_defaults(func=cmd_avro_client)


COMMANDS = (    # (name, help, adds its flags), in the order of --help
    ("agent", "run an agent from a Flume properties file or a znode (as flume-ng agent)", _agent_flags),
    ("bench", "benchmarks against a same-run baseline", _bench_flags),
    ("list-tables", "the tables of a database", _database_flags(cmd_list_tables)),
    ("list-databases", "the databases of a server", _database_flags(cmd_list_databases)),
    ("eval", "run one SQL statement and print its result", _database_flags(cmd_eval)),
    ("import", "import a table into files: Sqoop's text (default), Parquet, Avro, CSV, ... (Sqoop's flags)", _import_command_flags),
    ("export", "export part files (as import writes them) into a table, all or nothing (Sqoop's flags)", _export_flags),
    ("merge", "merge --new-data onto --onto (two import outputs) into --target-dir on --merge-key (Sqoop's merge)", _merge_flags),
    ("import-all-tables", "import every table of a database into --warehouse-dir/TABLE", _import_all_flags),
    ("job", "saved jobs: create, list, show, delete, exec (Sqoop's job tool)", _job_flags),
    ("channel", "tools for durable channels", _channel_flags),
    ("avro-client", "send the lines of a file or stdin to an avro source (as flume-ng avro-client)", _avro_client_flags),
    ("zk", "agent configurations in ZooKeeper: put-config, get-config (as for agent -z)", _zk_command_flags),
    ("sync", "copy a tree to a local path or filesystem URL, only what changed (rsync's everyday flags)", _sync_flags),
)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but its help formatter is given the terminal's width: argparse
    would ask shutil, whose import (with bz2 and lzma) costs an agent ~0.5 MB and some
    milliseconds of start-up, at every add_argument, for help it never prints."""

    def _get_formatter(self):
        return self.formatter_class(prog=self.prog, width=_terminal_width())


def _terminal_width() -> int:
    """What argparse's help formatter takes by default: shutil.get_terminal_size()'s columns
    ($COLUMNS, else the terminal's, else 80), less 2."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


def build_parser(argv: list[str] | None = None, parser_class: type[argparse.ArgumentParser] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Given argv, only the subcommand it names (its first word
    not starting with '-') gets its flags; the others are listed, for --help and errors,
    without theirs: an agent's start-up does not build the ~150 flags of the Sqoop half.
    `parser_class` (a subclass of _Parser) is used for it and every subcommand's parser."""
    p = (parser_class or _Parser)(prog="fastsync", description="Flume-style agents and Sqoop-style transfers, fast.")
    p.add_argument("--version", action="version", version="fastsync " + __version__)
    sub = p.add_subparsers(dest="command", required=True)
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, helptext, flags in COMMANDS:
        cp = sub.add_parser(name, help=helptext)
        if named is None or named == name:
            flags(cp)
            if name in ("import", "import-all-tables", "export", "merge"):
                from fastsync.transfer import sqoopflags
                sqoopflags.add_flags(cp, name)      # the rest of Sqoop's flags: honoured, noted or refused
    return p


SQOOP_TOOLS = ("import", "import-all-tables", "export", "merge")     # sqoopflags.TOOLS, without importing it


def parse_args(argv: list[str]):
    """argv parsed, with Sqoop's launcher conventions (--options-file, Hadoop's generic options
    after the tool name) and Sqoop's flags applied (fastsync.transfer.sqoopflags)."""
    if not any(a in SQOOP_TOOLS or a == "--options-file" for a in argv):
        return build_parser(argv).parse_args(argv)      # (sync's start-up does not import sqoopflags)
    from fastsync.transfer import sqoopflags
    try:
        argv, hadoop = sqoopflags.preprocess(argv)
        args = build_parser(argv).parse_args(argv)
        sqoopflags.apply(args, argv, hadoop)
    except sqoopflags.SqoopFlagError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    return args


def hide_password_from_process_title(argv: list[str]) -> None:
    """A password on the command line is visible in ps and /proc/PID/cmdline: the process
    title (which the split processes inherit) is rewritten with *** in its place."""
    from fastsync.redact import masked_argv
    masked = masked_argv(argv)
    if masked != argv:
        import setproctitle
        setproctitle.setproctitle(" ".join([os.path.basename(sys.executable), "-m", "fastsync"] + masked))


def main(argv: list[str] | None = None) -> int:
    program = argv is None       # the command itself, not a caller in the same process
    if argv is None:
        argv = sys.argv[1:]
        hide_password_from_process_title(argv)
    args = None
    try:
        args = parse_args(argv)
        code = args.func(args)
    except CliError as exc:
        print("fastsync: error: %s" % exc, file=sys.stderr)
        code = exc.code
    if program and args is not None and args.command == "sync":
        _exit_now(code)
    if program and args is not None and args.command == "agent" and "pyarrow.flight" in sys.modules:
        _exit_after_flight(code)
    return code


def _exit_after_flight(code: int) -> None:
    """An agent that used Arrow Flight, stopped: the exit functions run (logging's flush
    among them), then the process ends without the interpreter's teardown, in which gRPC's
    C++ objects inside pyarrow.flight can be destroyed while a thread of theirs is still
    joinable (std::terminate: the agent exited with SIGABRT after a clean stop, once in CI)."""
    import atexit
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def _exit_now(code: int) -> None:
    """Ends the process without the interpreter's teardown (freeing every module and object:
    ~10 ms of a 70 ms re-sync of 10 000 unchanged files), when nothing is left to run at exit:
    output flushed, no atexit callback (pyarrow's S3 finalizer, logging, a caller's), no other
    thread."""
    import atexit
    import threading
    pending = getattr(atexit, "_ncallbacks", None)
    if pending is None or pending() or threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
