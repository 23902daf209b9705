"""The model card: written into the pipeline folder by the export step, never kept as a hand copy."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from training.model_card import REPOSITORY_URL, hub_model_card, main, markdown_links, write_model_card

REPO = Path(__file__).resolve().parent.parent


CARD = REPO / "model_card.md"
DEMO = REPO / "checkpoints" / "petct-phantom-demo"
#: the Hub template's sections (huggingface_hub/templates/modelcard_template.md), in its order
TEMPLATE_SECTIONS = [
    "Model Details", "Model Description", "Uses", "Direct Use", "Downstream Use", "Out-of-Scope Use",
    "Bias, Risks, and Limitations", "Recommendations", "How to Get Started with the Model",
    "Training Details", "Training Data", "Training Procedure", "Training Hyperparameters",
    "Evaluation", "Testing Data, Factors & Metrics", "Results", "Summary", "Environmental Impact",
    "Technical Specifications", "Model Architecture and Objective", "Compute Infrastructure", "Citation",
]


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


def test_card_follows_the_hub_template_in_about_150_lines():
    text = CARD.read_text(encoding="utf-8")
    assert text.startswith("---\n") and len(text.splitlines()) <= 155
    headings = [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{2,4} ", line)]
    assert [h for h in headings if h in TEMPLATE_SECTIONS] == TEMPLATE_SECTIONS
    # one results table: the only table under Evaluation
    evaluation = text[text.index("## Evaluation"):text.index("## Environmental Impact")]
    assert len(re.findall(r"^\|(?:\s*:?-+:?\s*\|)+\s*$", evaluation, flags=re.M)) == 1
    # links to the repository's own files stay relative here (tests/test_docs_links.py checks them)
    own = tuple(f"{REPOSITORY_URL}/{kind}/" for kind in ("blob", "tree", "raw"))
    assert not [target for _, _, target, _ in markdown_links(text) if target.startswith(own)]


def _parameters_m(component: str) -> float:
    from safetensors import safe_open

    total = 0
    for path in (DEMO / component).glob("*.safetensors"):
        with safe_open(path, "pt") as weights:
            total += sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    return total / 1e6


def test_card_sizes_match_the_shipped_folder():
    text = CARD.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)`[^|]*\|[^|]*\| ([\d.]+) M", text, flags=re.M))
    assert set(rows) == {"demographic_encoder", "unet", "demographic_prior", "sr_unet"}
    for component, stated in rows.items():
        assert float(stated) == pytest.approx(_parameters_m(component), abs=0.006), component
    stated_mb = float(re.search(r"([\d.]+) MB of safetensors", text).group(1))
    size_mb = sum(p.stat().st_size for p in DEMO.rglob("*.safetensors")) / 1e6
    assert stated_mb == pytest.approx(size_mb, abs=0.5)
