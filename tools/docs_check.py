"""Check the built documentation site in a real browser (headless Chromium), as ``make docs`` does.

For every page of ``docs/_build/html`` (but the generated index and search pages), at a
window 1280 pixels wide:

- no code block is cut: a block's text is no wider than its box (the reader sees every
  column without scrolling the block);
- the page itself is no wider than the window (no page-wide horizontal scrollbar);
- the page is reachable from the navigation: the front page's sidebar links to it;
- no reST markup shows as text: two backquotes outside code mean markup reST does not nest
  (a literal inside bold, ``**see ``x``**``) printed as it was written.

It also saves a screenshot of each page into ``docs/_build/screenshots/`` for a person to
look at. The browser is Debian's ``chromium`` (``apt-get install chromium``), or
``$CHROMIUM``. The figures are read by a script added to a copy of each page, which
writes them into the page; ``chromium --dump-dom`` prints the page after it ran.

    python tools/docs_check.py [docs/_build/html]
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

WIDTH, HEIGHT = 1280, 1000
SKIP = {"genindex.html", "search.html", "py-modindex.html"}

# Runs once the page is laid out; writes its findings into the page, where --dump-dom finds them.
PROBE = """
<script>
window.addEventListener("load", () => {
  const cut = [];
  document.querySelectorAll("pre").forEach((pre) => {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      cut.push({text: pre.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), ""),
                over: pre.scrollWidth - pre.clientWidth});
    }
  });
  const raw = [];
  const walker = document.createTreeWalker(document.querySelector("article") || document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.textContent.includes("``") && !node.parentElement.closest("pre, code, script, style")) {
      raw.push(node.textContent.trim().slice(0, 100));
    }
  }
  const nav = Array.from(document.querySelectorAll(".sidebar-tree a.reference"))
    .map((a) => a.getAttribute("href").split("#")[0]).filter((h) => h);
  const out = document.createElement("pre");
  out.id = "awkgen-docs-check";
  out.style.display = "none";
  out.textContent = JSON.stringify({cut: cut, raw: raw, pageWidth: document.documentElement.scrollWidth,
                                    window: window.innerWidth, nav: nav});
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("docs check: no chromium (apt-get install chromium, or set CHROMIUM)")
    return found


def _browser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={WIDTH},{HEIGHT}", *args], capture_output=True, text=True, timeout=120)


def measure(page: str) -> dict[str, object]:
    """What the probe reports for *page* (a built HTML file), in a copy next to it."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    folder = os.path.dirname(page)
    fd, probe = tempfile.mkstemp(suffix=".html", prefix=".check-", dir=folder)  # beside it: same relative links
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text.replace("</body>", PROBE + "</body>"))
        done = _browser("--virtual-time-budget=5000", "--dump-dom", f"file://{probe}")
    finally:
        os.unlink(probe)
    found = re.search(r'<pre id="awkgen-docs-check"[^>]*>(.*?)</pre>', done.stdout, re.S)
    if found is None:
        raise SystemExit(f"docs check: the probe did not run in {page}:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(html.unescape(found.group(1)))
    return result


def screenshot(page: str, out: str) -> None:
    _browser(f"--screenshot={out}", f"file://{page}")


def check(site: str) -> list[str]:
    """The problems found in the built site *site*; saves screenshots beside it."""
    pages = sorted(name for name in os.listdir(site) if name.endswith(".html") and name not in SKIP)
    shots = os.path.join(os.path.dirname(os.path.abspath(site)), "screenshots")
    os.makedirs(shots, exist_ok=True)
    problems = []
    nav: set[str] = set()
    for name in pages:
        page = os.path.abspath(os.path.join(site, name))
        found = measure(page)
        if name == "index.html":
            nav = set(found["nav"])  # type: ignore[arg-type]
        for block in found["cut"]:  # type: ignore[attr-defined]
            problems.append(f"{name}: a code block is cut by {block['over']} px at {WIDTH} px: "
                            f"{block['text'].strip()[:100]!r}")
        for text in found["raw"]:  # type: ignore[attr-defined]
            problems.append(f"{name}: reST markup shows as text (a literal inside bold or italics?): {text!r}")
        if found["pageWidth"] > found["window"]:  # type: ignore[operator]
            problems.append(f"{name}: the page is {found['pageWidth']} px wide in a {found['window']} px window")
        screenshot(page, os.path.join(shots, name.replace(".html", ".png")))
    if not nav:
        problems.append("index.html: the sidebar has no navigation links")
    for name in pages:
        if name != "index.html" and name not in nav:
            problems.append(f"{name}: not reachable from the navigation (the front page's sidebar)")
    return problems


def main(argv: list[str]) -> int:
    site = argv[0] if argv else os.path.join("docs", "_build", "html")
    problems = check(site)
    for problem in problems:
        print(problem)
    pages = len([n for n in os.listdir(site) if n.endswith(".html") and n not in SKIP])
    print(f"docs check: {pages} pages at {WIDTH} px, {len(problems)} problem(s); screenshots in "
          f"{os.path.join(os.path.dirname(os.path.abspath(site)), 'screenshots')}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
