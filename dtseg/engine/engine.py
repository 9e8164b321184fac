"""``SamEngine``: embed an image once, keep the embedding, decode many prompts in one pass.

``embed_image`` caches an image's features under an id; ``segment_image`` decodes prompts as
``SamPredictor.predict`` takes them (points, labels, boxes, mask input) into arrays; ``segment``
is the same decode for the pipeline, returning ``sv.Detections``. Wire formats (Roboflow's
routes) are the server's (``dtseg.server``). The model is any
family's (``dtseg.families``): the engine owns the cache, batching, prompt grouping,
the coordinate transform, mask post-processing and locks; the family encodes and decodes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch

from dtseg.cache.lru import ByteLRUCache
from dtseg.cache.tiers import TieredCache, build_tiers, cache_scope
from dtseg.engine.checkpoints import RANDOM, CheckpointArg, ModelArg, build_model, resolve_checkpoint
from dtseg.engine.concepts import ConceptResult, check_threshold, concept_prompts, mask_nms
from dtseg.engine.postprocess import masks_from_low_res
from dtseg.errors import EmbeddingMismatchError, ImageNotEmbeddedError, InputError, PromptError
from dtseg.families import IMAGE_EMBED, Capabilities, LoadedModel
from dtseg.families.base import ConceptDecoder
from dtseg.families.transforms import ImageTransform
from dtseg.io import ImageLike, content_hash, load_image
from dtseg.prompts import Prompts
from dtseg.records import prompt_detections
from dtseg.runtime.allocator import heap_kept
from dtseg.runtime.device import select_device, select_dtype
from dtseg.runtime.fast_path import ImplChoice, choose
from dtseg.runtime.fast_path import describe as describe_passes
from dtseg.runtime.precision import auto_dtype, describe, dtype_name

MiB = 1 << 20


@dataclass(frozen=True)
class Embedding:
    """An embedded image: the features its model's decoder needs, and which model made them.

    ``features`` maps names to per-image tensors (no batch dim): ``image_embed`` ``(256, 64, 64)``
    for every official model; SAM 2 adds ``high_res_0`` ``(32, 256, 256)`` and ``high_res_1``
    ``(64, 128, 128)``. ``model`` and ``dtype`` name the model and precision that made them: an
    engine refuses an embedding of another model.
    """

    image_id: str
    features: dict[str, torch.Tensor]
    original_size: tuple[int, int]  # (H, W) pixels
    input_size: tuple[int, int]  # (h, w) of the resized image inside the model's square input
    image_hash: str
    model: str
    dtype: str

    @property
    def embedding(self) -> torch.Tensor:
        """The ``(C, 64, 64)`` image embedding (the features of every official model's decoder)."""
        return self.features[IMAGE_EMBED]

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor held."""
        return sum(t.numel() * t.element_size() for t in self.features.values())

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

    def most_confident(self) -> SegmentResult:
        """Each object's highest-scoring candidate (M = 1; Roboflow's
        ``choose_most_confident_sam_prediction``)."""
        scores, masks, logits = most_confident(self.scores, self.masks, self.low_res_logits)
        return SegmentResult(self.image_id, masks, scores, logits)


@dataclass(frozen=True)
class _Logits:
    """Best low-res logits ``(N, 1, 256, 256)`` of the last call on an image (for refinement)."""

    logits: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.logits.numel() * self.logits.element_size()


class SamEngine:
    """A segmentation model of any family with a byte-bounded embedding cache. Thread-safe.

    The encoder and the decoder each run one batch at a time under their own lock, so a
    cached ``segment_image`` never waits behind another thread's ``embed_image``.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        cache_bytes: int = 1024 * MiB,
        cache_fp16: bool = False,
        encoder: ImplChoice = "auto",
        decoder: ImplChoice = "auto",
        encoder_int8: bool = False,
        encoder_compile: bool = False,
        chunk_size: int = 32,
        random_weights: bool = False,
        cache_tiers: Any = None,
    ) -> None:
        # which passes run (dtseg.runtime.fast_path); the int8 encoder is a fast one
        self.encoder_impl = "fast" if encoder_int8 and encoder == "auto" else choose("encoder", encoder, device)
        self.decoder_impl = choose("decoder", decoder, device)
        model.configure(device, dtype, encoder=self.encoder_impl, decoder=self.decoder_impl,
                        encoder_int8=encoder_int8, encoder_compile=encoder_compile)
        self.model = model
        self.device, self.dtype = device, model.dtype  # decoder inputs; model.precision: the encoder's
        self.model_name, self.random_weights = model.model_name, random_weights
        self.cache_fp16, self.chunk_size = cache_fp16, max(1, int(chunk_size))
        # cache_tiers: a CacheConfig (Redis, a folder) behind the in-process LRU; see dtseg.cache.tiers
        tiers = build_tiers(cache_tiers)
        scope = cache_scope(self.model_name, dtype, model.net) if tiers else self.model_name
        self.embeddings = TieredCache(ByteLRUCache(cache_bytes), tiers, Embedding, "embedding", scope)
        self.mask_logits = TieredCache(ByteLRUCache(max(64 * MiB, cache_bytes // 16)),
                                       tiers if getattr(cache_tiers, "mask_logits", False) else [], _Logits, "logits",
                                       scope)
        self.encoder_calls = 0  # images through the encoder, for tests and /info
        self._encoder_lock, self._decoder_lock = threading.Lock(), threading.Lock()
        self._last_features: tuple[Embedding, dict[str, torch.Tensor]] | None = None

    @property
    def family(self) -> str:
        """The model's family name (``sam``, ``mobile_sam``, ``sam2.1``, a plugin's): for people;
        code asks ``capabilities``."""
        return self.model.family

    @property
    def capabilities(self) -> Capabilities:
        """What the model's family can do (prompt kinds, lineage, video memory)."""
        return self.model.capabilities

    @property
    def dtype_name(self) -> str:
        """The precision chosen (``float32``, ``bfloat16``, ``float16``), which embeddings carry."""
        return str(self.model.precision).removeprefix("torch.")

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
        keep_heap: bool = False,
        **options: Any,
    ) -> SamEngine:
        """Build an engine. ``model``: a model name (``dtseg models`` lists them: ``vit_b``,
        ``mobile_sam``, ``sam2.1_t``, ...; ``tiny*`` for tests) or an architecture (``SamSpec``).
        ``checkpoint``: a path, ``None`` (cache, then download) or ``"random"`` (tests only).
        ``dtype``: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16 where the device runs it natively,
        see ``dtseg.runtime.precision``). ``threads``: torch CPU threads (default: the process's
        real CPU quota). ``keep_heap``: keep freed memory in the process heap from now on, for
        every library in the process (``dtseg.runtime.allocator``; faster large temporaries, a
        resident size that does not shrink). ``options``: the constructor's, e.g.
        ``encoder``/``decoder`` = ``auto`` (the fast passes on the CPU, the reference modules on
        devices they were not benchmarked on: ``dtseg.runtime.fast_path``), ``fast``, ``reference``."""
        from dtseg.runtime.allocator import keep_freed_memory
        from dtseg.runtime.threads import configure_threads

        configure_threads(threads)
        weights = resolve_checkpoint(model, checkpoint)
        chosen = select_device(device)
        loaded = build_model(model, weights, seed=seed)
        engine = cls(loaded, device=chosen, dtype=select_dtype(dtype, chosen), cache_bytes=cache_bytes,
                     random_weights=weights == RANDOM, **options)
        if keep_heap:  # once the engine exists: a failed load leaves the process as it was
            keep_freed_memory()
        return engine

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
        for i, (image, image_id) in enumerate(zip(images, ids, strict=True)):
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
            for digest, (features, transform) in zip(batch, self._encode([pixels[d] for d in batch]), strict=True):
                for i, key_id in waiting[digest]:
                    embedding = Embedding(key_id, features, transform.original_size, transform.input_size, digest,
                                          self.model_name, self.dtype_name)
                    results[i] = embedding
                    if cache:  # as each batch finishes: a later failure loses nothing already encoded
                        self.store_embedding(embedding, namespace)
        return results  # type: ignore[return-value]

    def store_embedding(self, embedding: Embedding, namespace: str = "") -> None:
        """Cache ``embedding`` under its ``image_id`` (e.g. one a client computed); refinement
        logits of other pixels under that id are dropped."""
        self._check_model(embedding)
        key = (namespace, _check_image_id(embedding.image_id))
        old = self.embeddings.get(key)
        if old is None or old.image_hash != embedding.image_hash:
            self.mask_logits.pop(key)
        if self.cache_fp16:
            embedding = replace(embedding, features={k: t.half() for k, t in embedding.features.items()})
        self.embeddings.put(key, embedding)

    def get_embedding(self, image_id: str, namespace: str = "") -> Embedding:
        """The cached embedding of ``image_id``, or ``ImageNotEmbeddedError``."""
        cached = self.embeddings.get((namespace, _check_image_id(image_id)))
        if cached is None:
            raise ImageNotEmbeddedError(image_id)
        return cached

    def has_mask_logits(self, image_id: str, namespace: str = "") -> bool:
        """Whether the last call on ``image_id`` left logits for ``mask_input="cached"``."""
        return (namespace, image_id) in self.mask_logits

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        """Shape of one image's ``image_embed``, e.g. ``(256, 64, 64)``."""
        return self.model.feature_shapes()[IMAGE_EMBED]

    def embedding_from_array(self, array: np.ndarray, original_size: tuple[int, int],
                             image_id: str | None = None) -> Embedding:
        """A client-held image embedding ``(C, 64, 64)`` or ``(1, C, 64, 64)`` of an image of
        ``original_size`` ``(H, W)`` -> an ``Embedding`` (not cached; see ``store_embedding``).
        Only families whose decoder needs nothing but that tensor accept one."""
        shapes = self.model.feature_shapes()
        if set(shapes) != {IMAGE_EMBED}:
            raise InputError("embeddings", f"{self.model_name} needs more than the image embedding "
                                           f"({', '.join(shapes)}): send the image instead")
        expected = shapes[IMAGE_EMBED]
        array = np.asarray(array)
        if array.shape == (1, *expected):
            array = array[0]
        if array.shape != expected:
            raise InputError("embeddings", f"expected shape (1, {', '.join(map(str, expected))}) or {expected}, "
                                           f"got {array.shape}")
        if not np.isfinite(array).all():
            raise InputError("embeddings", "expected finite numbers")
        height, width = int(original_size[0]), int(original_size[1])
        digest = "embedding-" + hashlib.blake2b(array.tobytes() + f"{height}x{width}".encode(),
                                                digest_size=16).hexdigest()
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device, self.model.precision)
        transform = self.model.transform(height, width)
        return Embedding(image_id or digest, {IMAGE_EMBED: tensor}, (height, width), transform.input_size, digest,
                         self.model_name, self.dtype_name)

    def _check_model(self, embedding: Embedding) -> None:
        if embedding.model != self.model_name:
            raise EmbeddingMismatchError(embedding.model, self.model_name)

    def _encode(self, images: list[np.ndarray]) -> list[tuple[dict[str, torch.Tensor], ImageTransform]]:
        transforms = [self.model.transform(*im.shape[:2]) for im in images]
        with torch.inference_mode(), self._encoder_lock:
            features = self.model.embed(images, transforms)
            self.encoder_calls += len(images)
        return [({k: v[i] for k, v in features.items()}, t) for i, t in enumerate(transforms)]

    def _embedding_for(self, image: ImageLike | None, image_id: str | None, namespace: str) -> Embedding:
        if image is not None:
            return self.embed_image(image, image_id, namespace)
        if image_id is None:
            raise InputError("image", "give an image, or the image_id of an embedded image")
        return self.get_embedding(image_id, namespace)

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

        Prompts mean what they mean to ``SamPredictor.predict``: a -1 label is SAM's
        not-a-point token; a NaN point (label -1) pads a ragged object and is no point at all;
        no points, box or mask at all is one object decoded from no prompt.
        """
        # every check that needs no embedding comes first: a bad request costs no encoder pass
        num_objects = _mask_batch(mask_input) if point_coords is None and boxes is None else None
        prompts = Prompts.from_arrays(point_coords, point_labels, boxes, num_objects=num_objects)
        self._check_prompt_kinds(prompts, mask_input is not None)
        masks_in = self._check_mask_input(mask_input, len(prompts))
        embedding = self._embedding_for(image, image_id, namespace)
        if isinstance(masks_in, str):
            masks_in = self._cached_mask_logits((namespace, embedding.image_id), len(prompts))
        logits, scores = self._decode(embedding, prompts, masks_in, multimask_output)
        masks = self._masks(logits, embedding)
        logits = self._clamp(logits)
        self.mask_logits.put((namespace, embedding.image_id), _Logits(most_confident(scores, logits)[1]))
        return SegmentResult(embedding.image_id, masks, scores.numpy(), logits.numpy())

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
        self._check_prompt_kinds(prompts, False)
        if isinstance(image, Embedding):
            self._check_model(image)
            embedding = image
        elif isinstance(image, str) and not Path(image).is_file():  # an image id, not a path
            embedding = self._embedding_for(None, image, namespace)
        else:
            embedding = self.embed_image(image, None, namespace, cache=cache)
        logits, scores = self._decode(embedding, prompts, None, multimask_output)
        best_scores, best_logits = most_confident(scores, logits)
        masks = self._masks(best_logits, embedding)[:, 0]
        if cache:
            self.mask_logits.put((namespace, embedding.image_id), _Logits(self._clamp(best_logits)))
        return prompt_detections(prompts, masks, best_scores[:, 0].numpy())

    # -- concepts -------------------------------------------------------------------------
    def segment_concepts(
        self,
        image: ImageLike | Embedding | None = None,
        concepts: Any = None,
        image_id: str | None = None,
        threshold: float = 0.5,
        nms_iou: float | None = None,
        namespace: str = "",
        cache: bool = True,
    ) -> list[ConceptResult]:
        """Every instance matching each concept prompt, on an image given as pixels, a cached
        ``image_id`` or an ``Embedding`` (the same embedding visual prompts use).

        ``concepts``: a phrase, a ``ConceptPrompt``, a mapping ``{text, boxes, box_labels,
        threshold}`` (exemplar boxes ``xyxy`` in image pixels, labels True = positive), or a
        sequence of them. All prompts of a call share the image features (each phrase is
        encoded once, then kept in the family's LRU). An instance is kept when its score
        (sigmoid(logit) x presence) exceeds the prompt's threshold, else ``threshold``;
        ``nms_iou`` also drops, within a prompt, a mask whose IoU with a better one exceeds
        it. Returns one ``ConceptResult`` per prompt, in order, its instances in the detector's
        query order as Meta's and Roboflow's (``to_detections`` merges them).
        A model without concept prompts (``capabilities.prompts``) raises ``PromptError``.
        """
        if "concepts" not in self.capabilities.prompts:
            raise PromptError("concepts", f"{self.model_name} takes points, boxes and masks only; concept prompts "
                                          "(phrases, exemplar boxes) need a SAM 3 model (sam.model: sam3)")
        prompts = concept_prompts(concepts)
        threshold = check_threshold(threshold, "threshold")
        if nms_iou is not None:
            nms_iou = check_threshold(nms_iou, "nms_iou")
        if isinstance(image, Embedding):
            self._check_model(image)
            embedding = image
        elif image is not None:
            embedding = self.embed_image(image, image_id, namespace, cache=cache)
        else:
            embedding = self._embedding_for(None, image_id, namespace)
        transform = embedding.transform
        features = {k: t.to(self.device)[None] for k, t in embedding.features.items()}
        boxes = [self._tensor(transform.boxes(p.boxes)) for p in prompts]
        labels = [torch.as_tensor(p.box_labels, device=self.device) for p in prompts]
        with torch.inference_mode(), self._decoder_lock:
            model = self.model
            assert isinstance(model, ConceptDecoder)  # capabilities.prompts has "concepts"
            out = model.decode_concepts(features, [p.text for p in prompts], boxes, labels)
        height, width = embedding.original_size
        results = []
        for i, prompt in enumerate(prompts):
            scores = out.scores[i]
            keep = torch.nonzero(scores > (threshold if prompt.threshold is None else prompt.threshold))[:, 0]
            kept_boxes = (out.boxes[i, keep] * torch.tensor([width, height, width, height])).numpy()
            masks = masks_from_low_res(out.mask_logits[i, keep][:, None], embedding.input_size, (height, width),
                                       self.model.input_length, single_step=True)[:, 0]
            kept_scores = scores[keep].numpy()
            if nms_iou is not None and len(keep) > 1:
                index = mask_nms(masks, kept_scores, nms_iou)
                masks, kept_boxes, kept_scores = masks[index], kept_boxes[index], kept_scores[index]
            results.append(ConceptResult(embedding.image_id, prompt, masks, kept_boxes.astype(np.float32),
                                         kept_scores.astype(np.float32)))
        return results

    def _masks(self, logits: torch.Tensor, embedding: Embedding) -> np.ndarray:
        """Low-res logits ``(N, M, L, L)`` -> bool masks ``(N, M, H, W)`` by the family's rule."""
        return masks_from_low_res(self.model.fill_holes(logits), embedding.input_size, embedding.original_size,
                                  self.model.input_length, single_step=self.model.single_upsample)

    def _clamp(self, logits: torch.Tensor) -> torch.Tensor:
        """The low-res logits as the family's reference predictor returns them."""
        bound = self.model.logit_clamp
        return logits if bound is None else logits.clamp(-bound, bound)

    def _decode(
        self, embedding: Embedding, prompts: Prompts, masks_in: torch.Tensor | None, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``(N, M, 256, 256)`` and scores ``(N, M)``, float32 on the CPU.

        Objects are grouped by prompt layout (number of real points, -1 tokens included, and
        box or not), since SAM's prompt encoder takes one layout per call; each group is one
        batched decoder pass (split in chunks of ``chunk_size``). Each object's real points are
        compacted, so no padding reaches SAM and object i's result depends only on prompt i.
        """
        self._check_model(embedding)
        n, m = len(prompts), 3 if multimask else 1
        low_len = self.model.mask_length
        logits = torch.empty((n, m, low_len, low_len), dtype=torch.float32)
        scores = torch.empty((n, m), dtype=torch.float32)
        counts, has_box = prompts.num_points, prompts.has_box
        features = self._decoder_features(embedding)
        transform = embedding.transform
        for layout in sorted(set(zip(counts.tolist(), has_box.tolist(), strict=True))):
            index = np.flatnonzero((counts == layout[0]) & (has_box == layout[1]))
            for chunk in np.array_split(index, -(-len(index) // self.chunk_size)):
                low, iou = self._decode_group(features, transform, prompts, chunk, layout, masks_in, multimask)
                logits[chunk], scores[chunk] = low.float().cpu(), iou.float().cpu()
        return logits, scores

    def _decoder_features(self, embedding: Embedding) -> dict[str, torch.Tensor]:
        """``embedding``'s features as ``decode`` takes them (batch dim 1, on device, in the
        decoder's precision), kept for the last embedding decoded: repeated calls on one image
        cast once and hand the decoder the same tensors, so it reuses what it derived from them
        (``FastMaskDecoder._once``)."""
        last = self._last_features
        if last is not None and last[0] is embedding:
            return last[1]
        features = {k: t.to(self.device, self.model.decoder_dtype)[None] for k, t in embedding.features.items()}
        self._last_features = (embedding, features)
        return features

    def _decode_group(
        self,
        features: dict[str, torch.Tensor],
        transform: ImageTransform,
        prompts: Prompts,
        index: np.ndarray,
        layout: tuple[int, bool],
        masks_in: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_points, has_box = layout
        coords = labels = boxes = masks = None
        if num_points:
            real = prompts.is_point[index]
            coords = self._tensor(transform.coords(prompts.points[index][real].reshape(len(index), num_points, 2)))
            labels = torch.as_tensor(prompts.labels[index][real].reshape(len(index), num_points), device=self.device)
        if has_box:
            boxes = self._tensor(transform.boxes(prompts.boxes[index]))
        if masks_in is not None:
            masks = masks_in[torch.as_tensor(index)].to(self.device, self.dtype)
        with torch.inference_mode(), self._decoder_lock:
            low, iou = self.model.decode(features, coords, labels, boxes, masks, multimask)
        # no prompt at all: SAM's prompt encoder sizes the batch at 1, and every such row is alike
        return low.expand(len(index), -1, -1, -1), iou.expand(len(index), -1)

    def _check_prompt_kinds(self, prompts: Prompts, masks: bool) -> None:
        """Points, boxes and mask inputs only where the family takes them (``capabilities.prompts``)."""
        takes = self.capabilities.prompts
        for kind, field, given in (("points", "point_coords", bool(prompts.num_points.any())),
                                   ("boxes", "boxes", bool(prompts.has_box.any())), ("masks", "mask_input", masks)):
            if given and kind not in takes:
                raise PromptError(field, f"the {self.family} family takes no {kind} (it takes "
                                         f"{', '.join(sorted(takes)) or 'none'})")

    def _check_mask_input(self, mask_input: Any, n: int) -> torch.Tensor | str | None:
        """``None``, ``"cached"`` (returned as is: resolved once the image id is known), or logits
        ``(L, L)`` / ``(1|N, [1,] L, L)`` -> checked ``(N, 1, L, L)`` (``L = mask_length``)."""
        if mask_input is None:
            return None
        if isinstance(mask_input, str):
            if mask_input != "cached":
                raise PromptError("mask_input", f"expected logits or 'cached', got {mask_input!r}")
            return mask_input
        masks = mask_input_batch(mask_input, self.model.mask_length)
        return self._fit_masks(torch.from_numpy(masks), n)

    def _cached_mask_logits(self, key: tuple[str, str], n: int) -> torch.Tensor:
        """The best logits of the last call on ``key``'s image, for ``n`` objects."""
        entry = self.mask_logits.get(key)
        if entry is None:
            raise PromptError("mask_input", f"no cached mask logits for image_id {key[1]!r}: segment it once first")
        return self._fit_masks(entry.logits, n, f"the cached logits of image_id {key[1]!r} (the last call's)")

    def _fit_masks(self, masks: torch.Tensor, n: int, source: str = "the logits given") -> torch.Tensor:
        """``(1|N, 1, L, L)`` -> ``(N, 1, L, L)``, or a ``PromptError`` naming the counts and
        ``source`` (the caller's logits, or the cache's)."""
        if len(masks) == 1 and n > 1:
            masks = masks.expand(n, -1, -1, -1)
        if len(masks) != n:
            raise PromptError("mask_input", f"{source} are {len(masks)} masks for {n} objects")
        return masks

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device, dtype=self.dtype)

    # -- stats ----------------------------------------------------------------------------
    def summary(self) -> str:
        """One line for a command's first output: model, device, precision and why, which passes run."""
        random = " (RANDOM WEIGHTS: masks are meaningless)" if self.random_weights else ""
        precision = describe(self.device, self.model.plan, self.model.autocast)
        passes = describe_passes(self.encoder_impl, self.decoder_impl, self.device)
        return f"{self.model_name} on {self.device}, {precision}; {passes}{random}"

    def info(self) -> dict[str, Any]:
        """Model, device, precision, which passes run (``encoder``/``decoder``: ``fast`` or
        ``reference``), whether the process keeps freed memory (``keep_heap``) and cache counters
        (what the server's ``/info`` shows)."""
        stats, logits = self.embeddings.stats(), self.mask_logits.stats()
        return {
            "model": self.model_name,
            "family": self.family,
            "random_weights": self.random_weights,
            "device": str(self.device),
            "dtype": self.dtype_name,
            "dtype_auto": dtype_name(auto_dtype(self.device)),
            "dtype_path": self.model.plan.path,  # native | emulated | fallback (dtseg.runtime.precision)
            "compute_dtype": dtype_name(self.model.compute),
            "autocast": self.model.autocast,
            "encoder": self.encoder_impl,
            "decoder": self.decoder_impl,
            "keep_heap": heap_kept(),
            "encoder_calls": self.encoder_calls,
            "cache": stats.counters(),
            "mask_logits_cache": {"entries": logits.entries, "bytes": logits.bytes, "max_bytes": logits.max_bytes},
        }


def _check_image_id(image_id: Any) -> str:
    from dtseg.ids import check_image_id

    return check_image_id(image_id)


def _require_point_or_box(prompts: Prompts) -> None:
    """Every object of a pipeline needs a point (a -1 token counts) or a box."""
    empty = np.flatnonzero((prompts.num_points == 0) & ~prompts.has_box)
    if len(empty):
        raise PromptError("point_coords", f"objects {empty.tolist()} have no point and no box")


def _mask_batch(mask_input: Any) -> int:
    """How many objects a prompt without points or boxes has: one per mask input, else one."""
    if mask_input is None or isinstance(mask_input, str):
        return 1
    shape = np.shape(mask_input)
    return shape[0] if len(shape) == 4 else 1


def most_confident(scores: Any, *candidates: Any) -> tuple[Any, ...]:
    """Each object's highest-scoring candidate: ``scores`` ``(N, M)`` and each of ``candidates``
    ``(N, M, ...)`` (numpy arrays or CPU tensors) -> ``scores`` ``(N, 1)`` and each ``(N, 1, ...)``."""
    rows, best = np.arange(len(scores)), np.asarray(scores.argmax(1))
    return tuple(x[rows, best][:, None] for x in (scores, *candidates))


def mask_input_batch(value: Any, side: int = 256, field: str = "mask_input") -> np.ndarray:
    """Mask-input logits ``(L, L)``, ``(N, L, L)`` or ``(N, 1, L, L)`` (``L = side``, the family's
    ``mask_length``) -> finite float32 ``(N, 1, L, L)``, ``N >= 1``; else a ``PromptError`` naming
    ``field``."""
    try:
        masks = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PromptError(field, f"expected numbers: {exc}") from exc
    if not np.isfinite(masks).all():
        raise PromptError(field, "logits must be finite")
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim == 3:
        masks = masks[:, None]
    if masks.ndim != 4 or masks.shape[1:] != (1, side, side) or len(masks) == 0:
        raise PromptError(field, f"expected logits ({side}, {side}), (N, {side}, {side}) or (N, 1, {side}, {side}), "
                                 f"got {np.shape(value)}")
    return np.ascontiguousarray(masks)
