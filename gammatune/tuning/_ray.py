"""Trials on a Ray cluster: each stacked group of trials is one Ray task.

Only the training crosses to the cluster. This process keeps the study: the runner claims the
trials, keeps their heartbeats and stores their records in the Optuna storage, as it does for
local training. The experiment and its data splits are put into Ray's object store once; each
Ray worker process builds the local objective from them once and reuses it for every group it
is sent. A group trains on one GPU (``num_gpus=1``) where the cluster has GPUs, else on one
CPU, and the runner hands over as many groups at once as the cluster has such slots. A task
whose node or worker died is run again elsewhere (``RETRIES``); its trials keep their seeds,
so their results are the ones local training gives.

Per-epoch reports (Optuna's pruning, the epoch progress bar) cannot cross from the cluster:
trials sent to Ray are never pruned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from gammatune.config import Config
from gammatune.data import Splits
from gammatune.device import autocast_dtype, resolve_device
from gammatune.errors import ConfigError, GammatuneError, StudyError, redact
from gammatune.record import Setting
from gammatune.training import Reporter
from gammatune.tuning._objective import make_objective, parallel_trials
from gammatune.tuning._runner import Objective, Outcome

if TYPE_CHECKING:
    from types import ModuleType

Executor = Literal["local", "ray"]
RETRIES = 3  # how often a group whose node or worker died is run again on another node
PROBE_TIMEOUT_S = 5.0  # Ray itself waits minutes for an address where nothing listens
# While the groups train, the head is asked every HEAD_CHECK_S whether it still answers; one
# silent for HEAD_LOST_S is lost: the stage stops with one line and fails its trials in flight.
# (Ray's own driver waits 60 s, then exits with status 1 and leaves them RUNNING.)
HEAD_CHECK_S = 2.0
HEAD_LOST_S = 10.0
_INSTALL = "pip install 'gammatune[ray]'"


def ray_objective(
    config: Config, splits: Splits, *, address: str | None = None
) -> tuple[Objective, int]:
    """Connect to the Ray cluster at ``address`` and return an objective that trains there,
    with how many trials to hand it at once.

    Args:
        config: The experiment.
        splits: Its data, shipped to the cluster once.
        address: ``host:port`` of the cluster's head (or a ``ray://`` client address);
            default: the ``RAY_ADDRESS`` environment variable, else ``auto`` (the cluster that
            ``ray start`` last started on this machine).

    Returns:
        The objective (``[setting, ...] -> [outcome, ...]``; per-epoch reporters are not
        called) and ``parallel x slots``: the trials of one stack times the groups the cluster
        trains at once (its GPUs, else its CPUs).

    Raises:
        ConfigError: Ray is not installed, or ``train.device`` asks for CUDA on a cluster
            without GPUs.
        StudyError: No cluster answers at ``address``.
    """
    ray = _import_ray()
    _connect(ray, address or os.environ.get("RAY_ADDRESS") or "auto")
    resources, slots = _task_resources(ray, config)
    key = uuid.uuid4().hex  # this run's objective in each worker's cache
    # The storage URL and the MLflow URI (their passwords) stay here: the cluster only trains,
    # this process stores and tracks. In a list, so that Ray passes the object on as a
    # reference, fetched once per worker.
    train = config.train.model_copy(update={"mlflow": False})
    shipped = [ray.put((config.model_copy(update={"storage": None, "train": train}), splits))]
    remote = ray.remote(_train_group).options(
        max_retries=RETRIES, retry_exceptions=False, **resources
    )
    head = _head(ray)
    sizing = ray.remote(_parallel).options(max_retries=RETRIES, **resources)
    parallel = _gather(ray, [sizing.remote(key, shipped)], head=head)[0]

    def objective(
        settings: list[Setting],
        reporters: list[Reporter | None] | None = None,
        trials: list[tuple[str, int]] | None = None,
    ) -> list[Outcome]:
        del reporters  # an Optuna trial lives in this process: no pruning on the cluster
        names = trials or [("trial", i) for i in range(len(settings))]
        starts = range(0, len(settings), parallel)
        groups = [(settings[i : i + parallel], names[i : i + parallel]) for i in starts]
        done = _gather(ray, [remote.remote(key, shipped, *group) for group in groups], head=head)
        return [outcome for outcomes in done for outcome in outcomes]

    return objective, parallel * slots


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray: Ray is not installed; {_INSTALL}.") from None
    return ray


def _connect(ray: ModuleType, address: str) -> None:
    """Join the cluster as a driver (never start one), or fail in seconds with one line. A
    process already connected (its own ``ray.init``) keeps its connection. The workers' logs
    stay on the cluster, so that they do not run through the progress bars."""
    if ray.is_initialized():
        return
    where = _bootstrap_address(address)
    try:
        if where != "auto":  # else this Ray resolves it only inside ray.init
            socket.create_connection(_host_port(where), PROBE_TIMEOUT_S).close()
            _handshake(where.removeprefix("ray://"))
    except (OSError, ValueError) as exc:
        raise StudyError(
            f"ray: no cluster answers at {where} ({exc}); start one (`ray start --head`) or "
            "give its head's address with --address or RAY_ADDRESS."
        ) from None
    with _entrypoint_without_secrets(ray):
        ray.init(address=where, logging_level=logging.WARNING, log_to_driver=False)


def _handshake(where: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Wait at most ``timeout_s`` for the gRPC handshake of the head at ``where`` (Ray's GCS,
    or its client server for ``ray://``): a port that accepts and never answers (a frozen
    head, another program) would hold ``ray.init`` for minutes.

    Raises:
        OSError: No handshake in time.
    """
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # a TLS cluster: a plain channel cannot tell; Ray's own checks apply
    import grpc

    channel = grpc.insecure_channel(where)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise OSError(
            f"a connection opens, but nothing answered Ray's handshake in {timeout_s:g} s"
        ) from None
    finally:
        channel.close()


