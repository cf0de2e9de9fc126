"""``minigun replay``: feed recorded dead letters back into the stages that failed them.

It runs in this process (the dead letters are already on this machine and the
command is typically run by hand after a fix); wrap it in ``minigun run`` semantics
yourself if it must be isolated. Signals, progress and the result file behave as for
``minigun run --in-process``.

What fails again is dead-lettered again: to ``--dead-letter-dir``, else to
``MINIGUN_DEAD_LETTER_DIR`` or the pipeline's ``dead_letter_dir``, else to
``minigun.core.dead_letters.default_directory()``; it is never only in memory. The
exit code follows the contract: 0 when what failed again stays within
``max_dead_letters``, 3 beyond it.

Everything that makes a file unfit to replay is found before anything runs and is
one ``minigun: error:`` line with exit 2: a record naming a stage the pipeline does
not have or a producer, and a record whose item was not recorded faithfully (only
its repr is known; feeding that string to the stage would change the item).
``--skip-unfaithful`` replays the others and names each one it leaves out.
"""

from __future__ import annotations

from typing import Any

import click

from minigun.cli._errors import BadInput
from minigun.cli._output import discard_stale, say
from minigun.cli._params import instantiate, parse_params
from minigun.cli.run import param_options

__all__ = ["replay_command"]


@click.command("replay", short_help="Replay dead letters through a pipeline.")
@click.argument("dead_letter_file")
@click.argument("target")
@param_options
@click.option(
    "--dead-letter-dir",
    type=click.Path(file_okay=False),
    help="Where items that fail again are dead-lettered (default: ./minigun-dead-letters).",
)
@click.option(
    "--max-dead-letters",
    type=click.IntRange(min=0),
    help="More items failing again than this ends as partial (exit 3).",
)
@click.option(
    "--skip-unfaithful",
    is_flag=True,
    help="Leave out records whose item was not recorded faithfully (each is named).",
)
@click.option("--result-file", type=click.Path(dir_okay=False), help="Write the result JSON here.")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True)
@click.option("--progress/--no-progress", default=None)
def replay_command(
    dead_letter_file: str,
    target: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    dead_letter_dir: str | None,
    max_dead_letters: int | None,
    skip_unfaithful: bool,
    result_file: str | None,
    grace: float,
    progress: bool | None,
) -> int:
    """Replay DEAD_LETTER_FILE (JSON Lines from dead_letter_dir) through TARGET."""
    import minigun as mg
    from minigun.cli.run import drive_here
    from minigun.core.dead_letters import ReplayError, default_directory
    from minigun.targets import load_pipeline_class

    params = parse_params(param_pairs, params_json)
    if result_file:
        discard_stale(result_file)
    # The target first: classes an item names (an Enum, a dataclass) are looked up
    # among loaded modules only, and the pipeline's module is where they live.
    cls = load_pipeline_class(target)
    pipeline = instantiate(cls, params)
    try:
        records = mg.read_dead_letters(dead_letter_file)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read dead letters from {dead_letter_file}: {exc}") from None
    if records.torn:
        say(
            f"{dead_letter_file}: the last record is torn ({records.torn_bytes} bytes cut short"
            f" while it was written) and is not replayed; {len(records)} complete record(s)"
        )
    if not records:
        say(f"nothing to replay: {dead_letter_file} holds no dead letters")
        return 0
    unfaithful = records.unfaithful
    if unfaithful and skip_unfaithful:
        for letter in unfaithful:
            say(
                f"not replayed: a dead letter of stage {letter.stage!r} whose item was not"
                f" recorded faithfully ({letter.reason}): {_short(str(letter.item))}"
            )
    overrides: dict[str, Any] = {"max_dead_letters": max_dead_letters}
    if dead_letter_dir is not None:
        overrides["dead_letter_dir"] = dead_letter_dir
    else:
        overrides["default_dead_letter_dir"] = default_directory()
    count = len(records) - (len(unfaithful) if skip_unfaithful else 0)
    handles: list[Any] = []

    def start() -> Any:
        # Checks every record (stages, faithfulness) before the run starts.
        handle = pipeline.replay(
            records, background=True, skip_unfaithful=skip_unfaithful, **overrides
        )
        handles.append(handle)
        say(f"replaying {count} dead letter(s) from {dead_letter_file}")
        return handle

    try:
        code = drive_here(
            start,
            f"{cls.__name__} (replay)",
            grace=grace,
            timeout=None,
            result_file=result_file,
            progress=progress,
            hud=False,
        )
    except (ReplayError, mg.PipelineDefinitionError) as exc:
        if handles:
            raise
        raise BadInput(f"{dead_letter_file}: {exc}") from None
    handle = handles[0]
    result = handle.wait(0)
    if result is not None and result.dead_letters:
        where = result.dead_letter_file or "memory only"
        say(
            f"replay: {len(result.dead_letters)} of {count} item(s) failed again and were"
            f" dead-lettered again to {where}"
        )
    if unfaithful and skip_unfaithful:
        say(f"replay: {len(unfaithful)} record(s) with an unfaithful item were not replayed")
    return code


def _short(text: str, limit: int = 120) -> str:
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
