"""W&B plumbing that Lightning's WandbLogger leaves to the script: credentials, closing a run,
and the sweep's summary table as a run of its own."""

import netrc
import os
from pathlib import Path
from typing import Any


def wandb_has_credentials() -> bool:
    """Whether W&B can log online (a key or a netrc entry), or was told not to try."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def finish_wandb_run(failed: bool) -> None:
    """Close the open W&B run, if any: the next job of a sweep must start a run of its own
    (WandbLogger would otherwise reuse the open one)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def log_sweep_table(
    sweep_dir: Path, columns: list[str], rows: list[dict[str, Any]], project: str, offline: bool
) -> Path:
    """Log a sweep's summary as a `wandb.Table` in a run of its own, in the sweep's group.

    Returns the folder W&B wrote the run to (under `sweep_dir/wandb`).
    """
    import wandb

    run = wandb.init(
        project=project,
        group=sweep_dir.name,
        job_type="sweep-summary",
        name=f"sweep-{sweep_dir.name}",
        dir=str(sweep_dir),
        mode="offline" if offline or not wandb_has_credentials() else "online",
        reinit="finish_previous",
    )
    table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
    run.log({"sweep/summary": table})
    folder = Path(run.dir).parent
    run.finish()
    return folder
