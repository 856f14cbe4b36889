"""``mbgf demo`` on generated videos: the page's API gives ``mbgf predict --json --explain``'s row for an
uploaded file, refuses bad files in one line and keeps no file; the server binds beyond the loopback only
when told to; the README command serves the page; and in a real browser (Debian's headless Chromium)
a chosen video and two typed classes show predict's result, a dropped long video the timeline chart,
and a non-video the server's message."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from mbgf_cli.demo.server import (
    STATIC,
    DemoSettings,
    ModelChoice,
    bind_socket,
    create_app,
    is_loopback,
    run_demo,
)
from mbgf_cli.demo.uploads import VIDEO_EXTENSIONS, container_of
from mbgf_cli.errors import UserError
from mbgf_cli.inference import Predictor
from tests.demo_support import CHROMIUM, browser_page, classify_on_page, live_server
from tests.predict_support import colour_checkpoint, colour_frames
from tests.test_train_support import run_cli
from tests.videos import write_empty, write_image_as_video, write_text_as_video, write_truncated, write_video

REPO = Path(__file__).resolve().parents[1]
TWO_CLASSES = "something red, something blue"


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return colour_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(colour):
    return Predictor.from_checkpoint(colour[1], amp="off")


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """Nine seconds at 4 frames/s: three seconds of each colour class, red, green, blue."""
    frames = np.concatenate([colour_frames(k, seed=50 + k, num_frames=12) for k in range(3)])
    return write_video(tmp_path_factory.mktemp("long") / "colours.mp4", frames=frames, fps=4)


class WithTimeline:
    """A stand-in where ``Predictor`` has no ``timeline`` method yet: the method as the timeline work
    specifies it (``to_json()``: ``{"video", "windows": [{"start", "end", "top": [{"id", "label",
    "probability"}]}]}``), computed by real predict calls, one per window cut into a video of its own."""

    def __init__(self, predictor, folder: Path):
        self._predictor = predictor
        self.folder = folder
        self.made: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def timeline(self, video, classes=None, window=2.0, stride=1.0, top_k=5):
        with av.open(str(video)) as container:
            fps = float(container.streams.video[0].average_rate)
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        starts = np.arange(0.0, len(frames) / fps - window + 1e-9, stride)
        paths = [write_video(self.folder / f"{len(self.made)}-{i}.mp4", frames=frames[round(s * fps):round((s + window) * fps)],
                             fps=round(fps)) for i, s in enumerate(starts)]
        rows = self._predictor.predict(paths, classes, workers=0).to_json(top_k)["videos"]
        made = {"video": str(video), "windows": [{"start": float(s), "end": float(s + window), "top": row["top"]}
                                                 for s, row in zip(starts, rows, strict=True)]}
        self.made.append(made)
        return SimpleNamespace(to_json=lambda: json.loads(json.dumps(made)))


@pytest.fixture
def timeline_predictor(predictor, tmp_path):
    """The predictor with its own ``timeline`` where it has one, else with the stand-in's."""
    return predictor if hasattr(predictor, "timeline") else WithTimeline(predictor, tmp_path)


def timeline_of(predictor, video: Path, classes: str, top_k: int) -> dict:
    """The timeline the demo should show for ``video`` (its defaults: 2 s windows every second)."""
    made = predictor.timeline(str(video), classes=classes, window=2.0, stride=1.0, top_k=top_k).to_json()
    return {**made, "video": video.name}


@contextmanager
def demo_client(predictor, **settings):
    from starlette.testclient import TestClient

    app = create_app(predictor, DemoSettings(**settings))
    with TestClient(app) as client:
        yield client, app.state.uploads.path
    assert not app.state.uploads.path.exists()  # removed when the server stops


def post(client, path: Path, name: str | None = None, classes: str = ""):
    return client.post("/api/predict", params={"name": name or path.name, "classes": classes},
                       content=path.read_bytes())


def predict_row(capsys, video: Path, checkpoint: Path, *args) -> dict:
    code, stdout, stderr = run_cli(["predict", video, "-c", checkpoint, "--json", "--explain", "--amp", "off",
                                    "--workers", "0", *args], capsys)
    assert code == 0, stderr
    [row] = json.loads(stdout)["videos"]
    return row


# --------------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------------


