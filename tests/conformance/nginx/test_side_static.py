"""Static files, root/alias, index, try_files, autoindex, directory redirects, MIME types."""

from __future__ import annotations

import pytest
from harness import Case, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    include /etc/nginx/mime.types;
    default_type application/octet-stream;

    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;

        location / { }

        location /multi/ { index index.html index.htm; }
        location /both/ { index index.htm index.html; }
        location /emptydir/ { index nothing.html /fallback.html; }
        location /php/ { index index.php; }
        location ~ \.php$ { return 200 "php handler: $uri args=$args\n"; }

        location /noindex/ { autoindex on; }
        location /dir/sub/ { autoindex on; autoindex_exact_size off; }
        location /ai-alias/ { alias %WWW%/noindex/; autoindex on; }

        location /alias/ { alias %ALIAS%/; }
        location /alias-noslash { alias %ALIAS%; }
        location ~ ^/re-alias/(.+\.txt)$ { alias %ALIAS%/$1; }
        location ~ ^/re-img/(?<name>[a-z]+)\.(png|gif)$ { alias %ALIAS%/img/$name.$2; }
        location ~ ^/re-dir/(.*)$ { alias %ALIAS%/$1; }
        location /rooted/ { root %ALIAS%/..; }
        location /follow/ { alias %WWW%/; disable_symlinks off; }

        location /dir/ { try_files $uri $uri/ =404; }
        location /spa/ { try_files $uri $uri/ /spa/index.html; }
        location /download/ { try_files $uri @dl; }
        location @dl { return 200 "named dl: $uri args=$args\n"; }
        location /docs/ { try_files $uri $uri.txt $uri/index.html /fallback.html?from=docs; }
        location /tf-code/ { try_files /nonexistent =418; }
        location /tf-dir-only/ { try_files $uri/ =403; }
        location /tf-php/ { try_files /nonexistent /php/x.php; }
        location /tf-alias/ { alias %ALIAS%/; try_files $uri $uri/ =404; }

        location /typed/ {
            alias %WWW%/;
            types { text/x-custom txt; }
            default_type text/x-default;
        }
        location /notypes/ {
            alias %WWW%/;
            types { }
        }
    }
