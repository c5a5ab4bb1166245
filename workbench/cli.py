"""Command line: ``python -m workbench {demo,train,eval,predict,simulate,data,annotations} --help``.

Any field of :class:`workbench.train.config.TrainConfig` or of the method's ``Config`` can be set
on ``train`` as ``--key=value`` (e.g. ``--epochs=40 --image_size=120,160 --label_smoothing=0.1``).

The workbench's own errors (bad data, settings, checkpoints) print one line and exit 2 (a
training that cannot go on: 1); ``--debug`` anywhere on the line, or ``WORKBENCH_DEBUG=1``,
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import sys
from pathlib import Path

from workbench.configs import field_type
from workbench.methods import METHODS
from workbench.ownership import OwnershipError, check_output

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
MAX_SYNTHETIC_SIDE = 4096
MAX_SYNTHETIC_IMAGES = 100_000


class UsageError(ValueError):
    """A command-line value that cannot be used (printed without a traceback)."""


# ----------------------------------------------------------------------------- overrides


def coerce(value: str, type_name: str, key: str):
    """Turn a command-line string into the type a dataclass field declares (as a string annotation)."""
    base, optional = field_type(type_name)
    if optional and value.lower() in ("none", "null", ""):
        return None
    try:
        if base == "bool":
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base == "int":
            return int(value)
        if base == "float":
            number = float(value)
            if not math.isfinite(number):  # every range check lets NaN through
                raise ValueError(value)
            return number
        if base.startswith("tuple[int"):
            return tuple(int(v) for v in value.replace("x", ",").split(","))
        if base.startswith("tuple[float"):
            return tuple(float(v) for v in value.split(","))
        return value
    except ValueError:
        raise UsageError(f"--{key}={value!r}: expected {'a finite float' if base == 'float' else base}") from None


def split_overrides(args: list[str]) -> dict[str, str]:
    """``["--a=1", "--b", "2"]`` -> ``{"a": "1", "b": "2"}``; anything else is a usage error."""
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument {arg!r}; settings are written --key=value")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, value = arg[2:], args[i + 1]
            i += 1
        else:
            key, value = arg[2:], "true"
        out[key.replace("-", "_")] = value
        i += 1
    return out


def apply_overrides(instances: list, overrides: dict[str, str]) -> list:
    """Replace fields of the given frozen dataclasses; unknown keys are an error listing the valid ones."""
    fields = [{f.name: f for f in dataclasses.fields(obj)} for obj in instances]
    unknown = [k for k in overrides if not any(k in f for f in fields)]
    if unknown:
        valid = sorted(set().union(*[f.keys() for f in fields]))
        raise UsageError(f"unknown setting(s) {unknown}; valid settings: {', '.join(valid)}")
    out = []
    for obj, f in zip(instances, fields):
        changes = {k: coerce(v, str(f[k].type), k) for k, v in overrides.items() if k in f}
        try:
            out.append(dataclasses.replace(obj, **changes))
        except ValueError as err:
            raise UsageError(str(err)) from None
    return out


def describe_config(obj) -> str:
    return "\n".join(f"    --{f.name}={getattr(obj, f.name)!r}  ({f.type})" for f in dataclasses.fields(obj))


# ----------------------------------------------------------------------------- commands


def cmd_train(args, extra: list[str]) -> int:
    from workbench.metrics import format_summary
    from workbench.train import dist
    from workbench.train.config import TrainConfig
    from workbench.train.loop import train

    method = METHODS[args.method]
    overrides = split_overrides(extra)
    for key in ("data", "out", "epochs"):
        if getattr(args, key) is not None:
            overrides[key] = str(getattr(args, key))
    if args.resume:
        overrides["resume"] = "true"
    if args.overwrite:
        overrides["overwrite"] = "true"
    novel = overrides.pop("novel", None)  # the run's class split (names or indices); the engine gives the
    balance = overrides.get("class_weights") == MEDIAN_FREQUENCY and overrides.pop("class_weights")
    config, method_config = apply_overrides([TrainConfig(out=f"runs/{args.method}"), method.Config()], overrides)
    if novel is not None:  # method its novel class indices, so --novel never reaches the method's Config
        config = dataclasses.replace(config, novel=novel)
    if balance:
        method_config = with_median_frequency_weights(method, method_config, config)
    print(f"training {args.method} on {config.data or 'the synthetic default'} -> {config.out}", file=sys.stderr)
    summary = train(method, method_config, config)
    if dist.is_main():
        print(format_summary(summary))
        print(f"run directory: {config.out}")
    dist.shutdown()
    return 0


MEDIAN_FREQUENCY = "median_frequency"  # --class_weights=median_frequency: computed from the training labels


def with_median_frequency_weights(method, method_config, config):
    """``method_config`` with median-frequency class weights of the run's training labels (written to config.json)."""
    from workbench.data.dataset import median_frequency_weights
    from workbench.train.data import make_datasets

    if "class_weights" not in {f.name for f in dataclasses.fields(method_config)}:
        raise UsageError(
            f"--class_weights: method {method.__name__.rsplit('.', 1)[-1]} has no class weights; "
            "supervised and partial_ce do"
        )
    weights = median_frequency_weights(make_datasets(method, config)[0])
    print(f"class weights (median frequency of the training labels): {', '.join(f'{w:g}' for w in weights)}",
          file=sys.stderr)  # fmt: skip
    return dataclasses.replace(method_config, class_weights=weights)