def test_an_uploaded_video_gives_predicts_json_row(colour, predictor, capsys):
    root, checkpoint = colour
    video = root / "videos" / "c2" / "v1.mp4"
    with demo_client(predictor, top_k=2) as (client, folder):
        info = client.get("/api/info").json()
        assert info["class_names"] == ["something red", "something green", "something blue"] and info["gates"]
        own = post(client, video, "my clip.mp4")
        typed = post(client, video, classes=TWO_CLASSES)
        assert list(folder.iterdir()) == []  # each upload is removed with its request
    assert own.status_code == 200 and typed.status_code == 200
    expected = predict_row(capsys, video, checkpoint, "--top-k", "2")
    assert own.json() == {**expected, "video": "my clip.mp4"}
    assert own.json()["top"][0]["label"] == "something blue"
    expected = predict_row(capsys, video, checkpoint, "--top-k", "2", "--classes", TWO_CLASSES)
    assert typed.json() == {**expected, "video": "v1.mp4"}
    assert [r["label"] for r in typed.json()["top"]] == ["something blue", "something red"]


def test_bad_files_get_one_line_and_leave_no_file(colour, predictor, tmp_path):
    root, _ = colour
    video = root / "videos" / "c0" / "v0.mp4"
    bad = {
        "page.mp4": (write_text_as_video(tmp_path / "page.mp4"), 415, "page.mp4: not a video (the file is an HTML"),
        "photo.avi": (write_image_as_video(tmp_path / "photo.avi"), 415, "photo.avi: not a video (the file is a PNG"),
        "notes.txt": (video, 415, "notes.txt: not a video file name (expected one of .mp4"),
        "empty.mp4": (write_empty(tmp_path / "empty.mp4"), 400, "empty.mp4: the file is empty (0 bytes)"),
        "cut.mp4": (write_truncated(tmp_path / "cut.mp4"), 400, "cut.mp4: cannot read this video (cannot open"),
    }
    with demo_client(predictor) as (client, folder):
        for name, (path, status, message) in bad.items():
            response = post(client, path, name)
            assert response.status_code == status and response.json()["error"].startswith(message), name
            assert "\n" not in response.json()["error"] and "Traceback" not in response.text
        # Classes the predictor refuses, in the predictor's own words.
        response = post(client, video, classes="a cat, a cat")
        assert response.status_code == 400 and "a cat" in response.json()["error"]
        assert list(folder.iterdir()) == []


def test_a_file_over_the_bound_gets_413_declared_or_streamed(colour, predictor):
    root, _ = colour
    video = root / "videos" / "c0" / "v0.mp4"
    size = video.stat().st_size
    bound_mb = (size - 1) / 2**20
    with demo_client(predictor, max_upload_mb=bound_mb) as (client, folder):
        declared = post(client, video)
        assert declared.status_code == 413
        assert declared.json()["error"] == (f"v0.mp4: the file is {size / 2**20:.3g} MB; this server takes files up "
                                            f"to {(size - 1) / 2**20:.3g} MB (mbgf demo --max-upload-mb)")

        def chunks():  # no Content-Length: the bound is met while the body arrives
            data = video.read_bytes()
            yield from (data[i:i + 256] for i in range(0, len(data), 256))

        streamed = client.post("/api/predict", params={"name": "v0.mp4"}, content=chunks())
        assert streamed.status_code == 413 and "larger than" in streamed.json()["error"]
        assert list(folder.iterdir()) == []
    with demo_client(predictor, max_upload_mb=size / 2**20) as (client, _):
        assert post(client, video).status_code == 200  # the bound itself is allowed


def test_a_long_video_gets_the_timeline_and_a_short_one_does_not(colour, timeline_predictor, long_video):
    root, _ = colour
    with demo_client(timeline_predictor, top_k=3) as (client, _):
        long = post(client, long_video, classes=TWO_CLASSES).json()
        short = post(client, root / "videos" / "c0" / "v0.mp4").json()
    assert "timeline" not in short and "top" in short
    expected = timeline_of(timeline_predictor, long_video, TWO_CLASSES, 3)
    assert long["timeline"] == expected and len(expected["windows"]) == 8
    leaders = [w["top"][0]["label"] for w in expected["windows"]]
    assert leaders[0] == "something red" and leaders[-1] == "something blue"


