"""The Ray executor for evaluation: the engine's stages on a cluster.

Per work unit (one Parquet row group of the test split), one of two layouts (``--segment-in``):

- ``actor`` (the default without GPUs): ``ScoringActor.evaluate_unit(unit)`` runs both stages
  where the unit was read, as a local worker does: its batches go to the actor's worker threads
  (one per CPU it was given, one torch thread each), then it writes the unit's results + summary.
  Nothing but an acknowledgement crosses the object store.
- ``tasks`` (the default with ``--gpus-per-actor``): ``ScoringActor.score_unit(unit)`` on the
  GPU -> [Scored] in the object store (score map, float16 feature grid) -> ``segment_task``
  (CPUs only) -> the unit's results + summary. The GPU scores while CPU nodes fit the SVMs.

The driver moves unit descriptors and small acknowledgements only, and keeps a bounded number of
units in flight per actor, so memory stays flat however large the archive is. Planning, the stages
and ``metrics.json`` are the engine's (``raydist.engine``): this module knows no model kind and no
metric policy.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import ray

from raydist.config import STALL_TIMEOUT_S, EvalConfig
from raydist.contracts import Scored
from raydist.distributed import WORKER_RUNTIME_ENV
from raydist.engine import results
from raydist.engine.evaluate import collect_unit, finish, plan, submit_unit, worker_pool
from raydist.engine.scoring import DEFAULT_CACHE_MB, Scorer
from raydist.engine.stages import score_unit, segment_unit
from raydist.engine.units import Unit, read_unit
from raydist.errors import ConfigError, StalledError
from raydist.progress import Progress
from raydist.storage import process_options, transient_errors, use_options
from raydist.timing import StageTimes

DEFAULT_TOKEN_FILE = "~/.ray/auth_token"  # Ray writes it the first time anything starts a local Ray


def token_auth_env(environ: dict[str, str] | None = None) -> str | None:
    """Where this client's Ray token comes from (None: nowhere), turning token mode on when the
    user gave one: ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``.

    Ray clients need both ``RAY_AUTH_MODE=token`` and a token. The default token file alone does
    not turn it on: Ray writes ``~/.ray/auth_token`` whenever anything starts a local Ray (the
    demo does), and Ray's own rule (``ray/_private/worker.py``, 2.60) is that an explicit address
    never enables token mode by itself. A client in token mode against a cluster without tokens
    connects, then every actor it creates is cancelled before it runs (issue 36); so the client
    follows the cluster unless told otherwise, and :func:`init` names the file when a cluster
    refuses a client without a token. An explicit ``RAY_AUTH_MODE`` is always kept. The token
    itself is never read, printed or logged here.
    """
    env = os.environ if environ is None else environ
    source = next((v for v in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH") if env.get(v)), None)
    if source is not None and not env.get("RAY_AUTH_MODE"):
        env["RAY_AUTH_MODE"] = "token"
    return source


def _refused_credentials(address: str) -> str | None:
    """Ask the cluster's GCS once whether it accepts this client's credentials (a GCS address
    ``host:port`` only; ``auto`` and ``ray://`` are left to ``ray.init``): the reason when it
    refuses them, None when it accepts them or cannot be asked. Ray itself retries a refused
    client for ~20 s before a bare "Failed to connect"; this answer takes milliseconds."""
    import re
    import socket

    m = re.fullmatch(r"\[?([\w.\-:]+?)\]?:(\d+)", address)
    if m is None:
        return None
    try:  # nothing listening: ray.init's retries and error stand (the GCS client below would wait ~40 s)
        socket.create_connection((m.group(1), int(m.group(2))), timeout=2).close()
    except OSError:
        return None
    try:
        from ray._raylet import GcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray version: ray.init's own error stands
        return None
    try:
        GcsClient(address=address).cluster_id  # noqa: B018  (the request itself is the check)
    except AuthenticationError as e:
        return str(e).split(".")[0]
    except Exception:  # unreachable, starting, ...: ray.init's own retries and error stand
        return None
    return None


def _auth_hint(source: str | None) -> str:
    """Why a cluster may have refused this client, and the fix (names files and variables, never a token)."""
    from pathlib import Path

    mode = os.environ.get("RAY_AUTH_MODE")
    if mode == "token":
        return f"token mode is on ({source or 'RAY_AUTH_MODE=token, token from ' + DEFAULT_TOKEN_FILE}): check that the token is this cluster's"
    if Path(DEFAULT_TOKEN_FILE).expanduser().is_file():
        return (f"if the cluster uses token authentication: a token file exists at {DEFAULT_TOKEN_FILE}, which raydist (like Ray "
                f"for an explicit address) does not use unasked; if it is this cluster's, rerun with RAY_AUTH_MODE=token, or point "
                f"RAY_AUTH_TOKEN_PATH at the cluster's token file")  # fmt: skip
    return ("no Ray token is set here: clusters started from cluster/ use token authentication; export RAY_AUTH_TOKEN_PATH "
            "(the token file `ray get-auth-token` wrote) or RAY_AUTH_TOKEN")


def init(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the cluster (``RAY_ADDRESS`` / ``address``) or start an embedded local Ray."""
    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        source = token_auth_env()
        refused = _refused_credentials(target)
        if refused:  # at once, instead of after Ray's 20 connection attempts
            raise ConfigError(f"the Ray cluster at {target} refused this client's credentials ({refused}); {_auth_hint(source)}")
        try:
            ray.init(address=target, log_to_driver=True)
        except ConnectionError as e:
            raise ConfigError(f"cannot connect to the Ray cluster at {target}: {e}; {_auth_hint(source)}") from None
    else:
        # address="local": always a fresh embedded instance, never a leftover cluster from an earlier `ray start`
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, _node_ip_address="127.0.0.1")


