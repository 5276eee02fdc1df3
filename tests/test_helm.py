"""The Helm chart, rendered by Helm's own template engine (helm-python-sdk binds Helm's Go SDK,
so no helm binary is needed), every manifest validated against the Kubernetes schemas, and
every value the templates use present in values.yaml and values.schema.json."""

import copy
import json
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[1] / "helm"
KUBERNETES_VERSION = "1.31.0"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())

VARIANTS = {
    "defaults": {},
    "everything off": {
        "autoscaling": {"enabled": False},
        "ingress": {"enabled": False},
        "metrics": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "migration": {"enabled": False},
        "auditAnchor": {"enabled": False},
        "serviceAccount": {"create": False, "name": "idp-runner"},
    },
    "everything set": {
        "image": {"tag": "1.2.3"},
        "imagePullSecrets": [{"name": "registry"}],
        "extraEnv": [{"name": "IDP_PIN_LIFETIME", "value": "240"}],
        "ingress": {
            "tlsSecretName": "",
            "annotations": {
                "cert-manager.io/issuer": "le",
                "nginx.ingress.kubernetes.io/load-balance": "ewma",
            },
        },
        "podAnnotations": {"team": "identity"},
        "auditAnchor": {"existingClaim": "audit-worm", "storageClassName": "worm"},
        "nodeSelector": {"pool": "web"},
        "tolerations": [{"key": "web", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "idp"}},
                        },
                    }
                ]
            }
        },
    },
}


def render(values: dict) -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        files = chart.render(values, name="idp", namespace="auth", is_install=True)
    manifests = []
    for name, text in files.items():
        if name.endswith(".yaml"):
            manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {manifest["kind"]: manifest for manifest in manifests}


def test_chart_lints_without_errors():
    assert helm.lint(str(CHART))["errors"] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(variant):
    manifests = render(VARIANTS[variant])
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_defaults_render_every_kind():
    kinds = {manifest["kind"] for manifest in render({})}
    assert kinds == {
        "Deployment",
        "Service",
        "Ingress",
        "Job",
        "CronJob",
        "PersistentVolumeClaim",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceAccount",
    }


def test_switches_leave_out_what_they_turn_off():
    kinds = {manifest["kind"] for manifest in render(VARIANTS["everything off"])}
    assert kinds == {"Deployment", "Service"}
    deployment = by_kind(render(VARIANTS["everything off"]))["Deployment"]
    assert deployment["spec"]["replicas"] == VALUES["replicaCount"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [port["name"] for port in container["ports"]] == ["http"]


def test_pods_run_as_non_root_on_a_read_only_root_filesystem():
    manifests = by_kind(render({}))
    for kind in ("Deployment", "Job"):
        pod = manifests[kind]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["memory"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]


def test_one_worker_per_pod_by_default():
    # Workers in one pod share a socket and keep-alive connections bunch on one of them;
    # pods behind the ingress do not (README: scaling out).
    container = by_kind(render({}))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["GUNICORN_WORKERS"] == "1"


def test_probes_use_healthz_and_readyz():
    container = by_kind(render({}))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_credentials_come_from_the_existing_secret_only():
    values = {"secrets": {"existingSecret": "idp-prod"}}
    for kind in ("Deployment", "Job"):
        pod = by_kind(render(values))[kind]["spec"]["template"]["spec"]
        env = {item["name"]: item for item in pod["containers"][0]["env"]}
        for name in (
            "IDP_SECRET_KEY",
            "IDP_AUDIT_KEY",
            "IDP_SQLALCHEMY_DATABASE_URI",
            "IDP_VONAGE_API_KEY",
            "IDP_VONAGE_API_SECRET",
            "IDP_MAIL_USERNAME",
            "IDP_MAIL_PASSWORD",
            "IDP_REDIS_URL",
        ):
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "idp-prod", name
            assert "value" not in env[name]
        assert env["IDP_CONFIG"]["value"] == "production"
        assert env["IDP_ISSUER"]["value"] == VALUES["config"]["issuer"]
        # Production refuses to start without it (the activation mail's link to e:service).
        assert env["IDP_PORTAL_URL"]["value"] == VALUES["config"]["portalUrl"]


def test_only_the_migration_job_gets_the_owner_role():
    documents = by_kind(render({}))
    job = documents["Job"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in job["env"]}
    reference = env["IDP_MIGRATION_DATABASE_URI"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "idp", "key": "migration-database-url", "optional": True}
    app = documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "IDP_MIGRATION_DATABASE_URI" not in {item["name"] for item in app["env"]}


def redis_key_reference(values: dict) -> dict:
    pod = by_kind(render(values))["Deployment"]["spec"]["template"]["spec"]
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    return env["IDP_REDIS_URL"]["valueFrom"]["secretKeyRef"]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"autoscaling": {"enabled": False}, "replicaCount": 3, "gunicorn": {"workers": 1}},
        {"autoscaling": {"enabled": False}, "replicaCount": 1, "gunicorn": {"workers": 2}},
    ],
)
def test_redis_is_required_when_several_processes_count(values):
    # Each pod or worker without Redis would grant its own share of every limit.
    assert not redis_key_reference(values).get("optional", False)


