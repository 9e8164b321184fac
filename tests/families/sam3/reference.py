"""Meta's SAM 3 reference paths on the CPU, as their users call them, for the tests.

- ``processor_concepts``: ``Sam3Processor`` (one phrase, then exemplar boxes, per call; one image
  state shared by all prompts).
- ``batched_concepts``: the batched path Roboflow Inference uses: one ``Datapoint`` with a
  ``FindQueryLoaded`` per prompt, ``collate_fn_api``, one forward, ``PostProcessImage``.
- ``Sam3Image.predict_inst`` on a processor state: visual prompts (see ``run_reference`` in
  test_sam3_net.py).

Prompts: a phrase (or ``None``: Meta's placeholder ``"visual"``) and exemplar boxes
``(x0, y0, x1, y1)`` in image pixels, each with a label (``True`` positive). Results hold
every query (threshold 0): ``boxes`` ``(Q, 4)`` xyxy pixels, ``scores`` ``(Q,)`` =
sigmoid(logit) x presence, ``masks`` ``(Q, H, W)`` bool; ``Q = 200`` (the decoder's queries).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from dtseg.families.sam3.net import on_device


@dataclass(frozen=True)
class Concept:
    phrase: str | None
    boxes: tuple[tuple[tuple[float, float, float, float], bool], ...] = field(default=())


def _cxcywh(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]


def processor_concepts(net: torch.nn.Module, image: Image.Image, concepts: list[Concept],
                       resolution: int, threshold: float = 0.0) -> list[dict[str, np.ndarray]]:
    """Each concept through ``Sam3Processor`` on one shared image state; only queries scoring
    above ``threshold`` (Meta's default: 0.5) are kept."""
    from sam3.model.sam3_image_processor import Sam3Processor

    results = []
    with torch.inference_mode(), on_device("cpu"):
        processor = Sam3Processor(net, resolution=resolution, device="cpu", confidence_threshold=threshold)
        state = processor.set_image(image)
        for concept in concepts:
            processor.reset_all_prompts(state)
            if concept.phrase is not None:
                processor.set_text_prompt(concept.phrase, state)
            for box, positive in concept.boxes:
                processor.add_geometric_prompt(_cxcywh(box, *image.size), positive, state)
            results.append({"boxes": state["boxes"].numpy(), "scores": state["scores"].numpy(),
                            "masks": state["masks"][:, 0].numpy()})
    return results


def batched_concepts(net: torch.nn.Module, image: Image.Image, concepts: list[Concept],
                     resolution: int) -> list[dict[str, np.ndarray]]:
    """All concepts as queries of one ``Datapoint``, in one forward pass."""
    from sam3.eval.postprocessors import PostProcessImage
    from sam3.model.utils.misc import copy_data_to_device
    from sam3.train.data.collator import collate_fn_api
    from sam3.train.data.sam3_image_dataset import Datapoint, FindQueryLoaded, InferenceMetadata
    from sam3.train.data.sam3_image_dataset import Image as DatapointImage
    from sam3.train.transforms.basic_for_api import ComposeAPI, NormalizeAPI, RandomResizeAPI, ToTensorAPI

    width, height = image.size
    queries = []
    for i, concept in enumerate(concepts, start=1):
        boxes = [box for box, _ in concept.boxes]
        queries.append(FindQueryLoaded(
            query_text=concept.phrase if concept.phrase is not None else "visual", image_id=0,
            object_ids_output=[], is_exhaustive=True, query_processing_order=0,
            input_bbox=torch.tensor(boxes, dtype=torch.float).view(-1, 4) if boxes else None,
            input_bbox_label=torch.tensor([p for _, p in concept.boxes], dtype=torch.bool) if boxes else None,
            inference_metadata=InferenceMetadata(coco_image_id=i, original_image_id=i, original_category_id=1,
                                                 original_size=[height, width], object_id=0, frame_index=0)))
    transform = ComposeAPI(transforms=[
        RandomResizeAPI(sizes=resolution, max_size=resolution, square=True, consistent_transform=False),
        ToTensorAPI(), NormalizeAPI(mean=[0.5] * 3, std=[0.5] * 3)])
    datapoint = transform(Datapoint(find_queries=queries, images=[DatapointImage(data=image, objects=[],
                                                                                 size=[height, width])]))
    postprocess = PostProcessImage(max_dets_per_img=-1, iou_type="segm", use_original_sizes_box=True,
                                   use_original_sizes_mask=True, convert_mask_to_rle=False, detection_threshold=0.0,
                                   to_cpu=True, always_interpolate_masks_on_gpu=False)
    with torch.inference_mode(), on_device("cpu"):
        batch = copy_data_to_device(collate_fn_api([datapoint], dict_key="input")["input"], torch.device("cpu"))
        results = postprocess.process_results(net(batch), batch.find_metadatas)
    return [{"boxes": results[i]["boxes"].numpy(), "scores": results[i]["scores"].numpy(),
             "masks": results[i]["masks"][:, 0].numpy()} for i in range(1, len(concepts) + 1)]
