"""proxy_cache for one proxied request (ngx_http_upstream_cache + ngx_http_file_cache), and the
ngx_cache_purge module's location handler.

A CacheRequest rides on its ProxyRequest (l7/proxy.py calls begin / on_head / write / complete /
on_error / finish):
- begin: the method must be in proxy_cache_methods; proxy_cache_bypass → BYPASS (the answer may
  still be stored); else the key's node in the shared keys zone (l7/cache_zone.py) is counted
  and looked up: a fresh file → HIT (served from the file, the stored upstream head goes through
  the same header rules as a live one); an expired one → EXPIRED (kept for
  proxy_cache_use_stale; UPDATING when another request is refreshing it and `updating` is
  listed); none → MISS, stored once proxy_cache_min_uses is reached; with proxy_cache_lock a MISS
  whose key another request is filling waits (checked every 100 ms) until that one is done or
  proxy_cache_lock_timeout passes (then it goes upstream and is not stored).
- Vary: a file whose Vary'd request headers differ from this request's sends the lookup to
  the variant's own key (md5 of the key's md5 and those values, nginx's secondary key); a
  response is stored under that key when its Vary gives the same variant, else under the main
  key (ngx_http_file_cache_update_variant).
- proxy_cache_background_update (with use_stale updating): an EXPIRED file answers at once
  (STALE) while a clientless copy of the request refreshes it (l7/cache_bg.py).
- on_head: a stale answer instead of an http_5xx/403/404 listed in use_stale; else whether the
  response is cached (cache_rules.validity, proxy_no_cache, proxy_buffering) and, if so, a
  temporary file next to the final one gets the header;
- write: each piece of the body as it streams to the client (nothing is held in memory);
- complete: the temporary file is renamed into place and the zone learns its size and validity;
- proxy_cache_revalidate: an EXPIRED file with a Last-Modified or an ETag sends them up as
  If-Modified-Since / If-None-Match ($upstream_cache_last_modified, $upstream_cache_etag); a
  304 answer → REVALIDATED: the file's validity is rewritten in place (from the 304's headers,
  else proxy_cache_valid for 304) and the file is the answer;
- on_error: a stale answer instead of an error/timeout/invalid_header listed in use_stale;
- finish: whatever is left (an unfinished temporary file is removed, the fill marker released).

The request is sent upstream without If-Unmodified-Since, If-Match, Range, If-Range and
the client's If-Modified-Since and If-None-Match (nginx's cache headers), a HEAD as a GET
(proxy_cache_convert_head).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from halb.balancing import Outcome
from halb.config.nginx_cache import DEFAULT_KEY
from halb.l7 import handler
from halb.l7.body import OVER, STREAM
from halb.l7.cache_bg import refresh
from halb.l7.cache_purge import allowed, purge, zone_for
from halb.l7.cache_rules import (
    decode_header,
    encode_header,
    head_block,
    http_time,
    md5_key,
    predicates,
    validity,
    validity_update,
    variant,
)
from halb.l7.cache_zone import CacheZone
from halb.l7.proxy_response import DONE, ResponseHead, parse_head
from halb.l7.response import Response, http_date
from halb.l7.static import Finish, not_modified
from halb.l7.variables import VARIABLES, expand

if TYPE_CHECKING:
    from halb.l7.proxy import ProxyRequest
    from halb.l7.request import Request

PIECE = 64 * 1024
LOCK_POLL = 0.1
STATUS_FT = {500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504",
             403: "http_403", 404: "http_404", 429: "http_429"}
_seq = itertools.count(1)


class CacheConf:
    """A location's cache settings, resolved once."""

    __slots__ = ("background_update", "bypass", "convert_head", "extra", "ignore", "key", "lock",
                 "lock_age", "lock_timeout", "methods", "min_uses", "no_cache", "purge_method",
                 "revalidate",
                 "use_stale", "valid", "zone")

    def __init__(self, extra: Mapping[str, Any]) -> None:
        self.extra = extra
        get = extra.get
        self.zone: str = get("proxy_cache")
        self.key = get("proxy_cache_key", DEFAULT_KEY)
        self.valid: tuple[tuple[int, int], ...] = get("proxy_cache_valid", ())
        self.use_stale: frozenset[str] = get("proxy_cache_use_stale", frozenset())
        self.lock: bool = get("proxy_cache_lock", False)
        self.lock_timeout: float = get("proxy_cache_lock_timeout", 5.0)
        self.lock_age: float = get("proxy_cache_lock_age", 5.0)
        self.bypass: tuple[Any, ...] = get("proxy_cache_bypass", ())
        self.no_cache: tuple[Any, ...] = get("proxy_no_cache", ())
        self.methods: frozenset[str] = get("proxy_cache_methods", frozenset({"GET", "HEAD"}))
        self.min_uses: int = get("proxy_cache_min_uses", 1)
        self.convert_head: bool = get("proxy_cache_convert_head", True)
        self.revalidate: bool = get("proxy_cache_revalidate", False)
        self.purge_method: tuple[str, Any] | None = get("proxy_cache_purge_method")
        self.background_update: bool = get("proxy_cache_background_update", False)
        self.ignore: frozenset[str] = get("proxy_ignore_headers", frozenset())