def test_the_migration_job_needs_no_redis_key():
    # It only migrates the schema: a Secret without the key must not keep it from running.
    job = by_kind(render({}))["Job"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in job["env"]}
    assert env["IDP_REDIS_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not redis_key_reference({}).get("optional", False)  # the Deployment still needs it


def test_one_pod_with_one_worker_may_count_in_memory():
    single = {"autoscaling": {"enabled": False}, "replicaCount": 1, "gunicorn": {"workers": 1}}
    assert redis_key_reference(single)["optional"] is True


def test_migration_runs_as_pre_install_and_pre_upgrade_hook():
    job = by_kind(render({}))["Job"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["idp", "db", "upgrade"]


def anchor_pod(values: dict) -> dict:
    cronjob = by_kind(render(values))["CronJob"]
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_the_audit_anchor_is_written_on_a_schedule_to_a_volume_of_its_own():
    documents = by_kind(render({}))
    cronjob = documents["CronJob"]["spec"]
    assert cronjob["schedule"] == VALUES["auditAnchor"]["schedule"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    pod = anchor_pod({})
    [container] = pod["containers"]
    script = container["command"][-1]
    # The last anchor is checked before it is replaced: a cut-off trail fails the run and the
    # anchor that proves it stays.
    assert script.index('idp audit verify --anchor "$ANCHOR"') < script.index(
        'exec idp audit anchor --to "$ANCHOR"'
    )
    env = {item["name"]: item for item in container["env"]}
    assert env["ANCHOR"]["value"] == "/anchors/audit-anchor.json"
    assert env["IDP_AUDIT_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "idp"
    # The app's role reads the trail; the owner's credentials stay with the migration Job.
    assert "IDP_MIGRATION_DATABASE_URI" not in env
    assert env["IDP_REDIS_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["anchors"] == "/anchors"
    claim = next(v for v in pod["volumes"] if v["name"] == "anchors")["persistentVolumeClaim"]
    pvc = documents["PersistentVolumeClaim"]
    assert claim["claimName"] == pvc["metadata"]["name"] == "idp-audit-anchor"
    # The evidence outlives the release.
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pod["securityContext"]["fsGroup"] == 10001  # the non-root user may write the file
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_audit_anchor_may_go_to_an_existing_claim():
    values = {"auditAnchor": {"existingClaim": "audit-worm", "fileName": "head.json"}}
    assert "PersistentVolumeClaim" not in by_kind(render(values))
    pod = anchor_pod(values)
    claim = next(v for v in pod["volumes"] if v["name"] == "anchors")["persistentVolumeClaim"]
    assert claim == {"claimName": "audit-worm"}
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    assert env["ANCHOR"]["value"] == "/anchors/head.json"


def test_metrics_port_is_open_only_to_the_monitoring_namespace():
    manifests = by_kind(render({}))
    service_ports = [port["name"] for port in manifests["Service"]["spec"]["ports"]]
    assert service_ports == ["http"]
    assert manifests["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"][
        "port"
    ] == {"name": "http"}
    rules = manifests["NetworkPolicy"]["spec"]["ingress"]
    metrics_rule = next(rule for rule in rules if rule["ports"][0]["port"] == "metrics")
    assert (
        metrics_rule["from"][0]["namespaceSelector"]["matchLabels"]
        == (VALUES["networkPolicy"]["metricsNamespaceLabels"])
    )


def test_the_schema_rejects_wrong_values():
    for wrong in (
        {"replicaCount": "two"},
        {"config": {"issuer": "http://login.example.com"}},
        {"config": {"portalUrl": "http://portal.example.com/"}},
        {"metrics": {"port": 0}},
        {"auditAnchor": {"schedule": "hourly"}},
        {"auditAnchor": {"fileName": "../etc/anchor.json"}},
        {"typo": True},
    ):
        with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
            chart.validate_schema(wrong)


def referenced_values() -> set[tuple[str, ...]]:
    paths = set()
    for template in (CHART / "templates").iterdir():
        for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", template.read_text()):
            paths.add(tuple(match.group(1).lstrip(".").split(".")))
    return paths


def test_every_referenced_value_exists_in_values_and_schema():
    paths = referenced_values()
    assert ("secrets", "keys") in paths and ("config", "issuer") in paths
    for path in paths:
        values, schema = VALUES, SCHEMA
        for key in path:
            assert isinstance(values, dict) and key in values, f"values.yaml lacks {path}"
            assert key in schema.get("properties", {}), f"values.schema.json lacks {path}"
            values, schema = values[key], schema["properties"][key]


def test_the_defaults_satisfy_the_schema_and_every_value_is_used():
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(copy.deepcopy(VALUES))
    used = {path[: index + 1] for path in referenced_values() for index in range(len(path))}

    def leaves(tree, prefix=()):
        for key, value in tree.items():
            if isinstance(value, dict) and value and (*prefix, key) not in used:
                yield from leaves(value, (*prefix, key))
            else:
                yield (*prefix, key)

    unused = [path for path in leaves(VALUES) if path not in used]
    assert not unused, f"values nobody reads: {unused}"


def test_every_value_is_documented_by_a_comment():
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*[A-Za-z][\w./-]*:", line):
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#"), f"values.yaml line {number + 1} has no comment: {line}"


def test_only_the_ingress_controller_reaches_the_pods_over_http():
    # gunicorn cannot bound a slow client's headers (tests/test_slow_clients.py): only the
    # proxy, which can, may reach a pod.
    rules = by_kind(render({}))["NetworkPolicy"]["spec"]["ingress"]
    http_rules = [rule for rule in rules if rule["ports"][0]["port"] == "http"]
    assert [rule["from"] for rule in http_rules] == [
        [{"namespaceSelector": {"matchLabels": VALUES["networkPolicy"]["ingressNamespaceLabels"]}}]
    ]
