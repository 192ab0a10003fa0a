"""Send the undelivered messages again, once each: ``make replay-failed`` (``python -m connectors.replay``).

Each message kept by ``threadline.outbound_failures`` is claimed atomically
(two replays never send the same one twice), sent again through its
channel's output channel (the address comes from the identity index, as for
every send), and either delivered or kept again as a new failure. Channels
are built from credentials.yml and the environment, like the rasa server
builds them; a message for a channel that is off stays where it is.
"""
import argparse
import asyncio
import sys
from pathlib import Path
from typing import Dict, List, Optional

from rasa.core.run import create_http_input_channels

from threadline import outbound_failures, settings


def output_channels(credentials: Path) -> Dict[str, object]:
    """``{channel name: output channel}`` for every channel that is on."""
    outputs = {}
    for channel in create_http_input_channels(None, str(credentials)):
        get_output = getattr(channel, "get_output_channel", None)
        output = get_output() if get_output else None
        if output is not None:
            outputs[channel.name()] = output
    return outputs


async def replay(credentials: Path, dry_run: bool = False, limit: int = 1000) -> Dict[str, int]:
    """Replay what failed; returns counts (delivered, failed again, skipped)."""
    counts = {"delivered": 0, "failed_again": 0, "skipped": 0}
    outputs = output_channels(credentials)
    for failure in outbound_failures.pending(limit=limit):
        output = outputs.get(failure.channel)
        if output is None:
            counts["skipped"] += 1
            continue
        if dry_run:
            print(f"would send {failure.id} ({failure.channel}, customer {failure.customer_id}): {failure.error}")
            continue
        claimed = outbound_failures.claim(failure.id)
        if claimed is None:
            continue  # another replay has it, or it expired
        await output.send_response(claimed.customer_id, dict(claimed.message))
        report = getattr(output, "last_report", None)
        counts["delivered" if report is None or report.ok else "failed_again"] += 1
    return counts


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m connectors.replay", description=__doc__)
    parser.add_argument("--credentials", default=str(settings.PROJECT_ROOT / "credentials.yml"))
    parser.add_argument("--dry-run", action="store_true", help="list what would be sent")
    args = parser.parse_args(argv)
    print(f"{outbound_failures.count()} undelivered message(s) kept")
    counts = asyncio.run(replay(Path(args.credentials), dry_run=args.dry_run))
    print(", ".join(f"{name.replace('_', ' ')}: {value}" for name, value in counts.items()))
    return 0 if counts["failed_again"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