def cmd_demo(args, extra: list[str]) -> int:
    from workbench.demo import demo_runs, run_demo

    methods = tuple(m.strip() for m in args.point_methods.split(",") if m.strip())
    check_output(args.out, "--out", folder=True)
    try:
        demo_runs(methods)
    except ValueError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 2
    return run_demo(Path(args.out), epochs=args.epochs, point_methods=methods)


def cmd_eval(args, extra: list[str]) -> int:
    from workbench.data.folder import load_dataset_info
    from workbench.metrics import format_summary
    from workbench.train.evaluation import evaluate_run
    from workbench.train.runs import write_report

    if args.out is not None:
        _writable_folder(args.out, "--out")
        check_output(args.out, "--out", dataset=load_dataset_info(args.data), folder=True)
    summary = evaluate_run(args.checkpoint, args.data, args.split, args.device, args.protocol)
    print(format_summary(summary))
    if args.out is not None:
        write_report(Path(args.out), summary, f"{args.data} / {args.split}")
        print(f"report written to {args.out}/report.json")
    return 0


def cmd_predict(args, extra: list[str]) -> int:
    from workbench.data.folder import load_dataset_info
    from workbench.train.evaluation import predict_files, predict_split

    _writable_folder(args.out, "--out")
    check_output(args.out, "--out", dataset=load_dataset_info(args.data) if args.data else None, folder=True)
    if args.images:
        for image in args.images:  # NAME.png is written for each image: never over an image given
            check_output(Path(args.out) / f"{Path(image).stem}.png", "--out", inputs=[image])
        written = predict_files(args.checkpoint, [Path(p) for p in args.images], Path(args.out), args.device)
    elif args.data:
        written = predict_split(args.checkpoint, args.data, args.split, Path(args.out), args.device)
    else:
        raise UsageError("give --images FILE... or --data DIR [--split NAME]")
    print(f"wrote {len(written)} palette PNG masks to {args.out}")
    return 0


def parse_image_size(text: str) -> tuple[int, int]:
    """``"120,160"`` (or ``120x160``) -> ``(120, 160)``."""
    try:
        h, w = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"--image_size must be HEIGHT,WIDTH, e.g. 120,160; got {text!r}") from None
    if min(h, w) < 8:
        raise UsageError(f"--image_size must be at least 8 pixels each way, got {text!r}")
    return h, w


def cmd_simulate(args, extra: list[str]) -> int:
    from workbench.data.dataset import parse_supervision, simulate_at_size
    from workbench.data.folder import list_split, load_dataset_info, read_mask
    from workbench.labels.weak_labels import SimulationConfig, WeakLabelSet, save_weak_labels, simulate

    _writable_file(args.out, "--out", "weak-label JSON file")
    info = load_dataset_info(args.data)
    check_output(args.out, "--out", dataset=info)
    kinds = [k for k in parse_supervision(args.kind) if k != "dense"]
    if not kinds:
        raise UsageError("--kind must name weak labels (tags, points, scribbles, boxes), not dense")
    (sim,) = apply_overrides([SimulationConfig()], split_overrides(extra))
    size = parse_image_size(args.image_size) if args.image_size else None
    labels = {}
    for name in list_split(info, args.split):
        mask = read_mask(info.mask_path(args.split, name), info)
        if size is None:
            labels[name] = simulate(mask, kinds, sim, key=name, num_classes=info.num_classes)
        else:  # made where they are right at the training size, stored in the image's coordinates
            labels[name] = simulate_at_size(mask, size, kinds, sim, name, info.num_classes).resized(*mask.shape)
    save_weak_labels(args.out, WeakLabelSet(info.classes, labels))
    n_points = sum(len(w.points) for w in labels.values())
    n_scribbles = sum(len(w.scribbles) for w in labels.values())
    n_boxes = sum(len(w.boxes) for w in labels.values())
    print(f"{len(labels)} images: {n_points} points, {n_scribbles} scribbles, {n_boxes} boxes -> {args.out}")
    return 0