_CONFS: dict[int, CacheConf] = {}
# the header and parsed head of cache files served lately, by (device, inode, mtime, size):
# a file rewritten (revalidated) or replaced has another key
HEADS: dict[tuple[int, int, int, int], tuple[Any, ResponseHead | None]] = {}


def conf_for(extra: Mapping[str, Any]) -> CacheConf:
    cc = _CONFS.get(id(extra))
    if cc is None or cc.extra is not extra:
        if len(_CONFS) > 4096:
            _CONFS.clear()
        cc = _CONFS[id(extra)] = CacheConf(extra)
    return cc


class CacheRequest:
    __slots__ = ("cc", "converted", "digest", "fd", "ft", "ident", "key", "main", "owner",
                 "path", "proxy", "reval", "secondary", "sfd", "size", "sleft", "soff", "stale",
                 "status", "store", "timer", "tmp", "valid", "waited", "zone")

    def __init__(self, proxy: ProxyRequest, zone: CacheZone, cc: CacheConf) -> None:
        self.proxy = proxy
        self.zone = zone
        self.cc = cc
        self.status: str | None = None
        self.converted = cc.convert_head and proxy.r.method == "HEAD"
        self.key = ""
        self.digest = b""
        self.path = ""
        self.store = False
        self.owner = 0  # our fill marker in the zone (0: none)
        self.fd = -1  # the temporary file being written
        self.tmp = ""
        self.valid = 0
        self.main = b""  # the md5 of the key (digest: the same, or a variant's)
        self.secondary = False  # digest is a variant's key (Vary)
        self.reval: tuple[str | None, str | None] | None = None  # (Last-Modified, ETag) sent
        self.stale: tuple[int, Any] | None = None  # (fd, FileHeader) of an expired file
        self.sfd = -1  # the file being served
        self.soff = 0
        self.sleft = 0
        self.ft: str | None = None
        self.ident: tuple[int, int, int, int] | None = None  # the file served (HEADS' key)
        self.size = 0
        self.timer: Any = None
        self.waited = 0.0

    # -- the lookup ---------------------------------------------------------------------------

    def lookup(self, count: bool = True) -> object | None:
        """None: go upstream; handler.PENDING: answered from the cache, or waiting."""
        zone = self.zone
        cc = self.cc
        now = time.monotonic()
        with zone:
            node = zone.lookup(self.digest, now, count)
        if node is None:  # no room in the zone: the manager will make some
            self.status = "MISS"
            return None
        if node.valid or zone.cold:  # cold: the loader may not have reached the file yet
            looked = self.digest
            opened = self._open(bool(node.valid))
            if opened is None and self.digest != looked:  # another variant is stored here
                return self.lookup(count)
            if opened is not None:
                fd, h = opened
                if not node.valid:  # found before the loader: enter it now
                    with zone:
                        zone.stored(self.digest, h.valid_sec, os.fstat(fd).st_size, now)
                if h.valid_sec >= int(time.time()):
                    self._serve(fd, h, "HIT")
                    return handler.PENDING
                self.stale = (fd, h)
                if "updating" in cc.use_stale and node.fill_pid and \
                        node.fill_pid != self.owner and \
                        now - node.fill_time < max(cc.lock_age, 60.0):
                    self.stale = None
                    self._serve(fd, h, "UPDATING")
                    return handler.PENDING
                if cc.background_update and "updating" in cc.use_stale:
                    self.stale = None
                    self._take_fill(now)
                    self._serve(fd, h, "STALE")
                    refresh(self)  # the fill marker goes with it
                    return handler.PENDING
                self.status = "EXPIRED"
                if cc.revalidate:
                    self._revalidate(h)
                self._take_fill(now)
                return None
        self.status = "MISS"
        if node.uses < cc.min_uses:
            return None
        if cc.lock and node.fill_pid and now - node.fill_time < cc.lock_age:
            if self.waited < cc.lock_timeout:
                self.timer = self.proxy.loop.call_later(LOCK_POLL, self._retry)
                return handler.PENDING
            return None  # waited long enough: upstream, and not stored
        self._take_fill(now)
        return None

    def _revalidate(self, h: Any) -> None:
        st, head, _ = parse_head(h.head_block, len(h.head_block) + 1)
        etag = head.get("etag") if st == DONE and head is not None else None
        lm = http_date(h.last_modified) if h.last_modified >= 0 else None
        if lm is not None or etag is not None:
            self.reval = (lm, etag)

    def _take_fill(self, now: float) -> None:
        self.owner = (os.getpid() << 32) | (next(_seq) & 0xFFFFFFFF)
        self.store = True
        with self.zone:
            node = self.zone.peek(self.digest)
            if node is not None:
                self.zone.set_fill(node.slot, self.owner, now)

    def _retry(self) -> None:
        self.timer = None
        self.waited += LOCK_POLL
        proxy = self.proxy
        if proxy.phase == OVER:
            return
        try:
            if self.lookup(count=False) is None:
                proxy.start()
        except Exception as e:
            proxy.crashed(e)

    def _open(self, known: bool = True) -> tuple[int, Any] | None:
        """The key's file and its header (None: gone, damaged, another key or variant);
        `known`: the zone says there is one (forgotten when there is not)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            if known:
                with self.zone:
                    self.zone.forget(self.digest)
            return None
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            known_head = HEADS.get(ident)
            if known_head is not None:
                h = known_head[0]
            else:
                data = os.pread(fd, 4096, 0)
                h = decode_header(data)
                if h is not None and h.body_start > len(data):
                    # a damaged header may claim more than the file holds (up to 4 GiB)
                    h = decode_header(os.pread(fd, h.body_start, 0)) \
                        if h.body_start <= st.st_size else None
                if h is not None and h.head_block:
                    if len(HEADS) >= 1024:
                        HEADS.clear()
                    HEADS[ident] = (h, None)
            self.ident = ident
            self.size = st.st_size
            if h is None or not h.head_block or h.key != self.key:
                os.close(fd)
                return None
            if h.vary:
                want = variant(h.vary, self.proxy.r.headers, self.main)
                if want != h.variant:
                    os.close(fd)
                    if not self.secondary:  # look for this request's variant (Vary) next
                        self.secondary = True
                        self.digest = want
                        self.path = self.zone.path_of(want)
                    return None
        except OSError:
            os.close(fd)
            return None
        return fd, h

    # -- answering from a file ----------------------------------------------------------------

    def _serve(self, fd: int, h: Any, status: str) -> None:
        """Answer from a cache file, on the next turn of the loop (never inside the phase
        that called us, so the connection sees an ordinary asynchronous answer)."""
        self.status = status
        self.sfd = fd
        self.proxy.phase = STREAM
        self.proxy.loop.call_soon(self._start_serving, h)

    def _start_serving(self, h: Any) -> None:
        proxy = self.proxy
        fd = self.sfd
        if fd < 0:  # the client went away meanwhile
            return
        try:
            r = proxy.r
            known = HEADS.get(self.ident) if self.ident is not None else None
            head = known[1] if known is not None and known[0] is h else None
            if head is None:
                st, head, _ = parse_head(h.head_block, len(h.head_block) + 1)
                if st != DONE or head is None:
                    raise ValueError(f"cache file {self.path} has a damaged header")
                if known is not None and known[0] is h:
                    HEADS[self.ident] = (h, head)  # type: ignore[index]
            size = self.size
            proxy.resp = head  # its own Content-Length, or none (chunked to the client)
            if head.status == 200 and not r.err_status:
                code = _not_modified(r, head, h.last_modified)
                if code == 412:
                    self._close_served()
                    proxy._over()
                    proxy.conn.finish_request(r, Finish(412, close=True))
                    return
                if code == 304:
                    head = proxy.resp = _to_304(head)
            self.soff = h.body_start
            self.sleft = 0 if r.is_head or head.status in (204, 304) else size - h.body_start
            proxy._send_head(head)
            proxy.conn.on_writable = self._pump
            self._pump()
        except Exception as e:
            self._close_served()
            proxy.crashed(e)

    def _pump(self) -> None:
        proxy = self.proxy
        conn = proxy.conn
        r = proxy.r
        fd = self.sfd
        if fd < 0:
            return
        tail = b""
        while self.sleft > 0:
            try:
                data = os.pread(fd, min(self.sleft, PIECE), self.soff)
            except OSError:
                data = b""
            if not data:  # the file shrank (purged and reused): the answer cannot complete
                self._close_served()
                proxy._over()
                conn.stream_abort(r)
                return
            self.soff += len(data)
            self.sleft -= len(data)
            if self.sleft == 0:
                tail = data
                break
            if not conn.stream_body(r, data):
                return  # resumed by the client's writability
        self._close_served()
        proxy._over()
        conn.stream_end(r, tail)

    def _close_served(self) -> None:
        if self.sfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.sfd)
            self.sfd = -1

    # -- storing ------------------------------------------------------------------------------

    def on_head(self, head: ResponseHead, rest: bytes) -> bool:
        """The upstream's header came. True when a stale answer was sent instead."""
        proxy = self.proxy
        cc = self.cc
        ft = STATUS_FT.get(head.status)
        if ft is not None and self.stale is not None and ft in cc.use_stale:
            fd, h = self.stale
            self.stale = None
            proxy._done_with_upstream(head, rest or b"-", Outcome.SUCCESS)
            self._serve(fd, h, "STALE")
            return True
        if head.status == 304 and self.reval is not None and self.stale is not None:
            return self._revalidated(head, rest)
        if not self.store or not proxy.buffering:
            return False
        r = proxy.r
        if cc.no_cache and predicates([expand(t, r) for t in cc.no_cache]):
            return False
        wall = int(time.time())
        valid, _why = validity(head.status, head.headers, head.lows, cc.valid, cc.ignore, wall)
        if not valid:
            return False
        vary = "" if "vary" in cc.ignore else (head.get("vary") or "")
        var = variant(vary, r.headers, self.main)
        if self.secondary and var != self.digest:  # no Vary, or another: the main key's file
            self.secondary = False
            self.digest = self.main
            self.path = self.zone.path_of(self.main)
        lm = head.get("last-modified")
        modified = http_time(lm) if lm else None
        block = head_block(head.status_line, head.version, head.headers)
        data = encode_header(valid, wall, modified if modified is not None else -1,
                             head.status, self.key, vary, var, block)
        tmp = f"{self.path}.{os.getpid()}.{next(_seq)}"
        try:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            proxy.conn.log_error("crit", f'open() "{tmp}" failed ({e.errno}: {e.strerror})', r)
            return False
        self.fd = fd
        self.tmp = tmp
        self.valid = valid
        self._write(data)
        return False

    def _revalidated(self, head: ResponseHead, rest: bytes) -> bool:
        """The upstream says the expired file is still good (ngx_http_upstream_process_headers'
        "http upstream not modified")."""
        proxy = self.proxy
        fd, h = self.stale  # type: ignore[misc]
        self.stale = None
        proxy._done_with_upstream(head, rest, Outcome.SUCCESS)
        wall = int(time.time())
        valid, _ = validity(304, head.headers, head.lows, self.cc.valid, self.cc.ignore, wall)
        if valid:
            offset, data = validity_update(valid, wall)
            try:
                wfd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.pwrite(wfd, data, offset)
                finally:
                    os.close(wfd)
                with self.zone:
                    self.zone.stored(self.digest, valid, os.fstat(fd).st_size,
                                     time.monotonic())
            except OSError as e:
                proxy.conn.log_error("crit", f'cannot update "{self.path}" ({e.errno}: '
                                             f"{e.strerror})", proxy.r)
        self._serve(fd, h, "REVALIDATED")
        return True

    def _write(self, data: bytes) -> bool:
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as e:
            self.proxy.conn.log_error("crit", f'write() "{self.tmp}" failed ({e.errno}: '
                                              f"{e.strerror})", self.proxy.r)
            self._drop_tmp()
            return False
        return True

    def write(self, data: bytes) -> None:
        if self.fd >= 0 and data:
            self._write(data)

    def complete(self, ok: bool) -> None:
        """The whole body was read (ok: cleanly)."""
        if self.fd < 0:
            return
        if not ok:
            self._drop_tmp()
            return
        fd = self.fd
        self.fd = -1
        try:
            size = os.fstat(fd).st_size
            os.close(fd)
            os.rename(self.tmp, self.path)
        except OSError as e:
            self.proxy.conn.log_error("crit", f'rename() "{self.tmp}" to cache file failed '
                                              f"({e.errno}: {e.strerror})", self.proxy.r)
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            return
        with self.zone:
            self.zone.stored(self.digest, self.valid, size, time.monotonic())
        self.owner = 0

    def _drop_tmp(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)

    # -- failures and the end -----------------------------------------------------------------

    def on_error(self, status: int) -> bool:
        """The upstream failed for good: True when a stale answer was sent instead."""
        ft = self.ft or "error"
        if self.stale is None or ft not in self.cc.use_stale:
            return False
        fd, h = self.stale
        self.stale = None
        self.proxy._over()
        self._serve(fd, h, "STALE")
        return True

    def finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._drop_tmp()
        self._close_served()
        if self.stale is not None:
            with contextlib.suppress(OSError):
                os.close(self.stale[0])
            self.stale = None
        if self.owner:
            with self.zone:
                node = self.zone.peek(self.digest)
                if node is not None and node.fill_pid == self.owner:
                    self.zone.set_fill(node.slot, 0, 0.0)
            self.owner = 0


