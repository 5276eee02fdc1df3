"""Soak: mixed load through HAProxy for a while; errors, latency per endpoint, memory per worker.

    python -m bench.soak [--seconds 600] [--clients 8] [--database auto|sqlite|postgresql]

The shape production runs and `python -m bench.run` measures (two gunicorn instances of one
worker each behind HAProxy, `balance leastconn`), under a mix that each simulated client repeats
until the time is up: a full login in a fresh browser (GET /login, POST /login, GET /pin,
POST /pin), then refresh grants and userinfo with the tokens they return, discovery and JWKS.
Every few seconds it reads the resident memory of each gunicorn worker.

Prints requests, errors, p50 and p99 per endpoint, and each worker's memory at the start, after
the warm-up and at the end. Exits 1 if any request failed: `./dev test` runs a short soak.
"""

import argparse
import contextlib
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from bench import run

# One round of a client: a login, then the protocol traffic a signed-in RP causes.
REFRESHES_PER_ROUND = 4
USERINFO_PER_ROUND = 8
MEMORY_SAMPLE_SECONDS = 2.0
# Memory is compared from the end of the warm-up on: imports, caches and pools fill first.
WARM_UP_SHARE = 0.25


@dataclass
class Plan:
    """What one client process does: its user, its client's token family, its time."""

    base: str
    outbox: Path
    username: str
    phone: str
    client_id: str
    client_secret: str
    refresh_token: str
    start_at: float
    seconds: float


@dataclass
class Outcome:
    # endpoint -> latencies in ms of the answers as expected
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # endpoint -> (count, first)
    errors: dict[str, tuple[int, str]] = field(default_factory=dict)

    def merge(self, other: "Outcome") -> None:
        for endpoint, values in other.latencies.items():
            self.latencies.setdefault(endpoint, []).extend(values)
        for endpoint, (count, first) in other.errors.items():
            known = self.errors.get(endpoint, (0, first))
            self.errors[endpoint] = (known[0] + count, known[1])


def timed(
    outcome: Outcome, session: requests.Session, expected: int, method: str, url: str, **options
) -> requests.Response | None:
    """Sends one request; records its latency, or an error when it fails or answers otherwise.
    The endpoint is named by method and path."""
    endpoint = f"{method} {urlsplit(url).path}"
    started = time.perf_counter()
    try:
        response = session.request(method, url, timeout=30, allow_redirects=False, **options)
    except requests.RequestException as error:
        response, problem = None, f"{type(error).__name__}: {error}"
    else:
        problem = None if response.status_code == expected else f"{response.status_code}"
    if problem is None:
        outcome.latencies.setdefault(endpoint, []).append((time.perf_counter() - started) * 1000)
        return response
    count, first = outcome.errors.get(endpoint, (0, problem))
    outcome.errors[endpoint] = (count + 1, first)
    return None


def login(plan: Plan, outcome: Outcome) -> None:
    """A full login in a fresh browser: its own connection and cookies, as a person's."""
    with requests.Session() as browser:
        page = timed(outcome, browser, 200, "GET", plan.base + "/login")
        if page is None:
            return
        form = {"username": plan.username, "password": run.PASSWORD}
        form["csrf_token"] = run.csrf(page.text)
        if timed(outcome, browser, 303, "POST", plan.base + "/login", data=form) is None:
            return
        page = timed(outcome, browser, 200, "GET", plan.base + "/pin")
        if page is None:
            return
        form = {"csrf_token": run.csrf(page.text), "pin": run.newest_pin(plan.outbox, plan.phone)}
        timed(outcome, browser, 303, "POST", plan.base + "/pin", data=form)


def soak_client(plan: Plan) -> Outcome:
    outcome = Outcome()
    api = requests.Session()  # an RP's back end: one keep-alive connection
    refresh_token, access_token = plan.refresh_token, None
    while time.time() < plan.start_at:
        time.sleep(0.01)
    stop = time.monotonic() + plan.seconds
    while time.monotonic() < stop:
        login(plan, outcome)
        for _ in range(REFRESHES_PER_ROUND):
            data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
            auth = (plan.client_id, plan.client_secret)
            answer = timed(outcome, api, 200, "POST", plan.base + "/token", data=data, auth=auth)
            if answer is None:
                return outcome  # the family is gone: a refresh token is single-use
            tokens = answer.json()
            refresh_token, access_token = tokens["refresh_token"], tokens["access_token"]
        bearer = {"Authorization": f"Bearer {access_token}"}
        for _ in range(USERINFO_PER_ROUND):
            timed(outcome, api, 200, "GET", plan.base + "/userinfo", headers=bearer)
        for path in ("/.well-known/openid-configuration", "/jwks.json"):
            timed(outcome, api, 200, "GET", plan.base + path)
    return outcome


