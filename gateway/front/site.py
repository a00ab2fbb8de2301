"""The main listener's site: connections start in `FrontProtocol`, not aiohttp's handler."""

from __future__ import annotations

import asyncio
import socket
import ssl

from aiohttp import web

from gateway.front.protocol import FrontProtocol, FrontSettings


class FrontSite(web.SockSite):
    """A `SockSite` whose connections begin on the fast front (see `front/protocol.py`)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        settings: FrontSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=1024)
        self.settings = settings

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        settings = self.settings
        self._server = await asyncio.get_running_loop().create_server(
            lambda: FrontProtocol(settings),
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )
