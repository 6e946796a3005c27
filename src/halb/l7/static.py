"""Static content: nginx's static, index, autoindex, not_modified and range modules.

Maps a URI to a path under `root` or `alias` (captures and variables allowed), opens the file,
and answers 200 / 206 / 304 / 412 / 416 with nginx's headers (ETag "mtime-size" in hex,
Last-Modified, Accept-Ranges). The path never leaves the root or alias: `..` and NUL are refused
when the URI is normalized (l7/uri.py), and a symlink whose target resolves outside the root is
refused with 403 unless `disable_symlinks off` is set explicitly (nginx's own default follows
such links; halb is stricter by default and says so in the README).
"""

from __future__ import annotations

import errno
import html
import os
import stat
import time
import urllib.parse
from dataclasses import dataclass

from halb.l7.request import Request
from halb.l7.response import Response, parse_http_date
from halb.l7.variables import expand

OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass(slots=True)
class Redirect:
    """An internal redirect: continue with a new URI (or a named location)."""

    uri: str
    args: str | None = None
    named: bool = False


@dataclass(slots=True)
class Finish:
    """End the request with a status (error_page applies), optionally logging an error."""

    status: int
    log: str | None = None
    level: str = "error"
    location: str | None = None  # for 301 to a directory


def document_root(r: Request) -> str | None:
    conf = r.conf
    if conf is None:
        return None
    return expand(conf.root, r)


def map_uri_to_path(r: Request, uri: str) -> str | None:
    """ngx_http_map_uri_to_path: root + uri, or the alias with the location prefix replaced."""
    conf = r.conf
    if conf is None:
        return None
    root = expand(conf.root, r)
    alias = conf.alias_name
    if alias is None:
        return root + uri
    if alias == "":  # regex location: the alias is the whole path
        return root
    return root + uri[len(alias):]


def _base_dir(r: Request) -> str:
    """The directory nothing may escape: the static part of root/alias."""
    conf = r.conf
    assert conf is not None
    t = conf.root
    if t.is_static:
        return t.static
    first = t.parts[0]
    prefix = first if isinstance(first, str) else ""
    return prefix.rsplit("/", 1)[0] or "/"


_REAL_CACHE: dict[str, str] = {}


def _confined(r: Request, path: str) -> bool:
    conf = r.conf
    assert conf is not None
    if conf.disable_symlinks == "off":
        return True
    base = _base_dir(r)
    real_base = _REAL_CACHE.get(base)
    if real_base is None:
        real_base = os.path.realpath(base)
        if len(_REAL_CACHE) < 1024:
            _REAL_CACHE[base] = real_base
    real = os.path.realpath(path)
    return real == real_base or real.startswith(real_base.rstrip("/") + "/")


def _open(r: Request, path: str) -> tuple[int, os.stat_result] | Finish:
    try:
        if not _confined(r, path):
            return Finish(403, f'access to "{path}" is forbidden: it leaves the document root')
        fd = os.open(path, OPEN_FLAGS)
    except OSError as e:
        return _open_error(r, path, e)
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        return _open_error(r, path, e)
    return fd, st


def _open_error(r: Request, path: str, e: OSError) -> Finish:
    msg = f'open() "{path}" failed ({e.errno}: {e.strerror})'
    assert r.conf is not None
    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
        return Finish(404, msg if r.conf.log_not_found else None)
    if e.errno in (errno.EACCES, errno.EMLINK, errno.ELOOP, errno.EPERM):
        return Finish(403, msg)
    return Finish(500, msg, level="crit")


def mime_type(r: Request, path: str) -> str:
    conf = r.conf
    assert conf is not None
    slash = path.rfind("/")
    dot = path.rfind(".")
    if dot > slash + 0 and dot > 0:
        ext = path[dot + 1:].lower()
        t = conf.types.get(ext)
        if t is not None:
            return t
    return conf.default_type


def etag_for(st: os.stat_result) -> str:
    return '"%x-%x"' % (int(st.st_mtime), st.st_size)


def serve_static(r: Request) -> Response | Finish | None:
    """ngx_http_static_handler. None: declined (the URI names a directory: "/" at the end)."""
    if r.method not in ("GET", "HEAD", "POST"):
        return Finish(405)
    if r.uri.endswith("/"):
        return None
    path = map_uri_to_path(r, r.uri)
    assert path is not None
    opened = _open(r, path)
    if isinstance(opened, Finish):
        return opened
    fd, st = opened
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        location = r.uri + "/" + (("?" + r.args) if r.args else "")
        return Finish(301, location=location)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return Finish(404, f'"{path}" is not a regular file', level="crit")
    if r.method == "POST":
        os.close(fd)
        return Finish(405)
    return file_response(r, fd, st, path)


