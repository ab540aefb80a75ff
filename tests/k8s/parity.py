"""What each container runs under Compose and under Kubernetes, side by side, and where they differ.

Read independently of the generator: Compose through its own file (interpolated with
.env.example's values, which are its defaults), Kubernetes through the rendered overlay (every
ConfigMap reference resolved to its value, every mount to the files it shows). The only
differences allowed are the ones k8s.compose names: the Jobs' commands (COMMANDS) and the
mounts some containers leave out (MOUNTS_LEFT_OUT).
"""

from __future__ import annotations

import posixpath
import re

import yaml

from k8s.compose import (
    COMMANDS,
    MOUNTS_LEFT_OUT,
    REPO,
    SECRET_NAME,
    SECRET_VARIABLES,
    STATE_FOLDERS,
    WORKLOADS,
    environment,
    interpolate,
    only_reference,
)
from tests.k8s.manifests import container, generated_name, one, pod_spec

GENERATED = "run `make k8s-config`"
UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
QUANTITY = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def compose_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([bkmg]?)b?", size.lower()).groups()
    return int(number) * UNITS[unit]


def quantity_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi|)", size).groups()
    return int(number) * QUANTITY[unit]


def with_tag(image: str) -> str:
    return image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"


def dockerfile_user(service: dict) -> str:
    """The USER an image built by Compose runs as (the last USER line of its Dockerfile)."""
    text = (REPO / service["build"]["dockerfile"]).read_text()
    return re.findall(r"^USER\s+(\S+)", text, re.M)[-1]


def repo_files(path: str, target: str) -> dict[str, str]:
    """A bind-mounted file or folder of the repository as {path in the container: text}."""
    source = REPO / path
    if source.is_file():
        return {target: source.read_text()}
    return {
        posixpath.join(target, file.relative_to(source).as_posix()): file.read_text()
        for file in sorted(source.rglob("*"))
        if file.is_file()
    }


def compose_mounts(container_name: str, service: dict, example: dict) -> dict[str, tuple]:
    """{path in the container: what is there} for a Compose service."""
    found: dict[str, tuple] = {}
    for entry in service.get("tmpfs") or []:
        target, _, options = entry.partition(":")
        size = dict(option.split("=", 1) for option in options.split(",") if "=" in option)
        found[target] = ("memory", compose_bytes(size["size"]) if "size" in size else None)
    for entry in service.get("volumes") or []:
        source, target, *mode = str(interpolate(entry, example)).split(":")
        if (container_name, target) in MOUNTS_LEFT_OUT:
            continue
        read_only = mode == ["ro"]
        path = posixpath.normpath(source)
        if not source.startswith((".", "/")) or path in STATE_FOLDERS:
            found[target] = ("claim", path, read_only)
        elif path.split("/")[0] == "secrets":
            found[target] = ("secret", posixpath.basename(path) if "/" in path else None)
        else:
            for file, text in repo_files(path, target).items():
                found[file] = ("file", text)
    return found


