"""The model card: written into the pipeline folder by the export step, never kept as a hand copy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.model_card import hub_model_card, main, write_model_card  # noqa: E402

CARD = REPO / "model_card.md"
DEMO = REPO / "checkpoints" / "petct-phantom-demo"


def expected_readme() -> str:
    return hub_model_card(CARD.read_text(encoding="utf-8"))


def test_shipped_folder_readme_is_written_from_the_model_card():
    assert (DEMO / "README.md").read_text(encoding="utf-8") == expected_readme(), (
        "checkpoints/petct-phantom-demo/README.md is stale: run python training/model_card.py "
        "checkpoints/petct-phantom-demo")


def test_export_writes_the_card_into_the_pipeline_folder(tmp_path):
    from huggingface_hub import ModelCard

    from training.export import main as export_main

    out = tmp_path / "pipeline"
    assert export_main(["--base", str(DEMO), "--sr", str(DEMO), "--out", str(out), "--model_card", str(CARD)]) == 0
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme == expected_readme()
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0" and card.data.library_name == "diffusers"
    assert "synthetic-data" in card.data.tags
    # without a card the export writes none (a user's own model must not get the demo's card)
    assert export_main(["--base", str(DEMO), "--sr", str(DEMO), "--out", str(tmp_path / "bare")]) == 0
    assert not (tmp_path / "bare" / "README.md").exists()


def test_export_fails_on_a_dead_link_and_copies_outside_cards_as_they_are(tmp_path, monkeypatch, capsys):
    from training import model_card
    from training.export import main as export_main

    repo = tmp_path / "repo"
    repo.mkdir()
    dead = repo / "card.md"
    dead.write_text("---\nlicense: mit\n---\n# Card\n\n[gone](docs/no-such-file.md)\n")
    monkeypatch.setattr(model_card, "REPO_ROOT", repo)
    out = tmp_path / "out"
    assert export_main(["--base", str(DEMO), "--sr", str(DEMO), "--out", str(out), "--model_card", str(dead)]) == 2
    assert "docs/no-such-file.md" in capsys.readouterr().err and not out.exists()
    # a card from outside this repository (a user's own model) is written unchanged
    monkeypatch.undo()
    assert export_main(["--base", str(DEMO), "--sr", str(DEMO), "--out", str(out), "--model_card", str(dead)]) == 0
    assert (out / "README.md").read_text(encoding="utf-8") == dead.read_text(encoding="utf-8")


def test_relative_links_become_repository_urls(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n")
    (tmp_path / "docs" / "figure.png").write_bytes(b"png")
    card = "\n".join([
        "See [the guide](docs/guide.md#setup), [docs](docs/) and ![figure](docs/figure.png \"title\").",
        "Kept: [hub](https://huggingface.co/x), [here](#results), `[code](docs/missing.md)`.",
        "```python",
        "out[0](docs/missing.md)",
        "```",
        "[ref]: ./docs/guide.md",
        "",
    ])
    written = hub_model_card(card, root=tmp_path, repository_url="https://example.org/r", revision="v1")
    assert "[the guide](https://example.org/r/blob/v1/docs/guide.md#setup)" in written
    assert "[docs](https://example.org/r/tree/v1/docs)" in written
    assert "![figure](https://example.org/r/raw/v1/docs/figure.png \"title\")" in written
    assert "[hub](https://huggingface.co/x), [here](#results), `[code](docs/missing.md)`" in written
    assert "out[0](docs/missing.md)" in written
    assert "[ref]: https://example.org/r/blob/v1/docs/guide.md" in written
    with pytest.raises(ValueError, match="leaves the repository"):
        hub_model_card("[up](../outside.md)", root=tmp_path)


def test_metadata_must_parse_and_name_a_license(tmp_path):
    folder = tmp_path / "pipeline"
    folder.mkdir()
    card = tmp_path / "card.md"
    card.write_text("---\nlibrary_name: diffusers\n---\n# Card\n")
    with pytest.raises(ValueError, match="no license"):
        write_model_card(folder, card)
    card.write_text("---\nlicense: [\n---\n# Card\n")
    with pytest.raises(ValueError, match="does not parse"):
        write_model_card(folder, card)
    assert not (folder / "README.md").exists()
    card.write_text("---\nlicense: mit\n---\n# Card\n")
    assert write_model_card(folder, card).read_text() == "---\nlicense: mit\n---\n# Card\n"


def test_command_line_rewrites_a_pipeline_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "not a pipeline folder" in capsys.readouterr().err
    (tmp_path / "model_index.json").write_text("{}")
    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == expected_readme()
