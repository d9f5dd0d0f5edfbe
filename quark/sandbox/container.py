"""The Docker backend: one throwaway container per program, through the docker SDK's APIClient.

The container has no network (`network_mode="none"`), a read-only root, a size-capped tmpfs at
/tmp as its working folder, the `nobody` user, no capabilities, no-new-privileges, cgroup limits
on memory (no swap), CPU share and pids, rlimits on CPU seconds, file size and open files, and a
capped log. The wall-clock timeout is `wait(timeout=…)`, after which the container is killed; it
is always removed.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound

from quark.errors import QuarkError
from quark.sandbox.base import NOBODY, Language, Limits, RunResult, Sandbox, classify, cut_text, sandbox_env

_LOG_BYTES = "1m"


class DockerSandbox(Sandbox):
    name = "docker"

    def __init__(self, limits: Limits | None = None, *, client: docker.DockerClient | None = None,
                 images: dict[str, str] | None = None) -> None:
        super().__init__(limits)
        try:
            self.client = client or docker.from_env(timeout=30)
            self.client.ping()
        except (DockerException, requests.RequestException) as exc:
            raise QuarkError(f"no Docker daemon answers: {exc}") from None
        self.images = images or {}

    def image(self, lang: Language) -> str:
        return self.images.get(lang.name, lang.docker_image)

    def run(self, code: str, language: str = "python", *, limits: Limits | None = None,
            workspace: Path | None = None) -> RunResult:
        lang = self.resolve(code, language)
        workspace = self.check_workspace(workspace)
        limits = limits or self.limits
        api = self.client.api
        spec = container_spec(api, code, lang, limits, self.image(lang), workspace=workspace)
        try:
            api.inspect_image(spec["image"])
        except ImageNotFound:
            raise QuarkError(f"docker image {spec['image']} is not present: run `docker pull {spec['image']}` "
                             "(the sandbox never pulls on its own)") from None
        start = time.monotonic()
        container = api.create_container(**spec)["Id"]
        try:
            api.start(container)
            timed_out = False
            try:
                status = api.wait(container, timeout=limits.timeout_s)["StatusCode"]
            except requests.RequestException:  # the read timed out: the program outlived its time
                timed_out, status = True, None
                try:
                    api.kill(container)
                except APIError:  # it exited between the timeout and the kill
                    pass
            state = api.inspect_container(container)["State"]
            stdout = _capped(api.logs(container, stdout=True, stderr=False), limits)
            stderr = _capped(api.logs(container, stdout=False, stderr=True), limits)
        finally:
            api.remove_container(container, force=True)
        return RunResult(exit_code=status, stdout=stdout, stderr=stderr, timed_out=timed_out,
                         killed=classify(status, timed_out, stderr, oom=bool(state.get("OOMKilled"))),
                         backend=self.name, duration_s=time.monotonic() - start)


def container_spec(api: docker.APIClient, code: str, lang: Language, limits: Limits, image: str, *,
                   workspace: Path | None = None) -> dict:
    """Keyword arguments of `APIClient.create_container` for one run (builds, never calls the daemon);
    a workspace is bound read-only at /workspace and is the working folder."""
    mb = 1024 * 1024
    host_config = api.create_host_config(
        binds={str(workspace): {"bind": "/workspace", "mode": "ro"}} if workspace else None,
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={limits.tmpfs_mb}m,mode=1777"},
        mem_limit=limits.memory_mb * mb,
        memswap_limit=limits.memory_mb * mb,
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ulimits=[docker.types.Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
                 docker.types.Ulimit(name="fsize", soft=limits.file_size_mb * mb, hard=limits.file_size_mb * mb),
                 docker.types.Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
                 docker.types.Ulimit(name="core", soft=0, hard=0)],
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": _LOG_BYTES}),
    )
    return dict(image=image, command=[lang.interpreters[0], lang.code_flag, code], user=f"{NOBODY}:{NOBODY}",
                working_dir="/workspace" if workspace else "/tmp", network_disabled=True, environment=sandbox_env(lang),
                host_config=host_config,
                use_config_proxy=False, labels={"quark.sandbox": "1"})


def _capped(data: bytes, limits: Limits) -> str:
    head = data[:limits.output_bytes]
    rest = data[limits.output_bytes:]
    tail = rest[-limits.tail_bytes:] if limits.tail_bytes and rest else b""
    return cut_text(head, tail, len(data))
