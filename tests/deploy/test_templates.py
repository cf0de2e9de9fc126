"""The templates in ``examples/deploy`` are valid for the tool that will read them, and
the ``minigun`` command inside each one passes ``--dry-run`` against the repository's
example (so a renamed option or example breaks this test, not a deployment).

- Kubernetes manifests: ``kubernetes-validate`` (strict) with its bundled schemas, no
  cluster, no network;
- the systemd unit: ``systemd-analyze verify`` where the system has it, on a copy whose
  ``ExecStart`` binary is this environment's ``minigun`` (verify requires it to exist)
  and whose ``WorkingDirectory`` is the repository;
- the crontab: its schedule by ``croniter``;
- ECS and Cloud Run: parsed (JSON, YAML) and their keys checked;
- every template: the timing numbers tie to minigun's grace and timeout, and the
  resources to ``minigun inspect --plan examples/etl.py``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from deploy.conftest import VALIDATED
from support import full_env, minigun_cli, run_cli

yaml = pytest.importorskip("yaml")
croniter = pytest.importorskip("croniter")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "examples" / "deploy"
#: Seconds a platform must wait beyond minigun's --grace before its SIGKILL.
MIN_MARGIN = 10
#: Shell words that end the minigun command in a command line.
_SHELL_ENDS = {">>", ">", "2>&1", "&&", "||", ";", "|", "&"}


# --------------------------------------------------------------------------- helpers


def minigun_args(words: list[str]) -> list[str]:
    """The arguments of the ``minigun`` command among ``words`` (a shell line split, or
    a container's command + args), up to the first shell operator."""
    index = next(i for i, word in enumerate(words) if Path(word).name == "minigun")
    args: list[str] = []
    for word in words[index + 1 :]:
        if word in _SHELL_ENDS:
            break
        args.append(word)
    return args


def option(args: list[str], name: str, default: float | None = None) -> float:
    """The value of ``--name VALUE`` in ``args`` as a number (``default`` if absent)."""
    if name in args:
        return float(args[args.index(name) + 1])
    assert default is not None, f"{name} missing from {args}"
    return default


def mebibytes(quantity: str | int) -> float:
    """A Kubernetes memory quantity (``64Mi``, ``1Gi``, ``128M``) in MiB."""
    text = str(quantity)
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text) / 2**20


def load_yaml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return data


def crontab_entries() -> list[tuple[str, str]]:
    """``(schedule, command)`` of every job line (not comments or VAR=value lines)."""
    entries = []
    for line in (DEPLOY / "crontab").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 5)
        entries.append((" ".join(fields[:5]), fields[5]))
    return entries


def unit_settings() -> dict[str, str]:
    """``Key=value`` lines of the systemd unit (the last one wins, as in systemd)."""
    settings = {}
    for line in (DEPLOY / "minigun-etl.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def k8s_pod(document: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Job or of a CronJob's job template."""
    job = document["spec"]["jobTemplate"]["spec"] if document["kind"] == "CronJob" else None
    spec: dict[str, Any] = (job or document["spec"])["template"]["spec"]
    return spec


def k8s_job_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        document["spec"]["jobTemplate"]["spec"]
        if document["kind"] == "CronJob"
        else document["spec"]
    )
    return spec