def begin(proxy: ProxyRequest, zone_name: Any) -> object | None:
    """Called by proxy_pass before going upstream: None to go on, else the handler's answer.
    `zone_name` is a name, or a template (proxy_cache with variables)."""
    r = proxy.r
    conf = r.conf
    assert conf is not None
    if not isinstance(zone_name, str):
        zone_name = expand(zone_name, r)
        if not zone_name or zone_name == "off":
            return None
        if zone_for(r, zone_name) is None:
            r.conn.log_error("error", f'cache "{zone_name}" not found', r)
            return Finish(500)
    cc = conf_for(conf.extra)
    pm = cc.purge_method
    if pm is not None and r.method == pm[0]:  # ngx_cache_purge's method form
        nets = pm[1]
        if nets is not None and not allowed(r.conn.remote_addr, nets):
            return Finish(403)
        return purge(r, (zone_name, cc.key))
    if r.method not in cc.methods:
        return None
    zone = zone_for(r, zone_name)
    if zone is None:
        return None
    c = CacheRequest(proxy, zone, cc)
    proxy.cache = c
    c.key = expand(cc.key, r)
    c.digest = c.main = md5_key(c.key)
    c.path = zone.path_of(c.digest)
    if cc.bypass and predicates([expand(t, r) for t in cc.bypass]):
        c.status = "BYPASS"
        c.store = True  # its answer may still be stored; it holds no fill marker (no lock)
        return None
    return c.lookup()


