"""fluxrate installed on the real API server by its own chart, with the chart's RBAC, and run as processes.

The chart is rendered with `helm template`; everything a cluster would hold (ServiceAccounts, ConfigMaps,
Roles and ClusterRoles, their bindings, CRDs) is applied as the admin. Pods cannot run (no kubelet), so each
rendered container runs here as a process instead: its command and args, its env and envFrom, and a kubeconfig
holding a token of the container's own ServiceAccount, minted by the TokenRequest API. Only the addresses of
the Stripe stand-in, the SMTP sink and the processes' ports are changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxrate import API_GROUP, API_VERSION
from fluxrate import conditions as cond
from fluxrate_sandbox.processes import FluxrateProcess, WaitTimeout, free_port, wait_for, wait_http_ok
from fluxrate_sandbox.real_kube import KubeRequestError, RealKube
from fluxrate_sandbox.smtp_sink import SmtpSink
from fluxrate_sandbox.stripe_standin import StripeStandin
from tests.chart.conftest import render

GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
Obj = dict[str, Any]
RELEASE = "fr"
RELEASE_NAMESPACE = "fluxrate-system"
# What a cluster holds of a release; Deployments become processes, the rest would need a kubelet or an
# ingress controller and has nothing to say about RBAC.
CLUSTER_STATE_KINDS = ("CustomResourceDefinition", "Namespace", "ServiceAccount", "ConfigMap", "ClusterRole",
                       "Role", "ClusterRoleBinding", "RoleBinding")


@dataclass
class Container:
    """A rendered container as a process: argv after the image's entrypoint, and its environment."""

    deployment: str
    service_account: str
    args: list[str]
    command: list[str] | None
    env: dict[str, str]


