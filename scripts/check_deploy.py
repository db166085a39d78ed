#!/usr/bin/env python3
"""Offline checks of what an operator runs (`make test`, via scripts/check-deploy.sh):
docker-compose.yml (`docker-compose config -q` and the Compose Specification's schema),
deploy/kubernetes, deploy/prometheus and the Grafana dashboard.

Every port is held to the code: a service's HTTP port is read from its `httpPort` in
Sources/<Service>/<Service>+CommandLine.swift (the gateway's from GatewayConfiguration), so a
probe, a health check or a scrape target that points elsewhere fails here, not in production.
Exit status 0 when all pass; each failure is one line on stderr.

`python3 scripts/check_deploy.py --dashboard-metrics` prints the metric names the dashboard
queries, one per line (scripts/check_prometheus.py uses them).
"""
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}", file=sys.stderr)


def path(*parts):
    return os.path.join(ROOT, *parts)


# --- the truth: each binary's HTTP port, from the code -------------------------------------

def code_ports():
    """binary name -> default HTTP port, read from the Swift sources."""
    ports = {}
    sources = path("Sources")
    for target in sorted(os.listdir(sources)):
        folder = os.path.join(sources, target)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if not name.endswith("CommandLine.swift"):
                continue
            text = open(os.path.join(folder, name), encoding="utf-8").read()
            binary = re.search(r'binary:\s*"([^"]+)"', text)
            port = re.search(r"static let httpPort = (\d+)", text)
            if binary and port:
                ports[binary.group(1)] = int(port.group(1))
    gateway = open(path("Sources/WarrenGateway/GatewayConfiguration.swift"), encoding="utf-8").read()
    match = re.search(r"public var port = (\d+)", gateway)
    if match:
        ports["api-gateway"] = int(match.group(1))
    return ports


PORTS = code_ports()
SERVICES = {"user-service", "order-service", "payment-service", "event-store", "warren-echo", "api-gateway"}
WITH_DATABASE = {"user-service", "order-service", "payment-service", "event-store"}


def check_code_ports():
    missing = SERVICES - PORTS.keys()
    if missing:
        fail(f"no HTTP port found in the code for {sorted(missing)} (Sources/*/*CommandLine.swift, httpPort)")


# --- Prometheus ------------------------------------------------------------------------------

def prometheus_jobs():
    """job name -> (dns names, port, metrics path) of deploy/prometheus/prometheus.yml."""
    config = yaml.safe_load(open(path("deploy/prometheus/prometheus.yml")))
    jobs = {}
    for job in config.get("scrape_configs", []):
        for sd in job.get("dns_sd_configs", []):
            jobs[job["job_name"]] = (sd.get("names", []), sd.get("port"), job.get("metrics_path", "/metrics"))
    return jobs


def check_prometheus_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        fail("promtool is not installed (Debian: prometheus)")
        return
    result = subprocess.run([promtool, "check", "config", path("deploy/prometheus/prometheus.yml")], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"promtool check config: {result.stdout}{result.stderr}")


# --- docker-compose.yml ----------------------------------------------------------------------

def compose_config():
    tool = shutil.which("docker-compose")
    if tool is None:
        fail("docker-compose is not installed (Debian: docker-compose)")
        return None
    environment = dict(os.environ, JWT_SECRET="check-deploy-only-" + "x" * 32)
    quiet = subprocess.run([tool, "-f", path("docker-compose.yml"), "config", "-q"], capture_output=True, text=True, env=environment, cwd=ROOT)
    if quiet.returncode != 0:
        fail(f"docker-compose config -q: {quiet.stderr.strip()}")
        return None
    # Debian's docker-compose is 1.29; the Compose Specification's schema (bundled with
    # check-jsonschema, which `make test` installs) holds the file to what `docker compose` v2 reads.
    validator = shutil.which("check-jsonschema")
    if validator is None:
        fail("check-jsonschema is not installed (PyPI: check-jsonschema; scripts/broker.sh installs it)")
    else:
        spec = subprocess.run([validator, "--builtin-schema", "vendor.compose-spec", path("docker-compose.yml")], capture_output=True, text=True)
        if spec.returncode != 0:
            fail(f"docker-compose.yml against the Compose Specification: {spec.stdout}{spec.stderr}")
    full = subprocess.run([tool, "-f", path("docker-compose.yml"), "config"], capture_output=True, text=True, env=environment, cwd=ROOT)
    return yaml.safe_load(full.stdout)


def environment_of(service):
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return environment


