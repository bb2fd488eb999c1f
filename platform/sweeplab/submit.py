"""``sweeplab submit``: a sweep as a Ray job, through the cluster's Jobs API (what ``ray job submit`` does).

Everything that can be checked here is checked before anything is sent: the spec validates, its storage is an
``s3://`` URI or an absolute path (which every node must share), the dashboard answers, and when the cluster uses
token authentication a token is found (``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH``, or
``~/.ray/auth_token``, the order Ray itself uses) and accepted.

What travels with the job (its runtime environment):

* ``working_dir``: a folder holding only the spec file, so the job's ``sweeplab run`` reads the same spec. A spec
  that ``extends`` others travels merged into one file of the same name (a comment on top names the files it came
  from), ``name`` written out: the job then needs none of the base files, and cannot see a base that changed here
  after submitting. Shipping the bases instead would need their relative paths kept, which a base outside the
  spec's folder (``extends: ../base.yaml``) does not allow. A spec that extends nothing is copied as written.
* ``py_modules``: the ``sweeplab`` package as installed here, tasks included (what the project's wheel holds),
  plus any ``--py-module`` folders. Ray puts them first on every worker's ``PYTHONPATH``, so the cluster runs
  this code without a new image. A ``.whl`` is not used: Ray would ``pip install`` it with its dependencies on
  every node (CUDA torch is several GB). The dependencies come with the nodes' image (``cluster/Dockerfile``).
* ``env_vars``: Ray Train V2 on, ``$SWEEPLAB_TASK_MODULES`` when set here, for a sweep on ``s3://`` the endpoint
  and region variables set here (:data:`S3_FORWARDED`: the nodes then reach the same store as this machine), and
  every ``--env KEY=VALUE`` (``--env KEY`` passes this machine's value of ``KEY``). Ray applies them to the job's
  driver and to every trial and Train worker, on every node.

Credentials are not forwarded by themselves: a job's ``env_vars`` are shown to anyone who can see the dashboard.
Give the nodes their own (an instance role, a Kubernetes secret, the environment of ``ray start``), or pass them
on purpose with ``--env AWS_ACCESS_KEY_ID --env AWS_SECRET_ACCESS_KEY``. The storage folder never carries them:
the filesystem handed to Ray pickles without them (:class:`sweeplab.storage.EnvS3FileSystem`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

import sweeplab
import sweeplab.tasks

from .ray_cluster import TOKEN_HELP
from .service import SweepError, prepare
from .spec import Spec, SpecError
from .store import code_version
from .task import TASK_MODULES_ENV

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
S3_FORWARDED = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


class SubmitError(Exception):
    """A problem found before submitting: the message names it; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def dashboard_url(address: str) -> str:
    """``host:port`` or ``http(s)://host:port`` (the dashboard, default port 8265) as an http URL."""
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise SubmitError(f"--address {address!r} is a Ray Client address; jobs go to the dashboard's HTTP address, "
                          "e.g. http://HEAD:8265", 2)
    return address if re.match(r"https?://", address) else f"http://{address}"


def find_token() -> str | None:
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), Path.home() / ".ray" / "auth_token"):
        if path and Path(path).is_file() and (token := Path(path).read_text().strip()):
            return token
    return None


