"""The frame loop: the whole pipeline on every frame, no caching of video frames, the public API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dtseg.video import VideoSource, iter_results, process_video
from tests.video.conftest import BoxEngine, shapes_pipeline


def test_prompts_run_on_every_frame(video_30: Path) -> None:
    engine = BoxEngine()
    pipeline = shapes_pipeline(engine)
    red_x = []
    for index, detections in process_video(pipeline, video_30, start=4, stride=2, max_frames=10):
        assert detections.metadata["frame_index"] == index
        assert detections.metadata["time_s"] == index / 10.0
        assert len(detections) == detections.metadata["num_prompts"]
        red_x.append(float(detections.xyxy[detections.class_id == 0][0, 0]))
    assert pipeline.stages[0].provider.calls == 10
    assert np.all(np.diff(red_x) > 0)  # the red box follows the square frame by frame
    assert engine.cache_flags == [False] * 10  # video frames never go into the embedding cache


def test_real_engine_keeps_the_image_cache(video_30: Path, small_frame: np.ndarray, tiny_sam_config: dict,
                                          one_torch_thread: None) -> None:
    pipeline = shapes_pipeline(sam=tiny_sam_config)
    engine = pipeline.engine
    engine.embed_image(small_frame)  # an image embedded earlier (e.g. by the server): cached
    cached = engine.embeddings.keys()
    sizes = (len(engine.embeddings), len(engine.mask_logits))
    calls = engine.encoder_calls
    results = list(process_video(pipeline, video_30, start=12, max_frames=2))
    assert [i for i, _ in results] == [12, 13]
    for _, detections in results:
        assert detections.mask.shape == (len(detections), 96, 128)
        assert sorted(detections.class_id.tolist()) == [0, 1, 2]  # red, green, blue in view
        assert "sam_score" in detections.data
    assert engine.encoder_calls == calls + 2  # each frame embedded once
    assert (len(engine.embeddings), len(engine.mask_logits)) == sizes
    assert engine.embeddings.keys() == cached
    engine.embed_image(small_frame)
    assert engine.encoder_calls == calls + 2  # the image's embedding survived the video


def test_should_stop_finishes_the_current_frame(video_30: Path) -> None:
    pipeline = shapes_pipeline(BoxEngine())
    asked: list[int] = []
    with VideoSource(video_30) as video:
        def stop() -> Any:
            asked.append(len(asked))
            return len(asked) >= 3
        results = list(iter_results(pipeline, video, should_stop=stop))
    assert [r.index for r in results] == [0, 1, 2]
    assert all(r.frame.shape == (96, 128, 3) and set(r.seconds) == {"segment", "track"} for r in results)


def test_closing_the_generator_releases_the_source(video_30: Path, monkeypatch) -> None:
    opened: list[VideoSource] = []
    released: list[bool] = []  # per close(): did it hold an open capture?
    original_init, original_close = VideoSource.__init__, VideoSource.close

    def init(self, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        opened.append(self)

    def close(self) -> None:
        released.append(self._capture is not None and self._capture.isOpened())
        original_close(self)

    monkeypatch.setattr(VideoSource, "__init__", init)
    monkeypatch.setattr(VideoSource, "close", close)
    generator = process_video(shapes_pipeline(BoxEngine()), video_30)
    assert next(generator)[0] == 0
    assert len(opened) == 1 and released == []  # open while the caller reads
    generator.close()  # a user's `break`: no exception, capture released
    assert released == [True] and opened[0]._capture is None


def test_pipeline_method_delegates(video_30: Path) -> None:
    pipeline = shapes_pipeline(BoxEngine())
    results = list(pipeline.process_video(video_30, start=3, stride=5, max_frames=2, track=False))
    assert [i for i, _ in results] == [3, 8]
