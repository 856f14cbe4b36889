"""The demo page's server: a Starlette app over one loaded ``Predictor``, served by uvicorn.

    GET  /               the page (mbgf_cli/demo/static/index.html; its script and style beside it)
    GET  /api/info       the model: name, classes, whether it has MBGF gates, the upload bound
    POST /api/predict    the video file as the request body; ?name=FILE.mp4&classes=a,b (empty: the
                         checkpoint's) -> {"video", "top": [{"id", "label", "probability"}], "gates"?,
                         "timeline"?}, the row `mbgf predict --json --explain` gives for that file;
                         a refused or unreadable file -> {"error": one line} with 400, 413 or 415

The body is streamed into the server's temporary folder, counted against the bound and checked for a
video container as it arrives; the file is removed when its request ends and the folder when the
server stops. One request at a time runs the model (a lock); decoding runs in the request's thread.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mbgf_cli.console import err_console
from mbgf_cli.demo.uploads import VIDEO_EXTENSIONS, UploadError, UploadFolder
from mbgf_cli.errors import UserError

STATIC = Path(__file__).with_name("static")
LOOPBACK = "127.0.0.1"
TIMELINE_MIN_WINDOWS = 4  # a shorter video is one result, not a chart
# The page loads nothing but its own files (and shows the chosen video from memory).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass
class DemoSettings:
    top_k: int = 5                # classes shown per video
    max_upload_mb: float = 200.0  # the largest upload accepted
    window: float = 2.0           # the timeline's window and stride, in seconds
    stride: float = 1.0
    temp_parent: str | None = None  # where the temporary folder is made (None: the system's)

    def check(self) -> None:
        if self.top_k < 1:
            raise UserError(f"--top-k must be at least 1, not {self.top_k}")
        if not self.max_upload_mb > 0:
            raise UserError(f"--max-upload-mb must be more than 0, not {self.max_upload_mb:g}")
        from mbgf_cli.data.windows import check_window

        check_window(self.window, self.stride)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class DemoModel:
    """The predictor behind a lock, so that requests run the model one at a time."""

    def __init__(self, predictor, settings: DemoSettings):
        self.predictor = predictor
        self.settings = settings
        self.lock = threading.Lock()
        self.gates = bool(getattr(predictor.config, "mbgf", False))  # MBGF models explain with their gate

    def info(self) -> dict:
        settings = self.settings
        return {"model": self.predictor.name, "class_names": list(self.predictor.class_names),
                "top_k": settings.top_k, "gates": self.gates, "timeline": True,
                "window": settings.window, "stride": settings.stride,
                "max_upload_bytes": settings.max_upload_bytes, "extensions": list(VIDEO_EXTENSIONS)}

    def classify(self, path: Path, name: str, classes: str | None) -> dict:
        """``mbgf predict --json``'s row for the video at ``path`` (shown as ``name``), with the timeline
        where the model has one and the video is long enough."""
        k = self.settings.top_k
        with self.lock:
            result = self.predictor.predict([str(path)], classes, workers=0, explain=self.gates)
        if result.skipped:
            reason = result.skipped[0][1]
            raise UploadError(f"{name}: cannot read this video ({reason})")
        row = result.to_json(k)["videos"][0]
        row["video"] = name
        timeline = self.timeline(path, classes)
        if timeline is not None:
            timeline["video"] = name
            row["timeline"] = timeline
        return row

    def timeline(self, path: Path, classes: str | None) -> dict | None:
        settings = self.settings
        seconds = video_seconds(path)
        if seconds is None or seconds < settings.window + (TIMELINE_MIN_WINDOWS - 1) * settings.stride:
            return None
        with self.lock:
            timeline = self.predictor.timeline(str(path), classes=classes, window=settings.window,
                                               stride=settings.stride, top_k=settings.top_k)
        return timeline.to_json()


def video_seconds(path: Path) -> float | None:
    """The video's length (None where it cannot be told: the timeline is then left out)."""
    from mbgf_cli.data.readers import VideoError
    from mbgf_cli.data.windows import video_length

    try:
        frames, fps = video_length(str(path))
    except VideoError:
        return None
    return frames / fps


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(predictor, settings: DemoSettings | None = None) -> Starlette:
    """The demo's web app over ``predictor`` (a loaded ``mbgf_cli.inference.Predictor``). Its uploads
    folder (``app.state.uploads.path``) is made now and removed when the app shuts down."""
    settings = settings or DemoSettings()
    settings.check()
    model = DemoModel(predictor, settings)
    uploads = UploadFolder(settings.max_upload_bytes, settings.temp_parent)
    atexit.register(uploads.remove)  # also when the server dies before its shutdown runs

    async def page(request: Request):
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def info(request: Request):
        return JSONResponse(model.info())

    async def predict(request: Request):
        name = (request.query_params.get("name") or "").strip() or "upload"
        classes = (request.query_params.get("classes") or "").strip() or None
        path = None
        try:
            path = await uploads.receive(name, request.headers.get("content-length"), request.stream())
            return JSONResponse(await run_in_threadpool(model.classify, path, name, classes))
        except ClientDisconnect:  # the page was closed mid-upload: nobody to answer, nothing to report
            return error(f"{name}: the upload was interrupted", 400)
        except UploadError as e:
            return error(str(e), e.status)
        except UserError as e:  # the classes typed, a model without classes of its own
            return error(str(e), 400)
        except Exception as e:  # noqa: BLE001 - the page shows one line, the server log one more
            err_console.print(f"mbgf demo: {name}: {type(e).__name__}: {e}", highlight=False, markup=False)
            return error(f"{name}: the model failed on this file ({type(e).__name__}: {e})", 500)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            uploads.remove()

    app = Starlette(routes=[Route("/", page), Route("/api/info", info), Route("/api/predict", predict, methods=["POST"]),
                            Mount("/static", StaticFiles(directory=STATIC), name="static")],
                    lifespan=lifespan)
    app.state.uploads = uploads
    app.state.model = model
    return app


