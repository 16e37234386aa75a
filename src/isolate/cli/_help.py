"""What every ``isolate`` and ``isolate-oci`` help page shares: the formatter that keeps examples as written.

An epilog is an ``examples:`` block of lines laid out by hand (``  $ command``);
argparse's default formatter would join them into one paragraph, and its
RawDescriptionHelpFormatter would stop wrapping the one-line descriptions.
tests/docs/test_cli_help.py runs (or, for isolate-oci's verbs, parses) every
``$`` line; docs/man/generate.py puts them in the man pages' EXAMPLES.
"""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter", "EXAMPLE_PROMPT"]

#: How an example command line starts in an epilog (after its indentation).
EXAMPLE_PROMPT = "$ "


class HelpFormatter(argparse.HelpFormatter):
    """Fills one-line texts (descriptions) as argparse does; keeps texts with line breaks (epilogs) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
