"""Each pod of a rendered overlay started as a Docker container, exactly as its spec says.

The closest honest stand-in for a cluster on machines that cannot run one. What the kubelet
would do is done by hand, and nothing more:

- image, command (Docker's entrypoint), args, environment (ConfigMap and Secret references
  resolved from the rendered objects), the user and group, fsGroup as a supplementary group,
  capabilities dropped, no privilege escalation, a read-only root where set, memory and CPU
  limits, shareProcessNamespace as a reaper for PID 1 (`--init`);
- a volume at each mount path: a PersistentVolumeClaim is a Docker volume shared by every pod
  that claims it (a StatefulSet's claim template, one per replica: <template>-<name>-<replica>),
  given to the pod's fsGroup (group-writable, setgid) before the pod starts, or only when its
  root is not yet the group's with fsGroupChangePolicy: OnRootMismatch;
  an emptyDir in memory a tmpfs of its size; a ConfigMap or Secret its files (Secret files with
  their defaultMode, owned by root and the fsGroup), a subPath one file;
- the Services: each container joins one network under the name of every Service whose
  selector matches its labels (a headless Service resolves to every replica);
- each container port published on 127.0.0.1, so that the test can call the probes' paths as
  the kubelet does, from outside the container; an exec probe is `docker exec` of its command;
- `$(VAR)` in an environment value expanded from the variables defined before it, and in the
  command and arguments from the whole environment, as the kubelet does (`$$` is `$`).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from harness import loopback
from k8s.compose import REPO, load_compose
from tests.k8s.manifests import pod_spec

HELPER_IMAGE = "ctloop-serving"  # runs the fsGroup step as root, as the kubelet would


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result


def require_docker() -> None:
    """Skip, saying why, where no Docker engine answers."""
    import pytest

    if shutil.which("docker") is None or docker("info", check=False).returncode:
        pytest.skip("no Docker engine answers `docker info`")


def build_images(only: set[str] | None = None) -> None:
    """The project's images (or `only` those), from the Dockerfiles the Compose file names
    (cached layers reused)."""
    built = set()
    for service in load_compose()["services"].values():
        if only is not None and service["image"] not in only:
            continue
        if "build" in service and service["image"] not in built:
            build = service["build"]
            docker("build", "-q", "-t", service["image"], "-f", str(REPO / build["dockerfile"]),
                   str(REPO / build["context"]), timeout=1800)  # fmt: skip
            built.add(service["image"])


def quantity_bytes(size: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for unit, factor in units.items():
        if size.endswith(unit):
            return int(size[: -len(unit)]) * factor
    return int(size)


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' dependent variables: $(NAME) of a variable defined earlier is replaced, $$ is $,
    and any other $(NAME) stays as it is."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


def cpus(size: str) -> str:
    return str(int(size[:-1]) / 1000) if size.endswith("m") else size


class Pods:
    """The containers, volumes and network of one rendered overlay, removed by close()."""

    def __init__(self, docs: list[dict], workdir: Path) -> None:
        self.docs, self.workdir = docs, workdir
        self.prefix = f"ctloop-k8s-{uuid.uuid4().hex[:8]}"
        self.network = f"{self.prefix}-net"
        self.containers: list[str] = []
        self.volumes: set[str] = set()
        docker("network", "create", self.network)

    def close(self) -> None:
        for name in self.containers:
            docker("rm", "-f", "-v", name, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)
        docker("network", "rm", self.network, check=False)

    # -- the objects a pod refers to ----------------------------------------------------------

    def object_data(self, kind: str, name: str) -> dict[str, str]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name} is not in the overlay"
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in found[0]["data"].items()}
        return found[0]["data"]

    def aliases(self, labels: dict) -> list[str]:
        return [
            doc["metadata"]["name"]
            for doc in self.docs
            if doc["kind"] == "Service" and doc["spec"]["selector"].items() <= labels.items()
        ]

    def env(self, spec: dict) -> dict[str, str]:
        values = {}
        for entry in spec.get("env") or []:
            if "value" in entry:
                values[entry["name"]] = expand(entry["value"], values)
                continue
            source = entry["valueFrom"]
            kind, reference = (
                ("ConfigMap", source["configMapKeyRef"])
                if "configMapKeyRef" in source
                else ("Secret", source["secretKeyRef"])
            )
            data = self.object_data(kind, reference["name"])
            if reference["key"] not in data and reference.get("optional"):
                continue  # as the kubelet does: an optional key that is absent sets nothing
            values[entry["name"]] = data[reference["key"]]
        return values

    # -- volumes ------------------------------------------------------------------------------

    def claim(self, name: str, fs_group: int | None, on_root_mismatch: bool = False) -> str:
        volume = f"{self.prefix}-{name}"
        if volume not in self.volumes:
            docker("volume", "create", volume)
            self.volumes.add(volume)
        if fs_group is not None:  # the kubelet's fsGroup step, at every pod start
            script = (
                f"chgrp -R {fs_group} /volume && chmod -R g+rwX /volume "
                "&& find /volume -type d -exec chmod g+s {} +"
            )
            if on_root_mismatch:  # skipped when the root already is the group's, setgid
                script = (
                    f'[ "$(stat -c %g /volume)" = {fs_group} ] && [ -g /volume ] || {{ {script}; }}'
                )

            docker("run", "--rm", "--user", "0", "--entrypoint", "sh", "-v", f"{volume}:/volume",
                   HELPER_IMAGE, "-c", script)  # fmt: skip
        return volume

    def files(self, pod_name: str, volume: dict, fs_group: int | None) -> Path:
        """A ConfigMap's or Secret's keys as files in a folder of the host."""
        folder = self.workdir / pod_name / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            source = volume["secret"]
            data = self.object_data("Secret", source["secretName"])
            mode = source.get("defaultMode", 0o644)
        else:
            source = volume["configMap"]
            data = self.object_data("ConfigMap", source["name"])
            mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            path = folder / item["path"]
            path.write_text(data[item["key"]])
            try:  # as the kubelet lays them out: root's, readable by the pod's fsGroup
                os.chown(path, 0, fs_group if fs_group is not None else 0)
                path.chmod(mode)
            except PermissionError:  # not root on this machine: readable by everyone instead
                path.chmod(0o444)
        return folder

    def mount_args(self, pod_name: str, pod: dict, spec: dict) -> list[str]:
        fs_group = pod.get("securityContext", {}).get("fsGroup")
        on_root_mismatch = pod.get("securityContext", {}).get("fsGroupChangePolicy") == (
            "OnRootMismatch"
        )
        volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
        args: list[str] = []
        for mount in spec.get("volumeMounts") or []:
            volume, target = volumes[mount["name"]], mount["mountPath"]
            read_only = ",readonly" if mount.get("readOnly") else ""
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                source = self.claim(claim, fs_group, on_root_mismatch)
                args += ["--mount", f"type=volume,src={source},dst={target}{read_only}"]
            elif "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                args += ["--tmpfs", f"{target}:size={quantity_bytes(size)}" if size else target]
            else:
                folder = self.files(pod_name, volume, fs_group)
                source = folder / mount["subPath"] if "subPath" in mount else folder
                args += ["--mount", f"type=bind,src={source},dst={target},readonly"]
        return args

    # -- pods ---------------------------------------------------------------------------------

    def run_args(self, workload: dict, replica: int = 0) -> tuple[str, list[str]]:
        """The `docker run` arguments of the workload's (only) container, and its name."""
        pod = pod_spec(workload)
        template = workload["spec"]
        if workload["kind"] == "CronJob":
            template = template["jobTemplate"]["spec"]
        labels = template["template"]["metadata"]["labels"]
        (spec,) = pod["containers"]
        name = f"{self.prefix}-{workload['metadata']['name']}-{replica}"
        if (
            workload["kind"] == "StatefulSet"
        ):  # each replica's own claims, as the controller names them
            claims = [
                {
                    "name": claim["metadata"]["name"],
                    "persistentVolumeClaim": {
                        "claimName": f"{claim['metadata']['name']}-"
                        f"{workload['metadata']['name']}-{replica}"
                    },
                }
                for claim in workload["spec"].get("volumeClaimTemplates") or []
            ]
            pod = {**pod, "volumes": [*(pod.get("volumes") or []), *claims]}
        security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
        args = ["--name", name, "--network", self.network, "--hostname", name]
        for alias in self.aliases(labels):
            args += ["--network-alias", alias]
        args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', 0)}"]
        if "fsGroup" in security:
            args += ["--group-add", str(security["fsGroup"])]
        for capability in security.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", capability]
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if pod.get("shareProcessNamespace"):
            args.append("--init")
        limits = spec.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", cpus(str(limits["cpu"]))]
        env = self.env(spec)
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        args += self.mount_args(name, pod, spec)
        for port in spec.get("ports") or []:
            args += ["--publish", f"127.0.0.1::{port['containerPort']}"]
        command = [expand(word, env) for word in spec.get("command") or []]
        if command:
            args += ["--entrypoint", command[0]]
        args.append(spec["image"])
        args += command[1:] + [expand(word, env) for word in spec.get("args") or []]
        return name, args

    def start(self, workload: dict, replica: int = 0) -> str:
        name, args = self.run_args(workload, replica)
        self.containers.append(name)
        docker("run", "--detach", *args)
        return name

    def run_to_completion(self, workload: dict, timeout: float = 900) -> tuple[int, str]:
        name = self.start(workload)
        code = int(docker("wait", name, timeout=timeout).stdout.strip())
        return code, docker("logs", "--tail", "60", name, check=False).stderr

    def url(self, name: str, port: int | str) -> str:
        published = docker("port", name, f"{port}/tcp").stdout.splitlines()[0].strip()
        return f"http://{published}"

    def inspect(self, name: str) -> dict:
        import json

        return json.loads(docker("inspect", name).stdout)[0]


