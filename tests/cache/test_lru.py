"""The byte-bounded LRU cache, alone and inside the engine."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pytest

from dtseg.cache.lru import ByteLRUCache
from tests.tiny import make_engine, synthetic_image


@dataclass(frozen=True)
class Blob:
    nbytes: int


def run_in_threads(work, args) -> None:
    """Run ``work(arg)`` for each arg in its own thread; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded(arg) -> None:
        try:
            work(arg)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_lru_order_and_byte_bound():
    cache = ByteLRUCache(max_bytes=100)
    for key in "abc":
        assert cache.put(key, Blob(30))
    assert cache.get("a") is not None  # a becomes most recent: order b, c, a
    cache.put("d", Blob(30))  # 120 > 100: evicts b
    assert cache.keys() == ["c", "a", "d"]
    stats = cache.stats()
    assert (stats.bytes, stats.evictions, stats.hits, stats.misses) == (90, 1, 1, 0)
    assert cache.get("b") is None and cache.stats().misses == 1


def test_replacing_a_key_updates_its_size():
    cache = ByteLRUCache(max_bytes=100)
    cache.put("a", Blob(60))
    cache.put("a", Blob(10))
    assert cache.stats().bytes == 10 and len(cache) == 1


def test_value_larger_than_bound_is_not_stored_and_evicts_nothing():
    cache = ByteLRUCache(max_bytes=100)
    cache.put("a", Blob(50))
    assert not cache.put("huge", Blob(101))
    assert cache.keys() == ["a"]


def test_many_inserts_never_exceed_the_bound():
    cache = ByteLRUCache(max_bytes=1000)
    rng = np.random.default_rng(0)
    for i in range(2000):
        cache.put(i % 300, Blob(int(rng.integers(1, 200))))
        assert cache.stats().bytes <= 1000
    assert cache.stats().bytes == sum(cache.get(k).nbytes for k in cache.keys())  # noqa: SIM118 - keys(): the cache's locked snapshot


def test_concurrent_puts_and_gets_keep_the_books_straight():
    cache = ByteLRUCache(max_bytes=5000)

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(3000):
            key = int(rng.integers(0, 100))
            if rng.random() < 0.5:
                cache.put(key, Blob(int(rng.integers(1, 300))))
            else:
                cache.get(key)

    run_in_threads(work, range(8))
    assert cache.stats().bytes == sum(cache.get(k).nbytes for k in cache.keys()) <= 5000  # noqa: SIM118 - keys(): the cache's locked snapshot


def count_encoder_calls(engine) -> list[int]:
    calls = [0]
    engine.model.image_encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_cached_image_id_never_runs_the_encoder_again():
    engine = make_engine()
    calls = count_encoder_calls(engine)
    image = synthetic_image(64, 96)
    embedding = engine.embed_image(image, "photo")
    assert calls[0] == 1
    for _ in range(3):
        engine.segment_image(image_id="photo", point_coords=[[10, 10]], point_labels=[1])
    engine.segment_image(image, image_id="photo", boxes=[0, 0, 50, 50])  # same pixels again
    engine.embed_image(image, "photo")
    assert calls[0] == 1 and engine.encoder_calls == 1
    assert engine.embed_image(image).image_id != "photo"  # content hash key: a new entry
    assert calls[0] == 2
    assert embedding.embedding.shape == (256, 64, 64)


def test_content_hash_is_the_default_id_and_is_returned():
    engine = make_engine()
    image = synthetic_image(40, 50)
    first = engine.embed_image(image)
    assert first.image_id == engine.embed_image(image.copy()).image_id
    assert engine.encoder_calls == 1
    assert engine.segment_image(image_id=first.image_id, boxes=[0, 0, 20, 20]).image_id == first.image_id


def test_new_pixels_under_an_old_id_replace_the_embedding():
    engine = make_engine()
    a, b = synthetic_image(64, 64, seed=1), synthetic_image(64, 64, seed=2)[::-1].copy()
    emb_a = engine.embed_image(a, "same-id")
    emb_b = engine.embed_image(b, "same-id")
    assert engine.encoder_calls == 2
    assert not np.allclose(emb_a.embedding.numpy(), emb_b.embedding.numpy())
    cached = engine.embeddings.get(("", "same-id"))
    assert cached.image_hash == emb_b.image_hash
    by_id = engine.segment_image(image_id="same-id", boxes=[5, 5, 40, 40])
    fresh = make_engine().segment_image(b, boxes=[5, 5, 40, 40])
    np.testing.assert_allclose(by_id.low_res_logits, fresh.low_res_logits, atol=1e-5)


def test_engine_cache_respects_its_byte_bound():
    engine = make_engine(cache_bytes=3 * 4 * 2**20)  # three fp32 embeddings of 4 MiB
    for seed in range(6):
        engine.embed_image(synthetic_image(32, 32, seed=seed), f"im{seed}")
    stats = engine.embeddings.stats()
    assert stats.entries == 3 and stats.bytes <= stats.max_bytes and stats.evictions == 3
    assert [k[1] for k in engine.embeddings.keys()] == ["im3", "im4", "im5"]  # noqa: SIM118 - keys(): the cache's locked snapshot