def _head(ray: ModuleType) -> str | None:
    """``host:port`` of the cluster's GCS, to watch while waiting; None where this Ray cannot
    say (a ``ray://`` client)."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - no address to watch: Ray's own timeouts apply
        return None


def _wait(ray: ModuleType, refs: list[Any], head: str | None) -> None:
    """Until every task in ``refs`` is done, asking the head every ``HEAD_CHECK_S`` whether it
    still answers.

    Raises:
        StudyError: The head has answered no handshake for ``HEAD_LOST_S``.
    """
    pending, silent_since = list(refs), None
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=HEAD_CHECK_S)
        if not pending or head is None:
            continue
        try:
            socket.create_connection(_host_port(head), HEAD_CHECK_S).close()
            _handshake(head, HEAD_CHECK_S)
            silent_since = None
        except (OSError, ValueError) as exc:
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= HEAD_LOST_S:
                raise StudyError(
                    f"ray: lost the cluster's head at {head} ({exc}; for {HEAD_LOST_S:g} s); "
                    "the trials in flight are failed: run the same command again once the "
                    "cluster is back."
                ) from None


def _host_port(where: str) -> tuple[str, int]:
    host, _, port = where.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def _entrypoint_without_secrets(ray: ModuleType) -> Iterator[None]:
    """Ray records this process's command line as the job's entrypoint, and its dashboard shows
    it to whoever reaches the dashboard (``/api/jobs/``); a ``--storage`` URL there holds the
    database's password. While joining, Ray is given the command line with every URL's
    password hidden.

    Raises:
        ConfigError: The command line holds a password and this Ray records its entrypoint
            some other way (it would be shown).
    """
    shown = subprocess.list2cmdline([redact(arg) for arg in sys.orig_argv])
    if shown == subprocess.list2cmdline(sys.orig_argv):
        yield
        return
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    if not callable(getattr(utils, "get_entrypoint_name", None)):  # a Ray that moved it
        raise ConfigError(
            "--storage: the command line holds a password, which this Ray would show on its "
            "dashboard; give the storage URL in the experiment file (`storage:`) instead."
        )
    original = utils.get_entrypoint_name  # type: ignore[union-attr]
    utils.get_entrypoint_name = lambda: shown  # type: ignore[union-attr]
    try:
        yield
    finally:
        utils.get_entrypoint_name = original  # type: ignore[union-attr]


def _bootstrap_address(address: str) -> str:
    """``host:port`` of ``address``; ``auto`` is resolved the way ``ray.init`` does."""
    if address != "auto":
        return address
    try:  # private, but the very lookup ray.init makes for "auto"
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a Ray that moved it: let ray.init resolve "auto" itself
        return address
    try:
        return str(canonicalize_bootstrap_address_or_die("auto"))
    except ConnectionError:
        raise StudyError(
            "ray: no running cluster found (--address auto); start one (`ray start --head`) "
            "or give its head's address with --address or RAY_ADDRESS."
        ) from None


def _task_resources(ray: ModuleType, config: Config) -> tuple[dict[str, float], int]:
    """What one group asks of the cluster (a GPU, else a CPU), and how many fit at once."""
    if config.trainer is not None and config.trainer.resources:  # what one user trial needs
        asked = config.trainer.resources
        names = {"gpus": "num_gpus", "cpus": "num_cpus", "memory": "memory"}
        wanted = {names[k]: float(v) for k, v in asked.items()}
        cluster = ray.cluster_resources()
        have = {"num_gpus": cluster.get("GPU", 0), "num_cpus": cluster.get("CPU", 1),
                "memory": cluster.get("memory", 0)}  # fmt: skip
        fits = [have[k] / v for k, v in wanted.items() if v > 0]
        return wanted, max(1, int(min(fits, default=1)))
    available = ray.cluster_resources()
    n_gpus, n_cpus = int(available.get("GPU", 0)), int(available.get("CPU", 0))
    if config.train.device.startswith("cuda") and n_gpus == 0:
        raise ConfigError(
            f"train.device: {config.train.device!r} but the Ray cluster has no GPUs; "
            "use 'auto' or 'cpu'."
        )
    if n_gpus > 0 and (config.train.device == "auto" or config.train.device.startswith("cuda")):
        return {"num_gpus": 1, "num_cpus": 1}, n_gpus
    return {"num_cpus": 1}, max(1, n_cpus)


def _gather(ray: ModuleType, refs: list[Any], *, head: str | None = None) -> list[Any]:
    """The tasks' results, in order; a user's error raised on the cluster as itself. With
    ``head`` (its GCS address), a head lost meanwhile is a :class:`StudyError` (see
    ``HEAD_LOST_S``) instead of Ray's exit a minute later."""
    try:
        _wait(ray, refs, head)
        return list(ray.get(refs))
    except ray.exceptions.RayTaskError as exc:  # raised by gammatune's code in the task
        _cancel(ray, refs)
        if isinstance(exc.cause, GammatuneError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayError as exc:  # lost more often than RETRIES, or the cluster
        _cancel(ray, refs)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(
            f"ray: a group of trials was lost ({type(exc).__name__}: {reason}); its trials "
            "are failed: run the same command again to retry them."
        ) from None
    except BaseException:  # Ctrl-C or SIGTERM: stop what is still training
        _cancel(ray, refs)
        raise


def _cancel(ray: ModuleType, refs: list[Any]) -> None:
    """Stop the tasks of ``refs`` still running. Only those: a forced cancel of a task that had
    just failed crashed Ray 2.60's driver ("Tried to complete task that was not pending")."""
    with contextlib.suppress(Exception):  # the cluster is gone: then every one is pending
        refs = ray.wait(refs, num_returns=len(refs), timeout=0)[1]
    for ref in refs:
        with contextlib.suppress(Exception):  # finished, or its node is gone: nothing to stop
            ray.cancel(ref, force=True)


# What runs in a Ray worker process: the objective of the current run, built once per process.
_BUILT: dict[str, tuple[Objective, int]] = {}


def _local(key: str, shipped: list[Any]) -> tuple[Objective, int]:
    if key not in _BUILT:
        import ray

        config, splits = ray.get(shipped[0])
        # Ray shows a task only the GPU it was given, as cuda:0.
        name = "cuda" if config.train.device.startswith("cuda") else config.train.device
        device = resolve_device(name)
        objective = make_objective(
            config, splits, device=device, autocast=autocast_dtype(device, config.train.precision)
        )
        _BUILT.clear()  # one run at a time per worker: drop an earlier run's data
        _BUILT[key] = objective, parallel_trials(config, splits, device)
    return _BUILT[key]


def _parallel(key: str, shipped: list[Any]) -> int:
    """How many trials one group stacks, as sized on a worker's own device."""
    return _local(key, shipped)[1]


def _train_group(
    key: str, shipped: list[Any], settings: list[Setting], trials: list[tuple[str, int]]
) -> list[Outcome]:
    """Train ``settings`` as one stack on this worker; the records go back to the driver."""
    return _local(key, shipped)[0](settings, [None] * len(settings), trials)
