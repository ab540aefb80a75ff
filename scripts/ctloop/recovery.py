"""What the loop does by itself about a damaged registry, so that no fault stops it for good.

Run by the trainer before every round of retrains and by `ctloop init` at every start:

- current.json unreadable (truncated, edited), or missing while versions exist: the version the
  history last made champion, if it verifies, else the best fallback that verifies
  (`ModelRegistry.fallbacks`), is made champion again, the reason in history.jsonl;
- the champion no longer verifies (a file changed or deleted): the best fallback that verifies
  becomes champion, the reason in the history (the workers already serve it; a champion that
  loads is what retrains start from and are gated against);
- no version verifies (or none exists): a first model is trained on ref_data.csv alone and
  served; the feedback rows are not touched (later retrains read them as usual).

Light on purpose: scikit-learn is imported only when a model has to be rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ctloop.config import CoreSettings
from ctloop.registry import CorruptPointerError, ModelRegistry, RegistryError

log = logging.getLogger("ctloop.recovery")


@dataclass(frozen=True)
class Diagnosis:
    """The registry's state: the champion if it verifies, else what is wrong and what to do."""

    champion: str | None  # the pointer's version, when it verifies
    problem: str | None = None  # why the pointer cannot be served as it is
    replacement: str | None = None  # the best version that verifies instead (None: rebuild)

    @property
    def healthy(self) -> bool:
        return self.problem is None


def diagnose(registry: ModelRegistry) -> Diagnosis:
    """Read the pointer and verify what it names (every file against its sha256)."""
    try:
        wanted = registry.current_version()
    except CorruptPointerError as exc:
        wanted, problem = None, str(exc)
    else:
        if wanted is None:
            if not registry.version_ids():
                return Diagnosis(None, "no model version exists yet")
            problem = f"{registry.current_path} is missing although versions exist"
        else:
            try:
                registry.load(wanted)
                return Diagnosis(wanted)
            except (RegistryError, OSError, ValueError) as exc:
                problem = f"the champion {wanted} does not verify: {exc}"
    reasons = [problem]
    for version in registry.fallbacks(wanted):
        try:
            registry.load(version)
        except (RegistryError, OSError, ValueError) as exc:
            reasons.append(str(exc))
            continue
        return Diagnosis(None, problem, version)
    return Diagnosis(None, "; ".join(reasons))


def heal(settings: CoreSettings, registry: ModelRegistry) -> str | None:
    """Make the pointer name a version that verifies, rebuilding a first model if none does.
    Returns what was done (None when nothing needed doing); raises when a rebuild is needed and
    the reference data is missing (`ctloop init` builds it)."""
    found = diagnose(registry)
    if found.healthy:
        return None
    if found.replacement is not None:
        reason = f"repaired: {found.problem}; {found.replacement} is the best version that verifies"
        registry.promote(found.replacement, reason=reason)
        log.error("registry_repaired", extra={"event": "registry_repaired", "reason": reason})
        return f"now serving {found.replacement} ({reason})"
    return rebuild(settings, registry, found.problem or "no version verifies")


def rebuild(settings: CoreSettings, registry: ModelRegistry, problem: str) -> str:
    """A first model again, on the reference rows alone, served whatever the gate would say (there
    is no champion that loads to compare it with)."""
    from ctloop.candidate import train_candidate  # scikit-learn: only when a model is rebuilt
    from ctloop.reference import reference_is_complete

    if not reference_is_complete(settings):
        raise RegistryError(
            f"no model version can be served ({problem}) and the reference data to rebuild one "
            f"is missing in {settings.data_dir}: run `python -m ctloop init`"
        )
    fresh = problem == "no model version exists yet"
    reason = "initial model" if fresh else f"rebuilt from ref_data.csv: {problem}"
    log.warning("model_rebuild", extra={"event": "model_rebuild", "reason": reason})
    if fresh:
        candidate = train_candidate(settings, registry)
    else:
        candidate = train_candidate(settings, registry, rebuild_reason=reason)
    return f"trained {candidate.version} ({reason})"
