"""Checks of a saved pipeline or model folder, so a bad file is one clear line instead of a deep traceback.

diffusers reports a truncated safetensors file, an invalid ``config.json`` or a missing folder
from deep inside its loaders (a 50-line traceback naming none of the user's files). These
checks read only JSON and the safetensors headers (no weights, no unpickling) and raise
``ModelLoadError`` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

__all__ = [
    "check_model_folder",
    "check_pipeline_folder",
    "components",
    "component_class",
    "component_failure",
    "check_weights_cover",
    "looks_like_path",
    "model_name",
    "folder_fingerprint",
]

_CONFIG_NAMES = ("config.json", "scheduler_config.json")
_FIX = "re-download or re-export the model (training/export.py), or pass another --model"


def looks_like_path(name: str | Path) -> bool:
    """Whether ``name`` is meant as a local folder rather than a hub repo id ("owner/name")."""
    text = str(name)
    return isinstance(name, Path) or text.startswith((".", "/", "~")) or text.count("/") != 1 or "\\" in text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as error:
        raise ModelLoadError(f"{path} is not valid JSON ({error.reason}); {_FIX}") from None
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}); {_FIX}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, got {type(data).__name__}; {_FIX}")
    return data


def check_model_folder(folder: Path) -> None:
    """One model or scheduler folder: its config parses and every safetensors file has a complete header."""
    from safetensors import safe_open

    configs = [folder / name for name in _CONFIG_NAMES if (folder / name).is_file()]
    if not configs:
        raise ModelLoadError(f"{folder} has no config.json; {_FIX}")
    for config in configs:
        _read_json(config)
    if (folder / "config.json").is_file() and list(folder.glob("*.bin")) and not list(folder.glob("*.safetensors")):
        raise ModelLoadError(f"{folder} holds only pickled .bin weights, which are never loaded; convert them to "
                             "safetensors")
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # SafetensorError has no importable base class besides Exception
            raise ModelLoadError(f"{weights} is truncated or corrupt ({error}); {_FIX}") from None


def check_pipeline_folder(folder: str | Path) -> None:
    """A save_pretrained pipeline folder: model_index.json and every component it names."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise ModelLoadError(f"model folder {folder} does not exist; pass a pipeline folder written by "
                             "save_pretrained / training/export.py, or a hub repo id")
    if not folder.is_dir():
        raise ModelLoadError(f"model {folder} is a file; pass the pipeline folder that holds model_index.json")
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(f"{folder} has no model_index.json, so it is not a pipeline folder; pass the folder "
                             "written by save_pretrained / training/export.py")
    for name, (library, class_name) in components(folder).items():
        component = folder / name
        cls = component_class(library, class_name)
        if cls is None:
            raise ModelLoadError(f"{index_file} names component {name!r} as {library}.{class_name}, which is not a "
                                 f"class of diffusers or petct_pipeline (code in a model folder is never run: "
                                 f"{component}); {_FIX}")
        if not component.is_dir():
            raise ModelLoadError(f"{index_file} names component {name!r}, but {component} is missing; {_FIX}")
        check_model_folder(component)
        config_file = next(component / n for n in _CONFIG_NAMES if (component / n).is_file())
        stored = _read_json(config_file).get("_class_name")
        if library != "diffusers" and stored is not None and stored != class_name:  # schedulers may be swapped
            raise ModelLoadError(f"{config_file} is a {stored}, but {index_file} expects {class_name} for "
                                 f"{name!r}; {_FIX}")


def components(folder: str | Path) -> dict[str, tuple[str, str]]:
    """The components model_index.json names: {name: (library, class name)}, optional absent parts left out."""
    found = {}
    for name, entry in _read_json(Path(folder) / "model_index.json").items():
        is_component = isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)
        if not name.startswith("_") and is_component:  # not settings such as base_shape, nor [null, null]
            found[name] = (entry[0], entry[1])
    return found


def component_class(library: str, class_name: str) -> type | None:
    """The class a component names, from diffusers or this package only (never a module in the folder)."""
    import importlib

    if library != "diffusers" and library != "petct_pipeline" and not library.startswith("petct_pipeline."):
        return None
    try:
        module = importlib.import_module(library)
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    return cls if isinstance(cls, type) and hasattr(cls, "from_pretrained") else None


def component_failure(folder: str | Path) -> ModelLoadError | None:
    """Load each component of a checked folder on its own; the first that fails, as an error naming it.

    Only on the failure path of a pipeline load: diffusers' own message names neither the
    component nor its file (a config value of the wrong type fails deep inside a constructor).
    """
    folder = Path(folder)
    for name, (library, class_name) in components(folder).items():
        cls = component_class(library, class_name)
        try:
            cls.from_pretrained(str(folder / name))
        except Exception as error:  # whatever a constructor raises for a config it cannot take
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            return ModelLoadError(f"{folder / name} cannot be loaded as {class_name} ({type(error).__name__}: "
                                  f"{reason}); {_FIX}")
    return None


def check_weights_cover(folder: str | Path, modules: dict[str, Any]) -> None:
    """Each loaded model's weights file holds exactly its parameters: diffusers fills missing ones with random
    values and only logs it, so weights of another model or version would load silently."""
    from safetensors import safe_open

    for name, module in modules.items():
        files = sorted((Path(folder) / name).glob("*.safetensors"))
        if not files or not hasattr(module, "state_dict"):
            continue
        stored: set[str] = set()
        for weights in files:
            with safe_open(str(weights), framework="pt") as handle:
                stored |= set(handle.keys())
        expected = set(module.state_dict())
        missing, unexpected = sorted(expected - stored), sorted(stored - expected)
        if missing or unexpected:
            detail = ", ".join(part for part in (
                f"{len(missing)} of its weights missing (e.g. {missing[0]})" if missing else "",
                f"{len(unexpected)} it does not have (e.g. {unexpected[0]})" if unexpected else "") if part)
            raise ModelLoadError(f"{files[0]} does not match {type(module).__name__}: {detail}; the weights are "
                                 f"from another model or version; {_FIX}")


def model_name(name_or_path: str | Path) -> str:
    """How outputs name a model: a hub repo id as given, a local folder by its own name (never a local path)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() or looks_like_path(name_or_path):
        return path.resolve().name
    return str(name_or_path)


def folder_fingerprint(folder: str | Path) -> str:
    """``sha256:<hex>`` of a local model folder's configs and weights (names and bytes): its revision.

    A local folder has no hub commit; this identifies the exact weights an output came from, the
    same on every machine and wherever the folder lies.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"
