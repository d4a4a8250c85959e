#!/usr/bin/env python3
"""An SMTP sink on loopback that accepts every message and writes its Message-ID to a file, one line per message.

    .venv/bin/python scripts/smtp_sink.py --port 2525 --output /tmp/sink.log

A message accepted twice gives two lines, so comparing the number of lines with
the number of distinct lines reveals duplicates. It runs until SIGTERM or SIGINT. `check_workers.py`
starts it as a process of its own, so the sink does not share a Python process
with the code it measures.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from pathlib import Path
from typing import Any, TextIO

HEADER_END = re.compile(rb"\r?\n\r?\n")
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


class MessageIdRecorder:
    """The aiosmtpd handler: accepts every message and appends its Message-ID (or `-` when it has none) to `output`."""

    def __init__(self, output: TextIO) -> None:
        self.output = output
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        content: bytes = envelope.original_content or envelope.content
        end = HEADER_END.search(content)
        found = MESSAGE_ID.search(content[: end.start() if end else len(content)])
        message_id = found.group(1).decode("ascii", "replace") if found else "-"
        with self._lock:
            self.output.write(f"{message_id}\n")
            self.output.flush()
        return "250 2.0.0 accepted"


def main() -> int:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 to listen on.")
    parser.add_argument("--output", type=Path, required=True, help="File that gets one Message-ID line per accepted message.")
    arguments = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with arguments.output.open("a", encoding="ascii") as output:
        controller = Controller(MessageIdRecorder(output), hostname="127.0.0.1", port=arguments.port)
        controller.start()
        try:
            stop.wait()
        finally:
            controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
