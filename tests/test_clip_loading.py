import hashlib
import http.server
import threading
import warnings
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

import clip
from clip import loading
from clip.model import CLIP, CLIPConfig

# Smaller than `tiny` (whose 49,408-token embedding alone is 25 MB): files of a few hundred KB keep
# these tests fast, and build_model must infer this unusual shape from the tensors too.
SMALL = CLIPConfig(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
                   context_length=77, vocab_size=500, transformer_width=64, transformer_heads=1, transformer_layers=2)


def tiny_model(seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    model = CLIP(SMALL).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def example_inputs():
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[0, :5] = torch.tensor([498, 10, 20, 30, 499])  # start, words, end (the largest id)
    tokens[1, :3] = torch.tensor([498, 40, 499])
    return images, tokens


def outputs(model: CLIP):
    images, tokens = example_inputs()
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def save_torchscript_archive(model: CLIP, path):
    """A TorchScript archive shaped like OpenAI's: the traced model, its state dict holding OpenAI's
    weight names plus the integer entries input_resolution, context_length and vocab_size."""
    archive = tiny_model()
    archive.load_state_dict(model.state_dict())
    del archive.context_length, archive.vocab_size  # Python ints here, integer tensors in OpenAI's archives
    for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 500)):
        archive.register_buffer(name, torch.tensor(value))
    example = example_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.jit.trace(archive, example, check_trace=False).save(str(path))


def save_state_dict(model, path):
    torch.save(model.state_dict(), path)


def save_wrapped_state_dict(model, path):
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)


def save_safetensors(model, path):
    save_file(model.state_dict(), str(path))


@pytest.mark.parametrize("save, filename", [
    (save_torchscript_archive, "ViT-tiny.pt"),
    (save_state_dict, "tiny_state.pt"),
    (save_wrapped_state_dict, "checkpoint.pth"),
    (save_safetensors, "tiny.safetensors"),
    (save_safetensors, "safetensors_without_suffix.bin"),  # the format comes from the content
])
def test_round_trip_gives_identical_outputs(tmp_path, save, filename):
    model = tiny_model()
    path = tmp_path / filename
    save(model, path)
    loaded = clip.load(path)
    assert isinstance(loaded, CLIP) and not loaded.training and loaded.config == SMALL
    for ours, theirs in zip(outputs(loaded), outputs(model), strict=True):
        assert torch.equal(ours, theirs)
    state_dict = clip.load_state_dict(path)
    assert set(model.state_dict()) <= set(state_dict)


def test_torchscript_state_dict_has_openai_keys(tmp_path):
    path = tmp_path / "archive.pt"
    save_torchscript_archive(tiny_model(), path)
    state_dict = clip.load_state_dict(path)
    assert {"input_resolution", "context_length", "vocab_size", "visual.proj", "logit_scale"} <= set(state_dict)
    assert state_dict["input_resolution"].item() == 32


def test_text_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.txt: not a TorchScript archive, a PyTorch state dict or a "
                                         r"safetensors file"):
        clip.load(path)


def test_missing_and_unexpected_keys_name_the_file(tmp_path):
    state_dict = tiny_model().state_dict()
    del state_dict["visual.ln_post.weight"], state_dict["ln_final.bias"]
    state_dict["visual.extra.weight"] = torch.zeros(2)
    path = tmp_path / "broken.safetensors"
    save_file(state_dict, str(path))
    with pytest.raises(ValueError) as error:
        clip.load(path)
    message = str(error.value)
    assert "broken.safetensors" in message
    assert "2 missing key(s): visual.ln_post.weight, ln_final.bias" in message
    assert "1 unexpected key(s): visual.extra.weight" in message


def test_not_a_clip_state_dict(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1)}, path)
    with pytest.raises(ValueError, match=r"resnet\.pt: .*not a ViT CLIP state dict"):
        clip.load(path)


