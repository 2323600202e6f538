"""The model repository: Triton layout on disk, loaded versions in memory, atomic swaps and hot reload.

``DIR/<model>/<version>/model.onnx`` with an optional ``DIR/<model>/config.pbtxt``. Readers take a
whole ``LoadedModel`` from a dict that is replaced, never mutated, so a request that started on one
version finishes on it while a reload swaps in another. A version that fails to load is reported and
the one it would have replaced keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lutnet.repository import CONFIG_FILE, MODEL_FILE, MODEL_NAME_RULE, is_model_name, is_version
from lutnet.service.compute import ComputeThreads
from lutnet.service.config import BatchingPolicy, ModelConfig
from lutnet.service.errors import BadRequest, ModelLoadError, NotFound, Unavailable
from lutnet.service.limits import body_limit
from lutnet.service.metrics import PERCENTILES, ServiceMetrics
from lutnet.service.runtime import LoadedModel, create_session
from lutnet.service.settings import Settings

log = logging.getLogger("lutnet.serve")


Fingerprint = tuple[int, int, int, int]  # model file mtime_ns and size, config.pbtxt mtime_ns and size (0 when absent)


@dataclass(frozen=True)
class _Found:
    path: Path
    fingerprint: Fingerprint


def check_name(name: str) -> str:
    """``name`` if it can name a model directory; anything that could leave the repository is a 400."""
    if not is_model_name(name):
        raise BadRequest("model name", expected=MODEL_NAME_RULE, got=repr(name))
    return name


def check_version(version: str) -> int:
    """The version number in a URL; versions are directory names of decimal digits."""
    if not is_version(version):
        raise BadRequest("model version", expected="a positive integer", got=repr(version))
    return int(version)


class ModelRegistry:
    """Every loaded model version, keyed by name and version; the newest loaded version is a model's default."""

    def __init__(self, repository: Path, settings: Settings, metrics: ServiceMetrics) -> None:
        self.repository = Path(repository)
        self.settings = settings
        self.metrics = metrics
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._defaults: dict[str, LoadedModel] = {}
        self._fingerprints: dict[tuple[str, int], Fingerprint] = {}
        self._failures: dict[tuple[str, int], tuple[Fingerprint, str]] = {}
        self._unloaded: set[str] = set()
        self._threads: ComputeThreads | None = None
        self._lock: asyncio.Lock | None = None
        self.body_limit = body_limit(settings, [])  # largest request body accepted; follows the loaded models

    # -- reading (event loop, hot path) --

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        """The model to serve ``name`` (its newest version, or ``version``); 404 unknown, 503 failed to load."""
        if version is None:
            model = self._defaults.get(name)
            return model if model is not None else self._missing(name)
        versions = self._models.get(name)
        if versions is None:
            return self._missing(name)
        model = versions.get(check_version(version))
        if model is None:
            if (name, int(version)) in self._failures:
                raise Unavailable(f"model {name} version {version} is not ready: {self._failures[name, int(version)][1]}")
            raise NotFound(f"model {name} version", expected=f"one of {sorted(versions)}", got=version)
        return model

    def _missing(self, name: str) -> LoadedModel:
        check_name(name)
        reasons = [reason for (failed, _), (_, reason) in self._failures.items() if failed == name]
        if reasons:
            raise Unavailable(f"model {name} is not ready: {reasons[0]}")
        raise NotFound("model", expected=f"one of {sorted(self._models)}", got=repr(name))

    def versions(self, name: str) -> list[int]:
        """Loaded versions of ``name``, oldest first."""
        self.get(name)
        return sorted(self._models[name])

    def loaded(self) -> list[LoadedModel]:
        """Every loaded version of every model."""
        return [model for versions in self._models.values() for model in versions.values()]

    def defaults(self) -> list[LoadedModel]:
        """The default (newest) version of every model."""
        return list(self._defaults.values())

    # -- changing (serialized by one lock; blocking work in threads) --

    async def start(self, threads: ComputeThreads | None = None) -> list[str]:
        """Load every model in the repository; returns the load failures (already logged)."""
        self._threads = threads
        return await self.sync(force=True)

    async def sync(self, *, force: bool = False) -> list[str]:
        """Bring every model in line with the disk: load new and changed versions, drop removed ones."""
        names = await asyncio.to_thread(self._scan_names)
        failures = []
        for name in sorted((names | set(self._models)) - self._unloaded):
            failures += await self._sync_model(name, force=force)
        return failures

    async def load(self, name: str) -> None:
        """Load (or reload) ``name`` from the repository; 400 listing the versions that failed."""
        check_name(name)
        if not await asyncio.to_thread(self._model_dir(name).is_dir):
            raise NotFound("model directory in the repository", expected=f"{self.repository / name}", got="nothing there")
        self._unloaded.discard(name)
        failures = await self._sync_model(name, force=True)
        if failures:
            raise ModelLoadError(f"failed to load model {name}: " + "; ".join(failures))

    async def unload(self, name: str) -> None:
        """Stop serving every version of ``name`` (queued requests finish first); polling leaves it unloaded."""
        check_name(name)
        if name not in self._models and not await asyncio.to_thread(self._model_dir(name).is_dir):
            raise NotFound("model", expected=f"one of {sorted(self._models)}", got=repr(name))
        self._unloaded.add(name)
        async with self._locked():
            await self._install(name, {})
        log.info("unloaded model %s", name)

    async def close(self) -> None:
        """Finish queued requests of every model and stop their queues."""
        for model in self.loaded():
            await model.close()

    async def index(self) -> list[dict[str, Any]]:
        """Every model version on disk or loaded, with its state (READY or UNAVAILABLE) and why."""
        names = await asyncio.to_thread(self._scan_names)
        entries = []
        for name in sorted(names | set(self._models)):
            on_disk = await asyncio.to_thread(self._scan_versions, name) if name in names else {}
            for version in sorted(set(on_disk) | set(self._models.get(name, {}))):
                entries.append({"name": name, "version": str(version), **self._state(name, version)})
        return entries

    def _state(self, name: str, version: int) -> dict[str, str]:
        if version in self._models.get(name, {}):
            return {"state": "READY", "reason": ""}
        if name in self._unloaded:
            return {"state": "UNAVAILABLE", "reason": "unloaded"}
        failure = self._failures.get((name, version))
        return {"state": "UNAVAILABLE", "reason": failure[1] if failure else "not loaded yet"}

    async def _sync_model(self, name: str, *, force: bool) -> list[str]:
        async with self._locked():
            found = await asyncio.to_thread(self._scan_versions, name)
            current = self._models.get(name, {})
            updated, failures = {}, []
            for version, item in sorted(found.items()):
                old = current.get(version)
                built = await self._try_build(name, version, item, failures) if self._needs_build(name, version, item, old, force) else None
                serving = built if built is not None else old  # a failed build leaves the previous version serving
                if serving is not None:
                    updated[version] = serving
            for gone in [key for key in self._failures if key[0] == name and key[1] not in found]:
                del self._failures[gone]
            await self._install(name, updated)
            return failures

    def _needs_build(self, name: str, version: int, found: _Found, old: LoadedModel | None, force: bool) -> bool:
        """Unchanged loaded versions are kept; a version that failed is retried when its files change or when forced."""
        if old is not None and self._fingerprints.get((name, version)) == found.fingerprint:
            return False
        failure = self._failures.get((name, version))
        return force or failure is None or failure[0] != found.fingerprint

    async def _try_build(self, name: str, version: int, found: _Found, failures: list[str]) -> LoadedModel | None:
        try:
            model = await asyncio.to_thread(self._build, name, version, found.path)
        except ModelLoadError as exc:
            self._failures[name, version] = (found.fingerprint, str(exc))
            failures.append(f"version {version}: {exc}")
            log.error("model %s version %s failed to load (the previous version, if any, keeps serving): %s", name, version, exc)
            return None
        self._failures.pop((name, version), None)
        self._fingerprints[name, version] = found.fingerprint
        model.start(self.settings.execution, self._threads, self.settings.inline_below_us)
        log.info("model %s version %s execution: %s", name, version, model.execution_summary())
        return model

    def _build(self, name: str, version: int, path: Path) -> LoadedModel:
        """Blocking: read the config, create the session, warm it up."""
        config = ModelConfig.read(self._model_dir(name))
        policy = BatchingPolicy.resolve(self.settings, config)
        model = LoadedModel(name, version, path, create_session(path, self.settings), policy, self.metrics.for_model(name, version))
        timings = np.array(model.warm_up()) / 1e6
        model.attach_monitor(self.settings)
        log.info(
            "loaded model %s version %s: %s, inputs %s, batching %s; warm-up compute p50 %.3f ms p95 %.3f ms p99 %.3f ms",
            name,
            version,
            model.card.task or "task not stated",
            [spec.to_dict() for spec in model.inputs],
            "on" if policy.enabled and model.batchable else "off",
            *np.percentile(timings, PERCENTILES),
        )
        return model

    async def _install(self, name: str, versions: dict[int, LoadedModel]) -> None:
        """Swap in ``versions`` of ``name`` in one assignment, then drain what they replaced."""
        previous = self._models.get(name, {})
        models = {**self._models, name: versions} if versions else {k: v for k, v in self._models.items() if k != name}
        self._models = models
        self._defaults = {model_name: loaded[max(loaded)] for model_name, loaded in models.items()}
        self.body_limit = body_limit(self.settings, self.loaded())
        for version, old in previous.items():
            if version not in versions:
                self._fingerprints.pop((name, version), None)
            if versions.get(version) is not old:
                await old.close()

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # -- the disk (blocking; called in threads) --

    def _model_dir(self, name: str) -> Path:
        return self.repository / check_name(name)

    def _scan_names(self) -> set[str]:
        if not self.repository.is_dir():
            return set()
        return {entry.name for entry in self.repository.iterdir() if entry.is_dir() and is_model_name(entry.name)}

    def _scan_versions(self, name: str) -> dict[int, _Found]:
        directory = self._model_dir(name)
        if not directory.is_dir():
            return {}
        root = self.repository.resolve()
        config = _stat(directory / CONFIG_FILE)
        found = {}
        for entry in directory.iterdir():
            path = entry / MODEL_FILE
            # A symlink may point anywhere; only files that resolve inside the repository are served.
            if is_version(entry.name) and path.is_file() and path.resolve().is_relative_to(root):
                found[int(entry.name)] = _Found(path, _stat(path) + config)
        return found


def _stat(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (info.st_mtime_ns, info.st_size)
