"""Running cases: long-lived worker processes under a memory cap, a per-case time limit, outcomes counted.

Outcomes: ``decoded`` (a stream decoded to an output of the declared size, or another input was accepted),
``clean`` (one :class:`~icmkit.errors.IcmError`), ``uncaught`` (any other exception, or an output of the wrong
size), ``hang`` (over the per-case time limit), ``memory`` (MemoryError or an allocator failure, including one a
codec turned into a clean error) and ``died`` (the worker process was killed). Workers run at icmkit's *default*
limits (nothing lowered), with one torch thread and an address-space cap (``RLIMIT_AS``) of what they mapped
after start-up plus ``memory_mb`` — above the ≈5 GB of virtual space torch maps at import, so the cap is a net,
not the measure: each case's own peak RSS is measured (``VmHWM``, reset before every case through
``/proc/self/clear_refs``), and so is its time.
"""

from __future__ import annotations

import os
import pickle
import re
import resource
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from icmkit.fuzz import streams, surfaces

OUTCOMES = ("decoded", "clean", "uncaught", "hang", "memory", "died")
FAILURES = ("uncaught", "hang", "memory", "died")
# How often each target comes up: every stream target once per cycle, the other surfaces by these weights.
SURFACE_WEIGHTS = {"image": 4, "special": 1, "weights": 1, "yaml": 2, "bd": 2, "featlimit": 1}


def default_targets() -> list[str]:
    """Every stream target (each available codec, ``sniff``, ``features``), then every other surface."""
    return streams.stream_targets() + list(surfaces.SURFACES)


