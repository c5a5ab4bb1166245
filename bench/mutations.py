"""Mutation check: named sabotages of every method's key terms, each shown to make a named test fail.

A test suite that passes whatever a method computes proves nothing about the method. Each entry of
:data:`MUTATIONS` breaks one key term the way a real bug would (a sign flip, permuted targets, a
dropped term, a wrong detach), names the tests that must then fail, and says why. The check runs
the named tests once unmutated (they must pass), then once per mutation in a fresh pytest
process with the sabotage applied by monkeypatching (this module is loaded as a pytest plugin
that patches before the tests are imported). A mutation is *caught* when a named test fails.

    .venv/bin/python bench/mutations.py                     # all, writes bench/results/mutations.{md,json}
    .venv/bin/python bench/mutations.py --only spml_cooccurrence_inverted,sf_teacher_inverted
    .venv/bin/python bench/mutations.py --list

Patches replace a function object wherever a ``workbench`` module holds it (``from x import f``
copies the name), so a patched term is the one every caller uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV_KEY = "WORKBENCH_MUTATION"


@dataclass(frozen=True)
class Mutation:
    name: str
    method: str
    kind: str  # sign flip, permuted targets, dropped term, wrong detach, inverted target
    what: str
    tests: tuple[str, ...]
    patch: Callable[[], None]


# ----------------------------------------------------------------------------- patching helpers


def replace_everywhere(module, name: str, make: Callable) -> None:
    """Replace ``module.name`` by ``make(original)`` in every loaded workbench module holding it."""
    import workbench.methods  # noqa: F401  (load every method module first)

    original = getattr(module, name)
    new = make(original)
    for mod_name, mod in list(sys.modules.items()):
        if (mod_name == "workbench" or mod_name.startswith("workbench.")) and mod is not None:
            for attr, value in list(vars(mod).items()):
                if value is original:
                    setattr(mod, attr, new)


def patch_method(cls, name: str, make: Callable) -> None:
    setattr(cls, name, make(getattr(cls, name)))


def _shift_classes(label, num_classes: int, keep=None):
    """Labelled pixels (< C) moved to the next class; ``keep`` (bool) pixels left alone."""
    import torch

    shifted = torch.where(label < num_classes, (label + 1) % num_classes, label)
    return shifted if keep is None else torch.where(keep, label, shifted)


# ----------------------------------------------------------------------------- the sabotages


def _ss_pseudo_shifted():
    from workbench.methods import single_stage as m

    def make(orig):
        def pseudo_targets(embed, images, label, num_classes, *args, **kwargs):
            out, conf = orig(embed, images, label, num_classes, *args, **kwargs)
            return _shift_classes(out, num_classes, keep=label < num_classes), conf

        return pseudo_targets

    replace_everywhere(m, "pseudo_targets", make)


def _ss_margin_dropped():
    from workbench.methods import single_stage as m

    def make(orig):
        def pseudo_targets(embed, images, label, num_classes, config=m.Config(), *args, **kwargs):
            return orig(embed, images, label, num_classes, dataclasses.replace(config, margin=0.0), *args, **kwargs)

        return pseudo_targets

    replace_everywhere(m, "pseudo_targets", make)


def _ss_confidence_ignored():
    import torch

    from workbench.methods import single_stage as m

    replace_everywhere(
        m, "weighted_pseudo_ce", lambda orig: lambda logits, pseudo, conf, label: orig(
            logits, pseudo, torch.ones_like(conf), label)
    )  # fmt: skip


def _ss_teacher_is_student():
    from workbench.methods import single_stage as m

    patch_method(m.SingleStageNet, "update_teacher", lambda orig: lambda self, decay: orig(self, 0.0))


def _ss_contrast_sign():
    from workbench.methods import single_stage as m

    replace_everywhere(m, "prototype_contrast", lambda orig: lambda *a, **k: -orig(*a, **k))


def _spml_cooccurrence_inverted():
    from workbench.methods import spml as m

    replace_everywhere(m, "cooccurrence_positives", lambda orig: lambda *a, **k: ~orig(*a, **k))


def _spml_common_kept():
    import torch

    from workbench.methods import spml as m

    replace_everywhere(
        m, "common_classes", lambda orig: lambda counts, *a, **k: torch.zeros_like(counts, dtype=torch.bool)
    )


def _spml_semantic_subsampled():
    from workbench.methods import spml as m

    replace_everywhere(m, "sample_pixels", lambda orig: lambda valid, per_image, always=None: orig(valid, per_image))


def _spml_segsort_sign():
    from workbench.methods import spml as m

    replace_everywhere(m, "segsort_loss", lambda orig: lambda *a, **k: -orig(*a, **k))


def _spml_classifier_detached():
    from workbench.methods import spml as m

    def make(orig):
        def __init__(self, *a, **k):
            orig(self, *a, **k)
            self.detach_classifier = True

        return __init__

    patch_method(m.SpmlNet, "__init__", make)


def _spml_walk_affinity_inverted():
    from workbench.methods import spml as m

    replace_everywhere(m, "random_walk", lambda orig: lambda embed, *a, **k: orig(-embed.roll(1, -1), *a, **k))


def _sf_teacher_inverted():
    from workbench.methods import simformer as m

    replace_everywhere(m, "distill_term", lambda orig: lambda student, teacher, mode: orig(student, 1 - teacher, mode))


def _sf_truth_teacher_mirrored():
    from workbench.methods import simformer as m

    def make(orig):
        def distillation_loss(*a, truth=None, **k):
            if truth is not None:  # every second image's map mirrored: its teacher no longer lines up
                truth = truth.clone()
                truth[1::2] = truth[1::2].flip(-1)
            return orig(*a, truth=truth, **k)

        return distillation_loss

    replace_everywhere(m, "distillation_loss", make)


def _sf_class_targets_permuted():
    from workbench.methods import simformer as m

    def make(orig):
        def image_targets(*a, **k):
            t = orig(*a, **k)
            return dataclasses.replace(t, classes=t.classes.roll(1))

        return image_targets

    replace_everywhere(m, "image_targets", make)


def _sf_complementary_inverted():
    from workbench.methods import simformer as m

    replace_everywhere(m, "not_base_region", lambda orig: lambda *a, **k: 1.0 - orig(*a, **k))


def _sf_absent_tags_inverted():
    from workbench.methods import simformer as m

    replace_everywhere(m, "absent_class_loss", lambda orig: lambda logits, tags, novel: orig(logits, 1 - tags, novel))


def _tr_disc_labels_swapped():
    from workbench.methods import transfer as m

    def make(orig):
        def forward(self, images, part="pnet", label_map=None):
            out = orig(self, images, part, label_map)
            return -out if part == "disc" else out  # BCE(-x, 1) = BCE(x, 0): real and fake labels swapped

        return forward

    patch_method(m.TransferNet, "forward", make)


def _cam_pseudo_wrong_class():
    from workbench.methods import cam as m

    def make(orig):
        def cam_pseudo_mask(cams, *a, **k):
            return _shift_classes(orig(cams, *a, **k), cams.shape[1])

        return cam_pseudo_mask

    replace_everywhere(m, "cam_pseudo_mask", make)


def _cam_tags_ignored():
    from workbench.methods import cam as m

    replace_everywhere(m, "normalize_cams", lambda orig: lambda cams, tags=None: orig(cams, None))


def _ramp_inverted():
    from workbench.modeling import losses as m

    replace_everywhere(m, "ramp", lambda orig: lambda progress, start, end: 1.0 - orig(progress, start, end))


def _pce_targets_permuted():
    from workbench.modeling import losses as m

    def make(orig):
        def sparse_cross_entropy(logits, label, *a, **k):
            return orig(logits, _shift_classes(label, logits.shape[1]), *a, **k)

        return sparse_cross_entropy

    replace_everywhere(m, "sparse_cross_entropy", make)


def _crf_sign():
    from workbench.modeling import losses as m

    replace_everywhere(m, "crf_loss", lambda orig: lambda *a, **k: -orig(*a, **k))


SS = "tests/methods/test_single_stage.py::"
SP = "tests/methods/test_spml.py::"
WS = "tests/methods/test_weak_shot_key_terms.py::"
CAM = "tests/methods/test_cam.py::"
CRF = "tests/modeling/test_losses_crf.py::"

MUTATIONS: list[Mutation] = [
    Mutation("ss_pseudo_shifted", "single_stage", "permuted targets",
             "pseudo-labels (not the clicks) shifted to the next class",
             (SS + "test_pseudo_mask_spreads_each_point_over_its_own_region",
              SS + "test_teacher_class_head_must_agree_and_sets_the_confidence"), _ss_pseudo_shifted),
    Mutation("ss_margin_dropped", "single_stage", "dropped term", "top-1 vs top-2 margin filter off",
             (SS + "test_margin_drops_pixels_two_classes_claim_alike",), _ss_margin_dropped),
    Mutation("ss_confidence_ignored", "single_stage", "dropped term", "pseudo CE no longer weighted by confidence",
             (SS + "test_weighted_pseudo_ce_scales_with_confidence_and_skips_annotated_pixels",),
             _ss_confidence_ignored),
    Mutation("ss_teacher_is_student", "single_stage", "wrong detach", "EMA teacher replaced by the student's weights",
             (SS + "test_teacher_follows_the_student_by_ema_and_gets_no_gradient",), _ss_teacher_is_student),
    Mutation("ss_contrast_sign", "single_stage", "sign flip", "pixel-to-prototype contrastive loss negated",
             (SS + "test_prototype_contrast_prefers_separated_embeddings",), _ss_contrast_sign),
    Mutation("spml_cooccurrence_inverted", "spml", "inverted target", "co-occurrence positives inverted",
             (SP + "test_cooccurrence_leaves_out_classes_in_nearly_every_image",
              SP + "test_cooccurrence_term_is_live_on_camvid_like_tags_and_prefers_shared_tags"),
             _spml_cooccurrence_inverted),
    Mutation("spml_common_kept", "spml", "dropped term",
             "near-universal classes kept in the co-occurrence tag sets (term identically 0 on CamVid)",
             (SP + "test_cooccurrence_leaves_out_classes_in_nearly_every_image",), _spml_common_kept),
    Mutation("spml_semantic_subsampled", "spml", "dropped term",
             "semantic term sees a random sample of the labelled pixels, not all",
             (SP + "test_every_labelled_pixel_joins_the_semantic_term",), _spml_semantic_subsampled),
    Mutation("spml_segsort_sign", "spml", "sign flip", "pixel-to-segment contrastive loss negated",
             (SP + "test_segsort_loss_matches_the_hand_formula",
              SP + "test_contrastive_loss_is_lower_for_aligned_than_for_shuffled_embeddings"), _spml_segsort_sign),
    Mutation("spml_classifier_detached", "spml", "wrong detach",
             "classifier on detached embeddings although detach_classifier=False",
             (SP + "test_training_counts_tags_and_the_classifier_trains_the_backbone_unless_detached",),
             _spml_classifier_detached),
    Mutation("spml_walk_affinity_inverted", "spml", "sign flip", "random-walk affinity on negated embeddings",
             (SP + "test_random_walk_spreads_seeds_inside_an_embedding_region_only",), _spml_walk_affinity_inverted),
    Mutation("sf_teacher_inverted", "simformer", "inverted target", "distillation teacher -> 1 - teacher",
             (WS + "test_simformer_distillation_pulls_the_student_towards_the_teacher",), _sf_teacher_inverted),
    Mutation("sf_truth_teacher_mirrored", "simformer", "permuted targets",
             "ground-truth teacher (bench ceiling) read from every second image's mirrored label map",
             ("tests/methods/test_simformer.py::test_ground_truth_teacher_rewards_novel_scores_that_follow_the_true_classes",),
             _sf_truth_teacher_mirrored),
    Mutation("sf_class_targets_permuted", "simformer", "permuted targets",
             "matched class targets permuted (a target's class no longer goes with its mask)",
             (WS + "test_simformer_matched_queries_learn_the_class_of_their_matched_mask",), _sf_class_targets_permuted),
    Mutation("sf_complementary_inverted", "simformer", "inverted target",
             "complementary target inverted (base region instead of not-base)",
             (WS + "test_simformer_complementary_loss_rewards_novel_masks_on_the_not_base_region",),
             _sf_complementary_inverted),
    Mutation("sf_absent_tags_inverted", "simformer", "inverted target",
             "absent-tag term on the tagged novel classes instead of the absent ones",
             ("tests/methods/test_simformer.py::test_absent_class_loss_punishes_only_novel_classes_the_tags_rule_out",),
             _sf_absent_tags_inverted),
    Mutation("tr_disc_labels_swapped", "transfer", "permuted targets", "discriminator real/fake labels swapped",
             (WS + "test_transfer_discriminator_learns_to_tell_real_label_maps_from_predictions",),
             _tr_disc_labels_swapped),
    Mutation("cam_pseudo_wrong_class", "cam", "permuted targets", "CAM pseudo-mask classes shifted by one",
             (CAM + "test_cam_pseudo_mask_thresholds_into_unlabelled_and_keeps_void",
              CAM + "test_train_diagnostics_score_cam_pseudo_masks_against_ground_truth"), _cam_pseudo_wrong_class),
    Mutation("cam_tags_ignored", "cam", "dropped term", "CAMs of classes absent from the tags kept",
             (CAM + "test_fast_cam_matches_an_explicit_computation_and_normalised_gradcam",), _cam_tags_ignored),
    Mutation("pce_targets_permuted", "partial_ce (shared)", "permuted targets",
             "sparse cross-entropy targets shifted to the next class",
             ("tests/methods/test_contract.py::test_partial_ce_is_the_mean_over_labelled_pixels",),
             _pce_targets_permuted),
    Mutation("ramp_inverted", "ramp (shared: cam, single_stage)", "inverted target",
             "loss-weight ramp runs 1 -> 0 instead of 0 -> 1",
             ("tests/modeling/test_losses.py::test_ramp_is_zero_before_start_linear_to_end_and_a_step_when_they_meet",
              CAM + "test_segmenter_waits_for_the_ramp", SS + "test_ramp_starts_at_zero"), _ramp_inverted),
    Mutation("crf_sign", "CRF loss (shared)", "sign flip", "dense CRF loss negated",
             (CRF + "test_edge_aligned_prediction_costs_less_than_edge_crossing",
              CRF + "test_gradient_descent_on_logits_lowers_it_and_gated_pixels_get_no_gradient"), _crf_sign),
]  # fmt: skip
BY_NAME = {m.name: m for m in MUTATIONS}


# ----------------------------------------------------------------------------- pytest plugin side


def pytest_configure(config) -> None:
    """Loaded with ``-p mutations``: apply the sabotage named in ``$WORKBENCH_MUTATION`` before tests import."""
    name = os.environ.get(ENV_KEY)
    if name:
        BY_NAME[name].patch()


# ----------------------------------------------------------------------------- driver


def run_tests(tests: tuple[str, ...], mutation: str | None) -> tuple[int, float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
    env.pop(ENV_KEY, None)
    if mutation:
        env[ENV_KEY] = mutation
    cmd = [sys.executable, "-m", "pytest", "-q", "--tb=line", "-p", "mutations", "-p", "no:cacheprovider",
           "-o", "addopts=", "-m", "", *tests]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    failed = [ln.split(": ", 1)[-1][:160] for ln in lines if re.match(r"^\S+\.py:\d+: ", ln)]  # --tb=line
    summary = lines[-1] if lines else proc.stderr[-300:]
    return proc.returncode, time.perf_counter() - t0, summary + ("; " + " | ".join(failed) if failed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated mutation names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "mutations"), help="results path stem")
    args = parser.parse_args(argv)
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:30} {m.method:20} {m.kind:18} {m.what}")
        return 0
    chosen = [BY_NAME[n] for n in args.only.split(",") if n] if args.only else MUTATIONS
    unknown = [n for n in args.only.split(",") if n and n not in BY_NAME]
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}; see --list")
    all_tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    rc, seconds, tail = run_tests(all_tests, None)
    print(f"baseline (no mutation): {'pass' if rc == 0 else 'FAIL'} in {seconds:.0f}s: {tail}", flush=True)
    if rc != 0:
        print("the named tests must pass before mutating; fix them first", file=sys.stderr)
        return 2
    rows = []
    for m in chosen:
        rc, seconds, tail = run_tests(m.tests, m.name)
        result = "caught" if rc == 1 else ("SURVIVED" if rc == 0 else f"error (pytest exit {rc})")
        rows.append({**{k: v for k, v in dataclasses.asdict(m).items() if k != "patch"}, "result": result,
                     "seconds": round(seconds, 1), "pytest": tail})  # fmt: skip
        print(f"{m.name:30} {result:10} {seconds:5.0f}s  {tail}", flush=True)
    caught = sum(r["result"] == "caught" for r in rows)
    out = Path(args.out)
    if not args.only:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({"caught": caught, "total": len(rows), "rows": rows}, indent=1))
        table = "\n".join(
            f"| `{r['name']}` | {r['method']} | {r['kind']} | {r['what']} | "
            + "<br>".join(f"`{t.split('::')[-1]}`" for t in r["tests"])
            + f" | {r['result']} | {r['pytest'].split('; ', 1)[-1].replace('|', '/')} |"
            for r in rows
        )
        out.with_suffix(".md").write_text(
            "# Mutation check\n\n"
            "Each row sabotages one key term (monkeypatched in a fresh pytest process) and runs the named\n"
            "tests, which pass unmutated. Command: `.venv/bin/python bench/mutations.py`. The last column\n"
            "is pytest's failure reason: an assertion about the term, not a crash of the sabotage itself.\n\n"
            f"**{caught} of {len(rows)} caught.**\n\n"
            "| mutation | method | kind | sabotage | tests that must fail | result | why |\n|---|---|---|---|---|---|---|\n"
            f"{table}\n"
        )
        print(f"wrote {out.with_suffix('.md')} and .json")
    print(f"{caught} of {len(rows)} caught")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