def check_compose(config, jobs):
    services = config["services"]
    warren = {}
    for name, service in services.items():
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        if command and command[0] in SERVICES:
            warren[name] = (command[0], service)
    if set(b for b, _ in warren.values()) != SERVICES:
        fail(f"docker-compose.yml runs {sorted(b for b, _ in warren.values())}, not every Warren service {sorted(SERVICES)}")
    rabbit_nodes = [name for name, service in services.items() if str(service.get("image", "")).startswith("rabbitmq:")]
    if len(rabbit_nodes) != 3:
        fail(f"docker-compose.yml has {len(rabbit_nodes)} RabbitMQ nodes, not 3")
    if not any(str(s.get("image", "")).startswith("postgres:") for s in services.values()):
        fail("docker-compose.yml has no PostgreSQL")
    published = [str(p.get("published", p)) if isinstance(p, dict) else str(p) for n in rabbit_nodes for p in services[n].get("ports", [])]
    if not any(p == "5672" or p.startswith("5672:") for p in published):
        fail("AMQP 5672 is not published on the host")

    for name, (binary, service) in warren.items():
        environment = environment_of(service)
        port = int(environment.get("HTTP_PORT", PORTS.get(binary, -1)))
        if port != PORTS.get(binary):
            fail(f"compose {name}: HTTP_PORT {port}, but {binary} serves {PORTS.get(binary)} by default (fine only if meant; keep them equal)")
        health = " ".join(service.get("healthcheck", {}).get("test", []))
        if "/health" not in health:
            fail(f"compose {name}: no health check on /health")
        amqp = environment.get("AMQP_URL", "")
        hosts = amqp.split("@", 1)[-1].split("/", 1)[0].split(",")
        if sorted(h.split(":")[0] for h in hosts) != sorted(rabbit_nodes):
            fail(f"compose {name}: AMQP_URL lists {hosts}, not the three nodes {rabbit_nodes}")
        if "jaeger" not in environment.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""):
            fail(f"compose {name}: OTEL_EXPORTER_OTLP_ENDPOINT does not point at jaeger")
        if binary in WITH_DATABASE and not environment.get("DATABASE_URL", "").startswith("postgres://"):
            fail(f"compose {name}: no postgres:// DATABASE_URL")
        if binary != "api-gateway":
            if "container_name" in service or service.get("ports"):
                fail(f"compose {name}: a fixed container_name or host port stops `--scale {name}=3`")
        job = jobs.get(name)
        if job is None:
            fail(f"prometheus.yml has no job for compose service {name}")
        elif name not in job[0] or job[1] != port:
            fail(f"prometheus.yml job {name} scrapes {job[0]}:{job[1]}, not {name}:{port}")
    rabbit_job = jobs.get("rabbitmq")
    if rabbit_job is None or sorted(rabbit_job[0]) != sorted(rabbit_nodes) or rabbit_job[1] != 15692:
        fail(f"prometheus.yml job rabbitmq should scrape {rabbit_nodes} on 15692, not {rabbit_job}")
    for name in ("prometheus", "grafana", "jaeger"):
        if name not in services:
            fail(f"docker-compose.yml has no {name}")
    # Every file the stack mounts from the repository exists.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            kind = volume.get("type") if isinstance(volume, dict) else ("bind" if source.startswith((".", "/")) else "volume")
            if kind == "bind" and not os.path.exists(source if os.path.isabs(source) else path(source)):
                fail(f"compose {name}: mounts {source}, which does not exist")


# --- Kubernetes --------------------------------------------------------------------------------

