"""``minigun replay``: feed recorded dead letters back into the stages that failed them.

It runs in this process (the dead letters are already on this machine and the
command is typically run by hand after a fix); wrap it in ``minigun run`` semantics
yourself if it must be isolated. Signals, progress and the result file behave as for
``minigun run --in-process``.
"""

from __future__ import annotations

import click

from minigun.cli._errors import BadInput
from minigun.cli._output import discard_stale, say
from minigun.cli._params import instantiate, parse_params
from minigun.cli.run import param_options

__all__ = ["replay_command"]


@click.command("replay")
@click.argument("dead_letter_file")
@click.argument("target")
@param_options
@click.option("--result-file", type=click.Path(dir_okay=False), help="Write the result JSON here.")
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True)
@click.option("--progress/--no-progress", default=None)
def replay_command(
    dead_letter_file: str,
    target: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    result_file: str | None,
    grace: float,
    progress: bool | None,
) -> int:
    """Replay DEAD_LETTER_FILE (JSON Lines from dead_letter_dir) through TARGET."""
    import minigun as mg
    from minigun.cli.run import drive_here
    from minigun.targets import load_pipeline_class

    params = parse_params(param_pairs, params_json)
    if result_file:
        discard_stale(result_file)
    try:
        records = mg.read_dead_letters(dead_letter_file)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read dead letters from {dead_letter_file}: {exc}") from None
    cls = load_pipeline_class(target)
    pipeline = instantiate(cls, params)
    if not records:
        say(f"nothing to replay: {dead_letter_file} holds no dead letters")
        return 0
    say(f"replaying {len(records)} dead letter(s) from {dead_letter_file}")
    return drive_here(
        lambda: pipeline.replay(records, background=True),
        f"{cls.__name__} (replay)",
        grace=grace,
        timeout=None,
        result_file=result_file,
        progress=progress,
        hud=False,
    )
