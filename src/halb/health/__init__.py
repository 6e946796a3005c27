"""Health checking shared by the keepalived and nginx roles: state.py (PURE: keepalived's
checker, real server and quorum state machine), events.py (PURE: HealthChanged and the probe
requests/results), probes/ (I/O only: tcp, http, ssl, misc) and runner.py (schedules the probes
in asyncio and publishes HealthChanged)."""
