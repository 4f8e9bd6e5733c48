"""Entry point inside the container: `python -m runner.worker --socket PATH`."""

from __future__ import annotations

import argparse

from runner.worker.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="airlock-worker")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-message-bytes", type=int, default=256 << 20)
    parser.add_argument("--audit-log", default=None, help="append audit events here (JSONL)")
    parser.add_argument("--data-socket", default=None, help="serve inference calls here too")
    args = parser.parse_args(argv)
    serve(args.socket, args.threads, args.max_message_bytes, args.audit_log, args.data_socket)


if __name__ == "__main__":
    main()
