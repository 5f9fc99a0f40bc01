"""Issue 16, data loss and false claims: a diverged step is never checkpointed; `--resume` refuses
a damaged or edited run folder (naming the file or field) before it trains or writes anything;
the folders of sweep, codebook-study and `anomaly --out` never overwrite a user's files; options
are checked before anything trains. Only the command line and the public API are used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_FLAGS, assert_one_line, cli, copy_run, snapshot_folder, tabular_npz
from safetensors import safe_open
from safetensors.torch import load_file, save_file

CHECKPOINT = Path("checkpoint") / "last.safetensors"


def all_finite(path: Path) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for t in load_file(path).values() if t.is_floating_point()
    )


# --- 1. a diverged last step is never saved as "the last good checkpoint" ----------------------


def test_a_diverged_step_is_never_checkpointed(tmp_path: Path) -> None:
    # One step per epoch: the first step's loss is finite, the step itself makes the weights NaN,
    # and the loop only looks at the loss before each step.
    run = tmp_path / "run"
    argv = ["train", "dense-vae", *TINY_FLAGS, "--epochs=3", "--batch-size=200", "--lr=1e39"]
    code, _, err = cli([*argv, "--out", run])
    assert code == 1 and "last good checkpoint" in err, err
    for name in (CHECKPOINT, Path("model.safetensors")):
        if (run / name).exists():
            assert all_finite(run / name), f"{name} holds non-finite weights"
    # What is kept can be continued: the resume fails again the same way (exit 1), never on the
    # checkpoint itself.
    code, _, err = cli(["train", "--resume", run, "--quiet"])
    assert code == 1 and "non-finite" in err and "Traceback" not in err, err


# --- 2. a damaged metrics.jsonl is refused before anything is written ------------------------

DAMAGES = {
    "missing": None,
    "damaged first line": lambda lines: ["{not json", *lines[1:]],
    "a line that is not an object": lambda lines: ["[1, 2]", *lines[1:]],
}


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "unfinished"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resume_refuses_a_damaged_metrics_file(
    damage: str, finished: bool, tiny_run, unfinished_run: Path, tmp_path: Path
) -> None:
    run = copy_run(tiny_run.path if finished else unfinished_run, tmp_path / "run")
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    if DAMAGES[damage] is None:
        metrics.unlink()
    else:
        metrics.write_text("\n".join(DAMAGES[damage](lines)) + "\n")
    before = snapshot_folder(run)
    assert_one_line(cli(["train", "--resume", run, "--quiet"]), "metrics.jsonl")
    assert snapshot_folder(run) == before


def test_a_torn_last_metrics_line_still_resumes(unfinished_run: Path, tmp_path: Path) -> None:
    """What a kill during the append leaves is not damage: the resume continues (guards the fix
    of the test above against refusing too much)."""
    run = copy_run(unfinished_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "train_lo')
    code, _, err = cli(["train", "--resume", run, "--quiet"])
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 8
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 8


# --- 3. output folders never overwrite a user's files; options checked before training ------


STUDIES = {
    "sweep": (["sweep", "dense-vae", "--beta=1", *TINY_FLAGS], "sweep.md"),
    "codebook-study": (["codebook-study", "--sizes=4", *TINY_FLAGS], "study.md"),
    "anomaly mnist-holdout": (["anomaly", "mnist-holdout", *TINY_FLAGS], "results.json"),
    "anomaly tabular": (["anomaly", "tabular", "{npz}", "--epochs=1", "--quiet"], "results.json"),
}


@pytest.mark.parametrize("command", list(STUDIES))
def test_an_output_folder_with_user_files_is_refused(command: str, tmp_path: Path) -> None:
    argv, name = STUDIES[command]
    argv = [a.format(npz=tabular_npz(tmp_path / "rows.npz")) for a in argv]
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("the user's own notes\n")
    (out / "traversals.png").write_bytes(b"the user's own figure")
    before = snapshot_folder(out)
    assert_one_line(cli([*argv, "--out", out]), str(out))
    assert snapshot_folder(out) == before


@pytest.mark.parametrize(
    "argv, option",
    [
        (["sweep", "dense-vae", "--beta=1,1", *TINY_FLAGS], "beta"),
        (["codebook-study", "--sizes=4,0", *TINY_FLAGS], "size"),
    ],
    ids=["sweep --beta 1,1", "codebook-study --sizes 4,0"],
)
def test_options_are_checked_before_anything_trains(
    argv: list[str], option: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert_one_line(cli([*argv, "--out", out]), option)
    assert not out.exists()


# --- 4. an edited config.json or a crafted checkpoint epoch is refused, naming the field -----


@pytest.mark.parametrize(
    "section, field, value",
    [("train", "lr", 0.5), ("train", "seed", 7), ("data", "train_subset", 150)],
)
def test_resume_refuses_an_edited_config(
    section: str, field: str, value: object, unfinished_run: Path, tmp_path: Path
) -> None:
    run = copy_run(unfinished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    assert config[section][field] != value
    config[section][field] = value
    (run / "config.json").write_text(json.dumps(config, indent=2))
    before = snapshot_folder(run)
    assert_one_line(cli(["train", "--resume", run, "--quiet"]), field)
    assert snapshot_folder(run) == before


def test_extending_epochs_is_refused_or_exact(tmp_path: Path) -> None:
    run, real = tmp_path / "run", tmp_path / "real"
    assert cli(["train", "dense-ae", *TINY_FLAGS, "--epochs=2", "--out", run])[0] == 0
    assert cli(["train", "dense-ae", *TINY_FLAGS, "--epochs=4", "--out", real])[0] == 0
    config = json.loads((run / "config.json").read_text())
    config["train"]["epochs"] = 4
    (run / "config.json").write_text(json.dumps(config, indent=2))
    before = snapshot_folder(run)
    code, _, err = cli(["train", "--resume", run, "--quiet"])
    if code == 2:
        assert_one_line((code, "", err), "epochs")
        assert snapshot_folder(run) == before
    else:
        assert code == 0, err
        weights = [(d / "model.safetensors").read_bytes() for d in (run, real)]
        assert weights[0] == weights[1], "config.json claims a 4-epoch run it is not"


def set_metadata(path: Path, **changes: str) -> None:
    """Rewrite a safetensors file's metadata (a user or an attacker with a text editor)."""
    with safe_open(path, "pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(path)
    metadata.update(changes)
    save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("epoch", ["-5", "1000"])
def test_resume_refuses_a_crafted_checkpoint_epoch(
    epoch: str, unfinished_run: Path, tmp_path: Path
) -> None:
    run = copy_run(unfinished_run, tmp_path / "run")
    set_metadata(run / CHECKPOINT, epoch=epoch)
    before = snapshot_folder(run)
    assert_one_line(cli(["train", "--resume", run, "--quiet"]), "epoch")
    assert snapshot_folder(run) == before
