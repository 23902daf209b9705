#!/usr/bin/env python
"""Write a pipeline folder's ``README.md`` (its Hugging Face model card) from a model card file.

The repository's ``model_card.md`` is the one source of the shipped pipeline's card. A pipeline
folder pushed to the Hub is a repository of its own, so the card's relative links
(``docs/experiments.md``, ``benchmarks/README.md``) would point nowhere there: they are rewritten
to absolute URLs of the source repository; everything else is kept as it is. ``export.py
--model_card model_card.md`` writes the card into the exported folder; after an edit of the card
alone, rewrite the shipped folder's copy with

    python training/model_card.py checkpoints/petct-phantom-demo

A card outside this repository (your own model's) is written unchanged.
"""

from __future__ import annotations

import argparse
import logging
import posixpath
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from petct_pipeline.errors import InputError

__all__ = ["REPOSITORY_URL", "hub_model_card", "main", "markdown_links", "write_model_card"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_CARD = REPO_ROOT / "model_card.md"
REPOSITORY_URL = "https://github.com/petct-diffusion/petct-diffusion"
REVISION = "main"

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_HTML_COMMENT = re.compile(r"<!--.*?-->")
#: inline link or image: [text](target) / ![alt](target "title"), target optionally in <...>
_INLINE_LINK = re.compile(r"(!?)\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
#: reference definition: [label]: target
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_links(text: str) -> Iterator[tuple[int, int, str, bool]]:
    """``(start, end, target, is_image)`` of every link target outside code, as offsets into ``text``.

    Inline links, images and reference definitions count; fenced code blocks, inline code spans
    and HTML comments do not (``pipe(...)[0](x)`` in a code sample is not a link).
    """
    offset, fenced = 0, False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            masked = _HTML_COMMENT.sub(lambda m: " " * len(m.group()), line)
            masked = _INLINE_CODE.sub(lambda m: " " * len(m.group()), masked)
            found = [(m.start(2), m.end(2), m.group(1) == "!") for m in _INLINE_LINK.finditer(masked)]
            reference = _REFERENCE.match(masked)
            if reference:
                found.append((reference.start(1), reference.end(1), False))
            for start, end, image in found:
                target = line[start:end]
                if target.startswith("<") and target.endswith(">"):
                    start, end, target = start + 1, end - 1, target[1:-1]
                yield offset + start, offset + end, target, image
        offset += len(line)


def is_relative(target: str) -> bool:
    """A link to a file of the same repository (not a URL, not an in-page ``#anchor``)."""
    return bool(target) and not target.startswith(("#", "//")) and not _SCHEME.match(target)


def hub_model_card(card: str, base: str = ".", root: Path = REPO_ROOT,
                   repository_url: str = REPOSITORY_URL, revision: str = REVISION) -> str:
    """The card with every relative link made an absolute URL of ``repository_url`` at ``revision``.

    ``base`` is the card's folder inside the repository ``root`` (relative links resolve from it);
    files link to ``blob/``, folders to ``tree/``, images to ``raw/`` so the Hub can show them.
    A link to a file that does not exist under ``root`` raises ``ValueError``: the card would ship
    a dead link.
    """
    pieces, last = [], 0
    for start, end, target, image in markdown_links(card):
        if not is_relative(target):
            continue
        path_part, _, anchor = target.partition("#")
        joined = path_part[1:] if path_part.startswith("/") else posixpath.join(str(base), path_part)
        path = posixpath.normpath(joined)
        if path == ".." or path.startswith("../"):
            raise InputError(f"model card link {target!r} leaves the repository")
        path = "" if path == "." else path
        location = root / path
        if not location.exists():
            raise InputError(f"model card link {target!r} points to {path!r}, which does not exist in {root}")
        kind = "raw" if image else "tree" if location.is_dir() else "blob"
        url = f"{repository_url}/{kind}/{revision}/{path}" + (f"#{anchor}" if anchor else "")
        pieces += [card[last:start], url]
        last = end
    return "".join(pieces) + card[last:]


def _check_metadata(card: str, source: Path) -> None:
    from huggingface_hub import ModelCard

    try:
        data = ModelCard(card, ignore_metadata_errors=False).data.to_dict()
    except Exception as error:  # yaml errors: the Hub would reject the card
        raise InputError(f"{source}: the YAML front matter does not parse ({error})") from None
    if not data.get("license"):
        raise InputError(f"{source}: the model card's YAML front matter names no license")


def write_model_card(folder: str | Path, card_path: str | Path = MODEL_CARD) -> Path:
    """Write ``folder/README.md`` from ``card_path``; returns the README's path.

    A card inside this repository gets its relative links made absolute (:func:`hub_model_card`);
    a card from elsewhere is written as it is. The card's YAML front matter must parse and name a
    license.
    """
    from petct_pipeline.io import atomic_path

    folder, card_path = Path(folder), Path(card_path).resolve()
    card = card_path.read_text(encoding="utf-8")
    _check_metadata(card, card_path)
    if card_path.is_relative_to(REPO_ROOT):
        card = hub_model_card(card, base=card_path.parent.relative_to(REPO_ROOT).as_posix(), root=REPO_ROOT)
    elif any(is_relative(target) for _, _, target, _ in markdown_links(card)):
        logger.warning("%s has relative links; they will not resolve once the folder is on the Hub", card_path)
    readme = folder / "README.md"
    with atomic_path(readme) as tmp:
        Path(tmp).write_text(card, encoding="utf-8")
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="pipeline folder whose README.md to write")
    parser.add_argument("--card", type=Path, default=MODEL_CARD, help="model card to write it from "
                        "(default: the repository's model_card.md)")
    args = parser.parse_args(argv)
    if not (args.folder / "model_index.json").is_file():
        print(f"model_card.py: error: {args.folder} is not a pipeline folder (no model_index.json)", file=sys.stderr)
        return 2
    try:
        print(write_model_card(args.folder, args.card))
    except (ValueError, OSError) as error:
        print(f"model_card.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
