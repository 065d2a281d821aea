"""The report page in a real headless browser (Debian's chromium): no table is clipped or
scrolls sideways at 1280, 1400 or 1920 px, for a binary and a 4-class study.

The page is loaded with a script appended that measures every table (and the ``.scroll``
box around it) and writes the figures into the DOM; ``--dump-dom`` returns them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gammatune.cli import app
from tests.conftest import TINY, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)"
)
WIDTHS = (1280, 1400, 1920)
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip
_MEASURE = """<script>
window.addEventListener("load", () => {
  const view = document.documentElement.clientWidth;
  const found = [...document.querySelectorAll("table")].map((t, i) => {
    const box = t.closest(".scroll") || t;
    return {index: i, cls: t.className, scroll: box.scrollWidth, client: box.clientWidth,
            right: Math.ceil(t.getBoundingClientRect().right)};
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({view: view, page: document.documentElement.scrollWidth,
                                    tables: found});
  document.body.appendChild(out);
});
</script>"""

runner = CliRunner()


def _measure(page: Path, width: int, profile: Path) -> dict:
    probe = page.with_name(f"measure-{width}.html")
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"),
        encoding="utf-8",
    )
    command = [
        str(CHROMIUM), *_FLAGS, f"--user-data-dir={profile / str(width)}",
        f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom",
        probe.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="measured">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium wrote no measurements (exit {done.returncode}): {done.stderr[-800:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def _assert_fits(page: Path, tmp_path: Path) -> None:
    for width in WIDTHS:
        measured = _measure(page, width, tmp_path / "profile")
        assert measured["tables"], "the page has no tables"
        assert measured["page"] <= measured["view"], (width, measured)
        for table in measured["tables"]:
            clipped = table["scroll"] > table["client"] or table["right"] > measured["view"]
            assert not clipped, (
                f"at {width} px the {table['cls'] or 'unnamed'} table overflows: {table}"
            )


def test_the_binary_report_fits_1280_1400_and_1920_px(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = runner.invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "runs" / "tiny" / "report.html"
    assert 'class="summary"' in page.read_text(encoding="utf-8")
    _assert_fits(page, tmp_path)


def test_a_four_class_report_fits_1280_1400_and_1920_px(tmp_path: Path) -> None:
    data = {**TINY["data"], "n_classes": 4, "minority_fraction": 0.1}
    path = write_config(tmp_path, data=data, search={"gamma": [2.0], "alpha": [0.75]})
    result = runner.invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "runs" / "tiny" / "report.html"
    assert "class-changes" in page.read_text(encoding="utf-8")
    _assert_fits(page, tmp_path)


def test_the_measurement_sees_a_clipped_table(tmp_path: Path) -> None:
    """The check can fail: a table of 40 wide cells in the page's style is caught."""
    page = tmp_path / "wide.html"
    cells = "".join(f"<td>{'x' * 12} {i}</td>" for i in range(40))
    page.write_text(
        "<!DOCTYPE html><html><head><style>body{max-width:1240px;margin:auto}"
        ".scroll{overflow-x:auto} td{white-space:nowrap}</style></head><body>"
        f'<div class="scroll"><table class="wide"><tr>{cells}</tr></table></div></body></html>',
        encoding="utf-8",
    )
    measured = _measure(page, 1280, tmp_path / "profile")
    wide = measured["tables"][0]
    assert wide["scroll"] > wide["client"]
