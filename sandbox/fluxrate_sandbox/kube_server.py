"""Public entry points of the Kubernetes API sandbox: ``KubeSandbox`` and ``run_kube_sandbox``."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp.web
import yaml

from fluxrate_sandbox.kube_emulator import KubeEmulator
from fluxrate_sandbox.kube_faults import Faults
from fluxrate_sandbox.kube_kopf import kopf_peering_crds, kopf_peering_object
from fluxrate_sandbox.kube_tls import ServingPKI, generate_pki, new_token, write_kubeconfig

logger = logging.getLogger(__name__)

CRD_API_VERSION = "apiextensions.k8s.io/v1"


class KubeSandbox:
    """
    An HTTPS Kubernetes API emulator with a kubeconfig, for tests, demos and benchmarks::

        async with KubeSandbox(state_dir=tmp_path) as kube:
            await kube.apply_crds(Path("crds"))
            os.environ["KUBECONFIG"] = str(kube.kubeconfig)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state_dir: Path | str | None = None, *,
                 token: str | None = None, namespaces: Iterable[str] = ("default",),
                 auto_namespaces: bool = False, bookmark_interval: float = 5.0, history_size: int = 5000) -> None:
        self.host = host
        self.port = port
        self._state_dir_arg = Path(state_dir) if state_dir is not None else None
        self._tmpdir: str | None = None
        self.token = token or new_token()
        self.emulator = KubeEmulator(token=self.token, bookmark_interval=bookmark_interval,
                                     history_size=history_size, auto_namespaces=auto_namespaces,
                                     namespaces=tuple(namespaces))
        self._runner: aiohttp.web.ServerRunner | None = None
        self._pki: ServingPKI | None = None
        self._kubeconfig: Path | None = None

    # ---- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._state_dir_arg is None:
            self._tmpdir = tempfile.mkdtemp(prefix="fluxrate-kube-")
        state_dir = self.state_dir
        self._pki = generate_pki(state_dir / "pki", hosts=[self.host] if self.host not in ("0.0.0.0", "::") else [])
        server = aiohttp.web.Server(self.emulator, handler_cancellation=True)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port, ssl_context=self._pki.server_ssl_context())
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._kubeconfig = write_kubeconfig(state_dir / "kubeconfig", server=self.url, ca_pem=self._pki.ca_pem,
                                            token=self.token)
        logger.info("Kubernetes API sandbox listening on %s (kubeconfig: %s)", self.url, self._kubeconfig)

    async def stop(self) -> None:
        self.emulator.break_watches()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # ---- connection details

    @property
    def state_dir(self) -> Path:
        if self._state_dir_arg is not None:
            return self._state_dir_arg
        if self._tmpdir is None:
            raise RuntimeError("the sandbox is not started")
        return Path(self._tmpdir)

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"https://{host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig is None:
            raise RuntimeError("the sandbox is not started")
        return self._kubeconfig

    @property
    def ca_file(self) -> Path:
        if self._pki is None:
            raise RuntimeError("the sandbox is not started")
        return self._pki.ca_file

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting the sandbox CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def client(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp session authenticated against the sandbox (caller closes it)."""
        return aiohttp.ClientSession(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
            connector=aiohttp.TCPConnector(ssl=self.ssl_context()), **kwargs)

    # ---- direct state access (no HTTP)

    async def apply_crds(self, source: Path | str | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply CRDs from a directory/file of YAML (multi-document ok) or from dicts."""
        return [self.apply_crd(doc) for doc in _documents(source) if doc.get("kind") == "CustomResourceDefinition"]

    def apply_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        return self.emulator.apply_crd(crd)

    def apply_kopf_peering(self, name: str = "default", namespaces: Iterable[str] = ()) -> None:
        """Serve kopf's peering CRDs and create the peering objects (cluster-wide, and per namespace)."""
        for crd in kopf_peering_crds():
            self.apply_crd(crd)
        for namespace in [None, *namespaces]:
            body = kopf_peering_object(name, namespace)
            plural = "kopfpeerings" if namespace else "clusterkopfpeerings"
            if self.get_object("kopf.dev/v1", plural, namespace, name) is None:
                self.create_object(body)

    def create_object(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.emulator.create_object(body)

    def patch_object(self, api_version: str, plural: str, namespace: str | None, name: str, patch: dict[str, Any],
                     subresource: str | None = None) -> dict[str, Any]:
        """Merge-patch an object in-process; raises ``kube_errors.ApiError`` (e.g. 422, 409) like the API would."""
        return self.emulator.patch_object(api_version, plural, namespace, name, patch, subresource)

    def delete_object(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.emulator.delete_object(api_version, plural, namespace, name)

    def get_object(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.emulator.get_object(api_version, plural, namespace, name)

    def list_objects(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.emulator.list_objects(api_version, plural, namespace)

    def skipped_cel_rules(self) -> list[Any]:
        """CEL rules of served CRDs that cel-python cannot enforce (see docs/sandbox.md)."""
        seen: list[Any] = []
        for res in self.emulator.resources():
            for rule in res.cel.skipped if res.cel else []:
                if rule not in seen:
                    seen.append(rule)
        return seen


def _documents(source: Path | str | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(source, Path | str):
        return list(source)
    path = Path(source)
    files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
    docs: list[dict[str, Any]] = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                docs.extend(doc.get("items") or [])
            elif isinstance(doc, dict):
                docs.append(doc)
    return docs


async def run_kube_sandbox(host: str = "127.0.0.1", port: int = 0, state_dir: Path | str | None = None, *,
                           crds: Path | str | None = None,
                           on_ready: Callable[[KubeSandbox], None] | None = None, **kwargs: Any) -> None:
    """Serve the sandbox until cancelled (for ``fluxrate sandbox``)."""
    async with KubeSandbox(host, port, state_dir, **kwargs) as kube:
        if crds is not None:
            await kube.apply_crds(crds)
        if on_ready is not None:
            on_ready(kube)
        await asyncio.Event().wait()


class ThreadedKubeSandbox:
    """The sandbox on its own event loop in a daemon thread, for synchronous callers::

        with ThreadedKubeSandbox(state_dir=path) as kube:
            subprocess.run(["kubectl", "--kubeconfig", kube.kubeconfig, "get", "ns"])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-sandbox", daemon=True)
        self.sandbox: KubeSandbox | None = None

    def __enter__(self) -> KubeSandbox:
        self._thread.start()

        async def start() -> KubeSandbox:
            sandbox = KubeSandbox(*self._args, **self._kwargs)
            await sandbox.start()
            return sandbox

        self.sandbox = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=30)
        return self.sandbox

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the sandbox loop (the emulator is not thread-safe)."""
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def __exit__(self, *exc: object) -> None:
        if self.sandbox is not None:
            asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