def cmd_data(args, extra: list[str]) -> int:
    from workbench.data import convert
    from workbench.data.folder import validate_dataset
    from workbench.data.synthetic import SyntheticConfig, generate

    if args.action == "generate":
        h, w = parse_size(args.size)
        for key in ("train", "val"):
            if not 1 <= getattr(args, key) <= MAX_SYNTHETIC_IMAGES:
                raise UsageError(f"--{key}={getattr(args, key)}: give 1..{MAX_SYNTHETIC_IMAGES} images")
        _writable_folder(args.out, "--out")
        check_output(args.out, "--out", folder=True)
        config = SyntheticConfig(
            height=h, width=w, train=args.train, val=args.val, seed=args.seed, weak_shot=args.weak_shot
        )
        root = generate(args.out, config)
        print(f"synthetic dataset written to {root}")
        return 0
    if args.action == "protocols":
        return cmd_protocols(args)
    if args.action == "validate":
        problems = validate_dataset(args.path)
        for p in problems:
            print(p)
        print(f"{args.path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 0 if not problems else 1
    if args.action == "convert":
        check_output(args.out, "--out", inputs=[args.path], folder=True)
        if args.layout == "voc":
            root = convert.convert_voc(args.path, args.out)
        else:
            root = convert.convert_index_masks(args.path, args.out, layout=args.layout, classes_file=args.classes)
        print(f"converted {args.path} ({args.layout}) -> {root}")
        return 0
    raise UsageError(f"unknown data action {args.action!r}")


def cmd_protocols(args) -> int:
    """Weak-shot protocols of a dataset folder, each with its identifiability report."""
    import json

    from workbench.data.folder import list_split, load_dataset_info, read_mask
    from workbench.labels.splits import ClassSplit, all_protocols, identifiability

    info = load_dataset_info(args.path)
    names = [args.protocol] if args.protocol else all_protocols(info.protocols)
    splits = [ClassSplit.from_protocol(info.classes, info.protocols, n) for n in names]
    masks = [read_mask(info.mask_path(args.split, n), info) for n in list_split(info, args.split)]
    reports = [identifiability(masks, split) for split in splits]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1))
    else:
        print(f"{info.root} ({args.split}, {len(masks)} images): {len(reports)} protocol(s)")
        for report in reports:
            print(report.format())
    return 0


def cmd_annotations(args, extra: list[str]) -> int:
    from workbench.annotations import interchange
    from workbench.annotations.store import AnnotationStore, export_png
    from workbench.data.folder import list_split, load_dataset_info
    from workbench.labels.weak_labels import WeakLabelSet, save_weak_labels

    if args.action == "import":
        return import_annotations(args)
    if args.format == "png":
        _writable_folder(args.out, "--out")
    else:
        _writable_file(args.out, "--out", f"{args.format} file")
    if args.json:
        _writable_file(args.json, "--json", "weak-label JSON file")
    if not Path(args.store).is_file():
        raise UsageError(f"{args.store}: no annotation store there; annotate in the dashboard or `annotations import`")
    info = load_dataset_info(args.data)
    check_output(args.out, "--out", inputs=[args.store], dataset=info, folder=args.format == "png")
    if args.json is not None:
        check_output(args.json, "--json", inputs=[args.store], dataset=info)
    if args.format != "png":
        if args.json:
            raise UsageError("--json goes with the PNG export; --format writes one file, --out")
        with AnnotationStore(args.store, info.classes) as store:
            n = interchange.export_store(store, info, args.split, args.out, args.format)
        print(f"wrote the labels of {n} images of split {args.split!r} to {args.out} ({args.format})")
        if args.format == "labelstudio":  # the labelling interface whose control names the file uses
            config = Path(args.out).with_suffix(".labelconfig.xml")
            config.write_text(interchange.labelstudio_config(info.classes))
            print(f"Label Studio labelling interface (Settings > Labeling Interface > Code): {config}")
        return 0
    with AnnotationStore(args.store, info.classes) as store:
        written = export_png(store, info, args.split, args.out)
        if args.json:
            names = set(list_split(info, args.split))
            labels = {n: w for n, w in store.to_weak_label_set().labels.items() if n in names}
            save_weak_labels(args.json, WeakLabelSet(info.classes, labels))
        skipped = len(store.images()) - len(written)
    print(f"wrote {len(written)} masks to {args.out}" + (f" and {args.json}" if args.json else ""))
    if skipped:
        print(f"skipped {skipped} annotated images that are not in split {args.split!r}")
    return 0


