# The README's two commands: `make run` (the quickstart) and `make test` (everything).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the conformance tests and benchmarks run as oracles.
PEER_PACKAGES := nginx libnginx-mod-http-cache-purge wrk keepalived nftables haproxy ipvsadm gcc libc6-dev
PEER_BINARIES := /usr/sbin/nginx /usr/lib/nginx/modules/ngx_http_cache_purge_module.so /usr/bin/wrk /usr/sbin/keepalived /usr/sbin/nft /usr/sbin/haproxy \
                 /usr/sbin/ipvsadm /usr/bin/gcc

.PHONY: run test lint peers venv clean lab

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The quickstart: three demo backends and halb nginx in front of them on 127.0.0.1:8080, a live
# summary; Ctrl-C stops everything.
run: $(STAMP)
	mkdir -p examples/quickstart/logs
	$(BIN)/halb up -p examples/quickstart/

# Peer binaries for the conformance tests: installed when we are root and they are missing.
peers:
	@missing=""; for b in $(PEER_BINARIES); do [ -e $$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing peers:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $(PEER_PACKAGES) >/dev/null; \
	    for d in nginx keepalived haproxy; do pkill -x $$d || true; done; \
	  else echo "not root: peer tests that need$$missing will be skipped"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Four workers on two cores: most of the namespace and conformance tests wait on timers and
# peers, not on the CPU (a 3-worker run kept the CPUs 35 % busy); worksteal keeps the slow
# namespace tests at the end from queueing behind one worker. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4

test: $(STAMP) peers lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15

# The seeds' cluster in network namespaces (root): every fault scenario with halb, then with the
# real keepalived and nginx, and the HTML report (lab-results/report.html). About 6 minutes.
lab: $(STAMP) peers
	$(BIN)/halb lab run all --both --report --results lab-results

clean:
	rm -rf $(VENV) build dist src/*.egg-info
