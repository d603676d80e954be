"""`stampline broker`: the embedded broker in the foreground."""

from __future__ import annotations

import signal
import sys
import threading

from stampline.cli._app import app, fail, out


@app.command()
def broker() -> None:
    """Run the embedded Kafka-protocol broker (Tansu, in memory) until Ctrl-C.

    Prints its bootstrap address; point `broker.bootstrap_servers` or any Kafka client at
    it. Data lives in memory and is gone when it stops.
    """
    from stampline.broker import BrokerError, EmbeddedBroker

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with EmbeddedBroker() as b:
            out.print(b.bootstrap_servers, highlight=False)
            sys.stdout.flush()
            stop.wait()
    except BrokerError as exc:
        fail(str(exc))
