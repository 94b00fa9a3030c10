"""README.rst renders without a docutils warning, leads with the two commands and stays a short landing
page; the guide pages it links to exist and the site's navigation lists every page."""

from __future__ import annotations

import os
import re

import docutils.core
import docutils.utils

from awkgen.__main__ import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.rst")
DOCS = os.path.join(ROOT, "docs")


def _text() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def test_readme_renders_without_warnings():
    # halt_level 2: the first WARNING (bad markup, broken reference, title underline too short) raises.
    try:
        docutils.core.publish_doctree(_text(), source_path=README,
                                      settings_overrides={"halt_level": 2, "report_level": 2,
                                                          "warning_stream": False})
    except docutils.utils.SystemMessage as exc:
        raise AssertionError(f"README.rst does not render cleanly: {exc}") from None


def test_readme_shows_make_test_and_make_demo_first():
    head = "\n".join(_text().splitlines()[:25])
    assert "make test" in head and "make demo" in head


def _guide() -> str:
    """README and every page of docs/, as one text."""
    texts = [_text()]
    for name in sorted(os.listdir(DOCS)):
        if name.endswith(".rst"):
            with open(os.path.join(DOCS, name), encoding="utf-8") as f:
                texts.append(f.read())
    return "\n".join(texts)


def test_readme_is_a_short_landing_page_linking_every_guide_page():
    text = _text()
    assert len(text.splitlines()) < 120, "README.rst is the landing page: the guide lives in docs/"
    for title in ("Quick start", "Install", "Documentation"):
        assert f"\n{title}\n====" in text, title
    linked = re.findall(r"<docs/([\w-]+\.rst)>`_", text)
    pages = sorted(name for name in os.listdir(DOCS) if name.endswith(".rst") and name != "index.rst")
    assert sorted(set(linked)) == pages, (linked, pages)


def test_the_sites_navigation_lists_every_page():
    with open(os.path.join(DOCS, "index.rst"), encoding="utf-8") as f:
        index = f.read()
    listed = set(re.findall(r"^   ([\w-]+)$", index, re.M))
    pages = {name[:-4] for name in os.listdir(DOCS) if name.endswith(".rst") and name != "index.rst"}
    assert listed == pages, (listed, pages)
    assert ".. include:: ../README.rst" in index and ":end-before: .. documentation-links" in index
    assert ".. documentation-links" in _text()


def test_readme_options_of_the_awkgen_command_exist():
    """Every ``awkgen demo --x`` / ``awkgen bench --x`` option the README or the guide names is accepted."""
    parser = build_parser()
    found = re.findall(r"awkgen (demo|bench)((?: --?[\w-]+(?: [\w,.]+)?)+)", _guide())
    assert {command for command, _ in found} == {"demo", "bench"}, "README shows no awkgen command line"
    for command, options in found:
        args = [word for word in options.split() if word not in ("-h", "--help")]
        parser.parse_args([command, *args])  # exits 2 on an unknown option or a bad value
