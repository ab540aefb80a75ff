"""Command lines of the ML core: `python -m ctloop <command>` (or the `ctloop` script).

build-reference   dataset -> data/ref_data.csv, data/samples/, artifacts/embedding/
train             fit a head on ref_data.csv (+ prod_data.csv), register it, promote it
init              build-reference and train, each only if its output is missing
registry          list, show, verify, promote, rollback, prune
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from filelock import FileLock, Timeout

from ctloop.config import CoreSettings
from ctloop.registry import ModelRegistry, RegistryError

# The ML stages (scikit-learn, skl2onnx, onnxruntime) are imported inside the commands that need
# them: `retrain` is started by the API on every k-th row and must exit fast when it has nothing
# to do.


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    overrides = {
        key: value
        for key, value in {"dataset": args.dataset, "pca_components": args.components}.items()
        if value is not None
    }
    settings = CoreSettings(**overrides)
    try:
        return args.handler(settings, args)
    except (RegistryError, ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_build_reference(settings: CoreSettings, args: argparse.Namespace) -> int:
    from ctloop.reference import build_reference

    started = time.perf_counter()
    info = build_reference(settings, force=args.force)
    print(
        f"reference built from {info['dataset']} in {time.perf_counter() - started:.2f} s: "
        f"{info['reference_rows']} rows -> {settings.ref_data_path} "
        f"(PCA {info['n_components']}, {info['explained_variance']:.1%} of variance), "
        f"{info['unseen_rows']} unseen images -> {settings.samples_dir}/<class>/"
    )
    print(f"ref_data.csv sha256 {info['ref_data_sha256']}")
    return 0


def cmd_train(settings: CoreSettings, args: argparse.Namespace) -> int:
    from ctloop.pipeline import train_and_register

    registry = ModelRegistry(settings.artifacts_dir)
    outcome = train_and_register(
        settings, registry, include_prod=args.with_prod, promote=not args.no_promote
    )
    _print_outcome(outcome)
    return 0


def cmd_init(settings: CoreSettings, args: argparse.Namespace) -> int:
    """First start: build what is missing, reuse what exists."""
    from ctloop.pipeline import train_and_register
    from ctloop.reference import reference_is_complete

    if reference_is_complete(settings):
        print(f"reference data present: {settings.ref_data_path}")
    else:
        cmd_build_reference(settings, argparse.Namespace(force=False))
    registry = ModelRegistry(settings.artifacts_dir)
    current = registry.current_version()
    if current is not None:
        registry.load(current)
        print(f"model {current} present and verified in {settings.artifacts_dir}")
        return 0
    _print_outcome(train_and_register(settings, registry))
    return 0


def cmd_retrain(settings: CoreSettings, args: argparse.Namespace) -> int:
    """Run by the serving API in a separate, lower-priority process; safe to run by hand."""
    lock = FileLock(str(settings.artifacts_dir / ".trainer.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print("another trainer is running; it takes the new rows into account before it stops")
        return 0
    lock.release()
    from ctloop.logs import configure_json_logging
    from ctloop.retrain import run_pending

    configure_json_logging("INFO", sys.stderr)
    os.nice(settings.retrain_nice)
    outcomes = run_pending(settings)
    for entry in outcomes:
        print(
            f"retrain at {entry['trigger_rows']} rows: {entry['decision']} "
            f"{entry.get('version', '')} ({entry.get('reason', entry.get('error', ''))}) "
            f"in {entry['seconds']:.2f} s"
        )
    if not outcomes:
        print("no retrain due (or another trainer is running)")
    return 0


def cmd_registry(settings: CoreSettings, args: argparse.Namespace) -> int:
    registry = ModelRegistry(settings.artifacts_dir)
    action = args.action
    if action == "list":
        versions = registry.list_versions()
        if not versions:
            print(f"no model versions in {settings.artifacts_dir}")
        for manifest in versions:
            holdout = manifest["metrics"]["holdout"]
            gate = manifest.get("gate") or {}
            print(
                f"{'*' if manifest['current'] else ' '} {manifest['version']}  "
                f"{manifest['created_at']}  "
                f"parent={manifest['parent'] or '-':6}  rows={manifest['training']['rows']:5}  "
                f"acc={holdout['accuracy']:.4f}  f1={holdout['macro_f1']:.4f}  "
                f"gate={gate.get('decision', '-')}"
            )
    elif action == "show":
        print(
            json.dumps(
                registry.manifest(args.version or registry.current_version() or ""), indent=2
            )
        )
    elif action == "verify":
        files = registry.load(args.version)
        print(f"{files.version}: {len(files.files)} files match their sha256")
    elif action == "promote":
        registry.promote(args.version, reason="manual promote")
        print(f"now serving {args.version}")
    elif action == "rollback":
        print(f"now serving {registry.rollback(args.version)}")
    elif action == "prune":
        removed = registry.prune(args.keep)
        print(f"removed {len(removed)} versions: {', '.join(removed) or '-'}")
    return 0


def _print_outcome(outcome) -> None:
    holdout = outcome.head.metrics["holdout"]
    training = outcome.head.training
    print(
        f"trained {outcome.version} in {outcome.seconds:.2f} s on {training['rows']} rows "
        f"({training['reference_rows']} reference, {training['production_rows']} production); "
        f"held-out ({holdout['rows']} rows): accuracy {holdout['accuracy']:.4f}, "
        f"macro F1 {holdout['macro_f1']:.4f}, "
        f"balanced accuracy {holdout['balanced_accuracy']:.4f}; "
        f"{'promoted' if outcome.promoted else 'registered, not promoted'}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctloop", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", help="'digits' or a folder of <class>/ sub-folders (env DATASET)"
    )
    parser.add_argument("--components", type=int, help="embedding size (env PCA_COMPONENTS)")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build-reference", help="build ref_data.csv, samples and the embedding"
    )
    build.add_argument(
        "--force", action="store_true", help="rebuild even if prod rows used another embedding"
    )
    build.set_defaults(handler=cmd_build_reference)

    train = commands.add_parser("train", help="train, register and promote a model")
    train.add_argument("--with-prod", action="store_true", help="also train on prod_data.csv")
    train.add_argument("--no-promote", action="store_true", help="register without serving it")
    train.set_defaults(handler=cmd_train)

    init = commands.add_parser("init", help="build the reference and the first model if missing")
    init.set_defaults(handler=cmd_init)

    retrain = commands.add_parser("retrain", help="run the retrains due, champion/challenger gated")
    retrain.set_defaults(handler=cmd_retrain)

    registry = commands.add_parser("registry", help="inspect and move the served version")
    registry.add_argument(
        "action", choices=["list", "show", "verify", "promote", "rollback", "prune"]
    )
    registry.add_argument("version", nargs="?", help="version id (show, verify, promote, rollback)")
    registry.add_argument("--keep", type=int, default=20, help="prune: versions to keep")
    registry.set_defaults(handler=cmd_registry)
    return parser


if __name__ == "__main__":
    sys.exit(main())
