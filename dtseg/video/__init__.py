"""Video: stream frames through the pipeline with tracking, into an annotated video and JSONL.

* ``process_video(pipeline, source, ...)`` -- yields ``(frame_index, sv.Detections)``;
* ``VideoJob(...).run(pipeline)`` -- what ``dtseg video`` runs (outputs, progress, resume);
* ``VideoSource`` / ``iter_frames`` -- frames as RGB uint8 ``(H, W, 3)`` with index and time.
"""

from dtseg.video.job import JobSummary, VideoJob
from dtseg.video.jsonl import JsonlSink, JsonlWriter, frame_record, scan_jsonl
from dtseg.video.output import AnnotatedVideo
from dtseg.video.process import FrameResult, iter_results, process_video, segment_frame
from dtseg.video.source import Frame, SourceInfo, VideoSource, iter_frames
from dtseg.video.tracking import ObjectTracker, TrackerConfig

__all__ = [
    "AnnotatedVideo", "Frame", "FrameResult", "JobSummary", "JsonlSink", "JsonlWriter", "ObjectTracker", "SourceInfo",
    "TrackerConfig", "VideoJob", "VideoSource", "frame_record", "iter_frames", "iter_results", "process_video",
    "scan_jsonl", "segment_frame",
]
