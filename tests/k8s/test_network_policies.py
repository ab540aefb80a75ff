"""The NetworkPolicies, evaluated as the Kubernetes API defines them (a pod selected by no policy
of a direction is open in that direction; otherwise a connection needs an egress rule of the
source and an ingress rule of the destination that both admit it): only the page and the
scraper reach the API, the dashboard opens no connection, and every flow the stack needs works."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import find

NAMESPACE = {"kubernetes.io/metadata.name": "ctloop"}
DNS = ({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
PODS = ("serving-api", "webapp", "reporting", "prometheus", "alertmanager", "grafana", "init")
PODS += ("reporting-snapshot", "registry-prune")
PORTS = {
    "serving-api": 8080,
    "webapp": 8081,
    "reporting": 8082,
    "prometheus": 9090,
    "alertmanager": 9093,
    "grafana": 3000,
}


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


def allowed(policies, source: tuple[dict, dict], destination: tuple[dict, dict], port: int):
    """Whether a TCP connection from source to destination:port is allowed ((labels, ns))."""
    for direction, own, other, key in (
        ("Egress", source, destination, "to"),
        ("Ingress", destination, source, "from"),
    ):
        if own[1] != NAMESPACE:
            continue  # pods outside the namespace: their policies are not ours
        applying = [
            policy["spec"]
            for policy in policies
            if direction in policy["spec"]["policyTypes"]
            and selects(policy["spec"]["podSelector"], own[0])
        ]
        rules = [rule for spec in applying for rule in spec.get(direction.lower(), [])]
        if applying and not any(rule_admits(rule, key, *other, port) for rule in rules):
            return False
    return True


@pytest.fixture(scope="module")
def policies(local) -> list[dict]:
    return find(local, "NetworkPolicy")


def pod(name: str) -> tuple[dict, dict]:
    return labels(name), NAMESPACE


NEEDED = [
    ("webapp", "serving-api", 8080),
    ("prometheus", "serving-api", 8080),
    ("prometheus", "reporting", 8083),
    ("prometheus", "alertmanager", 9093),
    ("grafana", "prometheus", 9090),
]


@pytest.mark.parametrize(("source", "destination", "port"), NEEDED)
def test_the_flows_the_stack_needs(policies, source, destination, port) -> None:
    assert allowed(policies, pod(source), pod(destination), port)


def test_dns_for_those_that_resolve_names(policies) -> None:
    for name in ("webapp", "prometheus", "grafana"):
        assert allowed(policies, pod(name), DNS, 53), name
    for name in ("serving-api", "reporting", "init"):
        assert not allowed(policies, pod(name), DNS, 53), name


def test_nothing_else(policies) -> None:
    needed = {(source, destination, port) for source, destination, port in NEEDED}
    for source in PODS:
        for destination, port in [*PORTS.items(), ("reporting", 8083)]:
            if source == destination:
                continue
            flow = (source, destination, port)
            assert allowed(policies, pod(source), pod(destination), port) is (flow in needed), flow
    stranger = ({"app": "anything"}, {"kubernetes.io/metadata.name": "other"})
    for destination, port in PORTS.items():
        assert not allowed(policies, stranger, pod(destination), port), destination
    for source in PODS:  # nothing leaves for the internet
        internet = ({}, {"kubernetes.io/metadata.name": "internet"})
        assert not allowed(policies, pod(source), internet, 443), source
