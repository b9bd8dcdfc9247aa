"""Export the teacher and its one-step students from a run into a weights root, with a manifest.

    python -m training.export_students RUN WEIGHTS_DIR
    python -m training.export_students --install OUT/weights weights   # students of a GPU call -> the repo
    python -m training.export_students RUN WEIGHTS_DIR --turbo-only dmd  # teacher + one-step student of stage dmd
    python -m training.export_students RUN WEIGHTS_DIR --turbo-only dmd --checkpoint ema_student  # its final EMA
    python -m training.export_students RUN WEIGHTS_DIR --teacher-only    # teacher + judge (a teacher-only run)

Writes WEIGHTS_DIR/bundled (the teacher, as training.export does), judge/, bundled_lcm/ (LCM
student, stage lcm/) and bundled_turbo/ (the ADD student, stage add/; with --turbo-only dmd the
DMD student, stage dmd/), and WEIGHTS_DIR/manifest.yaml: the repository's weights_manifest.yaml
with the three bundled entries' file lists and sha256 replaced by what was just written, so
`load_from_manifest(ID, W/manifest.yaml, W)` loads them and the lines can be pasted back into the
repository manifest. Each student folder holds only its
UNet (fp16, shards <= 15 MB), scheduler config and model_index.json; text encoder, VAE and
tokenizer are relative symlinks into bundled/ (training.export.SHARED_WITH_TEACHER).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from training.export import (
    BUNDLED,
    LCM,
    ONE_STEP_STAGES,
    SHARED_WITH_TEACHER,
    TURBO,
    export,
    export_student,
)

ROOT = Path(__file__).resolve().parents[1]
# manifest id -> folder under the weights root
ENTRIES = {"bundled": BUNDLED, "bundled-lcm": LCM, "bundled-turbo": TURBO}


def listed_files(folder: Path) -> list[Path]:
    """Every file a manifest entry for `folder` lists (relative), following the shared-component
    symlinks (Path.rglob does not descend into symlinked folders); README.md excluded."""
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            found += [path.name / p.relative_to(path.resolve()) for p in sorted(path.resolve().rglob("*")) if p.is_file()]
        elif path.is_file() and path.name != "README.md":
            found.append(Path(path.name))
    return found


def files_block(folder: Path) -> str:
    """The `files:` block of a manifest entry for `folder`: path, sha256 and size of each file."""
    lines = ["    files:"]
    for relative in listed_files(folder):
        path = folder / relative
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"      - {{path: {relative.as_posix()}, sha256: {digest}, size: {path.stat().st_size}}}")
    return "\n".join(lines) + "\n"


def with_files(manifest: str, model_id: str, folder: Path) -> str:
    """`manifest` text with entry `model_id`'s files block replaced by the files of `folder`."""
    pattern = re.compile(rf"(  - id: {re.escape(model_id)}\n(?:(?!  - id:).*\n)*?)    files:\n(?:      - .*\n)+")
    if not pattern.search(manifest):
        raise ValueError(f"model_id {model_id!r}: no entry with a files block in the manifest")
    return pattern.sub(lambda m: m.group(1) + files_block(folder), manifest, count=1)


def export_all(run: Path, weights: Path, manifest: Path = ROOT / "weights_manifest.yaml") -> dict[str, int]:
    """Teacher, judge and both students from `run` into `weights`, plus weights/manifest.yaml; bytes per folder."""
    sizes = export(run, weights)
    sizes[LCM] = export_student(run, weights, "lcm")
    sizes[TURBO] = export_student(run, weights, "add")
    text = manifest.read_text()
    for model_id, folder in ENTRIES.items():
        text = with_files(text, model_id, weights / folder)
    (weights / "manifest.yaml").write_text(text)
    for folder in (LCM, TURBO):
        for name in SHARED_WITH_TEACHER:
            if not (weights / folder / name).resolve().is_dir():
                raise FileNotFoundError(f"{weights / folder / name}: shared component link is broken")
    (weights / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    return sizes


def export_turbo(run: Path, weights: Path, stage: str | None, manifest: Path = ROOT / "weights_manifest.yaml",
                 checkpoint: str | None = None) -> dict[str, int]:
    """The teacher, judge and (unless `stage` is None) the one-step student of `stage` ("add" or
    "dmd") from `run` into `weights`, plus weights/manifest.yaml with the exported entries re-hashed:
    what a GPU call that trained only the one-step student, or only the teacher, evaluates.
    `checkpoint` names the student's weights instead of the stage's own choice (export_student)."""
    sizes = export(run, weights)
    ids = ["bundled"]
    if stage is not None:
        sizes[TURBO] = export_student(run, weights, stage, checkpoint)
        ids.append("bundled-turbo")
    text = manifest.read_text()
    for model_id in ids:
        text = with_files(text, model_id, weights / ENTRIES[model_id])
    (weights / "manifest.yaml").write_text(text)
    return sizes


def install(source: Path, weights: Path, manifest: Path) -> None:
    """Copy the students' own files (unet/, scheduler/, model_index.json) from `source` (a weights root
    or the OUT/weights of a GPU call; a student absent there is left as it is) into `weights`, link the shared components into bundled/, and
    rewrite the bundled-lcm / bundled-turbo file lists and sha256 in `manifest` from what is on disk."""
    import shutil

    text = manifest.read_text()
    for model_id, folder in ENTRIES.items():
        if folder == BUNDLED:
            continue
        target = weights / folder
        if not (source / folder / "unet").is_dir():
            continue  # a call that trained only one of the students
        for name in ("unet", "scheduler"):
            if (target / name).exists():
                shutil.rmtree(target / name)
            shutil.copytree(source / folder / name, target / name)
        shutil.copy(source / folder / "model_index.json", target / "model_index.json")
        for name in SHARED_WITH_TEACHER:
            if not (target / name).is_symlink():
                (target / name).symlink_to(Path("..") / BUNDLED / name, target_is_directory=True)
        text = with_files(text, model_id, target)
    manifest.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run dir (export) or a weights root holding the students (--install)")
    parser.add_argument("weights", type=Path)
    parser.add_argument("--manifest", type=Path, default=ROOT / "weights_manifest.yaml")
    parser.add_argument("--install", action="store_true", help="copy the students from RUN (a weights root) into WEIGHTS and hash them into --manifest")
    parser.add_argument("--turbo-only", choices=ONE_STEP_STAGES, default=None,
                        help="export the teacher and only the one-step student, from this stage of RUN")
    parser.add_argument("--teacher-only", action="store_true", help="export the teacher and judge alone (a teacher-only run)")
    parser.add_argument("--checkpoint", choices=("ema_student", "student", "best_ema_student"), default=None,
                        help="with --turbo-only: these weights of the stage instead of the ones its evaluation chose")
    args = parser.parse_args()
    if args.checkpoint and not args.turbo_only:
        parser.error("--checkpoint needs --turbo-only")
    if args.teacher_only:
        print(export_turbo(args.run, args.weights, None, args.manifest))
    elif args.turbo_only:
        print(export_turbo(args.run, args.weights, args.turbo_only, args.manifest, args.checkpoint))
    elif args.install:
        install(args.run, args.weights, args.manifest)
    else:
        print(export_all(args.run, args.weights, args.manifest))


if __name__ == "__main__":
    main()