def kubernetes_mounts(pod: dict, spec: dict, docs: list[dict]) -> dict[str, tuple]:
    """{path in the container: what is there} for a rendered container."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
    found: dict[str, tuple] = {}
    for mount in spec.get("volumeMounts") or []:
        volume, target = volumes[mount["name"]], mount["mountPath"]
        read_only = bool(mount.get("readOnly"))
        if "persistentVolumeClaim" in volume:
            found[target] = ("claim", volume["persistentVolumeClaim"]["claimName"], read_only)
        elif "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            assert volume["emptyDir"].get("medium") == "Memory", target
            found[target] = ("memory", quantity_bytes(size) if size else None)
        elif "secret" in volume:
            secret = volume["secret"]
            assert secret["secretName"].rsplit("-", 1)[0] == SECRET_NAME, secret
            keys = [item["key"] for item in secret.get("items") or []]
            found[target] = ("secret", mount.get("subPath"), tuple(keys))
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            data = generated_name(docs, "ConfigMap", name.rsplit("-", 1)[0])["data"]
            if "subPath" in mount:
                found[target] = ("file", data[mount["subPath"]])
            else:
                for key, text in data.items():
                    found[posixpath.join(target, key)] = ("file", text)
        else:
            raise AssertionError(f"{target}: a volume kind the parity test does not know")
    return found


def same_file(path: str, compose_text: str, kubernetes_text: str) -> bool:
    """Equal, or for prometheus.yml equal but for the serving job's discovery of every pod."""
    if compose_text == kubernetes_text:
        return True
    if not path.endswith("prometheus.yml"):
        return False
    ours, theirs = yaml.safe_load(compose_text), yaml.safe_load(kubernetes_text)
    for config in (ours, theirs):
        for job in config["scrape_configs"]:
            if job["job_name"] == "serving":
                job.pop("static_configs", None)
                job.pop("dns_sd_configs", None)
    serving = [job for job in yaml.safe_load(kubernetes_text)["scrape_configs"]]
    discovered = next(job for job in serving if job["job_name"] == "serving")["dns_sd_configs"]
    return ours == theirs and discovered[0]["names"] == ["serving-api-pods"]


def problems(compose: dict, example: dict, docs: list[dict]) -> list[str]:
    """Every difference between what Compose runs and what the rendered overlay runs."""
    found: list[str] = []
    mapped = {service for *_, service in WORKLOADS}
    # A service that runs an image another one builds (mlflow-mirror runs mlflow's) runs as that
    # image's Dockerfile says.
    builds = {s["image"]: s["build"] for s in compose["services"].values() if "build" in s}
    for name in compose["services"]:
        if name not in mapped:
            found.append(
                f"Compose service {name} has no Kubernetes workload: add it to "
                "k8s.compose.WORKLOADS and its manifest to k8s/base, then `make k8s-config`"
            )
    for kind, name, container_name, service_name in WORKLOADS:
        service = compose["services"].get(service_name)
        if service is None:
            found.append(f"{kind}/{name}: Compose has no service {service_name} any more")
            continue
        if "build" not in service and service["image"] in builds:
            service = {**service, "build": builds[service["image"]]}
        workload = one(docs, kind, name)
        where = f"{kind}/{name} ({container_name}, from Compose's {service_name})"
        found += compare(where, container_name, service, workload, docs, example)
    return found


def compare(where, container_name, service, workload, docs, example) -> list[str]:
    pod = pod_spec(workload)
    spec = container(workload, container_name)
    found = []
    image = with_tag(str(interpolate(service["image"], example)))
    if with_tag(spec["image"]) != image:
        found.append(f"{where}: image {spec['image']}, Compose runs {image}: {GENERATED}")
    if container_name in COMMANDS:
        expected = (COMMANDS[container_name], None)
    else:
        expected = tuple(
            interpolate(service[key], example) if key in service else None
            for key in ("entrypoint", "command")
        )
    if (spec.get("command"), spec.get("args")) != expected:
        found.append(
            f"{where}: command {spec.get('command')} args {spec.get('args')}, expected "
            f"{expected[0]} args {expected[1]}: {GENERATED}"
        )
    found += compare_env(where, service, spec, docs, example)
    memory = spec.get("resources", {}).get("limits", {}).get("memory")
    wanted = compose_bytes(str(interpolate(str(service["mem_limit"]), example)))
    if memory is None or quantity_bytes(memory) != wanted:
        found.append(f"{where}: memory limit {memory}, Compose {wanted} bytes: {GENERATED}")
    found += compare_mounts(where, container_name, service, pod, spec, docs, example)
    found += compare_security(where, container_name, service, pod, spec)
    return found