def schedule(targets: list[str]) -> list[str]:
    """One cycle of targets: stream targets once each, surfaces :data:`SURFACE_WEIGHTS` times, interleaved."""
    cycle = [t for t in targets if t not in surfaces.SURFACES]
    for name in targets:
        if name in surfaces.SURFACES:
            for k in range(SURFACE_WEIGHTS.get(name, 1)):
                cycle.insert((k * 7 + len(cycle) // 2) % (len(cycle) + 1), name)
    return cycle


def target_of(targets: list[str], index: int) -> str:
    cycle = schedule(targets)
    return cycle[index % len(cycle)]


# -- one case ---------------------------------------------------------------------------------------------
def _release_freed_memory() -> None:
    """Give freed heap back to the system (glibc keeps it otherwise), so one case's peak does not count as the
    next one's resident start."""
    import ctypes
    import gc

    gc.collect(0)  # the young generation only: a full collection costs ~0.2 s with torch loaded
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_rss_reset() -> None:
    _release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (Linux ≥ 4.0)
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            found = re.search(r"VmHWM:\s+(\d+) kB", handle.read())
        if found:
            return int(found.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_case(corpus, states, targets, seed: int, index: int):
    """(target, recipe, the callable that runs the case, the checker of its output)."""
    target = target_of(targets, index)
    if target in surfaces.SURFACES:
        recipe, run = surfaces.surface_case(states, target, seed, index)
        return target, recipe, run, lambda out: None
    data, recipe = streams.mutate(corpus, target, seed, index)
    return (
        target,
        recipe,
        lambda: streams.decode(target, data),
        lambda out: streams.check_output(target, data, out),
    )


def run_case(corpus, states, targets, seed: int, index: int) -> dict:
    from icmkit.errors import IcmError

    try:
        target, recipe, run, check = prepare_case(corpus, states, targets, seed, index)
    except Exception as exc:  # noqa: BLE001 - a fuzzer bug must not end the run; it shows in the report
        target, recipe = target_of(targets, index), f"case preparation failed: {exc!r}"
        return {"index": index, "target": target, "recipe": recipe, "outcome": "uncaught", "detail": recipe,
                "seconds": 0.0, "rss_mb": 0.0}  # fmt: skip
    _peak_rss_reset()
    start = time.perf_counter()
    detail = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = run()
        problem = check(out)
        outcome, detail = ("uncaught", f"WrongOutput: {problem}") if problem else ("decoded", "")
        del out
    except IcmError as exc:
        outcome = "memory" if streams._is_memory(exc) else "clean"
        detail = f"{type(exc).__name__}: {exc}" if outcome == "memory" else ""
    except Exception as exc:  # noqa: BLE001 - counting these is the point
        outcome = "memory" if streams._is_memory(exc) else "uncaught"
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
        detail = f"{type(exc).__name__} at {where}: {' '.join(str(exc).split())[:200]}"
    seconds = time.perf_counter() - start
    return {
        "index": index,
        "target": target,
        "recipe": recipe[:200],
        "outcome": outcome,
        "detail": detail,
        "seconds": seconds,
        "rss_mb": _peak_rss_mb(),
    }


# -- worker process -----------------------------------------------------------------------------------------
def _send(stream, message) -> None:
    blob = pickle.dumps(message)
    stream.write(struct.pack("<Q", len(blob)) + blob)
    stream.flush()


def _read_exact(stream, count: int) -> bytes:
    # Unbuffered reads (os.read on the descriptor): a buffered reader could swallow a second message
    # that select() then never reports.
    chunks, fd = [], stream.fileno()
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _receive(stream):
    (length,) = struct.unpack("<Q", _read_exact(stream, 8))
    return pickle.loads(_read_exact(stream, length))


def _limit_memory(extra_mb: int) -> int:
    """RLIMIT_AS = what is mapped now + ``extra_mb``; returns the limit in MiB."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + extra_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit >> 20


def _warm(corpus, states, targets, seed: int) -> None:
    """Load every model a case may touch (all qualities), so that loading never counts as a case."""
    import icmkit
    from icmkit.codecs import get_codec

    for name in targets:
        if name in surfaces.SURFACES or name in streams.EXTRA_TARGETS:
            continue
        codec = get_codec(name)
        for quality in getattr(codec.quality, "allowed", None) or codec.quality.grid:
            try:
                codec.model(quality)
            except Exception:  # noqa: BLE001 - a missing rate point shows up as a case outcome
                pass
        for stream in corpus.get(name, [])[:1]:
            streams.decode(name, stream)
    if any(t in targets for t in ("featlimit", "special", "image")):
        import numpy as np

        icmkit.predict(np.zeros((32, 32, 3), np.uint8))  # the default classifier
        feature_codecs = [t for t in targets if t in corpus and t not in streams.EXTRA_TARGETS]
        for name in feature_codecs:
            if get_codec(name).kind.value == "feature":
                icmkit.predict(corpus[name][0])  # its backbone's tail
    for index in range(40):  # first use of every surface's code paths (imports, lazy tables)
        target = target_of(targets, index)
        if target in surfaces.SURFACES:
            run_case(corpus, states, targets, seed + 1, index)


def worker_main() -> None:
    """Serve cases over stdin/stdout: ("corpus", targets), ("init", corpus, targets, seed, memory_mb), then
    ("run", [indices])."""
    import torch

    torch.set_num_threads(1)
    # The channel gets its own descriptor; descriptor 1 becomes stderr, so that nothing a library prints — Python
    # or C (a codec library's printf) — can corrupt it.
    sys.stdout.flush()
    stdin, stdout = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    corpus = targets = seed = states = None
    workdir = Path(tempfile.mkdtemp(prefix="icm-fuzz-"))
    while True:
        try:
            message = _receive(stdin)
        except EOFError:
            return
        if message[0] == "corpus":
            _send(stdout, streams.build_corpus([t for t in message[1] if t not in surfaces.SURFACES]))
        elif message[0] == "init":
            _, corpus, targets, seed, memory_mb = message
            states = surfaces.prepare([t for t in targets if t in surfaces.SURFACES], workdir)
            _warm(corpus, states, targets, seed)
            _peak_rss_reset()
            baseline = _peak_rss_mb()  # the models every case shares, loaded
            _send(stdout, {"limit_mb": _limit_memory(memory_mb) if memory_mb else None, "baseline_mb": baseline})
        elif message[0] == "run":
            for index in message[1]:
                _send(stdout, run_case(corpus, states, targets, seed, index))


class Worker:
    """One worker process (``python -m icmkit.fuzz --worker``) and the cases sent to it but not yet answered.

    Args:
        env: The worker's whole environment (the run's: ``ICM_MAX*`` limits removed, one thread, offline).
    """

    def __init__(self, env: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "icmkit.fuzz", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            stderr=None if os.environ.get("FUZZ_DEBUG") else subprocess.DEVNULL,
        )
        self.pending: list[int] = []
        self.started = time.monotonic()  # when the oldest pending case began

    def ask(self, message, timeout: float | None = None):
        _send(self.proc.stdin, message)
        return self.read(timeout)

    def read(self, timeout: float | None):
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError
        return _receive(self.proc.stdout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # only ever our own child, by its handle
        self.proc.wait()


# -- the run -------------------------------------------------------------------------------------------------
@dataclass
class Summary:
    """A fuzz run's counts: outcomes per target, failures, the slowest and heaviest cases, time and memory."""

    cases: int
    seed: int
    targets: list[str]
    memory_mb: int
    timeout_s: float
    outcomes: Counter = field(default_factory=Counter)
    per_target: dict = field(default_factory=lambda: defaultdict(Counter))
    target_seconds: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)
    worst: dict = field(default_factory=dict)
    heaviest: dict = field(default_factory=dict)
    worst_by_outcome: dict = field(default_factory=dict)  # accepted inputs at the limits vs refused ones
    heaviest_by_outcome: dict = field(default_factory=dict)
    slow: list = field(default_factory=list)  # cases over the time goal
    heavy: list = field(default_factory=list)  # cases over the memory goal
    peak_rss_mb: float = 0.0
    baseline_rss_mb: float = 0.0  # a worker's RSS after start-up: torch and every model the cases share
    address_space_limit_mb: int | None = None
    limits: dict = field(default_factory=dict)
    corpus_s: float = 0.0
    wall_s: float = 0.0
    goal_seconds: float = 2.0
    goal_rss_mb: float = 1536.0

    def add(self, result: dict) -> None:
        self.outcomes[result["outcome"]] += 1
        self.per_target[result["target"]][result["outcome"]] += 1
        self.target_seconds[result["target"]] += result["seconds"]
        brief = {k: result.get(k) for k in ("index", "target", "recipe", "seconds", "rss_mb", "outcome")}
        if result.get("rss_mb", 0.0) > self.peak_rss_mb:
            self.peak_rss_mb = result["rss_mb"]
            self.heaviest = brief
        if result["seconds"] > self.worst.get("seconds", -1):
            self.worst = brief
        outcome = result["outcome"]
        if result["seconds"] > self.worst_by_outcome.get(outcome, {}).get("seconds", -1):
            self.worst_by_outcome[outcome] = brief
        if result.get("rss_mb", 0.0) > self.heaviest_by_outcome.get(outcome, {}).get("rss_mb", -1):
            self.heaviest_by_outcome[outcome] = brief
        if result["seconds"] > self.goal_seconds:
            self.slow.append(brief)
        if result.get("rss_mb", 0.0) > self.goal_rss_mb:
            self.heavy.append(brief)
        if result["outcome"] in FAILURES:
            self.failures.append({k: result[k] for k in ("index", "target", "recipe", "outcome", "detail")})

    def as_dict(self) -> dict:
        return {
            "cases": self.cases,
            "seed": self.seed,
            "targets": self.targets,
            "limits": self.limits,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "outcomes": {k: self.outcomes.get(k, 0) for k in OUTCOMES},
            "per_target": {t: {k: self.per_target[t].get(k, 0) for k in OUTCOMES} for t in self.targets},
            "seconds_per_target": {t: round(self.target_seconds[t], 2) for t in self.targets},
            "failures": self.failures,
            "worst_case": self.worst,
            "heaviest_case": self.heaviest,
            "worst_case_by_outcome": self.worst_by_outcome,
            "heaviest_case_by_outcome": self.heaviest_by_outcome,
            "over_time_goal": self.slow[:50],
            "over_memory_goal": self.heavy[:50],
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "baseline_rss_mb": round(self.baseline_rss_mb, 1),
            "address_space_limit_mb": self.address_space_limit_mb,
            "corpus_s": round(self.corpus_s, 2),
            "wall_s": round(self.wall_s, 2),
        }


def reproduce_command(seed: int, targets: list[str], index: int) -> str:
    return f"python -m icmkit.fuzz --seed {seed} --targets {','.join(targets)} --case {index}"


def _limits() -> dict:
    from icmkit import limits

    values = {}
    for name in ("max_pixels", "max_input_bytes", "max_jpeg_scans", "max_decode_memory"):
        getter = getattr(limits, name, None)
        if getter is not None:
            values[name] = getter()
    return values


def run_fuzz(
    cases: int = 100_000,
    seed: int = 0,
    targets: list[str] | None = None,
    workers: int = 1,
    timeout: float = 10.0,
    memory_mb: int = 3072,
    batch: int = 32,
    progress: bool = False,
    log=None,
    checkpoint=None,
    checkpoint_every: int = 5000,
) -> Summary:
    """Run ``cases`` seeded cases over ``targets`` in ``workers`` processes, at icmkit's default limits; return
    the counts. The environment's ``ICM_*`` limits are removed for the workers (defaults, not lowered ones)."""
    targets = targets or default_targets()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICM_MAX")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "ICM_OFFLINE": "1"})
    summary = Summary(cases, seed, targets, memory_mb, timeout, limits=_limits())
    start = time.monotonic()
    first = Worker(env)
    corpus = first.ask(("corpus", targets))
    summary.corpus_s = time.monotonic() - start

    def started(worker: Worker | None = None) -> Worker:
        worker = worker or Worker(env)
        reply = worker.ask(("init", corpus, targets, seed, memory_mb))
        summary.address_space_limit_mb = reply["limit_mb"]
        summary.baseline_rss_mb = max(summary.baseline_rss_mb, reply["baseline_mb"])
        return worker

    pool = [started(first)] + [started() for _ in range(workers - 1)]
    todo = list(range(cases))[::-1]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cases, unit="case", smoothing=0.05, mininterval=5)

    def feed(worker: Worker) -> None:
        chunk = [todo.pop() for _ in range(min(batch, len(todo)))]
        if chunk:
            worker.pending = chunk
            worker.started = time.monotonic()
            _send(worker.proc.stdin, ("run", chunk))

    def record(result: dict) -> None:
        summary.add(result)
        done = sum(summary.outcomes.values())
        if checkpoint is not None and done % checkpoint_every == 0 and done < cases:
            summary.wall_s = time.monotonic() - start
            checkpoint(summary)  # a long run killed midway still reports what it ran
        if bar is not None:
            bar.update(1)
        if result["outcome"] in FAILURES and log is not None:
            log(
                f"{result['outcome']}: {result['target']} case {result['index']} ({result['recipe']}): "
                f"{result['detail']}\n  reproduce: {reproduce_command(seed, targets, result['index'])}"
            )

    def restart(i: int, worker: Worker, rest: list[int]) -> None:
        pool[i] = started()
        pool[i].pending = rest
        if rest:
            _send(pool[i].proc.stdin, ("run", rest))
        pool[i].started = time.monotonic()

    def lost(index: int, outcome: str, detail: str, seconds: float) -> dict:
        recipe = "?"
        try:
            recipe = (
                prepare_case(corpus, {}, targets, seed, index)[1]
                if target_of(targets, index) not in surfaces.SURFACES
                else target_of(targets, index)
            )
        except Exception:  # noqa: BLE001
            pass
        return {"index": index, "target": target_of(targets, index), "outcome": outcome, "recipe": recipe,
                "detail": detail, "seconds": seconds, "rss_mb": 0.0}  # fmt: skip

    while todo or any(w.pending for w in pool):
        for worker in pool:
            if not worker.pending:
                feed(worker)  # also a worker restarted after a hang or a death with no case left of its batch
        busy = [w for w in pool if w.pending]
        ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], 0.5)
        now = time.monotonic()
        for i, worker in enumerate(pool):
            if not worker.pending:
                continue
            index = worker.pending[0]
            if worker.proc.stdout in ready:
                try:
                    result = _receive(worker.proc.stdout)
                except EOFError:
                    code = worker.proc.wait()
                    record(lost(index, "died", f"worker exited with status {code}", now - worker.started))
                    restart(i, worker, worker.pending[1:])
                    continue
                record(result)
                worker.pending.pop(0)
                worker.started = time.monotonic()
            elif now - worker.started > timeout:
                worker.kill()
                record(lost(index, "hang", f"no result after {timeout:g} s", now - worker.started))
                restart(i, worker, worker.pending[1:])
                continue
            if not worker.pending:
                feed(worker)
    for worker in pool:
        worker.proc.stdin.close()
        worker.proc.wait()
    if bar is not None:
        bar.close()
    summary.wall_s = time.monotonic() - start
    return summary