@dataclass
class Release:
    kube: RealKube
    values: dict[str, Any]
    docs: list[Obj]
    state_dir: Path
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    @property
    def watch_namespaces(self) -> list[str]:
        return list(self.values.get("watchNamespaces") or [])

    def containers(self, component: str) -> list[Container]:
        """The rendered containers (init containers first) of every Deployment of ``component``."""
        config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in self.docs if d["kind"] == "ConfigMap"}
        found = []
        for deployment in self.docs:
            if deployment["kind"] != "Deployment" or \
                    deployment["metadata"]["labels"].get("app.kubernetes.io/component") != component:
                continue
            pod = deployment["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                env: dict[str, str] = {}
                for source in container.get("envFrom", []):
                    env.update(config_maps[source["configMapRef"]["name"]])
                for var in container.get("env", []):
                    assert "value" in var, f"{deployment['metadata']['name']}: env {var['name']} is not a plain value"
                    env[var["name"]] = var["value"]
                found.append(Container(deployment["metadata"]["name"], pod["serviceAccountName"],
                                       list(container.get("args", [])), container.get("command"), env))
        return found

    async def kubeconfig_for(self, service_account: str) -> Path:
        """A kubeconfig holding a token of one of the release's ServiceAccounts."""
        if service_account not in self.kubeconfigs:
            self.kubeconfigs[service_account] = await self.kube.service_account_kubeconfig(
                RELEASE_NAMESPACE, service_account, self.state_dir / f"kubeconfig-{service_account}")
        return self.kubeconfigs[service_account]

    async def token_of(self, service_account: str) -> str:
        return await self.kube.service_account_token(RELEASE_NAMESPACE, service_account)


async def install(kube: RealKube, values: dict[str, Any], state_dir: Path) -> Release:
    """Apply the chart's cluster state as the admin; its Deployments are left to ``run_component``."""
    docs = render(values, release=RELEASE, namespace=RELEASE_NAMESPACE)
    release = Release(kube, values, docs, state_dir)
    for namespace in [RELEASE_NAMESPACE, *release.watch_namespaces]:
        await kube.ensure_namespace(namespace)
    for kind in CLUSTER_STATE_KINDS:
        objects = [d for d in docs if d["kind"] == kind]
        for doc in objects:
            await kube.apply(doc)
        if kind == "CustomResourceDefinition" and objects:
            await kube.apply_crds(objects)
    return release


@dataclass
class Stack:
    """The real API server, the Stripe stand-in and the SMTP sink, and the chart's processes."""

    kube: RealKube
    release: Release
    stripe: StripeStandin
    smtp: SmtpSink
    operators: list[FluxrateProcess]
    receiver: FluxrateProcess
    receiver_base: str

    async def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        api_version = "v1" if plural in ("secrets", "events") else GROUP_VERSION
        return await self.kube.get_object(api_version, plural, namespace, name)

    async def wait(self, what: str, plural: str, namespace: str, name: str, check: Any,
                   timeout: float = 60.0) -> Obj:
        try:
            return await wait_for(what, lambda: self.get(plural, namespace, name),
                                  lambda o: o is not None and check(o), timeout=timeout, interval=0.2)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{self.diagnosis()}\n{exc}") from None

    def diagnosis(self) -> str:
        """Each process's state when a wait failed: the dead with their last lines, the operators' last peering
        decision (a standby that never resumed, or an active one paused, is what a stuck object looks like)."""
        lines = []
        for proc in [*self.operators, self.receiver]:
            text = proc.log_file.read_text(errors="replace") if proc.log_file.exists() else ""
            peering = [line[:160] for line in text.splitlines()
                       if "kopf._core.engines.peering" in line and "Keep-alive" not in line]
            lines.append(f"{proc.log_file.name}: {'running' if proc.running else 'EXITED'}; {peering[-1:]}")
            if not proc.running:
                lines.extend(line[:200] for line in text.splitlines()[-8:])
        return "\n".join(lines)

    async def wait_condition(self, plural: str, namespace: str, name: str, type_: str, *, status: str | None = None,
                             reason: str | None = None, timeout: float = 60.0) -> Obj:
        def matches(obj: Obj) -> bool:
            found = cond.get((obj.get("status") or {}).get("conditions"), type_)
            return bool(found and (status is None or found["status"] == status)
                        and (reason is None or found["reason"] == reason))

        obj = await self.wait(f"{plural} {namespace}/{name} {type_} {status or ''} {reason or ''}", plural,
                              namespace, name, matches, timeout)
        return cond.get(obj["status"]["conditions"], type_) or {}

    async def events(self, namespace: str, name: str) -> list[Obj]:
        return [e for e in await self.kube.list_objects("v1", "events", namespace)
                if e.get("involvedObject", {}).get("name") == name]

    def logs(self) -> str:
        return "\n".join(p.log_file.read_text(errors="replace") for p in [*self.operators, self.receiver]
                         if p.log_file.exists())


def sandbox_overrides(stripe: StripeStandin, smtp: SmtpSink, receiver_port: int) -> dict[str, str]:
    """The only settings the test changes: where Stripe, SMTP and the receiver are, and faster retries."""
    return {
        "FLUXRATE_PUBLIC_BASE_URL": f"http://127.0.0.1:{receiver_port}",
        "FLUXRATE_STRIPE_API_BASE": stripe.url,
        "FLUXRATE_SMTP_HOST": smtp.host, "FLUXRATE_SMTP_PORT": str(smtp.port), "FLUXRATE_SMTP_SECURITY": "none",
        "FLUXRATE_RETRY_DELAY": "1",
        "FLUXRATE_RECEIVER_HOST": "127.0.0.1", "FLUXRATE_RECEIVER_PORT": str(receiver_port),
        "FLUXRATE_RECEIVER_STATUS_FLUSH_INTERVAL": "0.5",
        "FLUXRATE_LOG_LEVEL": "DEBUG", "FLUXRATE_RECEIVER_LOG_LEVEL": "DEBUG",
    }


async def run_init_container(release: Release, container: Container, overrides: dict[str, str],
                             log_file: Path) -> None:
    assert container.command and container.command[0] == "python", container.command
    kubeconfig = await release.kubeconfig_for(container.service_account)
    env = {**os.environ, **container.env, **overrides, "KUBECONFIG": str(kubeconfig)}
    with log_file.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(sys.executable, *container.command[1:], *container.args,
                                                    env=env, stdout=log, stderr=log)
        code = await asyncio.wait_for(proc.wait(), 120)
    output = await asyncio.to_thread(log_file.read_text)
    assert code == 0, f"init container of {container.deployment} failed:\n{output}"


async def component_processes(release: Release, component: str, overrides: dict[str, str],
                              state_dir: Path) -> list[FluxrateProcess]:
    """Each of the component's Deployments as one process (init containers run to completion first)."""
    processes = []
    for index, container in enumerate(release.containers(component)):
        log_file = state_dir / f"{container.deployment}-{index}.log"
        if container.command:
            await run_init_container(release, container, overrides, log_file)
            continue
        env = {**container.env, **overrides, "KUBECONFIG": str(await release.kubeconfig_for(container.service_account))}
        if component == "operator":  # each replica its own liveness and metrics ports (the chart's are per pod)
            env["FLUXRATE_LIVENESS_ENDPOINT"] = f"http://127.0.0.1:{free_port()}/healthz"
            env["FLUXRATE_METRICS_PORT"] = str(free_port())
        processes.append(FluxrateProcess(container.deployment, container.args, env, log_file))
    return processes


@contextlib.asynccontextmanager
async def chart_stack(kube: RealKube, values: dict[str, Any], state_dir: Path,
                      webhook_time_scale: float = 0.0005) -> AsyncIterator[Stack]:
    """The chart installed and its processes running; ``webhook_time_scale`` scales Stripe's retry schedule."""
    await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
    release = await install(kube, values, state_dir)
    receiver_port = free_port()
    async with StripeStandin(webhook_time_scale=webhook_time_scale) as stripe, SmtpSink() as smtp:
        overrides = sandbox_overrides(stripe, smtp, receiver_port)
        operators = await component_processes(release, "operator", overrides, state_dir)
        (receiver,) = await component_processes(release, "receiver", overrides, state_dir)
        stack = Stack(kube, release, stripe, smtp, operators, receiver, f"http://127.0.0.1:{receiver_port}")
        for proc in [*operators, receiver]:
            await proc.start()
        try:
            await wait_http_ok("the receiver to be ready", f"{stack.receiver_base}/readyz")
            yield stack
        finally:
            await asyncio.gather(*(p.stop() for p in [*operators, receiver]))


async def forbidden(kube: RealKube, token: str, method: str, path: str, body: Any = None) -> bool:
    """Whether the API server refuses this request with 403 for the token's identity."""
    try:
        await kube.request(method, path, body, token=token, expect=(200, 201))
    except KubeRequestError as exc:
        return exc.status == 403
    return False
