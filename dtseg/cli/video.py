"""``dtseg video SOURCE --out OUT.mp4 [--jsonl OUT.jsonl]``: every frame through the pipeline, with
tracking, a progress bar, Ctrl-C that closes the outputs properly, and ``--resume``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from dtseg.cli.common import add_detector_shortcuts, add_pipeline_options, add_text_shortcut, build_pipeline, fail
from dtseg.errors import DtsegError

log = logging.getLogger("dtseg.video")

INTERRUPTED = 130


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "video", help="segment a video, a folder of frames, a webcam or a stream, with tracking",
        description="video.mode=detect (default): run the prompt stages and SAM on every processed frame, "
                    "IDs by ByteTrack. video.mode=propagate (SAM 2.1: --set sam.model=sam2.1_t; SAM 3: sam3): "
                    "the model's tracker carries each object by its memory, the prompt stages run every "
                    "video.detect_every frames (0: the first only), objects join and leave (video.match_iou, "
                    "video.lost_s, video.max_objects; docs/video.md). --text \"person, red car\" with "
                    "sam.model=sam3: every instance of each phrase (SAM 3's own tracker in propagate mode). "
                    "Writes an annotated video (--out) and per-frame JSON lines (--jsonl). Ctrl-C stops after "
                    "the current frame with both files closed; --resume continues a JSONL run.")
    parser.add_argument("source", metavar="SOURCE",
                        help="a video file, a folder of frames, a webcam index (0) or a stream URL (rtsp://, http://)")
    parser.add_argument("-o", "--out", required=True, metavar="OUT.mp4",
                        help="annotated video (fragmented H.264 MP4: plays even if the run is killed)")
    parser.add_argument("--jsonl", metavar="OUT.jsonl",
                        help="one JSON line per processed frame, flushed as it finishes")
    parser.add_argument("--stride", type=_positive, default=1, metavar="N", help="process every N-th frame (default 1)")
    parser.add_argument("--start", type=_non_negative, default=0, metavar="S", help="first frame index (default 0)")
    parser.add_argument("--max-frames", type=_non_negative, metavar="N", help="process at most N frames")
    parser.add_argument("--track", action=argparse.BooleanOptionalAction, default=True,
                        help="stable object IDs across frames with ByteTrack (default: on); --no-track keeps "
                             "the providers' own tracker_id, if any (detect mode; propagate mode always has IDs)")
    parser.add_argument("--track-thresh", type=float, default=0.5, metavar="CONF",
                        help="confidence a detection needs to start a track (default 0.5)")
    parser.add_argument("--track-lost", type=float, default=1.0, metavar="SECONDS",
                        help="how long an unseen track keeps its ID (default 1.0)")
    parser.add_argument("--fps", type=float, metavar="FPS",
                        help="frame rate of a folder of frames (default 30) or a source that reports none")
    parser.add_argument("--resume", action="store_true",
                        help="continue --jsonl (and --out) after its last complete frame; give the same options. "
                             "Video frame k stays JSONL line k: JSONL lines beyond the video's frames are redone")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_pipeline_options(parser)
    add_detector_shortcuts(parser)
    add_text_shortcut(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dtseg.video.interrupt import stop_on_sigint
    from dtseg.video.job import VideoJob
    from dtseg.video.tracking import TrackerConfig

    job = VideoJob(
        source=args.source, out=Path(args.out), jsonl=Path(args.jsonl) if args.jsonl else None,
        start=args.start, stride=args.stride, max_frames=args.max_frames, track=args.track,
        tracker=TrackerConfig(track_thresh=args.track_thresh, lost_s=args.track_lost),
        resume=args.resume, fps=args.fps, progress=args.progress,
    )
    try:
        pipeline = build_pipeline(args)
    except (DtsegError, ValueError, OSError) as exc:
        return fail(exc)
    with stop_on_sigint("stopping after this frame (Ctrl-C again to abort at once)") as stop:
        try:
            summary = job.run(pipeline, should_stop=stop)
        except (DtsegError, ValueError, OSError) as exc:
            return fail(exc, 1)
        except Exception as exc:  # a provider or SAM failed on a frame: the files are closed
            log.debug("video run failed", exc_info=True)
            print(f"dtseg: error: {type(exc).__name__}: {exc}\n(the outputs hold the frames finished before; "
                  "the same command with --resume continues)", file=sys.stderr)
            return 1
    _print_summary(job, summary, pipeline.random_label)
    if summary.interrupted:
        return INTERRUPTED
    return 0 if summary.frames or summary.resumed else 1


def _print_summary(job: Any, summary: Any, random_label: str | None) -> None:
    outputs = " and ".join(str(p) for p in (job.out, job.jsonl) if p is not None)
    frames = f"{summary.frames} frame{'s' * (summary.frames != 1)}"
    span = f" ({summary.first_frame}..{summary.last_frame})" if summary.frames else ""
    resumed = f", after {summary.resumed} done before" if summary.resumed else ""
    print(f"processed {frames}{span}{resumed} in {summary.seconds:.1f} s ({summary.fps:.2f} frames/s), "
          f"{summary.objects} objects -> {outputs}", file=sys.stderr)
    if summary.interrupted:
        print(f"interrupted: outputs closed after frame {summary.last_frame}; the same command with --resume "
              "continues" + ("" if job.jsonl else " (needs --jsonl)"), file=sys.stderr)
    elif not summary.frames and not summary.resumed:
        print(f"no frames read from {job.source}", file=sys.stderr)
    if random_label:
        print(f"NOTE: {random_label}", file=sys.stderr)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value
