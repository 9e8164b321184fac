"""The tiers behind the in-process cache: a folder on disk and a real redis-server."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from dtseg.cache.disk_tier import DiskTier
from dtseg.config import CacheConfig
from dtseg.errors import CacheTierError
from tests.tiny import make_engine, synthetic_image

MiB = 1 << 20


def test_disk_tier_bounds_bytes_and_evicts_least_recently_used(tmp_path):
    disk = DiskTier(tmp_path, max_bytes=3000)
    for key in ("aa", "bb", "cc"):
        disk.put(key, key.encode() * 500)  # 1000 bytes each
    assert disk.get("aa") == b"aa" * 500  # aa becomes the most recent: bb is the oldest
    disk.put("dd", b"d" * 1000)
    assert not disk.exists("bb") and all(disk.exists(k) for k in ("aa", "cc", "dd"))
    assert disk.info()["bytes"] == 3000 and disk.info()["evictions"] == 1
    disk.put("huge", b"x" * 4000)  # larger than the bound: not stored, evicts nothing
    assert not disk.exists("huge") and disk.info()["entries"] == 3


def test_disk_tier_remembers_its_order_across_restarts_and_drops_stale_temp_files(tmp_path):
    disk = DiskTier(tmp_path, max_bytes=10_000)
    for key in ("k1", "k2", "k3"):
        disk.put(key, b"x" * 1000)
    old = time.time() - 100
    for key, age in (("k1", 3), ("k2", 1), ("k3", 2)):  # last used long ago: k1 first, then k3, then k2
        os.utime(disk.path(key), (old - age, old - age))
    stale = disk.path("k1").parent / ".tmp-crashed.safetensors"
    stale.write_bytes(b"half a value")
    os.utime(stale, (old - 7200, old - 7200))
    again = DiskTier(tmp_path, max_bytes=2000)  # a new process, a smaller bound
    again.put("k4", b"y" * 1000)
    assert [k for k in ("k1", "k2", "k3", "k4") if again.exists(k)] == ["k2", "k4"]
    assert not stale.exists()


def test_a_folder_that_cannot_be_written_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheTierError, match=r"cache\.dir"):
        DiskTier(blocker / "cache", 1000)


def engine_with(tmp_path=None, redis_url=None, **options):
    config = CacheConfig(dir=str(tmp_path) if tmp_path else None, redis_url=redis_url, **options)
    return make_engine(cache_tiers=config)


def test_a_new_engine_on_the_same_folder_pays_no_encoder_pass(tmp_path):
    image = synthetic_image(96, 128)
    first = engine_with(tmp_path)
    expected = first.segment_image(image, boxes=[10, 10, 80, 60]).low_res_logits
    assert first.encoder_calls == 1
    second = engine_with(tmp_path)  # a re-run: empty memory, same folder
    result = second.segment_image(image, boxes=[10, 10, 80, 60])
    assert second.encoder_calls == 0
    np.testing.assert_array_equal(result.low_res_logits, expected)
    assert second.embeddings.tier_info()["disk_hits"] == 1


def test_other_pixels_under_the_same_id_are_never_served_from_disk(tmp_path):
    engine_with(tmp_path).embed_image(synthetic_image(64, 64, seed=1), "same-id")
    second = engine_with(tmp_path)
    other = synthetic_image(64, 64, seed=2)
    embedding = second.embed_image(other, "same-id")
    assert second.encoder_calls == 1
    np.testing.assert_array_equal(embedding.embedding, make_engine().embed_image(other).embedding)
    third = engine_with(tmp_path)  # the new pixels replaced the old entry
    third.embed_image(other, "same-id")
    assert third.encoder_calls == 0


def test_other_weights_or_another_namespace_do_not_share_entries(tmp_path):
    image = synthetic_image(64, 64)
    engine_with(tmp_path).embed_image(image, "x", namespace="alice")
    bob = engine_with(tmp_path)
    bob.embed_image(image, "x", namespace="bob")
    assert bob.encoder_calls == 1
    other_weights = make_engine(cache_tiers=CacheConfig(dir=str(tmp_path)), seed=1)
    other_weights.embed_image(image, "x", namespace="alice")
    assert other_weights.encoder_calls == 1


def test_a_torn_file_on_disk_is_ignored_and_replaced(tmp_path, caplog):
    image = synthetic_image(64, 80)
    first = engine_with(tmp_path)
    first.embed_image(image, "torn")
    [path] = list(tmp_path.rglob("embedding-*.safetensors"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # e.g. a power loss
    second = engine_with(tmp_path)
    with caplog.at_level(logging.WARNING, "dtseg.cache"):
        second.embed_image(image, "torn")
    assert second.encoder_calls == 1 and "unreadable" in caplog.text
    assert second.embeddings.tier_info()["corrupt"] == 1
    engine_with(tmp_path).embed_image(image, "torn")  # rewritten whole
    assert path.stat().st_size > 4 * MiB


def test_a_folder_that_fails_mid_run_never_fails_a_request(tmp_path, caplog):
    engine = engine_with(tmp_path)
    disk = engine.embeddings.tiers[0]
    blocked = disk.path(engine.embeddings.name(("", "x")))
    blocked.mkdir(parents=True)  # where the file should go: reads and writes fail with OSError
    image = synthetic_image(48, 48)
    with caplog.at_level(logging.WARNING, "dtseg.cache"):
        engine.embed_image(image, "x")
        engine.embeddings.clear()
        engine.segment_image(image, image_id="x", boxes=[2, 2, 30, 30])
    assert engine.encoder_calls == 2 and disk.info()["errors"] >= 2
    assert len([r for r in caplog.records if "disk cache" in r.getMessage()]) == 1  # one warning a minute


# -- Redis ---------------------------------------------------------------------------------
def test_redis_unreachable_at_start_is_a_clear_error(redis_server):
    url = redis_server.url
    redis_server.stop()
    with pytest.raises(CacheTierError, match=f"cannot reach Redis at {url}"):
        engine_with(redis_url=url)


def test_two_engines_share_embeddings_and_refinement_logits_through_redis(redis_server):
    image = synthetic_image(96, 128)
    a = engine_with(redis_url=redis_server.url, mask_logits=True)
    b = engine_with(redis_url=redis_server.url, mask_logits=True)
    a.embed_image(image, "shared", namespace="key:1")
    first = a.segment_image(image_id="shared", boxes=[10, 10, 80, 60], namespace="key:1")
    refined = b.segment_image(image_id="shared", point_coords=[[40, 30]], point_labels=[1], mask_input="cached",
                              namespace="key:1")  # b never saw the image: embedding and logits from Redis
    expected = a.segment_image(image_id="shared", point_coords=[[40, 30]], point_labels=[1],
                               mask_input=first.low_res_logits[:, [first.scores[0].argmax()]], namespace="key:1")
    assert (a.encoder_calls, b.encoder_calls) == (1, 0)
    np.testing.assert_allclose(refined.low_res_logits, expected.low_res_logits, atol=1e-5)
    assert b.embeddings.tier_info("key:1")["redis_hits"] == 1
    from dtseg import ImageNotEmbeddedError

    with pytest.raises(ImageNotEmbeddedError):  # another API key sees nothing
        b.segment_image(image_id="shared", boxes=[0, 0, 5, 5], namespace="key:2")


def test_redis_entries_get_the_ttl(redis_server):
    engine = engine_with(redis_url=redis_server.url, ttl_s=120)
    engine.embed_image(synthetic_image(32, 32), "ttl")
    [key] = redis_server.client().keys("embedding-*")
    assert 0 < redis_server.client().ttl(key) <= 120


def test_losing_redis_mid_run_degrades_to_local_tiers_and_recovers(redis_server, caplog, tmp_path):
    engine = engine_with(tmp_path, redis_url=redis_server.url)
    images = [synthetic_image(48, 64, seed=i) for i in range(4)]
    engine.embed_image(images[0], "before")
    redis_server.stop()
    with caplog.at_level(logging.WARNING, "dtseg.cache"):
        for i in (1, 2):  # every request still succeeds: memory and disk carry on
            engine.embed_image(images[i], f"during{i}")
            engine.segment_image(image_id=f"during{i}", boxes=[4, 4, 40, 40])
        assert make_engine(cache_tiers=CacheConfig(dir=str(tmp_path))).embed_image(images[1], "during1") is not None
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1  # one warning a minute, not one per call
    redis_server.start()  # same port, empty
    time.sleep(1.2)  # the tier retries Redis at most once a second
    with caplog.at_level(logging.WARNING, "dtseg.cache"):
        engine.embed_image(images[3], "after")
    assert "is back" in caplog.text
    assert len(redis_server.client().keys("embedding-*")) == 1  # written through again
    assert engine.embeddings.tier_info()["tiers"][0]["available"] is True