def import_annotations(args) -> int:
    """Labels of a weak-label JSON file or a tool's export into a store, checked against ``--data`` as the
    dashboard checks an upload (:func:`~workbench.annotations.store.fit_to_split`): images that do not fit
    are skipped and reported, labels the store already holds are not added again."""
    from workbench.annotations import interchange
    from workbench.annotations.store import AnnotationError, AnnotationStore, fit_to_split, import_new
    from workbench.data.folder import load_dataset_info
    from workbench.io import save_index_png
    from workbench.labels.weak_labels import load_weak_labels

    source = args.json if args.format == "weakseg" else args.file
    if not source:
        raise UsageError("give --json FILE (weak-label JSON) or --format labelstudio|cvat|coco --file FILE")
    if args.format == "weakseg" and args.file:
        raise UsageError("--file goes with --format labelstudio|cvat|coco; a weak-label JSON file is --json FILE")
    _writable_file(args.store, "--store", "annotation store (.sqlite)")
    info = load_dataset_info(args.data)
    check_output(args.store, "--store", inputs=[source], dataset=info)
    if args.masks is not None:  # checked before the store takes the labels
        _writable_folder(args.masks, "--masks")
        check_output(args.masks, "--masks", dataset=info, folder=True)
    masks: dict = {}  # name -> (H, W) index mask, from the formats that carry masks
    if args.format == "weakseg":
        weak_set = load_weak_labels(source)
        if tuple(weak_set.classes) != tuple(info.classes):
            raise AnnotationError(
                f"{source}: labels for classes {list(weak_set.classes)}, the dataset {info.root} has "
                f"{list(info.classes)}; import labels made for this dataset"
            )
    else:
        weak_set, masks = interchange.import_labels(source, args.format, info.classes)
    fits, skipped = fit_to_split(dict(weak_set.labels), info, args.split)
    for _name, why in sorted(skipped.items())[:MAX_REPORTED]:
        print(f"skipped: {why}", file=sys.stderr)
    if len(skipped) > MAX_REPORTED:
        print(f"skipped: ... and {len(skipped) - MAX_REPORTED} more images", file=sys.stderr)
    if skipped and not fits:
        raise AnnotationError(
            f"{source}: none of its {len(skipped)} labelled images fits split {args.split!r} of {info.root} "
            f"(e.g. {next(iter(skipped.values()))}); import labels made for this dataset and split"
        )
    with AnnotationStore(args.store, info.classes) as store:
        n = import_new(store, fits)
    print(f"imported new labels of {n} of {len(fits)} images from {source} into {args.store}", end="")
    print(f"; {len(skipped)} images skipped (see above)" if skipped else "")
    masks = {name: mask for name, mask in masks.items() if name in fits}
    if masks and args.masks:
        for name, mask in sorted(masks.items()):
            save_index_png(Path(args.masks) / f"{name}.png", mask, info.colors)
        print(f"wrote {len(masks)} masks to {args.masks}")
    elif masks:
        print(f"{len(masks)} images carry masks; pass --masks DIR to save them as PNG index masks")
    return 0


MAX_REPORTED = 10  # skipped images listed one per line; the rest are counted


