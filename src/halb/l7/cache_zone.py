"""A proxy cache's keys zone shared by every worker, its loader and its manager.

nginx keeps one node per cached key in the keys zone (shared memory): the key's md5, how many
requests asked for it (proxy_cache_min_uses), until when its file is fresh, the file's size, when
it expires for being unused (inactive), and whether a request is filling it (proxy_cache_lock,
proxy_cache_use_stale updating). halb keeps the same in an anonymous shared mmap made by the
master before it forks the workers (so all of them map the same pages), an open-addressing table
of fixed slots (about 8k per MB of keys_zone, as nginx), under a cross-process POSIX semaphore;
the holder's pid is recorded so a worker that dies holding it does not wedge the others.

The files are the truth that survives a restart: the loader (`load`; in a child of the master,
nginx's "cache loader process", while the workers already serve: until it is done the zone is
cold and a lookup that finds no node looks for the file) walks the cache directory, drops
temporary and foreign files, and enters every valid cache file with its size and validity. The
manager (`manage`, called from the master's loop) removes entries unused for `inactive` and,
while the files take more than max_size (or the file system has less than min_free left), the
least recently used ones (nginx's LRU queue: here the oldest access times), unlinking their
files. `ZONES` is the registry the workers find zones in (filled in the master before fork).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping

from halb.balancing.shared import Segment
from halb.config.errors import ConfigError
from halb.config.nginx_cache import CachePath
from halb.l7.cache_rules import HEADER_MIN, decode_header

NSLOTS, COUNT, TOTAL, USED, COLD = range(1, 6)  # word 0: Segment's HOLDER
HEADER_WORDS = 8
STRIDE = 10
# slot words
STATE, K1, K2, USES, VALID, SIZE, FILL_PID, FILL_TIME, EXPIRE, ACCESS = range(10)
EMPTY, LIVE, GONE = 0, 1, 2
CHUNK = 4096  # slots the manager walks per taking of the lock
SLOT_BYTES = 128  # keys per byte of keys_zone, as nginx's ~8k per MB
MAX_SLOTS = 1 << 20

def _k(digest: bytes) -> tuple[int, int]:
    return (int.from_bytes(digest[:8], "little", signed=True),
            int.from_bytes(digest[8:], "little", signed=True))


class Node:
    """A copy of one slot's fields, read under the lock."""

    __slots__ = ("fill_pid", "fill_time", "size", "slot", "uses", "valid")

    def __init__(self, slot: int, uses: int, valid: int, size: int, fill_pid: int,
                 fill_time: float) -> None:
        self.slot = slot
        self.uses = uses
        self.valid = valid
        self.size = size
        self.fill_pid = fill_pid
        self.fill_time = fill_time


