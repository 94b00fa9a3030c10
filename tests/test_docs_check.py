"""tools/docs_check.py, the browser check of ``make docs``, finds what it is for: a code block cut at
1280 px, a page wider than the window, a page the navigation does not reach, reST markup printed as
text (headless chromium)."""

from __future__ import annotations

import shutil

import pytest

from tools.docs_check import check, chromium

pytestmark = pytest.mark.slow

PAGE = """<!doctype html><html><head><style>pre {{ width: 300px; overflow-x: auto; }}</style></head>
<body><nav class="sidebar-tree">{nav}</nav>{body}</body></html>"""


@pytest.fixture
def site(tmp_path):
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.fail("no chromium: make docs installs it (apt-get install chromium)")
    html = tmp_path / "html"
    html.mkdir()
    nav = ('<a class="reference" href="wide.html">wide</a><a class="reference" href="fine.html#top">fine</a>'
           '<a class="reference" href="raw.html">raw</a>')
    (html / "index.html").write_text(PAGE.format(nav=nav, body="<pre>short</pre>"))
    (html / "fine.html").write_text(PAGE.format(nav=nav, body="<pre>" + "x" * 20 + "</pre>"))
    (html / "wide.html").write_text(PAGE.format(nav=nav, body="<pre>" + "y" * 200 + "</pre>"
                                                + '<div style="width: 2000px">wide</div>'))
    (html / "raw.html").write_text(PAGE.format(nav=nav, body="<p><strong>A loader returning ``NULL``</strong></p>"
                                                "<p>In code it is fine: <code>``NULL``</code></p>"))
    (html / "orphan.html").write_text(PAGE.format(nav="", body="<p>no link here</p>"))
    (html / "genindex.html").write_text(PAGE.format(nav="", body="<p>generated</p>"))  # not checked
    return html


def test_the_check_finds_cut_blocks_wide_pages_orphans_and_raw_markup(site):
    assert chromium()
    problems = check(str(site))
    assert len(problems) == 4, problems
    assert problems[0] == ("raw.html: reST markup shows as text (a literal inside bold or italics?): "
                           "'A loader returning ``NULL``'")
    assert problems[1].startswith("wide.html: a code block is cut by ") and "'yyyy" in problems[1]
    assert problems[2].startswith("wide.html: the page is ") and problems[2].endswith("px wide in a 1280 px window")
    assert problems[3] == "orphan.html: not reachable from the navigation (the front page's sidebar)"
    shots = sorted(p.name for p in (site.parent / "screenshots").iterdir())
    assert shots == ["fine.png", "index.png", "orphan.png", "raw.png", "wide.png"]
