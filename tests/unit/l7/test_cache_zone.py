"""The keys zone (l7/cache_zone.py) without a server: counting uses, fill markers, sizes, the
manager's inactive expiry and LRU eviction to max_size, a full table, tombstone compaction,
the loader rebuilding the zone from the files (and removing what is not a cache file), and
a worker that died holding the lock."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx_cache import CachePath
from halb.l7.cache_rules import encode_header, head_block, md5_key
from halb.l7.cache_zone import ZONES, CacheZone, load_cold, open_zones


def _zone(tmp: Path, **kw: object) -> CacheZone:
    return CacheZone(CachePath(str(tmp), "z", 8 * 4096, (1, 2), **kw))  # type: ignore[arg-type]


def _store(zone: CacheZone, key: str, size: int, now: float, valid: int = 2_000_000_000
           ) -> str:
    digest = md5_key(key)
    path = zone.path_of(digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = encode_header(valid, 0, -1, 200, key, "", bytes(16), head_block("200 OK", 11, []))
    Path(path).write_bytes(data.ljust(size, b"x"))
    with zone:
        zone.lookup(digest, now)
        zone.stored(digest, valid, size, now)
    return path


def test_uses_fill_and_sizes(tmp_path: Path) -> None:
    zone = _zone(tmp_path)
    d = md5_key("a")
    with zone:
        n1 = zone.lookup(d, 10.0)
        n2 = zone.lookup(d, 11.0)
        assert n1 is not None and n2 is not None
        assert (n1.uses, n2.uses, n2.valid, n2.size) == (1, 2, 0, 0)
        zone.set_fill(n2.slot, 77, 11.0)
        node = zone.peek(d)
        assert node is not None and node.fill_pid == 77
        zone.stored(d, 123, 1000, 12.0)
        node = zone.peek(d)
        assert node is not None and (node.valid, node.size, node.fill_pid) == (123, 1000, 0)
        assert zone.total == 1000
        zone.stored(d, 124, 400, 12.0)  # a new file replaces the old one's size
        assert zone.total == 400
        assert zone.forget(d) == 400
        assert zone.total == 0 and zone.peek(d) is None
    zone.close()


def test_manager_inactive_and_max_size(tmp_path: Path) -> None:
    zone = _zone(tmp_path, inactive=10.0, max_size=3000)
    paths = [_store(zone, f"k{i}", 1000, now=100.0 + i) for i in range(5)]
    assert zone.total == 5000
    removed = zone.manage(105.0)
    # the two least recently used go, the three newest stay (3000 <= max_size)
    assert sorted(removed) == sorted(paths[:2])
    assert [os.path.exists(p) for p in paths] == [False, False, True, True, True]
    assert zone.total == 3000
    with zone:  # an access moves k2 to the front of the LRU order
        zone.lookup(md5_key("k2"), 106.0)
    _store(zone, "k5", 1000, now=107.0)
    removed = zone.manage(107.5)
    assert removed == [paths[3]]
    # inactive: unused for 10 s → removed, whatever the size
    removed = zone.manage(200.0)
    assert len(removed) == 3 and zone.total == 0 and zone.count == 0
    zone.close()


def test_full_table_and_compaction(tmp_path: Path) -> None:
    zone = _zone(tmp_path, inactive=1000.0)
    n = zone.slots
    created = 0
    with zone:
        for i in range(n):
            if zone.lookup(md5_key(f"x{i}"), 1.0) is not None:
                created += 1
        assert created == n * 7 // 8  # the rest waits for the manager
        assert zone.lookup(md5_key("one more"), 1.0) is None
    zone.manage(2.0)  # over 7/8 of the slots: down to 3/4, least recently used first
    assert zone.count <= n * 3 // 4
    with zone:
        assert zone.lookup(md5_key("one more"), 3.0) is not None
        for i in range(n):  # tombstones are reused or compacted away; lookups still work
            zone.forget(md5_key(f"x{i}"))
    zone.manage(4.0)
    with zone:
        node = zone.peek(md5_key("one more"))
        assert node is not None and node.uses == 1
    zone.close()


def test_loader_rebuilds_from_files(tmp_path: Path) -> None:
    zone = _zone(tmp_path)
    kept = _store(zone, "kept", 500, now=1.0, valid=1234)
    zone.close()
    (tmp_path / "stray.tmp").write_bytes(b"partial")
    bogus = tmp_path / ("0" * 32)
    bogus.write_bytes(b"not a cache file")
    zone = _zone(tmp_path)
    assert zone.load() == 1
    assert not (tmp_path / "stray.tmp").exists() and not bogus.exists()
    node = zone.peek(md5_key("kept"))
    assert node is not None and (node.valid, node.size) == (1234, 500)
    assert zone.total == 500 and os.path.exists(kept)
    zone.close()


def test_dead_holder_and_registry(tmp_path: Path) -> None:
    zone = _zone(tmp_path)
    zone.__enter__()
    me = os.getpid()
    assert not zone.force_unlock(me + 1)
    assert zone.force_unlock(me)  # as the master does for a worker that died holding it
    with zone:  # free again
        pass
    zone.close()
    cp = CachePath(str(tmp_path / "r"), "r", 8 * 4096)
    first = open_zones({"r": cp})["r"]
    assert open_zones({"r": cp})["r"] is first  # a reload keeps an unchanged zone
    bigger = CachePath(str(tmp_path / "r"), "r", 16 * 4096)
    assert open_zones({"r": bigger})["r"] is not first
    open_zones({})


def test_min_free(tmp_path: Path) -> None:
    """min_free larger than any disk: the manager empties the cache (LRU), nothing else."""
    zone = _zone(tmp_path, min_free=1 << 60)
    paths = [_store(zone, f"k{i}", 100, now=1.0 + i) for i in range(3)]
    assert sorted(zone.manage(5.0)) == sorted(paths)
    assert zone.count == 0 and zone.total == 0
    zone.close()
    zone = _zone(tmp_path, min_free=1)  # plenty of room: nothing to do
    _store(zone, "k", 100, now=1.0)
    assert zone.manage(2.0) == []
    zone.close()


def test_cache_path_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    bad = str(tmp_path / "file" / "c")
    with pytest.raises(ConfigError, match=re.escape(f'mkdir() "{bad}" failed (20: Not a '
                                                    "directory)")):
        open_zones({"b": CachePath(bad, "b", 8 * 4096)})


def test_cold_until_loaded(tmp_path: Path) -> None:
    """A zone made for the workers before its files are entered (the master's start): cold
    until the loader (load_cold, in its own process in the master) has gone through them."""
    zone = _zone(tmp_path)
    _store(zone, "k", 300, now=1.0)
    zone.close()
    cp = CachePath(str(tmp_path), "c", 8 * 4096, (1, 2))
    zone = open_zones({"c": cp}, load=False)["c"]
    assert zone.cold and zone.peek(md5_key("k")) is None
    assert ZONES["c"] is zone
    assert load_cold() == 1
    assert not zone.cold and zone.total == 300
    assert load_cold() == 0  # nothing cold any more
    open_zones({})


class _Loop:
    def __init__(self) -> None:
        self.calls: list[object] = []

    def call_soon(self, fn: object, *args: object) -> None:
        self.calls.append(fn)


class _Proxy:
    def __init__(self) -> None:
        self.r = type("R", (), {"headers": {}, "method": "GET"})()
        self.loop = _Loop()
        self.phase = 0


def test_cold_zone_lookup_finds_the_file(tmp_path: Path) -> None:
    """While the loader runs, a lookup that finds no node still finds the file (a HIT) and
    enters it; a key without a file is a MISS that will be stored."""
    from halb.l7 import handler
    from halb.l7.cache import CacheConf, CacheRequest

    zone = _zone(tmp_path)
    _store(zone, "k", 300, now=1.0)
    zone.close()
    zone = _zone(tmp_path)  # made again, cold: the node is gone, the file is there
    assert zone.cold and zone.peek(md5_key("k")) is None
    cc = CacheConf({"proxy_cache": "z", "proxy_cache_valid": ((200, 60),)})
    for key, status in (("k", "HIT"), ("other", "MISS")):
        c = CacheRequest(_Proxy(), zone, cc)  # type: ignore[arg-type]
        c.key = key
        c.digest = c.main = md5_key(key)
        c.path = zone.path_of(c.digest)
        answer = c.lookup()
        assert c.status == status
        if status == "HIT":
            assert answer is handler.PENDING and c.sfd >= 0
            node = zone.peek(c.digest)
            assert node is not None and node.size == 300 and node.valid == 2_000_000_000
            os.close(c.sfd)
        else:
            assert answer is None and c.store
    zone.close()
