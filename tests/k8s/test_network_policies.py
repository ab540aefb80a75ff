"""The NetworkPolicies, evaluated as the Kubernetes API defines them (a pod selected by no policy
of a direction is open in that direction; otherwise a connection needs an egress rule of the
source and an ingress rule of the destination that both admit it): only the page and the
scraper reach the API, the dashboard opens no connection, only the mirror reaches MLflow and only
MLflow reaches production's PostgreSQL, and every flow the stack needs works."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import find

NAMESPACE = {"kubernetes.io/metadata.name": "ctloop"}
DNS = ({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
PODS = ("serving-api", "webapp", "reporting", "prometheus", "alertmanager", "grafana", "init")
PODS += ("reporting-snapshot", "registry-prune", "mlflow", "mlflow-mirror")
PORTS = {
    "serving-api": 8080,
    "webapp": 8081,
    "reporting": 8082,
    "prometheus": 9090,
    "alertmanager": 9093,
    "grafana": 3000,
    "mlflow": 5000,
}
# What production adds: PostgreSQL, for MLflow and the feedback rows.
PRODUCTION_PODS = (*PODS, "postgres")
PRODUCTION_PORTS = {**PORTS, "postgres": 5432}


def labels(name: str) -> dict:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "ctloop"}


def selects(selector: dict | None, pod_labels: dict) -> bool:
    if selector is None:
        return True
    if any(pod_labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = pod_labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def peer_admits(peer: dict, pod_labels: dict, namespace_labels: dict) -> bool:
    if "ipBlock" in peer:
        return False  # no rule here uses addresses
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif namespace_labels != NAMESPACE:
        return False  # a bare podSelector means this namespace
    return selects(peer.get("podSelector"), pod_labels)


def rule_admits(rule: dict, peers_key: str, pod_labels, namespace_labels, port: int) -> bool:
    ports = rule.get("ports")
    if ports and not any(item.get("port") in (None, port) for item in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(peer_admits(peer, pod_labels, namespace_labels) for peer in peers)


def admits(policies, direction: str, own: tuple[dict, dict], other: tuple[dict, dict], port: int):
    """Whether own's policies of one direction let the connection with other (on port) through."""
    if own[1] != NAMESPACE:
        return True  # pods outside the namespace: their policies are not ours
    applying = [
        policy["spec"]
        for policy in policies
        if direction in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], own[0])
    ]
    rules = [rule for spec in applying for rule in spec.get(direction.lower(), [])]
    key = "to" if direction == "Egress" else "from"
    return not applying or any(rule_admits(rule, key, *other, port) for rule in rules)


def allowed(policies, source: tuple[dict, dict], destination: tuple[dict, dict], port: int):
    """Whether a TCP connection from source to destination:port is allowed ((labels, ns))."""
    return admits(policies, "Egress", source, destination, port) and admits(
        policies, "Ingress", destination, source, port
    )


@pytest.fixture(scope="module")
def policies(local) -> list[dict]:
    return find(local, "NetworkPolicy")


@pytest.fixture(scope="module")
def production_policies(production) -> list[dict]:
    return find(production, "NetworkPolicy")


def pod(name: str) -> tuple[dict, dict]:
    return labels(name), NAMESPACE


NEEDED = [
    ("webapp", "serving-api", 8080),
    ("prometheus", "serving-api", 8080),
    ("prometheus", "reporting", 8083),
    ("prometheus", "alertmanager", 9093),
    ("grafana", "prometheus", 9090),
    ("mlflow-mirror", "mlflow", 5000),
    ("mlflow-mirror", "reporting", 8083),
]
# In production PostgreSQL holds MLflow's store and the feedback rows (DATABASE_URL).
POSTGRES_CLIENTS = ("mlflow", "serving-api", "reporting", "reporting-snapshot", "init")
PRODUCTION_NEEDED = [*NEEDED, *((client, "postgres", 5432) for client in POSTGRES_CLIENTS)]
RESOLVING = ("webapp", "prometheus", "grafana", "mlflow-mirror")


@pytest.mark.parametrize(("source", "destination", "port"), NEEDED)
def test_the_flows_the_stack_needs(policies, source, destination, port) -> None:
    assert allowed(policies, pod(source), pod(destination), port)


@pytest.mark.parametrize(("source", "destination", "port"), PRODUCTION_NEEDED)
def test_the_flows_production_needs(production_policies, source, destination, port) -> None:
    assert allowed(production_policies, pod(source), pod(destination), port)


def test_dns_for_those_that_resolve_names(policies, production_policies) -> None:
    for name in RESOLVING:
        assert allowed(policies, pod(name), DNS, 53), name
    for name in ("serving-api", "reporting", "init", "mlflow"):
        assert not allowed(policies, pod(name), DNS, 53), name
    # In production PostgreSQL's clients resolve `postgres`; PostgreSQL resolves nothing.
    for name in (*RESOLVING, *POSTGRES_CLIENTS):
        assert allowed(production_policies, pod(name), DNS, 53), name
    assert not allowed(production_policies, pod("postgres"), DNS, 53)


def check_nothing_else(policies, pods, ports, needed_flows) -> None:
    needed = set(needed_flows)
    for source in pods:
        for destination, port in [*ports.items(), ("reporting", 8083)]:
            if source == destination:
                continue
            flow = (source, destination, port)
            assert allowed(policies, pod(source), pod(destination), port) is (flow in needed), flow
    stranger = ({"app": "anything"}, {"kubernetes.io/metadata.name": "other"})
    for destination, port in ports.items():
        assert not allowed(policies, stranger, pod(destination), port), destination
    for source in pods:  # nothing leaves for the internet
        internet = ({}, {"kubernetes.io/metadata.name": "internet"})
        assert not allowed(policies, pod(source), internet, 443), source


def test_nothing_else(policies) -> None:
    check_nothing_else(policies, PODS, PORTS, NEEDED)


def test_nothing_else_in_production(production_policies) -> None:
    """Everything above, and PostgreSQL reached by its clients alone (no other pod of the stack,
    no other namespace), reaching nothing."""
    check_nothing_else(production_policies, PRODUCTION_PODS, PRODUCTION_PORTS, PRODUCTION_NEEDED)
    for destination, port in PRODUCTION_PORTS.items():
        assert not allowed(production_policies, pod("postgres"), pod(destination), port)


def test_mlflow_and_postgres_admit_their_clients_alone_whatever_the_others_egress(
    production_policies,
) -> None:
    """Their own ingress rules hold alone, not only because every other pod's egress is denied:
    a pod whose egress some later policy opened still could not reach them."""
    for destination, port, clients in (
        ("mlflow", 5000, ("mlflow-mirror",)),
        ("postgres", 5432, POSTGRES_CLIENTS),
    ):
        for source in PRODUCTION_PODS:
            admitted = admits(production_policies, "Ingress", pod(destination), pod(source), port)
            assert admitted is (source in clients), (source, destination)
        unnamed = ({"app": "debug-shell"}, NAMESPACE)
        assert not admits(production_policies, "Ingress", pod(destination), unnamed, port)
