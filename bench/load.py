"""A small HTTP load driver: one process per simulated client, each on one keep-alive
connection (http.client), all starting together and stopping at a deadline or a request count.

Processes, not threads: a driver that shares one interpreter lock would measure itself. The
driver shares the machine's cores with the server it measures; that cost is the same for every
server measured with it, so ratios stay fair."""

import base64
import http.client
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit


@dataclass
class Job:
    """What one client does in a loop. `kind`: get (a plain GET), bearer (GET with an access
    token), refresh (a refresh grant with client_secret_basic, rotating its refresh token)."""

    base: str
    path: str
    kind: str = "get"
    access_token: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    first_error: str | None = None
    refresh_token: str | None = None  # the newest of the chain, for the next round


def _run(job: Job, start_at: float, seconds: float, max_requests: int) -> Result:
    parts = urlsplit(job.base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Connection": "keep-alive"}
    if job.kind == "bearer":
        headers["Authorization"] = f"Bearer {job.access_token}"
    if job.kind == "refresh":
        basic = base64.b64encode(f"{job.client_id}:{job.client_secret}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    refresh_token = job.refresh_token
    done = errors = 0
    first_error = None
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    stop = time.monotonic() + seconds
    while done < max_requests and time.monotonic() < stop:
        if job.kind == "refresh":
            body = urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token})
            connection.request("POST", job.path, body=body, headers=headers)
        else:
            connection.request("GET", job.path, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        done += 1
        if response.status != 200:
            errors += 1
            first_error = first_error or f"{response.status} {payload[:200]!r}"
            if job.kind == "refresh":
                break  # the chain is broken: a refresh token is single-use
            continue
        if job.kind == "refresh":
            refresh_token = json.loads(payload)["refresh_token"]
    elapsed = time.perf_counter() - started
    connection.close()
    return Result(done, errors, elapsed, first_error, refresh_token)


def run(jobs: list[Job], seconds: float, max_requests: int) -> tuple[float, Result]:
    """Runs the jobs in parallel, at most `seconds` long and `max_requests` in all; returns
    requests per second and the summed result. Refresh jobs keep their newest token."""
    per_job = max(1, max_requests // len(jobs))
    with ProcessPoolExecutor(len(jobs)) as pool:
        start_at = time.time() + 1.0  # every process is up before the clock starts
        futures = [pool.submit(_run, job, start_at, seconds, per_job) for job in jobs]
        results = [future.result(timeout=seconds + 60) for future in futures]
    for job, result in zip(jobs, results, strict=True):
        job.refresh_token = result.refresh_token
    total = Result(
        sum(r.requests for r in results),
        sum(r.errors for r in results),
        max(r.seconds for r in results),
        next((r.first_error for r in results if r.first_error), None),
    )
    return (total.requests - total.errors) / total.seconds, total