def _use_threads(cpus: float) -> None:
    """Run torch with as many threads as the CPUs Ray gave this worker (at least one): no worker
    oversubscribes its node, and with one CPU (the default) reductions add up in the local
    executor's order (one torch thread per worker), so both executors' numbers are identical."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))


SEGMENT_IN = ("auto", "actor", "tasks")


@dataclass(frozen=True)
class Resources:
    """What each kind of Ray worker asks for; each number sizes one kind and nothing else.

    Scoring actors hold the backbone and resident banks: ``gpus_per_actor=1`` puts each on a GPU
    node (one actor per GPU). ``segment_in`` says where a unit is binarised: ``actor`` (the
    scoring actor binarises its own unit on its worker threads, one per CPU it was given: no
    maps or feature grids cross the object store; the default without GPUs) or ``tasks``
    (segment tasks of ``cpus_per_task`` CPUs, which Ray keeps off GPU nodes while CPU nodes have
    room; the default with GPUs). ``num_actors`` None fills the cluster as it is at the start:
    one actor per ``gpus_per_actor`` GPUs, or, binarising in the actors, one per
    ``cpus_per_actor`` CPUs; with CPU-only segment tasks, one.
    """

    num_actors: int | None = None
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    cpus_per_task: float | None = None
    segment_in: str = "auto"

    def __post_init__(self):
        if self.segment_in not in SEGMENT_IN:
            raise ConfigError(f"--segment-in must be one of {', '.join(SEGMENT_IN)}, got {self.segment_in!r}")
        if (self.num_actors is not None and self.num_actors < 1) or min(self.gpus_per_actor, self.cpus_per_actor, self.cpus_per_task or 0.0) < 0:
            raise ConfigError(f"--num-actors must be >= 1 and resources >= 0, got {self}")
        if self.in_actor and self.cpus_per_task is not None:
            raise ConfigError("--cpus-per-task sizes segment tasks, but the scoring actors binarise here (--segment-in "
                              f"{self.segment_in}{', no GPUs asked' if self.segment_in == 'auto' else ''}); "
                              "add --segment-in tasks to binarise in tasks")  # fmt: skip

    @property
    def in_actor(self) -> bool:
        """Whether the scoring actors binarise their own units (no segment tasks)."""
        return self.segment_in == "actor" or (self.segment_in == "auto" and self.gpus_per_actor == 0)

    @property
    def threads_per_actor(self) -> int:
        """Worker threads of an actor that binarises its units: one per CPU it was given."""
        return max(1, int(self.cpus_per_actor))

    @property
    def task_cpus(self) -> float:
        return 1.0 if self.cpus_per_task is None else self.cpus_per_task

    def resolved(self, cluster: dict[str, float]) -> Resources:
        """These resources with ``num_actors`` and ``segment_in`` made explicit for ``cluster``
        (``ray.cluster_resources()``): what the run asks for, as its report records it."""
        n = self.num_actors
        if n is None:
            if self.gpus_per_actor > 0:
                n = int(cluster.get("GPU", 0.0) / self.gpus_per_actor + 1e-9)
            elif self.in_actor:
                n = int(cluster.get("CPU", 0.0) / max(self.cpus_per_actor, 1.0) + 1e-9)
            n = max(1, n or 1)
        return replace(self, num_actors=n, segment_in="actor" if self.in_actor else "tasks",
                       cpus_per_task=None if self.in_actor else self.task_cpus)  # fmt: skip


def stalled(what: str, stall_s: float) -> StalledError:
    """The error for ``what`` not happening within ``stall_s``, with what the cluster has, to see why."""
    have = {k: v for k, v in ray.available_resources().items() if not k.startswith(("node:", "memory", "object_store"))}
    return StalledError(f"{what} within {stall_s:g} s (--stall-timeout), and no node can ever place it; the cluster has free {have}: "
                        "does any node have the resources this job asks for (its --gpus-per-* / --cpus-per-* flags)?")  # fmt: skip


Demand = dict[str, float]


def demand(cpus: float, gpus: float = 0.0) -> Demand:
    """One worker's resource request as Ray's scheduler sees it (zero amounts ask for nothing)."""
    return {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}


def unplaceable(demands: list[Demand], held: dict[str, Demand] | None = None) -> list[Demand]:
    """The demands that no live node can ever place: Ray's own test for infeasible work (a node's
    total resources), less what this job's started actors hold on each node (``held``, by node id)
    for as long as the job runs. Ray queues such work silently and forever; work that can be placed
    but is slow to start (cold caches, a busy machine) is not in the list."""
    capacities = []
    for node in ray.nodes():
        if node.get("Alive"):
            cap = dict(node.get("Resources", {}))
            for k, v in (held or {}).get(node["NodeID"], {}).items():
                cap[k] = cap.get(k, 0.0) - v
            capacities.append(cap)
    return [d for d in demands if not any(all(cap.get(k, 0.0) >= v - 1e-9 for k, v in d.items()) for cap in capacities)]


def wait_one(refs: list, stall_s: float | None, what: str, demands: list[Demand] = (), held: dict[str, Demand] | None = None) -> list:
    """``ray.wait`` for one of ``refs``. Raises :class:`StalledError` when none is ready for
    ``stall_s`` and one of ``demands`` (what the awaited work asks for) can be placed on no node;
    placeable work is waited for however long it takes (``stall_s`` None: always)."""
    while True:
        ready, _ = ray.wait(refs, num_returns=1, timeout=stall_s)
        if ready:
            return ready
        if unplaceable(list(demands), held):
            raise stalled(what, stall_s)


def _started_nodes(actors: list, res: Resources, stall_s: float) -> list[str]:
    """Each scoring actor's node, once it has started (its model loaded). StalledError when none
    starts for ``stall_s`` and the next cannot be placed (no node has its resources, counting what
    the started ones hold); an actor that is placed but slow to load is waited for."""
    waiting = {a.node.remote(): i for i, a in enumerate(actors)}
    nodes: list[str] = [""] * len(actors)
    while waiting:
        what = f"no scoring actor started (asked: {res.cpus_per_actor:g} CPU, {res.gpus_per_actor:g} GPU each; {len(actors) - len(waiting)} of {len(actors)} running)"
        asked = [demand(res.cpus_per_actor, res.gpus_per_actor)]
        ref = wait_one(list(waiting), stall_s, what, asked, _held([n for n in nodes if n], res))[0]
        nodes[waiting.pop(ref)] = ray.get(ref)
    return nodes


def _held(actor_nodes: list[str], res: Resources) -> dict[str, Demand]:
    """What the started scoring actors hold on each node for the whole job."""
    held: dict[str, Demand] = {}
    for node in actor_nodes:
        held[node] = {k: held.get(node, {}).get(k, 0.0) + v for k, v in demand(res.cpus_per_actor, res.gpus_per_actor).items()}
    return held


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def _ack(unit: Unit, summary: dict[str, Any], times: StageTimes) -> dict[str, Any]:
    """What the driver hears of a written unit (its results and summary stay in storage)."""
    n_errors = sum(im["error"] is not None for im in summary["images"])
    return {"unit": unit.uid, "n_rows": summary["n_rows"], "n_errors": n_errors, "node": _node(), "times": dict(times)}


@ray.remote(max_restarts=2, max_task_retries=2, runtime_env=WORKER_RUNTIME_ENV)
class ScoringActor:
    """Holds the encoder (on its GPU if it was given one) and an LRU of detectors; runs the score
    stage (``score_unit``), or both stages on its worker threads (``evaluate_unit``: ``threads``
    given; started with :func:`units_per_actor` as its ``max_concurrency``, so units are read and
    written while others score)."""

    def __init__(self, model_uri: str, data_uri: str, cfg: EvalConfig, cpus: float, storage_options=None, duplicates=None,
                 cache_mb: float = DEFAULT_CACHE_MB, threads: int | None = None):  # fmt: skip
        _use_threads(cpus)
        use_options(storage_options)  # every filesystem this actor opens, the detector's own reads included
        self.data_uri, self.cfg, self.storage_options = data_uri, cfg, storage_options
        self.times = StageTimes()  # the start-up is reported with the first unit
        self.lock = threading.Lock()
        with self.times("start_scorer"):
            self.scorer = Scorer(model_uri, cfg, cache_mb=cache_mb, storage_options=storage_options, duplicates=duplicates)
        self.pool = worker_pool(threads) if threads else None

    def _fresh_times(self) -> StageTimes:
        """This call's stage clock; the first call's carries the start-up."""
        with self.lock:
            times, self.times = self.times, StageTimes()
        return times

    def _read(self, unit: Unit, times: StageTimes) -> list[dict[str, Any]]:
        with times("read"):
            return read_unit(unit, self.data_uri, self.scorer.columns, self.storage_options)

    @ray.method(retry_exceptions=list(transient_errors()))
    def score_unit(self, unit: Unit) -> tuple[list[Scored], dict[str, float]]:
        times = self._fresh_times()
        rows = self._read(unit, times)
        return score_unit(self.scorer, rows, self.cfg.batch_size, times), times

    @ray.method(retry_exceptions=list(transient_errors()))
    def evaluate_unit(self, unit: Unit, offset: float, out_uri: str) -> dict[str, Any]:
        """Both stages of one unit on this actor's worker threads, then its results and summary;
        idempotent (fixed names)."""
        times = self._fresh_times()
        rows = self._read(unit, times)
        table, summary = collect_unit(unit.uid, submit_unit(self.pool, self.scorer, rows, self.cfg), self.cfg, offset, times)
        with times("write"):
            results.write_unit(out_uri, unit.uid, unit.class_name, table, summary, self.storage_options)
        return _ack(unit, summary, times)

    def node(self) -> str:
        return _node()


@ray.remote(max_retries=3, retry_exceptions=list(transient_errors()), runtime_env=WORKER_RUNTIME_ENV)  # retries: a storage outage longer than botocore's
def segment_task(unit: Unit, scored_unit: tuple[list[Scored], dict[str, float]], cfg: EvalConfig, offset: float, out_uri: str, cpus: float,
                 storage_options=None) -> dict[str, Any]:  # fmt: skip
    """The segment stage of one unit, then its results and summary; idempotent (fixed names)."""
    _use_threads(cpus)
    use_options(storage_options)
    scored, score_times = scored_unit
    times = StageTimes(score_times)
    table, summary = segment_unit(unit.uid, scored, cfg, offset, times)
    with times("write"):
        results.write_unit(out_uri, unit.uid, unit.class_name, table, summary, storage_options)
    return _ack(unit, summary, times)


def units_per_actor(threads: int | None, units: list[Unit], batch_size: int) -> int:
    """Units in flight per scoring actor: one being read (or written) beside enough scoring to keep
    all ``threads`` busy (a unit gives a thread per batch); a scoring-only actor scores one while
    the next is read."""
    if not threads or not units:
        return 2
    rows = sorted(u.n_rows for u in units)[len(units) // 2]
    return 1 + math.ceil(threads / max(1, math.ceil(rows / batch_size)))


def evaluate(
    data_uri: str,
    model_uri: str,
    out_uri: str,
    cfg: EvalConfig | None = None,
    resources: Resources | None = None,
    max_in_flight: int | None = None,
    resume: bool = False,
    cache_mb: float = DEFAULT_CACHE_MB,
    storage_options=None,
    log=print,
    on_progress=None,
    stall_s: float = STALL_TIMEOUT_S,
) -> dict[str, Any]:
    """Evaluate the test split on the connected Ray cluster; ``resume`` keeps current finished units
    (nightly); ``on_progress(progress)`` is called after each unit. The report's ``executor`` says
    what was asked (``num_actors`` and ``segment_in`` resolved), on which node each scoring actor
    ran and how many units each node binarised. Raises :class:`StalledError` when no unit finishes
    (or no scoring actor starts) for ``stall_s``."""
    cfg = cfg or EvalConfig()
    res = (resources or Resources()).resolved(ray.cluster_resources())
    storage_options = {**process_options(), **(storage_options or {})}  # the workers get the driver's
    t0 = time.perf_counter()
    p = plan(data_uri, model_uri, out_uri, cfg, resume, storage_options, log)
    progress = Progress(len(p.todo), p.n_images)
    evaluated = 0
    times = StageTimes()
    actor_nodes: list[str] = []
    segment_nodes: dict[str, int] = {}
    if p.todo:
        threads = res.threads_per_actor if res.in_actor else None
        per_actor = units_per_actor(threads, p.todo, cfg.batch_size)
        actors = [
            ScoringActor.options(num_gpus=res.gpus_per_actor, num_cpus=res.cpus_per_actor, max_concurrency=per_actor if threads else 1).remote(
                model_uri, data_uri, cfg, res.cpus_per_actor, storage_options, p.duplicates, cache_mb, threads
            )
            for _ in range(res.num_actors)
        ]  # fmt: skip
        try:
            actor_nodes = _started_nodes(actors, res, stall_s)
            held = _held(actor_nodes, res)
            limit = max_in_flight or per_actor * len(actors)
            load = [0] * len(actors)  # units each actor is reading or scoring
            pending: dict[ray.ObjectRef, tuple[Unit, int | None]] = {}  # scoring: the actor's index; written: None
            queue = list(p.todo)
            while queue or pending:
                while queue and sum(load) < limit:
                    u = queue.pop(0)
                    i = load.index(min(load))  # the least busy actor: units differ in size
                    call = actors[i].evaluate_unit.remote(u, p.offset, out_uri) if threads else actors[i].score_unit.remote(u)
                    pending[call] = (u, i)
                    load[i] += 1
                n_seg = sum(i is None for _, i in pending.values())
                in_flight = f"{sum(load)} units scoring, {n_seg} segmenting" + ("" if threads else f" ({res.task_cpus:g} CPU per task)")
                # a started actor's calls are always placeable; a segment task may fit no node beside them
                asked = [demand(res.task_cpus)] if n_seg else []
                for ref in wait_one(list(pending), stall_s, f"no unit finished ({in_flight})", asked, held):
                    u, i = pending.pop(ref)
                    if i is not None:
                        load[i] -= 1
                    if i is not None and not threads:  # scored: binarise it in a task
                        task = segment_task.options(num_cpus=res.task_cpus).remote(u, ref, cfg, p.offset, out_uri, res.task_cpus, storage_options)
                        pending[task] = (u, None)
                        continue
                    done = ray.get(ref)
                    evaluated += done["n_rows"]
                    segment_nodes[done["node"]] = segment_nodes.get(done["node"], 0) + 1
                    times.merge(done["times"])
                    log(f"[ray] unit {done['unit']}: {done['n_rows']} images, {done['n_errors']} errors; {progress.step(done['n_rows'])}")
                    if on_progress is not None:
                        on_progress(progress)
        finally:  # a stalled or failed run leaves no actor holding a GPU behind
            for a in actors:
                ray.kill(a)
    executor = {"kind": "ray", **asdict(res), "cache_mb": cache_mb, "stall_timeout_s": stall_s, "placement": {"scoring_actors": actor_nodes, "segment_units": segment_nodes}}
    # stage seconds are summed over workers: the actors' threads, or the scoring actors and the segment tasks side by side
    if res.in_actor:
        workers = res.num_actors * res.threads_per_actor
    else:
        free_cpus = ray.cluster_resources().get("CPU", 1.0) - res.num_actors * res.cpus_per_actor
        workers = res.num_actors + max(1, int(free_cpus / max(res.task_cpus, 1.0)))
    return finish(p, out_uri, executor, evaluated, t0, times, workers, storage_options)


__all__ = ["Resources", "evaluate", "init"]
