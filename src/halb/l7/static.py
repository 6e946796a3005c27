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
    content_range: str | None = None  # for 416: kept on the error page
    close: bool = False  # close after the answer, though it says keep-alive (nginx's 412)
    vary: bool = False  # a 416 for a file gzip would compress: Vary stays (l7/filters/)


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
    alias = conf.alias_name
    if alias is not None and not r.valid_location:  # after rewrite's break
        loc = r.location
        r.conn.log_error("alert", f'"alias" cannot be used in location '
                                  f'"{loc.name if loc else ""}" where URI was rewritten', r)
        return None
    root = expand(conf.root, r)
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
_DIR_REAL: dict[str, tuple[float, str]] = {}
DIR_CACHE_VALID = 1.0  # seconds a directory's resolved path is trusted (cf. open_file_cache)


def _real_dir(d: str) -> str:
    """realpath(d) + "/", cached for DIR_CACHE_VALID seconds."""
    now = time.monotonic()
    hit = _DIR_REAL.get(d)
    if hit is not None and now - hit[0] < DIR_CACHE_VALID:
        return hit[1]
    real = os.path.realpath(d).rstrip("/") + "/"
    if len(_DIR_REAL) >= 4096:
        _DIR_REAL.clear()
    _DIR_REAL[d] = (now, real)
    return real


def _confined(r: Request, path: str, final_is_link: bool | None = None) -> bool:
    """Whether path resolves inside the static part of root/alias (unless `disable_symlinks
    off`). The directories are resolved once a second; the last component is lstat()ed (or
    known from an O_NOFOLLOW open) and resolved only when it is a link."""
    conf = r.conf
    assert conf is not None
    if conf.disable_symlinks == "off":
        return True
    base = _base_dir(r)
    real_base = _REAL_CACHE.get(base)
    if real_base is None:
        real_base = os.path.realpath(base).rstrip("/") + "/"
        if len(_REAL_CACHE) < 1024:
            _REAL_CACHE[base] = real_base
    if final_is_link is None:
        try:
            final_is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            final_is_link = False  # missing: the caller's own stat or open says so
    if final_is_link:
        real = os.path.realpath(path)
        return real.startswith(real_base) or real + "/" == real_base
    slash = path.rfind("/")
    if slash < 0:
        return False
    real = _real_dir(path[:slash] or "/") + path[slash + 1:]
    return real.startswith(real_base) or real + "/" == real_base


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open(r: Request, path: str) -> tuple[int, os.stat_result] | Finish:
    assert r.conf is not None
    follow = r.conf.disable_symlinks == "off"
    try:
        fd = os.open(path, OPEN_FLAGS if follow else OPEN_FLAGS | NOFOLLOW)
    except OSError as e:
        if follow or e.errno != errno.ELOOP:
            return _open_error(r, path, e)
        fd = -1  # the last component is a link: resolve it
    if not follow and not _confined(r, path, fd < 0):
        if fd >= 0:
            os.close(fd)
        return Finish(403, f'access to "{path}" is forbidden: it leaves the document root')
    if fd < 0:
        try:
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
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def serve_static(r: Request) -> Response | Finish | None:
    """ngx_http_static_handler. None: declined (the URI names a directory: "/" at the end)."""
    if r.method not in ("GET", "HEAD", "POST"):
        return Finish(405)
    if r.uri.endswith("/"):
        return None
    path = map_uri_to_path(r, r.uri)
    if path is None:
        return Finish(500)
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
    r.test_expect()  # ngx_http_discard_request_body
    return file_response(r, fd, st, path)