# --------------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine's loopback only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(entry[4][0].split("%")[0]).is_loopback for entry in found)


def check_host(host: str, allow_remote: bool) -> None:
    """Serve beyond this machine only when asked to in so many words: the page has no login."""
    if not is_loopback(host) and not allow_remote:
        raise UserError(f"refusing to serve on {host}: other machines could reach the page, which has no login; "
                        f"give --host {host} explicitly to allow it")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one), so that the address is known, and a
    port in use is one line, before the model loads."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0..65535, not {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except OSError as e:
        raise UserError(f"--host {host}: not an address here ({e.strerror or e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as e:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); give another "
                        f"--port (0: any free one)") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: Starlette, sock: socket.socket) -> None:
    """Run ``app`` on the listening ``sock`` until Ctrl+C (or SIGTERM); the uploads folder goes after."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops, then passes Ctrl+C on: the way to stop the demo, not an error
        err_console.print("mbgf demo: stopped", highlight=False)
    finally:
        sock.close()
        app.state.uploads.remove()


@dataclass
class ModelChoice:
    """``mbgf demo``'s model options, as ``mbgf predict`` takes them."""

    checkpoint: str | None = None
    pretrained: str | None = None
    model: str | None = None       # zero-shot only: the backbone, frames per view, frame size
    frames: int | None = None
    input_size: int | None = None
    prompts: str | None = None
    device: str | None = None
    amp: str = "auto"

    def source(self):
        """The ``ModelSource`` these options name (``mbgf predict``'s rules: one of the two, a run folder
        taken as its ``best/``)."""
        from mbgf_cli.inference import ModelSource

        return ModelSource.of(self)

    def check(self) -> None:
        from mbgf_cli.resources import resolve_device

        self.source()
        if self.checkpoint:
            given = [flag for flag, value in (("--model", self.model), ("--frames", self.frames),
                                              ("--input-size", self.input_size)) if value is not None]
            if given:
                raise UserError(f"{', '.join(given)}: for --pretrained (a checkpoint says its own)")
            if not Path(self.checkpoint).exists():
                raise UserError(f"--checkpoint {self.checkpoint}: no such file or folder")
        resolve_device(self.device)

    def load(self):
        from mbgf_cli.inference import Predictor

        return Predictor.from_source(self.source(), self.prompts, self.device, self.amp)


def run_demo(choice: ModelChoice, settings: DemoSettings, host: str = LOOPBACK, port: int = 7860,
             allow_remote: bool = False) -> None:
    """``mbgf demo``: every option checked and the port taken, then the model loaded once, then the page
    served until Ctrl+C. A ``host`` beyond the loopback needs ``allow_remote`` (``mbgf demo`` sets it
    when ``--host`` is given)."""
    check_host(host, allow_remote)
    settings.check()
    choice.check()
    sock = bind_socket(host, port)
    try:
        predictor = choice.load()
        app = create_app(predictor, settings)
    except BaseException:
        sock.close()
        raise
    if not is_loopback(host):
        err_console.print(f"[yellow]warning:[/yellow] serving on {host}: any machine that reaches it can use the "
                          f"page (no login)", highlight=False)
    err_console.print(f"mbgf demo: {predictor.name} on {url_of(sock)} (Ctrl+C to stop)", highlight=False,
                      soft_wrap=True)
    serve(app, sock)
