"""Every Python block of README.rst and the guide pages runs as written (tools/doc_blocks.py).

Each block runs in a child interpreter after a prelude that makes what a reader brings
(files, a loader, a model); a block that raises or warns fails, Keras' shuffle warning
included.
"""

from __future__ import annotations

import pytest

from tools.doc_blocks import Block, blocks, run

pytestmark = pytest.mark.slow
BLOCKS = blocks()


def test_the_pages_have_python_blocks_and_the_quick_start_is_one():
    assert len(BLOCKS) >= 8
    assert any("DataGeneratorMultiProc(loader, paths" in block.code for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_runs_as_written(block):
    done = run(block)
    assert done.returncode == 0, f"{block.name} failed:\n{block.code}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"


def test_a_block_that_warns_fails():
    done = run(Block("example", 1, "import warnings\nwarnings.warn('shuffle=True was passed')\n"))
    assert done.returncode != 0 and "the block warned: UserWarning: shuffle=True was passed" in done.stderr
