"""Probes: one check each, I/O only (tcp.py, http.py, ssl.py, misc.py). They return a
health.events.ProbeResult and decide nothing: health/state.py does."""