def container_words(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def ecs_container() -> dict[str, Any]:
    data = json.loads((DEPLOY / "ecs-task-definition.json").read_text())
    container: dict[str, Any] = data["containerDefinitions"][0]
    return container


def cloudrun_task() -> dict[str, Any]:
    task: dict[str, Any] = load_yaml("cloudrun-job.yaml")["spec"]["template"]["spec"]["template"][
        "spec"
    ]
    return task


def procfile_commands() -> dict[str, str]:
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    pairs = [line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {kind.strip(): command.strip() for kind, command in pairs}


#: Every template and how to find the minigun command in it.
COMMANDS: dict[str, Callable[[], list[str]]] = {
    "crontab": lambda: minigun_args(shlex.split(crontab_entries()[0][1])),
    "k8s-job.yaml": lambda: minigun_args(
        container_words(k8s_pod(load_yaml("k8s-job.yaml"))["containers"][0])
    ),
    "k8s-cronjob.yaml": lambda: minigun_args(
        container_words(k8s_pod(load_yaml("k8s-cronjob.yaml"))["containers"][0])
    ),
    "minigun-etl.service": lambda: minigun_args(shlex.split(unit_settings()["ExecStart"])),
    "Procfile": lambda: minigun_args(shlex.split(procfile_commands()["worker"])),
    "ecs-task-definition.json": lambda: minigun_args(ecs_container()["command"]),
    "cloudrun-job.yaml": lambda: minigun_args(container_words(cloudrun_task()["containers"][0])),
}


@cache
def etl_plan() -> dict[str, Any]:
    """``minigun inspect --plan --format json examples/etl.py``'s plan (estimated)."""
    proc = run_cli("inspect", "--plan", "--format", "json", "examples/etl.py", cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    plan: dict[str, Any] = json.loads(proc.stdout)["plan"]
    return plan


def check_resources(cpu: float, memory_limit_mib: float) -> None:
    """The template asks for what the plan of examples/etl.py recommends."""
    advice = etl_plan()["recommendation"]
    assert cpu == float(advice["cpu_request"])
    assert memory_limit_mib >= advice["memory_limit_mib"]


# --------------------------------------------------------------------------- every template


def test_every_template_in_the_directory_is_checked() -> None:
    present = {p.name for p in DEPLOY.iterdir() if p.name != "README.md"}
    assert present == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_command_passes_dry_run_against_the_example(name: str) -> None:
    args = COMMANDS[name]()
    assert args[0] in ("run", "worker"), args
    proc = subprocess.run(
        [*minigun_cli(*args), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env=full_env(),
    )
    assert proc.returncode == 0, f"{shlex.join(args)} --dry-run: {proc.stderr}"
    assert "nothing ran" in proc.stdout
    VALIDATED[name].add("dry-run")


# --------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("name", ["k8s-job.yaml", "k8s-cronjob.yaml"])
def test_kubernetes_manifest_is_valid_offline(name: str) -> None:
    document = load_yaml(name)
    # 1.31: the oldest release where everything used here (podFailurePolicy) is stable.
    for version in ("1.31.0", kubernetes_validate.utils.latest_version()):
        problem = None
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # its str() dumps the schema
            where = "/".join(str(part) for part in exc.path)
            problem = f"{name} against Kubernetes {version}: {exc.message} at {where}"
        if problem:
            pytest.fail(problem)
    VALIDATED[name].add("kubernetes-validate")


@pytest.mark.parametrize("name", ["k8s-job.yaml", "k8s-cronjob.yaml"])
def test_kubernetes_deadlines_fit_minigun_timeout_and_grace(name: str) -> None:
    document = load_yaml(name)
    job, pod = k8s_job_spec(document), k8s_pod(document)
    args = COMMANDS[name]()
    grace, timeout = option(args, "--grace", 30), option(args, "--timeout")
    kill_window = pod["terminationGracePeriodSeconds"]
    assert kill_window >= grace + MIN_MARGIN
    attempts = job["backoffLimit"] + 1
    assert job["activeDeadlineSeconds"] >= attempts * (timeout + kill_window)
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    (fail_rule,) = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert {2, 3} <= set(fail_rule["onExitCodes"]["values"])  # never retried (the contract)
    if document["kind"] == "CronJob":
        assert document["spec"]["concurrencyPolicy"] == "Forbid"
        assert croniter.croniter.is_valid(document["spec"]["schedule"])
    VALIDATED[name].add("timing")


@pytest.mark.parametrize("name", ["k8s-job.yaml", "k8s-cronjob.yaml"])
def test_kubernetes_resources_come_from_the_plan(name: str) -> None:
    resources = k8s_pod(load_yaml(name))["containers"][0]["resources"]
    check_resources(float(resources["requests"]["cpu"]), mebibytes(resources["limits"]["memory"]))
    assert mebibytes(resources["requests"]["memory"]) <= mebibytes(resources["limits"]["memory"])
    VALIDATED[name].add("plan")


# --------------------------------------------------------------------------- systemd


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the unit was not verified")
    beside = Path(sys.executable).with_name("minigun")  # this environment's console script
    minigun = str(beside) if beside.is_file() else shutil.which("minigun")
    if minigun is None:
        pytest.skip("no minigun console script to stand in for ExecStart's binary")
    text = (DEPLOY / "minigun-etl.service").read_text()
    original_binary = shlex.split(unit_settings()["ExecStart"])[0]
    text = text.replace(original_binary, minigun)
    text = re.sub(r"(?m)^WorkingDirectory=.*$", f"WorkingDirectory={REPO}", text)
    text = re.sub(r"(?m)^ReadWritePaths=.*$", f"ReadWritePaths={REPO}", text)
    unit = tmp_path / "minigun-etl.service"
    unit.write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    # verify exits 0 on settings it ignores with a warning: any output is a failure.
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    VALIDATED["minigun-etl.service"].add("systemd-analyze verify")


def test_systemd_unit_stops_through_the_runner_within_its_timeout() -> None:
    settings = unit_settings()
    args = COMMANDS["minigun-etl.service"]()
    assert args[0] == "worker"
    assert settings["KillMode"] == "mixed"
    assert float(settings["TimeoutStopSec"]) >= option(args, "--grace", 30) + MIN_MARGIN
    assert settings["Restart"] in ("on-failure", "always")
    assert "2" in settings["RestartPreventExitStatus"].split()
    assert settings["StandardOutput"] == "journal" and settings["SyslogIdentifier"]
    VALIDATED["minigun-etl.service"].add("timing")


# --------------------------------------------------------------------------- cron, Procfile


def test_crontab_schedule_is_valid_and_runs_cannot_overlap() -> None:
    ((schedule, command),) = crontab_entries()
    assert croniter.croniter.is_valid(schedule)
    words = shlex.split(command)
    assert words[words.index("flock") + 1] == "-n"  # skip, never queue behind, a running one
    assert ">>" in words  # the log is appended to
    args = minigun_args(words)
    timeout = option(args, "--timeout")
    period = croniter.croniter(schedule).get_next(float) - croniter.croniter(schedule).get_prev(
        float
    )
    assert timeout + option(args, "--grace", 30) < period
    assert "%" not in command  # cron would cut the command there
    VALIDATED["crontab"].add("croniter")


def test_procfile_grace_fits_the_platform_kill_window() -> None:
    commands = procfile_commands()
    assert set(commands) == {"worker"}
    args = COMMANDS["Procfile"]()
    assert args[0] == "worker"
    assert option(args, "--grace", 30) + MIN_MARGIN <= 30  # Heroku: SIGKILL 30 s after SIGTERM
    VALIDATED["Procfile"].add("parse")


# --------------------------------------------------------------------------- ECS, Cloud Run


def test_ecs_task_definition_stops_within_grace_and_uses_the_plan() -> None:
    data = json.loads((DEPLOY / "ecs-task-definition.json").read_text())
    assert data["family"] and len(data["containerDefinitions"]) == 1
    container = ecs_container()
    assert container["essential"] is True
    args = COMMANDS["ecs-task-definition.json"]()
    grace = option(args, "--grace", 30)
    assert grace + MIN_MARGIN <= container["stopTimeout"] <= 120  # Fargate's maximum
    check_resources(container["cpu"] / 1024, container["memory"])
    assert container["memoryReservation"] <= container["memory"]
    VALIDATED["ecs-task-definition.json"].add("parse")


def test_cloudrun_job_timeout_covers_every_attempt() -> None:
    document = load_yaml("cloudrun-job.yaml")
    assert document["apiVersion"] == "run.googleapis.com/v1" and document["kind"] == "Job"
    task = cloudrun_task()
    assert task["maxRetries"] == 0  # minigun's runner retries, by exit code
    args = COMMANDS["cloudrun-job.yaml"]()
    timeout, retries = option(args, "--timeout"), int(option(args, "--retries", 0))
    delay, grace = option(args, "--retry-delay", 1), option(args, "--grace", 30)
    backoff = sum(delay * 2**i for i in range(retries))
    # every attempt may time out and then drain for grace; the back-off is at most this
    assert int(task["timeoutSeconds"]) >= (retries + 1) * (timeout + grace) + backoff
    limits = task["containers"][0]["resources"]["limits"]
    check_resources(float(limits["cpu"]), mebibytes(limits["memory"]))
    VALIDATED["cloudrun-job.yaml"].add("parse")