def compare_env(where, service, spec, docs, example) -> list[str]:
    found = []
    settings = generated_name(docs, "ConfigMap", "ctloop-settings")["data"]
    ours = {}
    for entry in spec.get("env") or []:
        if "value" in entry:
            ours[entry["name"]] = entry["value"]
        else:
            reference = entry["valueFrom"]["configMapKeyRef"]
            # An optional key (an old name) absent from the ConfigMap is unset: Compose's empty.
            missing = "" if reference.get("optional") else f"<no key {reference['key']}>"
            ours[entry["name"]] = settings.get(reference["key"], missing)
    theirs = {
        key: "" if only_reference(raw) in SECRET_VARIABLES else str(interpolate(raw, example))
        for key, raw in environment(service).items()
    }
    for key in sorted(set(ours) | set(theirs)):
        if key not in ours:
            found.append(f"{where}: {key} is set by Compose, not by Kubernetes: {GENERATED}")
        elif key not in theirs:
            found.append(f"{where}: {key} is set by Kubernetes, not by Compose: {GENERATED}")
        elif ours[key] != theirs[key]:
            found.append(
                f"{where}: {key}={ours[key]!r} on Kubernetes, {theirs[key]!r} under Compose: "
                f"{GENERATED}"
            )
    return found


def compare_mounts(where, container_name, service, pod, spec, docs, example) -> list[str]:
    found = []
    ours = kubernetes_mounts(pod, spec, docs)
    theirs = compose_mounts(container_name, service, example)
    read = {
        SECRET_VARIABLES[v]
        for v in map(only_reference, environment(service).values())
        if v in SECRET_VARIABLES
    }
    for path in sorted(set(ours) | set(theirs)):
        mine, compose_side = ours.get(path), theirs.get(path)
        if mine is None or compose_side is None:
            side = "Compose" if mine is None else "Kubernetes"
            found.append(f"{where}: only {side} mounts something at {path}: {GENERATED}")
        elif mine[0] != compose_side[0]:
            found.append(f"{where}: {path} is a {mine[0]} here, a {compose_side[0]} under Compose")
        elif mine[0] == "file" and not same_file(path, compose_side[1], mine[1]):
            found.append(f"{where}: {path} differs from the repository's file: {GENERATED}")
        elif mine[0] in ("claim", "memory") and mine != compose_side:
            found.append(f"{where}: {path} is {mine[1:]}, Compose {compose_side[1:]}: {GENERATED}")
        elif mine[0] == "secret":
            every = set(SECRET_VARIABLES.values())
            keys = {compose_side[1]} if compose_side[1] else (read or every)
            if mine[1] != compose_side[1] or set(mine[2]) != keys:
                found.append(f"{where}: {path} shows secrets {mine[1:]}, wanted {keys}")
    return found


def compare_security(where, container_name, service, pod, spec) -> list[str]:
    found = []
    security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
    user = str(service.get("user") or dockerfile_user(service))
    if user == "root" and container_name in COMMANDS:
        user = dockerfile_user(service)  # the Job runs as the app user (k8s.compose.COMMANDS)
    uid, _, gid = user.partition(":")
    if security.get("runAsUser") != int(uid) or (gid and security.get("runAsGroup") != int(gid)):
        found.append(
            f"{where}: runs as {security.get('runAsUser')}:{security.get('runAsGroup')}, "
            f"Compose as {user}: edit its manifest in k8s/base"
        )
    if security.get("readOnlyRootFilesystem") is not bool(service.get("read_only")):
        found.append(f"{where}: readOnlyRootFilesystem differs from Compose's read_only")
    if service.get("cap_drop") == ["ALL"] and security.get("capabilities") != {"drop": ["ALL"]}:
        found.append(f"{where}: Compose drops every capability, Kubernetes does not")
    if (
        "no-new-privileges:true" in (service.get("security_opt") or [])
        and security.get("allowPrivilegeEscalation") is not False
    ):
        found.append(f"{where}: Compose forbids new privileges, Kubernetes does not")
    if bool(service.get("init")) != bool(pod.get("shareProcessNamespace")):
        found.append(f"{where}: Compose's init: true is shareProcessNamespace: true here")
    return found