class Pickled:
    """Arbitrary Python objects are refused: weights_only loading never runs pickled code."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Pickled()}, path)
    with pytest.raises(ValueError, match=r"evil\.pt: not a state dict: 'model' is a Pickled, not a tensor"):
        clip.load_state_dict(path)  # read as data by clip.safe_pickle: the object is a record, never built
    torch.save({"weights": [1, 2]}, path)
    with pytest.raises(ValueError, match=r"evil\.pt: not a state dict: 'weights' is a list"):
        clip.load_state_dict(path)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt: no such file"):
        clip.load_state_dict(tmp_path / "nowhere.pt")
    with pytest.raises(FileNotFoundError, match=r"ViT-X/99: no such file, and not a CLIP model name.*ViT-B/16"):
        clip.load("ViT-X/99")


def test_available_models():
    assert clip.available_models() == ["ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
    assert loading.model_url("ViT-B/16").startswith("https://openaipublic.azureedge.net/clip/models/5806e77c")


# --- downloads, against a local server --------------------------------------------------------------


class FileServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes) with Range support; ``drop_next`` cuts the next response
    after that many body bytes; ``ignore_range`` answers every request with the whole file."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_next: int | None = None
        self.ignore_range = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FileHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server: FileServer = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range") and not server.ignore_range:
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_next is not None:  # the connection dies mid-file
            body, server.drop_next = body[:server.drop_next], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def files_in(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_download_verifies_and_caches(server, tmp_path):
    data = bytes(range(256)) * 1000
    server.files["/abc/weights.pt"] = data
    sha256 = hashlib.sha256(data).hexdigest()
    path = clip.download(f"{server.url}/abc/weights.pt", sha256, tmp_path / "cache" / "weights.pt")
    assert path.read_bytes() == data
    assert files_in(tmp_path / "cache") == ["weights.pt"]  # no .part left behind
    # A second call finds the verified file and does not ask the server again.
    assert clip.download(f"{server.url}/abc/weights.pt", sha256, path) == path
    assert len(server.requests) == 1


def test_load_by_name_downloads_into_the_cache(server, tmp_path, monkeypatch):
    source = tmp_path / "served.pt"
    save_torchscript_archive(tiny_model(), source)
    data = source.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    server.files[f"/{sha256}/ViT-B-32.pt"] = data
    # Stand-in for OpenAI's file: a tiny archive, registered under ViT-B/32 with its own hash.
    monkeypatch.setitem(clip.RELEASED, "ViT-B/32", replace(clip.RELEASED["ViT-B/32"], sha256=sha256))
    monkeypatch.setenv("MBGF_CLIP_URL", server.url)
    monkeypatch.setenv("MBGF_CACHE", str(tmp_path / "cache"))
    model = clip.load("b32")
    assert server.requests == [(f"/{sha256}/ViT-B-32.pt", None)]
    assert (tmp_path / "cache" / "clip" / "ViT-B-32.pt").read_bytes() == data
    for ours, theirs in zip(outputs(model), outputs(tiny_model()), strict=True):
        assert torch.equal(ours, theirs)


def test_wrong_checksum_leaves_nothing_in_the_cache(server, tmp_path, monkeypatch):
    sha256, filename = clip.RELEASED["ViT-B/32"].sha256, clip.RELEASED["ViT-B/32"].filename
    server.files[f"/{sha256}/{filename}"] = b"not OpenAI's weights" * 1000
    monkeypatch.setenv("MBGF_CLIP_URL", server.url)
    monkeypatch.setenv("MBGF_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=f"ViT-B-32.pt: sha256 [0-9a-f]{{64}} does not match the expected {sha256}"):
        clip.load("ViT-B/32")
    assert len(server.requests) == 1
    assert files_in(tmp_path / "cache") == []


def test_dropped_connection_resumes_with_a_range_request(server, tmp_path):
    data = torch.randint(0, 256, (300_000,), dtype=torch.uint8).numpy().tobytes()
    server.files["/x/weights.pt"] = data
    sha256 = hashlib.sha256(data).hexdigest()
    destination = tmp_path / "weights.pt"
    server.drop_next = 120_000
    with pytest.raises(ConnectionError, match="interrupted after 120,000 of 300,000 bytes; run again to resume"):
        clip.download(f"{server.url}/x/weights.pt", sha256, destination, progress=False)
    assert files_in(tmp_path) == ["weights.pt.part"]
    assert (tmp_path / "weights.pt.part").stat().st_size == 120_000
    path = clip.download(f"{server.url}/x/weights.pt", sha256, destination, progress=False)
    assert server.requests[-1] == ("/x/weights.pt", "bytes=120000-")
    assert path.read_bytes() == data and files_in(tmp_path) == ["weights.pt"]


def test_complete_part_file_is_verified_and_moved(server, tmp_path):
    data = b"weights" * 10_000
    server.files["/x/w.pt"] = data
    (tmp_path / "w.pt.part").write_bytes(data)  # interrupted after the last byte, before the move
    path = clip.download(f"{server.url}/x/w.pt", hashlib.sha256(data).hexdigest(), tmp_path / "w.pt", progress=False)
    assert server.requests == [("/x/w.pt", f"bytes={len(data)}-")]  # answered 416: nothing more to send
    assert path.read_bytes() == data and files_in(tmp_path) == ["w.pt"]


def test_resume_when_the_server_ignores_range(server, tmp_path):
    data = bytes(200_000)
    server.files["/x/w.pt"] = data
    server.drop_next, server.ignore_range = 50_000, True
    sha256 = hashlib.sha256(data).hexdigest()
    with pytest.raises(ConnectionError):
        clip.download(f"{server.url}/x/w.pt", sha256, tmp_path / "w.pt", progress=False)
    # The server answers 200 with the whole file: the part is rewritten from the start, not appended to.
    assert clip.download(f"{server.url}/x/w.pt", sha256, tmp_path / "w.pt", progress=False).read_bytes() == data


def test_http_error_names_the_url(server, tmp_path):
    with pytest.raises(ConnectionError, match=r"/missing/w\.pt: HTTP 404"):
        clip.download(f"{server.url}/missing/w.pt", "0" * 64, tmp_path / "w.pt", progress=False)
    assert files_in(tmp_path) == []
