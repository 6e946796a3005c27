"""Processes: master and workers, signals, listeners, reload, pid files, daemonizing."""