def print_summary(summary: Summary) -> None:
    d = summary.as_dict()
    width = max(len(t) for t in d["per_target"]) if d["per_target"] else 8
    limits = ", ".join(f"{k}={v:,}" for k, v in d["limits"].items())
    print(
        f"\n{d['cases']:,} cases, seed {d['seed']}, wall {d['wall_s']:.1f} s (corpus {d['corpus_s']:.1f} s); "
        f"limits: {d['timeout_s']:g} s per case, icmkit defaults ({limits}), "
        f"address space {d['address_space_limit_mb']} MiB per worker"
    )
    print(f"{'target':<{width}}  " + "  ".join(f"{k:>8}" for k in OUTCOMES))
    for target, counts in d["per_target"].items():
        print(f"{target:<{width}}  " + "  ".join(f"{counts[k]:>8,}" for k in OUTCOMES))
    print(f"{'total':<{width}}  " + "  ".join(f"{d['outcomes'][k]:>8,}" for k in OUTCOMES))
    worst, heaviest = d["worst_case"], d["heaviest_case"]
    if worst:
        print(
            f"worst time {worst['seconds'] * 1000:.0f} ms ({worst['target']} case {worst['index']}, "
            f"{worst['recipe']}); "
            f"peak RSS {d['peak_rss_mb']:.0f} MiB ({heaviest.get('target')} case {heaviest.get('index')}, "
            f"{heaviest.get('recipe')}; the worker's RSS after start-up {d['baseline_rss_mb']:.0f} MiB); "
            f"over {summary.goal_seconds:g} s: {len(summary.slow)}, "
            f"over {summary.goal_rss_mb:g} MiB: {len(summary.heavy)}"
        )

    for outcome in ("decoded", "clean"):
        slow, heavy = d["worst_case_by_outcome"].get(outcome), d["heaviest_case_by_outcome"].get(outcome)
        if slow and heavy:
            print(
                f"  {outcome}: worst time {slow['seconds'] * 1000:.0f} ms ({slow['target']} case {slow['index']}, "
                f"{slow['recipe']}); peak RSS {heavy['rss_mb']:.0f} MiB ({heavy['target']} case {heavy['index']}, "
                f"{heavy['recipe']})"
            )


def reproduce(seed: int, targets: list[str], index: int, dump: str | None) -> None:
    """Rerun one case in this process and show its traceback."""
    import torch

    torch.set_num_threads(1)
    corpus = streams.build_corpus([t for t in targets if t not in surfaces.SURFACES])
    states = surfaces.prepare(
        [t for t in targets if t in surfaces.SURFACES], Path(tempfile.mkdtemp(prefix="icm-fuzz-"))
    )
    target, recipe, run, check = prepare_case(corpus, states, targets, seed, index)
    print(f"case {index}: target {target}, {recipe}")
    if dump and target not in surfaces.SURFACES:
        with open(dump, "wb") as handle:
            handle.write(streams.mutate(corpus, target, seed, index)[0])
    out = run()  # let any exception show its traceback
    print("result:", check(out) or "accepted")