def file_response(r: Request, fd: int, st: os.stat_result, path: str) -> Response | Finish:
    conf = r.conf
    assert conf is not None
    resp = Response(200, content_type=mime_type(r, path), content_length=st.st_size,
                    last_modified=int(st.st_mtime), file_fd=fd, file_count=st.st_size)
    if conf.etag:
        resp.etag = etag_for(st)
    status = not_modified(r, resp)
    if status:
        os.close(fd)
        resp.file_fd = None
        resp.status = status
        if status != 304:
            return Finish(status)
        resp.no_body = True
        resp.content_length = 0
        resp.content_type = None
        return resp
    if conf.max_ranges != 0:
        ranged = apply_range(r, resp, st.st_size)
        if ranged is not None:
            return ranged
        resp.accept_ranges = True
    return resp


def _etag_matches(header: str, etag: str | None, weak: bool) -> bool:
    if etag is None:
        return False
    value = header.strip()
    if value == "*":
        return True
    tag = etag[2:] if etag.startswith("W/") else etag
    for item in value.split(","):
        item = item.strip()
        if weak and item.startswith("W/"):
            item = item[2:]
        if item == tag:
            return True
    return False


def not_modified(r: Request, resp: Response) -> int:
    """ngx_http_not_modified_filter: 0, 304 or 412."""
    conf = r.conf
    assert conf is not None
    h = r.headers
    lm = resp.last_modified
    ius = h.get("if-unmodified-since")
    if ius is not None and lm is not None:
        t = parse_http_date(ius)
        if t is not None and lm > t:
            return 412
    im = h.get("if-match")
    if im is not None and not _etag_matches(im, resp.etag, False):
        return 412
    ims = h.get("if-modified-since")
    inm = h.get("if-none-match")
    if ims is None and inm is None:
        return 0
    if ims is not None:
        if conf.if_modified_since == "off" or lm is None:
            return 0
        t = parse_http_date(ims)
        if t is None:
            return 0
        if conf.if_modified_since == "exact" and lm != t:
            return 0
        if conf.if_modified_since == "before" and lm > t:
            return 0
    if inm is not None and not _etag_matches(inm, resp.etag, True):
        return 0
    return 304


def apply_range(r: Request, resp: Response, size: int) -> Response | None:
    """A single byte range → 206 or 416 (ngx_http_range_filter). None: send the whole file."""
    header = r.headers.get("range")
    if header is None:
        return None
    if not header.lower().startswith("bytes="):
        return None
    if_range = r.headers.get("if-range")
    if if_range is not None:
        if if_range.startswith('"') or if_range.startswith("W/"):
            if resp.etag is None or if_range != resp.etag:
                return None
        else:
            t = parse_http_date(if_range)
            if t is None or t != resp.last_modified:
                return None
    spec = header[6:].strip()
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        start_s, dash, end_s = part.partition("-")
        start_s, end_s = start_s.strip(), end_s.strip()
        if not dash or (not start_s and not end_s):
            return _unsatisfiable(resp, size) if start_s or end_s else None
        if not (start_s.isdigit() or not start_s) or not (end_s.isdigit() or not end_s):
            return None
        if not start_s:
            n = int(end_s)
            if n == 0:
                continue
            start, end = max(0, size - n), size - 1
        else:
            start = int(start_s)
            end = int(end_s) if end_s else size - 1
            if end < start:
                return None
            if start >= size:
                continue
            end = min(end, size - 1)
        ranges.append((start, end))
    if not ranges:
        return _unsatisfiable(resp, size)
    if len(ranges) > 1:
        return None  # several ranges: the whole file (multipart/byteranges is not implemented)
    start, end = ranges[0]
    resp.status = 206
    resp.file_offset = start
    resp.file_count = end - start + 1
    resp.content_length = resp.file_count
    resp.headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
    return resp


def _unsatisfiable(resp: Response, size: int) -> Response:
    if resp.file_fd is not None:
        os.close(resp.file_fd)
        resp.file_fd = None
    out = Response(416)
    out.headers.append(("Content-Range", f"bytes */{size}"))
    return out


# -- index and autoindex ---------------------------------------------------------------------


