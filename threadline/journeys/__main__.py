"""Operators' command line for journeys.

    python -m threadline.journeys validate
    python -m threadline.journeys list [--customer C] [--status active] [--journey NAME]
    python -m threadline.journeys start NAME (--customer C | --phone +1... | --customers-file FILE) [--set key=value ...]
    python -m threadline.journeys emit EVENT --customer C [--set key=value ...] [--occurrence ID]
    python -m threadline.journeys cancel ID [--by NAME]
    python -m threadline.journeys queue

Output is JSON (``validate`` prints the problems, one per line). Exit status:
0 done, 1 refused (the message says why), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional


def _pairs(values: Optional[List[str]]) -> Dict[str, str]:
    context: Dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set needs key=value, not {value!r}")
        context[key.strip()] = rest.strip()
    return context


def _customers(args: argparse.Namespace) -> List[str]:
    from threadline import identity

    if args.customer:
        return [args.customer]
    if args.phone:
        phone = identity.normalise_phone(args.phone)
        customer = identity.customer_for_phone(phone) if phone else None
        if not customer:
            raise LookupError(f"no customer has the phone number {args.phone}")
        return [customer]
    path = Path(args.customers_file)
    if not path.is_file():
        raise LookupError(f"no such file: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m threadline.journeys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate", help="check every journey file")
    listing = sub.add_parser("list", help="journey instances, newest first")
    listing.add_argument("--customer")
    listing.add_argument("--status")
    listing.add_argument("--journey")
    listing.add_argument("--limit", type=int, default=50)
    starting = sub.add_parser("start", help="start a journey for customers")
    starting.add_argument("journey")
    who = starting.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer")
    who.add_argument("--phone")
    who.add_argument("--customers-file")
    starting.add_argument("--set", action="append", metavar="KEY=VALUE")
    emitting = sub.add_parser("emit", help="emit an event for a customer")
    emitting.add_argument("event")
    emitting.add_argument("--customer", required=True)
    emitting.add_argument("--set", action="append", metavar="KEY=VALUE")
    emitting.add_argument("--occurrence")
    cancelling = sub.add_parser("cancel", help="cancel a journey instance")
    cancelling.add_argument("instance", type=int)
    cancelling.add_argument("--by", default=None)
    sub.add_parser("queue", help="steps waiting, due and claimed")
    args = parser.parse_args(argv)

    from threadline.journeys import definitions, service, store

    if args.command == "validate":
        try:
            found = definitions.load_all()
        except definitions.JourneyError as error:
            for problem in error.problems:
                print(f"journeys/{problem}", file=sys.stderr)
            return 1
        print(f"{len(found)} journeys OK: {', '.join(sorted(found)) or 'none'}")
        return 0
    try:
        if args.command == "list":
            result = store.list_instances(args.customer, args.status, args.journey, args.limit)
        elif args.command == "start":
            result = service.start_many(args.journey, _customers(args), _pairs(args.set),
                                        started_by=f"cli:{getpass.getuser()}")
        elif args.command == "emit":
            result = service.emit(args.event, args.customer, _pairs(args.set), args.occurrence)
        elif args.command == "cancel":
            result = {"cancelled": service.cancel(args.instance, args.by or f"cli:{getpass.getuser()}")}
        else:
            result = store.queue_depth()
    except (service.JourneyRefused, LookupError, definitions.JourneyError) as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
