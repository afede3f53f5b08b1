"""Tier 3: the alert rules pass promtool and their unit tests; Kubernetes and compose scrape
every role's metrics port, the one entrypoints.py names, and ship the same rules.

The kube-prometheus CRDs (PodMonitor, PrometheusRule) are not in kubernetes-validate: their
structure is checked here. promtool is Debian's `prometheus` package (installed when missing).
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from support.params import params_with, supported_params
from support.prometheus import ensure_prometheus
from support.rendering import rendered_answers

from .commands import load_compose
from .helpers import OVERLAYS, built, component_of, pod_spec, service_commands, workloads

pytestmark = pytest.mark.timeout(600)

MONITORED_ROLES = ("web", "worker", "beat")


def promtool(*args: str, cwd) -> subprocess.CompletedProcess:
    _prometheus, binary = ensure_prometheus()
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alert_groups(project) -> list[dict]:
    return yaml.safe_load((project / "monitoring" / "alerts.yml").read_text())["groups"]


@supported_params()
def test_alert_rules_pass_promtool_and_their_unit_tests(variant, rendered):
    """`promtool check rules` and `promtool test rules` pass on the shipped files."""
    project = rendered(variant)
    checked = promtool("check", "rules", "alerts.yml", cwd=project / "monitoring")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml", cwd=project / "monitoring")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@supported_params()
def test_every_alert_has_a_severity_a_summary_a_runbook_and_a_unit_test(variant, rendered):
    """No alert without its runbook line, and none that the unit tests never fire."""
    project = rendered(variant)
    answers = rendered_answers(project)
    rules = [rule for group in alert_groups(project) for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    expected = {
        "CeleryQueueWithoutConsumer",
        "CeleryOrphanQueueNotEmpty",
        "CeleryDeadLetters",
        "CeleryWorkerDown",
        "CeleryBrokerUnreachable",
        "HttpErrorRateHigh",
        "CeleryTaskFailureRateHigh",
    } | ({"CeleryBeatHeartbeatStale"} if answers["use_beat"] else set())
    assert names == expected
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule["alert"]
    tests = yaml.safe_load((project / "monitoring" / "alerts.test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == names


def metrics_ports(project) -> dict[str, int]:
    return service_commands(project)["metrics_ports"]


@params_with("use_kubernetes")
def test_pod_monitor_scrapes_the_metrics_port_of_every_role(variant, rendered):
    """One PodMonitor selects every pod; web, workers and beat name `metrics` their port."""
    project = rendered(variant)
    answers = rendered_answers(project)
    ports = metrics_ports(project)
    assert set(ports) == {"web", "worker"} | ({"beat"} if answers["use_beat"] else set())
    for overlay in OVERLAYS:
        documents = built(project, overlay, ("monitoring",))
        (monitor,) = [d for d in documents if d["kind"] == "PodMonitor"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
        targets = {r["targetLabel"] for r in endpoint["relabelings"]}
        assert "role" in targets
        selector = monitor["spec"]["selector"]["matchLabels"]
        for workload in workloads(documents):
            role = component_of(workload)
            labels = workload["spec"]["template"]["metadata"]["labels"]
            (container,) = pod_spec(workload)["containers"]
            named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if role in MONITORED_ROLES:
                assert all(labels.get(k) == v for k, v in selector.items()), workload["metadata"]
                assert named["metrics"] == ports[role], (overlay, role)
            else:
                assert "metrics" not in named, (overlay, role)


@params_with("use_kubernetes")
def test_prometheus_rule_holds_the_rules_of_alerts_yml(variant, rendered):
    """The PrometheusRule's groups are monitoring/alerts.yml's, and it lands in the namespace."""
    project = rendered(variant)
    for overlay in OVERLAYS:
        documents = built(project, overlay, ("monitoring",))
        (rule,) = [d for d in documents if d["kind"] == "PrometheusRule"]
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["spec"]["groups"] == alert_groups(project)
        assert rule["metadata"]["namespace"]


@params_with("use_kubernetes")
def test_network_policy_opens_the_metrics_ports_to_the_monitoring_namespace_only(variant, rendered):
    """The metrics ports are open to the namespace `monitoring`; the API's policy never has them."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    ports = set(metrics_ports(project).values())
    documents = built(project, "prod", ("network-policies",))
    policies = {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}
    (ingress,) = policies[f"{slug}-metrics"]["spec"]["ingress"]
    (source,) = ingress["from"]
    assert source == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert {p["port"] for p in ingress["ports"]} == ports
    web_ports = {p["port"] for rule in policies[f"{slug}-web"]["spec"]["ingress"]
                 for p in rule["ports"]}  # fmt: skip
    assert not web_ports & ports


@params_with("use_compose")
def test_compose_monitoring_profile_scrapes_every_role(variant, rendered):
    """`--profile monitoring`: Prometheus scrapes web, every worker service and beat."""
    project = rendered(variant)
    answers = rendered_answers(project)
    ports = metrics_ports(project)
    services = load_compose(project)["services"]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./monitoring:/etc/prometheus:ro" in prometheus["volumes"]
    assert all(not port.startswith("0.0.0.0") and port.startswith("127.0.0.1:")
               for port in prometheus["ports"])  # fmt: skip
    for name, spec in services.items():
        if "build" in spec:
            assert not any(str(ports[kind]) in str(spec.get("ports", []))
                           for kind in ports), f"{name} publishes a metrics port"  # fmt: skip
    config = yaml.safe_load((project / "monitoring" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(ports)
    assert jobs["web"]["static_configs"][0]["targets"] == [f"web:{ports['web']}"]
    (dns,) = jobs["worker"]["dns_sd_configs"]
    workers = sorted(name for name in services if name.startswith("worker-"))
    assert sorted(dns["names"]) == workers and dns["port"] == ports["worker"]
    if answers["use_beat"]:
        assert jobs["beat"]["static_configs"][0]["targets"] == [f"beat:{ports['beat']}"]
    checked = promtool("check", "config", "prometheus.yml", cwd=project / "monitoring")
    assert checked.returncode == 0, checked.stdout + checked.stderr
