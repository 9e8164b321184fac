"""``VideoJob``: a video through the pipeline into its sinks, an annotated video and a JSONL file
(``AnnotatedVideo``, ``JsonlSink``), with a progress bar, Ctrl-C handling (by the caller's
``should_stop``) and ``--resume``."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dtseg.config import VideoConfig
from dtseg.contracts import Segmenter, Sink
from dtseg.errors import InputError
from dtseg.video.jsonl import JsonlSink, JsonlState, scan_jsonl
from dtseg.video.mp4 import count_frames
from dtseg.video.output import AnnotatedVideo, video_annotator
from dtseg.video.process import iter_results, pipeline_video_config
from dtseg.video.source import SourceArg, VideoSource
from dtseg.video.tracking import ObjectTracker, TrackerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePlan:
    """Where a run starts: ``start`` frame, ``max_frames`` left, ``done`` frames already written
    (``keep_bytes`` of the JSONL, ``done`` video frames), ``first_id`` for new tracks."""

    start: int
    max_frames: int | None
    done: int = 0
    keep_bytes: int | None = None
    first_id: int = 0


def plan_resume(state: JsonlState, start: int, stride: int, max_frames: int | None) -> ResumePlan:
    """Continue a run of frames ``start, start + stride, ...`` after the JSONL's last complete frame.
    ``max_frames`` counts from ``start``, as in the first run (the same command line resumes)."""
    if state.last_frame is None:
        return ResumePlan(start, max_frames)  # nothing complete: start over
    if state.last_frame < start:
        raise InputError("resume", f"the JSONL ends at frame {state.last_frame}, before --start {start}: "
                                   "is it another run's file?")
    done = (state.last_frame - start) // stride + 1
    left = None if max_frames is None else max(0, max_frames - done)
    return ResumePlan(state.last_frame + stride, left, state.frames, state.valid_bytes, state.max_id + 1)


@dataclass
class JobSummary:
    """How a run went: ``frames`` processed now (``resumed`` were already done), source indices
    ``first_frame``..``last_frame``, wall ``seconds``, ``objects`` written, per-stage seconds."""

    frames: int = 0
    resumed: int = 0
    first_frame: int | None = None
    last_frame: int | None = None
    seconds: float = 0.0
    objects: int = 0
    interrupted: bool = False
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"segment": 0.0, "track": 0.0, "write": 0.0})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class VideoJob:
    """A video run. ``out``: the annotated video (``None``: none); ``jsonl``: per-frame records
    (``None``: none). Frames ``start, start + stride, ...``, at most ``max_frames``. ``resume``:
    continue ``jsonl`` (and ``out``) after its last complete frame. ``fps`` overrides the source's."""

    source: SourceArg
    out: Path | None
    jsonl: Path | None = None
    start: int = 0
    stride: int = 1
    max_frames: int | None = None
    track: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    resume: bool = False
    fps: float | None = None
    progress: bool = True
    video: VideoConfig | None = None  # the ``video`` config section; None: the pipeline's

    def run(self, pipeline: Segmenter, should_stop: Callable[[], bool] = lambda: False) -> JobSummary:
        """Process the frames; outputs are closed (playable, readable) however the loop ends."""
        if self.stride < 1 or self.start < 0 or (self.max_frames is not None and self.max_frames < 0):
            raise InputError("frames", "need --stride >= 1, --start >= 0 and --max-frames >= 0")
        if self.resume and self.jsonl is None:
            raise InputError("resume", "--resume continues a --jsonl file: give it")
        summary = JobSummary()
        with VideoSource(self.source, self.fps) as video:
            info = video.info
            plan = ResumePlan(self.start, self.max_frames)
            if self.resume:
                if not info.seekable:
                    raise InputError("resume", f"{info.name} is a live {info.kind}: it cannot be resumed")
                plan = plan_resume(self._aligned_state(), self.start, self.stride, self.max_frames)
            summary.resumed = plan.done
            config = self._video_config(pipeline)
            tracker: Any = None
            if config.mode == "propagate":
                from dtseg.video.propagate import ObjectBook, propagator_for

                tracker = ObjectBook(propagator_for(pipeline, config), config, plan.first_id)
            elif self.track:
                tracker = ObjectTracker(info.fps, self.tracker, plan.first_id)
            sinks: list[Sink] = []
            try:
                if self.out is not None:
                    annotator = video_annotator(_annotated_options(pipeline), pipeline.random_label)
                    sinks.append(AnnotatedVideo(self.out, info.width, info.height, info.fps / self.stride,
                                                annotator, keep_frames=plan.done))
                if self.jsonl is not None:
                    sinks.append(JsonlSink(self.jsonl, plan.keep_bytes))
                self._loop(pipeline, video, plan, tracker, sinks, should_stop, summary)
            finally:
                for sink in sinks:
                    sink.close()
        summary.interrupted = bool(should_stop())
        return summary

    def _video_config(self, pipeline: Segmenter) -> VideoConfig:
        config = self.video if self.video is not None else pipeline_video_config(pipeline)
        return config if config is not None else VideoConfig()

    def _aligned_state(self) -> JsonlState:
        """The JSONL's complete frames, cut to the frames the video holds (a killed run's video
        may lag its JSONL): video frame k must stay JSONL line k, so frames after the video's
        last are done again."""
        assert self.jsonl is not None
        state = scan_jsonl(self.jsonl)
        if self.out is None or not state.frames:
            return state
        video_frames = count_frames(self.out)
        if video_frames < state.frames:
            log.warning("%s holds %d frames, %s %d: redoing the frames after the video's last, so that video "
                        "frame k stays JSONL line k", self.out, video_frames, self.jsonl, state.frames)
            state = scan_jsonl(self.jsonl, max_lines=video_frames)
        return state

    def _loop(self, pipeline: Segmenter, video: VideoSource, plan: ResumePlan, tracker: Any,
              sinks: list[Sink], should_stop: Callable[[], bool], summary: JobSummary) -> None:
        remaining = video.info.expected_frames(plan.start, self.stride, plan.max_frames)
        started = time.perf_counter()
        if tracker is not None and not isinstance(tracker, ObjectTracker):  # propagate mode's ObjectBook
            from dtseg.video.propagate import iter_propagated

            results = iter_propagated(pipeline, video, tracker, start=plan.start, stride=self.stride,
                                      max_frames=plan.max_frames, should_stop=should_stop)
        else:
            results = iter_results(pipeline, video, start=plan.start, stride=self.stride,
                                   max_frames=plan.max_frames, tracker=tracker, should_stop=should_stop)
        with tqdm(total=None if remaining is None else plan.done + remaining, initial=plan.done, unit="frame",
                  file=sys.stderr, disable=not self.progress, dynamic_ncols=True, smoothing=0.1) as bar:
            for result in results:
                t0 = time.perf_counter()
                for sink in sinks:
                    sink.write(f"frame_{result.index}", result.frame, result.detections)
                for stage, seconds in result.seconds.items():
                    summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
                summary.stage_seconds["write"] += time.perf_counter() - t0
                summary.frames += 1
                summary.objects += len(result.detections)
                summary.first_frame = result.index if summary.first_frame is None else summary.first_frame
                summary.last_frame = result.index
                summary.seconds = time.perf_counter() - started
                bar.set_postfix(frame=result.index, objects=len(result.detections),
                                fps=f"{summary.frames / max(summary.seconds, 1e-9):.2f}", refresh=False)
                bar.update(1)


def _annotated_options(pipeline: Segmenter) -> dict[str, Any] | None:
    """The options of the config's ``annotated`` sink, if it has one (drawing options only)."""
    for entry in pipeline.loaded.config.sinks if pipeline.loaded is not None else []:
        name, options = next(iter(entry.items()))
        if name == "annotated":
            return {k: v for k, v in options.items() if k not in ("format", "jpg_quality", "subdir")}
    return None