def parse_size(text: str) -> tuple[int, int]:
    """``"64x48"`` -> ``(64, 48)``: HEIGHTxWIDTH, each side 8..MAX_SYNTHETIC_SIDE pixels."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError(text)
        h, w = int(parts[0]), int(parts[1])
    except ValueError:
        raise UsageError(f"--size={text!r}: expected HEIGHTxWIDTH in pixels, e.g. 64x64") from None
    if not (8 <= h <= MAX_SYNTHETIC_SIDE and 8 <= w <= MAX_SYNTHETIC_SIDE):
        raise UsageError(f"--size={text!r}: each side must be 8..{MAX_SYNTHETIC_SIDE} pixels (the limit)")
    return h, w


def _writable_folder(path: str, option: str) -> None:
    """An output folder may exist or not, but neither it nor a parent may be a file."""
    for p in (Path(path), *Path(path).parents):
        if p.exists() and not p.is_dir():
            raise UsageError(f"{option} {path}: {p} is a file, not a folder; pass a folder")


def _writable_file(path: str, option: str, what: str) -> None:
    """An output file may exist or not, but must not be a folder (nor sit under a file)."""
    if Path(path).is_dir():
        raise UsageError(f"{option} {path}: is a folder; pass the path of a {what}")
    _writable_folder(str(Path(path).parent), option)


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: ``--epoch=3`` must not silently mean ``--epochs=3``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="workbench", description="weakseg workbench: weakly supervised segmentation")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (also WORKBENCH_DEBUG=1); any position"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job: synthetic data -> train -> per-class IoU report")
    demo.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--epochs", type=int, default=10, help="epochs of each run (default 10)")
    demo.add_argument(
        "--point-methods",
        default="single_stage",
        help="comma-separated point methods trained beside partial CE on the same points (default single_stage; "
        "e.g. single_stage,spml)",
    )
    demo.set_defaults(func=cmd_demo)

    from workbench.train.config import TrainConfig

    methods_help = "\n".join(
        f"  {name:<12} supervision {m.SUPERVISION}; settings:\n{describe_config(m.Config())}"
        for name, m in METHODS.items()
    )
    train = sub.add_parser(
        "train",
        help="train a method",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a method. Extra settings are --key=value.",
        epilog=f"methods:\n{methods_help}\n\nrun settings (TrainConfig):\n{describe_config(TrainConfig())}",
    )
    train.add_argument("--method", required=True, choices=sorted(METHODS))
    train.add_argument("--data", help="dataset folder (default: the synthetic dataset, generated on first use)")
    train.add_argument("--out", help="run directory (default runs/METHOD)")
    train.add_argument("--epochs", type=int)
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint (same settings, data)"
    )
    train.add_argument("--overwrite", action="store_true", help="replace the run that --out holds (else refused)")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a trained run on a dataset split")
    ev.add_argument("--checkpoint", required=True, help="run directory or its checkpoint/model.safetensors")
    ev.add_argument("--data", required=True, help="dataset folder with the same classes")
    ev.add_argument("--split", default="val")
    ev.add_argument("--protocol", help="weak-shot protocol for base/novel/harmonic mIoU (default: the run's)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--out", help="also write report.json / report.md here")
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="write predictions as palette PNG index masks")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--images", nargs="+", help="image files")
    pr.add_argument("--data", help="or a dataset folder ...")
    pr.add_argument("--split", default="val", help="... and its split")
    pr.add_argument("--out", required=True)
    pr.add_argument("--device", default="auto")
    pr.set_defaults(func=cmd_predict)

    sim = sub.add_parser(
        "simulate",
        help="simulate weak labels from a dataset's masks into a JSON file",
        description="Extra settings (--points_per_region=2, --scribble_width=5, --seed=1, ...) are SimulationConfig fields.",
    )
    sim.add_argument("--data", required=True)
    sim.add_argument("--split", default="train")
    sim.add_argument("--kind", required=True, help="tags, points, scribbles, boxes or a '+' combination")
    sim.add_argument("--out", required=True, help="JSON file to write")
    sim.add_argument(
        "--image_size", help="HEIGHT,WIDTH you will train at: simulate where labels are right at that size "
        "(as training does; default: the masks' own size)",
    )  # fmt: skip
    sim.set_defaults(func=cmd_simulate)

    data = sub.add_parser("data", help="generate synthetic data, validate or convert a dataset folder")
    dsub = data.add_subparsers(dest="action", required=True)
    gen = dsub.add_parser("generate", help="write the synthetic dataset")
    gen.add_argument("--out", default="data/synthetic")
    gen.add_argument("--size", default="64x64", help="HEIGHTxWIDTH")
    gen.add_argument("--train", type=int, default=256)
    gen.add_argument("--val", type=int, default=64)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--weak-shot",
        action="store_true",
        help="weak-shot mode: most images hold >= 2 of the novel classes of protocol 'weakshot' (disc, triangle, cross)",
    )
    prot = dsub.add_parser(
        "protocols",
        help="weak-shot protocols (dataset.json's and random25:1..4) with identifiability reports",
        description="For each protocol: training images by number of novel classes present, the share of "
        "novel pixels in images with >= 2 novel classes, and warnings when tags alone identify the novel "
        "classes (trivial) or a novel class is in > 90%% of images (degenerate). randomP:k works on any "
        "dataset: round(P%% of the classes) from the k-th permutation of one fixed seed.",
    )
    prot.add_argument("path", help="dataset folder")
    prot.add_argument("--protocol", help="one protocol (a dataset.json name or randomP:k) instead of all")
    prot.add_argument("--split", default="train")
    prot.add_argument("--json", action="store_true", help="print the reports as JSON")
    val = dsub.add_parser("validate", help="check every file of a dataset folder")
    val.add_argument("path")
    conv = dsub.add_parser("convert", help="convert PASCAL VOC or ADE20K / COCO-Stuff index-mask layouts")
    conv.add_argument("path", help="source folder (VOCdevkit/VOC2012, ADEChallengeData2016, or a COCO-Stuff root)")
    conv.add_argument("--layout", required=True, choices=["voc", "ade20k", "cocostuff"])
    conv.add_argument("--out", required=True)
    conv.add_argument("--classes", help="text file with one class name per line (ade20k/cocostuff)")
    data.set_defaults(func=cmd_data)

    ann = sub.add_parser("annotations", help="import into or export from a SQLite annotation store")
    asub = ann.add_subparsers(dest="action", required=True)
    exp = asub.add_parser("export", help="PNG index masks (254 unlabelled) and optionally weak-label JSON of a split")
    exp.add_argument("--store", required=True, help="the .sqlite annotation store")
    exp.add_argument("--data", required=True, help="dataset folder the annotations were made on")
    exp.add_argument("--split", default="train")
    exp.add_argument("--out", required=True, help="folder for NAME.png masks, or the file for --format")
    exp.add_argument(
        "--format", default="png", choices=["png", "labelstudio", "cvat", "coco"],
        help="png: index masks (default); labelstudio JSON, cvat (CVAT for images 1.1 XML), coco JSON",
    )  # fmt: skip
    exp.add_argument("--json", help="also write the labels as weak-label JSON (for train --weak_labels=FILE)")
    imp = asub.add_parser(
        "import", help="add a weak-label JSON file (e.g. from `simulate`) or a tool's export to a store"
    )
    imp.add_argument("--store", required=True, help="the .sqlite annotation store (created if missing)")
    imp.add_argument("--json", help="weak-label JSON file (--format weakseg)")
    imp.add_argument("--format", default="weakseg", choices=["weakseg", "labelstudio", "cvat", "coco"])
    imp.add_argument("--file", help="Label Studio JSON, CVAT 1.1 XML or COCO JSON export (with --format)")
    imp.add_argument(
        "--data", required=True,
        help="dataset folder the labels are for: names, sizes, classes and bounds are checked against it",
    )  # fmt: skip
    imp.add_argument("--split", default="train", help="split whose images the labels name")
    imp.add_argument("--masks", help="folder for the masks the file carries (NAME.png index masks)")
    ann.set_defaults(func=cmd_annotations)
    return parser


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def disk_error_message(err: OSError) -> str:
    """One line for a write the disk refused: the path, why, and that what was there is kept (writes
    go to a temporary file renamed into place, so a failed one replaces nothing)."""
    why = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
    }.get(err.errno or 0, "permission denied")
    name = Path(str(err.filename)) if err.filename else None
    where = f"into {name.parent}" if name is not None and name.name.endswith(".tmp") else f"{name or 'a file'}"
    return (
        f"cannot write {where}: {why} ({err.strerror}); files already there were kept as they were: free space, "
        "or write elsewhere (--out / --store)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run one command; the workbench's own errors print one line (``--debug``: the traceback)."""
    from workbench.annotations.store import AnnotationError
    from workbench.dashboard.security import UnsafeInputError
    from workbench.data.folder import DatasetError
    from workbench.labels.splits import SplitError
    from workbench.labels.weak_labels import WeakLabelError
    from workbench.modeling.backbones import ModelError
    from workbench.train.checkpoint import CheckpointError
    from workbench.train.config import ConfigError, TrainingError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("WORKBENCH_DEBUG", "").lower() in ("1", "true", "yes", "on")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "simulate"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    project_errors = (
        UsageError, ConfigError, DatasetError, WeakLabelError, AnnotationError, SplitError, ModelError,
        CheckpointError, UnsafeInputError, OwnershipError,
    )  # fmt: skip
    try:
        return args.func(args, extra)
    except (*project_errors, TrainingError) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED if isinstance(err, TrainingError) else EXIT_USAGE
    except OSError as err:
        if debug or err.errno not in DISK_ERRNOS:
            raise
        print(f"error: {disk_error_message(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
