"""`halb nginx`: nginx's command line (-t -T -c -p -g -e -q -v -V -s), exit codes and wording."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

from halb import __version__
from halb.config.errors import ConfigError
from halb.config.model import ErrorLog, NginxConfig
from halb.l7.log import ErrorLogger, LogFileError, open_log_files
from halb.l7.response import SERVER_VERSION

NAME = "halb"

HELP = f"""{NAME} version: {SERVER_VERSION}
Usage: {NAME} nginx [-?hvVtTq] [-s signal] [-p prefix]
             [-e filename] [-c filename] [-g directives]

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: the current directory)
  -e filename   : set error log file (default: stderr)
  -c filename   : set configuration file (default: conf/nginx.conf)
  -g directives : set global directives out of configuration file
"""

SIGNALS = {"stop": signal.SIGTERM, "quit": signal.SIGQUIT, "reopen": signal.SIGUSR1,
           "reload": signal.SIGHUP}


@dataclass
class Options:
    help: bool = False
    version: bool = False
    version_full: bool = False
    test: bool = False
    dump: bool = False
    quiet: bool = False
    signal: str | None = None
    prefix: str | None = None
    error_log: str | None = None
    conf: str | None = None
    directives: str = ""


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> Options:
    """ngx_get_options: single-letter flags, combinable; -c/-p/-e/-g/-s take a value, attached
    or as the next argument."""
    o = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f'invalid option: "{arg}"')
        j = 1
        while j < len(arg):
            ch = arg[j]
            j += 1
            if ch in "?h":
                o.help = True
            elif ch == "v":
                o.version = True
            elif ch == "V":
                o.version = o.version_full = True
            elif ch == "t":
                o.test = True
            elif ch == "T":
                o.test = o.dump = True
            elif ch == "q":
                o.quiet = True
            elif ch in "cpegs":
                if j < len(arg):
                    value = arg[j:]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    what = {"c": "file name", "p": "prefix", "e": "file name",
                            "g": "directives", "s": "parameter"}[ch]
                    raise UsageError(f'option "-{ch}" requires {what}')
                if ch == "c":
                    o.conf = value
                elif ch == "p":
                    o.prefix = value
                elif ch == "e":
                    o.error_log = value
                elif ch == "g":
                    o.directives = value
                else:
                    if value not in SIGNALS:
                        raise UsageError(f'invalid option: "-s {value}"')
                    o.signal = value
                break
            else:
                raise UsageError(f'invalid option: "{arg[j - 1:]}"')
        i += 1
    return o


def _say(message: str) -> None:
    sys.stderr.write(f"{NAME}: {message}\n")
    sys.stderr.flush()


def _paths(o: Options) -> tuple[str, str]:
    prefix = os.path.abspath(o.prefix or os.getcwd())
    conf = o.conf or "conf/nginx.conf"
    if not os.path.isabs(conf):
        conf = os.path.join(prefix, conf)
    return prefix + os.sep, os.path.normpath(conf)


def load(o: Options) -> tuple[NginxConfig, list[ConfigError]]:
    from halb.config import nginx as nginx_config
    from halb.runtime.resolver import install

    install()
    prefix, conf = _paths(o)
    loaded = nginx_config.load(conf, prefix, global_directives=o.directives)
    from halb.l7 import tls

    tls.prepare(loaded.config)  # certificates load here: nginx -t reports them
    if o.signal is None:  # then the log files, created if need be (nginx -t does too)
        open_log_files(loaded.config)
    return loaded.config, loaded.warnings


def main(argv: list[str]) -> int:
    try:
        o = parse_args(argv)
    except UsageError as e:
        _say(str(e))
        return 1
    if o.help:
        sys.stderr.write(HELP)
        return 0
    if o.version:
        sys.stderr.write(f"{NAME} version: {SERVER_VERSION}\n")
        if o.version_full:
            import httptools
            import uvloop

            sys.stderr.write(
                f"built with Python {sys.version.split()[0]} (uvloop {uvloop.__version__}, "
                f"httptools {httptools.__version__})\n"
                f"nginx-compatible configuration; halb {__version__}\n"
                f"configure arguments: --prefix={_paths(o)[0]} "
                "--with-http_stub_status_module --with-http_realip_module "
                "--with-http_ssl_module\n")
        if not o.test:
            return 0
    _, conf_file = _paths(o)
    try:
        config, warnings = load(o)
    except ConfigError as e:
        if o.test and not o.quiet and isinstance(e, LogFileError):
            _say(f"the configuration file {conf_file} syntax is ok")  # (files open after it)
        _say(f"[{e.level}] {e}")
        if o.test:
            _say(f"configuration file {conf_file} test failed")
        return 1
    for w in warnings:
        _say(f"[warn] {w}")
    if o.test:
        if not o.quiet:
            _say(f"the configuration file {conf_file} syntax is ok")
            _say(f"configuration file {conf_file} test is successful")
        if o.dump:
            for path in config.files:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                sys.stdout.write(f"# configuration file {path}:\n{text}")
                if not text.endswith("\n"):
                    sys.stdout.write("\n")
                sys.stdout.write("\n")
            sys.stdout.flush()
        return 0
    if o.signal is not None:
        return send_signal(config, o.signal)
    return serve(config, o)


def send_signal(config: NginxConfig, name: str) -> int:
    """ngx_signal_process: its lines go to stderr in the error log's format (nginx -s writes
    "signal process started" there, whatever the configured level)."""
    from halb.runtime.process import read_pid

    log = ErrorLogger((ErrorLog("stderr", "notice"),))
    log.log("notice", "signal process started")
    try:
        pid = read_pid(config.pid)
    except ConfigError as e:
        log.log(e.level, str(e))
        return 1
    try:
        os.kill(pid, SIGNALS[name])
    except OSError as e:
        log.log("alert", f"kill({pid}, {int(SIGNALS[name])}) failed ({e.errno}: {e.strerror})")
        return 1
    return 0


def _error_logger(config: NginxConfig, o: Options) -> ErrorLogger:
    logs = config.error_log or (ErrorLog(o.error_log or "stderr", "error"),)
    return ErrorLogger(logs)


def serve(config: NginxConfig, o: Options) -> int:
    from halb.runtime.listeners import ListenerSet, to_bind
    from halb.runtime.master import Master
    from halb.runtime.process import daemonize, remove_pid, write_pid
    from halb.runtime.worker import Worker

    if config.http is None or not config.http.servers:
        _say("[warn] no http servers are configured")
    try:
        error_log = _error_logger(config, o)
    except OSError as e:
        _say(f'[alert] could not open error log file: open() "{e.filename}" failed '
             f"({e.errno}: {e.strerror})")
        return 1
    listeners = ListenerSet()

    def reload_config() -> NginxConfig:
        cfg, warns = load(o)
        for w in warns:
            error_log.log("warn", str(w))
        return cfg

    if config.master_process:
        master = Master(config, reload_config, error_log, listeners)
        try:
            listeners.update(to_bind(config))
        except ConfigError as e:
            _say(f"[{e.level}] {e}")
            return 1
        if config.daemon:
            daemonize()
        try:
            return master.run()
        except ConfigError as e:
            error_log.log(e.level, str(e))
            _say(f"[{e.level}] {e}")
            return 1
    # master_process off: one process serves, as nginx's single-process mode
    try:
        sockets, _ = listeners.update(to_bind(config))
    except ConfigError as e:
        _say(f"[{e.level}] {e}")
        return 1
    if config.daemon:
        daemonize()

    def reloader():  # type: ignore[no-untyped-def]
        try:
            cfg = reload_config()
            socks, _stale = listeners.update(to_bind(cfg))
        except ConfigError as e:
            error_log.log(e.level, str(e))
            return None
        return cfg, socks

    try:
        write_pid(config.pid)
    except ConfigError as e:
        _say(f"[emerg] {e}")
        return 1
    try:
        return Worker(config, sockets, 0, None, error_log, reloader).run()
    finally:
        listeners.close()
        remove_pid(config.pid)
