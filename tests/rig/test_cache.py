"""The video cache rule: sort by yaw, drop the interior frame with the smallest yaw gap, keep the extremes."""

import numpy as np
import pytest

from redafit.errors import InputError
from redafit.rig.track import CacheEntry, FrameCache, cache_drop_index


def test_no_drop_until_full():
    assert cache_drop_index([0, 10, 20], size=5) is None
    assert cache_drop_index([0, 1, 2, 3, 4], size=5) is None


def test_drops_smallest_interior_gap():
    # sorted: -30, -10, -9, 5, 20, 40 -> -10 and -9 are 1 degree apart; the earlier listed one is dropped
    yaws = [40, -30, -9, 5, -10, 20]
    assert cache_drop_index(yaws) == 2  # -9 (gap 1 to -10); tie with -10 (also gap 1) -> earlier entry wins


def test_endpoints_never_dropped():
    # the extremes are the two closest values; an interior one must go instead
    yaws = [-30.0, -29.9, 0.0, 10.0, 29.9, 30.0]
    drop = cache_drop_index(yaws)
    assert drop not in (0, 5)
    assert yaws[drop] in (-29.9, 29.9)


def test_new_frame_can_be_dropped():
    # the newcomer -30.5 sits 9.5 from -40: the smallest interior gap -> it is the one dropped
    assert cache_drop_index([-40, -20, 0, 20, 40, -30.5]) == 5
    # ties (0 and 1 are both 1 degree from each other) drop the earlier entry
    assert cache_drop_index([-40, -20, 0, 20, 40, 1]) == 2


def test_cache_keeps_widest_coverage():
    rng = np.random.default_rng(0)
    cache = FrameCache(5)
    yaws = rng.uniform(-45, 45, 60)
    for i, y in enumerate(yaws):
        cache.add(CacheEntry(i, float(y), None, None))
    kept = sorted(cache.yaws)
    assert len(kept) == 5
    assert kept[0] == pytest.approx(yaws.min()) and kept[-1] == pytest.approx(yaws.max())
    gaps = np.diff(kept)
    assert gaps.min() > 5.0  # spread out, not clustered


def test_cache_reports_membership_change():
    cache = FrameCache(3)
    assert cache.add(CacheEntry(0, 0.0, None, None))
    assert cache.add(CacheEntry(1, -30.0, None, None))
    assert cache.add(CacheEntry(2, 30.0, None, None))
    assert not cache.add(CacheEntry(3, 1.0, None, None)) or cache.frames != [0, 1, 2]
    assert cache.add(CacheEntry(4, 50.0, None, None))  # a new extreme always enters
    assert 4 in cache.frames and 1 in cache.frames


def test_cache_size_checked():
    with pytest.raises(InputError):
        FrameCache(1)