def file_response(r: Request, fd: int, st: os.stat_result, path: str) -> Response | Finish:
    conf = r.conf
    assert conf is not None
    resp = Response(200, content_type=mime_type(r, path), content_length=st.st_size,
                    last_modified=int(st.st_mtime), file_fd=fd, file_count=st.st_size)
    if conf.etag:
        resp.etag = etag_for(st)
    if r.err_status and r.err_status != 200:
        return resp  # an error_page answer: its status is not 200, so no 304/412 or ranges
    status = not_modified(r, resp)
    if status:
        os.close(fd)
        resp.file_fd = None
        resp.status = status
        if status != 304:
            # ngx_http_filter_finalize_request: the 412 page is sent, then the request ends
            # as an error and the connection closes (its header still says keep-alive)
            return Finish(status, close=True)
        resp.no_body = True
        resp.content_length = 0
        resp.content_type = None
        return resp
    if conf.max_ranges != 0:
        f = conf.filters
        if f is not None and f.gzip is not None:  # gzip takes the length: no ranges
            from halb.l7.filters.chain import ranges_allowed

            if not ranges_allowed(r, resp, f):
                return resp
        ranged = apply_range(r, resp, st.st_size, conf.max_ranges)
        if ranged is not None:
            if resp.vary and isinstance(ranged, Finish):
                ranged.vary = True
            return ranged
        resp.accept_ranges = True
    return resp


def _etag_matches(header: str, etag: str | None, weak: bool) -> bool:
    """ngx_http_test_if_match: "*" alone, or one of the listed tags (W/ skipped when weak)."""
    if header == "*":
        return True
    if etag is None:
        return False
    start, end = 0, len(header)
    n = len(etag)
    while start < end:
        if weak and end - start > 2 and header.startswith("W/", start):
            start += 2
        if n > end - start:
            return False
        if header.startswith(etag, start):
            start += n
            while start < end and header[start] in " \t":
                start += 1
            if start == end or header[start] == ",":
                return True
        while start < end and header[start] != ",":
            start += 1
        while start < end and header[start] in " ,":
            start += 1
    return False


def not_modified(r: Request, resp: Response) -> int:
    """ngx_http_not_modified_header_filter: 0, 304 or 412."""
    conf = r.conf
    assert conf is not None
    h = r.headers
    lm = resp.last_modified
    ius = h.get("if-unmodified-since")
    if ius is not None:  # an unparsable date fails the test
        t = parse_http_date(ius)
        if lm is None or t is None or t < lm:
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
        if t != lm and (t is None or conf.if_modified_since == "exact" or t < lm):
            return 0
    if inm is not None and not _etag_matches(inm, resp.etag, True):
        return 0
    return 304


_MAX_OFF = (1 << 63) - 1
_boundary = 0


def _parse_ranges(spec: str, size: int, limit: int | None) -> list[tuple[int, int]] | int:
    """ngx_http_range_parse over what follows "bytes=": [start, end) pairs, or 416, or 0
    (declined: send the whole file)."""
    ranges: list[tuple[int, int]] = []
    total = 0
    p, n = 0, len(spec)
    left = limit if limit is not None else -1

    def at(i: int) -> str:
        return spec[i] if i < n else "\0"

    while True:
        start = end = 0
        suffix = False
        while at(p) == " ":
            p += 1
        if at(p) != "-":
            if not "0" <= at(p) <= "9":
                return 416
            while "0" <= at(p) <= "9":
                start = start * 10 + ord(spec[p]) - 48
                p += 1
                if start > _MAX_OFF:
                    return 416
            while at(p) == " ":
                p += 1
            if at(p) != "-":
                return 416
            p += 1
            while at(p) == " ":
                p += 1
            if at(p) in (",", "\0"):
                end = size
                found = True
            else:
                found = False
        else:
            suffix = True
            p += 1
            found = False
        if not found:
            if not "0" <= at(p) <= "9":
                return 416
            while "0" <= at(p) <= "9":
                end = end * 10 + ord(spec[p]) - 48
                p += 1
                if end > _MAX_OFF:
                    return 416
            while at(p) == " ":
                p += 1
            if at(p) not in (",", "\0"):
                return 416
            if suffix:
                start = size - end if end < size else 0
                end = size - 1
            end = size if end >= size else end + 1
        if start < end:
            ranges.append((start, end))
            total += end - start
            if left == 0:
                return 0
            left -= 1
        elif start == 0:
            return 0
        if at(p) != ",":
            break
        p += 1
    if not ranges:
        return 416
    if total > size:
        return 0
    return ranges