def _get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def check_cluster(url: str, timeout: float = 5.0) -> dict[str, str]:
    """The HTTP headers to use with the cluster at ``url``; :class:`SubmitError` when it does not answer, is not a
    Ray dashboard, or refuses our token."""
    try:
        status, body = _get(f"{url}/api/authentication_mode", {}, timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SubmitError(f"cannot reach the Ray dashboard at {url}: {reason}") from None
    try:
        mode = json.loads(body)["authentication_mode"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        mode = None
    if mode is None:
        raise SubmitError(f"{url} answered, but not as a Ray dashboard (GET /api/authentication_mode gave HTTP "
                          f"{status}); --address wants the dashboard's address, e.g. http://HEAD:8265")
    if mode != "token":
        return {}
    token = find_token()
    if token is None:
        raise SubmitError(f"the cluster at {url} requires an authentication token and none was found: {TOKEN_HELP}")
    headers = {"Authorization": f"Bearer {token}"}
    status, _ = _get(f"{url}/api/version", headers, timeout)
    if status in (401, 403):
        raise SubmitError(f"the cluster at {url} rejected the authentication token (HTTP {status}): {TOKEN_HELP}")
    return headers


def _storage_problem(spec: Spec) -> str | None:
    """A relative storage path would land in the job's temporary working folder on the head node."""
    storage = spec.storage_text
    if storage.startswith("s3://") or os.path.isabs(os.path.expanduser(storage)):
        return None
    return (f"storage {storage!r} is a relative path: a submitted sweep runs in a temporary folder on the head "
            "node, so give an absolute path every node shares (--set storage=/mnt/sweeps) or an s3:// URI")


def package_dir(stage: Path) -> Path:
    """The ``sweeplab`` package as installed here, tasks included, copied to ``stage/sweeplab``. An editable
    install keeps the tasks in another folder (``tasks/``), so both are copied into one tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    out = stage / "sweeplab"
    shutil.copytree(Path(sweeplab.__file__).parent, out, ignore=ignore)
    tasks_src = Path(sweeplab.tasks.__path__[0])
    if tasks_src.resolve() != (out / "tasks").resolve() and not (out / "tasks").exists():
        shutil.copytree(tasks_src, out / "tasks", ignore=ignore)
    return out


def _write_spec(spec: Spec, out: Path) -> None:
    """The spec for the job's working folder: the file itself, or merged with its bases into one file."""
    if len(spec.files) <= 1:
        shutil.copy2(spec.source, out)
        return
    doc = {"name": Path(spec.source).stem, **spec.document}  # the name the spec file gives, or its stem
    out.write_text(f"# {Path(spec.source).name} merged with the specs it extends ({' -> '.join(spec.files)})\n"
                   + yaml.safe_dump(doc, sort_keys=False))


def build_job(spec: Spec, overrides: list[str], stage: Path, *, resume: bool, py_modules: list[str],
              env: list[str]) -> dict:
    """The keyword arguments of ``JobSubmissionClient.submit_job`` (``spec`` as :func:`sweeplab.spec.load` read
    it, with the same ``overrides``)."""
    spec_path = Path(spec.source)
    env_vars = {"RAY_TRAIN_V2_ENABLED": "1"}
    if os.environ.get(TASK_MODULES_ENV):
        env_vars[TASK_MODULES_ENV] = os.environ[TASK_MODULES_ENV]
    if any(str(uri).startswith("s3://") for uri in (spec.storage, *spec.from_trials.values())):
        env_vars.update({k: os.environ[k] for k in S3_FORWARDED if os.environ.get(k)})
    for item in env:
        key, sep, value = item.partition("=")
        if not sep and key in os.environ:
            value = os.environ[key]
        elif not sep or not key:
            raise SubmitError(f"--env {item!r}: expected KEY=VALUE, or the name of a variable set here", 2)
        env_vars[key] = value
    for mod in py_modules:
        if not Path(mod).exists():
            raise SubmitError(f"--py-module {mod}: no such file or folder", 2)
    workdir = stage / "workdir"
    workdir.mkdir(parents=True)
    _write_spec(spec, workdir / spec_path.name)
    command = ["python", "-m", "sweeplab.cli", "resume" if resume else "run", spec_path.name, "--address", "auto"]
    if overrides:
        command += ["--set", *overrides]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return {
        "entrypoint": shlex.join(command),
        "submission_id": f"sweeplab-{re.sub(r'[^A-Za-z0-9_-]+', '-', spec.name)}-{stamp}",
        "runtime_env": {"working_dir": str(workdir),
                        "py_modules": [str(package_dir(stage)), *map(str, map(Path, py_modules))],
                        "env_vars": env_vars},
        "metadata": {"job_name": f"sweeplab {'resume' if resume else 'run'} {spec.name}", "sweep": spec.name,
                     "task": spec.task.name, "search": spec.algorithm, "storage": str(spec.sweep_dir),
                     "spec": str(spec_path), "code_version": code_version(), "user": getpass.getuser()},
    }


def follow(client, job_id: str) -> str:
    """Print the job's logs as they come; return its final status."""

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
    while status not in TERMINAL:  # the log stream can end a moment before the status settles
        time.sleep(0.5)
        status = str(client.get_job_status(job_id)).rsplit(".", 1)[-1]
    return status


def _submit_job(client, job: dict, patience_s: float = 90.0) -> str:
    """``submit_job``, waiting while a cluster that just started has no job agent yet (HTTP 500 "No available
    agent"); any other refusal is a :class:`SubmitError`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise SubmitError(f"the cluster refused the job: {exc}") from None
            print("waiting for the cluster's job agent to start ...", file=sys.stderr, flush=True)
            time.sleep(3)


def submit(spec_path: str, overrides: list[str], address: str, *, wait: bool = False, resume: bool = False,
           py_modules: list[str] = (), env: list[str] = ()) -> int:
    try:
        spec = prepare(spec_path, overrides)  # the one reading and parsing of the spec
    except SpecError as exc:
        print(f"error: invalid sweep spec {exc}\nnothing was submitted", file=sys.stderr)
        return 2
    except SweepError as exc:
        print(f"error: {exc}\nnothing was submitted", file=sys.stderr)
        return exc.code
    try:
        if problem := _storage_problem(spec):
            raise SubmitError(problem, 2)
        url = dashboard_url(address)
        headers = check_cluster(url)
        from ray.job_submission import JobSubmissionClient  # deferred: Ray is heavy
        with tempfile.TemporaryDirectory(prefix="sweeplab-submit-") as tmp:
            job = build_job(spec, overrides, Path(tmp), resume=resume, py_modules=list(py_modules), env=list(env))
            client = JobSubmissionClient(url, headers=headers)
            job_id = _submit_job(client, job)
    except SubmitError as exc:
        print(f"error: {exc}\nnothing was submitted", file=sys.stderr)
        return exc.code
    print(f"submitted job {job_id}\n  {job['metadata']['job_name']}: {job['entrypoint']}\n"
          f"  dashboard: {url}/#/jobs/{job_id}\n  logs:      ray job logs --address {url} --follow {job_id}\n"
          f"  progress:  sweeplab status {job['metadata']['storage']}\n"
          f"  live:      sweeplab dashboard {job['metadata']['storage']}   (on this machine; it reads the storage)\n"
          f"  report:    sweeplab report {job['metadata']['storage']}   (once it ends: the sweep beside its paper)",
          flush=True)
    if not wait:
        return 0
    status = follow(client, job_id)
    info = client.get_job_info(job_id)
    print(f"\njob {job_id}: {status}" + (f" ({info.message})" if status != "SUCCEEDED" and info.message else ""),
          flush=True)
    return 0 if status == "SUCCEEDED" else 1
