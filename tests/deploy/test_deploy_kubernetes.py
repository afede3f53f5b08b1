"""Tier 3: the Kubernetes manifests build with kustomize, validate, and hold their invariants."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from support.params import params_with
from support.rendering import rendered_answers

from .helpers import (
    KUBERNETES,
    OVERLAYS,
    built,
    built_with_all_components,
    component_of,
    component_sets,
    components,
    consumed_queue,
    pod_spec,
    workloads,
)

pytestmark = pytest.mark.timeout(900)

# The cluster version kubectl here speaks, and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())
# Custom resources: kubernetes-validate has no schema for them; test_keda_* and
# test_deploy_monitoring.py check them.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"}
DEPRECATED_KUSTOMIZE_FIELDS = {
    "commonLabels",
    "patchesStrategicMerge",
    "patchesJson6902",
    "bases",
    "vars",
}


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether every selector label is on the object."""
    return all(labels.get(key) == value for key, value in selector.items())


@params_with("use_kubernetes")
def test_every_overlay_builds_with_every_component_combination(variant, rendered):
    """`kubectl kustomize` builds base, each overlay as shipped, and each with any components."""
    project = rendered(variant)
    answers = rendered_answers(project)
    assert built(project, "dev") and built(project, "prod")
    expected_components = {
        "network-policies",
        "monitoring",
        "keda-autoscaling",
        "web-autoscaling",
        "web-ingress",
    }
    expected_components |= {"flower", "flower-ingress"} if answers["use_flower"] else set()
    assert set(components(project)) == expected_components
    for overlay in OVERLAYS:
        for subset in component_sets(project):
            documents = built(project, overlay, subset)
            kinds = [document["kind"] for document in documents]
            assert ("NetworkPolicy" in kinds) == ("network-policies" in subset)
            assert ("ScaledObject" in kinds) == ("keda-autoscaling" in subset)
            assert ("PodMonitor" in kinds) == ("monitoring" in subset)
            assert ("HorizontalPodAutoscaler" in kinds) == ("web-autoscaling" in subset)
            flower = [d for d in workloads(documents) if component_of(d) == "flower"]
            assert len(flower) == (1 if "flower" in subset else 0), (overlay, subset)
            # Every object lands in the overlay's namespace, components' objects included.
            namespaces = {document["metadata"].get("namespace") for document in documents}
            assert namespaces == {answers["project_slug"] + ("-dev" if overlay == "dev" else "")}


@params_with("use_kubernetes")
def test_kubernetes_validate_accepts_every_object(variant, rendered):
    """Every built object is valid for Kubernetes 1.32 and the newest schema, strictly."""
    project = rendered(variant)
    for overlay in OVERLAYS:
        for document in built_with_all_components(project, overlay):
            if document["kind"] in CUSTOM_KINDS:
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    name = f"{document['kind']}/{document['metadata']['name']}"
                    raise AssertionError(f"{overlay}: {name} ({version}): {error}") from error


