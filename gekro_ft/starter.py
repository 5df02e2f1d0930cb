"""``gekro-ft init DIR``: a starter set for the user's own task, copied out of the package.

The copy keeps the project's layout (``recipes/``, ``eval/``, ``pipelines/``, ``datasets/``),
so the relative paths inside the files hold unchanged and every file runs as it is; inside
DIR the copies are found by name before the shipped ones. The user then swaps in their own
data and edits the copies (in the spirit of torchtune's ``tune cp``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gekro_ft.atomic import write_bytes_atomic
from gekro_ft.config import shipped
from gekro_ft.errors import OutputError

RECIPE = "smollm2-135m-cpu"
SUITE = "ticket-extraction"
PIPELINE = "demo"
DATASET = "ticket-extraction"


@dataclass(frozen=True)
class Starter:
    root: Path
    files: list[Path]
    recipe: Path
    suite: Path
    pipeline: Path


def _plan() -> dict[str, bytes]:
    """Relative path in DIR -> content."""
    files = {f"recipes/{RECIPE}.yaml": shipped("recipes", f"{RECIPE}.yaml").read_bytes(),
             f"eval/{SUITE}.yaml": shipped("eval", f"{SUITE}.yaml").read_bytes()}
    for sub, folder in (("eval", SUITE), ("datasets", DATASET)):
        for f in sorted(shipped(sub, folder).iterdir()):
            if f.suffix in (".jsonl", ".json", ".md"):
                files[f"{sub}/{folder}/{f.name}"] = f.read_bytes()
    # The pipeline names the recipe; point it at this copy, not at the shipped recipe of that name.
    pipeline = shipped("pipelines", f"{PIPELINE}.yaml").read_text()
    pipeline, n = re.subn(rf"(?m)^(\s*recipe:\s*){re.escape(RECIPE)}\b", rf"\g<1>../recipes/{RECIPE}.yaml", pipeline)
    assert n == 1, "the shipped demo pipeline no longer names its recipe on one line"
    files[f"pipelines/{PIPELINE}.yaml"] = pipeline.encode()
    return files


def init_project(directory: str | Path, force: bool = False) -> Starter:
    """Write the starter set into ``directory``; an existing file is an error unless ``force``
    (nothing is written then)."""
    root = Path(directory)
    plan = _plan()
    clashes = [root / rel for rel in plan if (root / rel).exists()]
    if clashes and not force:
        raise OutputError(f"{clashes[0]} already exists" + (f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""),
                          hint="choose an empty directory, or pass --force to overwrite the starter files")
    written = []
    for rel, content in plan.items():
        write_bytes_atomic(root / rel, content)
        written.append(root / rel)
    return Starter(root, written, root / f"recipes/{RECIPE}.yaml", root / f"eval/{SUITE}.yaml",
                   root / f"pipelines/{PIPELINE}.yaml")
