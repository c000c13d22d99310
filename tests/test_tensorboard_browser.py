"""A real TensorBoard in a real headless Chromium, over a real sweep: the HParams page shows
each job under its folder's name, with the swept keys among the columns it shows unasked.

Chromium is driven through its DevTools protocol over a pipe (``--remote-debugging-pipe``:
NUL-separated JSON on file descriptors 3 and 4), so no extra package is needed. The page's
text is read through every shadow root (TensorBoard's HParams dashboard is Polymer), and a
screenshot is kept next to the sweep for a person to look at.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import FAST, job_dirs, train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)")]

#: The visible text of the page, shadow roots included.
PAGE_TEXT = """(() => { const out = [];
  const walk = (node) => { if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) { if (child.nodeType === 3) out.push(child.textContent); else walk(child); } };
  walk(document.body); return out.join(' ').replace(/\\s+/g, ' '); })()"""


class DevTools:
    """A headless Chromium and its DevTools protocol over a pipe."""

    def __init__(self, profile: Path) -> None:
        to_chrome, self._chrome_in = os.pipe()
        self._chrome_out, from_chrome = os.pipe()

        def fds_3_and_4() -> None:  # in the child: the pipe ends where Chromium looks for them
            high_in, high_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome, from_chrome))
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "--window-size=1600,1000", "about:blank"],
            preexec_fn=fds_3_and_4, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._next_id, self._buffer = 0, b""

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._chrome_in, json.dumps(message).encode() + b"\0")
        while True:
            for reply in self._replies():
                if reply.get("id") == self._next_id:
                    assert "error" not in reply, reply
                    return reply["result"]

    def _replies(self) -> Iterator[dict]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._chrome_out, 1 << 16)
            assert chunk, "Chromium closed its DevTools pipe"
            self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        yield from (json.loads(m) for m in messages)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        os.close(self._chrome_in)
        os.close(self._chrome_out)


def start_tensorboard(logdir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                             "--port", "0", "--load_fast", "false"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline, seen = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if found := re.search(r"(http://127\.0\.0\.1:\d+)/", line):
            return proc, found.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("TensorBoard did not start:\n" + "".join(seen))


def test_the_hparams_page_names_sweep_jobs_by_what_they_change(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    train("-m", *FAST, "model=mlp,linear", "optimizer.lr=0.01", "trainer.max_epochs=1",
          "callbacks.tensorboard_images.log_graph=false", f"hydra.sweep.dir={sweep}", timeout=300)
    names = [job.name for job in job_dirs(sweep)]
    assert names == ["0_model=mlp", "1_model=linear"]  # optimizer.lr has one value: not in the names

    tensorboard, url = start_tensorboard(sweep)
    browser = DevTools(tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url=f"{url}/?forceSVG=true#hparams")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        text, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline and not all(name in text for name in names):  # TensorBoard loads lazily
            time.sleep(1)
            text = browser.call("Runtime.evaluate", session, expression=PAGE_TEXT, returnByValue=True)["result"]["value"]
        shot = browser.call("Page.captureScreenshot", session, format="png")["data"]
        (sweep / "hparams.png").write_bytes(base64.b64decode(shot))
    finally:
        browser.close()
        tensorboard.terminate()
        tensorboard.wait(timeout=30)
    assert all(name in text for name in names), text[-3000:]
    assert "/tensorboard" not in text  # no run named after a folder inside the run
    table = text[text.index("Trial ID"):]  # the table's header row: the columns shown without ticking any
    header = table[:table.index(names[0])]
    assert "model" in header and "val/acc" in header, header
    assert (sweep / "hparams.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
