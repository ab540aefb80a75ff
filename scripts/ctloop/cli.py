"""Command lines of the ML core: `python -m ctloop <command>` (or the `ctloop` script).

build-reference   dataset -> data/ref_data.csv, data/samples/, artifacts/embedding/
train             fit a head on ref_data.csv (+ prod_data.csv), register it, promote it
init              build-reference and train, each only if its output is missing
init --explain    measure which preprocessing and embedding size fit the dataset (ctloop.choose)
registry          list, show, verify, promote, rollback, prune
secrets           generate the stack's missing secrets (API token, dashboard secret, ...)
export prod-data  the feedback rows as prod_data.csv, from the store in use (file or PostgreSQL)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ctloop.config import CoreSettings
from ctloop.registry import ModelRegistry, RegistryError
from ctloop.tables import TableError

if TYPE_CHECKING:  # the commands import the training stack when they run, not before
    from ctloop.candidate import Candidate

# The ML stages (scikit-learn, skl2onnx, onnxruntime) are imported inside the commands that need
# them: `retrain` is started by the API and must exit fast when it has nothing to do.


# A command: its settings and arguments in, the process's exit status out.
Handler = Callable[[CoreSettings, argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    overrides = {
        key: value
        for key, value in {
            "dataset": getattr(args, "dataset", None),
            "pca_components": getattr(args, "components", None),
        }.items()
        if value is not None
    }
    settings = CoreSettings(**overrides)
    try:
        return args.handler(settings, args)
    except (RegistryError, TableError, ValueError, RuntimeError, FileNotFoundError) as exc:
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
        f"{info['unseen_rows']} unseen {info['medium']} files -> {settings.samples_dir}/<class>/"
    )
    choice = info["choice"]
    if "candidates" in choice:
        print(f"preprocessing chosen: {choice['settings']} ({choice['why']}; `init --explain`)")
    print(f"ref_data.csv sha256 {info['ref_data_sha256']}")
    return 0


def cmd_train(settings: CoreSettings, args: argparse.Namespace) -> int:
    from ctloop.candidate import train_candidate
    from ctloop.embed import load_embedding
    from ctloop.prod_data import open_production

    registry = ModelRegistry(settings.artifacts_dir)
    prod_rows = 0
    if args.with_prod:
        n_components = int(load_embedding(settings.embedding_dir).info["n_components"])
        prod_rows = open_production(settings, n_components).count_rows_on_disk()
    _print_candidate(
        train_candidate(
            settings,
            registry,
            prod_rows=prod_rows,
            promote=not args.no_promote,
            scratch=args.scratch,
        )
    )
    return 0


def cmd_init(settings: CoreSettings, args: argparse.Namespace) -> int:
    """First start: build what is missing, reuse what exists."""
    from ctloop.candidate import train_candidate
    from ctloop.recovery import heal
    from ctloop.reference import check_reference, reference_is_complete

    if args.explain:
        from ctloop.choose import explain, resolve

        print(explain(resolve(settings)))
        return 0
    rebuilt = False
    if reference_is_complete(settings):
        check = check_reference(settings)  # an upgrade that builds the reference differently
        print(f"{check.message}: {settings.ref_data_path}")
        rebuilt = check.rebuilt
    else:
        cmd_build_reference(settings, argparse.Namespace(force=False))
    registry = ModelRegistry(settings.artifacts_dir)
    if rebuilt or not registry.version_ids():
        _print_candidate(train_candidate(settings, registry))
        return 0
    # A damaged pointer or served version is repaired here, so that a restart always serves.
    done = heal(settings, registry)
    if done:
        print(done)
    else:
        current = registry.current_version()
        print(f"model {current} present and verified in {settings.artifacts_dir}")
    return 0


def cmd_retrain(settings: CoreSettings, args: argparse.Namespace) -> int:
    """Run by the serving API in a separate, lower-priority process; safe to run by hand."""
    from ctloop.logs import configure_json_logging
    from ctloop.trainer import exit_with_server, run_pending

    configure_json_logging("INFO", sys.stderr)
    exit_with_server()
    os.nice(settings.retrain_nice)
    outcomes = run_pending(settings)
    for entry in outcomes:
        print(describe_decision(entry))
    if not outcomes:
        print(
            "no retrain due, or another trainer is running (it checks for new rows before it stops)"
        )
    return 0


def describe_decision(entry: dict) -> str:
    """One line per retrain decision, whatever its kind (promoted, rejected, superseded, failed):
    only the trigger and the decision are always there."""
    parts = [f"retrain at {entry.get('trigger_rows', '?')} rows: {entry.get('decision', '?')}"]
    if entry.get("version"):
        parts.append(str(entry["version"]))
    why = entry.get("reason") or entry.get("error")
    if why:
        parts.append(f"({why})")
    if isinstance(entry.get("seconds"), int | float):
        parts.append(f"in {entry['seconds']:.2f} s")
    return " ".join(parts)


def cmd_secrets(settings: CoreSettings, args: argparse.Namespace) -> int:
    """Generate every secret the stack needs that is not there yet (first start)."""
    from ctloop.credentials import NAMES, ensure_secret, read_secret

    for name in NAMES:
        existed = read_secret(settings.secrets_dir, name) is not None
        ensure_secret(settings.secrets_dir, name)
        print(f"{settings.secrets_dir / name}: {'present' if existed else 'generated'}")
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
                f"gate={gate.get('decision', '-')}  "
                f"stage={(manifest['stages'] or [{}])[-1].get('stage', '-')}"
            )
    elif action == "show":
        print(
            json.dumps(
                registry.manifest(args.version or registry.current_version() or ""), indent=2
            )
        )
    elif action == "verify":
        ids = [args.version] if args.version else registry.version_ids()
        if not ids:
            print(f"no model versions in {settings.artifacts_dir}")
        bad = 0
        for version in ids:
            try:
                files = registry.load(version)
            except RegistryError as exc:
                bad += 1
                print(f"{version}: FAILED: {exc}")
            else:
                print(f"{version}: {len(files.files)} files match their sha256")
        return 1 if bad else 0
    elif action == "promote":
        registry.promote(args.version, reason="manual promote")
        print(f"now serving {args.version}")
    elif action == "rollback":
        print(f"now serving {registry.rollback(args.version)}")
    elif action == "prune":
        removed = registry.prune(
            args.keep_ancestors or settings.registry_keep_ancestors,
            settings.registry_keep_others if args.keep_others is None else args.keep_others,
        )
        print(f"removed {len(removed)} versions: {', '.join(removed) or '-'}")
    return 0


def _print_candidate(candidate: Candidate) -> None:
    holdout = candidate.head.metrics["holdout"]
    training = candidate.head.training
    print(
        f"trained {candidate.version} ({training['mode']}: {training['mode_reason']}) "
        f"in {candidate.seconds:.2f} s on {training['rows']} rows "
        f"({training['reference_rows']} reference, {training['production_rows']} production); "
        f"held-out ({holdout['rows']} rows): accuracy {holdout['accuracy']:.4f}, "
        f"macro F1 {holdout['macro_f1']:.4f}, "
        f"balanced accuracy {holdout['balanced_accuracy']:.4f}; "
        f"{'promoted' if candidate.promoted else 'registered, not promoted'} "
        f"({candidate.reason})"
    )


def cmd_export(settings: CoreSettings, args: argparse.Namespace) -> int:
    """The feedback rows in prod_data.csv's format, header first, from the configured store:
    streamed (bounded memory), to standard output or atomically to a file."""
    from ctloop.embed import load_embedding
    from ctloop.prod_data import ProductionDataError, open_production
    from ctloop.util import fsync_dir

    n_components = int(load_embedding(settings.embedding_dir).info["n_components"])
    store = open_production(settings, n_components)
    output: Path | None = args.output
    temporary = output.with_name(f".{output.name}.exporting") if output else None
    lines = -1  # the header is not a row
    try:
        if output is None or temporary is None:
            for line in store.lines():
                sys.stdout.buffer.write(line)
                lines += 1
            sys.stdout.buffer.flush()
        else:
            # Whole or not at all: a failed export leaves no half file under the name asked for.
            with temporary.open("wb") as handle:
                for line in store.lines():
                    handle.write(line)
                    lines += 1
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, output)
            fsync_dir(temporary.parent)
    except (ProductionDataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    print(f"{lines} rows -> {output or 'standard output'}", file=sys.stderr)
    return 0


def _shared_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """--dataset and --components, accepted before the command and after it."""
    parser.add_argument(
        "--dataset", default=default, help="'digits' or a folder of <class>/ sub-folders (DATASET)"
    )
    parser.add_argument(
        "--components", type=int, default=default, help="embedding size (PCA_COMPONENTS)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctloop", description=__doc__.splitlines()[0])
    _shared_options(parser)
    # After the command, SUPPRESS keeps an option given before it from being reset to None.
    shared = argparse.ArgumentParser(add_help=False)
    _shared_options(shared, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, parents=[shared])
        sub.set_defaults(handler=handler)
        return sub

    build = command(
        "build-reference", cmd_build_reference, "build ref_data.csv, samples and the embedding"
    )
    build.add_argument(
        "--force", action="store_true", help="rebuild even if prod rows used another embedding"
    )
    train = command("train", cmd_train, "train and register a model, served if it passes the gate")
    train.add_argument("--with-prod", action="store_true", help="also train on prod_data.csv")
    train.add_argument("--no-promote", action="store_true", help="register without serving it")
    train.add_argument(
        "--scratch",
        action="store_true",
        help="a new head (a full rebuild) even where RETRAIN_MODE fine-tunes the served one",
    )
    init = command("init", cmd_init, "build the reference and the first model if missing")
    init.add_argument(
        "--explain",
        action="store_true",
        help="only measure which preprocessing and embedding size fit the dataset, and say why",
    )
    command("retrain", cmd_retrain, "decide the retrains due, champion/challenger gated")
    command("secrets", cmd_secrets, "generate the secrets that are missing (API token, ...)")
    export = command("export", cmd_export, "write the feedback rows as prod_data.csv")
    export.add_argument("what", choices=["prod-data"])
    export.add_argument(
        "--output", type=Path, help="file to write (atomically); standard output when absent"
    )
    registry = command("registry", cmd_registry, "inspect and move the served version")
    registry.add_argument(
        "action", choices=["list", "show", "verify", "promote", "rollback", "prune"]
    )
    registry.add_argument("version", nargs="?", help="version id (show, verify, promote, rollback)")
    registry.add_argument(
        "--keep-ancestors", type=int, help="prune: generations of parents kept (default: setting)"
    )
    registry.add_argument(
        "--keep-others", type=int, help="prune: newest other versions kept (default: setting)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
