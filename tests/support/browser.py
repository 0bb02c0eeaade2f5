"""Open an HTML page the toolkit wrote in headless Chromium: did every image decode, and did the console stay empty?

Shared by the report and explain tests. The page is loaded in an iframe of a wrapper page, whose script (the page
under test has none) counts the images that loaded and puts its verdict in the wrapper's title.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium, chromium-browser or google-chrome on PATH: "
                                                             "install Debian's chromium (.ci/run does in CI)")

WRAPPER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pending</title></head>
<body>
<iframe id="report" src="REPORT" width="1200" height="900"></iframe>
<script>
document.getElementById("report").addEventListener("load", function () {
  var result;
  try {
    var imgs = Array.prototype.slice.call(this.contentDocument.querySelectorAll("SELECTOR"));
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
    result = "plots-ok " + ok.length + "/" + imgs.length + " " + imgs.map(function (i) {
      return i.getAttribute("ATTRIBUTE") + "=" + i.naturalWidth + "x" + i.naturalHeight; }).join(",");
  } catch (e) {
    result = "check-failed " + e;
  }
  document.title = result;
});
</script>
</body></html>
"""


def open_in_chromium(page: Path, tmp_path: Path, selector: str = "img.plot",
                     attribute: str = "data-plot") -> tuple[str, list[str]]:
    """Load `page` in an iframe of a wrapper page in headless Chromium: the wrapper's verdict on the images that
    `selector` finds, each named by its `attribute` ("plots-ok 3/3 latency=640x480,..." once the iframe has
    loaded), and the console messages Chromium logged from any page."""
    wrapper = tmp_path / "wrapper.html"
    text = WRAPPER.replace("REPORT", page.resolve().as_uri()).replace("SELECTOR", selector)
    wrapper.write_text(text.replace("ATTRIBUTE", attribute), encoding="utf-8")
    # --allow-file-access-from-files: without it a file: page cannot read its file: iframe's document.
    # --no-sandbox: Chromium's sandbox refuses to run as root (CI containers).
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
           "--enable-logging=stderr", "--v=0", "--dump-dom", wrapper.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    title = re.search(r"<title>(.*?)</title>", proc.stdout, re.S)
    assert title, proc.stdout[-2000:]
    # Chromium logs each console message of a page (log, warning, error, an uncaught exception) as one line:
    # [pid:tid:time:INFO:CONSOLE:7] "message", source: file:///.../page.html (7). Its own noise (dbus, GPU) is
    # logged from other files and is left aside.
    console = [line for line in proc.stderr.splitlines() if re.search(r":CONSOLE[:(]\d*", line)]
    return title.group(1), console
