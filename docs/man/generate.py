#!/usr/bin/env python3
"""Regenerate the man pages isolate(1) and isolate-oci(1) from the commands' argument parsers.

    python docs/man/generate.py           # rewrite docs/man/isolate.1 and isolate-oci.1
    python docs/man/generate.py --check   # exit 1, naming them, if the committed pages are stale

Run it with the Python that has isolate installed (``.venv/bin/python``: the
pages come from the installed package's parsers, as the tests' do) and
argparse-manpage (the ``test`` extra).  Every option and subcommand comes
from the parsers; EXAMPLES is the help pages' epilogs, the lines
tests/docs/test_cli_help.py runs.  Reproducible: the help is laid out for 80
columns, and a page keeps the date in its .TH line while its text is
unchanged; a changed page gets SOURCE_DATE_EPOCH's date, or today's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGES = ("isolate", "isolate-oci")
_TH_DATE = re.compile(r'^\.TH \S+ "\d+" "([^"]*)"', re.MULTILINE)


def _parser(page: str) -> argparse.ArgumentParser:
    if page == "isolate":
        from isolate.cli.__main__ import build_parser

        return build_parser()
    from isolate.cli.oci import build_parser as build_oci_parser

    return build_oci_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _roff_lines(text: str) -> list[str]:
    """``text`` as lines of a no-fill block: backslashes and hyphens escaped, no line read as a request."""
    out = []
    for line in text.rstrip("\n").split("\n"):
        line = line.replace("\\", "\\e").replace("-", "\\-")
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return out


def _examples(page: str, parser: argparse.ArgumentParser) -> str:
    lines: list[str] = []
    for name, text in [(page, parser.epilog)] + [(f"{page} {verb}", sub.epilog)
                                                  for verb, sub in _subparsers(parser).items()]:
        if not text:
            continue
        if name != page:
            lines.append(f".SS {name}".replace("-", "\\-"))
        lines += [".nf", *_roff_lines(text), ".fi"]
    return "\n".join(lines)


def today() -> str:
    """SOURCE_DATE_EPOCH's date, or today's (UTC), as a .TH line gives it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def render(page: str, date: str) -> str:
    """The man page ``page`` (isolate or isolate-oci) with ``date`` in its .TH line."""
    from argparse_manpage.manpage import Manpage

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"        # argparse wraps the usage and help to the terminal's width
    try:
        parser = _parser(page)
        examples = _examples(page, parser)
        parser.epilog = None            # in EXAMPLES, with the subcommands' ones, not in COMMENTS
        man = Manpage(parser)
        man.date = date
        man.source = "isolate"
        man.manual = "User Commands"
        man.description = ("run programs isolated (namespaces, cgroups, a private root)" if page == "isolate"
                           else "an OCI runtime built on isolate, with runc's command line")
        man.add_section("examples", ">", examples)
        see_also = (".BR isolate\\-oci (1)" if page == "isolate"
                    else ".BR isolate (1),\n.BR runc (8)")
        man.add_section("see also", ">", see_also)
        return str(man)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def page_date(text: str) -> str | None:
    """The date in a page's .TH line."""
    m = _TH_DATE.search(text)
    return m.group(1).replace("\\-", "-") if m else None


def current(page: str) -> tuple[Path, str | None, str]:
    """(path, committed text or None, what the generator makes now, keeping the committed date if unchanged)."""
    path = HERE / f"{page}.1"
    old = path.read_text(encoding="utf-8") if path.exists() else None
    date = page_date(old) if old is not None else None
    new = render(page, date) if date else None
    if new is None or new != old:
        new = render(page, today())
    return path, old, new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate docs/man/*.1 from isolate's argument parsers.")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is stale")
    args = ap.parse_args(argv)
    stale = []
    for page in PAGES:
        path, old, new = current(page)
        if new == old:
            continue
        stale.append(str(path))
        if not args.check:
            path.write_text(new, encoding="utf-8")
    if stale:
        print(("stale (run python docs/man/generate.py): " if args.check else "wrote ") + " ".join(stale),
              file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