def test_the_static_files_ship_with_the_package_and_fetch_nothing_from_elsewhere():
    package_data = (REPO / "pyproject.toml").read_text().partition("[tool.setuptools.package-data]")[2]
    patterns = json.loads(re.search(r"^mbgf_cli = (\[.*?\])", package_data, re.M).group(1))
    shipped = [p.relative_to(REPO / "mbgf_cli").as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert {"demo/static/index.html", "demo/static/demo.js", "demo/static/demo.css"} <= set(shipped)
    assert all(any(fnmatch(name, pattern) for pattern in patterns) for name in shipped)
    page = (STATIC / "index.html").read_text()
    for link in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert (STATIC.parent / link).is_file(), link
    for path in STATIC.iterdir():  # the one absolute URL is the SVG namespace, a name that is never fetched
        assert set(re.findall(r"https?://[^\s\"'`]+", path.read_text())) <= {"http://www.w3.org/2000/svg"}


def test_the_demo_takes_the_extensions_predict_looks_for():
    from mbgf_cli import inference

    assert VIDEO_EXTENSIONS == inference.VIDEO_EXTENSIONS
    assert container_of(b"\x00\x00\x00\x18ftypmp42") == "MP4/QuickTime"
    assert container_of(b"RIFF\x00\x00\x00\x00AVI LIST") == "AVI"
    assert container_of(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


# --------------------------------------------------------------------------------------------------
# The command: binding, option errors, the README command
# --------------------------------------------------------------------------------------------------


def test_binding_beyond_the_loopback_needs_host_given(colour, monkeypatch, capsys):
    _, checkpoint = colour
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.7")
    with pytest.raises(UserError, match=r"refusing to serve on 0\.0\.0\.0: .*give --host 0\.0\.0\.0 explicitly"):
        run_demo(ModelChoice(checkpoint=str(checkpoint)), DemoSettings(), host="0.0.0.0", port=0)

    # `--host` given: served there, with a warning, once the model is loaded (serve stubbed: no real server).
    from mbgf_cli.demo import server

    served = []
    monkeypatch.setattr(server, "serve", lambda app, sock: served.append((sock.getsockname()[0], app)) or sock.close())
    code, _, stderr = run_cli(["demo", "-c", checkpoint, "--host", "0.0.0.0", "--port", "0"], capsys)
    assert code == 0 and served[0][0] == "0.0.0.0"
    assert "warning: serving on 0.0.0.0: any machine that reaches it can use the page" in " ".join(stderr.split())
    code, _, stderr = run_cli(["demo", "-c", checkpoint, "--port", "0"], capsys)
    assert code == 0 and served[1][0] == "127.0.0.1" and "warning" not in stderr
    for _, app in served:
        app.state.uploads.remove()


def test_zero_shot_clip_needs_typed_classes_and_has_no_gate(tmp_path, monkeypatch, capsys):
    import torch
    from starlette.testclient import TestClient

    from clip.model import CLIP
    from fusion import BACKBONES
    from mbgf_cli.demo import server

    torch.manual_seed(0)
    weights = tmp_path / "ViT-tiny.pt"
    tiny = BACKBONES["tiny"].clip_config
    config = tiny.__class__(**{**tiny.__dict__, "image_resolution": 32})
    torch.save(CLIP(config).state_dict(), weights)  # an OpenAI-format state dict
    video = write_video(tmp_path / "v.mp4", frames=colour_frames(1, seed=3))
    seen = {}

    def serve(app, sock):  # the app `mbgf demo` built, asked through a test client instead of uvicorn
        sock.close()
        with TestClient(app) as client:
            seen["info"] = client.get("/api/info").json()
            seen["own"], seen["typed"] = post(client, video), post(client, video, classes="a cat, a dog, a bird")

    monkeypatch.setattr(server, "serve", serve)
    args = ["--pretrained", weights, "--model", "tiny", "--frames", "2", "--input-size", "32", "--amp", "off"]
    code, _, stderr = run_cli(["demo", *args, "--port", "0"], capsys)
    assert code == 0, stderr
    assert seen["info"]["class_names"] == [] and seen["info"]["gates"] is False
    assert seen["own"].status_code == 400 and "carries no class names" in seen["own"].json()["error"]
    expected = Predictor.from_pretrained(weights, model="tiny", frames=2, input_size=32, amp="off").predict(
        [video], "a cat, a dog, a bird", workers=0).to_json(5)["videos"][0]
    assert seen["typed"].status_code == 200 and seen["typed"].json() == {**expected, "video": "v.mp4"}
    assert "gates" not in seen["typed"].json()


def test_option_errors_are_one_line_before_any_work(colour, capsys):
    _, checkpoint = colour
    taken = bind_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    cases = {
        ("--top-k", "0"): "--top-k must be at least 1, not 0",
        ("--max-upload-mb", "0"): "--max-upload-mb must be above 0, not 0",
        ("--stride", "-1"): "--stride must be above 0, not -1",
        ("--frames", "8"): "--frames: for --pretrained (a checkpoint says its own)",
        ("--port", str(port)): f"--host 127.0.0.1 --port {port}: cannot listen there",
        ("--port", "70000"): "--port must be in [0, 65535], not 70000",
    }
    try:
        for extra, message in cases.items():
            code, _, stderr = run_cli(["demo", "-c", checkpoint, *extra], capsys)
            assert code == 2 and message in " ".join(stderr.split()) and "Traceback" not in stderr, extra
    finally:
        taken.close()
    code, _, stderr = run_cli(["demo", "-c", checkpoint.parent / "missing"], capsys)
    assert code == 2 and "missing: no such file or folder" in stderr
    code, _, stderr = run_cli(["demo"], capsys)
    assert code == 2 and "give --checkpoint DIR (an mbgf checkpoint or a published file) or --pretrained NAME" in stderr


def test_without_the_demo_extra_the_command_says_what_to_install(colour, monkeypatch, capsys):
    import mbgf_cli.demo

    for name in [n for n in sys.modules if n == "starlette" or n.startswith("starlette.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing it fails
    monkeypatch.delitem(sys.modules, "mbgf_cli.demo.server")
    monkeypatch.delattr(mbgf_cli.demo, "server")
    code, _, stderr = run_cli(["demo", "-c", colour[1]], capsys)
    assert code == 2 and "mbgf demo needs the demo extra (starlette is not installed): pip install 'mbgf[demo]'" \
        in " ".join(stderr.split())


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_readme_command_serves_the_page_and_removes_its_folder(colour, tmp_path):
    """README: ``mbgf demo --checkpoint runs/synthetic-tiny-clip-mbgf/best``, as written (port 7860)."""
    import httpx

    root, checkpoint = colour
    if not port_is_free(7860):
        pytest.skip("port 7860 is taken on this machine by another program")
    (tmp_path / "runs" / "synthetic-tiny-clip-mbgf").mkdir(parents=True)
    (tmp_path / "runs" / "synthetic-tiny-clip-mbgf" / "best").symlink_to(checkpoint)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)}
    command = "mbgf demo --checkpoint runs/synthetic-tiny-clip-mbgf/best".split()
    process = subprocess.Popen([sys.executable, "-m", "mbgf_cli", *command[1:]], cwd=tmp_path, env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()  # printed once the model is loaded and the port taken
        assert "on http://127.0.0.1:7860/ (Ctrl+C to stop)" in line, line + process.stderr.read()
        page = httpx.get("http://127.0.0.1:7860/")
        assert page.status_code == 200 and "<title>mbgf demo</title>" in page.text
        video = root / "videos" / "c1" / "v2.mp4"
        result = httpx.post("http://127.0.0.1:7860/api/predict", params={"name": "v2.mp4"}, content=video.read_bytes())
        assert result.status_code == 200 and result.json()["top"][0]["label"] == "something green"
        [folder] = temp.iterdir()
        assert folder.name.startswith("mbgf-demo-") and list(folder.iterdir()) == []
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0 and list(temp.iterdir()) == []  # Ctrl+C: the uploads folder is gone


# --------------------------------------------------------------------------------------------------
# The page in a real browser
# --------------------------------------------------------------------------------------------------


def result_rows(page, table: str) -> list[tuple[str, float]]:
    cells = page.eval_on_selector_all(f"{table} tbody tr", "rows => rows.map(r => [r.cells[0].textContent, "
                                                            "r.cells[1].textContent])")
    return [(name, float(value)) for name, value in cells]


def drop_file(page, path: Path) -> None:
    """Drop ``path`` on the drop zone as a user dragging it from a file manager would."""
    page.evaluate("""([name, bytes]) => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(bytes)], name, {type: "video/mp4"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
    }""", [path.name, list(path.read_bytes())])


def check_chart(page, made: dict) -> None:
    """The chart draws, for each class that leads a window, a point per window where it is in the top-k, at
    its window's centre and probability: positions linear in time and in probability, the same for all."""
    points = page.eval_on_selector_all("#timeline g.series circle", """circles => circles.map(c => [
        c.parentNode.dataset.label, +c.dataset.t, +c.dataset.p, +c.getAttribute("cx"), +c.getAttribute("cy")])""")
    leaders = {w["top"][0]["label"] for w in made["windows"]}
    expected = sorted((r["label"], (w["start"] + w["end"]) / 2, r["probability"])
                      for w in made["windows"] for r in w["top"] if r["label"] in leaders)
    drawn = sorted((label, t, p) for label, t, p, _, _ in points)
    assert [label for label, *_ in drawn] == [label for label, *_ in expected]
    assert np.allclose([row[1:] for row in drawn], [row[1:] for row in expected], atol=1e-9)
    assert {label for label, *_ in points} == leaders and {"something red", "something blue"} <= leaders
    t, p, x, y = (np.array([row[i] for row in points]) for i in range(1, 5))
    for value, position in ((t, x), (p, y)):
        slope, offset = np.polyfit(value, position, 1)
        assert np.allclose(slope * value + offset, position, atol=0.01)
    assert np.polyfit(p, y, 1)[0] < 0  # a higher probability is drawn higher up


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
def test_the_page_in_headless_chromium(colour, timeline_predictor, long_video, tmp_path):
    root, _ = colour
    video = root / "videos" / "c2" / "v0.mp4"
    app = create_app(timeline_predictor, DemoSettings(top_k=3))
    with live_server(app) as url, browser_page(tmp_path / "profile") as page:
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url)
        page.wait_for_function("document.getElementById('model').textContent.includes('CLIP-tiny+MBGF')")

        # Choose a video, type two classes, classify: predict's top classes and gate.
        classify_on_page(page, video, TWO_CLASSES)
        expected = timeline_predictor.predict([video], TWO_CLASSES, workers=0, explain=True).to_json(3)["videos"][0]
        assert result_rows(page, "#results") == [(r["label"], pytest.approx(r["probability"], abs=5e-4))
                                                 for r in expected["top"]]
        assert result_rows(page, "#gates") == [(b, pytest.approx(g, abs=5e-4)) for b, g in expected["gates"].items()]
        assert page.is_hidden("#timeline-box") and page.is_hidden("#message")

        # Drop a long video: the chart over time.
        drop_file(page, long_video)
        page.fill("#classes", "")  # the checkpoint's three classes
        page.click("#run")
        page.wait_for_selector("#timeline-box:not([hidden])")
        assert page.text_content("#video-name") == "colours.mp4"
        check_chart(page, timeline_of(timeline_predictor, long_video, None, 3))

        # A file that is no video: the server's message on the page, the old result gone.
        page.set_input_files("#file", str(write_text_as_video(tmp_path / "page.mp4")))
        page.click("#run")
        page.wait_for_selector("#message.error")
        assert page.text_content("#message").startswith("page.mp4: not a video (the file is an HTML or XML page")
        assert page.is_hidden("#output")
        assert all(u.startswith(url) or u.startswith("blob:") for u in requested), requested
        assert list(app.state.uploads.path.iterdir()) == []
    assert not app.state.uploads.path.exists()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
def test_the_readme_screenshot_command(colour, tmp_path):
    """README: the command that took docs/demo.png, as written (a colour video under the README's path)."""
    from PIL import Image

    root, checkpoint = colour
    (tmp_path / "runs" / "synthetic-tiny-clip-mbgf").mkdir(parents=True)
    (tmp_path / "runs" / "synthetic-tiny-clip-mbgf" / "best").symlink_to(checkpoint)
    (tmp_path / "long.mp4").write_bytes((root / "videos" / "c0" / "v0.mp4").read_bytes())
    command = shlex.split("python -m tests.demo_screenshot --checkpoint runs/synthetic-tiny-clip-mbgf/best "
                          "--video long.mp4 --classes \"moving something up, something growing, something getting "
                          "brighter\" -o docs/demo.png")
    done = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    picture = tmp_path / "docs" / "demo.png"
    assert done.stdout.startswith("docs/demo.png: ") and picture.stat().st_size < 150 * 1024
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width == 720 and image.height > 400
    assert sorted(p.name for p in picture.parent.iterdir()) == ["demo.png"]  # nothing else left behind
    assert (REPO / "docs" / "demo.png").stat().st_size < 150 * 1024  # the committed one stays small too