def apply_range(r: Request, resp: Response, size: int, max_ranges: int | None = None
                ) -> Response | Finish | None:
    """ngx_http_range_header_filter: 206 (one range, or multipart/byteranges), 416, or None
    to send the whole file with Accept-Ranges."""
    header = r.headers.get("range")
    if header is None or len(header) < 7 or header[:6].lower() != "bytes=":
        return None
    if_range = r.headers.get("if-range")
    if if_range is not None:
        if len(if_range) >= 2 and if_range.endswith('"'):
            if resp.etag is None or if_range != resp.etag:
                return None
        elif resp.last_modified is None or parse_http_date(if_range) != resp.last_modified:
            return None
    parsed = _parse_ranges(header[6:], size, max_ranges)
    if parsed == 0:
        return None
    if parsed == 416:
        if resp.file_fd is not None:
            os.close(resp.file_fd)
            resp.file_fd = None
        return Finish(416, content_range=f"bytes */{size}")
    assert isinstance(parsed, list)
    resp.status = 206
    if len(parsed) == 1:
        start, end = parsed[0]
        resp.file_offset = start
        resp.file_count = end - start
        resp.content_length = resp.file_count
        resp.headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        return resp
    return _multipart(resp, parsed, size)


def _multipart(resp: Response, ranges: list[tuple[int, int]], size: int) -> Response:
    """ngx_http_range_multipart_header and its body, read into memory (it is never larger
    than the file: nginx declines ranges that add up to more)."""
    global _boundary
    _boundary += 1
    boundary = b"%020d" % _boundary
    fd = resp.file_fd
    assert fd is not None
    part_head = b"\r\n--" + boundary + b"\r\n"
    if resp.content_type:
        part_head += b"Content-Type: " + resp.content_type.encode("latin-1") + b"\r\n"
    part_head += b"Content-Range: bytes "
    out = []
    try:
        for start, end in ranges:
            out.append(part_head + b"%d-%d/%d\r\n\r\n" % (start, end - 1, size))
            out.append(os.pread(fd, end - start, start))
    finally:
        os.close(fd)
        resp.file_fd = None
    out.append(b"\r\n--" + boundary + b"--\r\n")
    resp.body = b"".join(out)
    resp.content_length = len(resp.body)
    resp.file_count = 0
    resp.content_type = "multipart/byteranges; boundary=" + boundary.decode()
    return resp


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
        if base is None:
            return Finish(500)
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
    """ngx_http_autoindex_handler (html format): a listing of unknown length, sent chunked."""
    conf = r.conf
    assert conf is not None
    if not conf.autoindex or not r.uri.endswith("/") or r.method not in ("GET", "HEAD"):
        return None
    r.test_expect()  # ngx_http_discard_request_body
    path = map_uri_to_path(r, r.uri)
    if path is None:
        return Finish(500)
    try:
        if not _confined(r, path):
            return Finish(403)
        entries = []
        with os.scandir(path) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                try:
                    st = e.stat()  # nginx stat()s each entry: a link shows its target's size
                except OSError:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                # but "is a directory" comes from d_type: a link to a directory is not one
                entries.append((os.fsencode(e.name), e.is_dir(follow_symlinks=False),
                                st.st_size, int(st.st_mtime)))
    except FileNotFoundError as e:
        return Finish(404, f'opendir() "{path}" failed ({e.errno}: {e.strerror})')
    except NotADirectoryError as e:
        return Finish(404, f'opendir() "{path}" failed ({e.errno}: {e.strerror})')
    except PermissionError as e:
        return Finish(403, f'opendir() "{path}" failed ({e.errno}: {e.strerror})')
    entries.sort(key=lambda x: (not x[1], x[0]))
    if r.is_head:
        body = b""
    else:
        gmtoff = time.localtime().tm_gmtoff if conf.autoindex_localtime else 0
        body = _autoindex_html(r.uri, entries, conf.autoindex_exact_size, gmtoff)
    return Response(200, body=body, content_type="text/html", unknown_length=True)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HTML_ESC = {ord("<"): "&lt;", ord(">"): "&gt;", ord("&"): "&amp;", ord('"'): "&quot;"}