def index(r: Request) -> Redirect | Finish | None:
    """ngx_http_index_handler: redirect to the first index file that exists."""
    if not r.uri.endswith("/") or r.method not in ("GET", "HEAD", "POST"):
        return None
    conf = r.conf
    assert conf is not None
    dir_tested = False
    for t in conf.index:
        name = expand(t, r)
        if name.startswith("/"):
            return Redirect(name, r.args)
        base = map_uri_to_path(r, r.uri)
        assert base is not None
        path = base + name
        try:
            if not _confined(r, path):
                continue
            os.stat(path)
        except OSError as e:
            if e.errno == errno.EACCES:
                return Finish(403, f'"{path}" is forbidden (13: Permission denied)')
            if e.errno == errno.ENOTDIR:
                return Finish(404, f'"{path}" is not found (20: Not a directory)')
            if e.errno in (errno.ENOENT, errno.ENAMETOOLONG):
                if not dir_tested:
                    dir_tested = True
                    try:
                        dst = os.stat(base)
                    except OSError as de:
                        return Finish(404, f'"{base}" is not found ({de.errno}: {de.strerror})'
                                      if conf.log_not_found else None)
                    if not stat.S_ISDIR(dst.st_mode):
                        return Finish(404, f'"{base}" is not a directory')
                continue
            return Finish(500, f'stat() "{path}" failed ({e.errno}: {e.strerror})', "crit")
        return Redirect(r.uri + name, r.args)
    return None


def autoindex(r: Request) -> Response | Finish | None:
    conf = r.conf
    assert conf is not None
    if not conf.autoindex or not r.uri.endswith("/") or r.method not in ("GET", "HEAD"):
        return None
    path = map_uri_to_path(r, r.uri)
    assert path is not None
    try:
        if not _confined(r, path):
            return Finish(403)
        entries = []
        with os.scandir(path) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                try:
                    st = e.stat()
                except OSError:
                    continue
                entries.append((e.name, stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime))
    except FileNotFoundError as e:
        return Finish(404, f'opendir() "{path}" failed ({e.errno}: {e.strerror})')
    except NotADirectoryError as e:
        return Finish(404, f'opendir() "{path}" failed ({e.errno}: {e.strerror})')
    except PermissionError as e:
        return Finish(403, f'opendir() "{path}" failed ({e.errno}: {e.strerror})')
    entries.sort(key=lambda x: (not x[1], x[0]))
    body = _autoindex_html(r.uri, entries, conf.autoindex_exact_size, conf.autoindex_localtime)
    return Response(200, body=body, content_type="text/html")


def _autoindex_html(uri: str, entries: list[tuple[str, bool, int, float]], exact: bool,
                    localtime: bool) -> bytes:
    title = html.escape(uri, quote=False)
    lines = [f"<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n"
             f"<h1>Index of {title}</h1><hr><pre><a href=\"../\">../</a>\r\n"]
    for name, is_dir, size, mtime in entries:
        shown = name + ("/" if is_dir else "")
        href = urllib.parse.quote(name, safe="/:@!$&'()*+,;=-._~") + ("/" if is_dir else "")
        text = shown if len(shown) <= 50 else shown[:47] + "..>"
        pad = " " * (51 - len(text))
        t = time.localtime(mtime) if localtime else time.gmtime(mtime)
        when = time.strftime("%d-%b-%Y %H:%M", t)
        if is_dir:
            sz = "-"
        elif exact:
            sz = str(size)
        else:
            sz = _human(size)
        lines.append(f'<a href="{html.escape(href)}">{html.escape(text, quote=False)}</a>'
                     f"{pad}{when} {sz:>19}\r\n")
    lines.append("</pre><hr></body>\r\n</html>\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def _human(size: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size // scale}{unit}"
    return str(size)


# -- try_files -------------------------------------------------------------------------------


def try_files(r: Request) -> Redirect | Finish | None:
    """ngx_http_core_try_files_phase: the first existing file wins (r.uri is set to it)."""
    conf = r.conf
    assert conf is not None and conf.try_files is not None
    items = conf.try_files
    for t in items[:-1]:
        value = expand(t, r)
        test_dir = value.endswith("/")
        # the path is built from root/alias exactly as for the URI
        path = map_uri_to_path(r, value)
        if path is None:
            continue
        if test_dir:
            path = path.rstrip("/") or "/"
        try:
            if not _confined(r, path):
                continue
            st = os.stat(path)
        except OSError:
            continue
        if test_dir != stat.S_ISDIR(st.st_mode):
            continue
        r.uri = value
        return None
    last = expand(items[-1], r)
    if last.startswith("="):
        return Finish(int(last[1:]))
    if last.startswith("@"):
        return Redirect(last, None, named=True)
    uri, q, args = last.partition("?")
    return Redirect(uri, args if q else r.args)