@params_with("use_kubernetes")
def test_kustomizations_use_current_fields_only(variant, rendered):
    """`labels:` with app.kubernetes.io/* names; no commonLabels, bases, vars or old patches."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    files = sorted((project / KUBERNETES).rglob("kustomization.yaml"))
    assert len(files) == 3 + len(components(project))
    for path in files:
        kustomization = yaml.safe_load(path.read_text())
        assert not DEPRECATED_KUSTOMIZE_FIELDS & set(kustomization), path
    base = yaml.safe_load((project / KUBERNETES / "base" / "kustomization.yaml").read_text())
    pairs = {key: value for entry in base["labels"] for key, value in entry["pairs"].items()}
    assert pairs["app.kubernetes.io/name"] == slug
    assert all(key.startswith("app.kubernetes.io/") for key in pairs)


@params_with("use_kubernetes")
def test_each_file_holds_one_object_named_after_it(variant, rendered):
    """base/ and components/ hold one object per file, named `<metadata.name>-<kind>.yaml`."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    for folder in ("base", "components"):
        for path in (project / KUBERNETES / folder).rglob("*.yaml"):
            if path.name == "kustomization.yaml":
                continue
            (document,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
            name = document["metadata"]["name"]
            assert name.startswith(slug), path
            assert path.name == f"{name}-{document['kind'].lower()}.yaml"


@params_with("use_kubernetes")
def test_every_pod_is_hardened(variant, rendered):
    """Non-root, read-only root, no capabilities, RuntimeDefault seccomp, no token, limits."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    for overlay in OVERLAYS:
        for workload in workloads(built_with_all_components(project, overlay)):
            spec = pod_spec(workload)
            where = f"{overlay}: {workload['metadata']['name']}"
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["securityContext"]["runAsUser"] >= 10000, where
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert spec["automountServiceAccountToken"] is False, where
            assert spec["serviceAccountName"] == f"{slug}-app", where
            empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
            for container in spec["containers"]:
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True, where
                assert security["allowPrivilegeEscalation"] is False, where
                assert security["capabilities"]["drop"] == ["ALL"], where
                for kind in ("requests", "limits"):
                    assert set(container["resources"][kind]) == {"cpu", "memory"}, where
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert mounts.get("/tmp") in empty_dirs, f"{where}: /tmp must be an emptyDir"
                # The overlay's images: replaced the placeholder with a pinned registry image.
                assert container["image"].startswith(f"registry.example.com/{slug}:"), where
                assert not container["image"].endswith(":latest"), where


@params_with("use_kubernetes")
def test_every_role_has_probes(variant, rendered):
    """Web: HTTP live/ready; worker and beat: exec probes; Flower: /healthcheck."""
    project = rendered(variant)
    answers = rendered_answers(project)
    package = answers["package_name"]
    for overlay in OVERLAYS:
        deployments = [
            d for d in built_with_all_components(project, overlay) if d["kind"] == "Deployment"
        ]
        roles = sorted({component_of(d) for d in deployments})
        expected = {"web", "worker"} | {"beat"} if answers["use_beat"] else {"web", "worker"}
        expected |= {"flower"} if answers["use_flower"] else set()
        assert set(roles) == expected
        for deployment in deployments:
            (container,) = pod_spec(deployment)["containers"]
            role = component_of(deployment)
            liveness, readiness = container["livenessProbe"], container["readinessProbe"]
            if role == "web":
                assert liveness["httpGet"]["path"] == "/health/live"
                assert readiness["httpGet"]["path"] == "/health/ready"
            elif role == "flower":
                # flower-ingress moves every page under its URL prefix, /healthcheck too.
                env = {v["name"]: v.get("value") for v in container.get("env", [])}
                prefix = env.get("FLOWER_URL_PREFIX", "")
                assert liveness["httpGet"]["path"] == f"{prefix}/healthcheck"
                assert readiness["httpGet"]["path"] == f"{prefix}/healthcheck"
            else:
                probe = ["python", "-m", f"{package}.probes", role]
                assert liveness["exec"]["command"] == probe
                assert readiness["exec"]["command"] == probe
                assert container["startupProbe"]["exec"]["command"] == probe


@params_with("use_kubernetes")
def test_beat_is_a_single_replica_recreated_never_rolled(variant, rendered):
    """Beat runs replicas 1 with strategy Recreate in every overlay; nothing autoscales it."""
    project = rendered(variant)
    answers = rendered_answers(project)
    for overlay in OVERLAYS:
        documents = built_with_all_components(project, overlay)
        beats = [d for d in workloads(documents) if component_of(d) == "beat"]
        assert len(beats) == (1 if answers["use_beat"] else 0)
        for beat in beats:
            assert beat["spec"]["replicas"] == 1
            assert beat["spec"]["strategy"] == {"type": "Recreate"}
            assert not any(
                d["kind"] == "PodDisruptionBudget" and component_of(d) == "beat" for d in documents
            )
        targets = {
            d["spec"]["scaleTargetRef"]["name"] for d in documents if d["kind"] == "ScaledObject"
        }
        assert not any(target.endswith("-beat") for target in targets)


@params_with("use_kubernetes")
def test_one_worker_deployment_and_budget_per_queue(variant, rendered):
    """Each queue has its own worker Deployment, consuming only it, and a PodDisruptionBudget."""
    project = rendered(variant)
    answers = rendered_answers(project)
    for overlay in OVERLAYS:
        documents = built_with_all_components(project, overlay)
        workers = [d for d in workloads(documents) if component_of(d) == "worker"]
        consumed = sorted(consumed_queue(pod_spec(w)["containers"][0]["command"]) for w in workers)
        assert consumed == sorted(answers["queues"])
        budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
        for workload in [*workers, *[d for d in workloads(documents) if component_of(d) == "web"]]:
            pod_labels = workload["spec"]["template"]["metadata"]["labels"]
            matching = [
                b for b in budgets if labels_match(b["spec"]["selector"]["matchLabels"], pod_labels)
            ]
            assert len(matching) == 1, workload["metadata"]["name"]
            assert matching[0]["spec"]["maxUnavailable"] == 1


@params_with("use_kubernetes")
def test_prod_runs_more_replicas_with_more_resources_than_dev(variant, rendered):
    """prod scales web and workers out and up; dev runs one pod per role."""
    project = rendered(variant)

    def by_name(overlay):
        return {d["metadata"]["name"]: d for d in workloads(built(project, overlay))}

    dev, prod = by_name("dev"), by_name("prod")
    for name, deployment in prod.items():
        role = component_of(deployment)
        if role not in ("web", "worker"):
            continue
        assert deployment["spec"]["replicas"] > dev[name]["spec"]["replicas"] == 1
        prod_memory = pod_spec(deployment)["containers"][0]["resources"]["limits"]["memory"]
        dev_memory = pod_spec(dev[name])["containers"][0]["resources"]["limits"]["memory"]
        assert prod_memory != dev_memory


@params_with("use_kubernetes")
def test_secrets_are_referenced_never_written(variant, rendered):
    """No Secret object and no password in a manifest; pods read the one out-of-band Secret."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    for overlay in OVERLAYS:
        documents = built_with_all_components(project, overlay)
        assert not [d for d in documents if d["kind"] == "Secret"]
        for workload in workloads(documents):
            for container in pod_spec(workload)["containers"]:
                for variable in container.get("env", []):
                    if "value" in variable:
                        assert "://" not in variable["value"], variable
                        assert variable["name"] not in ("SECRET_KEY", "FLOWER_BASIC_AUTH")
                    else:
                        reference = variable["valueFrom"]["secretKeyRef"]
                        assert reference["name"] == f"{slug}-secrets"
                        # Only the diagnostics token may be absent (it disables the endpoints).
                        optional = reference.get("optional", False)
                        assert optional == (variable["name"] == "DIAGNOSTICS_TOKEN"), variable


@params_with("use_kubernetes")
def test_services_and_policies_select_the_right_pods(variant, rendered):
    """Each Service selects its Deployment's pods on a named port; policies open those ports."""
    project = rendered(variant)
    answers = rendered_answers(project)
    documents = built_with_all_components(project, "prod")
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    services = [d for d in documents if d["kind"] == "Service"]
    expected = {"web", "flower"} if answers["use_flower"] else {"web"}
    assert sorted(component_of(s) for s in services) == sorted(expected)
    for service in services:
        (target,) = [
            d
            for d in deployments
            if labels_match(
                service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        ports = {p["name"] for p in pod_spec(target)["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    policies = {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}
    web_policy = policies[f"{answers['project_slug']}-web"]
    assert web_policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    catch_all = policies[f"{answers['project_slug']}-app"]
    assert catch_all["spec"]["ingress"] == []
    assert catch_all["spec"]["policyTypes"] == ["Ingress", "Egress"]


@params_with("use_kubernetes")
def test_keda_scales_each_worker_on_its_own_queue(variant, rendered):
    """One ScaledObject per worker, on the queue its worker consumes, with the broker's scaler."""
    project = rendered(variant)
    answers = rendered_answers(project)
    broker, slug = answers["broker"], answers["project_slug"]
    documents = built(project, "prod", ("keda-autoscaling",))
    workers = {
        d["metadata"]["name"]: consumed_queue(pod_spec(d)["containers"][0]["command"])
        for d in workloads(documents)
        if component_of(d) == "worker"
    }
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    (authentication,) = [d for d in documents if d["kind"] == "TriggerAuthentication"]
    assert authentication["apiVersion"] == "keda.sh/v1alpha1"
    assert authentication["metadata"]["name"] == f"{slug}-{broker}"
    (secret,) = authentication["spec"]["secretTargetRef"]
    assert secret["name"] == f"{slug}-secrets"
    # Redis: KEDA needs host:port; RabbitMQ: the workers' own BROKER_URL (amqp://, vhost in it).
    expected_secret = (
        {"parameter": "address", "key": "REDIS_ADDRESS"}
        if broker == "redis"
        else {"parameter": "host", "key": "BROKER_URL"}
    )
    assert {k: secret[k] for k in ("parameter", "key")} == expected_secret
    assert sorted(d["spec"]["scaleTargetRef"]["name"] for d in scaled) == sorted(workers)
    # Every queue of the answers, once.
    assert sorted(workers.values()) == sorted(answers["queues"])
    for scaled_object in scaled:
        assert scaled_object["apiVersion"] == "keda.sh/v1alpha1"
        assert scaled_object["spec"]["minReplicaCount"] >= 1
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["type"] == broker
        queue = workers[scaled_object["spec"]["scaleTargetRef"]["name"]]
        metadata = trigger["metadata"]
        if broker == "redis":
            assert metadata["listName"] == queue
            assert int(metadata["listLength"]) > 0
        else:
            assert metadata["queueName"] == queue
            assert metadata["mode"] == "QueueLength" and metadata["protocol"] == "amqp"
            assert int(metadata["value"]) > 0
        assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]


@params_with("use_kubernetes")
def test_web_autoscaler_targets_the_web_deployment_on_cpu(variant, rendered):
    """web-autoscaling: an autoscaling/v2 HPA on web's CPU, never below 2, never on beat."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    for overlay in OVERLAYS:
        documents = built(project, overlay, ("web-autoscaling",))
        (autoscaler,) = [d for d in documents if d["kind"] == "HorizontalPodAutoscaler"]
        assert autoscaler["apiVersion"] == "autoscaling/v2"
        target = autoscaler["spec"]["scaleTargetRef"]
        (web,) = [d for d in workloads(documents) if component_of(d) == "web"]
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{slug}-web"}
        assert web["metadata"]["name"] == target["name"]
        assert 2 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]
        (metric,) = autoscaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        # Utilization is relative to the request: the pod must have one.
        assert pod_spec(web)["containers"][0]["resources"]["requests"]["cpu"]


@params_with("use_kubernetes")
def test_ingresses_route_to_their_services_named_ports(variant, rendered):
    """web-ingress: / to the web Service's port; flower-ingress: the prefix to Flower's, with
    FLOWER_URL_PREFIX and every probe under that same prefix."""
    project = rendered(variant)
    answers = rendered_answers(project)
    slug = answers["project_slug"]
    with_flower = ("flower", "flower-ingress") if answers["use_flower"] else ()
    documents = built(project, "prod", (*with_flower, "web-ingress"))
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    ingresses = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Ingress"}
    assert set(ingresses) == {f"{slug}-web"} | ({f"{slug}-flower"} if with_flower else set())
    prefixes = {}
    for name, ingress in ingresses.items():
        assert ingress["apiVersion"] == "networking.k8s.io/v1"
        (rule,) = ingress["spec"]["rules"]
        assert [rule["host"]] == ingress["spec"]["tls"][0]["hosts"]
        (path,) = rule["http"]["paths"]
        backend = path["backend"]["service"]
        assert backend["name"] == name
        # The Service's own port, by the name the Service gives it.
        assert backend["port"]["name"] in {p["name"] for p in services[name]["spec"]["ports"]}
        assert path["pathType"] == "Prefix"
        prefixes[name] = path["path"]
    assert prefixes[f"{slug}-web"] == "/"
    if not with_flower:
        return
    (flower,) = [d for d in workloads(documents) if component_of(d) == "flower"]
    (container,) = pod_spec(flower)["containers"]
    prefix = prefixes[f"{slug}-flower"]
    assert prefix != "/" and not prefix.endswith("/")
    assert {"name": "FLOWER_URL_PREFIX", "value": prefix} in container["env"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == f"{prefix}/healthcheck", probe


@params_with("use_kubernetes")
def test_migrate_job_deletes_itself_and_the_readme_gives_the_apply_order(variant, rendered):
    """The finished Job goes away by TTL, no manual delete; the README waits, then applies."""
    project = rendered(variant)
    slug = rendered_answers(project)["project_slug"]
    for overlay in OVERLAYS:
        (job,) = [d for d in built(project, overlay) if d["kind"] == "Job"]
        assert job["metadata"]["name"] == f"{slug}-migrate"
        ttl = job["spec"]["ttlSecondsAfterFinished"]
        assert 60 <= ttl <= 900
    readme = (project / KUBERNETES / "README.md").read_text()
    assert "kubectl delete" not in readme and "delete job" not in readme.replace("=delete job", "")
    order = [
        f"wait --for=delete job/{slug}-migrate",
        "kubectl apply -k deploy/kubernetes/overlays/prod",
        f"wait --for=condition=complete job/{slug}-migrate",
    ]
    positions = [readme.index(step) for step in order]
    assert positions == sorted(positions)


@params_with("use_kubernetes")
def test_each_component_has_a_readme(variant, rendered):
    """Every optional component says what it needs and how to enable it."""
    project = rendered(variant)
    for name in components(project):
        readme = project / KUBERNETES / "components" / name / "README.md"
        assert f"../../components/{name}" in readme.read_text(), readme
    assert "-secrets" in (project / KUBERNETES / "README.md").read_text()