NAME_LEN = 50  # NGX_HTTP_AUTOINDEX_NAME_LEN


def _escape_html(raw: bytes) -> bytes:
    """ngx_escape_html: < > & and " only."""
    if not any(c in raw for c in b'<>&"'):
        return raw
    return raw.decode("latin-1").translate(_HTML_ESC).encode("latin-1")


def _autoindex_html(uri: str, entries: list[tuple[bytes, bool, int, int]], exact: bool,
                    gmtoff: int) -> bytes:
    """ngx_http_autoindex_html, byte for byte (names measured in bytes: halb sets no charset,
    so nginx's UTF-8 length does not apply)."""
    title = _escape_html(uri.encode("utf-8", "surrogateescape"))
    out = [b"<html>\r\n<head><title>Index of ", title, b"</title></head>\r\n<body>\r\n"
           b"<h1>Index of ", title, b'</h1><hr><pre><a href="../">../</a>\r\n']
    for name, is_dir, size, mtime in entries:
        href = urllib.parse.quote_from_bytes(name, safe="").encode()
        out.append(b'<a href="' + href + (b'/">' if is_dir else b'">'))
        n = len(name)
        if n > NAME_LEN:
            out.append(_escape_html(name[:NAME_LEN - 3]) + b"..&gt;</a>")
        else:
            out.append(_escape_html(name))
            if is_dir and n < NAME_LEN:
                out.append(b"/")
                n += 1
            out.append(b"</a>" + b" " * (NAME_LEN - n))
        t = time.gmtime(mtime + gmtoff)
        out.append(b" %02d-%s-%d %02d:%02d " % (t.tm_mday, _MONTHS[t.tm_mon - 1].encode(),
                                                t.tm_year, t.tm_hour, t.tm_min))
        if exact:
            out.append(b"                  -" if is_dir else b"%19d" % size)
        else:
            out.append(b"      -" if is_dir else _human(size))
        out.append(b"\r\n")
    out.append(b"</pre><hr></body>\r\n</html>\r\n")
    return b"".join(out)


def _human(length: int) -> bytes:
    """nginx's rounded sizes: K above 9999 bytes, M and G above 1 MiB and 1 GiB - 1."""
    for scale, unit in ((1 << 30, b"G"), (1 << 20, b"M")):
        if length > scale - 1:
            size = length // scale + (1 if length % scale > scale // 2 - 1 else 0)
            return b"%6d" % size + unit
    if length > 9999:
        size = length // 1024 + (1 if length % 1024 > 511 else 0)
        return b"%6dK" % size
    return b" %6d" % length


# -- try_files -------------------------------------------------------------------------------


def try_files(r: Request) -> Redirect | Finish | None:
    """ngx_http_core_try_files_phase: the first existing file wins (r.uri is set to it)."""
    conf = r.conf
    assert conf is not None and conf.try_files is not None
    items = conf.try_files
    for t in items[:-1]:
        value = expand(t, r)
        # an item written with a trailing "/" tests a directory, and nginx drops that "/" at
        # configuration time: "$uri/" for /dir sets $uri to /dir (then 301 to /dir/)
        test_dir = t.raw.endswith("/")
        if test_dir:
            value = value[:-1]
        # the path is built from root/alias exactly as for the URI
        path = map_uri_to_path(r, value)
        if path is None:
            return Finish(500)
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
    return Redirect(uri, args if q else None)  # ngx_http_split_args: no "?", no args
