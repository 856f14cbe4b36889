"""The README's picture of ``mbgf demo`` (docs/demo.png), taken by the browser test's headless Chromium:

    python -m tests.demo_screenshot --checkpoint CHECKPOINT --video VIDEO [--classes "a, b"] -o docs/demo.png

The checkpoint's model serves the page on a free loopback port; the page is given the video (and the
classes) as a user would, and once the result shows, the page is saved as a small palette PNG.
"""

import argparse
import tempfile
from pathlib import Path

from mbgf_cli.demo.server import DemoSettings, create_app
from mbgf_cli.inference import Predictor
from mbgf_cli.outputs import check_output_file
from tests.demo_support import browser_page, classify_on_page, live_server


def screenshot(checkpoint: Path, video: Path, output: Path, classes: str = "", top_k: int = 5,
               width: int = 720) -> Path:
    check_output_file(output, "-o")
    predictor = Predictor.from_checkpoint(checkpoint, amp="off")
    app = create_app(predictor, DemoSettings(top_k=top_k))
    raw = output.with_name(output.name + ".raw.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile, live_server(app) as url, \
            browser_page(Path(profile), width, 400) as page:
        page.goto(url)
        page.wait_for_function("document.getElementById('model').textContent !== 'Loading the model…'")
        classify_on_page(page, video, classes)
        page.evaluate("document.getElementById('preview').pause()")  # the same frame on every run
        page.screenshot(path=str(raw), full_page=True)
    try:
        from PIL import Image

        with Image.open(raw) as image:  # text and flat colours: a 64-colour palette keeps it small and sharp
            image.convert("RGB").quantize(64).save(output, optimize=True)
    finally:
        raw.unlink(missing_ok=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--video", required=True, type=Path)
    parser.add_argument("--classes", default="", help="comma-separated; empty: the checkpoint's")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/demo.png"))
    args = parser.parse_args()
    path = screenshot(args.checkpoint, args.video, args.output, args.classes, args.top_k)
    print(f"{path}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