"""

CASES = [
    # plain files and MIME types
    Case("root-index", req("/"), {"status": 200, "header:content-type": "text/html"}),
    Case("index-file-direct", req("/index.html"), {"status": 200}),
    Case("txt", req("/a.txt"), {"header:content-type": "text/plain"}),
    Case("css", req("/style.css"), {"header:content-type": "text/css"}),
    Case("js", req("/app.js"), {"header:content-type": "application/javascript"}),
    Case("json", req("/data.json"), {"header:content-type": "application/json"}),
    Case("png", req("/image.png"), {"header:content-type": "image/png"}),
    Case("upper-ext-jpg", req("/image.JPG"), {"header:content-type": "image/jpeg"}),
    Case("upper-ext-txt", req("/UPPER.TXT"), {"header:content-type": "text/plain"}),
    Case("double-ext", req("/archive.tar.gz")),
    Case("no-ext-default-type", req("/noext"),
         {"header:content-type": "application/octet-stream"}),
    Case("unknown-ext-default-type", req("/file.unknownext"),
         {"header:content-type": "application/octet-stream"}),
    Case("empty-file", req("/empty.txt"), {"header:content-length": "0"}),
    Case("big-64k", req("/big64k.bin"), {"header:content-length": "100000"}),
    Case("big-1m", req("/big1m.bin"), {"header:content-length": "1500000"}),
    Case("big-1m-head", req("/big1m.bin", method="HEAD")),
    Case("spaces-encoded", req("/hello%20world.txt"), {"status": 200}),
    Case("utf8-encoded", req("/caf%C3%A9.txt"), {"status": 200}),
    Case("utf8-raw", req("/caf\u00e9.txt"), {"status": 200}),
    Case("percent-encoded-percent", req("/100%25.txt"), {"status": 200}),
    Case("symlink-file-inside", req("/link.txt"), {"body": b"hello from a.txt\n"}),
    Case("symlink-dir-inside", req("/dirlink/page.html"), {"status": 200}),
    Case("hidden-file", req("/.hidden"), {"status": 200}),
    # a link out of the root, with `disable_symlinks off` (halb's own default refuses it:
    # test_halb_only.py)
    Case("symlink-out-disable-symlinks-off", req("/follow/escape/out.txt"),
         {"body": b"outside the root\n"}),
    Case("dot-dir", req("/dot.dir/f.txt"), {"status": 200}),
    Case("missing-404", req("/nope.txt"), {"status": 404}),
    Case("missing-in-missing-dir", req("/nodir/nope.txt"), {"status": 404}),
    Case("file-as-dir", req("/a.txt/more"), {"status": 404}),
    Case("file-with-slash", req("/a.txt/"), {"status": 404}),
    Case("query-ignored", req("/a.txt?x=1&y=%20"), {"status": 200}),
    Case("head-file", req("/a.txt", method="HEAD"), {"status": 200}),
    Case("head-dir-index", req("/", method="HEAD"), {"status": 200}),
    # directories
    Case("dir-no-slash-301", req("/noindex"),
         {"status": 301, "header:location": "http://localhost:%PORT%/noindex/"}),
    Case("dir-no-slash-args", req("/noindex?a=1&b"),
         {"header:location": "http://localhost:%PORT%/noindex/?a=1&b"}),
    Case("dir-no-slash-host-port", req("/noindex", host="Web.Example:8080"),
         {"header:location": "http://web.example:%PORT%/noindex/"}),
    Case("dir-no-slash-no-host", req("/noindex", host=None, version="HTTP/1.0")),
    Case("dir-no-slash-head", req("/noindex", method="HEAD"), {"status": 301}),
    Case("dir-without-index-403", req("/emptydir/", method="GET"), {"status": 200}),
    Case("dir-without-index-forbidden", req("/images/"), {"status": 403}),
    Case("dir-index", req("/dir/"), {"status": 200}),
    Case("dir-nested-no-index-autoindex", req("/dir/sub/")),
    Case("dir-deeper-no-slash", req("/dir/sub/deeper"), {"status": 301}),
    Case("encoded-dir-no-slash", req("/dot%2Edir"), {"status": 301}),
    # index
    Case("index-second-file", req("/multi/"), {"body": b"<p>multi htm</p>\n"}),
    Case("index-order", req("/both/"), {"body": b"<p>both htm</p>\n"}),
    Case("index-absolute", req("/emptydir/?q=1"), {"body": b"<p>fallback</p>\n"}),
    Case("index-into-regex-location", req("/php/?a=b"),
         {"body": b"php handler: /php/index.php args=a=b\n"}),
    Case("index-head", req("/multi/", method="HEAD")),
    Case("index-post", req("/multi/", method="POST", body=b"x"), {"status": 405}),
    # autoindex
    Case("autoindex", req("/noindex/"), {"status": 200}),
    Case("autoindex-head", req("/noindex/", method="HEAD")),
    Case("autoindex-http10", req("/noindex/", version="HTTP/1.0")),
    Case("autoindex-empty-subdir", req("/noindex/emptysub/")),
    Case("autoindex-subdir-no-slash", req("/noindex/subdir"), {"status": 301}),
    Case("autoindex-file", req("/noindex/one.txt"), {"status": 200}),
    Case("autoindex-human-sizes", req("/dir/sub/")),
    Case("autoindex-alias", req("/ai-alias/"), {"status": 200}),
    Case("autoindex-missing-dir", req("/noindex/nothere/"), {"status": 404}),
    Case("autoindex-post", req("/noindex/", method="POST", body=b"x"), {"status": 403}),
    # alias
    Case("alias-file", req("/alias/hello.txt"), {"body": b"from the alias tree\n"}),
    Case("alias-index", req("/alias/"), {"body": b"<p>alias index</p>\n"}),
    Case("alias-sub-index", req("/alias/sub/"), {"body": b"<p>alias sub index</p>\n"}),
    Case("alias-subdir-no-slash", req("/alias/sub"),
         {"status": 301, "header:location": "http://localhost:%PORT%/alias/sub/"}),
    Case("alias-missing", req("/alias/missing.txt"), {"status": 404}),
    Case("alias-no-slash-location", req("/alias-noslash/hello.txt"), {"status": 200}),
    Case("alias-no-slash-location-dir", req("/alias-noslash"), {"status": 301}),
    Case("alias-no-slash-location-index", req("/alias-noslash/"), {"status": 200}),
    Case("alias-regex-capture", req("/re-alias/sub/inner.txt"), {"body": b"alias inner\n"}),
    Case("alias-regex-missing", req("/re-alias/none.txt"), {"status": 404}),
    Case("alias-regex-named-captures", req("/re-img/cat.gif"),
         {"status": 200, "header:content-type": "image/gif"}),
    Case("alias-regex-dir", req("/re-dir/sub/"), {"status": 200}),
    Case("alias-regex-dir-no-slash", req("/re-dir/sub"), {"status": 301}),
    Case("root-with-dotdot", req("/rooted/"), {"status": 404}),
    # try_files
    Case("try-files-file", req("/dir/page.html"), {"status": 200}),
    Case("try-files-dir", req("/dir/noidx/"), {"status": 403}),
    Case("try-files-dir-no-slash", req("/dir/noidx"), {"status": 301}),
    Case("try-files-dir-index", req("/dir/"), {"body": b"<p>dir index</p>\n"}),
    Case("try-files-dir-index-no-slash", req("/dir"), {"status": 301}),
    Case("try-files-404", req("/dir/missing"), {"status": 404}),
    Case("try-files-final-uri", req("/spa/some/route?x=1"),
         {"body": b"<p>single page app</p>\n"}),
    Case("try-files-final-uri-file", req("/spa/asset.js"), {"body": b"var spa = 1;\n"}),
    Case("try-files-named", req("/download/nothing?z=2"),
         {"body": b"named dl: /download/nothing args=z=2\n"}),
    Case("try-files-named-hit", req("/download/file.bin"), {"status": 200}),
    Case("try-files-ext", req("/docs/readme"), {"body": b"docs readme\n"}),
    Case("try-files-final-args", req("/docs/none?orig=1"), {"body": b"<p>fallback</p>\n"}),
    Case("try-files-code", req("/tf-code/x"), {"status": 418}),
    Case("try-files-dir-only", req("/tf-dir-only/"), {"status": 403}),
    # a final URI without "?" drops the request's arguments
    Case("try-files-into-regex", req("/tf-php/q?a=1"),
         {"body": b"php handler: /php/x.php args=\n"}),
    Case("try-files-alias-file", req("/tf-alias/hello.txt"), {"status": 200}),
    Case("try-files-alias-dir", req("/tf-alias/sub/"), {"status": 200}),
    Case("try-files-alias-missing", req("/tf-alias/nothing"), {"status": 404}),
    Case("try-files-head", req("/spa/route", method="HEAD")),
    # types / default_type per location
    Case("types-override", req("/typed/a.txt"), {"header:content-type": "text/x-custom"}),
    Case("types-default", req("/typed/style.css"), {"header:content-type": "text/x-default"}),
    Case("types-empty", req("/notypes/a.txt"),
         {"header:content-type": "application/octet-stream"}),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_static(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)