def test_fp16_cache_halves_memory_and_still_segments():
    engine = make_engine(cache_fp16=True)
    image = synthetic_image(48, 64)
    engine.embed_image(image, "half")
    assert engine.embeddings.stats().bytes == 256 * 64 * 64 * 2
    half = engine.segment_image(image_id="half", boxes=[4, 4, 40, 40])
    full = make_engine().segment_image(image, boxes=[4, 4, 40, 40])
    np.testing.assert_allclose(half.scores, full.scores, atol=1e-2)


def test_namespaces_do_not_see_each_other():
    engine = make_engine()
    engine.embed_image(synthetic_image(32, 32), "shared-name", namespace="alice")
    from dtseg import ImageNotEmbeddedError

    with pytest.raises(ImageNotEmbeddedError):
        engine.segment_image(image_id="shared-name", boxes=[0, 0, 5, 5], namespace="bob")


def test_concurrent_embed_and_segment_from_threads_agree_with_serial_results():
    engine = make_engine(cache_bytes=3 * 4 * 2**20)  # small: forces evictions under load
    images = [synthetic_image(40 + 8 * i, 56, seed=i) for i in range(4)]
    box = [2, 2, 30, 30]
    expected = [make_engine().segment_image(im, boxes=box).low_res_logits for im in images]

    def client(worker: int) -> None:
        for step in range(6):
            i = (worker + step) % len(images)
            result = engine.segment_image(images[i], image_id=f"img{i}", boxes=box)
            np.testing.assert_allclose(result.low_res_logits, expected[i], atol=1e-4)

    run_in_threads(client, range(4))
    assert engine.embeddings.stats().bytes <= engine.embeddings.max_bytes


def test_uncached_segment_leaves_the_cache_alone():
    from dtseg import Prompts

    engine = make_engine()
    engine.embed_image(synthetic_image(32, 32), "kept")
    before = engine.embeddings.stats()
    for seed in range(3):
        engine.segment(synthetic_image(32, 32, seed=seed + 1), Prompts.from_arrays(boxes=[2, 2, 20, 20]), cache=False)
    after = engine.embeddings.stats()
    assert (after.entries, after.bytes) == (before.entries, before.bytes) and len(engine.mask_logits) == 0
    assert engine.encoder_calls == 4


def test_embed_images_batches_the_encoder_once_per_distinct_image():
    engine, alone = make_engine(), make_engine()
    a, b, c = synthetic_image(120, 160), synthetic_image(200, 100, seed=2), synthetic_image(90, 90, seed=3)
    passes: list[int] = []
    engine.model.image_encoder.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))

    embeddings = engine.embed_images([a, b, a.copy(), c], image_ids=[None, None, "again", None], batch_size=2)

    assert passes == [2, 1]  # a and b, then c; the copy of a is not encoded twice
    assert [e.image_id for e in embeddings][2] == "again" and embeddings[2].image_hash == embeddings[0].image_hash
    for image, embedding in zip([a, b, a, c], embeddings, strict=True):
        single = alone.embed_image(image)
        assert embedding.original_size == single.original_size and embedding.input_size == single.input_size
        np.testing.assert_allclose(embedding.embedding, single.embedding, atol=1e-4)
    engine.embed_images([c, a], batch_size=2)
    assert passes == [2, 1]  # all cached


def test_a_namespace_over_its_share_evicts_only_its_own_entries():
    cache = ByteLRUCache(max_bytes=100, share_bytes=50)
    cache.put(("bob", "b1"), Blob(20))
    cache.put(("bob", "b2"), Blob(20))
    for i in range(10):  # alice writes far more than her share
        assert cache.put(("alice", f"a{i}"), Blob(20))
    assert [k for k in cache.keys() if k[0] == "bob"] == [("bob", "b1"), ("bob", "b2")]  # noqa: SIM118 - keys(): the cache's locked snapshot
    assert [k[1] for k in cache.keys() if k[0] == "alice"] == ["a8", "a9"]  # noqa: SIM118 - keys(): the cache's locked snapshot
    alice, bob = cache.stats("alice"), cache.stats("bob")
    assert (alice.entries, alice.bytes, alice.max_bytes, alice.evictions) == (2, 40, 50, 8)
    assert (bob.entries, bob.bytes, bob.evictions) == (2, 40, 0)
    assert not cache.put(("alice", "huge"), Blob(60))  # larger than her share
    cache.get(("bob", "b1")), cache.get(("bob", "nope"))
    assert (cache.stats("bob").hits, cache.stats("bob").misses, cache.stats("alice").hits) == (1, 1, 0)
    assert cache.stats().bytes == 80 and cache.stats().evictions == 8


def test_without_a_share_one_namespace_may_fill_the_cache():
    cache = ByteLRUCache(max_bytes=100)
    cache.put(("bob", "b"), Blob(20))
    for i in range(5):
        cache.put(("alice", f"a{i}"), Blob(20))
    assert ("bob", "b") not in cache and cache.stats("bob").evictions == 1