class CacheZone(Segment):
    """One keys zone (proxy_cache_path): the table, its lock, and the path's settings."""

    def __init__(self, cp: CachePath) -> None:
        self.cp = cp
        self.name = cp.name
        slots = max(64, min(MAX_SLOTS, cp.size // SLOT_BYTES))
        self.slots = slots
        super().__init__(HEADER_WORDS + slots * STRIDE, "cache")
        self.ints[NSLOTS] = slots
        self.ints[COLD] = 1  # until the loader has entered the files
        self.last_manage = 0.0
        self.next_inactive = 0.0
        self.next_walk = 0.0

    def same(self, cp: CachePath) -> bool:
        """A reload keeps a zone whose path and size did not change (nginx reuses it)."""
        c = self.cp
        return (c.path, c.size, c.levels) == (cp.path, cp.size, cp.levels)

    # -- slots (call under the lock) ----------------------------------------------------------

    def _find(self, digest: bytes, create: bool) -> int:
        """The slot of a key (-1: absent, or no room to create it)."""
        k1, k2 = _k(digest)
        ints = self.ints
        n = self.slots
        i = k1 % n
        free = -1
        for _ in range(n):
            base = HEADER_WORDS + i * STRIDE
            state = ints[base + STATE]
            if state == EMPTY:
                break
            if state == LIVE and ints[base + K1] == k1 and ints[base + K2] == k2:
                return i
            if state == GONE and free < 0:
                free = i
            i = (i + 1) % n
        else:
            if free < 0:
                return -1
        if not create:
            return -1
        if free < 0:
            if ints[USED] >= n * 7 // 8:
                return -1  # full: the manager frees slots
            free = i
        base = HEADER_WORDS + free * STRIDE
        if ints[base + STATE] == EMPTY:
            ints[USED] += 1
        for w in range(STRIDE):
            ints[base + w] = 0
        ints[base + K1] = k1
        ints[base + K2] = k2
        ints[base + STATE] = LIVE
        ints[COUNT] += 1
        return free

    def node(self, slot: int) -> Node:
        base = HEADER_WORDS + slot * STRIDE
        ints, floats = self.ints, self.floats
        return Node(slot, ints[base + USES], ints[base + VALID], ints[base + SIZE],
                    ints[base + FILL_PID], floats[base + FILL_TIME])

    def lookup(self, digest: bytes, now: float, count_use: bool = True) -> Node | None:
        """The key's node (created when absent), its use counted and its access time moved."""
        slot = self._find(digest, True)
        if slot < 0:
            return None
        base = HEADER_WORDS + slot * STRIDE
        if count_use:
            self.ints[base + USES] += 1
        self.floats[base + EXPIRE] = now + self.cp.inactive
        self.floats[base + ACCESS] = now
        return self.node(slot)

    def peek(self, digest: bytes) -> Node | None:
        slot = self._find(digest, False)
        return self.node(slot) if slot >= 0 else None

    def set_fill(self, slot: int, pid: int, now: float) -> None:
        base = HEADER_WORDS + slot * STRIDE
        self.ints[base + FILL_PID] = pid
        self.floats[base + FILL_TIME] = now

    def stored(self, digest: bytes, valid: int, size: int, now: float) -> None:
        """A new file is in place: its validity and size (the old file's size is replaced)."""
        slot = self._find(digest, True)
        if slot < 0:
            return
        base = HEADER_WORDS + slot * STRIDE
        ints = self.ints
        ints[TOTAL] += size - ints[base + SIZE]
        ints[base + SIZE] = size
        ints[base + VALID] = valid
        ints[base + FILL_PID] = 0
        self.floats[base + EXPIRE] = now + self.cp.inactive
        self.floats[base + ACCESS] = now

    def release_fill(self, digest: bytes, pid: int) -> None:
        slot = self._find(digest, False)
        if slot >= 0:
            base = HEADER_WORDS + slot * STRIDE
            if self.ints[base + FILL_PID] == pid:
                self.ints[base + FILL_PID] = 0

    def forget(self, digest: bytes) -> int:
        """The key's file is gone (purged, or found missing): the size it had."""
        slot = self._find(digest, False)
        if slot < 0:
            return 0
        return self._drop(slot)

    def _drop(self, slot: int) -> int:
        base = HEADER_WORDS + slot * STRIDE
        ints = self.ints
        size = ints[base + SIZE]
        ints[TOTAL] -= size
        ints[base + STATE] = GONE
        ints[COUNT] -= 1
        return size

    @property
    def cold(self) -> bool:
        """The loader has not finished: a key without a node may still have a file."""
        return bool(self.ints[COLD])

    @property
    def total(self) -> int:
        return self.ints[TOTAL]

    @property
    def count(self) -> int:
        return self.ints[COUNT]

    def clear_fills(self, pid: int) -> None:
        ints = self.ints
        for i in range(self.slots):
            base = HEADER_WORDS + i * STRIDE
            if ints[base + STATE] == LIVE and ints[base + FILL_PID] == pid:
                ints[base + FILL_PID] = 0

    def _compact(self) -> None:
        """Rebuild the table without its tombstones (under the lock)."""
        live = []
        ints, floats = self.ints, self.floats
        for i in range(self.slots):
            base = HEADER_WORDS + i * STRIDE
            if ints[base + STATE] == LIVE:
                live.append(([ints[base + w] for w in range(STRIDE)],
                             [floats[base + w] for w in (FILL_TIME, EXPIRE, ACCESS)]))
        for w in range(HEADER_WORDS, HEADER_WORDS + self.slots * STRIDE):
            ints[w] = 0
        ints[USED] = ints[COUNT] = 0
        total = ints[TOTAL]
        for words, fl in live:
            digest = (words[K1].to_bytes(8, "little", signed=True)
                      + words[K2].to_bytes(8, "little", signed=True))
            slot = self._find(digest, True)
            base = HEADER_WORDS + slot * STRIDE
            for w in range(STRIDE):
                ints[base + w] = words[w]
            for w, v in zip((FILL_TIME, EXPIRE, ACCESS), fl, strict=True):
                floats[base + w] = v
        ints[TOTAL] = total

    # -- the loader ---------------------------------------------------------------------------

    def path_of(self, digest: bytes) -> str:
        from halb.l7.cache_rules import file_path

        return file_path(self.cp.path, self.cp.levels, digest)

    def load(self, ids: tuple[int, int] | None = None) -> int:
        """Enter every cache file under the path (nginx's cache loader); remove temporary
        files and files that are not cache files. The directories are given to the workers'
        user (`ids`), as nginx's ngx_create_paths does. Returns the number of files entered."""
        root = self.make_path(ids)
        now = time.monotonic()
        wall = time.time()
        found = 0
        for dirpath, _dirs, files in os.walk(root):
            if ids is not None:
                with contextlib.suppress(OSError):
                    os.chown(dirpath, ids[0], ids[1])
            for name in files:
                p = os.path.join(dirpath, name)
                if len(name) != 32 or not _is_hex(name):
                    with contextlib.suppress(OSError):
                        os.unlink(p)  # a temporary file a dead worker left
                    continue
                try:
                    with open(p, "rb") as f:
                        head = f.read(HEADER_MIN)
                        size = os.fstat(f.fileno()).st_size
                        st_atime = os.fstat(f.fileno()).st_mtime
                except OSError:
                    continue
                h = decode_header(head)
                if h is None or h.body_start > size:
                    with contextlib.suppress(OSError):
                        os.unlink(p)
                    continue
                digest = bytes.fromhex(name)
                with self:
                    self.stored(digest, h.valid_sec, size, now - max(0.0, wall - st_atime))
                found += 1
        self.ints[COLD] = 0
        return found

    def make_path(self, ids: tuple[int, int] | None = None) -> str:
        """Create the cache directory, given to the workers' user (nginx's ngx_create_paths)."""
        root = self.cp.path
        try:
            os.makedirs(root, exist_ok=True)
            if ids is not None:
                os.chown(root, ids[0], ids[1])
        except OSError as e:
            raise ConfigError(f'mkdir() "{root}" failed ({e.errno}: {e.strerror})',
                              level="emerg") from None
        return root

    # -- the manager --------------------------------------------------------------------------

    def manage(self, now: float, force: bool = False) -> list[str]:
        """Expire inactive entries and bring the files under max_size (LRU). Returns the
        paths it removed. The table is walked in chunks, the lock taken per chunk, so workers
        never wait for a whole walk; an unforced walk waits at least ten times as long as the
        last one took (the manager stays under a tenth of a core however big the zone)."""
        cp = self.cp
        short = self._short_of_space()
        over = (cp.max_size and self.ints[TOTAL] > cp.max_size) or short > 0
        full = self.ints[USED] >= self.slots * 7 // 8
        if not force and (now < self.next_walk or
                          not (over or full or now >= self.next_inactive)):
            return []
        started = time.monotonic()
        removed: list[str] = []
        rest: list[tuple[float, int, bytes]] = []
        soonest = now + cp.inactive
        ints, floats = self.ints, self.floats
        for first in range(0, self.slots, CHUNK):
            with self:
                for slot in range(first, min(first + CHUNK, self.slots)):
                    base = HEADER_WORDS + slot * STRIDE
                    if ints[base + STATE] != LIVE or ints[base + FILL_PID]:
                        continue
                    digest = (ints[base + K1].to_bytes(8, "little", signed=True)
                              + ints[base + K2].to_bytes(8, "little", signed=True))
                    expire = floats[base + EXPIRE]
                    if expire <= now:
                        self._drop(slot)
                        removed.append(self.path_of(digest))
                    else:
                        soonest = min(soonest, expire)
                        rest.append((floats[base + ACCESS], slot, digest))
        if over or full:
            rest.sort()
            target = self.slots * 3 // 4
            with self:
                for access, slot, digest in rest:
                    if not ((cp.max_size and ints[TOTAL] > cp.max_size)
                            or ints[COUNT] > target or short > 0):
                        break
                    base = HEADER_WORDS + slot * STRIDE
                    if ints[base + STATE] != LIVE or ints[base + FILL_PID] or \
                            floats[base + ACCESS] != access:
                        continue  # used or refilled since the walk
                    short -= self._drop(slot)
                    removed.append(self.path_of(digest))
        with self:
            if ints[USED] - ints[COUNT] > self.slots // 4:
                self._compact()
        took = time.monotonic() - started
        self.next_inactive = soonest
        self.next_walk = now + 10 * took
        for p in removed:
            with contextlib.suppress(OSError):
                os.unlink(p)
        return removed

    def _short_of_space(self) -> int:
        """min_free: how many bytes the file system lacks (0: enough, or not set)."""
        if not self.cp.min_free:
            return 0
        try:
            st = os.statvfs(self.cp.path)
        except OSError:
            return 0
        return max(0, self.cp.min_free - st.f_bavail * st.f_frsize)


def _is_hex(name: str) -> bool:
    return all(c in "0123456789abcdef" for c in name)


# -- the registry -----------------------------------------------------------------------------

ZONES: dict[str, CacheZone] = {}


def open_zones(paths: Mapping[str, CachePath] | None, ids: tuple[int, int] | None = None,
               load: bool = True) -> dict[str, CacheZone]:
    """The zones of a configuration: kept when unchanged (a reload), else made, their
    directories created, and loaded (or left cold for load_cold). Called by the master before
    forking (and by a single process on first use)."""
    paths = paths or {}
    out: dict[str, CacheZone] = {}
    for name, cp in paths.items():
        zone = ZONES.get(name)
        if zone is None or not zone.same(cp):
            zone = CacheZone(cp)
            if load:
                zone.load(ids)
            else:
                zone.make_path(ids)
        else:
            zone.cp = cp  # inactive / max_size may have changed
        out[name] = zone
    ZONES.clear()
    ZONES.update(out)
    return out


def load_cold(ids: tuple[int, int] | None = None) -> int:
    """The cache loader (a child of the master): enter the files of every cold zone."""
    return sum(zone.load(ids) for zone in ZONES.values() if zone.cold)


def manage_all(now: float) -> None:
    for zone in ZONES.values():
        if now - zone.last_manage >= 1.0:
            zone.last_manage = now
            zone.manage(now)


def worker_exited(pid: int) -> list[str]:
    """A worker died: free a lock it held and its fill markers (names of unlocked zones)."""
    out = []
    for zone in ZONES.values():
        if zone.force_unlock(pid):
            out.append(zone.name)
        with zone:
            zone.clear_fills(pid)
    return out