def check_kubernetes():
    folder = path("deploy/kubernetes")
    kustomization = yaml.safe_load(open(os.path.join(folder, "kustomization.yaml")))
    documents = []
    for resource in kustomization.get("resources", []):
        file = os.path.join(folder, resource)
        if not os.path.isfile(file):
            fail(f"kustomization.yaml names {resource}, which does not exist")
            continue
        try:
            documents += [d for d in yaml.safe_load_all(open(file)) if d]
        except yaml.YAMLError as error:
            fail(f"{resource} does not parse: {error}")
    deployments = {d["metadata"]["name"]: d for d in documents if d.get("kind") == "Deployment"}
    services = [d for d in documents if d.get("kind") == "Service"]
    binaries = set()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        for container in pod["spec"]["containers"]:
            command = (container.get("command") or [""])[0]
            binaries.add(command)
            if command not in PORTS:
                fail(f"kubernetes {name}: runs {command!r}, not a Warren service")
                continue
            environment = {e["name"]: e for e in container.get("env", [])}
            port = int(environment["HTTP_PORT"]["value"]) if "HTTP_PORT" in environment else PORTS[command]
            if port != PORTS[command]:
                fail(f"kubernetes {name}: HTTP_PORT {port} but {command} serves {PORTS[command]} by default")
            named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if port not in named.values():
                fail(f"kubernetes {name}: no containerPort {port} (the port it serves)")
            for probe in ("readinessProbe", "livenessProbe"):
                get = container.get(probe, {}).get("httpGet")
                if not get or get.get("path") != "/health":
                    fail(f"kubernetes {name}: {probe} is not an httpGet of /health")
                    continue
                target = named.get(get["port"], get["port"])
                if target != port:
                    fail(f"kubernetes {name}: {probe} points at port {get['port']} ({target}), but the service serves {port}")
            if not container.get("resources", {}).get("requests"):
                fail(f"kubernetes {name}: no resource requests")
            for secret in ("AMQP_URL",) + (("DATABASE_URL",) if command in WITH_DATABASE else ()) + (("JWT_SECRET",) if command == "api-gateway" else ()):
                if "secretKeyRef" not in environment.get(secret, {}).get("valueFrom", {}):
                    fail(f"kubernetes {name}: {secret} is not taken from a Secret by reference (secretKeyRef)")
    if binaries != SERVICES:
        fail(f"kubernetes runs {sorted(binaries)}, not every Warren service {sorted(SERVICES)}")
    for service in services:
        selector = service["spec"].get("selector", {})
        matches = [d for d in deployments.values() if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        if not matches:
            fail(f"kubernetes Service {service['metadata']['name']} selects no Deployment")
        for deployment in matches:
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if named.get(target, target) not in named.values():
                    fail(f"kubernetes Service {service['metadata']['name']}: targetPort {target} is no port of {deployment['metadata']['name']}")

    # The whole kustomization, built and validated against the bundled schemas (no cluster).
    kubectl = shutil.which("kubectl") or shutil.which("kustomize")
    rendered = None
    if kubectl:
        arguments = [kubectl, "kustomize", folder] if kubectl.endswith("kubectl") else [kubectl, "build", folder]
        result = subprocess.run(arguments, capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"kustomize build: {result.stderr.strip()}")
        else:
            rendered = result.stdout
    validator = shutil.which("kubernetes-validate")
    if validator is None:
        fail("kubernetes-validate is not installed (PyPI: kubernetes-validate)")
        return
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        files = []
        if rendered is not None:
            files.append(os.path.join(scratch, "kustomized.yaml"))
            open(files[0], "w").write(rendered)
        else:
            files = [os.path.join(folder, r) for r in kustomization.get("resources", []) if os.path.isfile(os.path.join(folder, r))]
        result = subprocess.run([validator, "--strict", "--quiet", *files], capture_output=True, text=True)
        if result.returncode != 0:
            fail(f"kubernetes-validate: {result.stdout}{result.stderr}")


# --- Grafana ---------------------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "time", "abs", "clamp_min",
    "clamp_max", "label_replace", "label_join", "vector", "scalar", "absent", "changes", "resets", "round",
    "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "last_over_time", "sort", "sort_desc", "inf", "nan",
}


def metric_names(expr):
    """The metric names of a PromQL expression (label matchers, ranges, groupings, strings and
    Grafana's $variables removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()[:1]
        if word.lower() in PROMQL_WORDS or following == "(" or re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # 1e3, 0.5
        names.add(word)
    return names


def dashboard_exprs():
    dashboard = json.load(open(path("deploy/grafana/dashboards/warren.json")))
    exprs = []

    def walk(panels):
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return dashboard, exprs


def check_dashboard():
    dashboard, exprs = dashboard_exprs()
    if not exprs:
        fail("the Grafana dashboard queries nothing")
    for panel in dashboard.get("panels", []):
        if panel.get("type") != "row" and not panel.get("targets"):
            fail(f"dashboard panel {panel.get('title')!r} has no query")
    datasources = yaml.safe_load(open(path("deploy/grafana/provisioning/datasources/prometheus.yml")))
    uids = {d.get("uid") for d in datasources.get("datasources", [])}
    for panel in dashboard.get("panels", []):
        uid = panel.get("datasource", {}).get("uid")
        if panel.get("type") != "row" and uid not in uids:
            fail(f"dashboard panel {panel.get('title')!r} uses data source {uid!r}, not a provisioned one {sorted(uids)}")
    wanted = {"warren_requests_total", "warren_request_duration_seconds_bucket", "rabbitmq_queue_messages_ready",
              "rabbitmq_queue_consumers", "warren_outbox_pending_events", "orders_settled_total"}
    queried = set().union(*(metric_names(e) for e in exprs)) if exprs else set()
    for name in sorted(wanted - queried):
        fail(f"the dashboard does not show {name}")


def main():
    if sys.argv[1:] == ["--dashboard-metrics"]:
        _, exprs = dashboard_exprs()
        for name in sorted(set().union(*(metric_names(e) for e in exprs))):
            print(name)
        return 0
    check_code_ports()
    jobs = prometheus_jobs()
    check_prometheus_config()
    config = compose_config()
    if config is not None:
        check_compose(config, jobs)
    check_kubernetes()
    check_dashboard()
    if failures:
        print(f"check_deploy: {len(failures)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_deploy: docker-compose.yml, deploy/kubernetes, deploy/prometheus and the dashboard agree with the code (ports {PORTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
