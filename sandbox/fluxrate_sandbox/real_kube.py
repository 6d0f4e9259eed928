"""The real Kubernetes control plane for tests, benchmarks and ``fluxrate sandbox --kube real``.

``tests/kube`` is a Go module that builds one binary, ``realkube``, from the Kubernetes and etcd modules
themselves: ``realkube etcd`` (embedded etcd), ``realkube kube-apiserver`` and ``realkube
kube-controller-manager``. ``make realkube`` builds it into ``.cache/realkube/``. This module starts the three
as processes the way envtest does: a secure port on loopback with its own CA, a static admin token, a
service-account issuer and signing key (so the TokenRequest API mints ServiceAccount tokens), RBAC
authorization, the default admission plugins, and etcd's data in the state directory. The controller-manager
runs only the garbage-collector and namespace controllers.

The API server is its own process so a test can restart it while etcd keeps the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fluxrate_sandbox.kube_tls import ServingPKI, generate_pki, new_token, write_kubeconfig
from fluxrate_sandbox.processes import free_port, wait_for

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BINARY_ENV = "FLUXRATE_REALKUBE"
DEFAULT_BINARY = REPO / ".cache" / "realkube" / "realkube"
ADMIN_USER = "fluxrate-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers a test cluster needs: owned objects collected, deleted namespaces emptied.
CONTROLLERS = "garbage-collector-controller,namespace-controller"


class RealKubeUnavailable(RuntimeError):
    """The realkube binary is not built (``make realkube`` builds it; it needs Go)."""


def realkube_binary() -> Path:
    """The built binary: ``$FLUXRATE_REALKUBE`` or ``.cache/realkube/realkube``; raises when it is missing."""
    path = Path(os.environ.get(BINARY_ENV) or DEFAULT_BINARY)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RealKubeUnavailable(
            f"the real Kubernetes API server is not built at {path}: run `make realkube` (needs Go on PATH)"
        )
    return path


class _Process:
    """One control-plane process with its output appended to a log file."""

    def __init__(self, name: str, args: list[str], log_file: Path) -> None:
        self.name, self.args, self.log_file = name, args, log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RealKube:
    """etcd, kube-apiserver and kube-controller-manager on loopback, with an admin kubeconfig::

        with RealKube(tmp_path / "kube") as kube:
            os.environ["KUBECONFIG"] = str(kube.kubeconfig)

    Starting and stopping are synchronous (the processes outlive any one event loop: a pytest session fixture
    shares one control plane between tests); the object helpers are async.
    """

    def __init__(self, state_dir: Path | str, *, host: str = "127.0.0.1", port: int = 0,
                 binary: Path | None = None, start_timeout: float = 120.0) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.port = port or free_port()
        self.binary = binary or realkube_binary()
        self.start_timeout = start_timeout
        self.token = new_token()
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._controllers: _Process | None = None
        self._pki: ServingPKI | None = None
        self._etcd_url = ""
        self.apiserver_starts = 0

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- where things are ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        assert self._pki is not None, "not started"
        return self._pki.ca_file

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, token: str | None = None, **kwargs: Any) -> aiohttp.ClientSession:
        """An HTTP session to the API server, as the admin unless ``token`` is given."""
        return aiohttp.ClientSession(
            base_url=self.url, connector=aiohttp.TCPConnector(ssl=self.ssl_context()),
            headers={"Authorization": f"Bearer {token or self.token}"}, **kwargs,
        )

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._prepare()
        etcd_client, etcd_peer = free_port(), free_port()
        self._etcd = _Process("etcd", [
            str(self.binary), "etcd", "--data-dir", str(self.state_dir / "etcd"),
            "--listen-client-url", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-url", f"http://127.0.0.1:{etcd_peer}",
        ], self.logs_dir / "etcd.log")
        self._etcd.start()
        self._etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.start_apiserver()
        self._controllers = _Process("kube-controller-manager", [
            str(self.binary), "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}", f"--controllers={CONTROLLERS}", "--leader-elect=false",
            "--secure-port=0", "--concurrent-gc-syncs=5", "--v=1",
        ], self.logs_dir / "kube-controller-manager.log")
        self._controllers.start()

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs_dir.mkdir(exist_ok=True)
        self._pki = generate_pki(self.state_dir / "pki", hosts=[self.host])
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.state_dir / "pki" / "sa.key").write_bytes(sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (self.state_dir / "pki" / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        tokens = self.state_dir / "pki" / "tokens.csv"
        tokens.write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        write_kubeconfig(self.kubeconfig, server=self.url, ca_pem=self._pki.ca_pem, token=self.token)

    def _apiserver_args(self) -> list[str]:
        assert self._pki is not None
        pki = self.state_dir / "pki"
        return [
            str(self.binary), "kube-apiserver",
            f"--etcd-servers={self._etcd_url}",
            f"--bind-address={self.host}", f"--advertise-address={self.host}", f"--secure-port={self.port}",
            f"--tls-cert-file={self._pki.cert_file}", f"--tls-private-key-file={self._pki.key_file}",
            f"--client-ca-file={self._pki.ca_file}",
            f"--cert-dir={pki}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]

    def start_apiserver(self) -> None:
        self._apiserver = _Process("kube-apiserver", self._apiserver_args(), self.logs_dir / "kube-apiserver.log")
        self._apiserver.start()
        self.apiserver_starts += 1
        self.wait_ready()

    def restart_apiserver(self, *, kill: bool = True, down_for: float = 0.0) -> None:
        """Stop the API server (SIGKILL by default) and start it again on the same port; etcd keeps its data."""
        if self._apiserver is not None:
            self._apiserver.stop(kill=kill)
        if down_for:
            time.sleep(down_for)
        self.start_apiserver()

    def wait_ready(self) -> None:
        context = self.ssl_context()
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            for proc in (self._etcd, self._apiserver):
                if proc is not None and proc.exited:
                    raise RuntimeError(f"realkube {proc.name} exited:\n{proc.tail()}")
            request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"{exc.code}: {exc.read()[:300]!r}"
            except (OSError, TimeoutError) as exc:
                last = repr(exc)
            time.sleep(0.25)
        tail = self._apiserver.tail() if self._apiserver else ""
        raise RuntimeError(f"the real kube-apiserver was not ready in {self.start_timeout:.0f} s (last: {last})\n"
                           f"kube-apiserver log:\n{tail}")

    def stop(self) -> None:
        for proc in (self._controllers, self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()

    # --- objects ----------------------------------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                      content_type: str = "application/json", expect: Iterable[int] = (200, 201)) -> Any:
        """One API request; the decoded answer, or ``KubeRequestError`` with the server's message.

        A 429 is retried after its Retry-After, as client-go does: a restarted server answers 429 "storage is
        (re)initializing" for custom resources for a moment after it is ready.
        """
        data = None if body is None else json.dumps(body)
        for _ in range(30):
            async with self.client(token=token) as session, session.request(
                    method, path, data=data, headers={"Content-Type": content_type}) as answer:
                text = await answer.text()
                if answer.status == 429:
                    await asyncio.sleep(min(float(answer.headers.get("Retry-After") or 1), 5))
                    continue
                if answer.status not in set(expect):
                    raise KubeRequestError(answer.status, text)
                return json.loads(text) if text else None
        raise KubeRequestError(429, text)

    async def apply_crds(self, source: Path | str | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create (or replace) CRDs and wait until each is Established."""
        from fluxrate_sandbox.kube_server import _documents

        created = []
        for crd in _documents(source):
            created.append(await self.apply(crd))
        for crd in created:
            name = crd["metadata"]["name"]
            await wait_for(f"CRD {name} to be established",
                           lambda name=name: self.request("GET", f"/apis/apiextensions.k8s.io/v1/"
                                                          f"customresourcedefinitions/{name}"),
                           _established, timeout=60, interval=0.1)
        return created

    async def apply(self, body: Mapping[str, Any], *, token: str | None = None) -> dict[str, Any]:
        """Server-side apply one object (create or update it, as ``kubectl apply --server-side --force-conflicts``)."""
        path = object_path(body)
        answer = await self.request(
            "PATCH", f"{path}?fieldManager=fluxrate-tests&force=true", body, token=token,
            content_type="application/apply-patch+yaml",
        )
        return answer  # type: ignore[no-any-return]

    async def get_object(self, api_version: str, plural: str, namespace: str | None,
                         name: str) -> dict[str, Any] | None:
        try:
            path = f"{collection_path(api_version, plural, namespace)}/{name}"
            return await self.request("GET", path)  # type: ignore[no-any-return]
        except KubeRequestError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_objects(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        answer = await self.request("GET", collection_path(api_version, plural, namespace))
        return list(answer.get("items") or [])

    async def create_object(self, body: Mapping[str, Any], *, token: str | None = None) -> dict[str, Any]:
        meta = body["metadata"]
        path = collection_path(body["apiVersion"], plural_of(body["kind"]),
                               None if body["kind"] in _CLUSTER_KINDS else meta.get("namespace", "default"))
        return await self.request("POST", path, body, token=token)  # type: ignore[no-any-return]

    async def patch_object(self, api_version: str, plural: str, namespace: str | None, name: str,
                           patch: Mapping[str, Any], *, subresource: str = "",
                           content_type: str = "application/merge-patch+json") -> dict[str, Any]:
        path = f"{collection_path(api_version, plural, namespace)}/{name}" + (f"/{subresource}" if subresource else "")
        return await self.request("PATCH", path, patch, content_type=content_type)  # type: ignore[no-any-return]

    async def delete_object(self, api_version: str, plural: str, namespace: str | None, name: str) -> None:
        await self.request("DELETE", f"{collection_path(api_version, plural, namespace)}/{name}",
                           expect=(200, 202, 404))

    async def ensure_namespace(self, name: str) -> None:
        await self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    async def service_account_token(self, namespace: str, name: str, *, seconds: int = 7200) -> str:
        """A token for a ServiceAccount, minted by the TokenRequest API (the SA must exist)."""
        answer = await self.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds}},
        )
        return str(answer["status"]["token"])

    async def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig that authenticates as ``system:serviceaccount:<namespace>:<name>``."""
        assert self._pki is not None
        token = await self.service_account_token(namespace, name)
        return write_kubeconfig(path, server=self.url, ca_pem=self._pki.ca_pem, token=token, namespace=namespace)


class KubeRequestError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        self.status = status
        try:
            self.body = json.loads(text)
            message = self.body.get("message", text)
        except ValueError:
            self.body, message = {}, text
        super().__init__(f"{status}: {message}")


def _established(crd: Mapping[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


_CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "ClusterKopfPeering"}


def plural_of(kind: str) -> str:
    """The resource name of the kinds the tests and the sandbox handle (English plurals of their kinds)."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def collection_path(api_version: str, plural: str, namespace: str | None) -> str:
    prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def object_path(body: Mapping[str, Any]) -> str:
    """The REST path of an object of a kind ``plural_of`` names (core, RBAC, CRDs, custom resources)."""
    kind, meta = body["kind"], body["metadata"]
    namespace = None if kind in _CLUSTER_KINDS else meta.get("namespace", "default")
    return f"{collection_path(body['apiVersion'], plural_of(kind), namespace)}/{meta['name']}"


@contextlib.asynccontextmanager
async def running_real_kube(state_dir: Path, **kwargs: Any) -> AsyncIterator[RealKube]:
    """A real control plane with fluxrate's CRDs installed, for the length of the block."""
    from fluxrate import crds

    kube = RealKube(state_dir, **kwargs)
    await asyncio.to_thread(kube.start)
    try:
        await kube.apply_crds(crds.crds_dir())
        yield kube
    finally:
        await asyncio.to_thread(kube.stop)
