"""An embedded MQTT broker (``amqtt``) for when no broker is configured (``make demo``).

A hospital runs its own broker (mosquitto, EMQX, HiveMQ); ``twin serve --broker HOST:PORT`` uses
it. Without one, :class:`EmbeddedBroker` starts amqtt's broker on a loopback port in a background
thread with its own asyncio loop, so a demo can publish a replayed record and watch the twin
update. It keeps sessions in memory only (nothing survives its stop) and accepts anonymous
clients on loopback: a demonstration broker, not a production one. Tests of reconnection and
persistence run against a real mosquitto (``tests/monitoring/conftest.py``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from cardiotwin.errors import BrokerError

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout_s: float, what: str = "MQTT broker") -> None:
    """Block until ``host:port`` accepts a TCP connection.

    Raises
    ------
    BrokerError
        Not accepting within ``timeout_s``.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise BrokerError(f"{what} on {host}:{port} does not accept connections after "
                                  f"{timeout_s:g} s ({err.strerror or err})") from None
            time.sleep(0.05)


class EmbeddedBroker:
    """amqtt's MQTT broker on ``host:port`` in a background thread.

    Parameters
    ----------
    host : str
        Interface to listen on; loopback by default (the broker accepts anonymous clients).
    port : int, optional
        TCP port; a free one by default (see :attr:`port` after :meth:`start`).

    Examples
    --------
    >>> with EmbeddedBroker() as broker:          # doctest: +SKIP
    ...     print(broker.address)                 # 127.0.0.1:39217
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = int(port) if port else free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> str:
        """``host:port``, as ``--broker`` takes it."""
        return f"{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        }

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            from amqtt.broker import Broker

            async def make_and_start() -> Any:
                broker = Broker(self._config(), loop=loop)
                await broker.start()
                return broker

            self._broker = loop.run_until_complete(make_and_start())
        except BaseException as err:  # noqa: BLE001 - reported by start()
            self._error = err
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def start(self, *, timeout_s: float = 10.0) -> EmbeddedBroker:
        """Start the broker and wait until its port accepts connections.

        Raises
        ------
        BrokerError
            amqtt is missing, the port is taken, or the broker is not listening within
            ``timeout_s`` (amqtt's ``start`` returns once its listener is bound).
        """
        try:
            import amqtt.broker  # noqa: F401
        except ImportError as err:
            raise BrokerError("the embedded broker needs amqtt (pip install amqtt), or give "
                              "--broker HOST:PORT of a running mosquitto") from err
        # amqtt's state machine (transitions) logs every state change at INFO
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._main, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise BrokerError(f"the embedded MQTT broker did not start on {self.address} within "
                              f"{timeout_s:g} s")
        if self._error is not None:
            raise BrokerError(f"the embedded MQTT broker could not start on {self.address}: "
                              f"{self._error}; give another port or --broker HOST:PORT") \
                from self._error
        logger.info("embedded MQTT broker (amqtt) listening on %s", self.address)
        return self

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Shut the broker down and end its thread.

        Raises
        ------
        BrokerError
            Not stopped within ``timeout_s``.
        """
        loop, broker, thread = self._loop, self._broker, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if broker is not None:
            fut = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
            try:
                fut.result(timeout_s)
            except TimeoutError as err:
                raise BrokerError(f"the embedded MQTT broker on {self.address} did not shut "
                                  f"down within {timeout_s:g} s") from err
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if thread.is_alive():
            raise BrokerError(f"the embedded MQTT broker thread did not end within {timeout_s:g} s")
        logger.info("embedded MQTT broker on %s stopped", self.address)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
