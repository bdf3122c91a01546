"""HTTPS without a proxy: the server's TLS context, its certificate re-read on SIGHUP."""

from __future__ import annotations

import ssl

from collector.config import Tls


class TlsError(Exception):
    """The TLS certificate or key cannot be loaded; the message names both files."""


def ssl_context(tls: Tls) -> ssl.SSLContext:
    """A server TLS context holding the configured certificate (raises when unreadable)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_certificates(context, tls)
    return context


def load_certificates(context: ssl.SSLContext, tls: Tls) -> None:
    """Load the configured certificate and key; TlsError names both files when it fails."""
    # Loading into the context in use: new handshakes get the new certificate, the
    # connections already open keep theirs.
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as err:  # neither says which file
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise TlsError(
            f"tls: cannot load certificate {tls.cert_file} with key {tls.key_file}: {reason}"
        ) from err
