"""``SamEngine``: embed an image once, keep the embedding, decode many prompts in one pass.

Mirrors the two calls of Roboflow Inference's SAM API: ``embed_image`` and ``segment_image``;
``segment`` is the same decode for the pipeline, returning ``sv.Detections``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import supervision as sv
import torch
from segment_anything.modeling import Sam

from dtseg.engine.cache import ByteLRUCache
from dtseg.engine.tiers import TieredCache, build_tiers, cache_scope
from dtseg.engine.models import (RANDOM, CheckpointArg, ModelArg, build_sam, resolve_checkpoint, resolve_spec,
                                 select_device, select_dtype)
from dtseg.engine.postprocess import masks_from_low_res
from dtseg.engine.transforms import ImageTransform
from dtseg.errors import ImageNotEmbeddedError, InputError, PromptError
from dtseg.io import ImageLike, content_hash, load_image
from dtseg.prompts import Prompts

MiB = 1 << 20
ImplKind = Literal["fast", "reference"]


@dataclass(frozen=True)
class Embedding:
    """An embedded image. ``embedding`` is ``(256, 64, 64)`` for the official models."""

    image_id: str
    embedding: torch.Tensor
    original_size: tuple[int, int]  # (H, W) pixels
    input_size: tuple[int, int]  # (h, w) of the resized image inside SAM's square input
    image_hash: str

    @property
    def nbytes(self) -> int:
        return self.embedding.numel() * self.embedding.element_size()

    @property
    def transform(self) -> ImageTransform:
        return ImageTransform(self.original_size, self.input_size)


@dataclass(frozen=True)
class SegmentResult:
    """``masks`` ``(N, M, H, W)`` bool, ``scores`` ``(N, M)`` predicted IoU,
    ``low_res_logits`` ``(N, M, 256, 256)`` float32; M = 3 with multimask, else 1."""

    image_id: str
    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


@dataclass(frozen=True)
class _Logits:
    """Best low-res logits ``(N, 1, 256, 256)`` of the last call on an image (for refinement)."""

    logits: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.logits.numel() * self.logits.element_size()


class SamEngine:
    """A SAM model with a byte-bounded embedding cache. Thread-safe.

    The encoder and the decoder each run one batch at a time under their own lock, so a
    cached ``segment_image`` never waits behind another thread's ``embed_image``.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        cache_bytes: int = 1024 * MiB,
        cache_fp16: bool = False,
        encoder: ImplKind = "fast",
        decoder: ImplKind = "fast",
        encoder_int8: bool = False,
        encoder_compile: bool = False,
        chunk_size: int = 32,
        random_weights: bool = False,
        model_name: str = "custom",
        cache_tiers: Any = None,
    ) -> None:
        self.sam = sam.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = device, dtype
        self.model_name, self.random_weights = model_name, random_weights
        self.cache_fp16, self.chunk_size = cache_fp16, max(1, int(chunk_size))
        # cache_tiers: a CacheConfig (Redis, a folder) behind the in-process LRU; see dtseg.engine.tiers
        tiers = build_tiers(cache_tiers)
        scope = cache_scope(model_name, dtype, self.sam) if tiers else model_name
        self.embeddings = TieredCache(ByteLRUCache(cache_bytes), tiers, Embedding, "embedding", scope)
        self.mask_logits = TieredCache(ByteLRUCache(max(64 * MiB, cache_bytes // 16)),
                                       tiers if getattr(cache_tiers, "mask_logits", False) else [], _Logits, "logits", scope)
        self.image_encoder = self._image_encoder(encoder, encoder_int8, encoder_compile)
        self.mask_decoder = self._mask_decoder(decoder)
        self.encoder_calls = 0  # images through the encoder, for tests and /info
        self._encoder_lock, self._decoder_lock = threading.Lock(), threading.Lock()
        with torch.inference_mode():
            self._dense_pe = self.sam.prompt_encoder.get_dense_pe()

    @classmethod
    def load(
        cls,
        model: ModelArg = "vit_b",
        checkpoint: CheckpointArg = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "fp32",
        cache_bytes: int = 1024 * MiB,
        seed: int = 0,
        threads: int | None = None,
        **options: Any,
    ) -> "SamEngine":
        """Build an engine. ``model``: ``vit_h``/``vit_l``/``vit_b``/``tiny`` or a ``SamSpec``.
        ``checkpoint``: a path, ``None`` (cache, then download) or ``"random"`` (tests only).
        ``threads``: torch CPU threads (default: the process's real CPU quota)."""
        from dtseg.engine.encoder import configure_threads

        configure_threads(threads)
        spec, official = resolve_spec(model)
        weights = resolve_checkpoint(model, checkpoint)
        chosen = select_device(device)
        sam = build_sam(spec, weights, seed=seed)
        name = official.name if official else (model if isinstance(model, str) else "custom")
        return cls(sam, device=chosen, dtype=select_dtype(dtype, chosen), cache_bytes=cache_bytes,
                   random_weights=weights == RANDOM, model_name=name, **options)

    # -- embedding ------------------------------------------------------------------------
    def embed_image(
        self, image: ImageLike, image_id: str | None = None, namespace: str = "", cache: bool = True
    ) -> Embedding:
        """Embed ``image`` (RGB uint8 ``(H, W, 3)``, path or encoded bytes) unless the cache
        already holds these pixels under ``image_id`` (default: the pixels' content hash).
        ``cache=False`` does not store the result (video frames: they would evict images)."""
        return self.embed_images([image], None if image_id is None else [image_id], namespace, cache=cache)[0]

    def embed_images(
        self,
        images: Sequence[ImageLike],
        image_ids: Sequence[str | None] | None = None,
        namespace: str = "",
        batch_size: int = 4,
        cache: bool = True,
    ) -> list[Embedding]:
        """Embed several images, running the encoder on up to ``batch_size`` at a time; cached
        images are not encoded again, and the same pixels within the call are encoded once."""
        ids = list(image_ids) if image_ids is not None else [None] * len(images)
        if len(ids) != len(images):
            raise InputError("image_ids", f"{len(ids)} ids for {len(images)} images")
        results: list[Embedding | None] = []
        pixels: dict[str, np.ndarray] = {}  # by content hash: the same pixels, under several ids, are encoded once
        waiting: dict[str, list[tuple[int, str]]] = {}  # content hash -> (index, image id) of each image
        for i, (image, image_id) in enumerate(zip(images, ids)):
            rgb = load_image(image, "image" if len(images) == 1 else f"images[{i}]")
            digest = content_hash(rgb)
            key_id = digest if image_id is None else _check_image_id(image_id)
            cached = self.embeddings.get((namespace, key_id))
            results.append(cached if cached is not None and cached.image_hash == digest else None)
            if results[-1] is None:
                pixels.setdefault(digest, rgb)
                waiting.setdefault(digest, []).append((i, key_id))
        digests, step = list(pixels), max(1, batch_size)
        for start in range(0, len(digests), step):
            batch = digests[start : start + step]
            for digest, (tensor, transform) in zip(batch, self._encode([pixels[d] for d in batch])):
                for i, key_id in waiting[digest]:
                    embedding = Embedding(key_id, tensor, transform.original_size, transform.input_size, digest)
                    results[i] = embedding
                    if cache:  # as each batch finishes: a later failure loses nothing already encoded
                        self.store_embedding(embedding, namespace)
        return results  # type: ignore[return-value]

    def store_embedding(self, embedding: Embedding, namespace: str = "") -> None:
        """Cache ``embedding`` under its ``image_id`` (e.g. one a client computed); refinement
        logits of other pixels under that id are dropped."""
        key = (namespace, _check_image_id(embedding.image_id))
        old = self.embeddings.get(key)
        if old is None or old.image_hash != embedding.image_hash:
            self.mask_logits.pop(key)
        tensor = embedding.embedding
        self.embeddings.put(key, embedding if not self.cache_fp16 else _with_tensor(embedding, tensor.half()))

    def _encode(self, images: list[np.ndarray]) -> list[tuple[torch.Tensor, ImageTransform]]:
        transforms = [ImageTransform.for_image(*im.shape[:2], self.sam.image_encoder.img_size) for im in images]
        batch = torch.stack([
            torch.from_numpy(t.resize_image(im).copy()).permute(2, 0, 1) for t, im in zip(transforms, images)
        ]) if len({t.input_size for t in transforms}) == 1 else None
        with torch.inference_mode(), self._encoder_lock:
            if batch is None:  # different input sizes: pad each before stacking
                x = torch.cat([self._preprocess(torch.from_numpy(t.resize_image(im).copy()).permute(2, 0, 1)[None])
                               for t, im in zip(transforms, images)])
            else:
                x = self._preprocess(batch)
            features = self.image_encoder(x)
            self.encoder_calls += len(images)
        return [(features[i], t) for i, t in enumerate(transforms)]

    def _preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` uint8 -> normalized, zero-padded ``(B, 3, 1024, 1024)``."""
        x = rgb.to(self.device, torch.float32)
        return self.sam.preprocess(x).to(self.dtype)

    def _embedding_for(self, image: ImageLike | None, image_id: str | None, namespace: str) -> Embedding:
        if image is not None:
            return self.embed_image(image, image_id, namespace)
        if image_id is None:
            raise InputError("image", "give an image, or the image_id of an embedded image")
        cached = self.embeddings.get((namespace, _check_image_id(image_id)))
        if cached is None:
            raise ImageNotEmbeddedError(image_id)
        return cached

    # -- decoding -------------------------------------------------------------------------
    def segment_image(
        self,
        image: ImageLike | None = None,
        image_id: str | None = None,
        point_coords: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
        namespace: str = "",
    ) -> SegmentResult:
        """Segment N objects on an image given as pixels or as a cached ``image_id``.

        ``point_coords`` ``(N, K, 2)`` / ``(K, 2)``, ``point_labels`` ``(N, K)`` / ``(K,)``,
        ``boxes`` ``(N, 4)`` / ``(4,)`` in original pixels; ``mask_input`` ``(256, 256)``,
        ``(N, 1, 256, 256)`` logits or ``"cached"`` (the best logits of the last call on this
        image). All objects are decoded in one batched pass.
        """
        # every check that needs no embedding comes first: a bad request costs no encoder pass
        num_objects = _mask_batch(mask_input) if point_coords is None and boxes is None else None
        prompts = Prompts.from_arrays(point_coords, point_labels, boxes, num_objects=num_objects)
        masks_in = self._check_mask_input(mask_input, len(prompts))
        if mask_input is None:
            _require_point_or_box(prompts)
        embedding = self._embedding_for(image, image_id, namespace)
        if isinstance(masks_in, str):
            masks_in = self._cached_mask_logits((namespace, embedding.image_id), len(prompts))
        logits, scores = self._decode(embedding, prompts, masks_in, multimask_output)
        self.mask_logits.put((namespace, embedding.image_id), _Logits(_best(logits, scores)[0]))
        return SegmentResult(
            embedding.image_id,
            masks_from_low_res(logits, embedding.input_size, embedding.original_size, self.sam.image_encoder.img_size),
            scores.numpy(),
            logits.numpy(),
        )

    def segment(
        self,
        image: ImageLike | str | Embedding,
        prompts: Prompts,
        multimask_output: bool = False,
        namespace: str = "",
        cache: bool = True,
    ) -> sv.Detections:
        """Decode ``prompts`` on an image (pixels, path, bytes), a cached image id or an
        ``Embedding`` (e.g. one of ``embed_images``) -> ``sv.Detections``.

        Row i comes from prompt i: ``mask`` ``(N, H, W)`` (the best of 3 with multimask),
        ``xyxy`` the mask's tight box (the prompt box if the mask is empty), the prompt's
        ``class_id``/``confidence``/``data``, SAM's predicted IoU in ``data["sam_score"]`` and
        the prompt in ``data["prompt_box"]`` ``(N, 4)`` / ``data["prompt_points"]`` ``(N, K, 2)``
        / ``data["prompt_labels"]`` ``(N, K)``. ``cache=False`` neither stores the embedding nor
        the logits (video frames).
        """
        _require_point_or_box(prompts)
        if isinstance(image, Embedding):
            embedding = image
        elif isinstance(image, str) and not Path(image).is_file():  # an image id, not a path
            embedding = self._embedding_for(None, image, namespace)
        else:
            embedding = self.embed_image(image, None, namespace, cache=cache)
        logits, scores = self._decode(embedding, prompts, None, multimask_output)
        best_logits, best_scores = _best(logits, scores)
        if cache:
            self.mask_logits.put((namespace, embedding.image_id), _Logits(best_logits))
        masks = masks_from_low_res(best_logits, embedding.input_size, embedding.original_size,
                                   self.sam.image_encoder.img_size)[:, 0]
        return _detections(masks, best_scores.numpy(), prompts)

    def _decode(
        self, embedding: Embedding, prompts: Prompts, masks_in: torch.Tensor | None, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``(N, M, 256, 256)`` and scores ``(N, M)``, float32 on the CPU.

        Objects are grouped by prompt layout (number of valid points, box or not), since SAM's
        prompt encoder takes one layout per call; each group is one batched decoder pass
        (split in chunks of ``chunk_size``). Each object's valid points are compacted, so the
        result for object i depends only on prompt i.
        """
        n, m = len(prompts), 3 if multimask else 1
        low_len = self.sam.image_encoder.img_size // 4
        logits = torch.empty((n, m, low_len, low_len), dtype=torch.float32)
        scores = torch.empty((n, m), dtype=torch.float32)
        counts, has_box = prompts.num_points, prompts.has_box
        features = embedding.embedding.to(self.device, self.dtype)[None]
        transform = embedding.transform
        for layout in sorted(set(zip(counts.tolist(), has_box.tolist()))):
            index = np.flatnonzero((counts == layout[0]) & (has_box == layout[1]))
            for chunk in np.array_split(index, -(-len(index) // self.chunk_size)):
                low, iou = self._decode_group(features, transform, prompts, chunk, layout, masks_in, multimask)
                logits[chunk], scores[chunk] = low.float().cpu(), iou.float().cpu()
        return logits, scores

    def _decode_group(
        self,
        features: torch.Tensor,
        transform: ImageTransform,
        prompts: Prompts,
        index: np.ndarray,
        layout: tuple[int, bool],
        masks_in: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_points, has_box = layout
        points = boxes = masks = None
        if num_points:
            valid = prompts.labels[index] != -1
            coords = transform.coords(prompts.points[index][valid].reshape(len(index), num_points, 2))
            labels = prompts.labels[index][valid].reshape(len(index), num_points)
            points = (self._tensor(coords), torch.as_tensor(labels, device=self.device))
        if has_box:
            boxes = self._tensor(transform.boxes(prompts.boxes[index]))
        if masks_in is not None:
            masks = masks_in[torch.as_tensor(index)].to(self.device, self.dtype)
        with torch.inference_mode(), self._decoder_lock:
            sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
            low_res, iou = self.mask_decoder(
                image_embeddings=features,
                image_pe=self._dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        return low_res, iou

    def _check_mask_input(self, mask_input: Any, n: int) -> torch.Tensor | str | None:
        """``None``, ``"cached"`` (returned as is: resolved once the image id is known), or logits
        ``(256, 256)`` / ``(1|N, 1, 256, 256)`` -> checked ``(N, 1, 256, 256)``."""
        if mask_input is None:
            return None
        if isinstance(mask_input, str):
            if mask_input != "cached":
                raise PromptError("mask_input", f"expected logits or 'cached', got {mask_input!r}")
            return mask_input
        try:
            masks = torch.as_tensor(np.asarray(mask_input, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise PromptError("mask_input", f"expected numbers: {exc}") from exc
        if not torch.isfinite(masks).all():
            raise PromptError("mask_input", "logits must be finite")
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim == 3:
            masks = masks[:, None]
        return self._fit_masks(masks, n)

    def _cached_mask_logits(self, key: tuple[str, str], n: int) -> torch.Tensor:
        """The best logits of the last call on ``key``'s image, for ``n`` objects."""
        entry = self.mask_logits.get(key)
        if entry is None:
            raise PromptError("mask_input", f"no cached mask logits for image_id {key[1]!r}: segment it once first")
        return self._fit_masks(entry.logits, n)

    def _fit_masks(self, masks: torch.Tensor, n: int) -> torch.Tensor:
        """``(1|N, 1, 256, 256)`` -> ``(N, 1, 256, 256)``, or a ``PromptError`` naming the shape."""
        low_len = self.sam.image_encoder.img_size // 4
        if masks.ndim != 4 or tuple(masks.shape[1:]) != (1, low_len, low_len):
            raise PromptError("mask_input", f"expected ({low_len}, {low_len}) or (N, 1, {low_len}, {low_len}), got {tuple(masks.shape)}")
        if len(masks) == 1 and n > 1:
            masks = masks.expand(n, -1, -1, -1)
        if len(masks) != n:
            raise PromptError("mask_input", f"{len(masks)} masks for {n} objects")
        return masks

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device, dtype=self.dtype)

    # -- implementations and stats -------------------------------------------------------
    def _image_encoder(self, kind: ImplKind, int8: bool, compile: bool) -> torch.nn.Module:
        if kind not in ("fast", "reference"):
            raise ValueError(f"encoder: expected 'fast' or 'reference', got {kind!r}")
        if kind == "reference" and not int8:
            return torch.compile(self.sam.image_encoder) if compile else self.sam.image_encoder
        from dtseg.engine.encoder import fast_encoder

        return fast_encoder(self.sam.image_encoder, int8=int8, compile=compile)

    def _mask_decoder(self, kind: ImplKind) -> torch.nn.Module:
        if kind == "reference":
            return self.sam.mask_decoder
        if kind != "fast":
            raise ValueError(f"decoder: expected 'fast' or 'reference', got {kind!r}")
        from dtseg.engine.decoder import FastMaskDecoder

        return FastMaskDecoder(self.sam.mask_decoder)

    def info(self) -> dict[str, Any]:
        """Model, device and cache counters (what the server's ``/info`` shows)."""
        stats, logits = self.embeddings.stats(), self.mask_logits.stats()
        return {
            "model": self.model_name,
            "random_weights": self.random_weights,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "encoder_calls": self.encoder_calls,
            "cache": {"entries": stats.entries, "bytes": stats.bytes, "max_bytes": stats.max_bytes,
                      "hits": stats.hits, "misses": stats.misses, "evictions": stats.evictions},
            "mask_logits_cache": {"entries": logits.entries, "bytes": logits.bytes, "max_bytes": logits.max_bytes},
        }


def _check_image_id(image_id: Any) -> str:
    if not isinstance(image_id, str) or not image_id or len(image_id) > 512:
        raise InputError("image_id", f"expected a non-empty string of at most 512 characters, got {image_id!r}")
    return image_id


def _require_point_or_box(prompts: Prompts) -> None:
    """Without mask input, SAM needs a valid point or a box for every object."""
    empty = np.flatnonzero((prompts.num_points == 0) & ~prompts.has_box)
    if len(empty):
        raise PromptError("point_coords", f"objects {empty.tolist()} have no valid point, no box and no mask input")


def _mask_batch(mask_input: Any) -> int | None:
    if mask_input is None or isinstance(mask_input, str):
        return 1 if mask_input is not None else None
    shape = np.shape(mask_input)
    return shape[0] if len(shape) == 4 else 1


def _best(logits: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each object's highest-scoring mask: logits ``(N, 1, L, L)`` and scores ``(N,)``."""
    rows = torch.arange(len(scores))
    best = scores.argmax(dim=1)
    return logits[rows, best][:, None], scores[rows, best]


def _with_tensor(embedding: Embedding, tensor: torch.Tensor) -> Embedding:
    return Embedding(embedding.image_id, tensor, embedding.original_size, embedding.input_size, embedding.image_hash)


def _detections(masks: np.ndarray, scores: np.ndarray, prompts: Prompts) -> sv.Detections:
    """Masks ``(N, H, W)`` and scores ``(N,)`` for ``prompts`` -> ``sv.Detections`` (1:1, in order)."""
    n = len(prompts)
    if n == 0:
        detections = sv.Detections.empty()
        detections.data["sam_score"] = np.zeros(0, np.float32)
        return detections
    xyxy = sv.mask_to_xyxy(masks).astype(np.float32)
    empty = ~masks.any(axis=(1, 2))
    fallback = np.where(prompts.has_box[:, None], prompts.boxes, 0.0)
    xyxy[empty] = fallback[empty]
    data = {k: v for k, v in prompts.data.items() if k != "tracker_id"}
    data.update(sam_score=scores.astype(np.float32), prompt_box=prompts.boxes,
                prompt_points=prompts.points, prompt_labels=prompts.labels)
    tracker_id = prompts.data.get("tracker_id")
    return sv.Detections(
        xyxy=xyxy,
        mask=masks,
        class_id=prompts.class_id,
        confidence=prompts.confidence,
        tracker_id=None if tracker_id is None else np.asarray(tracker_id),
        data=data,
    )