def probe_ok(pods: Pods, name: str, spec: dict, probe: dict) -> bool:
    """One try of a probe, as the kubelet makes it: an HTTP probe succeeds on 2xx and 3xx, an exec
    probe when its command exits 0 within the probe's timeout (plus docker exec's own start)."""
    if "exec" in probe:
        timeout = probe.get("timeoutSeconds", 1) + 5
        try:
            ran = docker("exec", name, *probe["exec"]["command"], timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False
        return ran.returncode == 0
    get = probe["httpGet"]
    port = get["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in spec["ports"] if p.get("name") == port)
    try:
        response = loopback.get(pods.url(name, port) + get["path"], timeout=probe["timeoutSeconds"])
    except httpx.HTTPError:
        return False
    return 200 <= response.status_code < 400


def wait_probe(pods: Pods, name: str, spec: dict, probe: dict, slack: float) -> float:
    """Seconds until the probe succeeds, within its budget (times `slack` on a loaded machine)."""
    budget = (probe.get("initialDelaySeconds", 0)) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3
    )
    started = time.monotonic()
    while time.monotonic() - started < budget * slack:
        if pods.inspect(name)["State"]["Status"] != "running":
            logs = docker("logs", "--tail", "40", name, check=False)
            raise AssertionError(f"{name} stopped:\n{logs.stdout}\n{logs.stderr}")
        if probe_ok(pods, name, spec, probe):
            return time.monotonic() - started
        time.sleep(1)
    what = probe["httpGet"]["path"] if "httpGet" in probe else " ".join(probe["exec"]["command"])
    raise AssertionError(f"{name}: {what} did not succeed in {budget * slack} s")


def feedback_through(pods: Pods, replicas: list[str], token: str) -> list[int]:
    """One digit sent as feedback twice through each API replica, alternately: the row numbers
    the replicas answered."""
    from sklearn.datasets import load_digits

    from pictures import encode, render_grid

    digits = load_digits()
    image = base64.b64encode(encode(render_grid(digits.images[3] / 16.0, scale=4))).decode()
    rows = []
    for name in replicas * 2:
        reply = loopback.post(
            pods.url(name, 8080) + "/feedback",
            json={"image": image, "target": str(digits.target[3])},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        rows.append(reply.json()["rows"])
    return rows
