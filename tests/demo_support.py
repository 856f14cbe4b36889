"""Shared by tests/test_demo.py and tests/demo_screenshot.py (no tests here): the demo app served by
uvicorn in a thread, and a page in Debian's headless Chromium driven by Playwright.

    with live_server(create_app(predictor)) as url, browser_page(tmp_path / "profile") as page:
        page.goto(url)
"""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mbgf_cli.demo.server import bind_socket, url_of

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browser builds are not used
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@contextmanager
def live_server(app):
    """``app`` served by uvicorn on a free loopback port, in a thread: yields the page's URL."""
    import uvicorn

    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(3000):  # until it listens (or has failed)
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("the demo server did not start")
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@contextmanager
def browser_page(profile: Path, width: int = 800, height: int = 600):
    """A page in headless Chromium with a new profile folder ``profile``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def classify_on_page(page, video, classes: str) -> None:
    """Choose ``video``, type ``classes`` and run, as a person would; returns once the results are shown."""
    page.set_input_files("#file", str(video))
    page.fill("#classes", classes)
    page.click("#run")
    page.wait_for_selector("#results tbody tr.result")
