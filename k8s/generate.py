"""Write k8s/base/generated/ from docker-compose.yml, .env.example and monitoring/.

    python -m k8s.generate            (make k8s-config)
    python -m k8s.generate --check    (make test: says what is stale and exits 1)

What Compose states mechanically is derived, never copied by hand, so that a setting added to
Compose and .env.example reaches Kubernetes with one command:

- settings.env, the ConfigMap `ctloop-settings`: each variable of .env.example that a Compose
  service reads in its `environment:`, with .env.example's value (the Compose default); secrets
  excepted (they live in the Secret: k8s/secret_files.py);
- containers.yaml, one patch per workload (k8s.compose.WORKLOADS): the Compose service's image,
  entrypoint and command (k8s.compose.COMMANDS for the Jobs), environment (`${VAR}` from the
  ConfigMap, fixed values as they are, a secret variable empty so that the service reads the file
  the Secret mounts in SECRETS_DIR, as under Compose when the user set none), memory limit, and
  every mount: data/ and artifacts/ and named volumes as PersistentVolumeClaims, secrets/ as the
  Secret (only the keys the service reads), tmpfs as memory, and the configuration files of
  monitoring/ as ConfigMaps;
- files/: those configuration files (kustomize reads no file outside its folder). One change:
  Prometheus' `serving` job finds every API pod through the headless Service `serving-api-pods`
  instead of scraping one static address, since Kubernetes runs several replicas;
- kustomization.yaml: the Component that holds the ConfigMaps and the patches.

Anything Compose says that k8s/ cannot carry (a variable of .env.example that no service reads
and that is not listed in CARRIED_ELSEWHERE, a default that disagrees with .env.example) stops
the generator with the variable's name.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys

import yaml

from k8s.compose import (
    COMMANDS,
    REPO,
    SECRET_VARIABLES,
    SETTINGS_NAME,
    WORKLOADS,
    ComposeError,
    defaults_agree,
    environment,
    interpolate,
    load_compose,
    only_reference,
    read_env_file,
    references,
)
from k8s.volumes import HEADER, Volumes, mebibytes
from stackgen import catalog

OUT = REPO / "k8s" / "base" / "generated"
REGENERATE = "make k8s-config"
# The settings' old names (read until the next release): a container reads one from the ConfigMap
# when an overlay sets it there, and wins over the new name then (stackconf.Settings).
OLD_NAMES = {old.name for entry in catalog.entries() for old in entry.declaration.renamed}
# Variables of .env.example that no Compose service reads from its environment, and where
# Kubernetes carries them instead (the parity tests check the memory limits and arguments).
CARRIED_ELSEWHERE = {
    "BIND_ADDRESS": "ports: Services are ClusterIP; `kubectl port-forward` binds 127.0.0.1",
    "SERVING_PORT": "ports: the Service serving-api, port 8080",
    "WEBAPP_PORT": "ports: the Service webapp, port 8081",
    "REPORTING_PORT": "ports: the Service reporting, port 8082",
    "REPORTING_METRICS_PORT": "ports: the Service reporting, port 8083",
    "PROMETHEUS_PORT": "ports: the Service prometheus; Prometheus' --web.external-url",
    "ALERTMANAGER_PORT": "ports: the Service alertmanager; Alertmanager's --web.external-url",
    "GRAFANA_PORT": "ports: the Service grafana, port 3000",
    "MLFLOW_PORT": "ports: the Service mlflow, port 5000 (the server's default, as in Compose)",
    "NETWORK_NAME": "the namespace ctloop and its NetworkPolicies",
    "SERVING_MEMORY": "resources.limits.memory of serving-api",
    "WEBAPP_MEMORY": "resources.limits.memory of webapp",
    "REPORTING_MEMORY": "resources.limits.memory of reporting and reporting-snapshot",
    "PROMETHEUS_MEMORY": "resources.limits.memory of prometheus",
    "GRAFANA_MEMORY": "resources.limits.memory of grafana",
    "MLFLOW_MEMORY": "resources.limits.memory of mlflow",
    "PROMETHEUS_RETENTION": "Prometheus' --storage.tsdb.retention.time argument",
}


class Generator:
    """Everything k8s/base/generated/ holds, computed in memory: path -> text."""

    def __init__(self, compose: dict | None = None, example: dict[str, str] | None = None) -> None:
        self.compose = load_compose() if compose is None else compose
        self.example = read_env_file() if example is None else example
        self.volumes = Volumes(self.example)
        self.files = self.volumes.files  # the ConfigMaps' files, then everything else
        self.settings: set[str] = set()  # in the ConfigMap
        self.carried: set[str] = set()  # read by some container (in the ConfigMap or not)

    def run(self) -> dict[str, str]:
        problems = defaults_agree(self.compose, self.example)
        if problems:
            raise ComposeError("defaults disagree:\n  " + "\n  ".join(problems))
        patches = [self.workload_patch(*workload) for workload in WORKLOADS]
        self.check_every_variable_is_carried()
        lines = [f"{name}={value}" for name, value in self.example.items() if name in self.settings]
        self.files["settings.env"] = HEADER + "\n".join(lines) + "\n"
        self.files["containers.yaml"] = HEADER + yaml.safe_dump_all(patches, sort_keys=False)
        self.files["kustomization.yaml"] = HEADER + yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1alpha1",
                "kind": "Component",
                "configMapGenerator": [
                    {"name": SETTINGS_NAME, "envs": ["settings.env"]},
                    *(
                        {"name": name, "files": files}
                        for name, files in self.volumes.config_maps.items()
                    ),
                ],
                "patches": [{"path": "containers.yaml"}],
            },
            sort_keys=False,
        )
        return self.files

    def check_every_variable_is_carried(self) -> None:
        for name in self.example:
            if name in self.carried or name in SECRET_VARIABLES or name in CARRIED_ELSEWHERE:
                continue
            raise ComposeError(
                f"{name} (.env.example) reaches no Kubernetes object: read it in a service's "
                f"environment in docker-compose.yml (then `{REGENERATE}`), or add it to "
                "CARRIED_ELSEWHERE in k8s/generate.py saying where Kubernetes carries it"
            )

    def workload_patch(self, kind: str, name: str, container: str, service_name: str) -> dict:
        service = self.compose["services"][service_name]
        spec: dict = {"name": container, "image": self.image(service)}
        if container in COMMANDS:
            spec["command"] = COMMANDS[container]
        else:
            for compose_key, kubernetes_key in (("entrypoint", "command"), ("command", "args")):
                if compose_key in service:
                    spec[kubernetes_key] = self.argv(service[compose_key])
        spec["env"] = self.env(service_name, service)
        if "mem_limit" in service:
            memory = interpolate(str(service["mem_limit"]), self.example)
            spec["resources"] = {"limits": {"memory": mebibytes(memory)}}
        volumes, mounts = self.volumes.mounts(container, service_name, service)
        spec["volumeMounts"] = mounts
        pod = {"containers": [spec], "volumes": volumes}
        template = {"spec": pod}
        if kind == "CronJob":
            body: dict[str, object] = {"jobTemplate": {"spec": {"template": template}}}
        else:
            body = {"template": template}
        version = "apps/v1" if kind == "Deployment" else "batch/v1"
        return {"apiVersion": version, "kind": kind, "metadata": {"name": name}, "spec": body}

    def image(self, service: dict) -> str:
        return str(interpolate(service["image"], self.example))

    def argv(self, value: str | list) -> list[str]:
        words = shlex.split(value) if isinstance(value, str) else [str(word) for word in value]
        return [str(interpolate(word, self.example)) for word in words]

    def env(self, service_name: str, service: dict) -> list[dict]:
        entries: list[dict[str, object]] = []
        for key, raw in environment(service).items():
            variable = only_reference(raw)
            if variable in SECRET_VARIABLES:
                entries.append({"name": key, "value": ""})  # the Secret's file is read instead
            elif variable in OLD_NAMES and variable not in self.example:
                reference = {"name": SETTINGS_NAME, "key": variable, "optional": True}
                entries.append({"name": key, "valueFrom": {"configMapKeyRef": reference}})
            elif variable is not None:
                if variable not in self.example:
                    raise ComposeError(
                        f"{variable} ({service_name}'s environment in docker-compose.yml) is "
                        f"missing from .env.example: add it there, then `{REGENERATE}`"
                    )
                self.settings.add(variable)
                self.carried.add(variable)
                entries.append(
                    {
                        "name": key,
                        "valueFrom": {"configMapKeyRef": {"name": SETTINGS_NAME, "key": variable}},
                    }
                )
            else:
                # A value that mixes text and variables is fixed here with .env.example's values.
                self.carried.update(name for name, _ in references(raw))
                entries.append({"name": key, "value": str(interpolate(raw, self.example))})
        return entries


def stale(files: dict[str, str]) -> list[str]:
    """What differs between the generated files and k8s/base/generated/, as diffs."""
    found = []
    on_disk = {path.relative_to(OUT).as_posix() for path in OUT.rglob("*") if path.is_file()}
    for extra in sorted(on_disk - set(files)):
        found.append(f"k8s/base/generated/{extra}: not generated any more (delete it)")
    for name, text in sorted(files.items()):
        path = OUT / name
        old = path.read_text() if path.exists() else ""
        if old != text:
            diff = difflib.unified_diff(
                old.splitlines(), text.splitlines(), f"k8s/base/generated/{name}", "generated", n=0
            )
            found.append("\n".join(line for line in diff))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only say what is stale")
    args = parser.parse_args(argv)
    try:
        files = Generator().run()
    except ComposeError as error:
        print(f"k8s/: {error}", file=sys.stderr)
        return 1
    differences = stale(files)
    if args.check:
        if differences:
            print("\n".join(differences), file=sys.stderr)
            print(f"\nk8s/base/generated/ is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    for path in OUT.rglob("*"):
        if path.is_file() and path.relative_to(OUT).as_posix() not in files:
            path.unlink()
    for name, text in files.items():
        (OUT / name).parent.mkdir(parents=True, exist_ok=True)
        (OUT / name).write_text(text)
    print(f"k8s/base/generated/: {len(files)} files, {len(differences)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
