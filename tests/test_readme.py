"""README.rst renders without a docutils warning and leads with the two commands."""

from __future__ import annotations

import os
import re

import docutils.core
import docutils.utils

from awkgen.__main__ import build_parser

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")


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


def test_readme_options_of_the_awkgen_command_exist():
    """Every ``awkgen demo --x`` / ``awkgen bench --x`` option the README names is accepted."""
    parser = build_parser()
    found = re.findall(r"awkgen (demo|bench)((?: --?[\w-]+(?: [\w,.]+)?)+)", _text())
    assert {command for command, _ in found} == {"demo", "bench"}, "README shows no awkgen command line"
    for command, options in found:
        args = [word for word in options.split() if word not in ("-h", "--help")]
        parser.parse_args([command, *args])  # exits 2 on an unknown option or a bad value
