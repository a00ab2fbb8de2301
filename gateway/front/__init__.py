"""The main listener's fast front: plain proxied requests without aiohttp's server machinery.

See `protocol.py`: bodiless proxied requests are parsed (httptools), run through the proxy
chain and answered on the socket directly; everything else is handed, with its connection,
to aiohttp's request handler unchanged.
"""