def _not_modified(r: Request, head: ResponseHead, last_modified: int) -> int:
    """ngx_http_not_modified_filter on a cached 200: 0, 304 or 412."""
    probe = Response(200, last_modified=float(last_modified) if last_modified >= 0 else None,
                     etag=head.get("etag"))
    return not_modified(r, probe)


def _to_304(stored: ResponseHead) -> ResponseHead:
    """The header nginx sends for a 304 from the cache: no type, no length (a new head: the
    stored one is shared through HEADS)."""
    head = ResponseHead()
    for name in ResponseHead.__slots__:
        setattr(head, name, getattr(stored, name))
    keep = [i for i, low in enumerate(stored.lows) if low not in ("content-type",
                                                                   "content-length")]
    head.headers = [stored.headers[i] for i in keep]
    head.lows = [stored.lows[i] for i in keep]
    head.status = 304
    head.status_line = "304 Not Modified"
    head.content_length = -1
    head.chunked = False
    return head


def _cache_status(r: Request) -> str | None:
    proxy = r.proxy
    c = getattr(proxy, "cache", None) if proxy is not None else None
    return c.status if c is not None else None


def _reval(i: int) -> Any:
    def get(r: Request) -> str | None:
        proxy = r.proxy
        c = getattr(proxy, "cache", None) if proxy is not None else None
        return c.reval[i] if c is not None and c.reval is not None else None

    return get


VARIABLES["upstream_cache_status"] = _cache_status
VARIABLES["upstream_cache_last_modified"] = _reval(0)
VARIABLES["upstream_cache_etag"] = _reval(1)
