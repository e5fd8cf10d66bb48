"""Animations: one frame per step, from --from to --to (both included), as a GIF or an MP4.

The panel is built once (FigureRenderer) and moved from step to step, so a frame costs one render.
GIF: pillow (frames quantised to 256 colours as they come, so memory stays at one byte a pixel).
MP4: raw frames piped to ffmpeg (from imageio-ffmpeg when installed, else `ffmpeg` on PATH); H.264,
yuv420p, which every player and slide program reads.

`AnimationJob` renders one frame per `step()` call, so the app can drive it from its event loop
(a timer), with a progress dialog and a cancel button, without ever freezing the window.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from memviz.core.trace import Trace
from memviz.errors import MemvizError
from memviz.export.render import FigureRenderer, check_out_path, panel_class

FORMATS = ("gif", "mp4")
DEFAULT_FPS = 4.0


class Cancelled(Exception):
    """The user stopped an export; the partial file has been removed."""


def ffmpeg_executable() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def step_range(trace: Trace, start: int | None, stop: int | None) -> range:
    """Steps start..stop, both included (defaults: the whole trace), checked against the trace."""
    n = len(trace)
    if n == 0:
        raise MemvizError("the trace has no steps to animate")
    start = 0 if start is None else start
    stop = n - 1 if stop is None else stop
    for name, value in (("--from", start), ("--to", stop)):
        if not 0 <= value < n:
            raise MemvizError(f"{name} {value} is out of range: this trace has {n} steps (0..{n - 1})")
    if stop < start:
        raise MemvizError(f"--to {stop} is before --from {start}")
    return range(start, stop + 1)


class _GifSink:
    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.duration = max(20, round(1000 / fps))  # ms; GIF counts in 1/100 s, viewers clamp < 20 ms
        self.frames = []

    def add(self, rgb: bytes, width: int, height: int) -> None:
        from PIL import Image

        frame = Image.frombytes("RGB", (width, height), rgb)
        self.frames.append(
            frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        )

    def close(self) -> None:
        if not self.frames:
            raise MemvizError("no frames to write")
        first, rest = self.frames[0], self.frames[1:]
        # disposal 1 and no optimisation: every step stays its own frame, even if two look alike
        first.save(
            self.path,
            format="GIF",
            save_all=True,
            append_images=rest,
            duration=self.duration,
            loop=0,
            optimize=False,
            disposal=1,
        )
        self.frames = []

    def abort(self) -> None:
        self.frames = []


class _Mp4Sink:
    def __init__(self, path: Path, fps: float) -> None:
        exe = ffmpeg_executable()
        if exe is None:
            raise MemvizError(
                "MP4 needs ffmpeg: install imageio-ffmpeg (pip install imageio-ffmpeg) or ffmpeg; "
                "or export --format gif"
            )
        self.path = path
        self.fps = fps
        self.exe = exe
        self.proc: subprocess.Popen | None = None
        self.size: tuple[int, int] | None = None

    def _start(self, width: int, height: int) -> None:
        self.size = (width, height)
        command = [
            self.exe,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            f"{self.fps:g}",
            "-i",
            "-",
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",  # yuv420p needs even sides
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "medium",
            "-crf",
            "18",
            "-movflags",
            "+faststart",
            str(self.path),
        ]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def add(self, rgb: bytes, width: int, height: int) -> None:
        if self.proc is None:
            self._start(width, height)
        try:
            self.proc.stdin.write(rgb)
        except BrokenPipeError:
            self._fail()

    def _fail(self) -> None:
        message = self.proc.stderr.read().decode(errors="replace").strip().splitlines() if self.proc else []
        self.abort()
        raise MemvizError(f"ffmpeg failed: {message[-1] if message else 'no message'}")

    def close(self) -> None:
        if self.proc is None:
            raise MemvizError("no frames to write")
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            self._fail()
        self.proc.stderr.close()

    def abort(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stderr):
                try:
                    stream.close()
                except (BrokenPipeError, OSError):
                    pass
            self.proc = None


def qimage_rgb(image) -> tuple[bytes, int, int]:
    from PySide6.QtGui import QImage

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height = rgb.width(), rgb.height()
    line = width * 3
    bits = bytes(rgb.constBits())
    stride = rgb.bytesPerLine()
    if stride != line:
        bits = b"".join(bits[y * stride : y * stride + line] for y in range(height))
    return bits, width, height


class AnimationJob:
    """Renders the frames of one animation, one `step()` at a time; `finish()` writes the file."""

    def __init__(
        self,
        trace: Trace,
        panel,
        state,
        out: str | os.PathLike,
        fmt: str | None = None,
        start: int | None = None,
        stop: int | None = None,
        fps: float = DEFAULT_FPS,
        scale: float = 1.0,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.out = check_out_path(out)
        fmt = (fmt or self.out.suffix.lstrip(".")).lower()
        if fmt not in FORMATS:
            raise MemvizError(f"an animation is a gif or an mp4, not '{fmt}'")
        if not fps > 0:
            raise MemvizError(f"--fps must be more than 0, got {fps}")
        if not scale > 0:
            raise MemvizError(f"--scale must be more than 0, got {scale}")
        self.fmt = fmt
        self.steps = step_range(trace, start, stop)
        cls = panel_class(panel, trace) if isinstance(panel, str) else panel
        self.sink = _GifSink(self.out, fps) if fmt == "gif" else _Mp4Sink(self.out, fps)
        self.state = state
        self.scale = scale
        self.renderer = FigureRenderer(
            cls, trace, replace(state, cursor=self.steps[0], follow=False), size=size, exact_fit=False
        )
        if state.scale == "stable":
            self._scan_levels()
        self.done = 0
        self.closed = False

    def _scan_levels(self) -> None:
        """Let the heatmaps see every frame's levels first: a stable scale then holds the range
        over all exported frames from the first frame on, so colours never shift in the file."""
        panel = self.renderer.panel
        for step in self.steps:
            panel.render(replace(self.state, cursor=step, follow=False))

    @property
    def total(self) -> int:
        return len(self.steps)

    def step(self) -> bool:
        """Render the next frame; False once every frame is in."""
        if self.done >= self.total:
            return False
        self.renderer.set_state(replace(self.state, cursor=self.steps[self.done], follow=False))
        self.sink.add(*qimage_rgb(self.renderer.image(self.scale)))
        self.done += 1
        return self.done < self.total

    def finish(self) -> Path:
        try:
            self.sink.close()
        except BaseException:
            self.cancel()
            raise
        self._close_renderer()
        return self.out

    def cancel(self) -> None:
        self.sink.abort()
        self._close_renderer()
        self.out.unlink(missing_ok=True)

    def _close_renderer(self) -> None:
        if not self.closed:
            self.renderer.close()
            self.closed = True


def export_animation(
    trace: Trace,
    panel,
    state,
    out: str | os.PathLike,
    fmt: str | None = None,
    start: int | None = None,
    stop: int | None = None,
    fps: float = DEFAULT_FPS,
    scale: float = 1.0,
    size: tuple[int, int] | None = None,
    progress: Callable[[int, int], object] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """Write the animation; `progress(done, total)` after each frame; `cancel()` true stops it (Cancelled)."""
    job = AnimationJob(
        trace, panel, state, out, fmt=fmt, start=start, stop=stop, fps=fps, scale=scale, size=size
    )
    try:
        while True:
            if cancel is not None and cancel():
                raise Cancelled()
            more = job.step()
            if progress is not None:
                progress(job.done, job.total)
            if not more:
                break
    except BaseException:
        job.cancel()
        raise
    return job.finish()
