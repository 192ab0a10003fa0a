"""``python -m threadline.db init [--demo]``: create the schema, optionally with demo data."""
import argparse
import sys

from threadline import settings
from threadline.db.session import init_schema


def main(argv=None) -> int:
    """Create or update the business database's schema."""
    parser = argparse.ArgumentParser(prog="python -m threadline.db", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create the tables (and add new columns)")
    init.add_argument("--demo", action="store_true", help="also top up the demo customers, orders and slots")
    args = parser.parse_args(argv)
    if args.command == "init":
        init_schema(demo=args.demo)
        url = settings.get().database_url
        shown = url.split("@")[-1] if "@" in url else url
        print(f"business database ready: {shown}{' (with demo data)' if args.demo else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
