"""`halb nginx -t` against `nginx -t`: the same broken configurations, the same messages.

Each case is written into a fresh directory (with a `pid` line first, so the case's own lines
start at line 2) and checked twice: the real nginx runs `nginx -t -q -p DIR/ -c DIR/nginx.conf`
and the `[emerg]` message is taken from its stderr; halb loads the same file with
`halb.config.nginx.load`. Both must fail with the same text (`message in /abs/file:line`), or
both accept the file. nginx -t only parses and checks: it starts no server and leaves no
process behind.

These tables cover the core, events, http core and static modules. The other modules have
tables of their own (here: test_rewrite_config, test_tls_config, test_log_config,
test_proxy_config, test_cache, test_seed_snippets; the filters' messages, taken from nginx -t, in
tests/unit/l7/test_filters_config). Left out: host
names in `listen` other than localhost (halb resolves no names while reading the configuration)
and the PCRE2 wording of the rarer regex errors (halb compiles regexes with Python's `re` and
translates the usual messages only).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx import load

pytestmark = pytest.mark.peer

# id, nginx.conf after the pid line ({D} is the directory), other files, -g directives
Case = tuple[str, str, dict[str, str], str]

EV = "events {}\n"

BROKEN: list[Case] = [
    # -- the tokenizer -----------------------------------------------------------------------
    ("unexpected-close", EV + "http { server { listen 8080; } } }\n", {}, ""),
    ("close-in-statement", EV + "http { server { listen 8080 } }\n", {}, ""),
    ("unexpected-semicolon", EV + "http { server { listen 8080; ;} }\n", {}, ""),
    ("unexpected-open", EV + "events {} {\n", {}, ""),
    ("after-quote", EV + 'http { server { listen "8080"x; } }\n', {}, ""),
    ("after-single-quote", EV + "http { server { listen '8080'x; } }\n", {}, ""),
    ("quote-after-quote", EV + "http { server { listen \"80\"'80'; } }\n", {}, ""),
    ("sharp-after-quote", EV + 'http { server {\n listen "8080"# x\n; } }\n', {}, ""),
    ("eof-in-statement", EV + "http { server { listen 8080", {}, ""),
    ("eof-in-quotes", EV + 'http { server { return 200 "a\n\n', {}, ""),
    ("eof-in-block", EV + "http {\n server {\n  listen 8080;\n }\n", {}, ""),
    ("eof-in-block-after-string", EV + 'http {\n server {\n  return 200 "a\n b";\n }\n', {}, ""),
    ("brace-in-word", EV + "http { server { location ~ a{2,1} { } } }\n", {}, ""),
    ("types-needs-semicolons", EV + "http { types { text/html html } }\n", {}, ""),
    ("types-no-blocks", EV + "http { types { text/html { } } }\n", {}, ""),
    ("server-no-semicolon", EV + "http { server }\n", {}, ""),
    # an earlier directive's error comes before a later syntax error
    ("unknown-before-close", EV + "http { server { listen 8080; foo; } } }\n", {}, ""),
    ("unknown-before-semicolon", EV + "http { server { foo; ;} }\n", {}, ""),
    ("unknown-before-eof", EV + "foo;\nhttp {\n", {}, ""),
    ("multi-line-statement", EV + "http {\n server {\n  listen\n   8080\n  ;\n  foo\n bar\n ;\n"
     " }\n}\n", {}, ""),
    ("comment-hides-semicolon", EV + "http { server { listen 8080 # ;\n foo; } }\n", {}, ""),
    # -- include ---------------------------------------------------------------------------------
    ("include-missing", EV + "include missing.conf;\n", {}, ""),
    ("include-missing-absolute", EV + "http {\n include {D}/none/x.conf;\n}\n", {}, ""),
    ("include-args", EV + "http { include a.conf b.conf; }\n", {}, ""),
    ("include-error-inside", EV + "http { include conf.d/*.conf; }\n",
     {"conf.d/b.conf": "server { listen 8081; }\n",
      "conf.d/a.conf": "server { listen 8082;\n  foo;\n}\n"}, ""),
    ("include-nested", EV + "http { include a.conf; }\n",
     {"a.conf": "include sub/b.conf;\n", "sub/b.conf": "\n\nbar;\n"}, ""),
    ("include-eof-in-block", EV + "http { include a.conf; }\n", {"a.conf": "server {\n"}, ""),
    ("include-stray-close", EV + "http { include a.conf; }\n", {"a.conf": "}\n"}, ""),
    ("include-after-error", EV + "foo;\ninclude missing.conf;\n", {}, ""),
    ("include-glob-order", EV + "http { include conf.d/*.conf; }\n",
     {"conf.d/b.conf": "server { listen 8081; }\n",
      "conf.d/a.conf": "server { listen 8081 default_server; }\n"
                       "server { listen 8081 default_server; }\n"}, ""),
    # -- the directive table -------------------------------------------------------------------
    ("unknown-directive", EV + "http { server { listen 8080; foo; } }\n", {}, ""),
    ("unknown-in-location", EV + "http {\n server {\n  location / {\n   nope on;\n  }\n }\n}\n",
     {}, ""),
    ("not-allowed-here", EV + "http { listen 80; }\n", {}, ""),
    ("not-allowed-in-events", "events { daemon off; }\n", {}, ""),
    ("alias-in-http", EV + "http { alias /b; }\n", {}, ""),
    ("internal-in-server", EV + "http { server { internal; } }\n", {}, ""),
    ("no-opening-brace", "events;\n", {}, ""),
    ("not-terminated", EV + "daemon off { }\n", {}, ""),
    ("return-with-block", EV + "http { server { location / { return 200 'a'{ } } } }\n", {}, ""),
    ("too-few-args", EV + "http { server { listen 8080; root; } }\n", {}, ""),
    ("too-many-args", EV + "http { default_type a b; }\n", {}, ""),
    ("location-args", EV + "http { server { location a b c { } } }\n", {}, ""),
    ("flag-value", EV + "http { sendfile maybe; }\n", {}, ""),
    ("flag-value-events", "events { multi_accept 1; }\n", {}, ""),
    ("duplicate-flag", EV + "http { sendfile on; sendfile off; }\n", {}, ""),
    ("duplicate-main", "daemon off;\ndaemon on;\n" + EV, {}, ""),
    ("duplicate-events", EV + "events {}\n", {}, ""),
    ("duplicate-http", EV + "http { server { listen 8080; } }\nhttp {}\n", {}, ""),
    ("duplicate-pid", EV + "pid other.pid;\n", {}, ""),
    ("duplicate-try-files", EV + "http { server { try_files a b; try_files c d; } }\n", {}, ""),
    ("duplicate-internal", EV + "http { server { location / { internal; internal; } } }\n",
     {}, ""),
    ("no-events", "http { server { listen 8080; } }\n", {}, ""),
    ("worker-processes", "worker_processes abc;\n" + EV, {}, ""),
    ("worker-connections", "events { worker_connections x; }\n", {}, ""),
    ("event-type", "events { use kqueue; }\n", {}, ""),
    ("time-value", EV + "http { keepalive_timeout abc; }\n", {}, ""),
    ("time-order", EV + "http { send_timeout 1s1m; }\n", {}, ""),
    ("time-years-in-msec", EV + "http { send_timeout 1y; }\n", {}, ""),
    ("time-ms-in-sec", EV + "http { keepalive_timeout 10 5ms; }\n", {}, ""),
    ("size-value", EV + "http { client_max_body_size 1x; }\n", {}, ""),
    ("size-no-g", EV + "http { client_body_buffer_size 1g; }\n", {}, ""),
    ("number-value", EV + "http { keepalive_requests -1; }\n", {}, ""),
    ("enum-value", EV + "http { server_tokens maybe; }\n", {}, ""),
    ("log-level", EV + "error_log logs/e.log nosuchlevel;\n", {}, ""),
    ("log-level-twice", EV + "error_log logs/e.log info debug;\n", {}, ""),
    ("load-module-late", EV + "load_module modules/x.so;\n", {}, ""),
    ("user-unknown", "user no-such-user-halb;\n" + EV, {}, ""),
    ("group-unknown", "user root no-such-group-halb;\n" + EV, {}, ""),
    # -- listen ----------------------------------------------------------------------------------
    ("listen-duplicate", EV + "http { server { listen 8080; listen 8080; } }\n", {}, ""),
    ("listen-duplicate-spelled", EV + "http { server { listen 8080; listen 0.0.0.0:8080; } }\n",
     {}, ""),
    ("listen-duplicate-localhost", EV +
     "http { server { listen localhost:8080; listen 127.0.0.1:8080; } }\n", {}, ""),
    ("listen-duplicate-v6", EV + "http { server { listen [::1]:8080; listen [::1]:8080; } }\n",
     {}, ""),
    ("listen-duplicate-unix", EV +
     "http { server { listen unix:{D}/s.sock; listen unix:{D}/s.sock; } }\n", {}, ""),
    ("listen-default-twice", EV + "http {\n server { listen 8080 default_server; }\n"
     " server { listen 8080 default; }\n}\n", {}, ""),
    ("listen-default-before-error", EV + "http { server { listen 8080 default_server; }"
     " server { listen 8080 default_server; } }\nfoo;\n", {}, ""),
    ("listen-options-twice", EV + "http { server { listen 8080 reuseport; }"
     " server { listen 8080 backlog=10; } }\n", {}, ""),
    ("listen-bind-twice", EV + "http { server { listen 8080 bind; } server { listen 8080 bind; } }\n",
     {}, ""),
    ("listen-port-range", EV + "http { server { listen 99999; } }\n", {}, ""),
    ("listen-port-zero", EV + "http { server { listen 0; } }\n", {}, ""),
    ("listen-port-text", EV + "http { server { listen 127.0.0.1:abc; } }\n", {}, ""),
    ("listen-colons", EV + "http { server { listen 1:2:3; } }\n", {}, ""),
    ("listen-no-host", EV + "http { server { listen :80; } }\n", {}, ""),
    ("listen-no-host-v6", EV + "http { server { listen []:80; } }\n", {}, ""),
    ("listen-bad-host", EV + "http { server { listen [::1; } }\n", {}, ""),
    ("listen-after-bracket", EV + "http { server { listen [::1]x; } }\n", {}, ""),
    ("listen-slash", EV + "http { server { listen a/b; } }\n", {}, ""),
    ("listen-zone", EV + "http { server { listen [fe80::1%lo]:8080; } }\n", {}, ""),
    ("listen-host-not-found", EV + "http { server { listen 1.2.3.4.5:80; } }\n", {}, ""),
    ("listen-unix-no-path", EV + "http { server { listen unix:; } }\n", {}, ""),
    ("listen-parameter", EV + "http { server { listen 8080 foo; } }\n", {}, ""),
    ("listen-setfib", EV + "http { server { listen 8080 setfib=1; } }\n", {}, ""),
    ("listen-backlog", EV + "http { server { listen 8080 backlog=x; } }\n", {}, ""),
    ("listen-backlog-zero", EV + "http { server { listen 8080 backlog=0; } }\n", {}, ""),
    ("listen-backlog-negative", EV + "http { server { listen 8080 backlog=-1; } }\n", {}, ""),
    ("listen-rcvbuf", EV + "http { server { listen 8080 rcvbuf=x; } }\n", {}, ""),
    ("listen-sndbuf", EV + "http { server { listen 8080 sndbuf=1x; } }\n", {}, ""),
    ("listen-fastopen", EV + "http { server { listen 8080 fastopen=x; } }\n", {}, ""),
    ("listen-ipv6only-word", EV + "http { server { listen 8080 ipv6only=x; } }\n", {}, ""),
    ("listen-ipv6only-flags", EV + "http { server { listen 8080 ipv6only=oX; } }\n", {}, ""),
    ("listen-so-keepalive", EV + "http { server { listen 8080 so_keepalive=x; } }\n", {}, ""),
    ("listen-so-keepalive-zero", EV + "http { server { listen 8080 so_keepalive=0; } }\n", {}, ""),
    # -- server_name -----------------------------------------------------------------------------
    ("server-name-star", EV + "http { server { listen 8080; server_name *; } }\n", {}, ""),
    ("server-name-star-x", EV + "http { server { listen 8080; server_name *x; } }\n", {}, ""),
    ("server-name-dot", EV + "http { server { listen 8080; server_name .; } }\n", {}, ""),
    ("server-name-wildcard", EV + "http { server { listen 8080; server_name A*B; }"
     " server { listen 8080; server_name x; } }\n", {}, ""),
    ("server-name-dots", EV + "http { server { listen 8080; server_name a..b; }"
     " server { listen 8080; } }\n", {}, ""),
    ("server-name-implicit-listen", EV + "http { server { server_name a*b; } server { } }\n",
     {}, ""),
    ("server-name-after-http", EV + "http { server { listen 8080; server_name a*b; }"
     " server { listen 8080; } }\nfoo;\n", {}, ""),
    ("server-name-regex", EV + "http { server { listen 8080; server_name ~(; } }\n", {}, ""),
    # -- root, alias, locations -----------------------------------------------------------------
    ("root-twice", EV + "http { server { listen 8080; root /a; root /b; } }\n", {}, ""),
    ("root-then-alias", EV + "http { server { location / { root /a; alias /b; } } }\n", {}, ""),
    ("alias-then-root", EV + "http { server { location / { alias /a; root /b; } } }\n", {}, ""),
    ("alias-twice", EV + "http { server { location / { alias /a; alias /b; } } }\n", {}, ""),
    ("alias-named", EV + "http { server { location @n { alias /x; } } }\n", {}, ""),
    ("alias-then-root-nested", EV + "http { server { location /a { root /x;"
     " location /a/b { alias /y; root /z; } } } }\n", {}, ""),
    ("location-in-exact", EV + "http { server { location = /a { location /a/b {} } } }\n", {}, ""),
    ("location-in-empty-exact", EV + "http { server { location = { location /x {} } } }\n",
     {}, ""),
    ("location-outside", EV + "http { server { location /a { location /b {} } } }\n", {}, ""),
    ("location-outside-regex", EV + "http { server { location ~ a { location /b {} } } }\n",
     {}, ""),
    ("location-outside-exact", EV + "http { server { location /a { location = /b {} } } }\n",
     {}, ""),
    ("location-in-named", EV + "http { server { location @a { location /b {} } } }\n", {}, ""),
    ("named-not-on-server", EV + "http { server { location /a { location @b {} } } }\n", {}, ""),
    ("location-modifier", EV + "http { server { location != /a {} } }\n", {}, ""),
    ("location-duplicate", EV + "http {\n server {\n  location /a {}\n  location /b {}\n"
     "  location /a {}\n }\n}\n", {}, ""),
    ("location-duplicate-exact", EV + "http { server { location =/a {} location = /a {} } }\n",
     {}, ""),
    ("location-duplicate-noregex", EV + "http { server { location /a {} location ^~ /a {} } }\n",
     {}, ""),
    ("location-duplicate-nested-first", EV + "http { server { location /a { location /a/b {}"
     " location /a/b {} } location /0 {} location /0 {} } }\n", {}, ""),
    ("location-duplicate-after-other", EV + "http { server { location /a {} location /a {}"
     " foo; } }\n", {}, ""),
    ("location-duplicate-before-after-http", EV + "http { server { location /a {}"
     " location /a {} } }\nfoo;\n", {}, ""),
    ("regex-paren", EV + "http { server { location ~ ( {} } }\n", {}, ""),
    ("regex-unmatched", EV + "http { server { location ~ a) {} } }\n", {}, ""),
    ("regex-quantifier", EV + "http { server { location ~ *a {} } }\n", {}, ""),
    ("regex-double-quantifier", EV + "http { server { location ~ a** {} } }\n", {}, ""),
    ("regex-class", EV + "http { server { location ~ [a {} } }\n", {}, ""),
    ("regex-range", EV + 'http { server { location ~ "[b-a]" {} } }\n', {}, ""),
    ("regex-backslash", EV + 'http { server { location ~ "\\\\" {} } }\n', {}, ""),
    ("regex-dupnames", EV + 'http { server { location ~ "(?<n>a)(?<n>b)" {} } }\n', {}, ""),
    # -- return, try_files, error_page, index -----------------------------------------------
    ("return-code", EV + "http { server { listen 8080; return 1000; } }\n", {}, ""),
    ("return-text", EV + "http { server { listen 8080; return foo; } }\n", {}, ""),
    ("return-negative", EV + "http { server { location / { return -1; } } }\n", {}, ""),
    ("return-url-and-text", EV + "http { server { location / { return http://x y; } } }\n",
     {}, ""),
    ("return-args", EV + "http { server { location / { return 301 a b; } } }\n", {}, ""),
    ("try-files-args", EV + "http { server { listen 8080; try_files /a; } }\n", {}, ""),
    ("try-files-code", EV + "http { server { listen 8080; try_files /a =abc; } }\n", {}, ""),
    ("try-files-code-range", EV + "http { server { location / { try_files a =1000; } } }\n",
     {}, ""),
    ("try-files-code-empty", EV + "http { server { try_files a =; } }\n", {}, ""),
    ("error-page-args", EV + "http { error_page 404; }\n", {}, ""),
    ("error-page-range", EV + "http { error_page 200 /x; }\n", {}, ""),
    ("error-page-499", EV + "http { error_page 499 /x; }\n", {}, ""),
    ("error-page-code", EV + "http { error_page abc /x; }\n", {}, ""),
    ("error-page-overwrite", EV + "http { error_page 404 =abc /x; }\n", {}, ""),
    ("error-page-only-overwrite", EV + "http { server { error_page =200 /x; } }\n", {}, ""),
    ("error-page-two-uris", EV + "http { error_page 404 /x y; }\n", {}, ""),
    ("index-empty", EV + 'http { index ""; }\n', {}, ""),
    # -- logs and variables -----------------------------------------------------------------------
    ("access-log-format", EV + "http { access_log logs/a.log nosuch; }\n", {}, ""),
    ("access-log-format-later", EV + "http { server { listen 8080; access_log logs/a.log main; }"
     " log_format main '$uri'; }\n", {}, ""),
    ("access-log-off-param", EV + "http { access_log off x; }\n", {}, ""),
    ("access-log-param", EV + "http { access_log logs/a.log combined foo=1; }\n", {}, ""),
    ("access-log-buffer", EV + "http { access_log logs/a.log combined buffer=x; }\n", {}, ""),
    ("access-log-flush", EV + "http { access_log logs/a.log combined flush=x buffer=1k; }\n",
     {}, ""),
    ("access-log-flush-no-buffer", EV + "http { access_log logs/a.log combined flush=1s; }\n",
     {}, ""),
    ("access-log-gzip", EV + "http { access_log logs/a.log combined gzip=10; }\n", {}, ""),
    ("log-format-duplicate", EV + "http { log_format main '$uri'; log_format main '$uri'; }\n",
     {}, ""),
    ("log-format-combined", EV + "http { log_format combined '$uri'; }\n", {}, ""),
    ("log-format-escape", EV + "http { log_format x escape=foo '$uri'; }\n", {}, ""),
    ("log-format-dollar", EV + "http { log_format x 'a $ b'; }\n", {}, ""),
    ("log-format-open-brace", EV + "http { log_format a '${'; }\n", {}, ""),
    ("log-format-empty-braces", EV + "http { log_format a '${}'; }\n", {}, ""),
    ("log-format-bracket", EV + "http { log_format a '${u-}'; }\n", {}, ""),
    ("log-format-unknown-variable", EV + "http { log_format x '$nosuchvar'; }\n", {}, ""),
    ("unknown-variable", EV + "http { server { listen 8080; return 200 $NoSuch; } }\n", {}, ""),
    ("unknown-variable-root", EV + "http { server { listen 8080; root /x/$nosuch; } }\n", {}, ""),
    ("unknown-variable-after-http", EV + "http { server { listen 8080; return 200 $nosuch; } }\n"
     "foo;\n", {}, ""),
    ("unknown-variable-after-duplicate", EV + "http { server { return 200 $nosuch;"
     " location /a {} location /a {} } }\n", {}, ""),
    ("variable-name", EV + 'http { server { listen 8080; return 200 "a $ b"; } }\n', {}, ""),
    ("variable-empty-braces", EV + 'http { server { listen 8080; return 200 "${}"; } }\n', {}, ""),
    ("variable-at-end", EV + 'http { server { listen 8080; return 200 "x$"; } }\n', {}, ""),
    ("variable-bracket", EV + 'http { server { listen 8080; return 200 "${uri"; } }\n', {}, ""),
    ("variable-bracket-stop", EV + 'http { server { return 200 "${ur-i}"; } }\n', {}, ""),
    # -- the command line (-g) --------------------------------------------------------------------
    ("g-unknown", EV, {}, "foo;"),
    ("g-no-semicolon", EV, {}, "daemon off"),
    ("g-open-quote", EV, {}, 'daemon "off'),
    ("g-block", EV, {}, "events {}"),
    ("g-close", EV, {}, "daemon off; }"),
    ("g-duplicate", EV, {}, "daemon off; daemon on;"),
    ("g-then-file", EV + "daemon on;\n", {}, "daemon off;"),
    ("g-not-allowed", EV, {}, "listen 80;"),
    ("g-include-missing", EV, {}, "include x.conf;"),
]

VALID: list[Case] = [
    ("minimal", EV, {}, ""),
    ("main-and-events", "worker_processes 2;\nworker_rlimit_nofile 1024;\nerror_log stderr info;\n"
     "error_log logs/e.log debug_http;\nenv A=1;\nenv B;\n"
     "events { worker_connections 64; multi_accept on; use epoll; }\n", {}, ""),
    ("user-root", "user root;\n" + EV, {}, ""),
    ("g-directives", EV + "http { server { listen 8080; } }\n", {},
     "daemon off; master_process off;"),
    ("http-core", EV + "http {\n sendfile on; tcp_nopush on; keepalive_timeout 65 60;\n"
     " client_max_body_size 10m; send_timeout \"1h 30m\"; client_body_timeout 500ms;\n"
     " lingering_time 1h30; server_tokens OFF; if_modified_since Before; }\n", {}, ""),
    ("quoting", EV + "\"http\" {\n server { listen 8080;\n location / { \"return\" 200 'a\\'b'; }\n"
     " location /b { return 200 ${uri}x; } location /c { return 200 a#b; }\n"
     " location /d { return 200 \"a\"; # } a comment\n }\n } }\n", {}, ""),
    ("listen-forms", EV + "http {\n server { listen 127.0.0.1:8080 default_server backlog=100 "
     "reuseport; listen [::1]:8080 ipv6only=on; listen unix:{D}/s.sock; }\n"
     " server { listen 127.0.0.1:8080; listen *:8081; listen [::]:8081; }\n"
     " server { listen 8082 so_keepalive=30m::10 rcvbuf=64k sndbuf=1m deferred fastopen=5; }\n"
     " server { listen 8083 bind; } server { listen 8083 default_server; }\n}\n", {}, ""),
    ("server-names", EV + "http { server { listen 8080; server_name _ \"\" www.Example.com "
     "*.example.com .example.org www.example.* ~^(?<sub>.+)\\.example\\.com$; }\n"
     " server { listen 8080; server_name .a* \"\"; }\n"
     " server { listen 8081; server_name a*b; } }\n", {}, ""),
    ("locations", EV + "http { server { listen 8080;\n location / { root /x; }\n"
     " location /b { alias /y/; location /b/c { } }\n location = /e { }\n location ^~ /s/ {"
     " location ~ q { } }\n location ~* \\.php$ { }\n location ~ ^/r(.*) { alias /x$1; }\n"
     " location @n { return 200; } location @n { return 201; }\n location = { }"
     " location ~* { }\n location ~ x { } location ~ x { } } }\n", {}, ""),
    ("error-pages", EV + "http { error_page 404 /404.html; error_page 500 502 /50x.html;"
     " error_page 404 =200 /x; error_page 404 = @x; error_page 404 =0 /y;"
     " error_page 301 =200 /z; server { listen 8080; location @x { return 404; } } }\n", {}, ""),
    ("returns-and-try-files", EV + "http { server { listen 8080; try_files $uri $uri/ =404;\n"
     " location / { return 301 https://x$request_uri; } location = /a { return 404; }\n"
     " location /b { return 200 \"ok\"; } location /c { return https://x; }\n"
     " location /d { return $scheme://x; } location /e { try_files a =0; }\n"
     " location /f { try_files a @n; } location @n { return 200 $1; } } }\n", {}, ""),
    ("logs", EV + "http { log_format main escape=json '{\"a\":\"$remote_addr\"}' '$status';\n"
     " log_format empty escape=json;\n access_log logs/a.log main buffer=32k flush=5s;\n"
     " access_log logs/b.log combined if=$status gzip;\n access_log off; access_log logs/c.log;\n"
     " server { listen 8080; access_log off; } }\n", {}, ""),
    ("index-and-types", EV + "http { index a.html /b.html; types { text/html html;"
     " text/plain; } types { image/x html; } default_type text/x;\n"
     " server { listen 8080; location / { types { } } } }\n", {}, ""),
    ("includes", EV + "http { include mime.types; include conf.d/*.conf; include none/*.conf; }\n",
     {"mime.types": "types { text/x x; }\n",
      "conf.d/a.conf": "server { listen 8080; include snippets/s.conf; }\n",
      "conf.d/snippets/s.conf": "# relative to the prefix, not to conf.d/\n",
      "snippets/s.conf": "location / { return 204; }\n"}, ""),
    ("accept-filter-ignored", EV + "http { server { listen 8080 accept_filter=x; } }\n", {}, ""),
    ("empty-location-names", EV + 'http { server { listen 8080; location "" {} location ~ "" {}'
     " location @ {} location = {} } }\n", {}, ""),
]

_EMERG = re.compile(r"\[emerg\] (?:\d+#\d+: )?(.*)")


def _write(base: Path, case: Case) -> Path:
    _, text, files, _ = case
    (base / "logs").mkdir()
    conf = base / "nginx.conf"
    conf.write_text(f"pid {base}/nginx.pid;\n" + text.replace("{D}", str(base)))
    for name, body in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body.replace("{D}", str(base)))
    return conf


def nginx_says(nginx: str, base: Path, conf: Path, directives: str) -> str | None:
    cmd = [nginx, "-t", "-q", "-p", f"{base}/", "-c", str(conf)]
    if directives:
        cmd += ["-g", directives]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if proc.returncode == 0:  # even when it logged something ("accept filters ... ignored")
        return None
    m = _EMERG.search(proc.stderr)
    assert m is not None, f"nginx failed without an [emerg] line: {proc.stderr}"
    return m.group(1).strip()


def halb_says(base: Path, conf: Path, directives: str) -> str | None:
    try:
        load(str(conf), f"{base}/", global_directives=directives, is_root=os.geteuid() == 0)
    except ConfigError as e:
        return str(e)
    return None


def _ids(cases: list[Case]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize("case", BROKEN, ids=_ids(BROKEN))
def test_broken_config_same_message(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    expected = nginx_says(nginx_binary, tmp_path, conf, case[3])
    assert expected is not None, "nginx accepted this configuration"
    assert halb_says(tmp_path, conf, case[3]) == expected


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_config_loads_in_both(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    assert nginx_says(nginx_binary, tmp_path, conf, case[3]) is None
    assert halb_says(tmp_path, conf, case[3]) is None


def test_tables_are_big_enough() -> None:
    assert len(BROKEN) >= 40 and len(VALID) >= 5
    assert len(set(_ids(BROKEN + VALID))) == len(BROKEN) + len(VALID)
