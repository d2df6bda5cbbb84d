#!/usr/bin/env python
"""Take the README's screenshots of the chat page: docs/chat-desktop.png and docs/chat-phone.png.

    .venv/bin/python docs/screenshots.py

Starts the chat server on a free port with a fresh database, fills a room with
a short conversation and photographs it in Debian's Chromium (tests/browser.py).
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.browser import launch, take_screenshots
    from tests.helpers import ServerProcess

    with tempfile.TemporaryDirectory() as workdir:
        server = ServerProcess(Path(workdir)).start()
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright)
                for path in take_screenshots(browser, server.url, ROOT / "docs"):
                    print(path.relative_to(ROOT))
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
