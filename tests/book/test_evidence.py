"""The studies as the book shows them (unet_book.evidence): current cells only, older marked."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest

from unet_book.evidence import (
    arms_table,
    claims_table,
    comparisons_table,
    failed_note,
    live_cell_note,
    plot_curves,
    provenance_note,
    study_view,
    superseded_note,
    view_line,
)
from unet_book.studies import CLAIMS, STUDIES
from unet_train.provenance import dataset_fingerprint


def _cell(arm: str, seed: int, auc: float, fp: dict, date: str = "2026-12-02 10:00 UTC") -> dict:
    return {"arm": arm, "seed": seed, "steps": 1000, "minutes": 2.0, "normalised_minutes": 4.0,
            "fingerprint": fp, "machine": {"cpu": "test CPU", "matmul_gflops": 800.0},
            "date": date, "metrics": {"auc_roc": auc, "f1": auc - 0.15},
            "curve": [{"step": 500, "val_auc_roc": auc - 0.01}, {"step": 1000,
                                                                "val_auc_roc": auc}]}


@pytest.fixture
def results(tmp_path, monkeypatch, small_data_root):
    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    fp = dataset_fingerprint("drive")
    old = {**fp, "code": "0123456789ab"}
    cells = [_cell("paper_deformation_1img", s, 0.95 + 0.001 * s, fp) for s in range(3)]
    cells += [_cell("no_augmentation_1img", s, 0.93 + 0.002 * s, fp) for s in range(3)]
    cells += [_cell("cpu", 0, 0.99, old, date="2026-11-30 10:00 UTC")]
    (tmp_path / "drive_recipe.json").write_text(json.dumps({"cells": cells}))
    return tmp_path


def test_only_current_cells_are_shown_and_verdicts_follow_the_rule(results) -> None:
    view = study_view("drive_recipe", results)
    assert view.current and len(view.cells) == 6 and view.older == 1
    assert "6 of 30 cells" in provenance_note(view) and "Older result" not in provenance_note(
        view)
    table = comparisons_table(view, claims=("C1",))
    first = next(line for line in table.splitlines() if "1 training image" in line)
    assert "| 3 |" in first and "**supported**" in first and "+0.0190" in first
    assert "incomplete" in table  # the 18-image comparisons have no cells
    arms = arms_table(view)
    assert "0.9510 ± 0.0010" in arms and "0.9320 ± 0.0020" in arms
    row = next(line for line in arms.splitlines() if "0.9510" in line)
    assert row.endswith("| 1000 | 2.0 (4.0) | test CPU |")  # wall (normalised), machine
    assert "6 cells by the current code; 1 cells of other code" in view_line(view)
    assert "step-time ratio is not measured yet" in provenance_note(view)


def test_the_note_says_where_the_equal_time_ratio_was_measured(results) -> None:
    data = json.loads((results / "drive_recipe.json").read_text())
    data["step_times"] = {"seconds": {"cpu": 0.6, "valid_padding_equal_time": 1.35},
                          "measured": "2026-12-02 18:17 UTC", "cpu": "test CPU"}
    (results / "drive_recipe.json").write_text(json.dumps(data))
    note = provenance_note(study_view("drive_recipe", results))
    assert ("steps from the step times cpu 0.600 s, valid_padding_equal_time 1.350 s, "
            "measured on test CPU on 2026-12-02") in note
    # a study without equal-time arms says nothing of step times
    assert "step time" not in provenance_note(study_view("drive_recipe_2x", results))


def test_older_cells_are_marked_with_their_code(results, tmp_path) -> None:
    data = json.loads((results / "drive_recipe.json").read_text())
    data["cells"] = [c for c in data["cells"] if c["fingerprint"]["code"] == "0123456789ab"]
    (results / "drive_recipe.json").write_text(json.dumps(data))
    view = study_view("drive_recipe", results)
    assert not view.current and len(view.cells) == 1
    note = provenance_note(view)
    assert note.startswith("**Older result**") and "0123456789ab" in note
    assert "OLDER code" in view_line(view)


def test_an_empty_study_says_so_and_the_claims_table_lists_every_comparison(results) -> None:
    view = study_view("isbi_recipe", results)
    assert view.cells == [] and "has no cells yet" in provenance_note(view)
    views = {name: study_view(name, results) for name in STUDIES}
    rows = [line for line in claims_table(views).splitlines() if line.startswith("| C")]
    assert len(rows) == sum(1 for claim in CLAIMS.values()
                            for c in STUDIES[claim.study].comparisons if c.claim == claim.key)
    assert all(f"`{CLAIMS[row.split('|')[1].strip()].study}`" in row for row in rows)


def test_curves_are_drawn_per_arm(results) -> None:
    view = study_view("drive_recipe", results)
    fig = plot_curves(view, ["paper_deformation_1img", "no_augmentation_1img"])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and list(lines[0].get_xdata()) == [500, 1000]
    assert lines[0].get_ydata()[-1] == pytest.approx(0.951)
    plt.close(fig)


def test_the_note_names_the_machines_by_vendor_and_family(results) -> None:
    data = json.loads((results / "drive_recipe.json").read_text())
    data["cells"][0]["machine"]["cpu"] = "AMD EPYC 9454 48-Core Processor"
    data["cells"][1]["machine"]["cpu"] = "Intel(R) Xeon(R) Processor"
    (results / "drive_recipe.json").write_text(json.dumps(data))
    note = provenance_note(study_view("drive_recipe", results))
    assert "on AMD EPYC, Intel Xeon, test CPU;" in note and "9454" not in note


# -- a chapter's live run beside its study cell ------------------------------------------------
def _live(cfg, auc: float) -> SimpleNamespace:
    return SimpleNamespace(config=cfg, metrics={"test": {"pooled": {"auc_roc": auc,
                                                                     "f1": auc - 0.15}}})


@pytest.mark.parametrize("seed", [0, 2])
def test_a_live_run_of_a_study_cell_is_set_beside_its_record(results, seed) -> None:
    study = STUDIES["drive_recipe"]
    cfg = study.config("paper_deformation_1img", seed=seed)
    note = live_cell_note(_live(cfg, 0.96), "drive_recipe", "paper_deformation_1img", results)
    recorded = 0.95 + 0.001 * seed
    assert f"seed {seed}) of the study `drive_recipe`, config `{cfg.key()}`" in note
    assert "AUC-ROC **0.9600**" in note
    assert f"AUC-ROC {recorded:.4f} (this build minus the record {0.96 - recorded:+.4f})" in note
    assert "over its 3 seeds in the study: AUC-ROC 0.9510 ± 0.0010" in note


def test_a_run_that_is_not_the_cell_says_how_it_differs(results) -> None:
    cfg = STUDIES["drive_recipe"].config("paper_deformation_1img", seed=0)
    other = type(cfg).from_dict({**cfg.to_dict(), "steps": 7})
    note = live_cell_note(_live(other, 0.9), "drive_recipe", "paper_deformation_1img", results)
    assert note.startswith("This run is not the cell")
    assert "steps=7 (cell: 1000)" in note and "**" not in note.split(".")[0]
    assert "0.9510 ± 0.0010" in note  # the arm's spread is still shown


def test_an_arm_without_cells_says_so(results) -> None:
    cfg = STUDIES["drive_recipe"].config("sgd", seed=0)
    note = live_cell_note(_live(cfg, 0.9), "drive_recipe", "sgd", results)
    assert "no cells of the arm `sgd` yet" in note and "record" not in note


def test_failed_cells_are_named_and_counted_apart(results) -> None:
    path = results / "drive_recipe.json"
    data = json.loads(path.read_text())
    data["cells"][1]["failed"] = "the training loss rose: 0.918 at step 72, 1.056 at step 362"
    path.write_text(json.dumps(data))
    view = study_view("drive_recipe", results)
    note = failed_note(view)
    assert "1 failed cell(s)" in note and "`paper_deformation_1img` seed 1: the training" in note
    row = next(line for line in arms_table(view).splitlines() if "1 training image" in line
               and "elastic" in line)
    assert "| 2 (+1 failed) |" in row
    comparison = next(line for line in comparisons_table(view, claims=("C1",)).splitlines()
                      if "1 training image" in line)
    assert "| 2 |" in comparison and "incomplete" in comparison


def test_a_superseded_verdict_says_why(results) -> None:
    note = superseded_note(CLAIMS["C2"], study_view("isbi_recipe", results))
    assert note.startswith("**Superseded** (study `isbi_recipe`")
    assert "`isbi_cv`" in note and "thinning" in note


def test_cells_recorded_before_the_failure_rule_are_judged_by_it(results) -> None:
    path = results / "drive_recipe.json"
    data = json.loads(path.read_text())
    data["cells"][0]["curve"] = [{"step": 500, "loss": 0.9, "val_auc_roc": 0.5},
                                 {"step": 1000, "loss": 1.1, "val_auc_roc": 0.5}]
    path.write_text(json.dumps(data))
    view = study_view("drive_recipe", results)
    failed = [c for c in view.cells if c.get("failed")]
    assert len(failed) == 1 and "the training loss rose" in failed[0]["failed"]
    assert "1 failed cell(s)" in failed_note(view)


def _fov_cells(fp: dict, changed_auc: float, share: float) -> list[dict]:
    cells = []
    for s in range(3):
        for arm, auc, out in (("outside_background", changed_auc + 0.001 * s, share),
                              ("cpu", 0.975 + 0.001 * s, 0.11)):
            cell = _cell(arm, s, auc, fp)
            cell["metrics"]["outside_fov_positive"] = out
            cells.append(cell)
    return cells


@pytest.mark.parametrize(("changed_auc", "share", "expected"), [
    (0.975, 0.0001, "**Kept**: the AUC verdict inside the FOV is *undecided*"),
    (0.985, 0.0001, "**Kept**: the AUC verdict inside the FOV is *supported*"),
    (0.965, 0.0001, "**Not kept**: the AUC verdict inside the FOV is *contradicted*"),
    (0.975, 0.02, "**Not kept**"),
])
def test_the_fov_rule_decides_as_declared(tmp_path, monkeypatch, small_data_root, changed_auc,
                                         share, expected) -> None:
    from unet_book.evidence import fov_rule_note

    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    fp = dataset_fingerprint("drive")
    cells = _fov_cells(fp, changed_auc, share)
    (tmp_path / "drive_outside_fov.json").write_text(json.dumps({"cells": cells}))
    note = fov_rule_note(study_view("drive_outside_fov", tmp_path))
    assert note.startswith(expected), note
    assert "with the FOV ignored: 11.0 % to 11.0 %" in note
    (tmp_path / "drive_outside_fov.json").write_text(json.dumps({"cells": cells[:3]}))
    assert "has not decided yet" in fov_rule_note(study_view("drive_outside_fov", tmp_path))


def test_an_arm_beside_its_counterpart_in_another_study(results) -> None:
    from unet_book.evidence import arm_pairs_table

    table = arm_pairs_table([("drive_recipe", "paper_deformation_1img"),
                             ("drive_outside_fov_2x", "outside_background")],
                            ["auc_roc", "f1"], results)
    rows = table.splitlines()[2:]
    assert rows[0].startswith(
        "| `drive_recipe`, arm `paper_deformation_1img` | 3 | 0.9510 ± 0.0010")
    assert rows[1] == "| `drive_outside_fov_2x`, arm `outside_background` | 0 | n/a | n/a |  |"


def test_show_markdown_displays_only_the_parts_that_apply(monkeypatch) -> None:
    import unet_book.evidence as evidence

    shown = []
    monkeypatch.setattr(evidence, "display", shown.append)
    evidence.show_markdown("**a**", "", "b")
    assert [m.data for m in shown] == ["**a**", "b"]
    evidence.show_markdown("")
    assert len(shown) == 2