def workers_of(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    with contextlib.suppress(OSError):
        return [int(pid) for pid in children.read_text().split()]
    return []


def resident_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


class MemoryWatch(threading.Thread):
    """Samples each worker's resident memory until stopped: pid -> [(seconds, MiB)]."""

    def __init__(self, masters: list[int]):
        super().__init__(daemon=True)
        self.masters = masters
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self.stopped = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            for master in self.masters:
                for pid in workers_of(master):
                    mib = resident_mib(pid)
                    if mib is not None:
                        at = time.monotonic() - self.started_at
                        self.samples.setdefault(pid, []).append((at, mib))
            self.stopped.wait(MEMORY_SAMPLE_SECONDS)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def print_outcome(outcome: Outcome, seconds: float) -> None:
    endpoints = sorted(set(outcome.latencies) | set(outcome.errors))
    width = max(len(endpoint) for endpoint in endpoints)
    heading = f"{'requests':>9} {'errors':>7} {'/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{'endpoint':<{width}} {heading}")
    for endpoint in endpoints:
        latencies = outcome.latencies.get(endpoint, [])
        errors, first = outcome.errors.get(endpoint, (0, ""))
        p50 = f"{statistics.median(latencies):8.1f}" if latencies else f"{'-':>8}"
        p99 = f"{percentile(latencies, 0.99):8.1f}" if latencies else f"{'-':>8}"
        line = f"{endpoint:<{width}} {len(latencies) + errors:>9} {errors:>7} "
        print(line + f"{(len(latencies) + errors) / seconds:>7.1f} {p50} {p99}")
        if errors:
            print(f"  first error: {first}")


def print_memory(watch: MemoryWatch, seconds: float) -> None:
    warm = seconds * WARM_UP_SHARE
    print(f"\nresident memory per worker, MiB (sampled every {MEMORY_SAMPLE_SECONDS:.0f} s):")
    print("  (settled: the median of the first and of the last tenth of the samples after the")
    print("  warm-up; a single sample may catch a login's 19 MiB argon2 buffer in flight)")
    for pid, samples in sorted(watch.samples.items()):
        after_warm_up = [mib for at, mib in samples if at >= warm] or [samples[-1][1]]
        tenth = max(1, len(after_warm_up) // 10)
        settled = statistics.median(after_warm_up[:tenth])
        settled_at_end = statistics.median(after_warm_up[-tenth:])
        print(
            f"  worker {pid}: start {samples[0][1]:.0f}, settled after warm-up ({warm:.0f} s) "
            f"{settled:.0f}, settled at the end {settled_at_end:.0f}, "
            f"max {max(mib for _, mib in samples):.0f}, "
            f"growth after warm-up {settled_at_end - settled:+.1f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=600, help="how long the load runs")
    run.add_server_arguments(parser)
    args = parser.parse_args(argv)
    with run.running_server(args) as server:
        client = server.clients["jwt"]
        print(
            f"soak: {args.seconds:.0f} s, {args.clients} clients, {run.INSTANCES} gunicorn "
            f"instances x 1 worker x {run.THREADS_PER_INSTANCE} threads behind HAProxy "
            f"(leastconn), {server.database}",
            flush=True,
        )
        start_at = time.time() + 2.0  # every client process is up before the clock starts
        plans = [
            Plan(
                server.base,
                server.outbox,
                username,
                run.phone_of(index),
                client.client_id,
                client.client_secret,
                client.tokens[index]["refresh_token"],
                start_at,
                args.seconds,
            )
            for index, username in enumerate(server.usernames)
        ]
        watch = MemoryWatch([master.pid for master in server.masters])
        watch.start()
        outcome = Outcome()
        with ProcessPoolExecutor(len(plans)) as pool:
            for result in pool.map(soak_client, plans, timeout=args.seconds + 120):
                outcome.merge(result)
        watch.stopped.set()
        watch.join()
    print_outcome(outcome, args.seconds)
    print_memory(watch, args.seconds + 2.0)
    failed = sum(count for count, _ in outcome.errors.values())
    print(f"\n{failed} failed requests" if failed else "\nno failed request")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
